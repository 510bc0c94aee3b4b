import CHalf

/// Products of a weight matrix with a few tokens of activations, the shape of evaluation and
/// calibration prefills (a question's context, one answer: 10–60 tokens). OpenBLAS copies (packs)
/// the whole weight matrix on every sgemm call; with so few tokens that copy cost as much as the
/// arithmetic (36% of a PIQA evaluation was in `sgemm_incopy`/`sgemm_itcopy`). These kernels read
/// each weight row where it lies, once per block of four tokens (up to six for the sums of rows
/// of a transposed projection, CHalfGEMM.h), and take a row list, so sparse execution needs no
/// gathered copy either. 16-bit weights are widened a panel of rows at a time into a buffer that
/// stays in cache, rather than whole into memory for a GEMM to copy again; the AVX-512 kernels
/// widen them inside, a few rows at a time.
public enum SmallGEMM {
    typealias V = SIMD8<Float>

    /// Up to this many tokens these kernels are used; above it OpenBLAS's packed kernels amortise
    /// their copy of the weights and are faster, except against the AVX-512 kernels, which are
    /// faster at every length measured (pp512 1.3× on a Zen 5; docs/results.md).
    public static let tokenLimit = usesAVX512 ? Int.max : 96

    /// The fp32 kernels in 512-bit registers (CHalfAVX512.h) where the CPU has AVX-512: twice the
    /// arithmetic per instruction on cores with full-width units (docs/results.md, "AVX-512 small
    /// GEMMs"). `SHADOWLLM_NO_AVX512=1` keeps the AVX2 kernels, to compare the two in one build.
    public static let usesAVX512: Bool = avx512Available && getenv("SHADOWLLM_NO_AVX512") == nil

    /// 16-bit weights widened inside the AVX-512 kernels (`chalf_half_dot_rows`, `chalf_half_sum_rows`)
    /// rather than a panel at a time before them; `SHADOWLLM_HALF_PANELS=1` keeps the panels, to
    /// compare the two in one build.
    static let widensInKernel: Bool = usesAVX512 && getenv("SHADOWLLM_HALF_PANELS") == nil

    /// fp32 sums of rows copy each strip of 32 columns into a packed buffer, the next strip
    /// prefetched (`chalf_f32_sum_rows_packed`), rather than reading it at the row stride once per
    /// block of tokens: 1.3–1.7× the speed from 5 to 96 tokens (docs/results.md), the same bits.
    /// `SHADOWLLM_F32_IN_PLACE=1` reads the strips in place, to compare the two in one build.
    static let packsF32Strips: Bool = usesAVX512 && getenv("SHADOWLLM_F32_IN_PLACE") == nil

    /// Whether this CPU runs the AVX-512 kernels at all (tests run both kinds where it does).
    static let avx512Available = chalf_avx512_available() != 0

    /// 16-bit weights are widened this many rows at a time into a per-thread buffer that stays in
    /// cache (instead of the whole matrix into memory, which a GEMM then copies once more).
    static let panelRows = 32

