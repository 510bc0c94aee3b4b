import Foundation
import ShadowFormats
import ShadowKernels

// The Llama family: RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP, tied or
// untied LM head. Qwen2 adds q/k/v biases; Qwen3 an RMSNorm of every query and key head before
// RoPE; SmolLM3 leaves RoPE out of some layers (NoPE); Mistral differs only in its config keys.

/// One decoder block's weights. The output and down projections are stored transposed (one row
/// per head dimension / neuron) so that sparse execution skips rows (DESIGN §5).
public struct LlamaBlock: Sendable {
    public let attentionNorm: [Float]      // (d)
    public let q: Linear                   // (H·d_h, d)
    public let k: Linear                   // (G·d_h, d)
    public let v: Linear                   // (G·d_h, d)
    public let output: TransposedLinear    // (H·d_h, d)
    public let mlpNorm: [Float]            // (d)
    public let gate: Linear                // (F, d)
    public let up: Linear                  // (F, d)
    public let down: TransposedLinear      // (F, d)
    /// Qwen3: RMSNorm weights applied to each query and each key head before RoPE.
    public var queryNorm: [Float]? = nil   // (d_h)
    public var keyNorm: [Float]? = nil     // (d_h)
    /// Gemma: RMSNorms of the attention's and the MLP's outputs, before the residual adds.
    public var postAttentionNorm: [Float]? = nil  // (d)
    public var postMLPNorm: [Float]? = nil        // (d)

    // Public, as `LlamaModel.init` is, so a model can be assembled from weights made in code.
    public init(attentionNorm: [Float], q: Linear, k: Linear, v: Linear, output: TransposedLinear, mlpNorm: [Float],
                gate: Linear, up: Linear, down: TransposedLinear, queryNorm: [Float]? = nil, keyNorm: [Float]? = nil,
                postAttentionNorm: [Float]? = nil, postMLPNorm: [Float]? = nil) {
        self.attentionNorm = attentionNorm
        self.q = q
        self.k = k
        self.v = v
        self.output = output
        self.mlpNorm = mlpNorm
        self.gate = gate
        self.up = up
        self.down = down
        self.queryNorm = queryNorm
        self.keyNorm = keyNorm
        self.postAttentionNorm = postAttentionNorm
        self.postMLPNorm = postMLPNorm
    }
}

public final class LlamaModel: CausalLanguageModel, @unchecked Sendable {
    public let config: LlamaConfig
    public let architecture: String
    public let shape: TransformerShape
    public let embedding: WeightMatrix     // (V, d)
    public let blocks: [LlamaBlock]
    public let finalNorm: [Float]          // (d)
    public let lmHead: WeightMatrix        // (V, d); the embedding itself when tied
    public let inverseFrequencies: [Float] // one per rotating pair (d_h / 2, or r / 2)
    /// Gemma's sliding layers' frequencies (config.localRope), nil without them.
    public let localInverseFrequencies: [Float]?
    public let sourceDTypes: [String: Int]
    public var weightDType: WeightDType {
        WeightDType.asked(storing: [embedding] + (blocks.first.map { b in [b.q.weight, b.output.weightT, b.gate.weight, b.down.weightT] } ?? []))
    }
    public var slidingWindow: Int? { config.slidingWindow }
    public var contextLimit: String? {
        if case .longRope(let longRope) = config.rope.scaling, !longRope.usesLongFactors, longRope.extendsContext {
            return "LongRoPE's original context; its long factors (--long-context) reach \(longRope.declaredContext)"
        }
        return nil
    }

    /// The same weights rotated with LongRoPE's long factors, the context reaching
    /// max_position_embeddings; nil unless the model has long factors that reach further.
    public func withLongRopeFactors() -> LlamaModel? {
        guard let config = config.withLongRopeFactors() else { return nil }
        return LlamaModel(config: config, architecture: architecture, embedding: embedding, blocks: blocks,
                          finalNorm: finalNorm, lmHead: lmHead, sourceDTypes: sourceDTypes)
    }

    public init(config: LlamaConfig, architecture: String, embedding: WeightMatrix, blocks: [LlamaBlock],
                finalNorm: [Float], lmHead: WeightMatrix, sourceDTypes: [String: Int] = [:]) {
        self.config = config
        self.architecture = architecture
        self.shape = config.shape
        self.embedding = embedding
        self.blocks = blocks
        self.finalNorm = finalNorm
        self.lmHead = lmHead
        self.inverseFrequencies = config.rope.inverseFrequencies(headDim: config.shape.headDim)
        self.localInverseFrequencies = config.localRope?.inverseFrequencies(headDim: config.shape.headDim)
        self.sourceDTypes = sourceDTypes
    }

    public var parameterCount: Int {
        let s = shape
        let biases = blocks.first.map { b in
            [b.q.bias, b.k.bias, b.v.bias, b.output.bias, b.gate.bias, b.up.bias, b.down.bias].reduce(0) { $0 + ($1?.count ?? 0) }
        } ?? 0
        let perBlock = 2 * s.hiddenSize + s.hiddenSize * (s.attentionWidth * 2 + s.kvWidth * 2)
            + 3 * s.hiddenSize * s.ffnSize + biases
            + (blocks.first?.queryNorm == nil ? 0 : 2 * s.headDim)
            + (blocks.first?.postAttentionNorm == nil ? 0 : 2 * s.hiddenSize)
        let head = lmHead === embedding ? 0 : lmHead.count
        return embedding.count + s.layers * perBlock + s.hiddenSize + head
    }

    /// Layer `l`'s RoPE frequencies and cos/sin magnitude (Gemma's sliding layers have their own).
    func rotation(layer l: Int) -> (frequencies: [Float], magnitude: Float) {
        if config.localRopeLayers?[l] == true, let localInverseFrequencies, let local = config.localRope {
            return (localInverseFrequencies, local.magnitude)
        }
        return (inverseFrequencies, config.rope.magnitude)
    }

