import ShadowKernels

/// Up to this many tokens go through the GEMV path one by one (the small-GEMM kernels work in
/// blocks of four tokens).
let gemvTokenLimit = 4

/// How a projection of `tokens` rows is computed.
enum ProductPath {
    case gemv, smallGEMM, blas

    /// One token at a time for a few; a few dozen skip OpenBLAS, whose per-call copy of the
    /// weights (after widening, for 16-bit ones) would cost as much as the arithmetic. bf16 dot
    /// product kernels have no BLAS and run at every size; without them (`BF16Products.usesKernels`)
    /// the same products (bf16 weights times the input rounded to bf16) take the paths of 16-bit
    /// weights, GEMV and OpenBLAS included.
    @inline(__always)
    init(tokens: Int, _ weight: WeightMatrix) {
        if weight.dtype == .bf16dot && BF16Products.usesKernels {
            self = .smallGEMM
        } else if tokens <= gemvTokenLimit {
            self = .gemv
        } else {
            self = tokens <= SmallGEMM.tokenLimit ? .smallGEMM : .blas
        }
    }

    /// The input this path multiplies: x itself, or for bf16 dot products on GEMV or BLAS x
    /// rounded to bf16 in `scratch` (the small-GEMM path rounds its own input).
    func input(_ x: UnsafePointer<Float>, count: Int, _ weight: WeightMatrix, scratch: Scratch) -> UnsafePointer<Float> {
        guard weight.dtype == .bf16dot, self != .smallGEMM else { return x }
        let rounded = scratch.buffer("bf16 input", count: count)
        BF16Products.round(x, count: count, into: rounded)
        return UnsafePointer(rounded)
    }
}

/// y = x Wᵀ + b for a `[out, in]` weight, by the `ProductPath` the input's length picks: SIMD GEMV
/// for a token or a few, small-GEMM panels for a few dozen, BLAS GEMM beyond.
public struct Linear: Sendable {
    public let weight: WeightMatrix      // (out, in)
    public let bias: [Float]?            // (out)

    public init(weight: WeightMatrix, bias: [Float]? = nil) {
        // A guard: -Ounchecked drops preconditions, and a short bias would be read past its end.
        guard bias == nil || bias!.count == weight.rows else { fatalError("a bias of \(bias!.count) values for \(weight.rows) outputs") }
        self.weight = weight
        self.bias = bias
    }

    public var inputSize: Int { weight.cols }
    public var outputSize: Int { weight.rows }

    /// out: (T, outputSize); x: (T, inputSize).
    public func apply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int, scratch: Scratch) {
        let path = ProductPath(tokens: tokens, weight)
        let x = path.input(x, count: tokens * weight.cols, weight, scratch: scratch)
        switch path {
        case .gemv:
            for t in 0..<tokens { weight.multiply(out + t * weight.rows, x + t * weight.cols) }
        case .smallGEMM:
            SmallGEMM.multiply(out, x, tokens: tokens, weight, rowIndices: nil, rowCount: weight.rows)
        case .blas:
            multiplyWidened(out, x, tokens: tokens, scratch: scratch)
        }
        if let bias { bias.withUnsafeBufferPointer { Ops.addBias(out, $0.baseAddress!, rows: tokens, n: weight.rows) } }
    }

    /// The BLAS path without the bias: each slice of rows (widened, for 16-bit weights) gives
    /// the same columns of every output row.
    func multiplyWidened(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int, scratch: Scratch,
                         sliceRows: Int? = nil) {
        weight.forEachFloatSlice(sliceRows: sliceRows, scratch: { scratch.buffer("widened", count: $0) }) { rows, w in
            BLAS.gemmABt(out + rows.lowerBound, x, w, m: tokens, n: rows.count, k: weight.cols, ldc: weight.rows)
        }
    }
}

extension Linear {
    /// out[t, k] = x[t] · W[rows[k]] + b[rows[k]]: only the listed output rows are computed
    /// (sparse execution). out: (T, rows.count).
    public func apply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int, rows: [Int32],
                      scratch: Scratch) {
        rows.withUnsafeBufferPointer { index in
            let count = index.count
            guard count > 0 else { return }
            let path = ProductPath(tokens: tokens, weight)
            let x = path.input(x, count: tokens * weight.cols, weight, scratch: scratch)
            switch path {
            case .gemv:
                if let packed = scratch.keptRows(of: weight, index) {
                    for t in 0..<tokens { packed.multiply(out + t * count, x + t * weight.cols) }
                } else {
                    for t in 0..<tokens { weight.multiply(out + t * count, x + t * weight.cols, rows: index.baseAddress!, count: count) }
                }
            case .smallGEMM:
                SmallGEMM.multiply(out, x, tokens: tokens, weight, rowIndices: index.baseAddress!, rowCount: count)
            case .blas:
                let gathered = scratch.buffer("gathered", rows: count, cols: weight.cols)
                weight.gatherRows(index.baseAddress!, count: count, into: gathered)
                BLAS.gemmABt(out, x, gathered, m: tokens, n: count, k: weight.cols)
            }
            if let bias {
                for t in 0..<tokens {
                    let o = out + t * count
                    for k in 0..<count { o[k] += bias[Int(index[k])] }
                }
            }
        }
    }
}

