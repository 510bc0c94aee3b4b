import Foundation
import ShadowFormats
import ShadowModels

/// What a predicting controller has done so far: how often and how long it predicted (for the
/// predictor's share of decode time, DESIGN §7) and the sparsity its plans realised.
public struct PredictionStatistics: Sendable, Equatable {
    /// Forward calls seen (one per prefill or decode step; the oracle, which plans once per
    /// prompt and never per step, counts its prompts).
    public var calls = 0
    /// Predictor runs: one per mask for shadow, one per layer and mask for the dejavu kinds.
    public var predictions = 0
    /// Seconds spent in the predictor networks and in turning scores into plans.
    public var seconds = 0.0
    /// Units the masks built have pruned, summed, and how many the model has (layer 0 counted as
    /// dense): whole numbers, so the realised sparsity is exact whatever the order of the masks.
    public var prunedHeads = 0
    public var prunedNeurons = 0
    public var modelHeads = 0
    public var modelNeurons = 0
    /// The realised sparsities summed over the masks built, each mask's fraction of the model.
    public var headSparsitySum: Double { modelHeads > 0 ? Double(prunedHeads) / Double(modelHeads) : 0 }
    public var neuronSparsitySum: Double { modelNeurons > 0 ? Double(prunedNeurons) / Double(modelNeurons) : 0 }
    /// The realised sparsities averaged over the masks built (0 before any).
    public var headSparsity: Double { masks > 0 && modelHeads > 0 ? Double(prunedHeads) / (Double(masks) * Double(modelHeads)) : 0 }
    public var neuronSparsity: Double { masks > 0 && modelNeurons > 0 ? Double(prunedNeurons) / (Double(masks) * Double(modelNeurons)) : 0 }
    /// Masks built (a dejavu mask is complete once its last layer is planned).
    public var masks = 0
    /// Of those, masks left dense because the prompt gave nothing to score (the oracle on a
    /// prompt of one token): counted in the realised sparsity, and worth a warning.
    public var denseMasks = 0

    public init() {}

    mutating func record(plans: [LayerPlan], shape: TransformerShape) {
        let pruned = Masks.prunedUnits(plans, shape: shape)
        prunedHeads += pruned.heads
        prunedNeurons += pruned.neurons
        modelHeads = shape.layers * shape.heads
        modelNeurons = shape.layers * shape.ffnSize
        masks += 1
    }
}

/// Values rounded to multiples of 2⁻³² (an error of at most 1.2e-10 each). Sums of such values
/// below 2²¹ are exact, so they do not depend on the order of adding: a sweep resumed or extended
/// in other chunks reports the same means (KL, realised sparsity) as one run.
public enum OrderFreeSum {
    public static func onGrid(_ value: Double) -> Double {
        let scale = 4_294_967_296.0
        return (value * scale).rounded() / scale
    }
}

/// When a predicting controller makes a new mask. A call at position 0 starts a new prompt and
/// always predicts (unless frozen); with `refresh` N > 0 every N-th later call predicts again
/// (N = 1 is DejaVu's per-token behaviour).
struct PredictionSchedule {
    let refresh: Int
    var callsSincePrediction = 0
    var hasMask = false

    mutating func shouldPredict(position: Int, frozen: Bool) -> Bool {
        defer { callsSincePrediction += 1 }
        if frozen && hasMask { return false }
        if !hasMask || position == 0 || (refresh > 0 && callsSincePrediction >= refresh) {
            callsSincePrediction = 0
            hasMask = true
            return true
        }
        return false
    }
}

private func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

extension Predictor {
    /// The controller that serves this predictor's masks, by its kind: a shadow predictor's once
    /// per prompt (`refresh` 0), a DejaVu-style one's layer by layer on every token (`refresh` 1),
    /// unless `refresh` says otherwise.
    public func controller(settings: SparsitySettings, shape: TransformerShape, refresh: Int? = nil) throws -> any SparsityController {
        if kind == .shadow {
            return try ShadowPredictorController(predictor: self, settings: settings, shape: shape, refresh: refresh ?? 0)
        }
        return try DejaVuController(predictor: self, settings: settings, shape: shape, refresh: refresh ?? 1)
    }
}