    /// The MLP's gate activation times up: SwiGLU, or Gemma's GeGLU.
    func gateActivation(_ out: UnsafeMutablePointer<Float>, _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        switch config.activation {
        case .silu: Ops.siluMul(out, gate, up, count: count)
        case .geluTanh: Ops.geluTanhMul(out, gate, up, count: count)
        }
    }

    /// RMSNorm with `weights`, in place on `rows` rows of the residual width.
    func outputNorm(_ weights: [Float]) -> (UnsafeMutablePointer<Float>, Int) -> Void {
        { p, rows in
            weights.withUnsafeBufferPointer {
                Ops.rmsNorm(p, p, $0.baseAddress!, rows: rows, n: self.shape.hiddenSize, eps: self.config.rmsNormEps)
            }
        }
    }

    public func decodeBytesPerToken(plans: [LayerPlan]?, keepingAllKeysAndValues: Bool) -> Int {
        let blockBytes = blocks.enumerated().map { l, b in
            BlockSteps.decodeBytes(q: b.q.weight, k: b.k.weight, v: b.v.weight, output: b.output.weightT,
                                   mlpRows: [b.gate.weight, b.up.weight, b.down.weightT],
                                   plan: plans.flatMap { l < $0.count ? $0[l] : nil }, keepingAllKeysAndValues: keepingAllKeysAndValues, shape: shape)
        }
        return blockBytes.reduce(0, +) + lmHead.byteCount
    }

    public func forward(_ tokens: [Int], cache: KVCache, logits request: LogitsRequest,
                        sparsity: (any SparsityController)?, branches: Branches?) -> [Float] {
        let s = shape
        let T = tokens.count, d = s.hiddenSize
        let past = cache.length
        // guard, not precondition: the release build's -Ounchecked drops preconditions, and an
        // overflow here would write past the cache.
        guard T > 0 && past + T <= cache.capacity else { fatalError("context overflow") }
        guard branches == nil || branches!.tokenCount == T else { fatalError("branches cover the tokens") }
        LayerPlan.checkForward(shape: s, cache: cache, sparsity: sparsity)
        let promptRows = branches?.promptRows(tokens: T) ?? T   // what a controller predicts from
        let scratch = cache.scratch
        let x = cache.buffer("x", rows: T, cols: d)
        let xn = cache.buffer("xn", rows: T, cols: d)
        for (t, token) in tokens.enumerated() { embedding.widenRows(token..<token + 1, into: x + t * d) }
        if let factor = config.embeddingScale { Ops.scale(x, by: factor, count: T * d) }
        let scale = config.attentionScale
        let execution = sparsity?.execution ?? .skip
        for (l, block) in blocks.enumerated() {
            // Qwen3 normalises each query and key head, then RoPE rotates it (not in SmolLM3's NoPE layers).
            let rotates = config.rotates(layer: l)
            let (frequencies, magnitude) = rotation(layer: l)
            let rope = { (p: UnsafeMutablePointer<Float>, heads: Int, position: Int, keys: Bool) in
                if let norm = keys ? block.keyNorm : block.queryNorm {
                    norm.withUnsafeBufferPointer { Ops.rmsNorm(p, p, $0.baseAddress!, rows: heads, n: s.headDim, eps: self.config.rmsNormEps) }
                }
                if rotates {
                    frequencies.withUnsafeBufferPointer {
                        Ops.rope(p, heads: heads, headDim: s.headDim, position: position, inverseFrequencies: $0,
                                 magnitude: magnitude)
                    }
                }
            }
            // Layer 0 always runs dense: its attention output feeds the predictor.
            let plan = l == 0 ? nil : LayerPlan.checked(sparsity?.plan(layer: l, input: x, tokens: promptRows, position: past), layer: l, shape: s)
            block.attentionNorm.withUnsafeBufferPointer {
                Ops.rmsNorm(xn, x, $0.baseAddress!, rows: T, n: d, eps: config.rmsNormEps)
            }
            BlockSteps.attention(
                x: x, xn: xn, q: block.q, k: block.k, v: block.v, output: block.output, plan: plan,
                execution: execution, sparsity: sparsity, promptRows: promptRows, cache: cache, layer: l,
                past: past, tokens: T, branches: branches, scale: scale, window: config.window(layer: l), rope: rope,
                outputNorm: block.postAttentionNorm.map(outputNorm), softcap: config.attentionSoftcap)

            block.mlpNorm.withUnsafeBufferPointer {
                Ops.rmsNorm(xn, x, $0.baseAddress!, rows: T, n: d, eps: config.rmsNormEps)
            }
            let kept = execution == .skip ? plan?.neurons : nil
            let width = kept?.count ?? s.ffnSize
            let g = cache.buffer("gate", rows: T, cols: width)
            let u = cache.buffer("up", rows: T, cols: width)
            // Gemma normalises the MLP's output before adding it: it goes through `xn`.
            let mlpOut = block.postMLPNorm == nil ? x : xn
            if let kept {
                block.gate.apply(g, xn, tokens: T, rows: kept, scratch: scratch)
                block.up.apply(u, xn, tokens: T, rows: kept, scratch: scratch)
                gateActivation(g, g, u, count: T * width)
                block.down.apply(mlpOut, g, tokens: T, rows: kept, accumulate: mlpOut == x, scratch: scratch)
            } else {
                block.gate.apply(g, xn, tokens: T, scratch: scratch)
                block.up.apply(u, xn, tokens: T, scratch: scratch)
                gateActivation(g, g, u, count: T * width)
                if execution == .zero, let neurons = plan?.neurons {
                    BlockSteps.zeroUnits(g, kept: neurons, units: s.ffnSize, width: 1, tokens: T)
                }
                block.down.apply(mlpOut, g, tokens: T, accumulate: mlpOut == x, scratch: scratch)
            }
            if let postNorm = block.postMLPNorm {
                outputNorm(postNorm)(xn, T)
                Ops.add(x, xn, count: T * d)
            }
        }
        cache.advance(by: T)
        return LMHead.logits(x: x, tokens: T, width: d, norm: { out, input, rows in
            finalNorm.withUnsafeBufferPointer {
                Ops.rmsNorm(out, input, $0.baseAddress!, rows: rows, n: d, eps: config.rmsNormEps)
            }
        }, head: lmHead, normed: xn, scratch: scratch, request: request, softcap: config.logitSoftcap)
    }
}

