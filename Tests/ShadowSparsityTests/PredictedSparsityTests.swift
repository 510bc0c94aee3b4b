import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels
@testable import ShadowSparsity
import ShadowModelTestSupport
import ShadowTestSupport

/// A dense controller that keeps, per layer, the last token's residual input and A of the last call.
final class Recorder: SparsityController, @unchecked Sendable {
    let execution = SparseExecution.skip
    let keepsAllKeysAndValues = false
    let shape: TransformerShape
    var inputs: [[Float]]
    var attention: [[Float]]

    init(shape: TransformerShape) {
        self.shape = shape
        inputs = Array(repeating: [], count: shape.layers)
        attention = Array(repeating: [], count: shape.layers)
    }

    func observe(layer: Int, input: UnsafePointer<Float>, attention a: UnsafePointer<Float>, tokens: Int, position: Int) {
        inputs[layer] = Array(UnsafeBufferPointer(start: input + (tokens - 1) * shape.hiddenSize, count: shape.hiddenSize))
        attention[layer] = Array(UnsafeBufferPointer(start: a + (tokens - 1) * shape.attentionWidth, count: shape.attentionWidth))
    }

    func plan(layer: Int, input: UnsafePointer<Float>, tokens: Int, position: Int) -> LayerPlan { .dense }
}

