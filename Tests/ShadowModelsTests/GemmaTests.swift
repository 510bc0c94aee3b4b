import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels
import ShadowTestSupport

// The logits, NLL and gradients of tiny-gemma2 and tiny-gemma3 are checked with the other fixtures
// (ReferenceTests, ReferenceGradientTests, SparseExecutionTests, …); these pin how its config is read.
@Suite("Gemma 2 and 3: config keys, defaults and refusals")
struct GemmaTests {
    /// Shaped like gemma-3-270m's config.json on the hub (the transformers 4.x layout).
    static var hubConfig: [String: Any] { [
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "attention_bias": false, "attn_logit_softcapping": NSNull(), "final_logit_softcapping": NSNull(),
        "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "head_dim": 256,
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 640, "intermediate_size": 2048,
        "layer_types": (0..<18).map { ($0 + 1) % 6 == 0 ? "full_attention" : "sliding_attention" },
        "max_position_embeddings": 32768, "num_attention_heads": 4, "num_hidden_layers": 18,
        "num_key_value_heads": 1, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6,
        "rope_local_base_freq": 10000.0, "rope_scaling": NSNull(), "rope_theta": 1000000.0,
        "sliding_window": 512, "_sliding_window_pattern": 6, "torch_dtype": "bfloat16",
        "use_bidirectional_attention": false, "vocab_size": 262144,
    ] }

    static func decode(_ json: [String: Any]) throws -> LlamaConfig {
        let config = try ConfigDecoding.decode(LlamaConfig.self, from: try JSONSerialization.data(withJSONObject: json), path: "config.json")
        try config.validate(path: "config.json")
        return config
    }

