import Foundation
import ShadowFormats
import ShadowKernels

// OPT (Zhang et al. 2022): learned positions with offset 2, LayerNorm, ReLU MLP, biases
// everywhere. OPT-350m is post-LN and projects its 512-wide embedding to the 1024-wide stream
// (project_in / project_out).

/// One decoder block's weights; fc2 and the output projection are stored transposed.
public struct OPTBlock: Sendable {
    public let attentionNormWeight: [Float], attentionNormBias: [Float]  // (d)
    public let q: Linear, k: Linear, v: Linear                          // (H·d_h, d) + bias
    public let output: TransposedLinear                                  // (H·d_h, d) + bias
    public let mlpNormWeight: [Float], mlpNormBias: [Float]              // (d)
    public let fc1: Linear                                               // (F, d) + bias
    public let fc2: TransposedLinear                                     // (F, d) + bias
}

public final class OPTModel: CausalLanguageModel, @unchecked Sendable {
    /// OPT's learned position table starts at row 2 (fairseq kept rows 0–1 for padding).
    public static let positionOffset = 2

    public let config: OPTConfig
    public let shape: TransformerShape
    public var architecture: String { "opt" }
    public let embedding: WeightMatrix       // (V, e), e = word_embed_proj_dim
    public let positions: Matrix             // (maxContext + 2, d)
    public let projectIn: Linear?            // (d, e)
    public let projectOut: Linear?           // (e, d)
    public let blocks: [OPTBlock]
    public let finalNormWeight: [Float]?, finalNormBias: [Float]?  // pre-LN models only
    public let lmHead: WeightMatrix          // (V, e); the embedding when tied
    public let sourceDTypes: [String: Int]
    public var weightDType: WeightDType {
        WeightDType.asked(storing: [embedding] + (blocks.first.map { b in [b.q.weight, b.output.weightT, b.fc1.weight, b.fc2.weightT] } ?? []))
    }

    init(config: OPTConfig, embedding: WeightMatrix, positions: Matrix, projectIn: Linear?, projectOut: Linear?,
         blocks: [OPTBlock], finalNormWeight: [Float]?, finalNormBias: [Float]?, lmHead: WeightMatrix,
         sourceDTypes: [String: Int]) {
        self.config = config
        self.shape = config.shape
        self.embedding = embedding
        self.positions = positions
        self.projectIn = projectIn
        self.projectOut = projectOut
        self.blocks = blocks
        self.finalNormWeight = finalNormWeight
        self.finalNormBias = finalNormBias
        self.lmHead = lmHead
        self.sourceDTypes = sourceDTypes
    }

    public var parameterCount: Int {
        let s = shape, d = s.hiddenSize
        let perBlock = 4 * d + 4 * d * d + 4 * d + 2 * d * s.ffnSize + s.ffnSize + d
        var total = embedding.count + positions.count + s.layers * perBlock
        total += (projectIn?.weight.count ?? 0) + (projectOut?.weight.count ?? 0)
        total += (finalNormWeight?.count ?? 0) * 2
        if lmHead !== embedding { total += lmHead.count }
        return total
    }

    public func decodeBytesPerToken(plans: [LayerPlan]?, keepingAllKeysAndValues: Bool) -> Int {
        let blockBytes = blocks.enumerated().map { l, b in
            BlockSteps.decodeBytes(q: b.q.weight, k: b.k.weight, v: b.v.weight, output: b.output.weightT,
                                   mlpRows: [b.fc1.weight, b.fc2.weightT],
                                   plan: plans.flatMap { l < $0.count ? $0[l] : nil }, keepingAllKeysAndValues: keepingAllKeysAndValues, shape: shape)
        }
        return blockBytes.reduce(0, +) + lmHead.byteCount + (projectIn?.weight.byteCount ?? 0)
            + (projectOut?.weight.byteCount ?? 0)
    }