/// ShadowLLM's controller (DESIGN §5): after layer 0 runs, it takes A⁰ of the call's last token
/// (the last prompt token in prefill), predicts every layer's scores once, and builds all plans
/// with the mask policy of `settings`; later calls reuse them, or re-predict every `refresh`
/// calls (then K/V of every group are kept, since the heads a later mask keeps may read them).
public final class ShadowPredictorController: SparsityController, @unchecked Sendable {
    public let predictor: Predictor
    public let settings: SparsitySettings
    public let execution: SparseExecution
    public let refresh: Int
    public var keepsAllKeysAndValues: Bool { refresh > 0 }
    /// Keeps the current mask whatever the position (e.g. while scoring the choices of one
    /// question after predicting from its context).
    public var frozen = false
    public private(set) var statistics = PredictionStatistics()
    /// The plans in force (layer 0 dense); empty before the first call.
    public private(set) var plans: [LayerPlan] = []
    private var schedule: PredictionSchedule
    private let shape: TransformerShape
    public var modelShape: TransformerShape? { shape }

    public init(predictor: Predictor, settings: SparsitySettings, shape: TransformerShape, refresh: Int = 0,
                execution: SparseExecution = .skip) throws {
        let what = predictor.path ?? "predictor"
        guard predictor.kind == .shadow else {
            throw ShadowError.invalidArgument(name: "--predictor", reason: "\(what) is a \(predictor.kind.rawValue) predictor; this controller runs shadow predictors")
        }
        try Self.checkCompatible(predictor, settings: settings, shape: shape, refresh: refresh)
        predictor.prepareForPrediction()
        self.predictor = predictor
        self.settings = settings
        self.execution = execution
        self.refresh = refresh
        self.shape = shape
        schedule = PredictionSchedule(refresh: refresh)
    }

    static func checkCompatible(_ predictor: Predictor, settings: SparsitySettings, shape: TransformerShape, refresh: Int) throws {
        let what = predictor.path ?? "predictor"
        try settings.validate()
        guard predictor.shape == shape else {
            throw ShadowError.invalidArgument(name: "--predictor", reason: "\(what) was trained for a model of another shape (\(predictor.shape.layers) layers, \(predictor.shape.heads) heads, FFN \(predictor.shape.ffnSize))")
        }
        guard refresh >= 0 else { throw ShadowError.invalidArgument(name: "--refresh", reason: "must be at least 0, got \(refresh)") }
        if !predictor.predictsNeurons && settings.neuronSparsity > 0 {
            throw ShadowError.invalidArgument(name: "--neuron-sparsity", reason: "\(what) predicts heads only (criterion \(predictor.criterion)); neurons must stay dense")
        }
    }

    /// Forgets the mask so the next call predicts (a new prompt on a reused cache).
    public func reset() {
        schedule = PredictionSchedule(refresh: refresh)
        plans = []
    }

    public func resetStatistics() { statistics = PredictionStatistics() }

    public func observe(layer: Int, input: UnsafePointer<Float>, attention: UnsafePointer<Float>, tokens: Int, position: Int) {
        guard layer == 0 else { return }
        statistics.calls += 1
        guard schedule.shouldPredict(position: position, frozen: frozen) else { return }
        let start = now()
        let scores = predictor.predict(x: attention + (tokens - 1) * shape.attentionWidth)
        plans = Masks.plans(headScores: scores.heads, neuronScores: predictor.predictsNeurons ? scores.neurons : nil,
                            settings: settings, shape: shape)
        statistics.seconds += Double(now() - start) / 1e9
        statistics.predictions += 1
        statistics.record(plans: plans, shape: shape)
    }

    public func plan(layer: Int, input: UnsafePointer<Float>, tokens: Int, position: Int) -> LayerPlan {
        layer < plans.count ? plans[layer] : .dense
    }
}

/// The DejaVu-style controller: layer l's own predictor runs inside `plan(layer: l, …)` on the
/// last token's residual entering layer l (dejavu), or on the residual entering layer l − 1 that
/// `observe` kept (dejavu-lookahead), and keeps the top 1 − p of that layer's heads and neurons.
/// By default it predicts on every call (`refresh` 1, DejaVu's per-token masks, so K/V of every
/// group are kept); `refresh` 0 predicts once per prompt.
public final class DejaVuController: SparsityController, @unchecked Sendable {
    public let predictor: Predictor
    public let settings: SparsitySettings
    public let execution: SparseExecution
    public let refresh: Int
    public var keepsAllKeysAndValues: Bool { refresh > 0 }
    public var frozen = false
    public private(set) var statistics = PredictionStatistics()
    public private(set) var plans: [LayerPlan]
    private var schedule: PredictionSchedule
    private var predicting = false
    private let shape: TransformerShape
    public var modelShape: TransformerShape? { shape }
    /// dejavu-lookahead: the last token's residual entering each layer during this call, (L, d).
    private var residuals: [Float]