    /// out[t, j] = x[t, :] · W[row_j, :] for j in 0..<rowCount and t in 0..<tokens, where row_j
    /// is `rowIndices[j]` (a kept subset) or j. x: (tokens, W.cols); out: (tokens, rowCount).
    public static func multiply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                                _ weight: WeightMatrix, rowIndices: UnsafePointer<Int32>?, rowCount: Int) {
        if weight.dtype == .bf16dot {
            return BF16Products.multiply(out, x, tokens: tokens, weight, rowIndices: rowIndices, rowCount: rowCount)
        }
        guard weight.dtype != .f32 else {
            return multiply(out, x, tokens: tokens, weight.floatPointer, cols: weight.cols, rowIndices: rowIndices,
                            rowCount: rowCount)
        }
        multiplyWidening(out, x, tokens: tokens, weight, rowIndices: rowIndices, rowCount: rowCount)
    }

    /// `multiply` for 16-bit and 8-bit weights, widened a panel of rows at a time. With `wide`, the AVX-512
    /// kernel widens each block of four rows into a buffer in L1 itself, so the 16-bit rows stream
    /// with the next block prefetched as fp32 rows do (the panels cost 15% of an f16 pp512).
    static func multiplyWidening(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                                 _ weight: WeightMatrix, rowIndices: UnsafePointer<Int32>?, rowCount: Int,
                                 wide: Bool = widensInKernel) {
        let cols = weight.cols
        if wide && weight.dtype != .q8 {
            parallelChunks(rowCount, granularity: 4, minimumPerThread: 16) { rows in
                withAlignedFloats(4 * cols) { buffer in
                    chalf_half_dot_rows(out, rowCount, x, tokens, weight.halfPointer, cols, rowIndices, rows.lowerBound,
                                        rows.upperBound, weight.isBF16, buffer)
                }
            }
            return
        }
        parallelChunks(rowCount, granularity: panelRows, minimumPerThread: 16) { rows in
            // Every panel is multiplied with all tokens, so long inputs go a chunk of tokens at a
            // time (about 512 KB of them, at least 64 tokens) to keep those in cache.
            let chunk = max(64, 512 * 1024 / (cols * 4))
            withUnsafeTemporaryAllocation(of: Float.self, capacity: panelRows * cols) { panel in
                for first in stride(from: 0, to: tokens, by: chunk) {
                    let count = min(chunk, tokens - first)
                    var start = rows.lowerBound
                    while start < rows.upperBound {
                        let n = min(panelRows, rows.upperBound - start)
                        for j in 0..<n {
                            let r = rowIndices.map { Int($0[start + j]) } ?? start + j
                            weight.widenRows(r..<r + 1, into: panel.baseAddress! + j * cols)
                        }
                        dotBlock(out + first * rowCount + start, x + first * cols, tokens: count, panel.baseAddress!,
                                 cols: cols, rowIndices: nil, rows: 0..<n, outStride: rowCount)
                        start += n
                    }
                }
            }
        }
    }

    /// out[t, :] (+)= Σ_k x[t, k] · Wt[row_k, :] over k in 0..<rowCount, row_k = `rowIndices[k]` or k.
    /// Wt holds one row per input unit; x: (tokens, rowCount); out: (tokens, Wt.cols).
    public static func multiplyTransposed(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                                          _ weightT: WeightMatrix, rowIndices: UnsafePointer<Int32>?, rowCount: Int,
                                          accumulate: Bool) {
        if weightT.dtype == .bf16dot {
            return BF16Products.multiplyTransposed(out, x, tokens: tokens, weightT, rowIndices: rowIndices,
                                                   rowCount: rowCount, accumulate: accumulate)
        }
        guard weightT.dtype != .f32 else {
            return multiplyTransposed(out, x, tokens: tokens, weightT.floatPointer, cols: weightT.cols,
                                      rowIndices: rowIndices, rowCount: rowCount, accumulate: accumulate)
        }
        multiplyTransposedWidening(out, x, tokens: tokens, weightT, rowIndices: rowIndices, rowCount: rowCount,
                                   accumulate: accumulate)
    }

    /// `multiplyTransposed` for 16-bit and 8-bit weights, widened a panel of rows at a time. With `wide`, the
    /// AVX-512 kernel widens a strip of 32 columns of the rows once for all tokens and prefetches
    /// the next strip, instead of 32 rows once per chunk of tokens.
    static func multiplyTransposedWidening(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                                           _ weightT: WeightMatrix, rowIndices: UnsafePointer<Int32>?, rowCount: Int,
                                           accumulate: Bool, wide: Bool = widensInKernel) {
        let cols = weightT.cols
        let isBF16 = weightT.isBF16
        if wide && weightT.dtype != .q8 {
            parallelChunks(cols, granularity: 32, minimumPerThread: 64) { columns in
                withAlignedFloats(Int(CHALF_STRIP_ROWS) * 32) { buffer in
                    chalf_half_sum_rows(out + columns.lowerBound, cols, x, rowCount, tokens,
                                        weightT.halfPointer + columns.lowerBound, cols, rowIndices, rowCount,
                                        columns.count, accumulate ? 1 : 0, isBF16, buffer)
                }
            }
            return
        }
        parallelChunks(cols, granularity: 16, minimumPerThread: 64) { columns in
            let width = columns.count
            // Every panel adds into the outputs of all tokens, so long inputs go a chunk of tokens
            // at a time (about 256 KB of outputs, at least 64 tokens) to keep those in cache.
            let chunk = max(64, 256 * 1024 / (width * 4))
            withUnsafeTemporaryAllocation(of: Float.self, capacity: panelRows * width) { panel in
                if rowCount == 0 && !accumulate {
                    for t in 0..<tokens { (out + t * cols + columns.lowerBound).update(repeating: 0, count: width) }
                }
                for first in stride(from: 0, to: tokens, by: chunk) {
                    let count = min(chunk, tokens - first)
                    var start = 0
                    while start < rowCount {
                        let n = min(panelRows, rowCount - start)
                        for k in 0..<n {
                            let r = rowIndices.map { Int($0[start + k]) } ?? start + k
                            weightT.widen(row: r, columns: columns, into: panel.baseAddress! + k * width)
                        }
                        sumRows(out + first * cols + columns.lowerBound, outStride: cols,
                                x + first * rowCount + start, xStride: rowCount, tokens: count,
                                panel.baseAddress!, wStride: width, rowIndices: nil, rowCount: n, width: width,
                                accumulate: accumulate || start > 0)
                        start += n
                    }
                }
            }
        }
    }

    /// `multiply` for a raw fp32 matrix `[*, cols]`.
    static func multiply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                         _ w: UnsafePointer<Float>, cols: Int, rowIndices: UnsafePointer<Int32>?, rowCount: Int,
                         wide: Bool = usesAVX512) {
        // Whole row blocks of the kernel per thread part (two rows, four in 512-bit registers).
        parallelChunks(rowCount, granularity: wide ? 4 : 2, minimumPerThread: 16) { rows in
            dotBlock(out, x, tokens: tokens, w, cols: cols, rowIndices: rowIndices, rows: rows, outStride: rowCount,
                     wide: wide)
        }
    }

    /// `multiplyTransposed` for a raw fp32 matrix `[*, cols]`. With `packed` (AVX-512 only), each
    /// strip of columns is copied into an aligned buffer first (`packsF32Strips`).
    static func multiplyTransposed(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                                   _ wt: UnsafePointer<Float>, cols: Int, rowIndices: UnsafePointer<Int32>?,
                                   rowCount: Int, accumulate: Bool, wide: Bool = usesAVX512,
                                   packed: Bool = packsF32Strips) {
        if wide && packed {
            parallelChunks(cols, granularity: 32, minimumPerThread: 64) { columns in
                withAlignedFloats(Int(CHALF_STRIP_ROWS) * 32) { buffer in
                    chalf_f32_sum_rows_packed(out + columns.lowerBound, cols, x, rowCount, tokens, wt + columns.lowerBound,
                                              cols, rowIndices, rowCount, columns.count, accumulate ? 1 : 0, buffer)
                }
            }
            return
        }
        parallelChunks(cols, granularity: wide ? 32 : 16, minimumPerThread: 64) { columns in
            sumRows(out + columns.lowerBound, outStride: cols, x, xStride: rowCount, tokens: tokens,
                    wt + columns.lowerBound, wStride: cols, rowIndices: rowIndices, rowCount: rowCount,
                    width: columns.count, accumulate: accumulate, wide: wide)
        }
    }

    /// Two weight rows against four tokens at a time: eight accumulators, enough independent
    /// FMAs to hide their latency, and 2 + 4 loads per eight FMAs. With `wide`, four rows × four
    /// tokens in 512-bit registers (chalf_f32_dot_rows).
    @inline(__always)
    static func dotBlock(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, tokens: Int,
                         _ w: UnsafePointer<Float>, cols: Int, rowIndices: UnsafePointer<Int32>?,
                         rows: Range<Int>, outStride: Int, wide: Bool = usesAVX512) {
        if wide {
            chalf_f32_dot_rows(out, outStride, x, tokens, w, cols, rowIndices, rows.lowerBound, rows.upperBound)
            return
        }
        let vecEnd = cols & ~7
        @inline(__always) func row(_ j: Int) -> UnsafePointer<Float> { w + (rowIndices.map { Int($0[j]) } ?? j) * cols }
        var j = rows.lowerBound
        while j + 2 <= rows.upperBound {
            let w0 = row(j), w1 = row(j + 1)
            // The next two rows are prefetched while these are used, a share of their lines per
            // block of tokens (rows of a few cache lines are too short for the hardware prefetcher,
            // and one burst would arrive too late or all at once).
            let next = j + 4 <= rows.upperBound ? j + 2 : j
            let n0 = row(next), n1 = row(next + 1)
            let blocks = max(1, tokens / 4)
            var t = 0
            while t + 4 <= tokens {
                let b = t / 4
                var line = cols * b / blocks & ~15
                let lineEnd = b == blocks - 1 ? cols : cols * (b + 1) / blocks & ~15
                while line < lineEnd {
                    chalf_prefetch(n0 + line); chalf_prefetch(n1 + line)
                    line += 16
                }
                let x0 = x + t * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols
                var a00 = V(), a01 = V(), a02 = V(), a03 = V()
                var a10 = V(), a11 = V(), a12 = V(), a13 = V()
                @inline(__always) func step(_ i: Int) {
                    let u = load(w0 + i), v = load(w1 + i)
                    let p0 = load(x0 + i), p1 = load(x1 + i), p2 = load(x2 + i), p3 = load(x3 + i)
                    a00.addProduct(u, p0); a01.addProduct(u, p1); a02.addProduct(u, p2); a03.addProduct(u, p3)
                    a10.addProduct(v, p0); a11.addProduct(v, p1); a12.addProduct(v, p2); a13.addProduct(v, p3)
                }
                var i = 0
                while i < vecEnd {
                    step(i)
                    i += 8
                }
                var s00 = a00.sum(), s01 = a01.sum(), s02 = a02.sum(), s03 = a03.sum()
                var s10 = a10.sum(), s11 = a11.sum(), s12 = a12.sum(), s13 = a13.sum()
                while i < cols {
                    s00 += w0[i] * x0[i]; s01 += w0[i] * x1[i]; s02 += w0[i] * x2[i]; s03 += w0[i] * x3[i]
                    s10 += w1[i] * x0[i]; s11 += w1[i] * x1[i]; s12 += w1[i] * x2[i]; s13 += w1[i] * x3[i]
                    i += 1
                }
                let o = out + t * outStride + j
                o[0] = s00; o[1] = s10
                o[outStride] = s01; o[outStride + 1] = s11
                o[2 * outStride] = s02; o[2 * outStride + 1] = s12
                o[3 * outStride] = s03; o[3 * outStride + 1] = s13
                t += 4
            }
            while t < tokens {
                let xt = x + t * cols
                out[t * outStride + j] = GEMV.dot(w0, xt, cols)
                out[t * outStride + j + 1] = GEMV.dot(w1, xt, cols)
                t += 1
            }
            j += 2
        }
        if j < rows.upperBound {
            let w0 = row(j)
            for t in 0..<tokens { out[t * outStride + j] = GEMV.dot(w0, x + t * cols, cols) }
        }
    }

    /// out[t, c] (+)= Σ_k x[t, k] · W[row_k, c] for c in 0..<width: blocks of sixteen columns
    /// through the register kernel, which reads W's rows in place; the last few columns (none
    /// for the usual model widths) one by one, since the kernel reads a whole block of a row.
    /// Strides: out's and x's rows (one x value per listed row, so usually rowCount) and W's rows.
    static func sumRows(_ out: UnsafeMutablePointer<Float>, outStride: Int, _ x: UnsafePointer<Float>, xStride: Int,
                        tokens: Int, _ w: UnsafePointer<Float>, wStride: Int, rowIndices: UnsafePointer<Int32>?,
                        rowCount: Int, width: Int, accumulate: Bool, wide: Bool = usesAVX512) {
        if wide {
            chalf_f32_sum_rows(out, outStride, x, xStride, tokens, w, wStride, rowIndices, rowCount, width,
                               accumulate ? 1 : 0)
            return
        }
        let blocks = width / 16 * 16
        var c = 0
        while c < blocks {
            chalf_sum_rows16(out + c, outStride, x, xStride, tokens, w + c, wStride, rowIndices, rowCount, accumulate ? 1 : 0)
            c += 16
        }
        guard blocks < width else { return }
        for t in 0..<tokens {
            let o = out + t * outStride, xt = x + t * xStride
            for col in blocks..<width {
                var s: Float = accumulate ? o[col] : 0
                for k in 0..<rowCount { s += xt[k] * w[(rowIndices.map { Int($0[k]) } ?? k) * wStride + col] }
                o[col] = s
            }
        }
    }

    /// A temporary buffer of `count` floats on a cache line's boundary, for the kernels' widened rows.
    @inline(__always)
    static func withAlignedFloats(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) {
        withUnsafeTemporaryAllocation(byteCount: count * 4, alignment: 64) { raw in
            body(raw.baseAddress!.bindMemory(to: Float.self, capacity: count))
        }
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }

    @inline(__always)
    static func load(_ p: UnsafeMutablePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
}
