import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels
import ShadowModelTestSupport
import ShadowTestSupport

/// Expects `body` to throw a ShadowError whose one-line description contains every fragment.
func expectShadowError(_ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected an error mentioning \(fragments)", sourceLocation: sourceLocation)
    } catch let error as ShadowError {
        let text = error.description
        #expect(!text.contains("\n"), "error is not one line: \(text)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(text.contains(fragment), "\"\(text)\" does not mention \"\(fragment)\"", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected a ShadowError, got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Bad checkpoints give one-line errors that name the problem")
struct BadInputTests {
    @Test("a valid minimal checkpoint loads")
    func validLoads() throws {
        let loaded = try ModelLoader.load(path: try CheckpointWriter.directory())
        #expect(loaded.model.shape.layers == 1 && loaded.tokenizer == nil)
    }

    @Test("a missing path or config.json is named")
    func missingFiles() throws {
        expectShadowError(["/no/such/model"]) { _ = try ModelLoader.load(path: "/no/such/model") }
        let dir = try CheckpointWriter.directory()
        try FileManager.default.removeItem(atPath: dir + "/config.json")
        expectShadowError(["config.json"]) { _ = try ModelLoader.load(path: dir) }
    }

    @Test("malformed config.json names the file")
    func malformedConfig() throws {
        let dir = try CheckpointWriter.directory()
        try Data("{\n  \"model_type\": \"llama\",\n  not json".utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        // Where the JSON breaks, as an editor counts lines and columns.
        expectShadowError(["config.json", "not valid JSON at line 3, column 3: expected a string key"]) { _ = try ModelLoader.load(path: dir) }
    }

    @Test("a missing or wrongly typed key is named")
    func missingKey() throws {
        let missing = try CheckpointWriter.directory(config: { $0["hidden_size"] = nil })
        expectShadowError(["config.json", "hidden_size", "missing"]) { _ = try ModelLoader.load(path: missing) }
        let wrongType = try CheckpointWriter.directory(config: { $0["num_attention_heads"] = "two" })
        expectShadowError(["num_attention_heads"]) { _ = try ModelLoader.load(path: wrongType) }
        let negative = try CheckpointWriter.directory(config: { $0["num_hidden_layers"] = -1 })
        expectShadowError(["num_hidden_layers", "positive"]) { _ = try ModelLoader.load(path: negative) }
        let badRope = try CheckpointWriter.directory(config: { $0["rope_scaling"] = ["rope_type": "yarn"] })
        expectShadowError(["rope_scaling", "yarn"]) { _ = try ModelLoader.load(path: badRope) }
        let heads = try CheckpointWriter.directory(config: { $0["num_key_value_heads"] = 3 })
        expectShadowError(["num_key_value_heads"]) { _ = try ModelLoader.load(path: heads) }
    }

    @Test("an unknown architecture is named")
    func unknownArchitecture() throws {
        let dir = try CheckpointWriter.directory(config: { $0["model_type"] = "gpt_neox" })
        expectShadowError(["unknown architecture \"gpt_neox\" (this build reads gemma2, ", "llama, ", "opt, "]) { _ = try ModelLoader.load(path: dir) }
    }

    @Test("a missing tensor is named")
    func missingTensor() throws {
        let dir = try CheckpointWriter.directory(tensors: { $0.removeAll { $0.0 == "model.norm.weight" } })
        expectShadowError(["model.norm.weight", "missing"]) { _ = try ModelLoader.load(path: dir) }
    }

    @Test("a tensor of the wrong shape is named with both shapes")
    func wrongShape() throws {
        let dir = try CheckpointWriter.directory(tensors: { t in
            t = t.map { $0.0.hasSuffix("k_proj.weight") ? ($0.0, [8, 8]) : $0 }
        })
        expectShadowError(["k_proj.weight", "[8, 8]", "[4, 8]"]) { _ = try ModelLoader.load(path: dir) }
    }

    @Test("an unexpected tensor is named")
    func unexpectedTensor() throws {
        let dir = try CheckpointWriter.directory(tensors: { $0.append(("model.layers.0.extra.weight", [2])) })
        expectShadowError(["model.layers.0.extra.weight", "unexpected"]) { _ = try ModelLoader.load(path: dir) }
    }

    @Test("a NaN or infinity in a weight is refused at load, naming the tensor and the element")
    func nonFiniteWeights() throws {
        let dir = try CheckpointWriter.directory()
        let url = URL(fileURLWithPath: dir + "/model.safetensors")
        var data = try Data(contentsOf: url)
        let headerLength = Int(UInt64(littleEndian: data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        func put(_ value: Float, at offset: Int) {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { data.replaceSubrange(offset..<offset + 4, with: $0) }
        }
        put(.nan, at: data.count - 4)   // the last of model.norm.weight's 8 values, a vector
        try data.write(to: url)
        expectShadowError(["tensor \"model.norm.weight\"", "non-finite value (nan at element 7)"]) { _ = try ModelLoader.load(path: dir) }
        put(1, at: data.count - 4)
        put(-.infinity, at: 8 + headerLength + 4 * 21)   // the embedding, a matrix
        try data.write(to: url)
        expectShadowError(["tensor \"model.embed_tokens.weight\"", "(-inf at element 21)"]) { _ = try ModelLoader.load(path: dir, weights: .f16) }
    }

    @Test("a truncated safetensors file names the file")
    func truncatedSafetensors() throws {
        let dir = try CheckpointWriter.directory()
        let url = URL(fileURLWithPath: dir + "/model.safetensors")
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 100).write(to: url)
        expectShadowError(["model.safetensors"]) { _ = try ModelLoader.load(path: dir) }
        try data.prefix(5).write(to: url)
        expectShadowError(["model.safetensors"]) { _ = try ModelLoader.load(path: dir) }
    }

    @Test("a truncated or corrupt GGUF names the file")
    func corruptGGUF() throws {
        let source = Fixtures.path("tiny-llama-gguf/model.gguf")
        let data = try Data(contentsOf: URL(fileURLWithPath: source))
        let path = TestScratch.url("broken", suffix: ".gguf").path
        for length in [0, 3, 24, 200, data.count / 2, data.count - 1] {
            try data.prefix(length).write(to: URL(fileURLWithPath: path))
            expectShadowError([path]) { _ = try ModelLoader.load(path: path) }
        }
        var corrupt = data
        corrupt[0] = UInt8(ascii: "X")
        try corrupt.write(to: URL(fileURLWithPath: path))
        expectShadowError([path]) { _ = try ModelLoader.load(path: path) }
    }
}

/// Copies of the fixture checkpoints with one file edited, for load-time error tests.
enum FixtureCopy {
    /// A scratch copy of the Hugging Face fixture `name` with tokenizer.json's JSON object edited.
    static func directory(_ name: String, tokenizer edit: (inout [String: Any]) -> Void) throws -> String {
        let dir = TestScratch.url(name)
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Fixtures.path(name)), to: dir)
        let url = dir.appendingPathComponent("tokenizer.json")
        var json = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        return dir.path
    }

    /// A scratch copy of the GGUF fixture with scalar metadata values and tensor sizes overwritten
    /// in place (same byte length, so every offset stays valid).
    static func gguf(_ fixture: String = "tiny-llama-gguf/model.gguf", u32 values: [String: UInt32] = [:], f32 floats: [String: Float] = [:],
                     rows: [String: UInt64] = [:]) throws -> String {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture))))
        /// The offset just past GGUF string `name` (u64 length + bytes).
        func end(of name: String) throws -> Int {
            var needle: [UInt8] = []
            withUnsafeBytes(of: UInt64(name.utf8.count).littleEndian) { needle += $0 }
            needle += Array(name.utf8)
            let start = try #require((0...(bytes.count - needle.count)).first { bytes[$0..<$0 + needle.count].elementsEqual(needle) },
                                     "\(name) is not in the fixture")
            return start + needle.count
        }
        func write<T>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value) { bytes.replaceSubrange(offset..<offset + $0.count, with: $0) }
        }
        for (key, value) in values { write(value.littleEndian, at: try end(of: key) + 4) }   // after the u32 type
        for (key, value) in floats { write(value.bitPattern.littleEndian, at: try end(of: key) + 4) }
        for (tensor, count) in rows { write(count.littleEndian, at: try end(of: tensor) + 4 + 8) }  // n_dims, ne[0], ne[1]
        let path = TestScratch.path("patched", suffix: ".gguf")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}

