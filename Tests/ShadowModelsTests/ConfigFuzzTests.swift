import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels
import ShadowTestSupport

// Fixed-seed cousins of the libFuzzer targets `config` and `gguf_model` in fuzz/: CI cannot fuzz
// for long, so each run damages the committed seeds a few hundred times.

@Suite("config.json under random corruption")
struct ConfigFuzzTests {
    /// Decodes and validates `data` as each architecture's config and multiplies out the sizes a
    /// loader uses; true when every step either worked or threw a ShadowError.
    func survives(_ data: Data) -> Bool {
        func attempt(_ body: () throws -> Void) -> Bool {
            do { try body(); return true } catch is ShadowError { return true } catch { return false }
        }
        return attempt {
            let config = try ConfigDecoding.decode(LlamaConfig.self, from: data, path: "config.json")
            try config.validate(path: "config.json")
            _ = (config.shape.attentionWidth, config.shape.kvWidth, config.shape.groupSize)
        } && attempt {
            let config = try Gemma3MultimodalConfig.read(data, path: "config.json")
            _ = (config.shape.attentionWidth, config.shape.kvWidth, config.shape.groupSize)
        } && attempt {
            let config = try ConfigDecoding.decode(OPTConfig.self, from: data, path: "config.json")
            try config.validate(path: "config.json")
            _ = (config.shape.attentionWidth, config.shape.kvWidth)
        }
    }

    @Test("mutated config.json files throw ShadowError or decode, never trap")
    func mutatedConfigs() throws {
        let seeds = try fuzzSeeds("config")
        #expect(!seeds.isEmpty)
        var generator = SeededGenerator(seed: 0xC0F1)
        func next(below bound: Int) -> Int { generator.next(below: bound) }
        // Numbers that stress the size checks, spliced over digits.
        let numbers = ["0", "-1", "9223372036854775807", "4294967296", "1e400", "2.5", "null", "\"8\"", "[]", "{}"]
        for round in 0..<300 {
            var text = seeds[round % seeds.count]
            for _ in 0..<(1 + next(below: 3)) {
                let position = next(below: text.count)
                if next(below: 2) == 0, let digit = text[position...].firstIndex(where: { (0x30...0x39).contains($0) }) {
                    var end = digit
                    while end < text.count, (0x30...0x39).contains(text[end]) { end += 1 }
                    text.replaceSubrange(digit..<end, with: Array(numbers[next(below: numbers.count)].utf8))
                } else {
                    let alphabet = Array("{}[]\":,0-9 ".utf8)
                    text[position] = alphabet[next(below: alphabet.count)]
                }
            }
            #expect(survives(Data(text)), "\(String(decoding: text, as: UTF8.self))")
        }
    }

    @Test("sizes whose products overflow are refused before loading multiplies them")
    func overflowingSizes() throws {
        let huge = 1 << 32
        var config = LlamaConfig(hiddenSize: 64, intermediateSize: 128, layers: 2, heads: huge, kvHeads: huge,
                                 headDim: huge, vocabularySize: 10)
        expectShadowError(["config.json", "num_attention_heads", "do not fit"]) { try config.validate(path: "config.json") }
        config = LlamaConfig(hiddenSize: 64, intermediateSize: 128, layers: 1 << 20, heads: 4, vocabularySize: 10,
                             maxContext: 1 << 40)
        expectShadowError(["num_hidden_layers", "max_position_embeddings"]) { try config.validate(path: "config.json") }
        let opt = OPTConfig(hiddenSize: 1 << 40, ffnSize: 8, layers: 1, heads: 1, vocabularySize: 10)
        expectShadowError(["hidden_size", "do not fit"]) { try opt.validate(path: "config.json") }
        // A checkpoint directory whose config claims such sizes gets the same error from the loader.
        let directory = try CheckpointWriter.directory(config: { $0["head_dim"] = huge; $0["num_attention_heads"] = huge })
        expectShadowError(["config.json", "do not fit"]) { _ = try ModelLoader.load(path: directory) }
    }

    @Test("a head wider than 65,536 is refused, naming head_dim, before a RoPE frequency is computed per pair")
    func headsTooWide() throws {
        // Every product fits; checking RoPE's frequencies for 2^30 pairs took minutes and gigabytes.
        let wide = Int(Int32.max) - 1
        let directory = try CheckpointWriter.directory(config: { $0["head_dim"] = wide })
        expectShadowError(["config.json", "\"head_dim\"", "is \(wide), beyond any model (at most 65536)"]) {
            _ = try ModelLoader.load(path: directory)
        }
        let config = LlamaConfig(hiddenSize: 64, intermediateSize: 128, layers: 2, heads: 1, headDim: 1 << 17, vocabularySize: 10)
        expectShadowError(["\"head_dim\"", "beyond any model"]) { try config.validate(path: "config.json") }
        try LlamaConfig(hiddenSize: 64, intermediateSize: 128, layers: 2, heads: 1, headDim: 1 << 16, vocabularySize: 10)
            .validate(path: "config.json")
    }

