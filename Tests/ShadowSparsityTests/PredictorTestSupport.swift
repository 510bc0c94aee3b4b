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
