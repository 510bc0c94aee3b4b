import Foundation
import Testing
@testable import ShadowModels
@testable import ShadowSparsity
import ShadowKernels
import ShadowModelTestSupport
import ShadowTestSupport

@Suite("Calibrator")
struct CalibratorTests {
    static let tokens = [3, 14, 15, 9, 26, 5, 35, 8, 14, 2, 9, 14, 7, 30, 11, 4, 21]

    /// Every layer's input and attention output at `position`, from a dense forward pass as the
    /// engine runs it before a predictor reads them.
    static func forwardCapture(_ model: any DifferentiableLanguageModel, position: Int) -> ActivationCapture {
        let capture = ActivationCapture(shape: model.shape, position: position)
        _ = model.forward(Array(tokens[...position]), cache: model.makeCache(capacity: position + 1),
                          logits: .none, sparsity: capture)
        return capture
    }

    @Test("a calibration text is read byte for byte, as --text-file is: a byte-order mark keeps its tokens")
    func calibrationTextByteForByte() throws {
        let model = ModelFixtures.path("tiny-llama")
        let tokenizer = try #require(try ModelLoader.load(path: model).tokenizer)
        let file = TestScratch.path("calibration-bom", suffix: ".txt")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let text = "\u{FEFF}" + String(repeating: "the cat sat on the mat. ", count: 20)
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        let samples = try CalibrationSet.samples(sources: [CalibrationSource.parse("text:" + file)], count: 1,
                                                 options: CalibrationOptions(textWindow: 16, textContinuation: 4), tokenizer: tokenizer)
        #expect(samples.first?.tokens == Array(tokenizer.encode(text).prefix(16)))
        #expect(tokenizer.encode(text).prefix(16) != tokenizer.encode(String(text.dropFirst())).prefix(16))
    }

    @Test("with fp32 weights the predictor inputs come from the gradient pass and equal a dense forward's",
          arguments: ["tiny-llama", "tiny-opt", "tiny-opt-postln", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-gemma3",
                      "tiny-phi3", "tiny-phi3-longrope", "tiny-mistral-window", "tiny-smollm3"])
    func fp32InputsFromTheGradientPass(name: String) throws {
        let model = try ModelFixtures.differentiableModel(name)
        // plainact shows the layers to the calibrator from the backward, l2_norm from a forward-only pass.
        for token in PredictorToken.allCases {
            for criterion in [Criterion.plainact, .l2Norm] {
                let sample = CalibrationSample(index: 0, source: "test", tokens: Self.tokens, predictFrom: 12)
                let record = try Calibrator(model: model, criteria: [criterion], predictorToken: token).record(sample)
                let capture = Self.forwardCapture(model, position: token.position(in: sample))
                for (got, want) in [(record.layerInputs, capture.inputs), (record.attention, capture.attention)] {
                    #expect(got.count == want.count)
                    let scale = want.map(abs).max() ?? 1
                    let worst = zip(got, want).map { abs($0 - $1) }.max() ?? 0
                    #expect(worst <= 1e-5 * max(scale, 1), "\(name) \(token) \(criterion): largest difference \(worst)")
                }
                #expect(record.x == Array(record.attention[0..<model.shape.attentionWidth]))
            }
        }
    }

    @Test("with 16-bit or 8-bit weights the predictor inputs are recorded by the engine's own forward pass (its fp16 KV cache, bf16 inputs)",
          arguments: [WeightDType.bf16, .f16, .bf16dot, .q8])
    func halfInputsFromTheForwardPass(weights: WeightDType) throws {
        let model = try ModelFixtures.differentiableModel("tiny-llama", weights: weights)
        let sample = CalibrationSample(index: 0, source: "test", tokens: Self.tokens, predictFrom: 12)
        let record = try Calibrator(model: model, criteria: [.plainact], predictorToken: .lastContext).record(sample)
        let capture = Self.forwardCapture(model, position: 11)
        #expect(record.layerInputs == capture.inputs && record.attention == capture.attention)
    }
}
