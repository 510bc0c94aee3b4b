import Foundation
import ShadowKernels
import ShadowModels

// A small multilayer perceptron for the predictors (DESIGN §4): dense layers y = x Wᵀ + b with
// ReLU between hidden layers, an optional low-rank output (hidden → r → out with nothing in
// between), a hand-written backward pass (DESIGN §8: automatic differentiation through array
// loops is quadratic), AdamW and a cosine learning-rate schedule. Batches go through BLAS;
// one vector goes through the SIMD GEMV (DESIGN §8: never send one token through sgemm).

/// The shape of one dense layer and whether ReLU follows it.
public struct DenseLayerShape: Sendable, Equatable, Codable {
    public var inputs: Int
    public var outputs: Int
    public var relu: Bool

    public init(inputs: Int, outputs: Int, relu: Bool) {
        self.inputs = inputs
        self.outputs = outputs
        self.relu = relu
    }

    public var parameterCount: Int { outputs * inputs + outputs }
    /// Multiply–adds count as two FLOPs; the bias adds one per output.
    public var flops: Int { 2 * outputs * inputs + outputs }
}

// MARK: - Layer kernels: forward/backward pairs (outputs first, backward accumulates)

enum DenseKernels {
    /// y = x Wᵀ + b.  y: (B, out), x: (B, in), w: (out, in), b: (out)
    static func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                        _ b: UnsafePointer<Float>, batch: Int, inputs: Int, outputs: Int) {
        BLAS.gemmABt(y, x, w, m: batch, n: outputs, k: inputs)
        Ops.addBias(y, b, rows: batch, n: outputs)
    }

    /// dx += dy W, dW += dyᵀ x, db += Σ_rows dy.  dx: (B, in) or nil for the network's input,
    /// dw: (out, in), db: (out), dy: (B, out), x: (B, in), w: (out, in)
    static func backward(dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>,
                         dy: UnsafePointer<Float>, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                         batch: Int, inputs: Int, outputs: Int) {
        BLAS.gemmAtB(dw, dy, x, m: outputs, n: inputs, k: batch, accumulate: true)
        for r in 0..<batch { Ops.add(db, dy + r * outputs, count: outputs) }
        if let dx { BLAS.gemmAB(dx, dy, w, m: batch, n: inputs, k: outputs, accumulate: true) }
    }

    /// y = max(x, 0), in place.  y: (count)
    static func reluForward(_ y: UnsafeMutablePointer<Float>, count: Int) {
        Ops.relu(y, count: count)
    }

    /// dy is zeroed where the ReLU's output y was zero (in place: the gradient then flows to the
    /// pre-activation).  dy, y: (count)
    static func reluBackward(_ dy: UnsafeMutablePointer<Float>, y: UnsafePointer<Float>, count: Int) {
        for i in 0..<count where y[i] <= 0 { dy[i] = 0 }
    }
}

/// Zero-initialised fp32 storage that a network owns (parameters, gradients, optimiser moments).
final class FloatStorage: @unchecked Sendable {
    let count: Int
    let pointer: UnsafeMutablePointer<Float>

    /// `zeroed` false leaves the values unset, for a caller that writes every one before reading
    /// any: untouched, a large block's pages are not made resident until then.
    init(count: Int, zeroed: Bool = true) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
    }

    deinit { pointer.deallocate() }

    func zero() { pointer.update(repeating: 0, count: count) }
    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// A multilayer perceptron whose parameters live in one flat buffer (layer 0's W then b, layer
/// 1's W then b, …), so the optimiser walks a single array.
public final class MLP: @unchecked Sendable {
    public let layers: [DenseLayerShape]
    /// The parameters, flat; once the fp32 weights are released, the biases alone.
    private var storage: FloatStorage
    private(set) var offsets: [(weight: Int, bias: Int)]
    /// The fp32 weights were given back (`prepareForPrediction(releasingFullPrecision: true)`):
    /// one-vector forwards read the fp16 copies, and anything else that needs the weights stops
    /// the program.
    public private(set) var weightsReleased = false

    /// Every parameter, for training, checkpoints and rounding.
    var parameters: FloatStorage {
        // fatalError, not precondition: release builds run -Ounchecked, which drops preconditions.
        if weightsReleased { fatalError("an MLP's fp32 weights were released for prediction only; training, quality measurement and batch forwards need the predictor loaded again") }
        return storage
    }

