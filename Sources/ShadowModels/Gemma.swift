import Foundation
import ShadowFormats

// Gemma 2 (`gemma2`) and Gemma 3 text models (`gemma3_text`; GGUF `gemma2`, `gemma3`): a Llama
// block with the differences below, so every Llama path — sparse skipping, branches, packed
// rows, gradients — runs them.
//   - RMSNorms multiply by (1 + w): folded into the weights at load (llama.cpp's converter
//     stores 1 + w already);
//   - the embedding rows are multiplied by √d (the tied LM head reads them unscaled);
//   - GeGLU with GELU's tanh approximation instead of SwiGLU;
//   - "sandwich" norms: the attention's and the MLP's outputs are normalised before the residual
//     adds (post_attention_layernorm is that norm here, pre_feedforward_layernorm the MLP's input
//     norm);
//   - scores scaled by query_pre_attn_scalar^−½;
//   - sliding-window layers (layer_types; by default Gemma 2's even layers, all but every sixth
//     of Gemma 3's);
//   - Gemma 2: attention scores and logits soft-capped, c·tanh(x / c);
//   - Gemma 3: per-head RMSNorms of queries and keys before RoPE (as Qwen3), and the sliding
//     layers' own RoPE base (rope_local_base_freq) while the others use rope_theta and rope_scaling.

/// The MLP's gate activation: SiLU (SwiGLU) or GELU's tanh approximation (GeGLU: Gemma).
public enum GateActivation: String, Sendable, Equatable {
    case silu
    case geluTanh = "gelu_pytorch_tanh"
}

/// Gemma 3's `rope_parameters` as transformers 5 writes it: one object per layer type (other
/// keys are ignored, as transformers ignores them).
private struct RopeParametersByLayerType: Decodable {
    let full: RopeParametersJSON?
    let sliding: RopeParametersJSON?
    enum CodingKeys: String, CodingKey { case full = "full_attention", sliding = "sliding_attention" }
}

/// The sizes Gemma2Config and Gemma3TextConfig default to (the 2B / 2B-sized models).
struct GemmaSizes {
    let vocabulary, hidden, intermediate, layers, heads, kvHeads, headDim: Int
}

extension LlamaConfig {
    static let gemmaModelTypes: Set<String> = ["gemma2", "gemma3_text"]
    static let gemmaDefaultSizes: [String: GemmaSizes] = [
        "gemma2": GemmaSizes(vocabulary: 256_000, hidden: 2304, intermediate: 9216, layers: 26, heads: 8, kvHeads: 4, headDim: 256),
        "gemma3_text": GemmaSizes(vocabulary: 262_208, hidden: 2304, intermediate: 9216, layers: 26, heads: 8, kvHeads: 4, headDim: 256),
    ]
    var isGemma: Bool { Self.gemmaModelTypes.contains(modelType) }