    static func decodingError(_ json: [String: Any]) -> String {
        do {
            _ = try decode(json)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test("a hub config reads as Gemma 3: GeGLU, √d embedding scale, query_pre_attn_scalar, sliding layers with their own RoPE base")
    func hubConfig() throws {
        let config = try Self.decode(Self.hubConfig)
        #expect(config.activation == .geluTanh && config.queryKeyNorm && config.tieWordEmbeddings)
        #expect(config.embeddingScale == Float(Double(640).squareRoot()))
        #expect(config.attentionScale == Float(1) / 16)
        #expect(config.slidingWindow == 512 && config.window(layer: 0) == 512 && config.window(layer: 5) == nil)
        #expect(config.localRopeLayers == (0..<18).map { ($0 + 1) % 6 != 0 })
        #expect(config.rope == RopeConfig(theta: 1_000_000) && config.localRope == RopeConfig(theta: 10_000))
        #expect(config.normWeightOffset == 1 && config.headDim == 256 && config.rmsNormEps == 1e-6)
        #expect(config.bosTokenID == 2 && config.eosTokenIDs == [1] && !config.attentionBias && !config.mlpBias)
    }

    @Test("without layer_types every sixth layer attends fully (sliding_window_pattern), and missing keys take Gemma3TextConfig's defaults")
    func defaults() throws {
        var json = Self.hubConfig
        for key in ["layer_types", "rope_theta", "rope_local_base_freq", "query_pre_attn_scalar", "head_dim",
                    "tie_word_embeddings", "hidden_activation", "max_position_embeddings", "sliding_window",
                    "bos_token_id", "eos_token_id", "rms_norm_eps"] {
            json[key] = nil
        }
        let config = try Self.decode(json)
        #expect(config.localRopeLayers == (0..<18).map { ($0 + 1) % 6 != 0 })
        #expect(config.slidingWindow == 4096 && config.maxContext == 131_072 && config.headDim == 256)
        #expect(config.rope.theta == 1_000_000 && config.localRope?.theta == 10_000 && config.attentionScale == Float(1) / 16)
        #expect(config.tieWordEmbeddings && config.activation == .geluTanh && config.bosTokenID == 2 && config.eosTokenIDs == [1])
        json["sliding_window_pattern"] = 3
        #expect(try Self.decode(json).localRopeLayers == (0..<18).map { ($0 + 1) % 3 != 0 })
    }

    @Test("rope_scaling applies to the full layers only; transformers 5's rope_parameters per layer type read the same")
    func ropeByLayerType() throws {
        var old = Self.hubConfig
        old["rope_scaling"] = ["rope_type": "linear", "factor": 8.0]
        let oldConfig = try Self.decode(old)
        #expect(oldConfig.rope == RopeConfig(theta: 1_000_000, scaling: .linear(factor: 8)))
        #expect(oldConfig.localRope == RopeConfig(theta: 10_000))
        var new = Self.hubConfig
        for key in ["rope_scaling", "rope_theta", "rope_local_base_freq"] { new[key] = nil }
        new["rope_parameters"] = [
            "full_attention": ["rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0],
            "sliding_attention": ["rope_type": "default", "rope_theta": 10000.0],
        ]
        #expect(try Self.decode(new) == oldConfig)
    }

    @Test("rope_parameters as transformers reads it: other keys ignored, a flat object not read, a rope_scaling beside it applied to the full layers; hidden_act beside hidden_activation ignored")
    func ropeParametersAsTransformersReadsThem() throws {
        var json = Self.hubConfig
        for key in ["rope_scaling", "rope_theta", "rope_local_base_freq"] { json[key] = nil }
        json["rope_parameters"] = ["full_attention": ["rope_type": "default", "rope_theta": 50000.0],
                                   "sliding_attention": ["rope_type": "default", "rope_theta": 5000.0], "note": [1, 2]]
        json["hidden_act"] = "gelu_pytorch_tanh"   // Gemma 2-style files carry both
        var config = try Self.decode(json)
        #expect(config.rope == RopeConfig(theta: 50000) && config.localRope == RopeConfig(theta: 5000))
        json["rope_scaling"] = ["rope_type": "linear", "factor": 4.0]
        config = try Self.decode(json)
        #expect(config.rope == RopeConfig(theta: 50000, scaling: .linear(factor: 4)) && config.localRope == RopeConfig(theta: 5000))
        json["rope_scaling"] = nil
        json["rope_parameters"] = ["rope_type": "default", "rope_theta": 100.0]
        config = try Self.decode(json)
        #expect(config.rope == RopeConfig(theta: 1_000_000) && config.localRope == RopeConfig(theta: 10_000))
    }

    @Test("Gemma 2: soft-caps 50 and 30 unless given (null turns one off), even layers slide, one RoPE, no q/k norms")
    func gemma2() throws {
        var json = Self.hubConfig
        json["model_type"] = "gemma2"
        for key in ["layer_types", "attn_logit_softcapping", "final_logit_softcapping", "rope_local_base_freq"] { json[key] = nil }
        json["rope_theta"] = 10000.0
        var config = try Self.decode(json)
        #expect(config.attentionSoftcap == 50 && config.logitSoftcap == 30 && !config.queryKeyNorm)
        #expect(config.slidingLayers == (0..<18).map { $0 % 2 == 0 } && config.localRopeLayers == nil && config.localRope == nil)
        #expect(config.rope == RopeConfig(theta: 10000) && config.activation == .geluTanh && config.normWeightOffset == 1)
        json["final_logit_softcapping"] = NSNull()
        json["attn_logit_softcapping"] = 20.0
        config = try Self.decode(json)
        #expect(config.attentionSoftcap == 20 && config.logitSoftcap == nil)
        json["max_position_embeddings"] = nil
        #expect(try Self.decode(json).maxContext == 8192)
        // Gemma 2 has one RoPE: per-layer-type parameters are refused, not ignored.
        json["rope_parameters"] = ["full_attention": ["rope_type": "default", "rope_theta": 5000.0]]
        #expect(Self.decodingError(json).contains("Gemma 2 has one RoPE"))
    }

    @Test("Gemma 3 caps only its logits: an attn_logit_softcapping is checked and ignored, as transformers ignores it")
    func gemma3Softcaps() throws {
        var json = Self.hubConfig
        json["attn_logit_softcapping"] = 2.0
        json["final_logit_softcapping"] = 3.0
        let config = try Self.decode(json)
        #expect(config.attentionSoftcap == nil && config.logitSoftcap == 3)
        json["attn_logit_softcapping"] = -1.0
        #expect(Self.decodingError(json).contains("attn_logit_softcapping"))
        // A config built in code is checked too: a cap of 0 would divide by zero.
        var built = config
        built.logitSoftcap = 0
        expectShadowError(["config.json", "final_logit_softcapping"]) { try built.validate(path: "config.json") }
    }

    /// Values as JSON text (test arguments must be Sendable).
    @Test("exact GELU, bidirectional attention, odd layer types, nulls, malformed rope_parameters and bad scales are refused naming the key", arguments: [
        ("attn_logit_softcapping", "0", "positive"),
        ("hidden_activation", "\"gelu\"", "gelu_pytorch_tanh"),
        ("sliding_window", "null", "got null"),
        ("query_pre_attn_scalar", "null", "got null"),
        ("rope_parameters", "{\"sliding_attention\": \"default\"}", "sliding_attention"),
        ("rope_parameters", "{\"full_attention\": {\"rope_type\": \"yarn\"}}", "unsupported rope type"),
        ("use_bidirectional_attention", "true", "bidirectional"),
        ("layer_types", "[\"sliding_attention\"]", "1 entries for 18 layers"),
        ("layer_types", "[" + Array(repeating: "\"chunked_attention\"", count: 18).joined(separator: ",") + "]", "unknown layer type"),
        ("query_pre_attn_scalar", "0", "positive"),
        ("rope_local_base_freq", "-1.0", "positive"),
    ])
    func refusals(key: String, value: String, reason: String) throws {
        var json = Self.hubConfig
        json[key] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        let message = Self.decodingError(json)
        #expect(message.contains(key) && message.contains(reason), "\(message)")
    }

    @Test("GGUF metadata as llama.cpp reads it: Gemma 2's window 4096 and caps 50/30 when absent, Gemma 3's sliding base rope.freq_base_swa else 10,000 and full attention without a window, the sliding period from sliding_window_pattern, d/H scores for the 27B models")
    func ggufDefaults() throws {
        func config(_ arch: String, layers: Int = 12, _ metadata: [(String, GGUFValue)]) throws -> LlamaConfig {
            var builder = GGUFBuilder()
            for (key, value) in metadata { builder.add("\(arch).\(key)", value) }
            let path = TestScratch.path("gemma-\(arch)-metadata", suffix: ".gguf")
            try Data(builder.bytes()).write(to: URL(fileURLWithPath: path))
            var config = LlamaConfig(modelType: arch == "gemma3" ? "gemma3_text" : "gemma2", hiddenSize: 64, intermediateSize: 128,
                                     layers: layers, heads: 4, kvHeads: 2, headDim: 24, vocabularySize: 10, maxContext: 8192,
                                     rope: RopeConfig(theta: 10000, scaling: .linear(factor: 2)))
            try config.readGemmaGGUF(try GGUFFile(path: path), arch: arch)
            return config
        }
        let gemma2 = try config("gemma2", [])
        #expect(gemma2.slidingWindow == 4096 && gemma2.slidingLayers == (0..<12).map { $0 % 2 == 0 })
        #expect(gemma2.attentionSoftcap == 50 && gemma2.logitSoftcap == 30 && gemma2.localRope == nil && !gemma2.queryKeyNorm)
        let swa = try config("gemma2", [("rope.freq_base_swa", .float32(5000)), ("attn_logit_softcapping", .float32(20))])
        #expect(swa.localRope == RopeConfig(theta: 5000, scaling: .linear(factor: 2)) && swa.attentionSoftcap == 20)
        #expect(try config("gemma2", layers: 46, []).attentionScale == 1 / Float(16).squareRoot())   // d/H = 64/4

        let gemma3 = try config("gemma3", [("attention.sliding_window", .uint32(512)), ("rope.freq_base_swa", .float32(500))])
        #expect(gemma3.slidingLayers == (0..<12).map { ($0 + 1) % 6 != 0 } && gemma3.localRope == RopeConfig(theta: 500))
        #expect(try config("gemma3", [("attention.sliding_window", .uint32(512))]).localRope == RopeConfig(theta: 10_000))
        #expect(gemma3.attentionSoftcap == nil && gemma3.logitSoftcap == nil && gemma3.queryKeyNorm)
        #expect(gemma3.attentionScale == 1 / Float(24).squareRoot())
        #expect(try config("gemma3", layers: 62, [("attention.sliding_window", .uint32(512))]).attentionScale == 1 / Float(16).squareRoot())
        // Without a window (or with 0) a Gemma 3 file attends fully in every layer, as newer llama.cpp runs it.
        for metadata in [[], [("attention.sliding_window", GGUFValue.uint32(0))]] {
            let full = try config("gemma3", metadata)
            #expect(full.slidingWindow == nil && full.slidingLayers == nil && full.localRope == nil && full.localRopeLayers == nil)
        }
        expectShadowError(["gemma2.attention.sliding_window", "positive", "0"]) { _ = try config("gemma2", [("attention.sliding_window", .uint32(0))]) }
        // attention.sliding_window_pattern sets the period: layer l slides when l mod p < p − 1 (0: all, 1: none).
        let period3 = try config("gemma3", [("attention.sliding_window", .uint32(512)), ("attention.sliding_window_pattern", .uint32(3))])
        #expect(period3.slidingLayers == (0..<12).map { $0 % 3 != 2 } && period3.localRopeLayers == period3.slidingLayers)
        #expect(try config("gemma2", [("attention.sliding_window_pattern", .uint32(0))]).slidingLayers == Array(repeating: true, count: 12))
        let none = try config("gemma2", [("attention.sliding_window_pattern", .uint32(1))])
        #expect(none.slidingWindow == nil && none.slidingLayers == nil && none.attentionSoftcap == 50)
        expectShadowError(["gemma2.attention.sliding_window_pattern", "expected"]) {
            _ = try config("gemma2", [("attention.sliding_window_pattern", .string("2"))])
        }
        expectShadowError(["gemma3.attention.sliding_window_pattern", "period"]) {
            _ = try config("gemma3", [("attention.sliding_window", .uint32(512)), ("attention.sliding_window_pattern", .int32(-2))])
        }
        // Without a window Gemma 3 reads no pattern; a per-layer array is passed over, as llama.cpp does for these.
        #expect(try config("gemma3", [("attention.sliding_window_pattern", .int32(-2))]).slidingLayers == nil)
        let listed = try config("gemma2", [("attention.sliding_window_pattern", .array(.bool(Array(repeating: true, count: 12))))])
        #expect(listed.slidingLayers == (0..<12).map { $0 % 2 == 0 })
        expectShadowError(["gemma2.final_logit_softcapping", "positive"]) { _ = try config("gemma2", [("final_logit_softcapping", .float32(0))]) }
    }

    /// Shaped like gemma-3-4b-it's config.json on the hub: text_config names only what differs
    /// from Gemma3TextConfig's defaults; the chat model's stops are the top-level eos_token_id.
    static var multimodalHubConfig: [String: Any] { [
        "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
        "boi_token_index": 255_999, "eoi_token_index": 256_000, "eos_token_id": [1, 106], "image_token_index": 262_144,
        "initializer_range": 0.02, "mm_tokens_per_image": 256, "torch_dtype": "bfloat16",
        "text_config": [
            "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34,
            "rope_scaling": ["factor": 8.0, "rope_type": "linear"], "sliding_window": 1024,
        ] as [String: Any],
        "vision_config": ["hidden_size": 1152, "image_size": 896, "model_type": "siglip_vision_model", "patch_size": 14] as [String: Any],
    ] }

    static func decodeMultimodal(_ json: [String: Any]) throws -> LlamaConfig {
        try Gemma3MultimodalConfig.read(try JSONSerialization.data(withJSONObject: json), path: "config.json")
    }

    @Test("a multimodal Gemma 3 config reads its text_config with Gemma3TextConfig's defaults and the top-level eos_token_id")
    func multimodalConfig() throws {
        var json = Self.multimodalHubConfig
        let config = try Self.decodeMultimodal(json)
        #expect(config.modelType == "gemma3_text" && config.hiddenSize == 2560 && config.intermediateSize == 10240 && config.layers == 34)
        #expect(config.heads == 8 && config.kvHeads == 4 && config.headDim == 256 && config.vocabularySize == 262_208)
        #expect(config.eosTokenIDs == [1, 106] && config.bosTokenID == 2 && config.tieWordEmbeddings && config.queryKeyNorm)
        #expect(config.slidingWindow == 1024 && config.slidingLayers == (0..<34).map { ($0 + 1) % 6 != 0 })
        #expect(config.rope == RopeConfig(theta: 1_000_000, scaling: .linear(factor: 8)) && config.localRope == RopeConfig(theta: 10_000))
        #expect(config.attentionScale == Float(1) / 16 && config.embeddingScale == Float(Double(2560).squareRoot()))
        // text_config's own eos_token_id wins; without model_type it is still Gemma 3's text model.
        var text = json["text_config"] as! [String: Any]
        text["eos_token_id"] = 7
        text["model_type"] = nil
        json["text_config"] = text
        #expect(try Self.decodeMultimodal(json).eosTokenIDs == [7])
        // As transformers reads it: the top-level tie_word_embeddings ties the head, text_config's
        // does not; Gemma3ForConditionalGeneration caps no logits.
        text["tie_word_embeddings"] = false
        text["final_logit_softcapping"] = 30.0
        json["text_config"] = text
        let read = try Self.decodeMultimodal(json)
        #expect(read.tieWordEmbeddings && read.logitSoftcap == nil)
        json["tie_word_embeddings"] = false
        #expect(try !Self.decodeMultimodal(json).tieWordEmbeddings)
    }

    @Test("a multimodal config without text_config, with another text model or a bad text key is refused naming the key", arguments: [
        ("text_config", "null", "text_config"),
        ("model_type", "\"llama\"", "text_config.model_type"),
        ("num_hidden_layers", "0", "text_config.num_hidden_layers"),
        ("num_attention_heads", "null", "text_config.num_attention_heads"),
        ("num_key_value_heads", "3", "text_config.num_key_value_heads"),
        ("top-level eos_token_id", "[1, 262208]", "key \"eos_token_id\": 262208 is outside"),
    ])
    func multimodalRefusals(key: String, value: String, expected: String) throws {
        var json = Self.multimodalHubConfig
        let parsed = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        if key == "text_config" {
            json[key] = nil
        } else if key == "top-level eos_token_id" {
            json["eos_token_id"] = parsed
        } else {
            var text = json["text_config"] as! [String: Any]
            text[key] = parsed
            json["text_config"] = text
        }
        expectShadowError(["config.json", expected]) { _ = try Self.decodeMultimodal(json) }
    }

    @Test("Gemma 2's sizes default to Gemma2Config's, Llama's must be given")
    func sizeDefaults() throws {
        var json = Self.hubConfig
        json["model_type"] = "gemma2"
        for key in ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                    "head_dim", "vocab_size", "layer_types", "rope_local_base_freq"] { json[key] = nil }
        let config = try Self.decode(json)
        #expect(config.hiddenSize == 2304 && config.intermediateSize == 9216 && config.layers == 26 && config.heads == 8)
        #expect(config.kvHeads == 4 && config.headDim == 256 && config.vocabularySize == 256_000)
        json["model_type"] = "llama"
        #expect(Self.decodingError(json).contains("hidden_size"))
    }

    /// tiny-gemma3-vision (the hub's `language_model.model.*` layout; its logits are checked in
    /// ReferenceTests) copied with its tensors renamed by `rename` (nil drops one) plus `extra`.
    static func renamedVisionCheckpoint(_ rename: (String) -> String?, extra: [String] = [],
                                        tensors: [(name: String, shape: [Int], values: [Float])] = []) throws -> String {
        let source = Fixtures.path("tiny-gemma3-vision")
        let directory = TestScratch.path("gemma3-vision")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for name in ["config.json", "tokenizer.json"] {
            try FileManager.default.copyItem(atPath: source + "/" + name, toPath: directory + "/" + name)
        }
        let file = try SafetensorsFile(path: source + "/model.safetensors")
        var writer = SafetensorsWriter(metadata: file.metadata)
        for name in file.tensorNames {
            guard let renamed = rename(name) else { continue }
            writer.add(renamed, shape: try file.info(name).shape, values: try file.floats(name))
        }
        for name in extra { writer.add(name, shape: [2], values: [0, 0]) }
        for tensor in tensors { writer.add(tensor.name, shape: tensor.shape, values: tensor.values) }
        try writer.write(to: directory + "/model.safetensors")
        return directory
    }

    @Test("a multimodal Gemma 3 runs its text model from either key layout (the hub's, transformers 5's) and passes over the vision weights only")
    func multimodalKeyLayouts() throws {
        let hub = try ModelLoader.load(path: Fixtures.path("tiny-gemma3-vision"))
        #expect(hub.stopTokens.isSuperset(of: [1, 106]))
        // transformers ≥ 4.52 saves model.language_model.*, model.vision_tower.*, model.multi_modal_projector.*.
        let saved = try ModelLoader.load(path: Self.renamedVisionCheckpoint { name in
            name.hasPrefix("language_model.model.") ? "model.language_model." + name.dropFirst("language_model.model.".count)
                                                    : "model." + name
        })
        let ids = [2, 10, 20, 30, 40, 50, 60]
        let expected = hub.model.forward(ids, cache: hub.model.makeCache(), logits: .all)
        #expect(saved.model.forward(ids, cache: saved.model.makeCache(), logits: .all) == expected)

        // A text tensor nobody reads is refused by its stored name; a missing one is named as stored.
        expectShadowError(["language_model.model.layers.0.self_attn.extra.weight", "unexpected tensor"]) {
            _ = try ModelLoader.load(path: Self.renamedVisionCheckpoint({ $0 }, extra: ["language_model.model.layers.0.self_attn.extra.weight"]))
        }
        expectShadowError(["language_model.model.norm.weight", "missing"]) {
            _ = try ModelLoader.load(path: Self.renamedVisionCheckpoint { $0 == "language_model.model.norm.weight" ? nil : $0 })
        }
        expectShadowError(["model.language_model.layers.0.mlp.up_proj.weight", "two layouts"]) {
            _ = try ModelLoader.load(path: Self.renamedVisionCheckpoint { name in
                name == "language_model.model.layers.0.mlp.up_proj.weight" ? "model.language_model.layers.0.mlp.up_proj.weight" : name
            })
        }
    }

    @Test("a tied config with a stored head of other contents uses that head, as transformers does not tie unequal tensors; an equal copy is the embedding")
    func tiedHeadWithOtherContents() throws {
        let file = try SafetensorsFile(path: Fixtures.path("tiny-gemma3-vision") + "/model.safetensors")
        let name = "language_model.model.embed_tokens.weight"
        let embedding = try file.floats(name), shape = try file.info(name).shape
        let hub = try ModelLoader.load(path: Fixtures.path("tiny-gemma3-vision"))
        let copy = try ModelLoader.load(path: Self.renamedVisionCheckpoint({ $0 }, tensors: [("language_model.lm_head.weight", shape, embedding)]))
        let halved = try ModelLoader.load(path: Self.renamedVisionCheckpoint({ $0 }, tensors: [("language_model.lm_head.weight", shape, embedding.map { $0 / 2 })]))
        let ids = [2, 10, 20, 30, 40]
        let expected = hub.model.forward(ids, cache: hub.model.makeCache(), logits: .all)
        #expect(copy.model.forward(ids, cache: copy.model.makeCache(), logits: .all) == expected)
        let tied = try #require(copy.model as? LlamaModel)
        #expect(tied.lmHead === tied.embedding)
        let actual = halved.model.forward(ids, cache: halved.model.makeCache(), logits: .all)
        let error = zip(actual, expected).map { abs($0 - $1 / 2) }.max()!
        #expect(error <= 1e-6 * expected.map(abs).max()!, "\(error)")
    }
}