// MARK: - Configuration

/// A Llama-family `config.json` (also Mistral, Qwen2/3, SmolLM3, Phi-3 and Gemma 2/3, the
/// `ArchitectureRegistry` names that load through it). Keys keep the checkpoint's snake_case;
/// optional ones fall back to the Hugging Face defaults.
public struct LlamaConfig: Sendable, Equatable {
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocabularySize: Int
    public var maxContext: Int
    /// Sliding-window attention's window (Mistral, Phi-3, some Qwen2): a token sees the keys of
    /// itself and the window − 1 tokens before it. nil when no layer slides or the window is no
    /// shorter than the context.
    public var slidingWindow: Int?
    /// The layers that slide (Qwen2's from max_window_layers on, or as layer_types says; SmolLM3's
    /// NoPE layers); nil: all of them.
    public var slidingLayers: [Bool]?
    public var rmsNormEps: Float
    public var rope: RopeConfig
    public var tieWordEmbeddings: Bool
    /// Biases on q, k and v: always in Qwen2, with `attention_bias: true` in Llama and Qwen3.
    public var attentionBias: Bool
    /// A bias on the attention's output projection (o_proj): Llama's and Qwen3's `attention_bias`.
    public var outputBias: Bool
    /// Biases on gate, up and down: Llama's `mlp_bias`.
    public var mlpBias: Bool
    /// Qwen3 normalises each query and key head (RMSNorm over d_h, weights q_norm and k_norm)
    /// before RoPE.
    public var queryKeyNorm: Bool
    /// Per layer, whether RoPE rotates its queries and keys (SmolLM3's `no_rope_layers`: 1 =
    /// RoPE, 0 = none); nil: every layer.
    public var ropeLayers: [Bool]?
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]
    // Gemma's differences (see Gemma.swift), set after init; the defaults are Llama's.
    /// The MLP's gate activation.
    public var activation: GateActivation = .silu
    /// What embedding rows are multiplied by (Gemma: √d); nil: 1.
    public var embeddingScale: Float? = nil
    /// The attention scores' factor; nil: 1/√d_h (Gemma: query_pre_attn_scalar^−½).
    public var queryScale: Float? = nil
    /// The layers whose RoPE is `localRope` (Gemma's sliding layers), nil: none.
    public var localRopeLayers: [Bool]? = nil
    public var localRope: RopeConfig? = nil
    /// Gemma 2's soft-capping c of the attention scores and of the logits: x → c·tanh(x / c).
    public var attentionSoftcap: Float? = nil
    public var logitSoftcap: Float? = nil

    public init(modelType: String = "llama", hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int,
                kvHeads: Int? = nil, headDim: Int? = nil, vocabularySize: Int, maxContext: Int = 2048,
                slidingWindow: Int? = nil, slidingLayers: [Bool]? = nil, rmsNormEps: Float = 1e-5, rope: RopeConfig = RopeConfig(theta: 10000),
                tieWordEmbeddings: Bool = false, attentionBias: Bool = false, outputBias: Bool = false,
                mlpBias: Bool = false, queryKeyNorm: Bool = false, ropeLayers: [Bool]? = nil,
                bosTokenID: Int? = nil, eosTokenIDs: [Int] = []) {
        self.modelType = modelType
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads ?? heads
        self.headDim = headDim ?? hiddenSize / heads
        self.vocabularySize = vocabularySize
        self.maxContext = maxContext
        self.slidingWindow = slidingWindow
        self.slidingLayers = slidingLayers
        self.rmsNormEps = rmsNormEps
        self.rope = rope
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias
        self.outputBias = outputBias
        self.mlpBias = mlpBias
        self.queryKeyNorm = queryKeyNorm
        self.ropeLayers = ropeLayers
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
    }

    var attentionScale: Float { queryScale ?? 1 / Float(headDim).squareRoot() }

    /// Whether layer `l` rotates its queries and keys (SmolLM3's NoPE layers do not).
    public func rotates(layer l: Int) -> Bool { ropeLayers?[l] ?? true }

    /// Layer `l`'s sliding window, nil when it attends to the whole context.
    @inline(__always)
    public func window(layer l: Int) -> Int? {
        guard let slidingWindow else { return nil }
        return slidingLayers?[l] ?? true ? slidingWindow : nil
    }

    public var shape: TransformerShape {
        TransformerShape(layers: layers, hiddenSize: hiddenSize, heads: heads, kvHeads: kvHeads, headDim: headDim,
                         ffnSize: intermediateSize, vocabularySize: vocabularySize, maxContext: maxContext)
    }

    /// This config with LongRoPE's long factors rotating every position and the context
    /// reaching max_position_embeddings; nil without long factors that reach further.
    public func withLongRopeFactors() -> LlamaConfig? {
        guard case .longRope(var longRope) = rope.scaling, !longRope.usesLongFactors, longRope.extendsContext else { return nil }
        longRope.usesLongFactors = true
        var config = self
        config.rope.scaling = .longRope(longRope)
        config.maxContext = longRope.declaredContext
        return config
    }

    /// Checks the relations between sizes, naming the key that breaks them. `keys` renames the
    /// config.json keys for a config read from elsewhere (GGUF metadata).
    func validate(path: String, keys: [String: String] = [:], keyPrefix: String = "") throws {
        func key(_ name: String) -> String { keys[name] ?? keyPrefix + name }
        func checkFactorCount(_ factors: [Float]) throws {
            let pairs = (rope.rotaryDimensions ?? headDim) / 2
            guard factors.count == pairs else {
                throw ShadowError.badJSON(path: path, key: key("rope_scaling"), reason: "\(factors.count) frequency factors for \(pairs) rotating pairs")
            }
        }
        // Decoding checks these, but a config built from GGUF metadata or by hand may not have been.
        // A vocabulary of 0 is no model, and calibrating it would write traces its fingerprint refuses.
        let sizes = [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                     ("num_hidden_layers", layers), ("num_attention_heads", heads),
                     ("num_key_value_heads", kvHeads), ("head_dim", headDim),
                     ("vocab_size", vocabularySize), ("max_position_embeddings", maxContext)]
        // Decoding builds these right; a config built in code may not have.
        if let slidingLayers, slidingLayers.count != layers {
            throw ShadowError.badJSON(path: path, key: key("layer_types"), reason: "has \(slidingLayers.count) entries for \(layers) layers")
        }
        if let localRopeLayers, localRopeLayers.count != layers {
            throw ShadowError.badJSON(path: path, key: key("layer_types"), reason: "has \(localRopeLayers.count) entries for \(layers) layers")
        }
        if let local = localRope, !(local.theta > 0 && local.theta.isFinite) {
            throw ShadowError.badJSON(path: path, key: key("rope_local_base_freq"), reason: "must be a positive number, got \(local.theta)")
        }
        for (name, factor) in [("query_pre_attn_scalar", queryScale), ("hidden_size", embeddingScale),
                               ("attn_logit_softcapping", attentionSoftcap), ("final_logit_softcapping", logitSoftcap)] {
            if let factor, !(factor > 0 && factor.isFinite) {
                throw ShadowError.badJSON(path: path, key: key(name), reason: "gives a scale of \(factor)")
            }
        }
        if let slidingWindow, slidingWindow <= 0 {
            throw ShadowError.badJSON(path: path, key: key("sliding_window"), reason: "must be positive, got \(slidingWindow)")
        }
        if let rotary = rope.rotaryDimensions, rotary < 2 || rotary > headDim || rotary % 2 != 0 {
            throw ShadowError.badJSON(path: path, key: key("partial_rotary_factor"), reason: "\(rotary) rotating dimensions in heads of \(headDim)")
        }
        switch rope.scaling {
        case .frequencyFactors(let factors):
            try checkFactorCount(factors)
        case .longRope(let longRope):
            try checkFactorCount(longRope.shortFactors)
            try checkFactorCount(longRope.longFactors)
        default: break
        }
        for (name, value) in sizes where value <= 0 {
            throw ShadowError.badJSON(path: path, key: key(name), reason: "must be positive, got \(value)")
        }
        guard heads % kvHeads == 0 else {
            throw ShadowError.badJSON(path: path, key: key("num_key_value_heads"),
                                      reason: "\(kvHeads) does not divide \(key("num_attention_heads")) \(heads)")
        }
        guard headDim % 2 == 0 else {
            throw ShadowError.badJSON(path: path, key: key("head_dim"), reason: "rotary embedding needs an even head width, got \(headDim)")
        }
        // RMSNorm divides by √(mean square + eps) and RoPE's frequencies are powers of θ: a zero,
        // negative or non-finite value turns every logit into NaN.
        guard rmsNormEps > 0 && rmsNormEps.isFinite else {
            throw ShadowError.badJSON(path: path, key: key("rms_norm_eps"), reason: "must be a positive number, got \(rmsNormEps)")
        }
        guard rope.theta > 0 && rope.theta.isFinite else {
            throw ShadowError.badJSON(path: path, key: key("rope_theta"), reason: "must be a positive number, got \(rope.theta)")
        }
        // Token ids the model is told about must be rows of its embedding.
        for (name, id) in [("bos_token_id", bosTokenID)] + eosTokenIDs.map({ ("eos_token_id", $0) }) {
            if let id, !(0..<vocabularySize).contains(id) {
                throw ShadowError.badJSON(path: path, key: key(name), reason: "\(id) is outside the vocabulary of \(vocabularySize)")
            }
        }
        // Loading multiplies these before it can compare them with the tensors, and a KV cache
        // allocates the last one; a crafted config must get an error, not an overflow trap.
        let products: [[(key: String, value: Int)]] = [
            [("num_attention_heads", heads), ("head_dim", headDim), ("hidden_size", hiddenSize)],
            [("num_key_value_heads", kvHeads), ("head_dim", headDim), ("hidden_size", hiddenSize)],
            [("intermediate_size", intermediateSize), ("hidden_size", hiddenSize)],
            [("vocab_size", vocabularySize), ("hidden_size", hiddenSize)],
            [("num_hidden_layers", layers), ("max_position_embeddings", maxContext),
             ("num_key_value_heads", kvHeads), ("head_dim", headDim), ("both keys and values", 2)],
        ]
        try checkProducts(path: path, products.map { $0.map { (key($0.key), $0.value) } })
        // After the products, so a size that overflows one is reported as such. The fingerprint
        // of traces and predictors holds no larger size, so neither may a model that makes them.
        for (name, value) in sizes {
            if let problem = TransformerShape.sizeProblem(value) { throw ShadowError.badJSON(path: path, key: key(name), reason: problem) }
        }
        // After the sizes: the check below computes a frequency per rotating pair.
        guard headDim <= TransformerShape.largestHeadDim else {
            throw ShadowError.badJSON(path: path, key: key("head_dim"), reason: "is \(headDim), beyond any model (at most \(TransformerShape.largestHeadDim))")
        }
        // Positive in Double is not enough: the frequencies are single precision, where a tiny θ or
        // factor overflows to infinity or underflows to 0 (and every logit becomes NaN).
        for (config, thetaKey) in [(rope, "rope_theta"), localRope.map { ($0, "rope_local_base_freq") }].compactMap({ $0 }) {
            if let problem = config.singlePrecisionProblem(headDim: headDim) {
                throw ShadowError.badJSON(path: path, key: key(problem == .theta ? thetaKey : "rope_scaling"), reason: problem.reason(config))
            }
        }
    }
}