    public init(predictor: Predictor, settings: SparsitySettings, shape: TransformerShape, refresh: Int = 1,
                execution: SparseExecution = .skip) throws {
        let what = predictor.path ?? "predictor"
        guard predictor.kind.isPerLayer else {
            throw ShadowError.invalidArgument(name: "--predictor", reason: "\(what) is a shadow predictor; this controller runs dejavu predictors")
        }
        try ShadowPredictorController.checkCompatible(predictor, settings: settings, shape: shape, refresh: refresh)
        predictor.prepareForPrediction()
        self.predictor = predictor
        self.settings = settings
        self.execution = execution
        self.refresh = refresh
        self.shape = shape
        schedule = PredictionSchedule(refresh: refresh)
        plans = [LayerPlan](repeating: .dense, count: shape.layers)
        residuals = predictor.kind == .dejavuLookahead ? [Float](repeating: 0, count: shape.layers * shape.hiddenSize) : []
    }

    public func reset() {
        schedule = PredictionSchedule(refresh: refresh)
        plans = [LayerPlan](repeating: .dense, count: shape.layers)
    }

    public func resetStatistics() { statistics = PredictionStatistics() }

    public func observe(layer: Int, input: UnsafePointer<Float>, attention: UnsafePointer<Float>, tokens: Int, position: Int) {
        if layer == 0 {
            statistics.calls += 1
            predicting = schedule.shouldPredict(position: position, frozen: frozen)
        }
        if predicting && predictor.kind == .dejavuLookahead && layer + 1 < shape.layers {
            let d = shape.hiddenSize
            residuals.withUnsafeMutableBufferPointer {
                ($0.baseAddress! + layer * d).update(from: input + (tokens - 1) * d, count: d)
            }
        }
    }

    public func plan(layer: Int, input: UnsafePointer<Float>, tokens: Int, position: Int) -> LayerPlan {
        guard layer >= 1, layer < shape.layers else { return .dense }
        guard predicting else { return plans[layer] }
        let start = now()
        let d = shape.hiddenSize
        let scores: (heads: [Float], neurons: [Float])
        if predictor.kind == .dejavuLookahead {
            scores = residuals.withUnsafeBufferPointer { predictor.predictLayer(layer, input: $0.baseAddress! + (layer - 1) * d) }
        } else {
            scores = predictor.predictLayer(layer, input: input + (tokens - 1) * d)
        }
        // A unit type at sparsity 0 stays dense (nil), as in `Masks.plans`.
        let heads = settings.headSparsity > 0
            ? Masks.topIndices(scores.heads, count: Masks.keptCount(units: shape.heads, sparsity: settings.headSparsity))
            : nil
        let neurons = predictor.predictsNeurons && settings.neuronSparsity > 0
            ? Masks.topIndices(scores.neurons, count: Masks.keptCount(units: shape.ffnSize, sparsity: settings.neuronSparsity)).map(Int32.init)
            : nil
        plans[layer] = LayerPlan(heads: heads, neurons: neurons, shape: shape)
        statistics.seconds += Double(now() - start) / 1e9
        statistics.predictions += 1
        if layer == shape.layers - 1 { statistics.record(plans: plans, shape: shape) }
        return plans[layer]
    }
}

/// A controller that runs a learned predictor, with the figures the benchmark reports.
public protocol PredictingController: SparsityController {
    var statistics: PredictionStatistics { get }
    var plans: [LayerPlan] { get }
    /// Bytes of predictor weights a decoded token reads on average (0 for masks chosen once
    /// per prompt, and for the oracle, which has no weights).
    var predictorBytesPerDecodeToken: Int { get }
    func resetStatistics()
}

/// The controllers that run a predictor network: shadow and DejaVu-style.
protocol NetworkPredictingController: PredictingController {
    var predictor: Predictor { get }
    var refresh: Int { get }
}

extension NetworkPredictingController {
    /// All the weights every `refresh` tokens (DejaVu-style: every token by default); none with
    /// masks chosen once per prompt (refresh 0).
    public var predictorBytesPerDecodeToken: Int { refresh > 0 ? predictor.bytesPerPrediction / refresh : 0 }
}

extension ShadowPredictorController: NetworkPredictingController {}
extension DejaVuController: NetworkPredictingController {}
