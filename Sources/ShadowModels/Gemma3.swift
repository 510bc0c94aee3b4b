import Foundation
import ShadowFormats

// Gemma 3 text models (`gemma3_text` in config.json, `gemma3` in GGUF files): a Llama block with
// the differences below, so every Llama path — sparse skipping, branches, packed rows, gradients —
// runs it.
//   - RMSNorms multiply by (1 + w): folded into the weights at load (llama.cpp's converter
//     stores 1 + w already);
//   - the embedding rows are multiplied by √d (the tied LM head reads them unscaled);
//   - GeGLU with GELU's tanh approximation instead of SwiGLU;
//   - "sandwich" norms: the attention's and the MLP's outputs are normalised before the residual
//     adds (post_attention_layernorm is that norm here, pre_feedforward_layernorm the MLP's input
//     norm);
//   - per-head RMSNorms of queries and keys before RoPE (as Qwen3);
//   - scores scaled by query_pre_attn_scalar^−½;
//   - sliding-window layers (layer_types) with their own RoPE base (rope_local_base_freq), the
//     others with rope_theta and rope_scaling.

/// The MLP's gate activation: SiLU (SwiGLU) or GELU's tanh approximation (GeGLU: Gemma).
public enum GateActivation: String, Sendable, Equatable {
    case silu
    case geluTanh = "gelu_pytorch_tanh"
}

extension LlamaConfig {
    /// Gemma 3's keys, read after the Llama ones; defaults are Gemma3TextConfig's.
    mutating func readGemma3(_ c: KeyedDecodingContainer<CodingKeys>) throws {
        func refuse(_ key: CodingKeys, _ reason: String) -> DecodingError {
            DecodingError.dataCorrupted(.init(codingPath: [key], debugDescription: reason))
        }
        headDim = try c.optionalPositiveInt(.headDim) ?? 256
        maxContext = try c.optionalPositiveInt(.maxContext) ?? 131_072
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
        if try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) == nil { rmsNormEps = 1e-6 }
        if try c.integerIfPresent(.bosTokenID) == nil { bosTokenID = 2 }
        if eosTokenIDs.isEmpty { eosTokenIDs = [1] }
        (attentionBias, outputBias, mlpBias) = (attentionBias, attentionBias, false)
        queryKeyNorm = true

        // transformers' "gelu_new" is the same tanh formula; exact GELU ("gelu") is not.
        let act = try c.decodeIfPresent(String.self, forKey: .hiddenActivation) ?? "gelu_pytorch_tanh"
        guard act == "gelu_pytorch_tanh" || act == "gelu_new" else {
            throw refuse(.hiddenActivation, "only \"gelu_pytorch_tanh\" is supported, got \"\(act)\"")
        }
        activation = .geluTanh
        for key in [CodingKeys.attnLogitSoftcapping, .finalLogitSoftcapping] {
            if let cap = try c.decodeIfPresent(Double.self, forKey: key) {
                throw refuse(key, "soft-capping (\(cap)) is not supported (Gemma 2); Gemma 3 has none")
            }
        }
        if try c.decodeIfPresent(Bool.self, forKey: .useBidirectionalAttention) == true {
            throw refuse(.useBidirectionalAttention, "bidirectional attention is not supported")
        }
        let scalar = try c.decodeIfPresent(Double.self, forKey: .queryPreAttnScalar) ?? 256
        guard scalar > 0 && scalar.isFinite else { throw refuse(.queryPreAttnScalar, "must be a positive number, got \(scalar)") }
        queryScale = Float(1 / scalar.squareRoot())
        embeddingScale = Float(Double(hiddenSize).squareRoot())

        // Which layers slide: layer_types, else every layer but each sliding_window_pattern-th (6).
        let sliding: [Bool]
        if let types = try c.decodeIfPresent([String].self, forKey: .layerTypes) {
            guard types.count == layers else { throw refuse(.layerTypes, "has \(types.count) entries for \(layers) layers") }
            if let odd = types.first(where: { $0 != "sliding_attention" && $0 != "full_attention" }) {
                throw refuse(.layerTypes, "unknown layer type \"\(odd)\"")
            }
            sliding = types.map { $0 == "sliding_attention" }
        } else {
            let pattern = try c.optionalPositiveInt(.slidingWindowPattern) ?? 6
            sliding = (0..<layers).map { ($0 + 1) % pattern != 0 }
        }
        localRopeLayers = sliding
        let window = try c.optionalPositiveInt(.slidingWindow) ?? 4096
        (slidingWindow, slidingLayers) = window < maxContext && sliding.contains(true) ? (window, sliding) : (nil, nil)

        // RoPE: transformers 5 writes one rope_parameters object per layer type; 4.x files write
        // rope_theta and rope_scaling (full layers) and rope_local_base_freq (sliding layers).
        var localTheta = try c.decodeIfPresent(Double.self, forKey: .ropeLocalBaseFreq) ?? 10_000
        var localScaling = RopeConfig.Scaling.none
        let flat = try? c.decodeIfPresent(RopeParametersJSON.self, forKey: .ropeParameters)
        if try c.decodeIfPresent(Double.self, forKey: .ropeTheta) == nil && flat?.ropeTheta == nil { rope.theta = 1_000_000 }
        if let byType = try? c.decodeIfPresent([String: RopeParametersJSON].self, forKey: .ropeParameters) {
            let context = RopeParametersJSON.Context(maxContext: maxContext, rotaryPairs: headDim / 2, originalContext: nil)
            do {
                if let full = byType["full_attention"] {
                    rope.theta = full.ropeTheta ?? rope.theta
                    rope.scaling = try full.scaling(key: "rope_parameters", context)
                }
                if let local = byType["sliding_attention"] {
                    localTheta = local.ropeTheta ?? localTheta
                    localScaling = try local.scaling(key: "rope_parameters", context)
                }
            } catch let error as ConfigValueError {
                throw refuse(.ropeParameters, error.reason)
            }
        }
        for (key, theta) in [(CodingKeys.ropeParameters, rope.theta), (.ropeLocalBaseFreq, localTheta)] where !(theta > 0 && theta.isFinite) {
            throw refuse(key, "a RoPE base must be a positive number, got \(theta)")
        }
        localRope = RopeConfig(theta: localTheta, scaling: localScaling)
    }

    /// llama.cpp's reading of a `gemma3` GGUF, which holds no keys for these: every sixth layer
    /// attends fully and the others slide (`attention.sliding_window`) with a RoPE base of
    /// 10,000; scores are scaled by 1/√d_h, except in the 27B model (62 layers), whose
    /// query_pre_attn_scalar is d/H.
    mutating func readGemma3GGUF(window: Int?) {
        activation = .geluTanh
        queryKeyNorm = true
        embeddingScale = Float(Double(hiddenSize).squareRoot())
        queryScale = layers == 62 ? Float(1 / Double(hiddenSize / heads).squareRoot()) : nil
        let sliding = (0..<layers).map { ($0 + 1) % 6 != 0 }
        localRopeLayers = sliding
        localRope = RopeConfig(theta: 10_000)
        (slidingWindow, slidingLayers) = if let window, window < maxContext { (window, sliding) } else { (nil, nil) }
    }

    /// Gemma 3's attention and MLP outputs pass through norms of their own.
    var sandwichNorms: Bool { modelType == "gemma3_text" }

    /// Gemma's norms multiply by (1 + w) where Llama's multiply by w: what Hugging Face weights
    /// need added (llama.cpp's converter stores 1 + w).
    var normWeightOffset: Float { modelType == "gemma3_text" ? 1 : 0 }
}