@Suite("A tokenizer must fit the model it is loaded with")
struct TokenizerFitTests {
    @Test("a tokenizer.json with an id at or past the embedding's rows is refused, naming the file and the id")
    func addedTokenPastTheEmbedding() throws {
        for id in [384, 400, 100_000] {
            let dir = try FixtureCopy.directory("tiny-llama-tied") { json in
                var added = json["added_tokens"] as? [[String: Any]] ?? []
                added.append(["id": id, "content": "<zzz>", "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": false, "special": true])
                json["added_tokens"] = added
            }
            expectShadowError(["tokenizer.json", "\(id)", "<zzz>", "384"]) { _ = try ModelLoader.load(path: dir) }
        }
        // The unedited fixture's largest id, 383, fits.
        #expect(try ModelLoader.load(path: Fixtures.path("tiny-llama-tied")).tokenizer?.vocabularySize == 384)
    }

    @Test("a token id past the embedding stops the forward pass instead of reading past the table")
    func forwardGuard() async {
        await #expect(processExitsWith: .failure) {
            let model = TinyModels.llama(vocab: 50)
            _ = model.forward([3, 50], cache: model.makeCache(), logits: .last)
        }
        await #expect(processExitsWith: .failure) {
            let model = TinyModels.llama(vocab: 50)
            _ = model.forward([-1], cache: model.makeCache(), logits: .last)
        }
    }

    @Test("BOS and EOS ids in config.json outside the vocabulary are refused, naming the key")
    func configTokenIDs() throws {
        let cases: [(key: String, value: Any, shown: String)] = [
            ("bos_token_id", 99_999, "99999"), ("eos_token_id", -5, "-5"), ("eos_token_id", [2, 10], "10")]
        for (key, value, shown) in cases {
            let dir = try CheckpointWriter.directory(config: { $0[key] = value })
            expectShadowError(["config.json", "\"\(key)\"", shown, "vocabulary of 10"]) { _ = try ModelLoader.load(path: dir) }
        }
        let json = #"{"hidden_size": 8, "ffn_dim": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10, "eos_token_id": 50272}"#
        let opt = try ConfigDecoding.decode(OPTConfig.self, from: Data(json.utf8), path: "config.json")
        expectShadowError(["config.json", "\"eos_token_id\"", "50272"]) { try opt.validate(path: "config.json") }
    }

    @Test("a GGUF whose vocabulary has more tokens than token_embd.weight has rows is refused, naming the key")
    func ggufTokensPastTheEmbedding() throws {
        let path = try FixtureCopy.gguf(u32: ["llama.vocab_size": 383],
                                        rows: ["token_embd.weight": 383, "output.weight": 383])
        expectShadowError([path, "tokenizer.ggml.tokens", "383"]) { _ = try ModelLoader.load(path: path) }
    }
}

