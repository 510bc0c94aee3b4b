import Foundation
import Testing
@testable import ShadowKernels
@testable import ShadowModels
import ShadowTestSupport


/// Tiny random-weight models for the criteria tests.
enum TinyModels {
    /// A Llama with random weights. `silencedHead` gets all-zero v rows (so its A is exactly zero;
    /// needs kvHeads == heads) and `silencedNeuron` an all-zero up row (so its N is exactly zero).
    static func llama(layers: Int = 2, hidden: Int = 32, heads: Int = 4, kvHeads: Int = 2, ffn: Int = 48, vocab: Int = 50,
                      silencedHead: Int? = nil, silencedNeuron: Int? = nil) -> LlamaModel {
        let config = LlamaConfig(hiddenSize: hidden, intermediateSize: ffn, layers: layers, heads: heads,
                                 kvHeads: kvHeads, vocabularySize: vocab, maxContext: 300)
        let s = config.shape
        var seed: UInt64 = 500
        func next() -> UInt64 { seed += 1; return seed }
        func matrix(_ rows: Int, _ cols: Int, scale: Float = 0.3, zeroRows: Range<Int>? = nil) -> WeightMatrix {
            var values = randomFloats(rows * cols, seed: next()).map { $0 * scale }
            if let zeroRows { for r in zeroRows { for c in 0..<cols { values[r * cols + c] = 0 } } }
            return WeightMatrix(Matrix(rows: rows, cols: cols, values: values), dtype: .f32)
        }
        func norm() -> [Float] { randomFloats(hidden, seed: next()).map { 1 + 0.1 * $0 } }
        let blocks = (0..<layers).map { _ in
            LlamaBlock(attentionNorm: norm(),
                       q: Linear(weight: matrix(s.attentionWidth, hidden)),
                       k: Linear(weight: matrix(s.kvWidth, hidden)),
                       v: Linear(weight: matrix(s.kvWidth, hidden,
                                                zeroRows: silencedHead.map { $0 * s.headDim..<($0 + 1) * s.headDim })),
                       output: TransposedLinear(weightT: matrix(s.attentionWidth, hidden)),
                       mlpNorm: norm(),
                       gate: Linear(weight: matrix(ffn, hidden)),
                       up: Linear(weight: matrix(ffn, hidden, zeroRows: silencedNeuron.map { $0..<$0 + 1 })),
                       down: TransposedLinear(weightT: matrix(ffn, hidden)))
        }
        let embedding = matrix(vocab, hidden, scale: 1)
        return LlamaModel(config: config, architecture: "llama", embedding: embedding, blocks: blocks,
                          finalNorm: norm(), lmHead: embedding)
    }

    /// A reference checkpoint of the models' test target (written by scripts/reference/make_fixtures.py).
    static func fixture(_ name: String, weights: WeightDType = .f32) throws -> any DifferentiableLanguageModel {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ShadowModelsTests/Fixtures/\(name)").path
        return try #require(try ModelLoader.load(path: path, weights: weights).model as? any DifferentiableLanguageModel)
    }
}
