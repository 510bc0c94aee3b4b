import ShadowKernels

/// The sizes every decoder-only transformer here shares, whatever its architecture. Later stages
/// (importance scores, predictors, masks) speak only in these terms: L layers, H query heads,
/// G KV heads of width d_h, model width d, FFN width F (DESIGN §2).
public struct TransformerShape: Sendable, Equatable, Codable {
    public var layers: Int
    public var hiddenSize: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var ffnSize: Int
    public var vocabularySize: Int
    public var maxContext: Int

    public init(layers: Int, hiddenSize: Int, heads: Int, kvHeads: Int, headDim: Int, ffnSize: Int,
                vocabularySize: Int, maxContext: Int) {
        self.layers = layers
        self.hiddenSize = hiddenSize
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.ffnSize = ffnSize
        self.vocabularySize = vocabularySize
        self.maxContext = maxContext
    }

    enum CodingKeys: String, CodingKey {
        case layers, heads, hiddenSize = "hidden_size", kvHeads = "kv_heads", headDim = "head_dim"
        case ffnSize = "ffn_size", vocabularySize = "vocab_size", maxContext = "max_context"
    }

    /// Width of the concatenated per-head attention output A (before the output projection).
    public var attentionWidth: Int { heads * headDim }
    public var kvWidth: Int { kvHeads * headDim }
    /// Query heads that share one KV head.
    public var groupSize: Int { heads / kvHeads }

    /// The sizes that tell two models apart, for messages ("30 layers, 9 heads of 64, …").
    public var describedSizes: String {
        "\(layers) layers, \(heads) heads of \(headDim) (\(kvHeads) KV), width \(hiddenSize), \(ffnSize) neurons per layer, vocabulary \(vocabularySize), context \(maxContext)"
    }
}

extension TransformerShape {
    /// The largest value any size may take. No model comes near it (the largest vocabularies have
    /// about 10^6 tokens, the longest contexts about 10^7). Traces and predictors refuse a larger
    /// size in their fingerprint as corrupt, so loading refuses it too: a model that loads must be
    /// one whose traces load again.
    public static let largestSize = Int(Int32.max)

    /// The most layers a config may name. Configs build per-layer lists while they are read,
    /// before any tensor can be counted: a fuzzed num_hidden_layers of 4.4·10⁹ once spent
    /// seconds and gigabytes on one (the largest models have a few hundred layers).
    public static let largestLayerCount = 1 << 16

    /// The widest head a config may name. RoPE's frequencies are computed per rotating pair while
    /// a config is checked, before any tensor: a head_dim of 2^32 once spent eight minutes and
    /// 8 GB on them (the widest heads in use have a few hundred dimensions).
    public static let largestHeadDim = 1 << 16

    /// Why `value` cannot be a size of a model (a layer count, a width, a vocabulary), or nil when
    /// it can. Model configs and fingerprints share this one rule.
    public static func sizeProblem(_ value: Int) -> String? {
        if value <= 0 { return "must be positive, got \(value)" }
        if value > largestSize { return "is \(value), beyond any model (at most \(largestSize))" }
        return nil
    }
}

/// What a caller wants back from a forward pass.
public enum LogitsRequest: Sendable {
    /// No logits (prefill whose result is not needed yet).
    case none
    /// Logits of the last token only: `[vocab]`.
    case last
    /// Logits of every token: `[T, vocab]`, row-major.
    case all
    /// Logits of the tokens from row `first` on: `[T - first, vocab]`, row-major.
    case from(Int)
    /// Per token t, log p(targets[t] | tokens ≤ t): `[T]`. The vocabulary projection runs in
    /// blocks of rows and keeps nothing else, so scoring a long window does not hold its
    /// (T, vocab) logits (1.6 GB for 8192 tokens of SmolLM2).
    case targetLogProbabilities([Int])
}

/// A decoder-only language model that runs tokens through a KV cache. Llama and OPT implement it
/// in their own files; everything above the model (generation, scoring, the CLI) uses only this.
public protocol CausalLanguageModel: AnyObject, Sendable {
    /// The architecture's registry name (`llama`, `qwen2`, `opt`, …).
    var architecture: String { get }
    var shape: TransformerShape { get }
    /// Total parameters (tied weights counted once).
    var parameterCount: Int { get }
    /// Bytes of weights one decoded token reads: every matrix row the plans keep (all when nil),
    /// the LM head included; every K/V row when `keepingAllKeysAndValues` (masks that change
    /// during decode keep the cache whole).
    func decodeBytesPerToken(plans: [LayerPlan]?, keepingAllKeysAndValues: Bool) -> Int
    /// The precision the block weights are kept in (`--weights`).
    var weightDType: WeightDType { get }
    /// Dtypes found in the checkpoint, e.g. `["q4_1": 210, "f32": 61]` (tensor counts).
    var sourceDTypes: [String: Int] { get }
    /// Sliding-window attention's window, in the layers that slide (nil: none).
    var slidingWindow: Int? { get }
    /// Why `shape.maxContext` is shorter than the checkpoint's declared context, for messages (nil: it is not).
    var contextLimit: String? { get }

    /// Runs `tokens` at positions `cache.length ..< cache.length + tokens.count`, appends their
    /// keys and values to `cache`, and returns the requested logits. With a sparsity controller,
    /// layers 1… run with the plans it chooses (layer 0 always runs dense). With `branches`, the
    /// tokens are several continuations of a context instead of one sequence, the context either
    /// cached or at the front of the pass (then a controller predicts from its last token; see
    /// `Branches`).
    func forward(_ tokens: [Int], cache: KVCache, logits: LogitsRequest, sparsity: (any SparsityController)?,
                 branches: Branches?) -> [Float]
}

extension CausalLanguageModel {
    public var slidingWindow: Int? { nil }

    /// Why the context ends before the model's declared one, if it does: past `maxContext` the
    /// model would rotate differently (LongRoPE).
    public var contextLimit: String? { nil }

    /// "the model's context of N", saying why N ends there when `contextLimit` does, for error messages.
    public var contextDescription: String {
        "the model's context of \(shape.maxContext)" + (contextLimit.map { " (\($0))" } ?? "")
    }

    /// Bytes of weights one dense decoded token reads.
    public var decodeBytesPerToken: Int { decodeBytesPerToken(plans: nil) }

    /// Bytes of weights one decoded token reads under fixed `plans`.
    public func decodeBytesPerToken(plans: [LayerPlan]?) -> Int { decodeBytesPerToken(plans: plans, keepingAllKeysAndValues: false) }

    /// The dense forward pass.
    public func forward(_ tokens: [Int], cache: KVCache, logits: LogitsRequest) -> [Float] {
        forward(tokens, cache: cache, logits: logits, sparsity: nil, branches: nil)
    }

    /// One sequence continuing the cache.
    public func forward(_ tokens: [Int], cache: KVCache, logits: LogitsRequest, sparsity: (any SparsityController)?) -> [Float] {
        forward(tokens, cache: cache, logits: logits, sparsity: sparsity, branches: nil)
    }

    /// A cache for `capacity` positions (the model's whole window when nil), in fp16 when the
    /// weights are 16-bit or 8-bit and in fp32 otherwise, so that fp32 runs stay exact. bf16 products keep
    /// fp32 too: they round the projections' inputs, not attention's.
    public func makeCache(capacity: Int? = nil) -> KVCache {
        let dtype: WeightDType = weightDType == .f32 || weightDType == .bf16dot ? .f32 : .f16
        return KVCache(shape: shape, capacity: capacity ?? shape.maxContext, dtype: dtype)
    }
}