    @Test("a head width from hidden_size / heads that RoPE cannot rotate names the head count, not a head_dim the file lacks")
    func derivedHeadWidths() throws {
        // hidden_size 8: 8 heads are 1 wide, 16 heads 0, and 3 heads would be 2 wide (tensors then decide).
        for heads in [8, 16] {
            let directory = try CheckpointWriter.directory(config: { $0["num_attention_heads"] = heads })
            expectShadowError(["config.json", "\"num_attention_heads\"", "\(heads) heads in hidden_size 8 are \(8 / heads) wide (no head_dim is given)"]) {
                _ = try ModelLoader.load(path: directory)
            }
        }
        let declared = try CheckpointWriter.directory(config: { $0["num_attention_heads"] = 16; $0["head_dim"] = 1 })
        expectShadowError(["\"head_dim\"", "even head width, got 1"]) { _ = try ModelLoader.load(path: declared) }
    }
}

@Suite("GGUF checkpoints under random corruption")
struct GGUFModelFuzzTests {
    @Test("mutated tiny GGUF checkpoints throw ShadowError or load and run, never trap")
    func mutatedCheckpoints() throws {
        let seeds = try fuzzSeeds("gguf_model")
        #expect(!seeds.isEmpty)
        var generator = SeededGenerator(seed: 0x66F0)
        let path = TestScratch.url("fuzz", suffix: ".gguf").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var loaded = 0
        for round in 0..<200 {
            var bytes = seeds[round % seeds.count]
            // Most damage goes to the header (metadata and tensor infos), where the sizes live.
            for _ in 0..<(1 + generator.next(below: 3)) {
                let position = generator.next(below: generator.next(below: 2) == 0 ? 900 : bytes.count)
                bytes[position] = [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x7F, 0x80, 0xFF][generator.next(below: 10)]
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let model = try ModelLoader.load(path: path).model
                let vocabulary = model.shape.vocabularySize
                let logits = model.forward([0, vocabulary - 1], cache: model.makeCache(capacity: 2), logits: .last)
                #expect(logits.count == vocabulary)
                loaded += 1
            } catch is ShadowError {
            } catch {
                Issue.record("not a ShadowError: \(error)")
            }
        }
        #expect(loaded > 0)  // some damage lands in weights and leaves a loadable model
    }

    @Test("a 2.6 KB GGUF claiming 2^29 layers is refused before the loader reserves them")
    func hugeBlockCount() throws {
        // The crash input the seeded mutations found: one byte of llama.block_count set, and the
        // loader reserved 64 GB for an array of blocks before looking for the second one.
        var bytes = try #require(try fuzzSeeds("gguf_model").first)  // tiny-llama-untied: 12 tensors
        let key = Array("llama.block_count".utf8)
        let start = try #require((0...(bytes.count - key.count)).first { bytes[$0..<($0 + key.count)].elementsEqual(key) })
        let value = start + key.count + 4  // after the key and its u32 type
        #expect(bytes[value..<(value + 4)].elementsEqual([1, 0, 0, 0]))
        bytes[value + 3] = 0x20
        let path = TestScratch.url("layers", suffix: ".gguf").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        expectShadowError([path, "llama.block_count is 536870913", "only 12 tensors"]) { _ = try ModelLoader.load(path: path) }
        // The same claim in a config.json: past 65,536 layers it is refused while it is read.
        var directory = try CheckpointWriter.directory(config: { $0["num_hidden_layers"] = 1 << 16 })
        expectShadowError(["num_hidden_layers is 65536", "tensors"]) { _ = try ModelLoader.load(path: directory) }
        directory = try CheckpointWriter.directory(config: { $0["num_hidden_layers"] = 1 << 29 })
        expectShadowError(["\"num_hidden_layers\"", "is 536870912, beyond any model"]) { _ = try ModelLoader.load(path: directory) }
    }

    @Test("configs that build per-layer lists while they are read refuse a huge layer count first, in config.json and GGUF", arguments: [
        #"{"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "vocab_size": 10, "num_hidden_layers": 4444444444}"#,
        #"{"model_type": "smollm3", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "vocab_size": 10, "num_hidden_layers": 4444444444}"#,
        #"{"model_type": "gemma3", "text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4444444444}}"#,
    ])
    func hugeLayerCountsWhileReading(json: String) throws {
        let decode = { () throws -> Void in
            if json.contains("text_config") {
                _ = try Gemma3MultimodalConfig.read(Data(json.utf8), path: "config.json")
            } else {
                _ = try ConfigDecoding.decode(LlamaConfig.self, from: Data(json.utf8), path: "config.json")
            }
        }
        expectShadowError(["num_hidden_layers", "4444444444, beyond any model"]) { try decode() }
    }