    /// Layers as given; weights and biases drawn uniformly from ±1/√inputs (PyTorch's
    /// `nn.Linear` default, Kaiming-uniform with a = √5), from `seed`; nil leaves them unset for
    /// a caller that writes every one (loading a file: drawing 97 M numbers cost 0.1 s there, and
    /// untouched pages become resident only as each network is read).
    public init(layers: [DenseLayerShape], seed: UInt64?) {
        precondition(!layers.isEmpty && layers.allSatisfy { $0.inputs > 0 && $0.outputs > 0 })
        for (a, b) in zip(layers, layers.dropFirst()) { precondition(a.outputs == b.inputs, "layer widths do not chain") }
        self.layers = layers
        var offsets: [(weight: Int, bias: Int)] = []
        var total = 0
        for layer in layers {
            offsets.append((total, total + layer.outputs * layer.inputs))
            total += layer.parameterCount
        }
        self.offsets = offsets
        storage = FloatStorage(count: total, zeroed: seed != nil)
        guard let seed else { return }
        var generator = SeededGenerator(seed: seed)
        for (layer, offset) in zip(layers, offsets) {
            let bound = 1 / Float(layer.inputs).squareRoot()
            for i in 0..<layer.parameterCount {
                let unit = Float(generator.next() >> 40) / Float(1 << 24)       // [0, 1)
                storage.pointer[offset.weight + i] = (2 * unit - 1) * bound
            }
        }
    }

    /// inputs → hidden[0] → ReLU → … → hidden[last] → ReLU → [rank →] outputs. With a rank, the
    /// last layer is factored through r units with no activation between the factors, which
    /// cuts the parameters of a wide output layer from h·out to r·(h + out).
    public convenience init(inputs: Int, hidden: [Int], rank: Int? = nil, outputs: Int, seed: UInt64) {
        self.init(layers: Self.layers(inputs: inputs, hidden: hidden, rank: rank, outputs: outputs), seed: seed)
    }

    /// The layers of that network, which can be counted before any is allocated.
    public static func layers(inputs: Int, hidden: [Int], rank: Int? = nil, outputs: Int) -> [DenseLayerShape] {
        var layers: [DenseLayerShape] = []
        var width = inputs
        for h in hidden {
            layers.append(DenseLayerShape(inputs: width, outputs: h, relu: true))
            width = h
        }
        if let rank {
            layers.append(DenseLayerShape(inputs: width, outputs: rank, relu: false))
            width = rank
        }
        layers.append(DenseLayerShape(inputs: width, outputs: outputs, relu: false))
        return layers
    }

    public var inputs: Int { layers[0].inputs }
    public var outputs: Int { layers[layers.count - 1].outputs }
    public var parameterCount: Int { layers.reduce(0) { $0 + $1.parameterCount } }
    /// FLOPs of one forward pass of one vector.
    public var flops: Int { layers.reduce(0) { $0 + $1.flops } }

    /// Whether every prediction is finite: `outputBound()` below Float's largest value. What a
    /// predictor file's reader demands, so training and resuming check it before writing one.
    public var outputsFitSinglePrecision: Bool { outputBound() < Double(Float.greatestFiniteMagnitude) }

    /// The largest magnitude any output can reach for inputs in [0, 1] (what min-max scaling
    /// gives), by interval arithmetic in double precision: |y_i| ≤ Σ_j |W_ij|·bound_j + |b_i|, and
    /// ReLU never raises a bound. Below Float's largest value, no partial sum of a forward pass
    /// can overflow, so every prediction is finite.
    public func outputBound() -> Double {
        var bounds = [Double](repeating: 1, count: inputs)
        for (l, layer) in layers.enumerated() {
            let w = weight(l), b = bias(l)
            bounds = (0..<layer.outputs).map { i in
                var sum = Double(b[i]).magnitude
                let row = w + i * layer.inputs
                for j in 0..<layer.inputs { sum += Double(row[j]).magnitude * bounds[j] }
                return sum
            }
        }
        return bounds.max() ?? 0
    }

    public func weight(_ layer: Int) -> UnsafeMutablePointer<Float> { parameters.pointer + offsets[layer].weight }
    public func bias(_ layer: Int) -> UnsafeMutablePointer<Float> { storage.pointer + offsets[layer].bias }

