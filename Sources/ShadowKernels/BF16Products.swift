import CHalf
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Projections as bf16 dot products (`WeightDType.bf16dot`): the weights are stored in bf16 and
/// each projection's input is rounded to bf16, so every product is exact in fp32 and only the
/// sums are fp32. AVX512-BF16's `vdpbf16ps` does two such multiply-adds per fp32 lane, twice the
/// fp32 FMA rate, and the weights are half the bytes. Without the instruction the same products
/// run through the 16-bit fp32 kernels on the rounded input (here for the small-GEMM sizes;
/// `Linear` sends decode and long prefills to GEMV and OpenBLAS), so results do not depend on the
/// machine beyond the order of the sums.
public enum BF16Products {
    /// Whether this CPU has the AVX-512 kernels (AVX512-F, -BW, -VL and -BF16).
    public static let isAvailable: Bool = chalf_bf16_dot_available() != 0

    /// Whether products use the kernels: `isAvailable`, unless a task sets it to false so that
    /// tests take the fallback on any CPU (`Linear` reads it too, to choose the fallback's paths).
    @TaskLocal public static var usesKernels = isAvailable

    /// out[t, j] = bf16(x[t, :]) · W[row_j, :], as `SmallGEMM.multiply`; any number of tokens.
    /// `kernels: false` runs the fallback (tests compare the two).
    static func multiply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                         _ weight: WeightMatrix, rowIndices: UnsafePointer<Int32>?, rowCount: Int,
                         kernels: Bool = usesKernels) {
        guard rowCount > 0, tokens > 0 else { return }
        let cols = weight.cols
        guard kernels else {
            return withRoundedFloats(x, count: tokens * cols) {
                SmallGEMM.multiplyWidening(out, $0, tokens: tokens, weight, rowIndices: rowIndices, rowCount: rowCount)
            }
        }
        withBF16Input(x, rows: tokens, cols: cols) { rounded in
            // Parts of whole row blocks: 4 rows, or 16 for one token (a short block still does
            // all its rows' products).
            parallelChunks(rowCount, granularity: tokens == 1 ? 16 : 4, minimumPerThread: 16) { rows in
                chalf_bf16_dot_rows(out, rowCount, rounded, tokens, weight.halfPointer, cols, rowIndices,
                                    rows.lowerBound, rows.upperBound)
            }
        }
    }

    /// out[t, :] (+)= Σ_k bf16(x[t, k]) · Wt[row_k, :], as `SmallGEMM.multiplyTransposed`.
    static func multiplyTransposed(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                                   _ weightT: WeightMatrix, rowIndices: UnsafePointer<Int32>?, rowCount: Int,
                                   accumulate: Bool, kernels: Bool = usesKernels, packed: Bool = packsStrips) {
        guard tokens > 0 else { return }
        let cols = weightT.cols
        guard kernels else {
            return withRoundedFloats(x, count: tokens * rowCount) {
                SmallGEMM.multiplyTransposedWidening(out, $0, tokens: tokens, weightT, rowIndices: rowIndices,
                                                     rowCount: rowCount, accumulate: accumulate)
            }
        }
        withBF16Input(x, rows: tokens, cols: rowCount) { rounded in
            // Parts of whole 32-column blocks, the kernel's width.
            parallelChunks(cols, granularity: 32, minimumPerThread: 64) { columns in
                let out = out + columns.lowerBound, w = weightT.halfPointer + columns.lowerBound
                guard packed else {
                    return chalf_bf16_sum_rows(out, cols, rounded, rowCount, tokens, w, cols, rowIndices, rowCount,
                                               columns.count, accumulate ? 1 : 0)
                }
                // A strip's row pairs: (rowCount + 1) / 2 pairs of 64 values.
                withUnsafeTemporaryAllocation(byteCount: max(rowCount + 1, 2) / 2 * 128, alignment: 64) { raw in
                    let buffer = raw.baseAddress!.bindMemory(to: UInt16.self, capacity: raw.count / 2)
                    chalf_bf16_sum_rows_packed(out, cols, rounded, rowCount, tokens, w, cols, rowIndices, rowCount,
                                               columns.count, accumulate ? 1 : 0, buffer)
                }
            }
        }
    }

    /// Sums of rows interleave each strip of 32 columns once into a buffer for all blocks of
    /// tokens, the next strip prefetched (`chalf_bf16_sum_rows_packed`), rather than pairing W's
    /// rows in place once per block: the same bits, 1.4–1.7× the kernel's speed from 12 to 512 tokens
    /// (docs/results.md). `SHADOWLLM_BF16_IN_PLACE=1` pairs in place, to compare in one build.
    static let packsStrips: Bool = getenv("SHADOWLLM_BF16_IN_PLACE") == nil

    /// Calls `body` with x (rows × cols) rounded to bf16, for the kernels.
    static func withBF16Input(_ x: UnsafePointer<Float>, rows: Int, cols: Int, _ body: (UnsafePointer<UInt16>) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: max(rows * cols, 1)) { buffer in
            let rounded = buffer.baseAddress!
            parallelChunks(rows, minimumPerThread: 16) { range in
                chalf_bf16_round(rounded + range.lowerBound * cols, x + range.lowerBound * cols, range.count * cols)
            }
            body(rounded)
        }
    }

    /// Calls `body` with x's `count` values rounded to bf16 and widened back to fp32, for the fallback.
    static func withRoundedFloats(_ x: UnsafePointer<Float>, count: Int, _ body: (UnsafePointer<Float>) -> Void) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(count, 1)) { buffer in
            round(x, count: count, into: buffer.baseAddress!)
            body(buffer.baseAddress!)
        }
    }

    /// out[i] = x[i] rounded to bf16, as fp32.
    public static func round(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>) {
        for i in 0..<count { out[i] = roundedToBF16(x[i]) }
    }

    /// `value` rounded to the nearest bf16 (ties to even), as fp32.
    @inline(__always)
    public static func roundedToBF16(_ value: Float) -> Float {
        chalf_bf16_to_float(chalf_float_to_bf16(value))
    }
}