    @Test("a gemma3 GGUF claiming 4·10⁹ layers is refused before its sliding layers are listed")
    func hugeGemmaBlockCount() throws {
        let path = try FixtureCopy.gguf("tiny-gemma3-gguf/model.gguf", u32: ["gemma3.block_count": 4_000_000_000])
        expectShadowError([path, "gemma3.block_count is 4000000000", "tensors"]) { _ = try ModelLoader.load(path: path) }
    }

    @Test("sizes a trace fingerprint would refuse are refused at loading, naming the key")
    func sizesBeyondAnyModel() throws {
        // Before, a model with these sizes loaded and calibrated, and its traces were refused later.
        let beyond = Int(Int32.max) + 1
        for key in ["max_position_embeddings", "vocab_size"] {
            let directory = try CheckpointWriter.directory(config: { $0[key] = beyond })
            expectShadowError(["config.json", "\"\(key)\"", "is \(beyond), beyond any model"]) { _ = try ModelLoader.load(path: directory) }
        }
        let path = try FixtureCopy.gguf(u32: ["llama.context_length": UInt32(beyond)])
        expectShadowError([path, "\"llama.context_length\"", "beyond any model"]) { _ = try ModelLoader.load(path: path) }
        // Decoding refuses a vocabulary of 0; configs built from GGUF metadata or by hand reach validate().
        let empty = LlamaConfig(hiddenSize: 8, intermediateSize: 16, layers: 1, heads: 2, vocabularySize: 0)
        expectShadowError(["\"vocab_size\"", "must be positive, got 0"]) { try empty.validate(path: "config.json") }
        let opt = OPTConfig(hiddenSize: 8, ffnSize: 16, layers: 1, heads: 0, vocabularySize: 10)
        expectShadowError(["\"num_attention_heads\"", "must be positive, got 0"]) { try opt.validate(path: "config.json") }
        let longOPT = OPTConfig(hiddenSize: 8, ffnSize: 16, layers: 1, heads: 2, vocabularySize: 10, maxContext: beyond)
        expectShadowError(["\"max_position_embeddings\"", "beyond any model"]) { try longOPT.validate(path: "config.json") }
        // At the limit itself both still load and fingerprint.
        let longest = LlamaConfig(hiddenSize: 8, intermediateSize: 16, layers: 1, heads: 2, vocabularySize: 10, maxContext: Int(Int32.max))
        try longest.validate(path: "config.json")
    }

    /// The first seed with the u32 value of `key` replaced.
    func seed(setting key: String, to newValue: UInt32) throws -> [UInt8] {
        var bytes = try #require(try fuzzSeeds("gguf_model").first)
        let name = Array(key.utf8)
        let start = try #require((0...(bytes.count - name.count)).first { bytes[$0..<($0 + name.count)].elementsEqual(name) })
        let value = start + name.count + 4  // after the key and its u32 type
        withUnsafeBytes(of: newValue.littleEndian) { bytes.replaceSubrange(value..<(value + 4), with: $0) }
        return bytes
    }

    @Test("a GGUF head count that does not divide the embedding width, with no key_length, is refused naming it")
    func headCountNotDividing() throws {
        for heads: UInt32 in [6, 128] {
            let path = TestScratch.url("heads", suffix: ".gguf").path
            defer { try? FileManager.default.removeItem(atPath: path) }
            try Data(try seed(setting: "llama.attention.head_count", to: heads)).write(to: URL(fileURLWithPath: path))
            expectShadowError([path, "\"llama.attention.head_count\": \(heads) does not divide llama.embedding_length", "no llama.attention.key_length"]) {
                _ = try ModelLoader.load(path: path)
            }
        }
    }

    @Test("GGUF sizes of zero are refused with the key's name, not divided by",
          arguments: ["llama.attention.head_count_kv", "llama.attention.head_count", "llama.embedding_length",
                      "llama.feed_forward_length", "llama.block_count", "llama.context_length"])
    func zeroSizes(key: String) throws {
        // The crash input libFuzzer found: head_count_kv 0 reached `heads % kvHeads` in validate().
        let path = TestScratch.url("zero", suffix: ".gguf").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(try seed(setting: key, to: 0)).write(to: URL(fileURLWithPath: path))
        expectShadowError([path, "\"\(key)\"", "must be positive, found 0"]) { _ = try ModelLoader.load(path: path) }
    }
}