extension LlamaConfig: Decodable {
    /// Why `types` cannot be a config's layer_types (one "full_attention" or "sliding_attention"
    /// per layer), or nil when it can.
    static func layerTypesProblem(_ types: [String], layers: Int) -> String? {
        if types.count != layers { return "has \(types.count) entries for \(layers) layers" }
        if let odd = types.first(where: { $0 != "sliding_attention" && $0 != "full_attention" }) { return "unknown layer type \"\(odd)\"" }
        return nil
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case layers = "num_hidden_layers", heads = "num_attention_heads", kvHeads = "num_key_value_heads"
        case headDim = "head_dim", vocabularySize = "vocab_size", maxContext = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta", ropeScaling = "rope_scaling"
        case ropeParameters = "rope_parameters", tieWordEmbeddings = "tie_word_embeddings"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias", hiddenAct = "hidden_act"
        case bosTokenID = "bos_token_id", eosTokenID = "eos_token_id"
        case slidingWindow = "sliding_window", useSlidingWindow = "use_sliding_window"
        case maxWindowLayers = "max_window_layers", layerTypes = "layer_types"
        case noRopeLayers = "no_rope_layers", noRopeLayerInterval = "no_rope_layer_interval"
        case partialRotaryFactor = "partial_rotary_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case hiddenActivation = "hidden_activation", queryPreAttnScalar = "query_pre_attn_scalar"
        case ropeLocalBaseFreq = "rope_local_base_freq", slidingWindowPattern = "sliding_window_pattern"
        case finalLogitSoftcapping = "final_logit_softcapping", attnLogitSoftcapping = "attn_logit_softcapping"
        case useBidirectionalAttention = "use_bidirectional_attention"
    }