@Suite("GGUF errors name GGUF keys")
struct GGUFKeyNameTests {
    /// Expects loading to fail with the fragments and without any of config.json's key names.
    func expectGGUFError(_ path: String, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        expectShadowError([path] + fragments, sourceLocation: sourceLocation) {
            do { _ = try ModelLoader.load(path: path) } catch let error as ShadowError {
                for name in ["hidden_size", "head_dim", "num_key_value_heads", "num_attention_heads", "rms_norm_eps", "rope_theta"] {
                    #expect(!error.description.contains(name), "\(error) names config.json's \(name)", sourceLocation: sourceLocation)
                }
                throw error
            }
        }
    }

    @Test("a KV head count that does not divide the head count names both GGUF keys")
    func kvHeads() throws {
        let path = try FixtureCopy.gguf(u32: ["llama.attention.head_count_kv": 3])
        expectGGUFError(path, ["\"llama.attention.head_count_kv\"", "llama.attention.head_count 4"])
    }

    @Test("rotary dimensions that are odd or wider than the head are refused, naming llama.rope.dimension_count; so are fewer in a llama file, whose permuted rows would rotate other pairs")
    func partialRotary() throws {
        for count: UInt32 in [7, 0, 32] {
            let path = try FixtureCopy.gguf(u32: ["llama.rope.dimension_count": count])
            expectGGUFError(path, ["\"llama.rope.dimension_count\"", "\(count)", "heads of 16", "even number from 2 to 16"])
        }
        expectGGUFError(try FixtureCopy.gguf(u32: ["llama.rope.dimension_count": 8]),
                        ["\"llama.rope.dimension_count\"", "8", "not supported in llama files"])
        // The fixture's own value, the head width, loads; a phi3 file rotates part of each head (Phi3Tests).
        #expect(try ModelLoader.load(path: try FixtureCopy.gguf(u32: ["llama.rope.dimension_count": 16])).model.shape.headDim == 16)
    }

