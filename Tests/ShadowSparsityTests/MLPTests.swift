import Foundation
import Testing
@testable import ShadowSparsity
import ShadowTestSupport

@Suite("Predictor networks")
struct MLPTests {
    /// Loss of `network` on (x, target) with the given loss kernel, and its parameter gradient.
    func lossAndGradient(_ network: MLP, x: [Float], target: [Float], batch: Int,
                         loss: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) -> Float) -> (Float, [Float]) {
        let workspace = MLP.Workspace(network, capacity: batch)
        let gradients = FloatStorage(count: network.parameterCount)
        let value = x.withUnsafeBufferPointer { xp in
            target.withUnsafeBufferPointer { tp in
                network.forward(batch: batch, x: xp.baseAddress!, workspace: workspace)
                let value = loss(workspace.outputGradient, workspace.output, tp.baseAddress!)
                network.backward(batch: batch, x: xp.baseAddress!, workspace: workspace, gradients: gradients.pointer)
                return value
            }
        }
        return (value, gradients.array)
    }

    func checkGradient(rank: Int?, ranking: Bool) {
        let batch = 3, inputs = 5, outputs = 6
        let network = MLP(inputs: inputs, hidden: [7], rank: rank, outputs: outputs, seed: 3)
        let x = randomFloats(batch * inputs, seed: 1)
        let target = randomFloats(batch * outputs, seed: 2).map { ($0 + 1) / 2 }
        let kernel: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) -> Float = { g, p, t in
            ranking ? PredictorLossKernels.listwise(grad: g, prediction: p, target: t, batch: batch, width: outputs,
                                                    segment: 3, temperature: 4)
                : PredictorLossKernels.mse(grad: g, prediction: p, target: t, batch: batch, width: outputs)
        }
        let (_, analytic) = lossAndGradient(network, x: x, target: target, batch: batch, loss: kernel)
        var numeric = [Float](repeating: 0, count: network.parameterCount)
        let h: Float = 1e-2
        for i in 0..<network.parameterCount {
            let saved = network.parameters.pointer[i]
            network.parameters.pointer[i] = saved + h
            let plus = lossAndGradient(network, x: x, target: target, batch: batch, loss: kernel).0
            network.parameters.pointer[i] = saved - h
            let minus = lossAndGradient(network, x: x, target: target, batch: batch, loss: kernel).0
            network.parameters.pointer[i] = saved
            numeric[i] = (plus - minus) / (2 * h)
        }
        let scale = analytic.map(abs).max()!
        #expect(scale > 1e-3)
        expectClose(analytic.map { $0 / scale }, numeric.map { $0 / scale }, tolerance: 2e-2, "gradient (rank \(String(describing: rank)), ranking \(ranking))")
    }

    @Test("the backward pass matches finite differences of the MSE loss")
    func gradientMSE() { checkGradient(rank: nil, ranking: false) }

    @Test("the backward pass through a low-rank output matches finite differences")
    func gradientLowRank() { checkGradient(rank: 2, ranking: false) }

    @Test("the listwise ranking loss has the gradient of its finite differences")
    func gradientRank() { checkGradient(rank: nil, ranking: true) }

    @Test("one vector through GEMV gives the batch forward's row")
    func singleMatchesBatch() {
        let network = MLP(inputs: 20, hidden: [33], rank: 5, outputs: 17, seed: 9)
        let x = randomFloats(3 * 20, seed: 4)
        let workspace = MLP.Workspace(network, capacity: 3)
        x.withUnsafeBufferPointer { network.forward(batch: 3, x: $0.baseAddress!, workspace: workspace) }
        for r in 0..<3 {
            let batchRow = Array(UnsafeBufferPointer(start: workspace.output + r * 17, count: 17))
            expectClose(network.forward(Array(x[r * 20..<(r + 1) * 20])), batchRow, tolerance: 1e-5, "row \(r)")
        }
    }

    @Test("min-max scaling puts every row's maximum at exactly 1, so tied maxima rank as ties")
    func minMaxReachesOne() {
        // 47 × (1/47) is 1 − 2⁻²⁴ in single precision; a division is exact.
        let scaled = MinMax.scaled([0, 12.5, 47, 3])
        #expect(scaled[2] == 1 && scaled[0] == 0, "\(scaled)")
        #expect(MinMax.scaled([-41, 0]) == [0, 1])
    }

    @Test("initialisation is seeded and bounded by 1/√inputs")
    func initialisation() {
        let a = MLP(inputs: 16, hidden: [8], outputs: 4, seed: 1), b = MLP(inputs: 16, hidden: [8], outputs: 4, seed: 1)
        #expect(a.parameters.array == b.parameters.array)
        #expect(a.parameters.array != MLP(inputs: 16, hidden: [8], outputs: 4, seed: 2).parameters.array)
        #expect(a.values(layer: 0).weight.allSatisfy { abs($0) <= 0.25 })
        #expect(a.values(layer: 1).weight.allSatisfy { abs($0) <= 1 / Float(8).squareRoot() })
    }

    @Test("a low-rank output layer has fewer parameters and FLOPs")
    func lowRankIsSmaller() {
        let full = MLP(inputs: 64, hidden: [128], outputs: 1000, seed: 0)
        let low = MLP(inputs: 64, hidden: [128], rank: 16, outputs: 1000, seed: 0)
        #expect(full.parameterCount == 64 * 128 + 128 + 128 * 1000 + 1000)
        #expect(low.parameterCount == 64 * 128 + 128 + 128 * 16 + 16 + 16 * 1000 + 1000)
        #expect(low.parameterCount < full.parameterCount / 4)
        #expect(low.flops < full.flops)
    }

    @Test("AdamW takes a bias-corrected first step of lr against the gradient's sign, then decays")
    func adamW() {
        var optimiser = AdamW(parameterCount: 2, learningRate: 0.1, weightDecay: 0.01)
        var p: [Float] = [1, -2]
        let g: [Float] = [0.5, -3]
        p.withUnsafeMutableBufferPointer { optimiser.update($0.baseAddress!, gradients: g, lr: 0.1) }
        // Step 1: m̂ = g, v̂ = g², so the step is lr·sign(g) (up to ε), after decay by (1 − lr·wd).
        expectClose(p, [1 * 0.999 - 0.1, -2 * 0.999 + 0.1], tolerance: 1e-5)
        #expect(AdamW.cosine(base: 1, step: 0, total: 10) == 1)
        #expect(abs(AdamW.cosine(base: 1, step: 5, total: 10) - 0.5) < 1e-6)
        #expect(AdamW.cosine(base: 1, step: 10, total: 10) == 0)
    }

    @Test("training on a small regression problem drives the loss down")
    func fits() {
        let network = MLP(inputs: 4, hidden: [32], outputs: 2, seed: 5)
        let n = 64
        let x = randomFloats(n * 4, seed: 8)
        var t = [Float](repeating: 0, count: n * 2)
        for i in 0..<n { t[2 * i] = x[4 * i] * x[4 * i + 1]; t[2 * i + 1] = abs(x[4 * i + 2]) - x[4 * i + 3] }
        let workspace = MLP.Workspace(network, capacity: n)
        let gradients = FloatStorage(count: network.parameterCount)
        var optimiser = AdamW(parameterCount: network.parameterCount, learningRate: 1e-2)
        var first: Float = 0, last: Float = 0
        for step in 0..<300 {
            x.withUnsafeBufferPointer { xp in t.withUnsafeBufferPointer { tp in
                network.forward(batch: n, x: xp.baseAddress!, workspace: workspace)
                last = PredictorLossKernels.mse(grad: workspace.outputGradient, prediction: workspace.output, target: tp.baseAddress!, batch: n, width: 2)
                if step == 0 { first = last }
                gradients.zero()
                network.backward(batch: n, x: xp.baseAddress!, workspace: workspace, gradients: gradients.pointer)
            } }
            optimiser.update(network.parameters.pointer, gradients: gradients.pointer, lr: AdamW.cosine(base: 1e-2, step: step, total: 300))
        }
        #expect(last < first / 10, "loss \(first) → \(last)")
    }
}
