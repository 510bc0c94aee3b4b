import Foundation
import Testing
// Plain imports only: this is the user guide's "From Swift" example, which sees the public API alone.
import ShadowFormats
import ShadowModels
import ShadowSparsity
import ShadowModelTestSupport
import ShadowTestSupport

@Suite("The library example")
struct LibraryExampleTests {
    @Test("the user guide's Swift example generates under a shadow predictor's masks with the public API alone")
    func userGuideExample() throws {
        // What `train-predictor` would have written, for the tiny checkpoint the example loads here.
        let modelPath = ModelFixtures.path("tiny-llama")
        let predictorPath = TestScratch.path("library-example-shadow.safetensors")
        let untrained = try Predictor(configuration: PredictorConfiguration(kind: .shadow, headWidth: 16, neuronWidth: 16),
                                      criterion: "plainact",
                                      model: ModelFingerprint(loaded: try ModelLoader.load(path: modelPath)),
                                      predictsNeurons: true, seed: 1)
        try PredictorFile.save(untrained, to: predictorPath)

        // The example, as docs/user-guide.md has it (with these two paths).
        let loaded = try ModelLoader.load(path: modelPath, weights: .f16)
        let tokenizer = try loaded.requireTokenizer()
        let predictor = try PredictorFile.load(path: predictorPath)
        try predictor.check(fingerprint: ModelFingerprint(loaded: loaded))
        let settings = SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5)
        let controller = try ShadowPredictorController(predictor: predictor, settings: settings, shape: loaded.model.shape)
        let prompt = tokenizer.encodeWithSpecialTokens("The capital of France is")
        let result = try Generator.generate(model: loaded.model, prompt: prompt, maxTokens: 8,
                                            stopTokens: loaded.stopTokens, sparsity: controller)
        let text = tokenizer.decode(result.tokens, skipSpecialTokens: true)

        #expect(!prompt.isEmpty && !result.tokens.isEmpty && result.tokens.count <= 8)
        #expect(text == tokenizer.decode(result.tokens, skipSpecialTokens: true) && result.stats.generatedTokens == result.tokens.count)
        // One mask for the prompt (no --refresh): half of layer 1's 4 heads and 128 neurons, counted
        // over both layers of the tiny Llama (layer 0 runs dense).
        #expect(controller.statistics.masks == 1, "\(controller.statistics)")
        #expect(controller.statistics.headSparsity == 2.0 / 8 && controller.statistics.neuronSparsity == 64.0 / 256,
                "\(controller.statistics.headSparsity) \(controller.statistics.neuronSparsity)")
    }

    @Test("the example's fingerprint check refuses a predictor trained for another model, naming the difference")
    func refusesAnotherModelsPredictor() throws {
        let predictorPath = TestScratch.path("library-example-other.safetensors")
        let other = try Predictor(configuration: PredictorConfiguration(kind: .shadow, headWidth: 16, neuronWidth: 16),
                                  criterion: "plainact",
                                  model: ModelFingerprint(loaded: try ModelLoader.load(path: ModelFixtures.path("tiny-llama-tied"))),
                                  predictsNeurons: true, seed: 1)
        try PredictorFile.save(other, to: predictorPath)
        let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"), weights: .f16)
        let predictor = try PredictorFile.load(path: predictorPath)
        let error = #expect(throws: ShadowError.self) { try predictor.check(fingerprint: ModelFingerprint(loaded: loaded)) }
        #expect(String(describing: error).contains("tiny-llama"), "\(String(describing: error))")
    }
}