    public func forward(_ tokens: [Int], cache: KVCache, logits request: LogitsRequest,
                        sparsity: (any SparsityController)?, branches: Branches?) -> [Float] {
        let s = shape
        let T = tokens.count, d = s.hiddenSize, e = config.wordEmbedProjectionDim
        let past = cache.length
        // guard, not precondition: the release build's -Ounchecked drops preconditions, and an
        // overflow here would write past the cache or read past the learned position table.
        guard T > 0 && past + T <= cache.capacity && past + T <= s.maxContext else { fatalError("context overflow") }
        guard branches == nil || branches!.tokenCount == T else { fatalError("branches cover the tokens") }
        LayerPlan.checkForward(shape: s, cache: cache, sparsity: sparsity)
        let promptRows = branches?.promptRows(tokens: T) ?? T   // what a controller predicts from
        let scratch = cache.scratch
        let x = cache.buffer("x", rows: T, cols: d)
        let xn = cache.buffer("xn", rows: T, cols: max(d, e))
        let eps = config.layerNormEps

        if let projectIn {
            for (t, token) in tokens.enumerated() { embedding.widenRows(token..<token + 1, into: xn + t * e) }
            projectIn.apply(x, xn, tokens: T, scratch: scratch)
        } else {
            for (t, token) in tokens.enumerated() { embedding.widenRows(token..<token + 1, into: x + t * d) }
        }
        for t in 0..<T {
            Ops.add(x + t * d, positions.row(branches.position(of: t, past: past) + Self.positionOffset), count: d)
        }

        let scale = config.attentionScale
        let preLN = config.doLayerNormBefore
        let execution = sparsity?.execution ?? .skip
        for (l, block) in blocks.enumerated() {
            // Layer 0 always runs dense: its attention output feeds the predictor.
            let plan = l == 0 ? nil : LayerPlan.checked(sparsity?.plan(layer: l, input: x, tokens: promptRows, position: past), layer: l, shape: s)
            // Attention: pre-LN normalises the block input, post-LN the residual sum.
            if preLN {
                layerNorm(xn, x, block.attentionNormWeight, block.attentionNormBias, rows: T, eps: eps)
            } else {
                xn.update(from: x, count: T * d)
            }
            BlockSteps.attention(
                x: x, xn: xn, q: block.q, k: block.k, v: block.v, output: block.output, plan: plan,
                execution: execution, sparsity: sparsity, promptRows: promptRows, cache: cache, layer: l,
                past: past, tokens: T, branches: branches, scale: scale, rope: nil)
            if !preLN { layerNorm(x, x, block.attentionNormWeight, block.attentionNormBias, rows: T, eps: eps) }

            if preLN {
                layerNorm(xn, x, block.mlpNormWeight, block.mlpNormBias, rows: T, eps: eps)
            } else {
                xn.update(from: x, count: T * d)
            }
            let kept = execution == .skip ? plan?.neurons : nil
            let width = kept?.count ?? s.ffnSize
            let h = cache.buffer("hidden", rows: T, cols: width)
            if let kept {
                block.fc1.apply(h, xn, tokens: T, rows: kept, scratch: scratch)
                Ops.relu(h, count: T * width)
                block.fc2.apply(x, h, tokens: T, rows: kept, accumulate: true, scratch: scratch)
            } else {
                block.fc1.apply(h, xn, tokens: T, scratch: scratch)
                Ops.relu(h, count: T * width)
                if execution == .zero, let neurons = plan?.neurons {
                    BlockSteps.zeroUnits(h, kept: neurons, units: s.ffnSize, width: 1, tokens: T)
                }
                block.fc2.apply(x, h, tokens: T, accumulate: true, scratch: scratch)
            }
            if !preLN { layerNorm(x, x, block.mlpNormWeight, block.mlpNormBias, rows: T, eps: eps) }
        }
        cache.advance(by: T)

        let out = cache.buffer("projected", rows: T, cols: e)
        return LMHead.logits(x: x, tokens: T, width: d, norm: { dst, src, rows in
            var input = src
            if let w = finalNormWeight, let b = finalNormBias {
                layerNorm(dst, src, w, b, rows: rows, eps: eps)
                input = UnsafePointer(dst)
            } else if projectOut == nil {
                dst.update(from: src, count: rows * d)
            }
            if let projectOut {
                projectOut.apply(out, input, tokens: rows, scratch: scratch)
                dst.update(from: out, count: rows * e)
            }
        }, head: lmHead, normed: xn, scratch: scratch, request: request)
    }

    private func layerNorm(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: [Float], _ b: [Float],
                           rows: Int, eps: Float) {
        w.withUnsafeBufferPointer { wp in
            b.withUnsafeBufferPointer { bp in
                Ops.layerNorm(out, x, wp.baseAddress!, bp.baseAddress!, rows: rows, n: shape.hiddenSize, eps: eps)
            }
        }
    }
}

// MARK: - Configuration

/// An OPT `config.json`.
public struct OPTConfig: Sendable, Equatable {
    public var hiddenSize: Int
    public var ffnSize: Int
    public var layers: Int
    public var heads: Int
    public var vocabularySize: Int
    public var maxContext: Int
    /// Scaled dot-product attention's 1/√d_h (one place for the forward pass and its gradients).
    public var attentionScale: Float { 1 / Float(hiddenSize / heads).squareRoot() }
    /// Pre-LN (`true`, most OPT sizes) or post-LN (`false`, OPT-350m).
    public var doLayerNormBefore: Bool
    /// Width of the token embedding; differs from `hiddenSize` when project_in/out exist.
    public var wordEmbedProjectionDim: Int
    public var removeFinalLayerNorm: Bool
    /// The LM head is the token embedding (every published OPT); `false` reads lm_head.weight.
    public var tieWordEmbeddings = true
    public var layerNormEps: Float = 1e-5
    public var bosTokenID: Int
    public var eosTokenID: Int

