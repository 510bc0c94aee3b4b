import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowKernels
@testable import ShadowModels
import ShadowModelTestSupport
import ShadowTestSupport

/// The models the gradient checks run on: tiny random Llamas built in code and the reference
/// checkpoints (Llama GQA, Qwen2 with biases, OPT pre-LN and post-LN with project_in/out).
enum GradientModels {
    static let names = ["code-llama", "code-llama-bias", "tiny-llama", "tiny-llama-bias", "tiny-qwen2", "tiny-qwen3", "tiny-smollm3", "tiny-phi3-longrope", "tiny-qwen2-window", "tiny-gemma3", "tiny-gemma2", "tiny-opt", "tiny-opt-postln"]

    static func model(_ name: String, weights: WeightDType = .f32) throws -> any DifferentiableLanguageModel {
        switch name {
        case "code-llama": return TinyModels.llama()
        case "code-llama-bias": return TinyModels.llama(layers: 3, heads: 4, kvHeads: 1, bias: true)
        default:
            let loaded = try ModelLoader.load(path: Fixtures.path(name), weights: weights)
            return try #require(loaded.model as? any DifferentiableLanguageModel)
        }
    }

    /// A sample for `name`: the reference ids of the checkpoint, or fixed ids for code-built models.
    static func tokens(_ name: String) throws -> [Int] {
        name.hasPrefix("code") ? [3, 14, 15, 9, 26, 5, 35, 8, 41, 2] : try ReferenceExpectation.load(name).inputIDs[0]
    }

    static func loss(_ model: any DifferentiableLanguageModel, _ tokens: [Int], predictFrom: Int,
                     shift: ActivationShift? = nil, offsets: WeightOffsets? = nil) -> Double {
        var options = GradientOptions(weightOffsets: offsets, activationsOnly: true)
        options.shift = shift
        return try! model.lossAndGradients(tokens: tokens, predictFrom: predictFrom, options: options).loss
    }
}

@Suite("Model gradients: loss, finite differences, dtypes")
struct ModelGradientTests {
    static let predictFrom = 4

    @Test("the loss is the forward's mean NLL of the predicted tokens", arguments: GradientModels.names)
    func lossIsMeanNLL(name: String) throws {
        let model = try GradientModels.model(name)
        let tokens = try GradientModels.tokens(name)
        let nll = Scoring.tokenNLL(model: model, tokens: tokens)
        for predictFrom in [1, Self.predictFrom, tokens.count - 1] {
            let record = try model.lossAndGradients(tokens: tokens, predictFrom: predictFrom, options: GradientOptions())
            let expected = nll[(predictFrom - 1)...].reduce(0, +) / Double(tokens.count - predictFrom)
            #expect(abs(record.loss - expected) <= 1e-5 * expected, "\(name) from \(predictFrom): \(record.loss) vs \(expected)")
            #expect(record.predictedTokens == tokens.count - predictFrom && record.tokens == tokens.count)
        }
    }