    /// The parameters of layer `layer` as arrays: weight (out, in) and bias (out).
    public func values(layer: Int) -> (weight: [Float], bias: [Float]) {
        let s = layers[layer]
        return (Array(UnsafeBufferPointer(start: weight(layer), count: s.outputs * s.inputs)),
                Array(UnsafeBufferPointer(start: bias(layer), count: s.outputs)))
    }

    // MARK: One vector

    /// fp16 copies of the weights that one-vector forwards read instead of the fp32 ones (nil:
    /// read the fp32 weights). Decode is bound by the bytes it reads, and a DejaVu-style
    /// predictor reads all its weights every token: half the bytes, nearly half the time.
    private var halfWeights: [WeightMatrix]?
    var readsHalfWeights: Bool { halfWeights != nil }

    /// Bytes of weights and biases a one-vector forward reads.
    var bytesReadPerForward: Int {
        layers.reduce(0) { $0 + $1.outputs * $1.inputs * (halfWeights == nil ? 4 : 2) + $1.outputs * 4 }
    }

    /// Makes one-vector forwards read fp16 copies of the weights, for weights that are fp16
    /// values already (a predictor stored as f16), so the copies hold the same numbers; the sums
    /// may round differently. A layer with a value fp16 cannot hold keeps the fp32 path.
    private func readHalfWeightsInForward() {
        guard halfWeights == nil else { return }
        var copies: [WeightMatrix] = []
        for (l, layer) in layers.enumerated() {
            let copy = WeightMatrix(rows: layer.outputs, cols: layer.inputs, values: weight(l), dtype: .f16)
            guard copy.dtype == .f16 else { return }   // beyond ±65000 WeightMatrix keeps bf16, which would round
            copies.append(copy)
        }
        halfWeights = copies
    }

    /// fp16 copies for one-vector forwards (`readHalfWeightsInForward`), and with
    /// `releasingFullPrecision` the fp32 weights given back once they exist.
    func prepareForPrediction(releasingFullPrecision: Bool) {
        readHalfWeightsInForward()
        if releasingFullPrecision { releaseFullPrecisionWeights() }
    }

    /// For a network that will only run one-vector forwards from now on and reads fp16 copies:
    /// gives back the fp32 weights (two thirds of its memory), keeping the biases.
    private func releaseFullPrecisionWeights() {
        guard halfWeights != nil, !weightsReleased else { return }
        let biases = FloatStorage(count: layers.reduce(0) { $0 + $1.outputs })
        var kept: [(weight: Int, bias: Int)] = [], next = 0
        for (l, layer) in layers.enumerated() {
            (biases.pointer + next).update(from: bias(l), count: layer.outputs)
            kept.append((weight: -1, bias: next))
            next += layer.outputs
        }
        (storage, offsets, weightsReleased) = (biases, kept, true)
    }

