import Foundation
import ShadowFormats
import ShadowModels

/// The oracle mask source (DESIGN §5, for evaluation only): for every prompt it runs the model's
/// forward and backward pass, computes the true per-sample criterion on the prompt (its loss is
/// the next-token cross-entropy of the prompt's own tokens) and masks with it. It bounds what a
/// perfect predictor of that criterion could reach, at the price of a backward pass per prompt.
public final class OracleController: PromptAwareController, PredictingController, @unchecked Sendable {
    public let model: any DifferentiableLanguageModel
    public let criterion: Criterion
    public let settings: SparsitySettings
    public let execution: SparseExecution = .skip
    public var keepsAllKeysAndValues: Bool { false }
    public var predictorBytesPerDecodeToken: Int { 0 }
    public var modelShape: TransformerShape? { model.shape }
    public private(set) var statistics = PredictionStatistics()
    public private(set) var plans: [LayerPlan]

    public init(model: any DifferentiableLanguageModel, criterion: Criterion, settings: SparsitySettings) throws {
        try settings.validate()
        guard !criterion.headsOnly || settings.neuronSparsity == 0 else {
            throw ShadowError.invalidArgument(name: "--oracle-criterion", reason: "\(criterion.rawValue) scores heads only; neurons must stay dense (--neuron-sparsity 0)")
        }
        self.model = model
        self.criterion = criterion
        self.settings = settings
        plans = [LayerPlan](repeating: .dense, count: model.shape.layers)
    }

    public func prepare(prompt: [Int]) {
        statistics.calls += 1
        let start = DispatchTime.now().uptimeNanoseconds
        // One token predicts nothing: no loss, no scores; run dense, and count the dense mask in
        // the realised sparsity so a report cannot claim sparsity this prompt did not run at.
        guard prompt.count >= 2,
              let scores = try? Importance.scores(model: model, tokens: prompt, predictFrom: 1, criteria: [criterion])[criterion] else {
            plans = [LayerPlan](repeating: .dense, count: model.shape.layers)
            statistics.record(plans: plans, shape: model.shape)
            statistics.denseMasks += 1
            return
        }
        plans = Masks.plans(headScores: scores.heads, neuronScores: scores.neurons, settings: settings, shape: model.shape)
        statistics.seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        statistics.predictions += 1
        statistics.record(plans: plans, shape: model.shape)
    }

    public func resetStatistics() { statistics = PredictionStatistics() }

    public func observe(layer: Int, input: UnsafePointer<Float>, attention: UnsafePointer<Float>, tokens: Int, position: Int) {}

    public func plan(layer: Int, input: UnsafePointer<Float>, tokens: Int, position: Int) -> LayerPlan { plans[layer] }
}
