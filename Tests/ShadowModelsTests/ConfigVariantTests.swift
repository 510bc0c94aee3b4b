import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels
import ShadowTestSupport

// Configurations found by a differential check against transformers on tiny random checkpoints
// (2026-12-04): each was accepted and computed wrongly, or refused unclearly.
@Suite("Configuration variants")
struct ConfigVariantTests {
    @Test("sliding-window attention applies in the layers where transformers applies it, and keeps the context")
    func slidingWindow() throws {
        // The writer's checkpoint has 1 layer and a context of 32.
        let cases: [(edit: [String: Any], window: Int?)] = [
            (["model_type": "mistral", "sliding_window": 16], 16),
            (["model_type": "phi3", "sliding_window": 16], 16),
            (["model_type": "mistral", "sliding_window": NSNull()], nil),
            (["model_type": "mistral", "sliding_window": 4096], nil),   // no shorter than the context
            (["model_type": "qwen2", "sliding_window": 16], nil),
            (["model_type": "qwen2", "sliding_window": 16, "use_sliding_window": true, "max_window_layers": 0], 16),
            (["model_type": "qwen2", "sliding_window": 16, "use_sliding_window": true], nil),   // max_window_layers 28 ≥ 1 layer
            (["model_type": "qwen2", "sliding_window": 16, "use_sliding_window": true, "layer_types": ["sliding_attention"]], 16),
            (["model_type": "qwen2", "sliding_window": 16, "use_sliding_window": true, "max_window_layers": 0,
              "layer_types": ["full_attention"]], nil),
            (["model_type": "llama", "sliding_window": 16], nil),   // transformers' Llama has none
        ]
        for (edit, window) in cases {
            let dir = try CheckpointWriter.directory(config: { config in
                for (key, value) in edit { config[key] = value }
            }, tensors: { tensors in
                // Qwen2 always has q/k/v biases; Phi-3's q/k/v and gate/up are fused.
                if edit["model_type"] as? String == "qwen2" { tensors += Self.biases(attention: true, output: false, mlp: false) }
                if edit["model_type"] as? String == "phi3" { tensors = Self.fused(tensors) }
            })
            let model = try #require(try ModelLoader.load(path: dir).model as? LlamaModel)
            #expect(model.shape.maxContext == 32 && model.config.window(layer: 0) == window, "\(edit)")
        }
        // layer_types must name every layer.
        let bad = try CheckpointWriter.directory(config: { config in
            for (key, value) in ["model_type": "qwen2", "sliding_window": 16, "use_sliding_window": true,
                                 "layer_types": ["full_attention", "sliding_attention"]] as [String: Any] { config[key] = value }
        }, tensors: { $0 += Self.biases(attention: true, output: false, mlp: false) })
        expectShadowError(["config.json", "layer_types", "2 entries for 1 layers"]) { _ = try ModelLoader.load(path: bad) }
        // Also where no sliding window reads it, as transformers 5 checks it; Llama's is not read.
        for (modelType, types, problem) in [("qwen3", ["full_attention", "full_attention"], "2 entries for 1 layers"),
                                            ("smollm3", ["weird"], "unknown layer type \"weird\""), ("llama", ["weird"], nil)] {
            let directory = try CheckpointWriter.directory(config: { $0["model_type"] = modelType; $0["layer_types"] = types })
            if let problem {
                expectShadowError(["config.json", "\"layer_types\"", problem]) { _ = try ModelLoader.load(path: directory) }
            } else {
                _ = try ModelLoader.load(path: directory)
            }
        }
    }

    /// The writer's checkpoint's tensors with q/k/v and gate/up fused as Phi-3 stores them.
    static func fused(_ tensors: [(String, [Int])]) -> [(String, [Int])] {
        let p = "model.layers.0."
        let separate = ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight"]
        return tensors.filter { name, _ in !separate.contains { name == p + $0 } }
            + [(p + "self_attn.qkv_proj.weight", [16, 8]), (p + "mlp.gate_up_proj.weight", [32, 8])]
    }