    public init(hiddenSize: Int, ffnSize: Int, layers: Int, heads: Int, vocabularySize: Int, maxContext: Int = 2048,
                doLayerNormBefore: Bool = true, wordEmbedProjectionDim: Int? = nil, removeFinalLayerNorm: Bool = false,
                bosTokenID: Int = 2, eosTokenID: Int = 2) {
        self.hiddenSize = hiddenSize
        self.ffnSize = ffnSize
        self.layers = layers
        self.heads = heads
        self.vocabularySize = vocabularySize
        self.maxContext = maxContext
        self.doLayerNormBefore = doLayerNormBefore
        self.wordEmbedProjectionDim = wordEmbedProjectionDim ?? hiddenSize
        self.removeFinalLayerNorm = removeFinalLayerNorm
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
    }

    public var shape: TransformerShape {
        TransformerShape(layers: layers, hiddenSize: hiddenSize, heads: heads, kvHeads: heads,
                         headDim: hiddenSize / heads, ffnSize: ffnSize, vocabularySize: vocabularySize,
                         maxContext: maxContext)
    }

    /// Hugging Face builds the final LayerNorm only for pre-LN models.
    public var hasFinalLayerNorm: Bool { doLayerNormBefore && !removeFinalLayerNorm }

    func validate(path: String) throws {
        // Decoding checks positivity, a config built by hand may not have been (heads divides below).
        let sizes = [("hidden_size", hiddenSize), ("ffn_dim", ffnSize), ("num_hidden_layers", layers),
                     ("num_attention_heads", heads), ("vocab_size", vocabularySize),
                     ("max_position_embeddings", maxContext), ("word_embed_proj_dim", wordEmbedProjectionDim)]
        for (name, value) in sizes where value <= 0 {
            throw ShadowError.badJSON(path: path, key: name, reason: "must be positive, got \(value)")
        }
        guard hiddenSize % heads == 0 else {
            throw ShadowError.badJSON(path: path, key: "num_attention_heads",
                                      reason: "\(heads) does not divide hidden_size \(hiddenSize)")
        }
        for (name, id) in [("bos_token_id", bosTokenID), ("eos_token_id", eosTokenID)] where !(0..<vocabularySize).contains(id) {
            throw ShadowError.badJSON(path: path, key: name, reason: "\(id) is outside the vocabulary of \(vocabularySize)")
        }
        // As for Llama: the sizes loading and the KV cache multiply out must fit in an Int.
        try checkProducts(path: path, [
            [("hidden_size", hiddenSize), ("hidden_size", hiddenSize)],
            [("ffn_dim", ffnSize), ("hidden_size", hiddenSize)],
            [("vocab_size", vocabularySize), ("word_embed_proj_dim", wordEmbedProjectionDim)],
            [("word_embed_proj_dim", wordEmbedProjectionDim), ("hidden_size", hiddenSize)],
            [("max_position_embeddings", maxContext), ("hidden_size", hiddenSize)],
            [("num_hidden_layers", layers), ("max_position_embeddings", maxContext),
             ("hidden_size", hiddenSize), ("both keys and values", 2)],
        ])
        // As for Llama: no size the fingerprint of its traces would refuse.
        for (name, value) in sizes {
            if let problem = TransformerShape.sizeProblem(value) { throw ShadowError.badJSON(path: path, key: name, reason: problem) }
        }
    }
}