    @Test("an odd head width derived from the embedding length names llama.embedding_length")
    func oddHeadWidth() throws {
        // 4 heads of 7 (a width that does not divide is refused naming the head count: ConfigFuzzTests).
        let path = try FixtureCopy.gguf(u32: ["llama.embedding_length": 28])
        expectGGUFError(path, ["\"llama.embedding_length\"", "even head width, got 7"])
    }
}

@Suite("Configurations that would make every logit NaN are refused at load")
struct NaNConfigTests {
    @Test("rms_norm_eps must be positive", arguments: [-1.0, 0.0])
    func epsilon(value: Double) throws {
        let dir = try CheckpointWriter.directory(config: { $0["rms_norm_eps"] = value })
        expectShadowError(["config.json", "\"rms_norm_eps\"", "positive"]) { _ = try ModelLoader.load(path: dir) }
    }

    @Test("rope_theta must be positive, named where it was written")
    func theta() throws {
        for value in [0.0, -5.0] {
            let flat = try CheckpointWriter.directory(config: { $0["rope_theta"] = value })
            expectShadowError(["config.json", "\"rope_theta\"", "positive"]) { _ = try ModelLoader.load(path: flat) }
            let nested = try CheckpointWriter.directory(config: {
                $0["rope_parameters"] = ["rope_type": "default", "rope_theta": value]
            })
            expectShadowError(["config.json", "\"rope_parameters.rope_theta\"", "positive"]) { _ = try ModelLoader.load(path: nested) }
        }
        let factor = try CheckpointWriter.directory(config: { $0["rope_scaling"] = ["rope_type": "linear", "factor": 0] })
        expectShadowError(["config.json", "\"rope_scaling\"", "factor", "positive"]) { _ = try ModelLoader.load(path: factor) }
        // Positive in double precision, but the frequencies overflow or vanish in single precision
        // (every logit would be NaN).
        let tiny = try CheckpointWriter.directory(config: { $0["rope_theta"] = 1e-100 })
        expectShadowError(["config.json", "\"rope_theta\"", "single precision"]) { _ = try ModelLoader.load(path: tiny) }
        let tinyFactor = try CheckpointWriter.directory(config: { $0["rope_scaling"] = ["rope_type": "linear", "factor": 1e-300] })
        expectShadowError(["config.json", "\"rope_scaling\"", "single precision"]) { _ = try ModelLoader.load(path: tinyFactor) }
    }

    @Test("GGUF epsilon and rope frequency base must be positive, named by their GGUF keys")
    func gguf() throws {
        for (key, value) in [("llama.rope.freq_base", Float(0)), ("llama.rope.freq_base", -1),
                             ("llama.attention.layer_norm_rms_epsilon", -1), ("llama.attention.layer_norm_rms_epsilon", .nan)] {
            let path = try FixtureCopy.gguf(f32: [key: value])
            expectShadowError([path, "\"\(key)\"", "positive"]) { _ = try ModelLoader.load(path: path) }
        }
        // Positive, but its frequencies overflow single precision (a GGUF is checked by validate()).
        let tiny = try FixtureCopy.gguf(f32: ["llama.rope.freq_base": Float.leastNonzeroMagnitude])
        expectShadowError([tiny, "\"llama.rope.freq_base\"", "single precision"]) { _ = try ModelLoader.load(path: tiny) }
    }

