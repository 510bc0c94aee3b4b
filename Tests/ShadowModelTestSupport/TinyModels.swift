import ShadowKernels
import ShadowModels
import ShadowTestSupport

/// Tiny random-weight models built in code, for tests that need a model but no files.
public enum TinyModels {
    /// A Llama whose weights are drawn deterministically: each tensor takes `randomFloats` from a
    /// seed of its own, `baseSeed + 1`, `+ 2`, … in construction order (per block: attention norm,
    /// q, k, v with their biases, output, MLP norm, gate, up, down; then the tied embedding and the
    /// final norm). Equal arguments give bit-for-bit equal models, which tests' expected numbers
    /// rely on. Projections are scaled by `scale`, the embedding is not; norms lie in 1 ± 0.1 and
    /// the q, k and v biases (with `bias`) in ± 0.1.
    ///
    /// `silencedHead` gets all-zero v rows, so its attention output is exactly zero (one kv head
    /// per head and no bias, or the zero rows would not silence it alone); `silencedNeuron` gets an
    /// all-zero up row, so its activation is exactly zero.
    public static func llama(layers: Int = 2, hidden: Int = 32, heads: Int = 4, kvHeads: Int = 2, ffn: Int = 48,
                             vocab: Int = 50, bias: Bool = false, weights: WeightDType = .f32, maxContext: Int = 64,
                             baseSeed: UInt64 = 100, scale: Float = 0.2,
                             silencedHead: Int? = nil, silencedNeuron: Int? = nil) -> LlamaModel {
        precondition(silencedHead == nil || (kvHeads == heads && !bias), "a silenced head needs its own kv head and no bias")
        let config = LlamaConfig(hiddenSize: hidden, intermediateSize: ffn, layers: layers, heads: heads,
                                 kvHeads: kvHeads, vocabularySize: vocab, maxContext: maxContext, attentionBias: bias)
        let s = config.shape
        var seed = baseSeed
        func nextSeed() -> UInt64 { seed += 1; return seed }
        func matrix(_ rows: Int, scale: Float, zeroRows: Range<Int>? = nil) -> WeightMatrix {
            var values = randomFloats(rows * hidden, seed: nextSeed()).map { $0 * scale }
            if let zeroRows {
                values.replaceSubrange(zeroRows.lowerBound * hidden..<zeroRows.upperBound * hidden,
                                       with: repeatElement(0, count: zeroRows.count * hidden))
            }
            return WeightMatrix(Matrix(rows: rows, cols: hidden, values: values), dtype: weights)
        }
        // Every projection here is stored with `hidden` columns (output and down transposed).
        func projection(_ rows: Int, zeroRows: Range<Int>? = nil) -> WeightMatrix {
            matrix(rows, scale: scale, zeroRows: zeroRows)
        }
        func norm() -> [Float] { randomFloats(hidden, seed: nextSeed()).map { 1 + 0.1 * $0 } }
        func biasVector(_ count: Int) -> [Float]? { bias ? randomFloats(count, seed: nextSeed()).map { 0.1 * $0 } : nil }
        let silencedValueRows = silencedHead.map { $0 * s.headDim..<($0 + 1) * s.headDim }
        let silencedUpRow = silencedNeuron.map { $0..<$0 + 1 }
        let blocks = (0..<layers).map { _ in
            LlamaBlock(attentionNorm: norm(),
                       q: Linear(weight: projection(s.attentionWidth), bias: biasVector(s.attentionWidth)),
                       k: Linear(weight: projection(s.kvWidth), bias: biasVector(s.kvWidth)),
                       v: Linear(weight: projection(s.kvWidth, zeroRows: silencedValueRows), bias: biasVector(s.kvWidth)),
                       output: TransposedLinear(weightT: projection(s.attentionWidth)),
                       mlpNorm: norm(),
                       gate: Linear(weight: projection(ffn)),
                       up: Linear(weight: projection(ffn, zeroRows: silencedUpRow)),
                       down: TransposedLinear(weightT: projection(ffn)))
        }
        let embedding = matrix(vocab, scale: 1)
        return LlamaModel(config: config, architecture: "llama", embedding: embedding, blocks: blocks,
                          finalNorm: norm(), lmHead: embedding)
    }
}