    @Test("the record has the documented shapes, and the last position gets no gradient", arguments: GradientModels.names)
    func shapes(name: String) throws {
        let model = try GradientModels.model(name)
        let tokens = try GradientModels.tokens(name)
        let s = model.shape, T = tokens.count
        let record = try model.lossAndGradients(tokens: tokens, predictFrom: Self.predictFrom,
                                                options: GradientOptions(weightGradients: .all))
        #expect(record.layers.count == s.layers)
        for layer in record.layers {
            #expect(layer.layerInput.count == T * s.hiddenSize)
            #expect(layer.attention.count == T * s.attentionWidth && layer.attentionGrad.count == T * s.attentionWidth)
            #expect(layer.hidden.count == T * s.ffnSize && layer.hiddenGrad.count == T * s.ffnSize)
            #expect(layer.preActivation.count == T * s.ffnSize)
            #expect(layer.outputProjectionGrad?.count == s.attentionWidth * s.hiddenSize)
            #expect(layer.downProjectionGrad?.count == s.ffnSize * s.hiddenSize)
            #expect(layer.firstProjectionGrad?.count == s.ffnSize * s.hiddenSize)
            #expect((layer.upProjectionGrad != nil) == (model is LlamaModel))
            // Nothing reads the outputs of the last position: its gradients are exactly zero.
            #expect(layer.attentionGrad.suffix(s.attentionWidth).allSatisfy { $0 == 0 })
            #expect(layer.hiddenGrad.suffix(s.ffnSize).allSatisfy { $0 == 0 })
            #expect(layer.attentionGrad.contains { $0 != 0 } && layer.hiddenGrad.contains { $0 != 0 })
        }
        // Without the option, no weight gradients; activationsOnly gives the same forward and no gradients.
        let plain = try model.lossAndGradients(tokens: tokens, predictFrom: Self.predictFrom, options: GradientOptions())
        #expect(plain.layers.allSatisfy { $0.outputProjectionGrad == nil && $0.upProjectionGrad == nil })
        #expect(plain.layers.map(\.attentionGrad) == record.layers.map(\.attentionGrad))
        let forward = try model.lossAndGradients(tokens: tokens, predictFrom: Self.predictFrom,
                                                 options: GradientOptions(activationsOnly: true))
        #expect(forward.loss == record.loss)
        #expect(forward.layers.map(\.attention) == record.layers.map(\.attention))
        #expect(forward.layers.map(\.hidden) == record.layers.map(\.hidden))
        #expect(forward.layers.map(\.preActivation) == record.layers.map(\.preActivation))
        #expect(forward.layers.allSatisfy { $0.attentionGrad.isEmpty && $0.hiddenGrad.isEmpty })
    }