    @Test("a GGUF end-of-turn stop id outside the vocabulary is named, as BOS and EOS ids are")
    func eotOutsideVocabulary() throws {
        // The fixture has no eot_token_id: its BOS key, of the same length, is renamed to one.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-llama-gguf/model.gguf")))
        let name = try #require(bytes.range(of: Data("tokenizer.ggml.bos_token_id".utf8)))
        bytes.replaceSubrange(name, with: Data("tokenizer.ggml.eot_token_id".utf8))
        let path = TestScratch.path("eot", suffix: ".gguf")
        try bytes.write(to: URL(fileURLWithPath: path))
        let loaded = try ModelLoader.load(path: path)
        #expect(loaded.stopTokens.contains(Int(bytes[name.upperBound + 4])))   // a small id, in its u32's first byte
        withUnsafeBytes(of: UInt32(99_999).littleEndian) { bytes.replaceSubrange(name.upperBound + 4 ..< name.upperBound + 8, with: $0) }
        try bytes.write(to: URL(fileURLWithPath: path))
        expectShadowError([path, "\"tokenizer.ggml.eot_token_id\"", "99999 is outside the model's vocabulary"]) { _ = try ModelLoader.load(path: path) }
    }
}

@Suite("Numbers that are no integers are named, not called invalid JSON")
struct IntegerKeyTests {
    @Test("a fractional or huge size in config.json names its key")
    func fractionalOrHugeSize() throws {
        for (key, value) in [("hidden_size", 64.5), ("hidden_size", 1e30), ("num_attention_heads", 2.5),
                             ("max_position_embeddings", 1e19), ("bos_token_id", 1.5)] {
            let dir = try CheckpointWriter.directory(config: { $0[key] = value })
            expectShadowError(["config.json", "\"\(key)\"", "must be an integer in range"]) { _ = try ModelLoader.load(path: dir) }
        }
    }

