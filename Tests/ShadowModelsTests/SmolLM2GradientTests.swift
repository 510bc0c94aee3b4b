import Foundation
import Testing
@testable import ShadowModels

/// What make_gradient_fixtures.py --smollm2 recorded with PyTorch (float64, dequantised GGUF).
struct SmolLM2GradientExpectation: Decodable {
    struct Layer: Decodable {
        let attentionGrad: GradientExpectation.Stats
        let hiddenGrad: GradientExpectation.Stats
        let plainactHeads: [Double]
        enum CodingKeys: String, CodingKey {
            case attentionGrad = "attention_grad", hiddenGrad = "hidden_grad", plainactHeads = "plainact_heads"
        }
    }
    let context: String
    let continuation: String
    let inputIDs: [Int]
    let predictFrom: Int
    let loss: Double
    let layers: [Layer]
    enum CodingKeys: String, CodingKey {
        case context, continuation, loss, layers, inputIDs = "input_ids", predictFrom = "predict_from"
    }
}

@Suite("SmolLM2-135M-Instruct gradients against PyTorch", .enabled(if: SmolLM2.available, "SmolLM2 GGUF not fetched: run scripts/setup.sh"))
struct SmolLM2GradientTests {
    @Test("loss, dL/dA, dL/dN and per-head plainact agree within 1e-4 on a question/answer sample")
    func agrees() throws {
        let loaded = try SmolLM2.require()
        let model = try #require(loaded.model as? any DifferentiableLanguageModel)
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("smollm2-gradients.json")))
        let expected = try JSONDecoder().decode(SmolLM2GradientExpectation.self, from: data)
        let tokenizer = try loaded.requireTokenizer()
        #expect(tokenizer.encodeWithSpecialTokens(expected.context + expected.continuation) == expected.inputIDs)
        #expect(tokenizer.encodeWithSpecialTokens(expected.context).count == expected.predictFrom)

        let record = try model.lossAndGradients(tokens: expected.inputIDs, predictFrom: expected.predictFrom)
        #expect(abs(record.loss - expected.loss) <= 1e-5 * expected.loss, "loss \(record.loss) vs \(expected.loss)")
        let s = model.shape
        for (l, (layer, reference)) in zip(record.layers, expected.layers).enumerated() {
            for (values, stats, name) in [(layer.attentionGrad, reference.attentionGrad, "dL/dA"),
                                          (layer.hiddenGrad, reference.hiddenGrad, "dL/dN")] {
                ReferenceGradientTests.check(values, stats, tolerance: 1e-4, "layer \(l) \(name)")
            }
            for h in 0..<s.heads {
                var plainact = 0.0
                for t in 0..<record.tokens {
                    var dot = 0.0
                    for i in 0..<s.headDim {
                        let k = t * s.attentionWidth + h * s.headDim + i
                        dot += Double(layer.attention[k]) * Double(layer.attentionGrad[k])
                    }
                    plainact += abs(dot)
                }
                let e = reference.plainactHeads[h]
                #expect(abs(plainact - e) <= 1e-4 * e, "layer \(l) head \(h): plainact \(plainact) vs \(e)")
            }
        }
    }
}