extension TransposedLinear {
    /// out (+)= x · W[rows] + b, where x holds only the listed input units: (T, rows.count).
    public func apply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int, rows: [Int32],
                      accumulate: Bool, scratch: Scratch) {
        rows.withUnsafeBufferPointer { index in
            let count = index.count
            if count == 0 {
                if !accumulate { out.update(repeating: 0, count: tokens * weightT.cols) }
                return
            }
            let path = ProductPath(tokens: tokens, weightT)
            let x = path.input(x, count: tokens * count, weightT, scratch: scratch)
            switch path {
            case .gemv:
                let packed = scratch.keptRows(of: weightT, index)
                for t in 0..<tokens {
                    if let packed {
                        packed.multiplyTransposed(out + t * weightT.cols, x + t * count, accumulate: accumulate)
                    } else {
                        weightT.multiplyTransposed(out + t * weightT.cols, x + t * count, rows: index.baseAddress!, count: count,
                                                   accumulate: accumulate)
                    }
                }
            case .smallGEMM:
                SmallGEMM.multiplyTransposed(out, x, tokens: tokens, weightT, rowIndices: index.baseAddress!,
                                             rowCount: count, accumulate: accumulate)
            case .blas:
                let gathered = scratch.buffer("gathered", rows: count, cols: weightT.cols)
                weightT.gatherRows(index.baseAddress!, count: count, into: gathered)
                BLAS.gemmAB(out, x, gathered, m: tokens, n: weightT.cols, k: count, accumulate: accumulate)
            }
        }
        if let bias { bias.withUnsafeBufferPointer { Ops.addBias(out, $0.baseAddress!, rows: tokens, n: weightT.cols) } }
    }
}

/// A projection stored transposed, `[in, out]`: one contiguous row per input unit (FFN neuron or
/// attention-output dimension), so skipping a unit skips a row (DESIGN §5).
public struct TransposedLinear: Sendable {
    public let weightT: WeightMatrix     // (in, out)
    public let bias: [Float]?            // (out)

    public init(weightT: WeightMatrix, bias: [Float]? = nil) {
        guard bias == nil || bias!.count == weightT.cols else { fatalError("a bias of \(bias!.count) values for \(weightT.cols) outputs") }
        self.weightT = weightT
        self.bias = bias
    }

    public var inputSize: Int { weightT.rows }
    public var outputSize: Int { weightT.cols }

    /// out (+)= x W + b; out: (T, outputSize); x: (T, inputSize).
    public func apply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                      accumulate: Bool, scratch: Scratch) {
        let path = ProductPath(tokens: tokens, weightT)
        let x = path.input(x, count: tokens * weightT.rows, weightT, scratch: scratch)
        switch path {
        case .gemv:
            for t in 0..<tokens {
                weightT.multiplyTransposed(out + t * weightT.cols, x + t * weightT.rows, accumulate: accumulate)
            }
        case .smallGEMM:
            SmallGEMM.multiplyTransposed(out, x, tokens: tokens, weightT, rowIndices: nil, rowCount: weightT.rows,
                                         accumulate: accumulate)
        case .blas:
            multiplyWidened(out, x, tokens: tokens, accumulate: accumulate, scratch: scratch)
        }
        if let bias { bias.withUnsafeBufferPointer { Ops.addBias(out, $0.baseAddress!, rows: tokens, n: weightT.cols) } }
    }

    /// The BLAS path without the bias: each slice of input rows (widened, for 16-bit weights)
    /// adds its part of the sum to every output row.
    func multiplyWidened(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int, accumulate: Bool,
                         scratch: Scratch, sliceRows: Int? = nil) {
        weightT.forEachFloatSlice(sliceRows: sliceRows, scratch: { scratch.buffer("widened", count: $0) }) { rows, w in
            BLAS.gemmAB(out, x + rows.lowerBound, w, m: tokens, n: weightT.cols, k: rows.count, lda: weightT.rows,
                        accumulate: accumulate || rows.lowerBound > 0)
        }
    }
}