    /// Gemma's keys, read after the Llama ones; defaults are Gemma2Config's and Gemma3TextConfig's.
    mutating func readGemma(_ c: KeyedDecodingContainer<CodingKeys>) throws {
        func refuse(_ key: CodingKeys, _ reason: String) -> DecodingError {
            DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key], debugDescription: reason))
        }
        // transformers refuses a null where these need a number.
        for key in [CodingKeys.slidingWindow, .queryPreAttnScalar, .headDim, .hiddenSize, .intermediateSize, .layers, .heads,
                    .kvHeads, .vocabularySize] where c.contains(key) {
            if try c.decodeNil(forKey: key) { throw refuse(key, "must be a number, got null") }
        }
        let gemma3 = modelType == "gemma3_text"
        maxContext = try c.optionalPositiveInt(.maxContext) ?? (gemma3 ? 131_072 : 8192)
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
        if try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) == nil { rmsNormEps = 1e-6 }
        if try c.integerIfPresent(.bosTokenID) == nil { bosTokenID = 2 }
        if eosTokenIDs.isEmpty { eosTokenIDs = [1] }
        (attentionBias, outputBias, mlpBias) = (attentionBias, attentionBias, false)
        queryKeyNorm = gemma3

        // transformers' "gelu_new" is the same tanh formula; exact GELU ("gelu") is not. Gemma
        // reads hidden_activation, not hidden_act.
        let act = try c.decodeIfPresent(String.self, forKey: .hiddenActivation) ?? "gelu_pytorch_tanh"
        guard act == "gelu_pytorch_tanh" || act == "gelu_new" else {
            throw refuse(.hiddenActivation, "only \"gelu_pytorch_tanh\" is supported, got \"\(act)\"")
        }
        activation = .geluTanh
        // Gemma 2 caps by default (50 and 30); null turns a cap off. Gemma 3 caps only the logits:
        // transformers' Gemma3Attention never applies its attn_logit_softcapping (checked, then ignored).
        func cap(_ key: CodingKeys, default value: Double?) throws -> Float? {
            let cap = c.contains(key) ? try c.decodeIfPresent(Double.self, forKey: key) : value
            guard let cap else { return nil }
            guard cap > 0 && cap.isFinite else { throw refuse(key, "must be a positive number, got \(cap)") }
            return Float(cap)
        }
        attentionSoftcap = try cap(.attnLogitSoftcapping, default: gemma3 ? nil : 50)
        if gemma3 { attentionSoftcap = nil }
        logitSoftcap = try cap(.finalLogitSoftcapping, default: gemma3 ? nil : 30)
        if try c.decodeIfPresent(Bool.self, forKey: .useBidirectionalAttention) == true {
            throw refuse(.useBidirectionalAttention, "bidirectional attention is not supported")
        }
        let scalar = try c.decodeIfPresent(Double.self, forKey: .queryPreAttnScalar) ?? 256
        guard scalar > 0 && scalar.isFinite else { throw refuse(.queryPreAttnScalar, "must be a positive number, got \(scalar)") }
        queryScale = Float(1 / scalar.squareRoot())
        embeddingScale = Float(Double(hiddenSize).squareRoot())

        // Which layers slide: layer_types, else Gemma 2's even layers, or all but every
        // sliding_window_pattern-th (6) of Gemma 3's.
        let sliding: [Bool]
        if let types = try c.decodeIfPresent([String].self, forKey: .layerTypes) {
            if let problem = Self.layerTypesProblem(types, layers: layers) { throw refuse(.layerTypes, problem) }
            sliding = types.map { $0 == "sliding_attention" }
        } else {
            let pattern = gemma3 ? try c.optionalPositiveInt(.slidingWindowPattern) ?? 6 : 2
            sliding = (0..<layers).map { ($0 + 1) % pattern != 0 }
        }
        let window = try c.optionalPositiveInt(.slidingWindow) ?? 4096
        (slidingWindow, slidingLayers) = window < maxContext && sliding.contains(true) ? (window, sliding) : (nil, nil)
        if gemma3 {
            try readGemma3Rope(c, sliding: sliding)
        } else if let byType = try? c.decodeIfPresent(RopeParametersByLayerType.self, forKey: .ropeParameters),
                  byType.full != nil || byType.sliding != nil {
            throw refuse(.ropeParameters, "per-layer-type RoPE parameters are Gemma 3's; Gemma 2 has one RoPE")
        }
    }

    /// Gemma 3's two RoPEs. transformers 5 writes one rope_parameters object per layer type; 4.x
    /// files write rope_theta and rope_scaling (full layers) and rope_local_base_freq (sliding
    /// layers). A rope_scaling beside rope_parameters applies to the full layers, as transformers
    /// merges it there; rope_parameters without per-type objects is not read, as transformers
    /// does not read it.
    private mutating func readGemma3Rope(_ c: KeyedDecodingContainer<CodingKeys>, sliding: [Bool]) throws {
        let byType = try c.decodeIfPresent(RopeParametersByLayerType.self, forKey: .ropeParameters)
        let legacyScaling = try c.decodeIfPresent(RopeParametersJSON.self, forKey: .ropeScaling)
        let context = RopeParametersJSON.Context(maxContext: maxContext, rotaryPairs: headDim / 2, originalContext: nil)
        let topTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
        let theta = byType?.full?.ropeTheta ?? topTheta ?? 1_000_000
        let localTheta = try byType?.sliding?.ropeTheta ?? c.decodeIfPresent(Double.self, forKey: .ropeLocalBaseFreq) ?? 10_000
        do {
            let scaling = try (legacyScaling ?? byType?.full)?.scaling(key: "rope_parameters", context) ?? .none
            let localScaling = try byType?.sliding?.scaling(key: "rope_parameters", context) ?? .none
            rope = RopeConfig(theta: theta, scaling: scaling)
            localRope = RopeConfig(theta: localTheta, scaling: localScaling)
        } catch let error as ConfigValueError {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [legacyScaling == nil ? CodingKeys.ropeParameters : .ropeScaling],
                                                    debugDescription: error.reason))
        }
        // The key each base came from: rope_parameters when it holds one.
        let localKey: CodingKeys = byType?.sliding?.ropeTheta == nil ? .ropeLocalBaseFreq : .ropeParameters
        let fullKey: CodingKeys = byType?.full?.ropeTheta == nil && topTheta != nil ? .ropeTheta : .ropeParameters
        for (key, value) in [(fullKey, theta), (localKey, localTheta)] where !(value > 0 && value.isFinite) {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key], debugDescription: "a RoPE base must be a positive number, got \(value)"))
        }
        localRopeLayers = sliding
    }

    /// llama.cpp's reading of a `gemma2` or `gemma3` GGUF, which holds no keys for most of this:
    /// Gemma 2's even layers slide (`attention.sliding_window`, 4096 if absent), with its soft-caps
    /// (`attn_logit_softcapping`, `final_logit_softcapping`, 50 and 30 if absent); five of every
    /// six of Gemma 3's layers slide (none without a window) with `rope.freq_base_swa`, else
    /// 10,000, unscaled (as newer llama.cpp reads it; converters do not write the key for Gemma 3;
    /// Gemma 2's sliding layers take that key's base, with the file's scaling, when it is there),
    /// and its logits are capped only if `final_logit_softcapping` says so. Scores are
    /// scaled by 1/√d_h, except in the 27B models (Gemma 2's 46 layers, Gemma 3's 62), whose
    /// query_pre_attn_scalar is d/H. Newer llama.cpp lets `attention.sliding_window_pattern` set
    /// the period (2 and 6 by default).
    mutating func readGemmaGGUF(_ file: GGUFFile, arch: String) throws {
        activation = .geluTanh
        embeddingScale = Float(Double(hiddenSize).squareRoot())
        let gemma3 = arch == "gemma3"
        queryKeyNorm = gemma3
        queryScale = layers == (gemma3 ? 62 : 46) ? Float(1 / Double(hiddenSize / heads).squareRoot()) : nil
        func positive(_ key: String) throws -> Double? {
            guard let value = try file.floatIfPresent("\(arch).\(key)").map(Double.init) else { return nil }
            guard value > 0 && value.isFinite else {
                throw ShadowError.corruptFile(path: file.path, reason: "key \"\(arch).\(key)\": must be a positive number, got \(value)")
            }
            return value
        }
        let windowKey = "\(arch).attention.sliding_window"
        let window = try file.intIfPresent(windowKey) ?? (gemma3 ? 0 : 4096)
        // A Gemma 3 file without a window (or with 0) attends fully in every layer; Gemma 2's must be positive.
        guard window > 0 || (gemma3 && window == 0) else {
            throw ShadowError.corruptFile(path: file.path, reason: "key \"\(windowKey)\": must be positive, got \(window)")
        }
        guard window > 0 else {
            (slidingWindow, slidingLayers) = (nil, nil)
            return try readGemmaCaps(file, arch: arch, positive)
        }
        // Every period-th layer attends fully (llama.cpp's set_swa_pattern: layer l slides when
        // l mod p < p − 1; a period of 0 slides them all, 1 none). llama.cpp reads the key for
        // these architectures as one number and passes over an array (a per-layer list).
        let patternKey = "\(arch).attention.sliding_window_pattern"
        let defaultPeriod = gemma3 ? 6 : 2
        let period: Int
        if case .array? = file.metadata[patternKey] { period = defaultPeriod } else { period = try file.intIfPresent(patternKey) ?? defaultPeriod }
        guard period >= 0 && period <= TransformerShape.largestLayerCount else {
            throw ShadowError.corruptFile(path: file.path, reason: "key \"\(patternKey)\": \(period) is not a period of layers")
        }
        let sliding = (0..<layers).map { period == 0 || $0 % period < period - 1 }
        guard sliding.contains(true) else {
            (slidingWindow, slidingLayers) = (nil, nil)
            return try readGemmaCaps(file, arch: arch, positive)
        }
        (slidingWindow, slidingLayers) = window < maxContext ? (window, sliding) : (nil, nil)
        if let base = try positive("rope.freq_base_swa") ?? (gemma3 ? 10_000 : nil) {
            localRopeLayers = sliding
            localRope = RopeConfig(theta: base, scaling: gemma3 ? .none : rope.scaling)
        }
        try readGemmaCaps(file, arch: arch, positive)
    }

    /// The soft-caps of a Gemma GGUF: Gemma 2's 50 and 30 when absent, Gemma 3's logits only if told.
    private mutating func readGemmaCaps(_ file: GGUFFile, arch: String, _ positive: (String) throws -> Double?) throws {
        if arch == "gemma3" {
            logitSoftcap = try positive("final_logit_softcapping").map(Float.init)
        } else {
            attentionSoftcap = Float(try positive("attn_logit_softcapping") ?? 50)
            logitSoftcap = Float(try positive("final_logit_softcapping") ?? 30)
        }
    }

    /// Gemma's attention and MLP outputs pass through norms of their own.
    var sandwichNorms: Bool { isGemma }

    /// Gemma's norms multiply by (1 + w) where Llama's multiply by w: what Hugging Face weights
    /// need added (llama.cpp's converter stores 1 + w).
    var normWeightOffset: Float { isGemma ? 1 : 0 }
}