extension OPTConfig: Decodable {
    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", ffnSize = "ffn_dim", layers = "num_hidden_layers"
        case heads = "num_attention_heads", vocabularySize = "vocab_size", maxContext = "max_position_embeddings"
        case doLayerNormBefore = "do_layer_norm_before", wordEmbedProjectionDim = "word_embed_proj_dim"
        case removeFinalLayerNorm = "_remove_final_layer_norm", activation = "activation_function"
        case enableBias = "enable_bias", elementwiseAffine = "layer_norm_elementwise_affine"
        case bosTokenID = "bos_token_id", eosTokenID = "eos_token_id"
        case tieWordEmbeddings = "tie_word_embeddings"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.positiveInt(.hiddenSize)
        ffnSize = try c.positiveInt(.ffnSize)
        layers = try c.positiveInt(.layers)
        guard layers <= TransformerShape.largestLayerCount else {
            throw DecodingError.dataCorruptedError(forKey: .layers, in: c,
                debugDescription: "is \(layers), beyond any model (at most \(TransformerShape.largestLayerCount) layers)")
        }
        heads = try c.positiveInt(.heads)
        vocabularySize = try c.positiveInt(.vocabularySize)
        maxContext = try c.optionalPositiveInt(.maxContext) ?? 2048
        doLayerNormBefore = try c.decodeIfPresent(Bool.self, forKey: .doLayerNormBefore) ?? true
        wordEmbedProjectionDim = try c.optionalPositiveInt(.wordEmbedProjectionDim) ?? hiddenSize
        removeFinalLayerNorm = try c.decodeIfPresent(Bool.self, forKey: .removeFinalLayerNorm) ?? false
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
        bosTokenID = try c.integerIfPresent(.bosTokenID) ?? 2
        eosTokenID = try c.integerIfPresent(.eosTokenID) ?? 2
        if let act = try c.decodeIfPresent(String.self, forKey: .activation), act != "relu" {
            throw DecodingError.dataCorruptedError(forKey: .activation, in: c, debugDescription: "only \"relu\" is supported, got \"\(act)\"")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .enableBias) == false {
            throw DecodingError.dataCorruptedError(forKey: .enableBias, in: c, debugDescription: "OPT without biases is not supported")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .elementwiseAffine) == false {
            throw DecodingError.dataCorruptedError(forKey: .elementwiseAffine, in: c, debugDescription: "LayerNorm without weights is not supported")
        }
    }
}

// MARK: - Loading

extension OPTModel {
    /// Loads Hugging Face names; both `model.decoder.…` and the older bare `decoder.…` prefixes.
    static func load(huggingFace table: TensorTable, config: OPTConfig) throws -> OPTModel {
        let s = config.shape, d = s.hiddenSize, e = config.wordEmbedProjectionDim
        let root = table.has("model.decoder.embed_tokens.weight") ? "model.decoder." : "decoder."
        let embedding = try table.weight(root + "embed_tokens.weight", rows: s.vocabularySize, cols: e)
        let positions = try table.matrix(root + "embed_positions.weight", rows: s.maxContext + OPTModel.positionOffset, cols: d)
        var projectIn: Linear?, projectOut: Linear?
        if e != d {
            projectIn = Linear(weight: try table.weight(root + "project_in.weight", rows: d, cols: e))
            projectOut = Linear(weight: try table.weight(root + "project_out.weight", rows: e, cols: d))
        }
        try table.checkLayerCount(s.layers, key: "num_hidden_layers")
        let blocks = try (0..<s.layers).map { l -> OPTBlock in
            let p = root + "layers.\(l)."
            func linear(_ name: String, _ rows: Int, _ cols: Int) throws -> Linear {
                Linear(weight: try table.weight(p + name + ".weight", rows: rows, cols: cols),
                       bias: try table.vector(p + name + ".bias", count: rows))
            }
            func transposed(_ name: String, _ rows: Int, _ cols: Int) throws -> TransposedLinear {
                TransposedLinear(weightT: try table.transposedWeight(p + name + ".weight", rows: rows, cols: cols),
                                 bias: try table.vector(p + name + ".bias", count: rows))
            }
            return OPTBlock(
                attentionNormWeight: try table.vector(p + "self_attn_layer_norm.weight", count: d),
                attentionNormBias: try table.vector(p + "self_attn_layer_norm.bias", count: d),
                q: try linear("self_attn.q_proj", d, d), k: try linear("self_attn.k_proj", d, d),
                v: try linear("self_attn.v_proj", d, d), output: try transposed("self_attn.out_proj", d, d),
                mlpNormWeight: try table.vector(p + "final_layer_norm.weight", count: d),
                mlpNormBias: try table.vector(p + "final_layer_norm.bias", count: d),
                fc1: try linear("fc1", s.ffnSize, d), fc2: try transposed("fc2", d, s.ffnSize))
        }
        var finalWeight: [Float]?, finalBias: [Float]?
        if config.hasFinalLayerNorm {
            finalWeight = try table.vector(root + "final_layer_norm.weight", count: d)
            finalBias = try table.vector(root + "final_layer_norm.bias", count: d)
        }
        // OPT ties the LM head to the embedding (a saved copy with other contents is the head, as
        // transformers reads it); an untied config (tie_word_embeddings: false) has a head of its own.
        let lmHead = config.tieWordEmbeddings
            ? try table.tiedHead("lm_head.weight", embeddingName: root + "embed_tokens.weight", embedding: embedding,
                                 rows: s.vocabularySize, cols: e)
            : try table.weight("lm_head.weight", rows: s.vocabularySize, cols: e)
        try table.finish()
        return OPTModel(config: config, embedding: embedding, positions: positions, projectIn: projectIn,
                        projectOut: projectOut, blocks: blocks, finalNormWeight: finalWeight, finalNormBias: finalBias,
                        lmHead: lmHead, sourceDTypes: table.dtypeCounts)
    }
}