    /// θ, the scaling and the rotating width of a head, from `rope_parameters` (transformers ≥ 5)
    /// or `rope_theta`, `rope_scaling` and `partial_rotary_factor`; errors name the key.
    private static func decodeRope(_ c: KeyedDecodingContainer<CodingKeys>, headDim: Int, declaredContext: Int,
                                   isPhi3: Bool) throws -> RopeConfig {
        // transformers ≥ 5 writes `rope_parameters: {rope_type, rope_theta, …}`; older files
        // write `rope_theta` and `rope_scaling`.
        var theta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 10000
        var thetaPath: [any CodingKey] = c.codingPath + [CodingKeys.ropeTheta]
        var scaling = RopeConfig.Scaling.none
        var rotaryDimensions: Int? = nil
        do {
            let parameters = try c.decodeIfPresent(RopeParametersJSON.self, forKey: .ropeParameters)
            let legacyScaling = try c.decodeIfPresent(RopeParametersJSON.self, forKey: .ropeScaling)
            if let value = parameters?.ropeTheta {
                theta = value
                thetaPath = c.codingPath + [CodingKeys.ropeParameters, RopeParametersJSON.CodingKeys.ropeTheta]
            }
            // Phi-4-mini rotates the first `partial_rotary_factor` of each head (written at the
            // top level, or in rope_parameters by transformers 5).
            let (fraction, fractionKey) = try parameters?.partialRotaryFactor.map { ($0, "rope_parameters") }
                ?? c.decodeIfPresent(Double.self, forKey: .partialRotaryFactor).map { ($0, "partial_rotary_factor") } ?? (1, "")
            if fraction != 1 {
                let width = fraction > 0 && fraction < 1 ? Int(Double(headDim) * fraction) : 0   // as transformers truncates it
                guard width >= 2, width % 2 == 0 else {
                    throw ConfigValueError(key: fractionKey, reason: "partial_rotary_factor \(fraction) of a head of \(headDim) must give an even number of rotating dimensions between 2 and \(headDim)")
                }
                rotaryDimensions = width
            }
            let context = RopeParametersJSON.Context(
                maxContext: declaredContext, rotaryPairs: (rotaryDimensions ?? headDim) / 2,
                // Phi-3 reads only the top-level value (default 4096), not one inside rope_scaling.
                originalContext: try c.optionalPositiveInt(.originalMaxPositionEmbeddings) ?? (isPhi3 ? 4096 : nil),
                yarnIsLongRope: isPhi3)
            if let parameters { scaling = try parameters.scaling(key: "rope_parameters", context) }
            if let legacyScaling { scaling = try legacyScaling.scaling(key: "rope_scaling", context) }
        } catch let error as ConfigValueError {
            let key: CodingKeys = switch error.key {
            case "rope_scaling": .ropeScaling
            case "partial_rotary_factor": .partialRotaryFactor
            default: .ropeParameters
            }
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key], debugDescription: error.reason))
        }
        // validate() checks θ too; here the error can say which key it came from.
        guard theta > 0 && theta.isFinite else {
            throw DecodingError.dataCorrupted(.init(codingPath: thetaPath, debugDescription: "must be a positive number, got \(theta)"))
        }
        let rope = RopeConfig(theta: theta, scaling: scaling, rotaryDimensions: rotaryDimensions)
        // validate() checks this too; here the error can say which key it came from. (It refuses
        // a wider head, after the size checks, before computing a frequency per rotating pair.)
        if headDim <= TransformerShape.largestHeadDim, let problem = rope.singlePrecisionProblem(headDim: headDim) {
            // rope_scaling, when there, is the one read (it overrides rope_parameters' scaling).
            let scalingKey: CodingKeys = try !c.contains(.ropeScaling) || c.decodeNil(forKey: .ropeScaling) ? .ropeParameters : .ropeScaling
            throw DecodingError.dataCorrupted(.init(codingPath: problem == .theta ? thetaPath : c.codingPath + [scalingKey],
                                                    debugDescription: problem.reason(rope)))
        }
        return rope
    }

    /// SmolLM3: RoPE in the layers no_rope_layers marks 1; by default every layer but each
    /// no_rope_layer_interval-th (4). Nil (every layer rotates) for the others.
    private static func decodeRopeLayers(_ c: KeyedDecodingContainer<CodingKeys>, modelType: String, layers: Int) throws -> [Bool]? {
        guard modelType == "smollm3" else { return nil }
        if let marks = try c.decodeIfPresent([Int].self, forKey: .noRopeLayers) {
            guard marks.count == layers, marks.allSatisfy({ $0 == 0 || $0 == 1 }) else {
                throw DecodingError.dataCorruptedError(forKey: .noRopeLayers, in: c,
                    debugDescription: "must hold a 0 or 1 for each of the \(layers) layers, got \(marks)")
            }
            return marks.map { $0 == 1 }
        }
        let interval = try c.optionalPositiveInt(.noRopeLayerInterval) ?? 4
        return (0..<layers).map { ($0 + 1) % interval != 0 }
    }

    /// Sliding-window attention, as transformers reads it: Mistral's and Phi-3's sliding_window
    /// in every layer; Qwen2's and Qwen3's with use_sliding_window, in layers from
    /// max_window_layers on (or as layer_types says); SmolLM3's in its NoPE layers (or as
    /// layer_types says); ignored for Llama. A window as long as the context changes nothing.
    /// The window and the layers it applies in (nil: all), or (nil, nil) for none.
    private static func decodeSlidingWindow(_ c: KeyedDecodingContainer<CodingKeys>, modelType: String, layers: Int,
                                            maxContext: Int, ropeLayers: [Bool]?) throws -> (window: Int?, layers: [Bool]?) {
        // transformers 5 checks layer_types whenever these configs hold it, used or not.
        let readsLayerTypes = ["qwen2", "qwen3", "smollm3"].contains(modelType)
        let layerTypes = readsLayerTypes ? try c.decodeIfPresent([String].self, forKey: .layerTypes) : nil
        if let layerTypes, let problem = Self.layerTypesProblem(layerTypes, layers: layers) {
            throw DecodingError.dataCorruptedError(forKey: .layerTypes, in: c, debugDescription: problem)
        }
        guard let window = try c.optionalPositiveInt(.slidingWindow), window < maxContext else { return (nil, nil) }
        var sliding = modelType == "mistral" || modelType == "phi3"
        var slidingLayers: [Bool]? = nil
        if readsLayerTypes, try c.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) == true {
            if let layerTypes {
                slidingLayers = layerTypes.map { $0 == "sliding_attention" }
            } else if modelType == "smollm3" {
                slidingLayers = ropeLayers?.map { !$0 }   // its NoPE layers slide
            } else {
                let first = try c.decodeIfPresent(Int.self, forKey: .maxWindowLayers) ?? 28
                slidingLayers = (0..<layers).map { $0 >= first }
            }
            sliding = slidingLayers?.contains(true) == true
        }
        return sliding ? (window, slidingLayers) : (nil, nil)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
            ?? decoder.userInfo[.defaultModelType] as? String ?? "llama"
        // Gemma's configs may leave sizes at their defaults (a multimodal Gemma 3's text_config
        // names only a few); the others' must name them.
        let sizes = Self.gemmaDefaultSizes[modelType]
        func size(_ key: CodingKeys, _ gemmaDefault: KeyPath<GemmaSizes, Int>) throws -> Int {
            guard let sizes else { return try c.positiveInt(key) }
            return try c.optionalPositiveInt(key) ?? sizes[keyPath: gemmaDefault]
        }
        hiddenSize = try size(.hiddenSize, \.hidden)
        intermediateSize = try size(.intermediateSize, \.intermediate)
        layers = try size(.layers, \.layers)
        guard layers <= TransformerShape.largestLayerCount else {
            throw DecodingError.dataCorruptedError(forKey: .layers, in: c,
                debugDescription: "is \(layers), beyond any model (at most \(TransformerShape.largestLayerCount) layers)")
        }
        heads = try size(.heads, \.heads)
        kvHeads = try c.optionalPositiveInt(.kvHeads) ?? sizes?.kvHeads ?? heads
        let declaredHeadDim = try c.optionalPositiveInt(.headDim) ?? sizes?.headDim
        headDim = declaredHeadDim ?? hiddenSize / heads
        // validate() checks the width too, but would name head_dim, which this file does not hold.
        if declaredHeadDim == nil, headDim < 2 || headDim % 2 != 0 {
            throw DecodingError.dataCorruptedError(forKey: .heads, in: c, debugDescription:
                "\(heads) heads in hidden_size \(hiddenSize) are \(headDim) wide (no head_dim is given); rotary embedding needs an even width of at least 2")
        }
        vocabularySize = try size(.vocabularySize, \.vocabulary)
        // Phi3Config's defaults differ from Llama's: a context of 4096, eps 1e-5.
        let isPhi3 = modelType == "phi3"
        maxContext = try c.optionalPositiveInt(.maxContext) ?? (isPhi3 ? 4096 : 2048)
        let declaredContext = maxContext
        ropeLayers = try Self.decodeRopeLayers(c, modelType: modelType, layers: layers)
        (slidingWindow, slidingLayers) = try Self.decodeSlidingWindow(c, modelType: modelType, layers: layers, maxContext: maxContext,
                                                                      ropeLayers: ropeLayers)
        rmsNormEps = try c.decodeIfPresent(Float.self, forKey: .rmsNormEps) ?? (isPhi3 ? 1e-5 : 1e-6)
        rope = try Self.decodeRope(c, headDim: headDim, declaredContext: declaredContext, isPhi3: isPhi3)
        // LongRoPE switches to its long factors past the original context (transformers for
        // the whole sequence, llama.cpp for a context set longer): up to it both use the short
        // factors, as here, and the context ends there (withLongRopeFactors goes on).
        // (A window was kept above only if shorter than the declared context: under the long
        // factors it may apply past the original one.)
        if case .longRope(let longRope) = rope.scaling, longRope.extendsContext { maxContext = longRope.originalContext }
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        // As transformers builds each architecture: Qwen2 always biases q, k and v (never o_proj)
        // whatever attention_bias says; Mistral and Phi-3 have no biases; Llama and Qwen3 bias q, k, v and o
        // with attention_bias; only Llama reads mlp_bias.
        let declaredAttentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        let declaredMLPBias = try c.decodeIfPresent(Bool.self, forKey: .mlpBias) ?? false
        switch modelType {
        case "qwen2": (attentionBias, outputBias, mlpBias) = (true, false, false)
        case "mistral", "phi3": (attentionBias, outputBias, mlpBias) = (false, false, false)
        case "qwen3": (attentionBias, outputBias, mlpBias) = (declaredAttentionBias, declaredAttentionBias, false)
        default: (attentionBias, outputBias, mlpBias) = (declaredAttentionBias, declaredAttentionBias, declaredMLPBias)
        }
        queryKeyNorm = modelType == "qwen3"
        // transformers' "swish" is SiLU under another name.
        if !Self.gemmaModelTypes.contains(modelType), let act = try c.decodeIfPresent(String.self, forKey: .hiddenAct), act != "silu", act != "swish" {
            throw DecodingError.dataCorruptedError(forKey: .hiddenAct, in: c, debugDescription: "only \"silu\" is supported, got \"\(act)\"")
        }
        bosTokenID = try c.integerIfPresent(.bosTokenID)
        eosTokenIDs = try c.tokenIDsIfPresent(.eosTokenID) ?? []
        if isGemma { try readGemma(c) }
    }
}