    /// y = f(x) for one vector through GEMV.  y: (outputs), x: (inputs)
    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>) {
        let widest = layers.dropLast().map(\.outputs).max() ?? 0
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(2 * widest, 1)) { scratch in
            var input = x
            var ping = scratch.baseAddress!, pong = scratch.baseAddress! + widest
            for (l, layer) in layers.enumerated() {
                let out = l == layers.count - 1 ? y : ping
                if let halfWeights {
                    halfWeights[l].multiply(out, input)
                } else {
                    GEMV.multiply(out, weight(l), input, rows: layer.outputs, cols: layer.inputs)
                }
                Ops.add(out, bias(l), count: layer.outputs)
                if layer.relu { DenseKernels.reluForward(out, count: layer.outputs) }
                input = UnsafePointer(out)
                swap(&ping, &pong)
            }
        }
    }

    public func forward(_ x: [Float]) -> [Float] {
        precondition(x.count == inputs)
        var y = [Float](repeating: 0, count: outputs)
        y.withUnsafeMutableBufferPointer { out in x.withUnsafeBufferPointer { forward(out.baseAddress!, $0.baseAddress!) } }
        return y
    }

    // MARK: Batches

    /// Activations and their gradients for batches of up to `capacity` rows.
    public final class Workspace {
        public let capacity: Int
        let activations: [FloatStorage]   // per layer: (capacity, outputs), after the ReLU when there is one
        let gradients: [FloatStorage]     // per layer: ∂loss/∂activation, same shapes

        public init(_ network: MLP, capacity: Int) {
            self.capacity = capacity
            activations = network.layers.map { FloatStorage(count: capacity * $0.outputs) }
            gradients = network.layers.map { FloatStorage(count: capacity * $0.outputs) }
        }

        /// The network's output of the last `forward`, (batch, outputs).
        public var output: UnsafeMutablePointer<Float> { activations[activations.count - 1].pointer }
        /// Where the loss writes ∂loss/∂output before `backward`, (batch, outputs).
        public var outputGradient: UnsafeMutablePointer<Float> { gradients[gradients.count - 1].pointer }
    }

    /// Forward pass of `batch` rows of x (batch, inputs); activations are kept in `workspace`
    /// for the backward pass, and the result is `workspace.output`.
    public func forward(batch: Int, x: UnsafePointer<Float>, workspace: Workspace) {
        precondition(batch <= workspace.capacity)
        var input = x
        for (l, layer) in layers.enumerated() {
            let y = workspace.activations[l].pointer
            DenseKernels.forward(y, input, weight(l), bias(l), batch: batch, inputs: layer.inputs, outputs: layer.outputs)
            if layer.relu { DenseKernels.reluForward(y, count: batch * layer.outputs) }
            input = UnsafePointer(y)
        }
    }

    /// Backward pass after `forward(batch:x:workspace:)`, from `workspace.outputGradient`:
    /// accumulates ∂loss/∂parameters into `gradients` (laid out like the parameters). The
    /// gradients of hidden activations are overwritten, the output gradient is consumed.
    public func backward(batch: Int, x: UnsafePointer<Float>, workspace: Workspace, gradients: UnsafeMutablePointer<Float>) {
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[l]
            let dy = workspace.gradients[l].pointer
            if layer.relu { DenseKernels.reluBackward(dy, y: workspace.activations[l].pointer, count: batch * layer.outputs) }
            let input = l == 0 ? x : UnsafePointer(workspace.activations[l - 1].pointer)
            var dx: UnsafeMutablePointer<Float>?
            if l > 0 {
                dx = workspace.gradients[l - 1].pointer
                dx!.update(repeating: 0, count: batch * layer.inputs)
            }
            DenseKernels.backward(dx: dx, dw: gradients + offsets[l].weight, db: gradients + offsets[l].bias,
                                  dy: dy, x: input, w: weight(l), batch: batch, inputs: layer.inputs, outputs: layer.outputs)
        }
    }
}

// MARK: - Losses

/// Training losses over a batch of predictions: each returns the mean loss and writes
/// ∂loss/∂prediction.
public enum PredictorLossKernels {
    /// Mean squared error over every element.  grad, prediction, target: (batch, width)
    public static func mse(grad: UnsafeMutablePointer<Float>, prediction: UnsafePointer<Float>,
                           target: UnsafePointer<Float>, batch: Int, width: Int) -> Float {
        let n = batch * width
        let scale = 2 / Float(n)
        var sum: Double = 0
        for i in 0..<n {
            let d = prediction[i] - target[i]
            sum += Double(d * d)
            grad[i] = scale * d
        }
        return Float(sum / Double(n))
    }

    /// Listwise ranking loss: each row splits into segments of `segment` units (one per layer);
    /// per segment the target distribution is softmax(temperature · target), the predicted one
    /// softmax(prediction), and the loss their cross-entropy, averaged over segments and rows.
    /// Its gradient is (softmax(prediction) − softmax(temperature · target)) / segments.
    public static func listwise(grad: UnsafeMutablePointer<Float>, prediction: UnsafePointer<Float>,
                                target: UnsafePointer<Float>, batch: Int, width: Int, segment: Int,
                                temperature: Float) -> Float {
        precondition(width % segment == 0)
        let segments = batch * (width / segment)
        let scale = 1 / Float(segments)
        var total: Double = 0
        withUnsafeTemporaryAllocation(of: Float.self, capacity: segment) { q in
            let q = q.baseAddress!
            for s in 0..<segments {
                let p = prediction + s * segment, t = target + s * segment, g = grad + s * segment
                for i in 0..<segment { q[i] = temperature * t[i] }
                Ops.softmax(q, segment)
                // cross-entropy −Σ q log softmax(p) = logΣexp(p) − Σ q·p
                let lse = Ops.logSumExp(p, segment)
                var qp: Double = 0
                for i in 0..<segment { qp += Double(q[i] * p[i]) }
                total += lse - qp
                for i in 0..<segment { g[i] = scale * (Float(exp(Double(p[i]) - lse)) - q[i]) }
            }
        }
        return Float(total / Double(segments))
    }
}

// MARK: - Optimiser

