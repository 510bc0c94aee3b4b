import Foundation
import Testing
@testable import ShadowKernels
@testable import ShadowModels
@testable import ShadowSparsity

/// Compares two float arrays element-wise with a relative-or-absolute tolerance and reports the
/// first mismatches and the largest difference (llm.c's tensor check).
func expectClose(_ actual: [Float], _ expected: [Float], tolerance: Float = 1e-5,
                 _ label: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "\(label): \(actual.count) values, expected \(expected.count)",
            sourceLocation: sourceLocation)
    guard actual.count == expected.count else { return }
    var worst: Float = 0
    var mismatches: [String] = []
    for i in actual.indices {
        let diff = abs(actual[i] - expected[i])
        let allowed = tolerance * max(1, abs(expected[i]))
        worst = max(worst, diff)
        if !(diff <= allowed) && mismatches.count < 5 {
            mismatches.append("[\(i)] \(actual[i]) vs \(expected[i])")
        }
    }
    #expect(mismatches.isEmpty, "\(label): largest difference \(worst); first mismatches: \(mismatches.joined(separator: ", "))",
            sourceLocation: sourceLocation)
}

/// Deterministic pseudo-random floats in [-1, 1).
func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float(Double(generator.next() >> 40) / Double(1 << 24)) * 2 - 1 }
}

func temporaryDirectory(_ name: String) -> String {
    let path = NSTemporaryDirectory() + "shadowllm-\(name)-\(UUID().uuidString)"
    try? FileManager.default.removeItem(atPath: path)
    return path
}

/// Trace directories whose scores are a known nonlinear function of the predictor input plus a
/// little noise, so a predictor can learn them.
enum SyntheticTraces {
    static let shape = TransformerShape(layers: 3, hiddenSize: 16, heads: 4, kvHeads: 2, headDim: 4, ffnSize: 12,
                                        vocabularySize: 32, maxContext: 64)
    static let fingerprint = ModelFingerprint(name: "synthetic", architecture: "llama", shape: shape, contentHash: "00000000000000aa")

    /// Layer l's residual input is tanh(M_l x); scores are |tanh(U·input)| plus small noise, so
    /// they depend nonlinearly on x (shadow) and on each layer's input (dejavu).
    static func records(count: Int, shape s: TransformerShape = shape, criteria: [String] = ["plainact"],
                        headsOnly: Set<String> = [], noise: Float = 0.01, seed: UInt64 = 7) -> [TraceRecord] {
        let xWidth = s.attentionWidth, d = s.hiddenSize, L = s.layers
        let mixing = randomFloats(L * d * xWidth, seed: 11)
        let headWeights = randomFloats(L * s.heads * d, seed: 12)
        let neuronWeights = randomFloats(L * s.ffnSize * d, seed: 13)
        var noiseSource = SeededGenerator(seed: seed &+ 99)
        func jitter() -> Float { noise * (Float(noiseSource.next() >> 40) / Float(1 << 24) * 2 - 1) }
        return (0..<count).map { i in
            let x = randomFloats(xWidth, seed: seed &* 1000 &+ UInt64(i))
            var inputs = [Float](repeating: 0, count: L * d)
            for l in 0..<L { for r in 0..<d {
                var sum: Float = 0
                for c in 0..<xWidth { sum += mixing[(l * d + r) * xWidth + c] * x[c] }
                inputs[l * d + r] = tanh(sum / Float(xWidth).squareRoot() * 2)
            } }
            func scores(_ weights: [Float], units: Int) -> [Float] {
                var out = [Float](repeating: 0, count: L * units)
                for l in 0..<L { for u in 0..<units {
                    var sum: Float = 0
                    for r in 0..<d { sum += weights[(l * units + u) * d + r] * inputs[l * d + r] }
                    out[l * units + u] = abs(tanh(sum / 2)) + jitter()
                } }
                return out
            }
            var heads: [String: [Float]] = [:], neurons: [String: [Float]] = [:]
            for c in criteria {
                heads[c] = scores(headWeights, units: s.heads)
                if !headsOnly.contains(c) { neurons[c] = scores(neuronWeights, units: s.ffnSize) }
            }
            return TraceRecord(index: i, loss: 1, x: x, attention: [Float](repeating: 0, count: L * xWidth),
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
enum TinyModels {
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