// MARK: - Loading

extension LlamaModel {
    /// Loads Hugging Face tensor names (`model.layers.N.self_attn.q_proj.weight`, …).
    static func load(huggingFace table: TensorTable, config: LlamaConfig) throws -> LlamaModel {
        let s = config.shape, d = s.hiddenSize
        let embedding = try table.weight("model.embed_tokens.weight", rows: s.vocabularySize, cols: d)
        try table.checkLayerCount(s.layers, key: "num_hidden_layers")
        let blocks = try (0..<s.layers).map { l -> LlamaBlock in
            let p = "model.layers.\(l)."
            func bias(_ name: String, _ n: Int, if present: Bool = config.attentionBias) throws -> [Float]? {
                present ? try table.vector(p + name, count: n) : nil
            }
            // Gemma's norms multiply by (1 + w).
            func norm(_ name: String, count: Int = d) throws -> [Float] {
                try table.vector(p + name, count: count).map { $0 + config.normWeightOffset }
            }
            func headNorm(_ name: String) throws -> [Float]? {
                config.queryKeyNorm ? try norm("self_attn.\(name).weight", count: s.headDim) : nil
            }
            // Gemma's post_attention_layernorm normalises the attention's output; its MLP reads
            // pre_feedforward_layernorm.
            let sandwich = config.sandwichNorms
            let (wq, wk, wv) = config.fusedProjections
                ? try table.fusedAttention(p + "self_attn.qkv_proj.weight", shape: s)
                : (try table.weight(p + "self_attn.q_proj.weight", rows: s.attentionWidth, cols: d),
                   try table.weight(p + "self_attn.k_proj.weight", rows: s.kvWidth, cols: d),
                   try table.weight(p + "self_attn.v_proj.weight", rows: s.kvWidth, cols: d))
            let (wGate, wUp) = config.fusedProjections
                ? try table.fusedGateUp(p + "mlp.gate_up_proj.weight", shape: s)
                : (try table.weight(p + "mlp.gate_proj.weight", rows: s.ffnSize, cols: d),
                   try table.weight(p + "mlp.up_proj.weight", rows: s.ffnSize, cols: d))
            return LlamaBlock(
                attentionNorm: try norm("input_layernorm.weight"),
                q: Linear(weight: wq, bias: try bias("self_attn.q_proj.bias", s.attentionWidth)),
                k: Linear(weight: wk, bias: try bias("self_attn.k_proj.bias", s.kvWidth)),
                v: Linear(weight: wv, bias: try bias("self_attn.v_proj.bias", s.kvWidth)),
                output: TransposedLinear(weightT: try table.transposedWeight(p + "self_attn.o_proj.weight", rows: d, cols: s.attentionWidth),
                                         bias: try bias("self_attn.o_proj.bias", d, if: config.outputBias)),
                mlpNorm: try norm(sandwich ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"),
                gate: Linear(weight: wGate, bias: try bias("mlp.gate_proj.bias", s.ffnSize, if: config.mlpBias)),
                up: Linear(weight: wUp, bias: try bias("mlp.up_proj.bias", s.ffnSize, if: config.mlpBias)),
                down: TransposedLinear(weightT: try table.transposedWeight(p + "mlp.down_proj.weight", rows: d, cols: s.ffnSize),
                                       bias: try bias("mlp.down_proj.bias", d, if: config.mlpBias)),
                queryNorm: try headNorm("q_norm"), keyNorm: try headNorm("k_norm"),
                postAttentionNorm: sandwich ? try norm("post_attention_layernorm.weight") : nil,
                postMLPNorm: sandwich ? try norm("post_feedforward_layernorm.weight") : nil)
        }
        let finalNorm = try table.vector("model.norm.weight", count: d).map { $0 + config.normWeightOffset }
        // Some exporters write the tied copy anyway.
        let lmHead = config.tieWordEmbeddings
            ? try table.tiedHead("lm_head.weight", embeddingName: "model.embed_tokens.weight", embedding: embedding,
                                 rows: s.vocabularySize, cols: d)
            : try table.weight("lm_head.weight", rows: s.vocabularySize, cols: d)
        table.ignore(suffix: "rotary_emb.inv_freq")
        try table.finish()
        return LlamaModel(config: config, architecture: config.modelType, embedding: embedding, blocks: blocks,
                          finalNorm: finalNorm, lmHead: lmHead, sourceDTypes: table.dtypeCounts)
    }

    /// Loads llama.cpp tensor names (`blk.N.attn_q.weight`, …). llama.cpp's converter permutes
    /// the rows of attn_q / attn_k so that RoPE rotates adjacent pairs; we undo that here and keep
    /// Hugging Face's rotate-half RoPE, so one forward serves both formats.
    static func load(gguf table: TensorTable, config: LlamaConfig, permutedQK: Bool) throws -> LlamaModel {
        let s = config.shape, d = s.hiddenSize
        let embedding = try table.weight("token_embd.weight", rows: s.vocabularySize, cols: d)
        try table.checkLayerCount(s.layers, key: "\(config.modelType).block_count")
        let blocks = try (0..<s.layers).map { l -> LlamaBlock in
            let p = "blk.\(l)."
            // A q or k bias is permuted as its rows are.
            func rotaryBias(_ name: String, heads: Int) throws -> [Float]? {
                guard let bias = try table.optionalVector(p + name, count: heads * s.headDim) else { return nil }
                guard permutedQK else { return bias }
                let column = Matrix(rows: bias.count, cols: 1)
                column.pointer.update(from: bias, count: bias.count)
                return unpermuteRotaryRows(column, heads: heads).array
            }
            let (wq, wk, wv): (WeightMatrix, WeightMatrix, WeightMatrix)
            if !permutedQK && table.has(p + "attn_qkv.weight") {
                (wq, wk, wv) = try table.fusedAttention(p + "attn_qkv.weight", shape: s)   // Phi-3's usual layout
            } else {
                var q = try table.matrix(p + "attn_q.weight", rows: s.attentionWidth, cols: d)
                var k = try table.matrix(p + "attn_k.weight", rows: s.kvWidth, cols: d)
                if permutedQK {
                    q = unpermuteRotaryRows(q, heads: s.heads)
                    k = unpermuteRotaryRows(k, heads: s.kvHeads)
                }
                (wq, wk) = (WeightMatrix(q, dtype: table.weightDType), WeightMatrix(k, dtype: table.weightDType))
                wv = try table.weight(p + "attn_v.weight", rows: s.kvWidth, cols: d)
            }
            // llama.cpp's phi3 keeps gate and up in ffn_up (2·F rows, gate first).
            let (wGate, wUp) = config.fusedProjections
                ? try table.fusedGateUp(p + "ffn_up.weight", shape: s)
                : (try table.weight(p + "ffn_gate.weight", rows: s.ffnSize, cols: d),
                   try table.weight(p + "ffn_up.weight", rows: s.ffnSize, cols: d))
            return LlamaBlock(
                attentionNorm: try table.vector(p + "attn_norm.weight", count: d),
                q: Linear(weight: wq, bias: try rotaryBias("attn_q.bias", heads: s.heads)),
                k: Linear(weight: wk, bias: try rotaryBias("attn_k.bias", heads: s.kvHeads)),
                v: Linear(weight: wv, bias: try table.optionalVector(p + "attn_v.bias", count: s.kvWidth)),
                // Every bias is optional, as llama.cpp loads them.
                output: TransposedLinear(weightT: try table.transposedWeight(p + "attn_output.weight", rows: d, cols: s.attentionWidth),
                                         bias: try table.optionalVector(p + "attn_output.bias", count: d)),
                mlpNorm: try table.vector(p + "ffn_norm.weight", count: d),
                gate: Linear(weight: wGate, bias: try table.optionalVector(p + "ffn_gate.bias", count: s.ffnSize)),
                up: Linear(weight: wUp, bias: try table.optionalVector(p + "ffn_up.bias", count: s.ffnSize)),
                down: TransposedLinear(weightT: try table.transposedWeight(p + "ffn_down.weight", rows: d, cols: s.ffnSize),
                                       bias: try table.optionalVector(p + "ffn_down.bias", count: d)),
                queryNorm: config.queryKeyNorm ? try table.vector(p + "attn_q_norm.weight", count: s.headDim) : nil,
                keyNorm: config.queryKeyNorm ? try table.vector(p + "attn_k_norm.weight", count: s.headDim) : nil,
                postAttentionNorm: config.sandwichNorms ? try table.vector(p + "post_attention_norm.weight", count: d) : nil,
                postMLPNorm: config.sandwichNorms ? try table.vector(p + "post_ffw_norm.weight", count: d) : nil)
        }
        let finalNorm = try table.vector("output_norm.weight", count: d)
        let lmHead = try table.optionalWeight("output.weight", rows: s.vocabularySize, cols: d) ?? embedding
        try table.finish()   // rope_freqs.weight was read into config.rope (ModelLoader.ggufRope)
        return LlamaModel(config: config, architecture: config.modelType, embedding: embedding, blocks: blocks,
                          finalNorm: finalNorm, lmHead: lmHead, sourceDTypes: table.dtypeCounts)
    }

    /// llama.cpp stores head h's row (h, i, s) of a rotary projection at h·d_h + 2i + s, where
    /// Hugging Face has it at h·d_h + s·d_h/2 + i (i < d_h/2, s ∈ {0, 1}). Returns the HF order.
    static func unpermuteRotaryRows(_ w: Matrix, heads: Int) -> Matrix {
        let headDim = w.rows / heads, half = headDim / 2
        let out = Matrix(rows: w.rows, cols: w.cols)
        for h in 0..<heads {
            for i in 0..<half {
                for s in 0..<2 {
                    out.row(h * headDim + s * half + i).update(from: w.row(h * headDim + 2 * i + s), count: w.cols)
                }
            }
        }
        return out
    }
}
