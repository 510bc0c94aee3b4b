import ShadowKernels

/// y = x Wᵀ + b for a `[out, in]` weight: GEMM for many tokens, SIMD GEMV for one.
public struct Linear: Sendable {
    public let weight: Matrix            // (out, in)
    public let bias: [Float]?            // (out)

    public init(weight: Matrix, bias: [Float]? = nil) {
        precondition(bias == nil || bias!.count == weight.rows)
        self.weight = weight
        self.bias = bias
    }

    public var inputSize: Int { weight.cols }
    public var outputSize: Int { weight.rows }

    /// out: (T, outputSize); x: (T, inputSize).
    public func apply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int) {
        if tokens == 1 {
            GEMV.multiply(out, weight.pointer, x, rows: weight.rows, cols: weight.cols)
        } else {
            BLAS.gemmABt(out, x, weight.pointer, m: tokens, n: weight.rows, k: weight.cols)
        }
        if let bias { bias.withUnsafeBufferPointer { Ops.addBias(out, $0.baseAddress!, rows: tokens, n: weight.rows) } }
    }
}

/// A projection stored transposed, `[in, out]`: one contiguous row per input unit (FFN neuron or
/// attention-output dimension), so skipping a unit skips a row (DESIGN §5).
public struct TransposedLinear: Sendable {
    public let weightT: Matrix           // (in, out)
    public let bias: [Float]?            // (out)

    public init(weightT: Matrix, bias: [Float]? = nil) {
        precondition(bias == nil || bias!.count == weightT.cols)
        self.weightT = weightT
        self.bias = bias
    }

    public var inputSize: Int { weightT.rows }
    public var outputSize: Int { weightT.cols }

    /// out (+)= x W + b; out: (T, outputSize); x: (T, inputSize).
    public func apply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                      accumulate: Bool) {
        if tokens == 1 {
            GEMV.multiplyTransposed(out, weightT.pointer, x, rows: weightT.rows, cols: weightT.cols,
                                    accumulate: accumulate)
        } else {
            BLAS.gemmAB(out, x, weightT.pointer, m: tokens, n: weightT.cols, k: weightT.rows,
                        accumulate: accumulate)
        }
        if let bias { bias.withUnsafeBufferPointer { Ops.addBias(out, $0.baseAddress!, rows: tokens, n: weightT.cols) } }
    }
}