// MARK: - Multimodal Gemma 3

extension CodingUserInfoKey {
    /// The model_type a config without one is read as (a multimodal Gemma 3's text_config).
    static let defaultModelType = CodingUserInfoKey(rawValue: "defaultModelType")!
}

/// A multimodal Gemma 3 checkpoint (`gemma3`: Gemma3ForConditionalGeneration, gemma-3-4b and
/// larger): a Gemma 3 text model beside a SigLIP vision tower and its projector. The text model
/// runs (prompts are text); the vision weights are not read. Its config is `text_config`, with
/// Gemma3TextConfig's defaults for what that leaves out, read as transformers 5.25 reads it: no
/// top-level key reaches it, except that the top-level tie_word_embeddings (default true) ties
/// the head and no logit soft-cap applies (Gemma3ForConditionalGeneration applies none). The
/// top-level eos_token_id (the chat models' [<eos>, <end_of_turn>]) is taken for stopping when
/// text_config has none.
struct Gemma3MultimodalConfig: Decodable {
    var text: LlamaConfig
    /// Whether the stop tokens came from the top-level eos_token_id (errors name that key).
    var topLevelEOS = false

    enum CodingKeys: String, CodingKey {
        case text = "text_config", eosTokenID = "eos_token_id", tieWordEmbeddings = "tie_word_embeddings"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let inner = try c.nestedContainer(keyedBy: LlamaConfig.CodingKeys.self, forKey: .text)
        if let type = try inner.decodeIfPresent(String.self, forKey: .modelType), type != "gemma3_text" {
            throw DecodingError.dataCorruptedError(forKey: .modelType, in: inner, debugDescription: "must be \"gemma3_text\", got \"\(type)\"")
        }
        text = try c.decode(LlamaConfig.self, forKey: .text)
        text.tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
        text.logitSoftcap = nil
        if !inner.contains(.eosTokenID), let ids = try c.tokenIDsIfPresent(.eosTokenID) {
            text.eosTokenIDs = ids
            topLevelEOS = true
        }
    }

