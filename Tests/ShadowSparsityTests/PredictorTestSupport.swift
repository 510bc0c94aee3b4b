import Foundation
import Testing
@testable import ShadowKernels
@testable import ShadowModels
@testable import ShadowSparsity
import ShadowTestSupport

func temporaryDirectory(_ name: String) -> String {
    let path = TestScratch.path(name)
    try? FileManager.default.removeItem(atPath: path)
    return path
}

/// Trace directories whose scores are a known nonlinear function of the predictor input plus a
/// little noise, so a predictor can learn them.
enum SyntheticTraces {
    static let shape = TransformerShape(layers: 3, hiddenSize: 16, heads: 4, kvHeads: 2, headDim: 4, ffnSize: 12,
                                        vocabularySize: 32, maxContext: 64)
    static let fingerprint = ModelFingerprint(name: "synthetic", architecture: "llama", shape: shape, contentHash: "00000000000000aa")

    /// Every sample comes from a latent z ∈ [-1, 1]⁴: x and each layer's residual input are
    /// smooth functions of z whose first two entries are 0 and 1 (so the predictors' per-sample
    /// min–max scaling leaves them unchanged), and every score is sigmoid(w·z) plus a little
    /// noise, with w drawn per unit: a ranking that changes with the input and can be learnt
    /// from x (shadow) and from any layer's input (dejavu, dejavu-lookahead).
    static func records(count: Int, shape s: TransformerShape = shape, criteria: [String] = ["plainact"],
                        headsOnly: Set<String> = [], noise: Float = 0.01, seed: UInt64 = 7) -> [TraceRecord] {
        let latent = 4, L = s.layers
        let xMixing = randomFloats(s.attentionWidth * latent, seed: 11)
        let inputMixing = randomFloats(L * s.hiddenSize * latent, seed: 12)
        let headWeights = randomFloats(L * s.heads * latent, seed: 13)
        let neuronWeights = randomFloats(L * s.ffnSize * latent, seed: 14)
        var noiseSource = SeededGenerator(seed: seed &+ 99)
        func jitter() -> Float { noise * (Float(noiseSource.next() >> 40) / Float(1 << 24) * 2 - 1) }
        func embed(_ z: [Float], _ mixing: [Float], offset: Int, width: Int) -> [Float] {
            (0..<width).map { r in
                if r < 2 { return Float(r) }
                var sum: Float = 0
                for k in 0..<latent { sum += mixing[(offset + r) * latent + k] * z[k] }
                return 0.5 + 0.45 * tanh(sum)
            }
        }
        func scores(_ z: [Float], _ weights: [Float], units: Int) -> [Float] {
            (0..<L * units).map { i in
                var sum: Float = 0
                for k in 0..<latent { sum += weights[i * latent + k] * z[k] }
                return 1 / (1 + exp(-3 * sum)) + jitter()
            }
        }
        return (0..<count).map { i in
            let z = randomFloats(latent, seed: seed &* 1000 &+ UInt64(i))
            let x = embed(z, xMixing, offset: 0, width: s.attentionWidth)
            let inputs = (0..<L).flatMap { embed(z, inputMixing, offset: $0 * s.hiddenSize, width: s.hiddenSize) }
            var heads: [String: [Float]] = [:], neurons: [String: [Float]] = [:]
            for c in criteria {
                heads[c] = scores(z, headWeights, units: s.heads)
                if !headsOnly.contains(c) { neurons[c] = scores(z, neuronWeights, units: s.ffnSize) }
            }
            return TraceRecord(index: i, loss: 1, x: x, attention: [Float](repeating: 0, count: L * s.attentionWidth),
                               layerInputs: inputs, heads: heads, neurons: neurons)
        }
    }

    /// Writes `count` samples to a new trace directory with `TraceWriter`.
    static func write(directory: String, count: Int, shape s: TransformerShape = shape, criteria: [String] = ["plainact"],
                      headsOnly: Set<String> = [], chunkSize: Int = 64) throws {
        let model = ModelFingerprint(name: "synthetic", architecture: "llama", shape: s, contentHash: fingerprint.contentHash)
        let manifest = TraceManifest(model: model, criteria: criteria, predictorToken: .lastContext, sources: ["synthetic"],
                                     options: CalibrationOptions(), requestedSamples: count, shardIndex: 0, shardCount: 1,
                                     chunkSize: chunkSize)
        let writer = try TraceWriter(directory: directory, manifest: manifest, resume: false)
        for record in records(count: count, shape: s, criteria: criteria, headsOnly: headsOnly) { try writer.append(record) }
        try writer.finish()
    }
}

/// Tiny random-weight Llama models built in code (as in the models' tests).
enum PredictorModels {
    static func matrix(_ rows: Int, _ cols: Int, seed: UInt64, scale: Float = 0.2) -> WeightMatrix {
        WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: seed).map { $0 * scale }),
                     dtype: .f32)
    }

    static func llama(layers: Int = 3, hidden: Int = 32, heads: Int = 4, kvHeads: Int = 2, ffn: Int = 48,
                      vocab: Int = 50) -> LlamaModel {
        let config = LlamaConfig(hiddenSize: hidden, intermediateSize: ffn, layers: layers, heads: heads,
                                 kvHeads: kvHeads, vocabularySize: vocab, maxContext: 64)
        let s = config.shape
        var seed: UInt64 = 100
        func next() -> UInt64 { seed += 1; return seed }
        func norm() -> [Float] { randomFloats(hidden, seed: next()).map { 1 + 0.1 * $0 } }
        let blocks = (0..<layers).map { _ in
            LlamaBlock(attentionNorm: norm(),
                       q: Linear(weight: matrix(s.attentionWidth, hidden, seed: next())),
                       k: Linear(weight: matrix(s.kvWidth, hidden, seed: next())),
                       v: Linear(weight: matrix(s.kvWidth, hidden, seed: next())),
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