@Suite("Predicted masks")
struct PredictedSparsityTests {
    let model = TinyModels.llama(layers: 3)
    var fingerprint: ModelFingerprint { ModelFingerprint(name: "tiny", architecture: "llama", shape: model.shape, contentHash: "1") }
    let prompt = [3, 14, 15, 9, 26, 5]
    let settings = SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.25, policy: .global)

    func predictor(_ kind: PredictorKind, neurons: Bool = true) throws -> Predictor {
        try Predictor(configuration: PredictorConfiguration(kind: kind, headWidth: 16, neuronWidth: 16), criterion: "plainact",
                      model: fingerprint, predictsNeurons: neurons, seed: 3)
    }

    @Test("the shadow controller predicts once from A⁰ of the last prompt token and realises the settings' sparsity")
    func shadowPrefill() throws {
        let predictor = try predictor(.shadow)
        let controller = try ShadowPredictorController(predictor: predictor, settings: settings, shape: model.shape)
        #expect(!controller.keepsAllKeysAndValues)
        let cache = model.makeCache(capacity: 32)
        let logits = model.forward(prompt, cache: cache, logits: .last, sparsity: controller)
        #expect(logits.count == 50 && logits.allSatisfy { $0.isFinite })
        #expect(controller.plans.count == 3 && controller.plans[0] == .dense)
        let realised = Masks.realisedSparsity(controller.plans, shape: model.shape)
        // Global over layers 1…2: round(0.5·8) of 12 heads and round(0.25·96) of 144 neurons.
        #expect(abs(realised.heads - 4.0 / 12) < 1e-12 && abs(realised.neurons - 24.0 / 144) < 1e-12)
        #expect(controller.statistics.predictions == 1 && controller.statistics.calls == 1)
        #expect(abs(controller.statistics.headSparsity - 4.0 / 12) < 1e-12)
        #expect(controller.statistics.seconds > 0)

        // The plans are the mask policy applied to the prediction from the last token's A⁰.
        let recorder = Recorder(shape: model.shape)
        _ = model.forward(prompt, cache: model.makeCache(capacity: 32), logits: .none, sparsity: recorder)
        let scores = recorder.attention[0].withUnsafeBufferPointer { predictor.predict(x: $0.baseAddress!) }
        #expect(controller.plans == Masks.plans(headScores: scores.heads, neuronScores: scores.neurons, settings: settings, shape: model.shape))

        // Decode keeps the mask without refresh.
        for token in [7, 8, 9] { _ = model.forward([token], cache: cache, logits: .last, sparsity: controller) }
        #expect(controller.statistics.predictions == 1 && controller.statistics.calls == 4)
    }

    @Test("realised sparsity is the ratio of the pruned units over all masks recorded, whatever their order")
    func realisedSparsityCounts() {
        let shape = TinyModels.criteriaLlama(layers: 3).shape
        // Masks of different sizes: dense, one head and 3 neurons of layer 1, two heads of layers 1 and 2.
        let plans: [[LayerPlan]] = [
            [.dense, .dense, .dense],
            [.dense, LayerPlan(heads: Array(1..<shape.heads), neurons: (3..<Int32(shape.ffnSize)).map { $0 }), .dense],
            [.dense, LayerPlan(heads: Array(2..<shape.heads)), LayerPlan(heads: Array(2..<shape.heads))],
        ]
        var forward = PredictionStatistics(), backward = PredictionStatistics()
        for plan in plans { forward.record(plans: plan, shape: shape) }
        for plan in plans.reversed() { backward.record(plans: plan, shape: shape) }
        #expect(forward == backward && forward.prunedHeads == 5 && forward.prunedNeurons == 3 && forward.masks == 3)
        #expect(forward.headSparsity == 5.0 / Double(3 * shape.layers * shape.heads))
        #expect(forward.neuronSparsity == 3.0 / Double(3 * shape.layers * shape.ffnSize))
        #expect(PredictionStatistics().headSparsity == 0)
    }

    @Test("skipping pruned units gives the logits of zeroing them")
    func skipEqualsZero() throws {
        let predictor = try predictor(.shadow)
        let skip = try ShadowPredictorController(predictor: predictor, settings: settings, shape: model.shape, execution: .skip)
        let zero = try ShadowPredictorController(predictor: predictor, settings: settings, shape: model.shape, execution: .zero)
        let a = model.forward(prompt, cache: model.makeCache(capacity: 32), logits: .all, sparsity: skip)
        let b = model.forward(prompt, cache: model.makeCache(capacity: 32), logits: .all, sparsity: zero)
        expectClose(a, b, tolerance: 1e-4)
        let dense = model.forward(prompt, cache: model.makeCache(capacity: 32), logits: .all)
        #expect(a != dense)
    }

    @Test("refresh re-predicts every N decode calls and keeps every K/V group")
    func refresh() throws {
        let controller = try ShadowPredictorController(predictor: try predictor(.shadow), settings: settings, shape: model.shape, refresh: 2)
        #expect(controller.keepsAllKeysAndValues)
        let cache = model.makeCache(capacity: 32)
        _ = model.forward(prompt, cache: cache, logits: .last, sparsity: controller)
        for token in [1, 2, 3, 4] { _ = model.forward([token], cache: cache, logits: .last, sparsity: controller) }
        #expect(controller.statistics.predictions == 3 && controller.statistics.calls == 5)
        // A new prompt at position 0 predicts again, unless frozen.
        _ = model.forward(prompt, cache: model.makeCache(capacity: 32), logits: .none, sparsity: controller)
        #expect(controller.statistics.predictions == 4)
        controller.frozen = true
        _ = model.forward(prompt, cache: model.makeCache(capacity: 32), logits: .none, sparsity: controller)
        #expect(controller.statistics.predictions == 4)
    }

    @Test("the DejaVu controller plans each layer from its own predictor, per layer, on every call", arguments: [PredictorKind.dejavu, .dejavuLookahead])
    func dejavu(kind: PredictorKind) throws {
        let predictor = try predictor(kind)
        let controller = try DejaVuController(predictor: predictor, settings: settings, shape: model.shape)
        #expect(controller.keepsAllKeysAndValues)
        let cache = model.makeCache(capacity: 32)
        let logits = model.forward(prompt, cache: cache, logits: .last, sparsity: controller)
        #expect(logits.allSatisfy { $0.isFinite })
        for plan in controller.plans.dropFirst() { #expect(plan.heads?.count == 2 && plan.neurons?.count == 36) }
        #expect(controller.statistics.predictions == 2)
        #expect(abs(controller.statistics.headSparsity - 4.0 / 12) < 1e-12 && abs(controller.statistics.neuronSparsity - 24.0 / 144) < 1e-12)

        // Layer l reads the last token's residual entering layer l (or l − 1 with look-ahead). The
        // dense recorder sees the same residuals only up to layer 1: layer 1's plan changes layer 2's input.
        let recorder = Recorder(shape: model.shape)
        _ = model.forward(prompt, cache: model.makeCache(capacity: 32), logits: .none, sparsity: recorder)
        let source = kind.sourceLayer(for: 1)
        let scores = recorder.inputs[source].withUnsafeBufferPointer { predictor.predictLayer(1, input: $0.baseAddress!) }
        #expect(controller.plans[1].heads == Masks.topIndices(scores.heads, count: 2))
        #expect(controller.plans[1].neurons == Masks.topIndices(scores.neurons, count: 36).map(Int32.init))

        _ = model.forward([4], cache: cache, logits: .last, sparsity: controller)
        #expect(controller.statistics.predictions == 4 && controller.statistics.masks == 2)
    }

    @Test("controllers refuse the wrong kind, another shape and neuron sparsity from a heads-only predictor")
    func refusals() throws {
        #expect(throws: ShadowError.self) { try ShadowPredictorController(predictor: try predictor(.dejavu), settings: settings, shape: model.shape) }
        #expect(throws: ShadowError.self) { try DejaVuController(predictor: try predictor(.shadow), settings: settings, shape: model.shape) }
        var other = model.shape
        other.ffnSize = 64
        #expect(throws: ShadowError.self) { try ShadowPredictorController(predictor: try predictor(.shadow), settings: settings, shape: other) }
        let headsOnly = try predictor(.shadow, neurons: false)
        #expect(throws: ShadowError.self) { try ShadowPredictorController(predictor: headsOnly, settings: settings, shape: model.shape) }
        let controller = try ShadowPredictorController(predictor: headsOnly, settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0),
                                                       shape: model.shape)
        _ = model.forward(prompt, cache: model.makeCache(capacity: 32), logits: .last, sparsity: controller)
        #expect(controller.plans[1].neurons == nil && controller.plans[1].heads != nil)
    }

    @Test("a predictor fits the same model under another file name (a copy, a link), not another model")
    func fingerprintIgnoresName() throws {
        var renamed = fingerprint
        renamed.name = "tiny-copy.gguf"
        try renamed.check(matches: fingerprint, what: "p.safetensors")
        var other = fingerprint
        other.contentHash = "2"
        #expect(throws: ShadowError.self) { try other.check(matches: fingerprint, what: "p.safetensors") }
    }
}