    /// Compares float32 analytic derivatives at `indices` with float64 central differences.
    /// Passes when |fd − analytic| ≤ tolerance · max(|fd|, floor · max|analytic|). Returns the worst error.
    @discardableResult
    static func compare(_ label: String, analytic: [Float], indices: [Int], tolerance: Double = 1e-4, floor: Double = 0.01,
                        sourceLocation: SourceLocation = #_sourceLocation, derivative: (Int) -> Double) -> Double {
        let scale = Double(analytic.map { abs($0) }.max() ?? 0)
        var worst = 0.0
        var failures: [String] = []
        for i in indices {
            let fd = derivative(i), a = Double(analytic[i])
            let error = abs(fd - a) / max(abs(fd), floor * scale, 1e-12)
            worst = max(worst, error)
            if !(error <= tolerance) { failures.append("[\(i)] analytic \(a) vs finite difference \(fd)") }
        }
        #expect(failures.isEmpty, "\(label): worst relative error \(worst); \(failures.joined(separator: "; "))",
                sourceLocation: sourceLocation)
        return worst
    }

    @Test("the float64 reference forward gives the same loss", arguments: GradientModels.names)
    func referenceForward(name: String) throws {
        let model = try GradientModels.model(name)
        let tokens = try GradientModels.tokens(name)
        let reference = DoubleReference(model).loss(tokens: tokens, predictFrom: Self.predictFrom)
        let loss = try model.lossAndGradients(tokens: tokens, predictFrom: Self.predictFrom).loss
        #expect(abs(reference - loss) <= 1e-5 * reference, "\(name): \(loss) vs float64 \(reference)")
    }

    @Test("dL/dA and dL/dN match float64 finite differences of the loss", arguments: GradientModels.names)
    func activationGradients(name: String) throws {
        let model = try GradientModels.model(name)
        let tokens = try GradientModels.tokens(name)
        let reference = DoubleReference(model)
        let record = try model.lossAndGradients(tokens: tokens, predictFrom: Self.predictFrom)
        for (l, layer) in record.layers.enumerated() {
            Self.compare("\(name) layer \(l) A", analytic: layer.attentionGrad,
                         indices: FiniteDifferences.probes(layer.attentionGrad, largest: 2, spread: 2)) { i in
                reference.derivative(tokens: tokens, predictFrom: Self.predictFrom, step: 1e-4) {
                    .attention(layer: l, index: i, delta: $0)
                }
            }
            Self.compare("\(name) layer \(l) N", analytic: layer.hiddenGrad,
                         indices: FiniteDifferences.probes(layer.hiddenGrad, largest: 2, spread: 2)) { i in
                reference.derivative(tokens: tokens, predictFrom: Self.predictFrom, step: 1e-4) {
                    .hidden(layer: l, index: i, delta: $0)
                }
            }
        }
    }

    @Test("weight gradients match float64 finite differences of the loss", arguments: GradientModels.names)
    func weightGradients(name: String) throws {
        let model = try GradientModels.model(name)
        let tokens = try GradientModels.tokens(name)
        let reference = DoubleReference(model)
        let record = try model.lossAndGradients(tokens: tokens, predictFrom: Self.predictFrom,
                                                options: GradientOptions(weightGradients: .all))
        for (l, layer) in record.layers.enumerated() {
            var roles: [(DoubleReference.Role, [Float])] = [(.output, layer.outputProjectionGrad!),
                                                            (.down, layer.downProjectionGrad!),
                                                            (.first, layer.firstProjectionGrad!)]
            if let up = layer.upProjectionGrad { roles.append((.up, up)) }
            for (role, grad) in roles {
                Self.compare("\(name) layer \(l) \(role)", analytic: grad, indices: FiniteDifferences.probes(grad, largest: 2, spread: 2)) { i in
                    reference.derivative(tokens: tokens, predictFrom: Self.predictFrom, step: 1e-4) {
                        .weight(role, layer: l, index: i, delta: $0)
                    }
                }
            }
        }
    }

    @Test("weight offsets move W_O and W_down entry by entry as the gradients say (float32 differences)",
          arguments: ["code-llama", "tiny-opt-postln"])
    func offsetEntries(name: String) throws {
        let model = try GradientModels.model(name)
        let tokens = try GradientModels.tokens(name)
        let s = model.shape
        let record = try model.lossAndGradients(tokens: tokens, predictFrom: Self.predictFrom,
                                                options: GradientOptions(weightGradients: .all))
        let l = s.layers - 1
        for output in [true, false] {
            let grad = output ? record.layers[l].outputProjectionGrad! : record.layers[l].downProjectionGrad!
            // Only the largest entries: float32 differences of the loss resolve them to ~1e-3.
            Self.compare("\(name) \(output ? "W_O" : "W_down") offsets", analytic: grad,
                         indices: FiniteDifferences.probes(grad, largest: 3, spread: 0), tolerance: 1e-2) { i in
                func loss(_ delta: Float) -> Double {
                    var offsets = WeightOffsets(outputProjection: Array(repeating: nil, count: s.layers),
                                                downProjection: Array(repeating: nil, count: s.layers))
                    var entry = [Float](repeating: 0, count: grad.count)
                    entry[i] = delta
                    if output { offsets.outputProjection[l] = entry } else { offsets.downProjection[l] = entry }
                    return GradientModels.loss(model, tokens, predictFrom: Self.predictFrom, offsets: offsets)
                }
                return (loss(1e-2) - loss(-1e-2)) / 2e-2
            }
        }
    }

    @Test("the directional derivative along random W_O and W_down offsets matches the gradients", arguments: GradientModels.names)
    func directionalDerivative(name: String) throws {
        let model = try GradientModels.model(name)
        let tokens = try GradientModels.tokens(name)
        let s = model.shape
        let record = try model.lossAndGradients(tokens: tokens, predictFrom: 2, options: GradientOptions(weightGradients: .all))
        let directionO = (0..<s.layers).map { randomFloats(s.attentionWidth * s.hiddenSize, seed: UInt64(40 + $0)) }
        let directionD = (0..<s.layers).map { randomFloats(s.ffnSize * s.hiddenSize, seed: UInt64(80 + $0)) }
        var analytic = 0.0
        for l in 0..<s.layers {
            analytic += zip(record.layers[l].outputProjectionGrad!, directionO[l]).reduce(0.0) { $0 + Double($1.0 * $1.1) }
            analytic += zip(record.layers[l].downProjectionGrad!, directionD[l]).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        }
        let epsilon: Float = 1e-3
        func offsets(_ scale: Float) -> WeightOffsets {
            WeightOffsets(outputProjection: directionO.map { $0.map { $0 * scale } },
                          downProjection: directionD.map { $0.map { $0 * scale } })
        }
        let fd = (GradientModels.loss(model, tokens, predictFrom: 2, offsets: offsets(epsilon))
                  - GradientModels.loss(model, tokens, predictFrom: 2, offsets: offsets(-epsilon))) / (2 * Double(epsilon))
        #expect(abs(fd - analytic) <= 1e-2 * abs(analytic), "\(name): \(analytic) vs \(fd)")
    }

    @Test("only the requested weight gradients and weights are returned, with the same values", arguments: ["code-llama", "tiny-opt"])
    func projectionSubsets(name: String) throws {
        let model = try GradientModels.model(name)
        let tokens = try GradientModels.tokens(name)
        let all = try model.lossAndGradients(tokens: tokens, predictFrom: 3, options: GradientOptions(weightGradients: .all))
        for subset: ProjectionSet in [[.output], [.down, .first], [.up]] {
            let some = try model.lossAndGradients(tokens: tokens, predictFrom: 3,
                                                  options: GradientOptions(weightGradients: subset))
            let weights = model.projectionWeights(layer: 0, projections: subset)
            let full = model.projectionWeights(layer: 0)
            #expect(some.layers[0].outputProjectionGrad == (subset.contains(.output) ? all.layers[0].outputProjectionGrad : nil))
            #expect(some.layers[0].downProjectionGrad == (subset.contains(.down) ? all.layers[0].downProjectionGrad : nil))
            #expect(some.layers[0].firstProjectionGrad == (subset.contains(.first) ? all.layers[0].firstProjectionGrad : nil))
            #expect(some.layers[0].upProjectionGrad == (subset.contains(.up) ? all.layers[0].upProjectionGrad : nil))
            #expect(some.layers.map(\.attentionGrad) == all.layers.map(\.attentionGrad))
            #expect(weights.outputProjection == (subset.contains(.output) ? full.outputProjection : []))
            #expect(weights.firstProjection == (subset.contains(.first) ? full.firstProjection : []))
        }
    }

    @Test("a pass that recomputes some or all layers from their inputs gives the bits of one that keeps them all, and shows layers last first",
          arguments: GradientModels.names)
    func recomputedLayers(name: String) throws {
        for dtype in [WeightDType.f32, .bf16] {
            let model = try GradientModels.model(name, weights: dtype)
            let tokens = try GradientModels.tokens(name), s = model.shape
            let last = s.layers - 1
            let offsets = WeightOffsets(
                outputProjection: (0..<s.layers).map { $0 == 1 ? [Float](repeating: 1e-3, count: s.attentionWidth * s.hiddenSize) : nil },
                downProjection: (0..<s.layers).map { $0 == last ? [Float](repeating: -1e-3, count: s.ffnSize * s.hiddenSize) : nil })
            // Every weight gradient (each block's own rms₂ output), none (one shared between blocks),
            // and GRASP's passes (W_O and W_down at W + δ), with the finite-difference hook on.
            var withShift = GradientOptions(weightGradients: [.output, .down], weightOffsets: offsets)
            withShift.shift = ActivationShift(target: .hidden, layer: 0, index: 5, delta: 0.25)
            for var options in [GradientOptions(weightGradients: .all, weightOffsets: offsets), GradientOptions(), withShift] {
                options.recomputedLayers = 0
                let kept = try model.lossAndGradients(tokens: tokens, predictFrom: 3, options: options)
                for count in [1, s.layers] {
                    options.recomputedLayers = count
                    var order: [Int] = []
                    let result = try model.lossAndGradients(tokens: tokens, predictFrom: 3, options: options) { l, _ in order.append(l) }
                    #expect(kept.loss == result.loss, "\(name) \(dtype) \(count)")
                    #expect(order == Array((0..<s.layers).reversed()))
                    let recomputed = try model.lossAndGradients(tokens: tokens, predictFrom: 3, options: options)
                    #expect(kept.layers == recomputed.layers, "\(name) \(dtype) \(count)")
                }
            }
            var order: [Int] = []
            _ = try model.lossAndGradients(tokens: tokens, predictFrom: 3, options: GradientOptions(activationsOnly: true)) { l, _ in
                order.append(l)
            }
            #expect(order == Array(0..<s.layers))
        }
    }

    @Test("a pass recomputes the fewest first layers that let the rest fit its budget, none while all fit, unless told")
    func recomputationChoice() {
        let L = 8, T = 100, stateSize = 500, inputSize = 32
        let state = stateSize * 4 * T, input = inputSize * 4 * T
        func recomputed(budget: Int, _ options: GradientOptions = GradientOptions()) -> Int {
            GradientPass.recomputedLayers(options, layers: L, stateSize: stateSize, inputSize: inputSize, tokens: T, budget: budget)
        }
        #expect(recomputed(budget: L * state) == 0)
        for budget in [L * state - 1, L * state / 2, L * input + state, L * input, 0] {
            let n = recomputed(budget: budget)
            let needed = { (n: Int) in n * input + (L - n) * state }
            #expect(n == L || needed(n) <= budget, "budget \(budget): \(n) recomputed")
            #expect(n == 0 || needed(n - 1) > budget, "budget \(budget): \(n) recomputed")
        }
        #expect(recomputed(budget: L * input + state) == L - 1 && recomputed(budget: 0) == L)
        #expect(recomputed(budget: 0, GradientOptions(activationsOnly: true)) == 0)
        var told = GradientOptions()
        told.recomputedLayers = 0
        #expect(recomputed(budget: 0, told) == 0)
        told.recomputedLayers = 3
        #expect(recomputed(budget: L * state, told) == 3)
        told.recomputedLayers = 99
        #expect(recomputed(budget: L * state, told) == L)
    }

    @Test("16-bit storage: the pass reads weights widened, and offsets apply after widening")
    func halfStorage() throws {
        // tiny-qwen2 is stored in bf16, so keeping it as bf16 loses nothing: both loads must agree.
        let full = try GradientModels.model("tiny-qwen2", weights: .f32)
        let half = try GradientModels.model("tiny-qwen2", weights: .bf16)
        let tokens = try GradientModels.tokens("tiny-qwen2")
        let s = full.shape
        let offsets = WeightOffsets(
            outputProjection: (0..<s.layers).map { randomFloats(s.attentionWidth * s.hiddenSize, seed: UInt64($0)).map { $0 * 1e-2 } },
            downProjection: (0..<s.layers).map { _ in nil })
        let options = GradientOptions(weightGradients: .all, weightOffsets: offsets)
        let a = try full.lossAndGradients(tokens: tokens, predictFrom: 3, options: options)
        let b = try half.lossAndGradients(tokens: tokens, predictFrom: 3, options: options)
        #expect(abs(a.loss - b.loss) <= 1e-6 * a.loss)
        for (x, y) in zip(a.layers, b.layers) {
            expectRelativelyClose(y.attentionGrad, x.attentionGrad, tolerance: 1e-4)
            expectRelativelyClose(y.hiddenGrad, x.hiddenGrad, tolerance: 1e-4)
            expectRelativelyClose(y.outputProjectionGrad!, x.outputProjectionGrad!, tolerance: 1e-4)
        }
        // The offsets really moved W_O: the loss differs from the loss without them.
        let plain = try full.lossAndGradients(tokens: tokens, predictFrom: 3, options: GradientOptions())
        #expect(plain.loss != a.loss)
    }

    @Test("the LM head gives the same loss and gradient when its rows go through in blocks", arguments: [nil, Float(3)])
    func blockedLossHead(softcap: Float?) {
        let rows = 7, vocab = 50, width = 12
        let head = Matrix(rows: vocab, cols: width, values: randomFloats(vocab * width, seed: 1))
        let weight = WeightMatrix(head, dtype: .f32)
        let final = randomFloats(rows * width, seed: 2).map { $0 * 4 }
        let targets = (0..<rows).map { ($0 * 13 + 5) % vocab }
        func run(blockValues: Int) -> (loss: Double, gradient: [Float]) {
            var gradient = [Float](repeating: 0.5, count: rows * width)   // the head adds into it
            let loss = gradient.withUnsafeMutableBufferPointer { g in
                GradientPass.lossHead(g.baseAddress!, final, head: weight, targets: targets, weights: WeightViews(),
                                      softcap: softcap, blockValues: blockValues)
            }
            return (loss, gradient)
        }
        let whole = run(blockValues: rows * vocab)
        for blockValues in [vocab, 3 * vocab, 1] {   // one row, three rows (a short last block), one row again
            let blocked = run(blockValues: blockValues)
            #expect(abs(blocked.loss - whole.loss) <= 1e-6 * whole.loss)
            expectRelativelyClose(blocked.gradient, whole.gradient, tolerance: 1e-5)
        }
        // Without a gradient wanted, the loss alone is the same.
        let lossOnly = GradientPass.lossHead(nil, final, head: weight, targets: targets, weights: WeightViews(),
                                             softcap: softcap, blockValues: 2 * vocab)
        #expect(abs(lossOnly - whole.loss) <= 1e-6 * whole.loss)

        // A 16-bit head widened a slice of rows at a time (3 rows: 17 slices, the last of 2) gives
        // what it gives widened whole, alone and with the rows in blocks too.
        let half = WeightMatrix(head, dtype: .f16)
        func runHalf(blockValues: Int, sliced: Bool) -> (loss: Double, gradient: [Float]) {
            var gradient = [Float](repeating: 0, count: rows * width)
            let loss = gradient.withUnsafeMutableBufferPointer { g in
                GradientPass.lossHead(g.baseAddress!, final, head: half, targets: targets, weights: WeightViews(), softcap: softcap,
                                      blockValues: blockValues, wholeHeadValues: sliced ? 0 : Int.max, sliceValues: 3 * width)
            }
            return (loss, gradient)
        }
        let halfWhole = runHalf(blockValues: rows * vocab, sliced: false)
        #expect(abs(halfWhole.loss - whole.loss) <= 1e-2 * whole.loss)   // the f16 head is another head, but close
        for blockValues in [rows * vocab, 3 * vocab] {
            let sliced = runHalf(blockValues: blockValues, sliced: true)
            #expect(abs(sliced.loss - halfWhole.loss) <= 1e-6 * halfWhole.loss)
            // Summed over the vocabulary slice by slice: another order of the same terms.
            expectRelativelyClose(sliced.gradient, halfWhole.gradient, tolerance: 1e-4)
        }
    }

    @Test("bad samples and offsets are rejected with errors that name them")
    func rejectsBadInput() throws {
        let model = TinyModels.llama()
        expectShadowError(["tokens", "empty"]) { _ = try model.lossAndGradients(tokens: [], predictFrom: 1) }
        expectShadowError(["predictFrom", "0"]) { _ = try model.lossAndGradients(tokens: [1, 2, 3], predictFrom: 0) }
        expectShadowError(["predictFrom", "3"]) { _ = try model.lossAndGradients(tokens: [1, 2, 3], predictFrom: 3) }
        expectShadowError(["tokens", "99"]) { _ = try model.lossAndGradients(tokens: [1, 99, 3], predictFrom: 1) }
        expectShadowError(["tokens", "context"]) {
            _ = try model.lossAndGradients(tokens: Array(repeating: 1, count: 65), predictFrom: 1)
        }
        expectShadowError(["weightOffsets", "layer"]) {
            let options = GradientOptions(weightOffsets: WeightOffsets(outputProjection: [nil], downProjection: [nil]))
            _ = try model.lossAndGradients(tokens: [1, 2, 3], predictFrom: 1, options: options)
        }
        expectShadowError(["weightOffsets", "layer 1"]) {
            let options = GradientOptions(weightOffsets: WeightOffsets(outputProjection: [nil, [1]], downProjection: [nil, nil]))
            _ = try model.lossAndGradients(tokens: [1, 2, 3], predictFrom: 1, options: options)
        }
    }
}