/// AdamW (Loshchilov & Hutter): Adam moments with bias correction and weight decay applied to
/// the parameters directly, not through the gradient. Decay applies to every parameter, biases
/// included (PyTorch's default when all parameters form one group).
public struct AdamW {
    public var learningRate: Float
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0.01
    public private(set) var step = 0
    let m: FloatStorage
    let v: FloatStorage

    public init(parameterCount: Int, learningRate: Float = 1e-3, weightDecay: Float = 0.01) {
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        m = FloatStorage(count: parameterCount)
        v = FloatStorage(count: parameterCount)
    }

    /// One update of `parameters` from `gradients` at learning rate `lr` (the schedule's value).
    /// SIMD over 16 lanes and spread over the threads: for a 48 M-parameter neuron network the
    /// scalar loop took more time than the GEMMs of a batch.
    public mutating func update(_ parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, lr: Float) {
        step += 1
        let correction1 = 1 - pow(beta1, Float(step)), correction2 = 1 - pow(beta2, Float(step))
        let decay = 1 - lr * weightDecay
        let m = m.pointer, v = v.pointer, count = self.m.count
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        // p ← p·(1 − lr·λ) − lr·m̂ / (√v̂ + ε), with m̂ = m / (1 − β1ᵗ), v̂ = v / (1 − β2ᵗ).
        let stepSize = lr / correction1, inverseCorrection2 = 1 / correction2
        parallelChunks(count, granularity: 16, minimumPerThread: 1 << 16) { range in
            typealias V = SIMD16<Float>
            var i = range.lowerBound
            while i + 16 <= range.upperBound {
                let g = GEMV.load(gradients + i)
                let mi = b1 * GEMV.load(m + i) + (1 - b1) * g
                let vi = b2 * GEMV.load(v + i) + (1 - b2) * g * g
                GEMV.store(mi, m + i)
                GEMV.store(vi, v + i)
                let denominator = (vi * inverseCorrection2).squareRoot() + V(repeating: eps)
                GEMV.store(GEMV.load(parameters + i) * decay - stepSize * mi / denominator, parameters + i)
                i += 16
            }
            while i < range.upperBound {
                let g = gradients[i]
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                parameters[i] = parameters[i] * decay - stepSize * m[i] / ((v[i] * inverseCorrection2).squareRoot() + eps)
                i += 1
            }
        }
    }

    /// Puts back a saved state (a training checkpoint): the updates taken and both moments.
    mutating func restore(step: Int, m savedM: [Float], v savedV: [Float]) {
        precondition(savedM.count == m.count && savedV.count == v.count, "moments of another network")
        self.step = step
        savedM.withUnsafeBufferPointer { m.pointer.update(from: $0.baseAddress!, count: m.count) }
        savedV.withUnsafeBufferPointer { v.pointer.update(from: $0.baseAddress!, count: v.count) }
    }

    /// Cosine decay from `base` at step 0 to 0 after `total` steps.
    public static func cosine(base: Float, step: Int, total: Int) -> Float {
        guard total > 0 else { return base }
        return base * 0.5 * (1 + cos(Float.pi * Float(min(step, total)) / Float(total)))
    }
}

/// Min–max scaling to [0, 1] (the predictors' input and target scaling, DESIGN §4). A constant
/// vector becomes zeros.
public enum MinMax {
    public static func range(_ x: UnsafePointer<Float>, count: Int) -> (min: Float, max: Float) {
        var lo = Float.infinity, hi = -Float.infinity
        for i in 0..<count { lo = min(lo, x[i]); hi = max(hi, x[i]) }
        return (lo, hi)
    }

    /// out[i] = (x[i] − lo) / (hi − lo).
    public static func scale(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int,
                             range: (min: Float, max: Float)) {
        let span = range.max - range.min
        guard span > 0, span.isFinite else { out.update(repeating: 0, count: count); return }
        // Divided, not multiplied by 1/span: the maximum then scales to exactly 1, so the top
        // units of layers tie as they should when ranked (a reciprocal left some at 1 − 2⁻²⁴).
        for i in 0..<count { out[i] = (x[i] - range.min) / span }
    }

    public static func scale(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        scale(out, x, count: count, range: range(x, count: count))
    }

    public static func scaled(_ x: [Float]) -> [Float] {
        guard !x.isEmpty else { return [] }
        var out = x
        x.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { scale($0.baseAddress!, src.baseAddress!, count: x.count) } }
        return out
    }
}