    /// Decodes and validates config.json, naming keys as they are written (`text_config.…`).
    static func read(_ data: Data, path: String) throws -> LlamaConfig {
        let config = try ConfigDecoding.decode(Self.self, from: data, path: path, userInfo: [.defaultModelType: "gemma3_text"])
        try config.text.validate(path: path, keys: config.topLevelEOS ? ["eos_token_id": "eos_token_id"] : [:],
                                 keyPrefix: "text_config.")
        return config.text
    }

    /// Points `table` at the text model's weights, as published (`language_model.model.*`, an
    /// untied head at `language_model.lm_head.weight`) or as transformers ≥ 4.52 saves them
    /// (`model.language_model.*`, `lm_head.weight`), and passes over the vision weights. A
    /// checkpoint with text weights in both layouts is refused.
    static func readTextModel(from table: TensorTable) throws {
        let published = "language_model.model.", saved = "model.language_model."
        let names = table.source.tensorNames
        let first = names.first { $0.hasPrefix(published) }, second = names.first { $0.hasPrefix(saved) }
        if let first, let second {
            throw ShadowError.badTensor(path: table.path, tensor: second,
                                        reason: "the text model's weights are in two layouts (also \"\(first)\")")
        }
        if second == nil {
            table.read(prefix: "model.", as: published)
            table.read(prefix: "lm_head.", as: "language_model.lm_head.")
        } else {
            table.read(prefix: "model.", as: saved)
        }
        for prefix in ["vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."] {
            table.ignore(prefix: prefix)
        }
    }
}
