import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels

// A fixed-seed cousin of the libFuzzer target `config` in fuzz/: CI cannot fuzz for long, so each
// run damages the committed config.json seeds a few hundred times.

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
            let config = try ConfigDecoding.decode(OPTConfig.self, from: data, path: "config.json")
            try config.validate(path: "config.json")
            _ = (config.shape.attentionWidth, config.shape.kvWidth)
        }
    }

    @Test("mutated config.json files throw ShadowError or decode, never trap")
    func mutatedConfigs() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../fuzz/corpus/config").standardized
        let seeds = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
            .map { [UInt8](try Data(contentsOf: directory.appendingPathComponent($0))) }
        #expect(!seeds.isEmpty)
        var state: UInt64 = 0xC0F1
        func next(below bound: Int) -> Int {
            // SplitMix64, inline: the same sequence on every platform.
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
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
                    text[position] = Array("{}[]\":,0-9 ".utf8)[next(below: 12)]
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
}