    @Test("other JSON files decoded with ConfigDecoding say a number is no integer rather than that the JSON is invalid")
    func otherFiles() throws {
        struct Sizes: Decodable { let layers: Int }
        expectShadowError(["sizes.json", "key \"layers\": 2.5 does not fit"]) {
            _ = try ConfigDecoding.decode(Sizes.self, from: Data(#"{"layers": 2.5}"#.utf8), path: "sizes.json")
        }
        // A 64-bit generator state above 2^63 is a UInt64's to hold: the fraction is named.
        struct Position: Decodable { let batch: Int; let generator: UInt64 }
        expectShadowError(["p.json", "key \"batch\": 2.5 does not fit"]) {
            _ = try ConfigDecoding.decode(Position.self, from: Data(#"{"batch": 2.5, "generator": 12345678901234567890}"#.utf8), path: "p.json")
        }
        // Two candidates: no key is named rather than a wrong one.
        expectShadowError(["sizes.json", "a number does not fit the type expected"]) {
            _ = try ConfigDecoding.decode(Sizes.self, from: Data(#"{"layers": 2.5, "eps": 0.5}"#.utf8), path: "sizes.json")
        }
        // JSONDecoder names no key for these; the number that cannot fit is found and named.
        struct State: Decodable { let rows: [[Float]]; let eps: Float; let seed: UInt64; let name: String }
        for (json, key) in [(#"{"rows": [[1, 2], [3, 1e39]], "eps": 1e-5, "seed": 1, "name": "a"}"#, "\"rows.1.1\""),
                            (#"{"rows": [], "eps": 1e300, "seed": 1, "name": "a"}"#, "\"eps\""),
                            // Below single precision's smallest number: JSONDecoder refuses it as well.
                            (#"{"rows": [[0.5, 1e-50]], "eps": 1e-5, "seed": 1, "name": "a"}"#, "\"rows.0.1\": 1e-50 does not fit"),
                            (#"{"rows": [[0.5]], "eps": 1e-5, "seed": -5, "name": "a"}"#, "\"seed\": -5 does not fit"),
                            // Several out of range (a scores file written in float64): the first, with their count.
                            (#"{"rows": [[1e39, 2], [3, -1e40]], "eps": 1e-5, "seed": 1, "name": "a"}"#,
                             "\"rows.0.0\": 1e+39 does not fit the type of number expected here (the likeliest key, the first of 2 numbers beyond single precision")] {
            expectShadowError(["state.json", key, "does not fit the type of number"]) {
                _ = try ConfigDecoding.decode(State.self, from: Data(json.utf8), path: "state.json")
            }
        }
        // An unknown value of an enumeration is said in JSON's words.
        enum Token: String, Decodable { case first, last }
        struct Tokens: Decodable { let token: Token }
        expectShadowError(["t.json", "\"token\"", "\"middle one\" is not one of the values this key takes"]) {
            _ = try ConfigDecoding.decode(Tokens.self, from: Data(#"{"token": "middle one"}"#.utf8), path: "t.json")
        }
        expectShadowError(["sizes.json", "not valid JSON"]) {
            _ = try ConfigDecoding.decode(Sizes.self, from: Data(#"{"layers": 2"#.utf8), path: "sizes.json")
        }
    }

    @Test("a key given twice in one object is refused, naming it: JSONDecoder would read the first, Python the last")
    func repeatedKeys() throws {
        let dir = try CheckpointWriter.directory()
        let config = dir + "/config.json"
        var text = try String(contentsOfFile: config, encoding: .utf8)
        text.removeLast()   // the closing brace
        try (text + #", "rms_norm_eps": 5.0}"#).write(toFile: config, atomically: true, encoding: .utf8)
        expectShadowError([config, "key \"rms_norm_eps\": is given twice in one object"]) { _ = try ModelLoader.load(path: dir) }
        struct Outer: Decodable { let inner: [[String: Int]] }
        expectShadowError(["o.json", "key \"inner.1.b\": is given twice"]) {
            _ = try ConfigDecoding.decode(Outer.self, from: Data(#"{"inner": [{"b": 1}, {"a": 1, "b": 2, "b": 3}]}"#.utf8), path: "o.json")
        }
        // The same key in two objects is no repeat.
        #expect(try ConfigDecoding.decode(Outer.self, from: Data(#"{"inner": [{"b": 1}, {"b": 2}]}"#.utf8), path: "o.json").inner.count == 2)
    }

    @Test("a value of the wrong kind is named in JSON's words (an object, an array, a number), not Swift's type names")
    func jsonKindNames() throws {
        struct Nested: Decodable { let inner: [String: Int]; let rows: [[Float]]; let loss: Float; let name: String }
        let cases: [(json: String, key: String, expected: String)] = [
            (#"{"inner": 3, "rows": [], "loss": 1, "name": "a"}"#, "inner", "expected an object"),
            (#"{"inner": {}, "rows": {}, "loss": 1, "name": "a"}"#, "rows", "expected an array"),
            (#"{"inner": {}, "rows": [], "loss": "nan", "name": "a"}"#, "loss", "expected a number"),
            (#"{"inner": {}, "rows": [], "loss": 1, "name": 2}"#, "name", "expected a string"),
            (#"{"inner": {}, "rows": [], "loss": 1, "name": null}"#, "name", "expected a string, found null"),
            (#"[1]"#, "", "expected an object"),
        ]
        for c in cases {
            do {
                _ = try ConfigDecoding.decode(Nested.self, from: Data(c.json.utf8), path: "n.json")
                Issue.record("\(c.json) decoded")
            } catch let error as ShadowError {
                let text = String(describing: error)
                #expect(text.hasSuffix(c.expected) && (c.key.isEmpty || text.contains("\"\(c.key)\"")), "\(text)")
                #expect(!text.contains("Dictionary") && !text.contains("Array<") && !text.contains("Float"), "\(text)")
            }
        }
    }
}