    /// The writer's checkpoint's bias tensors: q/k/v, o_proj, gate/up/down.
    static func biases(attention: Bool, output: Bool, mlp: Bool) -> [(String, [Int])] {
        let p = "model.layers.0."
        return (attention ? [(p + "self_attn.q_proj.bias", [8]), (p + "self_attn.k_proj.bias", [4]), (p + "self_attn.v_proj.bias", [4])] : [])
            + (output ? [(p + "self_attn.o_proj.bias", [8])] : [])
            + (mlp ? [(p + "mlp.gate_proj.bias", [16]), (p + "mlp.up_proj.bias", [16]), (p + "mlp.down_proj.bias", [8])] : [])
    }

    @Test("biases are read where transformers builds them: Llama's attention_bias (q, k, v, o) and mlp_bias, Qwen3's attention_bias, Qwen2's q/k/v always, Mistral's none")
    func biasesPerArchitecture() throws {
        let cases: [(config: [String: Any], attention: Bool, output: Bool, mlp: Bool)] = [
            (["attention_bias": true], true, true, false),
            (["mlp_bias": true], false, false, true),
            (["attention_bias": true, "mlp_bias": true], true, true, true),
            (["model_type": "qwen3", "attention_bias": true, "mlp_bias": true], true, true, false),
            (["model_type": "qwen2", "attention_bias": false, "mlp_bias": true], true, false, false),
            (["model_type": "mistral", "attention_bias": true, "mlp_bias": true], false, false, false),
        ]
        for (config, attention, output, mlp) in cases {
            var edited = config
            if config["model_type"] as? String == "qwen3" { edited["head_dim"] = 4 }
            let tensors = Self.biases(attention: attention, output: output, mlp: mlp)
                + (config["model_type"] as? String == "qwen3"
                   ? [("model.layers.0.self_attn.q_norm.weight", [4]), ("model.layers.0.self_attn.k_norm.weight", [4])] : [])
            let dir = try CheckpointWriter.directory(config: { c in for (key, value) in edited { c[key] = value } }, tensors: { $0 += tensors })
            let model = try #require(try ModelLoader.load(path: dir).model as? LlamaModel, "\(config)")
            let block = model.blocks[0]
            #expect((block.q.bias != nil, block.output.bias != nil, block.gate.bias != nil, block.down.bias != nil)
                    == (attention, output, mlp, mlp), "\(config)")
            // A bias the config promises but the file lacks is named.
            if let missing = tensors.first {
                let short = try CheckpointWriter.directory(config: { c in for (key, value) in edited { c[key] = value } },
                                                           tensors: { $0 += tensors.dropFirst() })
                expectShadowError([missing.0]) { _ = try ModelLoader.load(path: short) }
            }
        }
    }

    @Test("SmolLM3's no_rope_layers: one 0 or 1 per layer, by default every 4th layer without RoPE")
    func noRopeLayers() throws {
        func config(_ edit: [String: Any]) throws -> LlamaConfig {
            var json: [String: Any] = CheckpointWriter.config
            json["model_type"] = "smollm3"
            json["num_hidden_layers"] = 5
            for (key, value) in edit { json[key] = value }
            return try ConfigDecoding.decode(LlamaConfig.self, from: try JSONSerialization.data(withJSONObject: json), path: "config.json")
        }
        #expect(try config([:]).ropeLayers == [true, true, true, false, true])
        #expect(try config(["no_rope_layer_interval": 2]).ropeLayers == [true, false, true, false, true])
        #expect(try config(["no_rope_layers": [0, 1, 1, 1, 0]]).ropeLayers == [false, true, true, true, false])
        expectShadowError(["config.json", "no_rope_layers", "each of the 5 layers"]) { _ = try config(["no_rope_layers": [1, 1]]) }
        expectShadowError(["no_rope_layers"]) { _ = try config(["no_rope_layers": [1, 2, 1, 1, 1]]) }
        // Other architectures rotate every layer whatever the key says.
        var llama: [String: Any] = CheckpointWriter.config
        llama["no_rope_layers"] = [0]
        #expect(try ConfigDecoding.decode(LlamaConfig.self, from: try JSONSerialization.data(withJSONObject: llama), path: "config.json").ropeLayers == nil)
    }

    @Test("hidden_act swish is SiLU by another name")
    func swish() throws {
        let swish = try ModelLoader.load(path: try CheckpointWriter.directory(config: { $0["hidden_act"] = "swish" }))
        let silu = try ModelLoader.load(path: try CheckpointWriter.directory(config: { $0["hidden_act"] = "silu" }))
        let tokens = [1, 2, 3]
        let a = swish.model.forward(tokens, cache: swish.model.makeCache(), logits: .last)
        let b = silu.model.forward(tokens, cache: silu.model.makeCache(), logits: .last)
        #expect(a == b)
    }

    @Test("an OPT config with tie_word_embeddings false is read as untied (its lm_head.weight is its head), and a tied one runs a saved head of other contents")
    func untiedOPT() throws {
        let config: [String: Any] = ["model_type": "opt", "hidden_size": 8, "ffn_dim": 16, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "vocab_size": 10, "max_position_embeddings": 32]
        let p = "model.decoder.layers.0."
        var tensors: [(String, [Int])] = [("model.decoder.embed_tokens.weight", [10, 8]), ("model.decoder.embed_positions.weight", [34, 8]),
                                          ("model.decoder.final_layer_norm.weight", [8]), ("model.decoder.final_layer_norm.bias", [8]),
                                          ("lm_head.weight", [10, 8])]
        for (name, shape) in [("self_attn.q_proj", [8, 8]), ("self_attn.k_proj", [8, 8]), ("self_attn.v_proj", [8, 8]),
                              ("self_attn.out_proj", [8, 8]), ("fc1", [16, 8]), ("fc2", [8, 16])] {
            tensors += [(p + name + ".weight", shape), (p + name + ".bias", [shape[0]])]
        }
        tensors += ["self_attn_layer_norm", "final_layer_norm"].flatMap { [(p + $0 + ".weight", [8]), (p + $0 + ".bias", [8])] }
        func load(tied: Bool?, head: Bool = true) throws -> OPTModel {
            let dir = try CheckpointWriter.directory(config: { edit in
                edit = config
                if let tied { edit["tie_word_embeddings"] = tied }
            }, tensors: { $0 = head ? tensors : tensors.filter { $0.0 != "lm_head.weight" } })
            return try #require(try ModelLoader.load(path: dir).model as? OPTModel)
        }
        // The writer fills tensors with a repeating pattern from their offsets: the saved head differs from the embedding.
        let untied = try load(tied: false)
        #expect(untied.lmHead !== untied.embedding && !untied.config.tieWordEmbeddings)
        let a = untied.forward([1, 2], cache: untied.makeCache(), logits: .last)
        // A tied config whose checkpoint holds a head of other contents runs that head, as
        // transformers does not tie unequal tensors; without one the head is the embedding.
        for tied in [nil, true] {
            let model = try load(tied: tied)
            #expect(model.lmHead !== model.embedding && model.forward([1, 2], cache: model.makeCache(), logits: .last) == a)
            let headless = try load(tied: tied, head: false)
            #expect(headless.lmHead === headless.embedding && headless.forward([1, 2], cache: headless.makeCache(), logits: .last) != a)
        }
    }

    /// A GGUF holding only `metadata` and, if given, rope_freqs.weight.
    static func ropeGGUF(_ metadata: [(String, GGUFValue)], factors: [Float]?) throws -> GGUFFile {
        var builder = GGUFBuilder()
        for (key, value) in metadata { builder.add(key, value) }
        if let factors {
            builder.tensor("rope_freqs.weight", ne: [UInt64(factors.count)], type: .f32,
                           data: factors.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
        }
        let path = TestScratch.path("rope", suffix: ".gguf")
        try Data(builder.bytes()).write(to: URL(fileURLWithPath: path))
        return try GGUFFile(path: path)
    }

    @Test("a GGUF's RoPE scaling is read: rope_freqs.weight divisors, linear with its factor; others are refused by key")
    func ggufRopeScaling() throws {
        func rope(_ metadata: [(String, GGUFValue)], factors: [Float]? = nil) throws -> RopeConfig {
            let file = try Self.ropeGGUF([("llama.rope.freq_base", .float32(500_000))] + metadata, factors: factors)
            return try ModelLoader.ggufRope(file, TensorTable(file), arch: "llama", headDim: 8, context: 2048)
        }
        #expect(try rope([]) == RopeConfig(theta: 500_000))
        #expect(try rope([], factors: [1, 1.5, 4, 8]) == RopeConfig(theta: 500_000, scaling: .frequencyFactors([1, 1.5, 4, 8])))
        #expect(try rope([("llama.rope.scaling.type", .string("linear")), ("llama.rope.scaling.factor", .float32(2))])
                == RopeConfig(theta: 500_000, scaling: .linear(factor: 2)))
        expectShadowError(["llama.rope.scaling.type", "yarn", "not supported"]) {
            _ = try rope([("llama.rope.scaling.type", .string("yarn")), ("llama.rope.scaling.factor", .float32(4))])
        }
        // As llama.cpp reads them: the type defaults to linear, the factor to rope.scale_linear, and 0 or 1 is none.
        #expect(try rope([("llama.rope.scaling.factor", .float32(4))]) == RopeConfig(theta: 500_000, scaling: .linear(factor: 4)))
        #expect(try rope([("llama.rope.scale_linear", .float32(2))]) == RopeConfig(theta: 500_000, scaling: .linear(factor: 2)))
        #expect(try rope([("llama.rope.scaling.type", .string("linear")), ("llama.rope.scaling.factor", .float32(0))]) == RopeConfig(theta: 500_000))
        #expect(try rope([("llama.rope.scaling.type", .string("none")), ("llama.rope.scaling.factor", .float32(1))], factors: [1, 2, 3, 4])
                == RopeConfig(theta: 500_000, scaling: .frequencyFactors([1, 2, 3, 4])))
        expectShadowError(["llama.rope.scaling.factor", "beside rope_freqs.weight"]) {
            _ = try rope([("llama.rope.scaling.factor", .float32(8))], factors: [1, 2, 3, 4])
        }
        expectShadowError(["rope_freqs.weight", "positive"]) { _ = try rope([], factors: [1, 0, 4, 8]) }
        expectShadowError(["rope_freqs.weight", "shape"]) { _ = try rope([], factors: [1, 2]) }
    }

    @Test("per-frequency divisors (GGUF's rope_freqs.weight) give Llama 3's scaled frequencies")
    func frequencyFactors() {
        let llama3 = RopeConfig(theta: 500_000, scaling: .llama3(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4,
                                                                 originalContext: 64))
        let plain = RopeConfig(theta: 500_000).inverseFrequencies(headDim: 64)
        let scaled = llama3.inverseFrequencies(headDim: 64)
        // As llama.cpp's converter writes them: the unscaled frequency over the scaled one.
        let factors = zip(plain, scaled).map { $0 / $1 }
        #expect(Set(factors.map { ($0 * 100).rounded() }).count > 2)   // all three bands: 1, 8 and between
        let fromFactors = RopeConfig(theta: 500_000, scaling: .frequencyFactors(factors)).inverseFrequencies(headDim: 64)
        for (x, y) in zip(fromFactors, scaled) { #expect(abs(x - y) <= 1e-6 * abs(y)) }
    }
}
