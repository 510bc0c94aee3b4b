import Foundation
import Testing
@testable import ShadowModels

/// What scripts/reference/make_gradient_fixtures.py recorded with PyTorch autograd (float64).
struct GradientExpectation: Decodable {
    /// A tensor summarised: sums, the largest |x| and a few entries by flat index.
    struct Stats: Decodable {
        let shape: [Int]
        let sum: Double
        let absSum: Double
        let sqSum: Double
        let maxAbs: Double
        let samples: [[Double]]?   // [flat index, value]; absent in smollm2-gradients.json
        enum CodingKeys: String, CodingKey {
            case shape, sum, samples, absSum = "abs_sum", sqSum = "sq_sum", maxAbs = "max_abs"
        }
    }
    struct Layer: Decodable {
        let attention, attentionGrad, hidden, hiddenGrad, preActivation: Stats
        let outputProjectionGrad, downProjectionGrad, firstProjectionGrad: Stats
        let upProjectionGrad: Stats?
        enum CodingKeys: String, CodingKey {
            case attention, hidden
            case attentionGrad = "attention_grad", hiddenGrad = "hidden_grad", preActivation = "pre_activation"
            case outputProjectionGrad = "output_projection_grad", downProjectionGrad = "down_projection_grad"
            case firstProjectionGrad = "first_projection_grad", upProjectionGrad = "up_projection_grad"
        }
    }
    let inputIDs: [Int]
    let predictFrom: Int
    let loss: Double
    let layers: [Layer]
    enum CodingKeys: String, CodingKey { case loss, layers, inputIDs = "input_ids", predictFrom = "predict_from" }

    static func load(_ checkpoint: String) throws -> GradientExpectation {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(checkpoint + "/gradients.json")))
        return try JSONDecoder().decode(GradientExpectation.self, from: data)
    }
}

@Suite("Gradients agree with PyTorch autograd")
struct ReferenceGradientTests {
    static let checkpoints = ["tiny-llama", "tiny-llama-tied", "tiny-llama-bias", "tiny-qwen2", "tiny-qwen3", "tiny-smollm3", "tiny-phi3", "tiny-phi3-longrope", "tiny-mistral-window", "tiny-qwen2-window", "tiny-gemma3", "tiny-gemma2", "tiny-opt", "tiny-opt-postln"]

    /// Sums are held to `tolerance` relative to Σ|x| (a signed sum may cancel), Σ|x|, Σx² and
    /// max |x| relative to themselves, sampled entries relative to max(|x|, 1% of max |x|).
    static func check(_ values: [Float], _ expected: GradientExpectation.Stats, tolerance: Double, _ label: String,
                      sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(values.count == expected.shape.reduce(1, *), "\(label): \(values.count) values for shape \(expected.shape)",
                sourceLocation: sourceLocation)
        let x = values.map(Double.init)
        let sum = x.reduce(0, +), absSum = x.reduce(0) { $0 + abs($1) }, sqSum = x.reduce(0) { $0 + $1 * $1 }
        let maxAbs = x.map(abs).max() ?? 0
        var problems: [String] = []
        if !(abs(sum - expected.sum) <= tolerance * expected.absSum) { problems.append("sum \(sum) vs \(expected.sum)") }
        if !(abs(absSum - expected.absSum) <= tolerance * expected.absSum) { problems.append("Σ|x| \(absSum) vs \(expected.absSum)") }
        if !(abs(sqSum - expected.sqSum) <= 2 * tolerance * expected.sqSum) { problems.append("Σx² \(sqSum) vs \(expected.sqSum)") }
        if !(abs(maxAbs - expected.maxAbs) <= tolerance * expected.maxAbs) { problems.append("max|x| \(maxAbs) vs \(expected.maxAbs)") }
        for sample in expected.samples ?? [] {
            let i = Int(sample[0]), e = sample[1]
            guard i < x.count else { problems.append("index \(i) out of range"); continue }
            if !(abs(x[i] - e) <= tolerance * max(abs(e), 0.01 * expected.maxAbs)) { problems.append("[\(i)] \(x[i]) vs \(e)") }
        }
        #expect(problems.isEmpty, "\(label): \(problems.joined(separator: "; "))", sourceLocation: sourceLocation)
    }

    @Test("loss, A, dL/dA, N, dL/dN, Z and the weight gradients match within 1e-4", arguments: checkpoints)
    func agrees(checkpoint: String) throws {
        let model = try #require(try ModelLoader.load(path: Fixtures.path(checkpoint)).model as? any DifferentiableLanguageModel)
        let expected = try GradientExpectation.load(checkpoint)
        let record = try model.lossAndGradients(tokens: expected.inputIDs, predictFrom: expected.predictFrom,
                                                options: GradientOptions(weightGradients: .all))
        #expect(abs(record.loss - expected.loss) <= 1e-5 * expected.loss, "\(checkpoint): loss \(record.loss) vs \(expected.loss)")
        #expect(record.layers.count == expected.layers.count)
        let tolerance = 1e-4
        for (l, (layer, reference)) in zip(record.layers, expected.layers).enumerated() {
            let label = "\(checkpoint) layer \(l)"
            Self.check(layer.attention, reference.attention, tolerance: tolerance, label + " A")
            Self.check(layer.attentionGrad, reference.attentionGrad, tolerance: tolerance, label + " dL/dA")
            Self.check(layer.hidden, reference.hidden, tolerance: tolerance, label + " N")
            Self.check(layer.hiddenGrad, reference.hiddenGrad, tolerance: tolerance, label + " dL/dN")
            Self.check(layer.preActivation, reference.preActivation, tolerance: tolerance, label + " Z")
            Self.check(layer.outputProjectionGrad!, reference.outputProjectionGrad, tolerance: tolerance, label + " dL/dW_O")
            Self.check(layer.downProjectionGrad!, reference.downProjectionGrad, tolerance: tolerance, label + " dL/dW_down")
            Self.check(layer.firstProjectionGrad!, reference.firstProjectionGrad, tolerance: tolerance, label + " dL/dW_gate|fc1")
            #expect((layer.upProjectionGrad == nil) == (reference.upProjectionGrad == nil))
            if let up = layer.upProjectionGrad, let expectedUp = reference.upProjectionGrad {
                Self.check(up, expectedUp, tolerance: tolerance, label + " dL/dW_up")
            }
        }
    }
}
