import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels
import ShadowTestSupport

// The logits, NLL and gradients of tiny-phi3, tiny-phi3-longrope and its GGUF are checked with
// the other fixtures (ReferenceTests, ReferenceGradientTests); these pin how the settings are read.
@Suite("Phi-3: fused projections, partial rotary embeddings and LongRoPE")
struct Phi3Tests {
    /// tiny-phi3-longrope's config.json as transformers 5 writes it (rope_parameters).
    static func fixtureConfig() throws -> [String: Any] {
        let url = URL(fileURLWithPath: Fixtures.path("tiny-phi3-longrope/config.json"))
        return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    static func decode(_ json: [String: Any]) throws -> LlamaConfig {
        let config = try ConfigDecoding.decode(LlamaConfig.self, from: try JSONSerialization.data(withJSONObject: json), path: "config.json")
        try config.validate(path: "config.json")
        return config
    }

    /// The same settings in the transformers 4.x layout of the hub's Phi-3.5 / Phi-4-mini files:
    /// a top-level rope_scaling of `type` longrope, partial_rotary_factor and rope_theta.
    static func hubLayout(_ json: [String: Any], type: String = "longrope") throws -> [String: Any] {
        var old = json
        var parameters = try #require(old.removeValue(forKey: "rope_parameters") as? [String: Any])
        old["rope_theta"] = parameters.removeValue(forKey: "rope_theta")
        old["partial_rotary_factor"] = parameters.removeValue(forKey: "partial_rotary_factor")
        parameters.removeValue(forKey: "rope_type")
        parameters.removeValue(forKey: "original_max_position_embeddings")
        parameters["type"] = type
        old["rope_scaling"] = parameters
        return old
    }

    @Test("the transformers 4.x layout (rope_scaling of type longrope or su, a top-level partial_rotary_factor) reads as transformers 5's rope_parameters")
    func hubLayoutReadsTheSame() throws {
        let json = try Self.fixtureConfig()
        let current = try Self.decode(json)
        for type in ["longrope", "su", "yarn"] {   // Phi-3 reads its old "su" and "yarn" as LongRoPE
            let old = try Self.decode(try Self.hubLayout(json, type: type))
            #expect(old.rope == current.rope && old.maxContext == current.maxContext, "\(type)")
        }
        #expect(current.rope.rotaryDimensions == 12 && current.maxContext == 32 && current.fusedProjections)
        // Phi3Config's defaults where keys are missing: a context and an original context of
        // 4096 (the value inside rope_scaling is not read, as transformers does not), eps 1e-5.
        var bare = try Self.hubLayout(json)
        for key in ["max_position_embeddings", "original_max_position_embeddings", "rms_norm_eps"] { bare[key] = nil }
        var scaling = try #require(bare["rope_scaling"] as? [String: Any])
        scaling["original_max_position_embeddings"] = 32
        bare["rope_scaling"] = scaling
        let defaults = try Self.decode(bare)
        #expect(defaults.maxContext == 4096 && defaults.rmsNormEps == 1e-5 && defaults.rope.magnitude == 1)
        guard case .longRope(let longRope) = defaults.rope.scaling, longRope.originalContext == 4096 else { Issue.record("\(defaults.rope)"); return }
    }

    @Test("LongRoPE divides each frequency by its short factor, scales cos and sin by √(1 + ln(max / original) / ln original) unless told, and ends the context at the original one")
    func longRopeValues() throws {
        let config = try Self.decode(try Self.fixtureConfig())
        // transformers' inv_freq and attention_scaling for tiny-phi3-longrope (make_fixtures.py).
        let reference: [Float] = [0.2341536581516266, 0.04367746040225029, 0.011792953126132488,
                                  0.002086942084133625, 0.0009730519959703088, 0.0001507792912889272]
        let frequencies = config.rope.inverseFrequencies(headDim: config.headDim)
        #expect(frequencies.count == 6)
        for (x, y) in zip(frequencies, reference) { #expect(abs(x - y) <= 1e-6 * y) }
        #expect(abs(config.rope.magnitude - 1.1832159566199232) < 1e-6)

        var json = try Self.fixtureConfig()
        var parameters = try #require(json["rope_parameters"] as? [String: Any])
        parameters["attention_factor"] = 1.5
        json["rope_parameters"] = parameters
        #expect(try Self.decode(json).rope.magnitude == 1.5)
        parameters["attention_factor"] = nil
        parameters["factor"] = 2.0
        json["rope_parameters"] = parameters
        #expect(abs(Double(try Self.decode(json).rope.magnitude) - (1 + log(2.0) / log(32.0)).squareRoot()) < 1e-6)
        // Without scaling up (max_position_embeddings at the original context), cos and sin are not scaled.
        json = try Self.fixtureConfig()
        json["max_position_embeddings"] = 32
        #expect(try Self.decode(json).rope.magnitude == 1)

        let model = try #require(try ModelLoader.load(path: Fixtures.path("tiny-phi3-longrope")).model as? LlamaModel)
        #expect(model.contextDescription == "the model's context of 32 (LongRoPE's original context; its long factors (--long-context) reach 128)")
        #expect(try ModelLoader.load(path: Fixtures.path("tiny-phi3")).model.contextLimit == nil)
    }

    @Test("bad LongRoPE and partial rotary settings are refused, naming the key")
    func badSettings() throws {
        func edited(_ edit: (inout [String: Any], inout [String: Any]) -> Void) throws -> [String: Any] {
            var json = try Self.fixtureConfig()
            var parameters = try #require(json["rope_parameters"] as? [String: Any])
            edit(&json, &parameters)
            json["rope_parameters"] = parameters
            return json
        }
        let cases: [(edit: (inout [String: Any], inout [String: Any]) -> Void, words: [String])] = [
            ({ _, p in p["short_factor"] = [1, 2, 3, 4, 5] }, ["rope_parameters", "short_factor", "5 values, expected 6"]),
            ({ _, p in p["long_factor"] = nil }, ["rope_parameters", "long_factor"]),
            ({ _, p in p["long_factor"] = [1, 2, 3, -4, 5, 6] }, ["rope_parameters", "long_factor", "positive", "-4"]),
            // Positive in double precision, 0 in single: --long-context would rotate at infinite frequencies.
            ({ _, p in p["long_factor"] = [1, 2, 3, 4, 5, 1e-50] }, ["\"rope_parameters\"", "single precision"]),
            // Only Phi-3 has a default original context.
            ({ j, p in p["original_max_position_embeddings"] = nil; j["original_max_position_embeddings"] = nil; j["model_type"] = "llama" },
             ["rope_parameters", "original_max_position_embeddings"]),
            ({ _, p in p["attention_factor"] = 0 }, ["rope_parameters", "attention_factor"]),
            ({ _, p in p["partial_rotary_factor"] = 0.1 }, ["rope_parameters", "partial_rotary_factor", "between 2 and 16"]),
            ({ _, p in p["partial_rotary_factor"] = 1.5 }, ["rope_parameters", "partial_rotary_factor"]),
            ({ _, p in p["rope_type"] = "dynamic" }, ["rope_parameters", "dynamic"]),
            ({ _, p in p["partial_rotary_factor"] = 1e300 }, ["rope_parameters", "partial_rotary_factor"]),
            ({ j, p in p["original_max_position_embeddings"] = 1e300; j["original_max_position_embeddings"] = nil; j["model_type"] = "llama" },
             ["rope_parameters", "original_max_position_embeddings"]),
            ({ j, p in p["rope_type"] = "yarn"; j["model_type"] = "llama" }, ["rope_parameters", "yarn"]),
        ]
        for (edit, words) in cases {
            let json = try edited(edit)
            expectShadowError(["config.json"] + words) { _ = try Self.decode(json) }
        }
        // A top-level partial_rotary_factor is named as such.
        var hub = try Self.hubLayout(try Self.fixtureConfig())
        hub["partial_rotary_factor"] = 0.05
        expectShadowError(["config.json", "\"partial_rotary_factor\"", "between 2 and 16"]) { _ = try Self.decode(hub) }
    }

    @Test("a configuration built in code is checked too: windows, sliding layers, rotating dimensions, frequency factors")
    func builtInCode() {
        func config(window: Int? = nil, layers sliding: [Bool]? = nil, rope: RopeConfig = RopeConfig(theta: 10000)) -> LlamaConfig {
            LlamaConfig(modelType: "phi3", hiddenSize: 16, intermediateSize: 32, layers: 2, heads: 2, vocabularySize: 10,
                        slidingWindow: window, slidingLayers: sliding, rope: rope)
        }
        let cases: [(LlamaConfig, [String])] = [
            (config(window: 0), ["sliding_window", "positive"]),
            (config(window: 4, layers: [true]), ["layer_types", "1 entries for 2 layers"]),
            (config(rope: RopeConfig(theta: 10000, rotaryDimensions: 3)), ["partial_rotary_factor", "3 rotating dimensions"]),
            (config(rope: RopeConfig(theta: 10000, scaling: .longRope(.init(shortFactors: [1, 2], longFactors: [1, 2, 3], attentionFactor: 1,
                                                                           originalContext: 8, declaredContext: 16)),
                                     rotaryDimensions: 6)), ["rope_scaling", "2 frequency factors for 3 rotating pairs"]),
            (config(rope: RopeConfig(theta: 10000, scaling: .longRope(.init(shortFactors: [1, 2, 3], longFactors: [1, 2, 3, 4], attentionFactor: 1,
                                                                           originalContext: 8, declaredContext: 16)),
                                     rotaryDimensions: 6)), ["rope_scaling", "4 frequency factors for 3 rotating pairs"]),
        ]
        for (config, words) in cases { expectShadowError(["config.json"] + words) { try config.validate(path: "config.json") } }
        #expect(throws: Never.self) { try config(window: 4, layers: [false, true]).validate(path: "config.json") }
    }

    @Test("Phi-3's sliding_window applies in every layer, as transformers applies it (Phi-3-mini-4k: 2047)")
    func slidingWindow() throws {
        var json = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-phi3/config.json")))) as? [String: Any])
        json["sliding_window"] = 20
        let config = try Self.decode(json)
        #expect(config.maxContext == 128 && (0..<config.layers).allSatisfy { config.window(layer: $0) == 20 })
    }

    @Test("a phi3 GGUF's LongRoPE needs both factor tensors and the original context, and rotates rope.dimension_count dimensions")
    func ggufLongRope() throws {
        let short: [Float] = [1, 2, 3], long: [Float] = [4, 5, 6]
        func rope(_ metadata: [(String, GGUFValue)], short: [Float]? = short, long: [Float]? = long) throws -> RopeConfig {
            var builder = GGUFBuilder()
            for (key, value) in [("phi3.rope.dimension_count", GGUFValue.uint32(6))] + metadata { builder.add(key, value) }
            for (name, factors) in [("rope_factors_short.weight", short), ("rope_factors_long.weight", long)] {
                guard let factors else { continue }
                builder.tensor(name, ne: [UInt64(factors.count)], type: .f32,
                               data: factors.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
            }
            let path = TestScratch.path("phi3-rope", suffix: ".gguf")
            try Data(builder.bytes()).write(to: URL(fileURLWithPath: path))
            let file = try GGUFFile(path: path)
            return try ModelLoader.ggufRope(file, TensorTable(file), arch: "phi3", headDim: 8, context: 128)
        }
        let original: (String, GGUFValue) = ("phi3.rope.scaling.original_context_length", .uint32(64))
        // Without the key, the trained context (128 here), as llama.cpp reads it.
        func longRope(attention: Double, original: Int) -> RopeConfig.Scaling {
            .longRope(.init(shortFactors: short, longFactors: long, attentionFactor: attention, originalContext: original, declaredContext: 128))
        }
        #expect(try rope([]) == RopeConfig(theta: 10000, scaling: longRope(attention: 1, original: 128), rotaryDimensions: 6))
        expectShadowError(["rope_factors_short.weight", "missing"]) { _ = try rope([original], short: nil) }
        #expect(try rope([original, ("phi3.rope.scaling.attn_factor", .float32(1.25))])
                == RopeConfig(theta: 10000, scaling: longRope(attention: 1.25, original: 64), rotaryDimensions: 6))
        #expect(try rope([original]).magnitude == 1)   // no attn_factor: none, as llama.cpp reads it
        expectShadowError(["rope_factors_long.weight", "missing"]) { _ = try rope([original], long: nil) }
        expectShadowError(["phi3.rope.scaling.original_context_length", "positive"]) { _ = try rope([("phi3.rope.scaling.original_context_length", .uint32(0))]) }
        expectShadowError(["rope_factors_short.weight", "shape"]) { _ = try rope([original], short: [1, 2, 3, 4]) }
        expectShadowError(["phi3.rope.scaling.attn_factor", "positive"]) {
            _ = try rope([original, ("phi3.rope.scaling.attn_factor", .float32(-1))])
        }
        // Without the factor tensors: plain RoPE on 6 of the 8 dimensions.
        #expect(try rope([], short: nil, long: nil) == RopeConfig(theta: 10000, rotaryDimensions: 6))
    }

    @Test("with the long factors, one pass over 48 tokens (past the original 32) gives transformers' logits and NLL, from config.json and GGUF alike",
          arguments: ["tiny-phi3-longrope", "tiny-phi3-longrope-gguf/model.gguf"])
    func longFactors(path: String) throws {
        let loaded = try ModelLoader.load(path: Fixtures.path(path))
        let short = try #require(loaded.model as? LlamaModel)
        let reference = try #require(try Self.longReference())
        let ids = try #require(reference["input_ids"] as? [Int])
        #expect(short.shape.maxContext == 32 && ids.count == 48)
        let long = try #require(loaded.withLongRopeFactors()?.model as? LlamaModel)
        #expect(long.shape.maxContext == 128 && long.contextLimit == nil)
        #expect(long.withLongRopeFactors() == nil)   // already long
        let frequencies = try #require(reference["rope_inv_freq"] as? [Double]).map(Float.init)
        expectClose(long.inverseFrequencies, frequencies, tolerance: 1e-6)
        #expect(long.config.rope.magnitude == short.config.rope.magnitude)   // the attention factor is the same for both
        #expect(long.blocks[0].q.weight === short.blocks[0].q.weight)      // the weights are shared

        let logits = long.forward(ids, cache: long.makeCache(), logits: .all)
        let rows = try #require(reference["logits_rows"] as? [String: [Double]])
        for (row, values) in rows {
            let r = try #require(Int(row)), vocab = values.count
            expectClose(Array(logits[r * vocab ..< (r + 1) * vocab]), values.map(Float.init), tolerance: 1e-4, "\(path) row \(r)")
        }
        let nll = Scoring.tokenNLL(model: long, tokens: ids).reduce(0, +)
        let expected = try #require(reference["nll_sum"] as? Double)
        #expect(abs(nll - expected) <= 1e-4 * expected, "\(nll) vs \(expected)")
        // Decoding with the cache gives the same logits as the pass: every position keeps the long factors.
        let cache = long.makeCache()
        var stepwise = long.forward(Array(ids[..<40]), cache: cache, logits: .all)
        for id in ids[40...] { stepwise += long.forward([id], cache: cache, logits: .last) }
        expectClose(stepwise, logits, tolerance: 1e-4, path)
        // Up to the original context the short factors rotate: the long ones give other logits.
        let first = Array(ids[..<32])
        let shortLogits = short.forward(first, cache: short.makeCache(), logits: .all)
        #expect(zip(shortLogits, long.forward(first, cache: long.makeCache(), logits: .all)).map { abs($0 - $1) }.max()! > 1e-3)
    }

    @Test("models without LongRoPE long factors that reach further have no long variant")
    func noLongVariant() throws {
        #expect(try ModelLoader.load(path: Fixtures.path("tiny-phi3")).withLongRopeFactors() == nil)
        #expect(try ModelLoader.load(path: Fixtures.path("tiny-opt")).withLongRopeFactors() == nil)
        var json = try Self.fixtureConfig()
        json["max_position_embeddings"] = 32   // the declared context is the original one
        #expect(try Self.decode(json).withLongRopeFactors() == nil)
    }

    /// expected.json's reference.long_sequence (make_fixtures.py).
    static func longReference() throws -> [String: Any]? {
        let url = URL(fileURLWithPath: Fixtures.path("tiny-phi3-longrope/expected.json"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
        return (json?["reference"] as? [String: Any])?["long_sequence"] as? [String: Any]
    }

    @Test("a phi3 GGUF's sliding window is not applied, as llama.cpp turns it off for Phi-3")
    func ggufWindowIgnored() throws {
        let path = try FixtureCopy.gguf("tiny-phi3-longrope-gguf/model.gguf", u32: ["phi3.attention.sliding_window": 16])
        let model = try ModelLoader.load(path: path).model
        #expect(model.slidingWindow == nil && model.shape.maxContext == 32)   // LongRoPE's original context
    }

    @Test("a fused tensor of the wrong height is refused, naming it")
    func fusedShape() throws {
        let dir = TestScratch.url("phi3-short")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Fixtures.path("tiny-phi3")), to: dir)
        let config = dir.appendingPathComponent("config.json")
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as? [String: Any])
        json["intermediate_size"] = 96   // gate_up_proj holds 2 × 128 rows
        try JSONSerialization.data(withJSONObject: json).write(to: config)
        expectShadowError(["model.layers.0.mlp.gate_up_proj.weight", "[256, 64]", "[192, 64]"]) { _ = try ModelLoader.load(path: dir.path) }
    }
}
