import CHalf

/// Matrix–vector products for decode (one token). Consecutive rows are read one at a time as a
/// single stream with the lines ahead prefetched; gathered rows (sparse execution) four at a time
/// with the next four prefetched, since their addresses cannot be streamed (docs/results.md).
public enum GEMV {
    public typealias V = SIMD16<Float>

    /// y[k] = dot(W[row_k, :], x) for k in `rows` (a sub-range, so threads can share the work),
    /// where row_k is `rowIndices[k]` (a gathered subset) or k itself.
    @inline(__always)
    public static func rowsDot(_ y: UnsafeMutablePointer<Float>, _ w: UnsafePointer<Float>,
                               _ x: UnsafePointer<Float>, cols: Int, rows: Range<Int>,
                               rowIndices: UnsafePointer<Int32>? = nil) {
        if rowIndices == nil {
            contiguousRowsDot(y, w, x, cols: cols, rows: rows)
            return
        }
        let vecEnd = cols & ~15
        @inline(__always) func row(_ k: Int) -> UnsafePointer<Float> { w + (rowIndices.map { Int($0[k]) } ?? k) * cols }
        var r = rows.lowerBound
        while r + 4 <= rows.upperBound {
            let w0 = row(r), w1 = row(r + 1), w2 = row(r + 2), w3 = row(r + 3)
            // The next four rows are prefetched a line at a time while these are summed (rows of a
            // few lines each are too short for the hardware prefetcher; see CHalfKernels.h).
            let next = r + 8 <= rows.upperBound ? r + 4 : r
            let p0 = row(next), p1 = row(next + 1), p2 = row(next + 2), p3 = row(next + 3)
            var a0 = V(), a1 = V(), a2 = V(), a3 = V()
            var i = 0
            while i < vecEnd {
                chalf_prefetch(p0 + i); chalf_prefetch(p1 + i); chalf_prefetch(p2 + i); chalf_prefetch(p3 + i)
                let xv = load(x + i)
                a0.addProduct(load(w0 + i), xv)
                a1.addProduct(load(w1 + i), xv)
                a2.addProduct(load(w2 + i), xv)
                a3.addProduct(load(w3 + i), xv)
                i += 16
            }
            var s0 = a0.sum(), s1 = a1.sum(), s2 = a2.sum(), s3 = a3.sum()
            while i < cols {
                s0 += w0[i] * x[i]; s1 += w1[i] * x[i]; s2 += w2[i] * x[i]; s3 += w3[i] * x[i]
                i += 1
            }
            y[r] = s0; y[r + 1] = s1; y[r + 2] = s2; y[r + 3] = s3
            r += 4
        }
        while r < rows.upperBound {
            y[r] = dot(row(r), x, cols)
            r += 1
        }
    }

    /// `rowsDot` over consecutive rows: the rows are one stream of memory, read a row at a time
    /// with the lines 4 KB ahead prefetched (past a row's end they are the next rows'). On a Zen 4
    /// core this read 30–34 GB/s where four rows at a time with the next four prefetched (the
    /// gathered case above, which cannot look ahead in memory) read 24–26.
    @inline(__always)
    static func contiguousRowsDot(_ y: UnsafeMutablePointer<Float>, _ w: UnsafePointer<Float>,
                                  _ x: UnsafePointer<Float>, cols: Int, rows: Range<Int>) {
        let ahead = 1024
        let blockEnd = cols & ~63
        for r in rows {
            let w0 = w + r * cols
            var a0 = V(), a1 = V(), a2 = V(), a3 = V()
            var i = 0
            while i < blockEnd {
                chalf_prefetch(w0 + i + ahead); chalf_prefetch(w0 + i + ahead + 16)
                chalf_prefetch(w0 + i + ahead + 32); chalf_prefetch(w0 + i + ahead + 48)
                a0.addProduct(load(w0 + i), load(x + i))
                a1.addProduct(load(w0 + i + 16), load(x + i + 16))
                a2.addProduct(load(w0 + i + 32), load(x + i + 32))
                a3.addProduct(load(w0 + i + 48), load(x + i + 48))
                i += 64
            }
            while i + 16 <= cols {
                a0.addProduct(load(w0 + i), load(x + i))
                i += 16
            }
            var sum = ((a0 + a1) + (a2 + a3)).sum()
            while i < cols {
                sum += w0[i] * x[i]
                i += 1
            }
            y[r] = sum
        }
    }

    /// y = W x for a `[rows, cols]` matrix, spread over the threads.
    public static func multiply(_ y: UnsafeMutablePointer<Float>, _ w: UnsafePointer<Float>,
                                _ x: UnsafePointer<Float>, rows: Int, cols: Int) {
        parallelChunks(rows, granularity: 4, minimumPerThread: 64) { range in
            rowsDot(y, w, x, cols: cols, rows: range)
        }
    }

    /// y (+)= Σ_r x[r] · Wt[r, :] for a transposed `[rows, cols]` matrix (rows are inputs):
    /// the down projection and attention output stored one row per neuron / head dimension.
    /// The rows are cut into `transposedChunks(rows:cols:)` blocks, a number that depends on the shape
    /// only, and each block is read as one stream into its own partial sum (`streamedAxpy`); the
    /// partials are then added in block order, so the result is the same on any thread count.
    /// Splitting the columns instead leaves every thread reading pieces of rows, which on a Zen 4
    /// core read 26–30 GB/s where one stream reads 31–35 (docs/results.md).
    public static func multiplyTransposed(_ y: UnsafeMutablePointer<Float>, _ wt: UnsafePointer<Float>,
                                          _ x: UnsafePointer<Float>, rows: Int, cols: Int,
                                          accumulate: Bool = false) {
        multiplyTransposedInBlocks(y, rows: rows, cols: cols, accumulate: accumulate) { partial, block in
            streamedAxpy(partial, wt + block.lowerBound * cols, x + block.lowerBound, rowCount: block.count, cols: cols)
        }
    }

    /// The blocks and partial sums of `multiplyTransposed` for any weight type: `addBlock(partial,
    /// rows)` adds Σ_r x[r] · Wt[r, :] over the block's rows to `partial` (zeroed), as one stream.
    @inline(__always)
    public static func multiplyTransposedInBlocks(_ y: UnsafeMutablePointer<Float>, rows: Int, cols: Int, accumulate: Bool,
                                                  addBlock: (UnsafeMutablePointer<Float>, Range<Int>) -> Void) {
        let chunks = transposedChunks(rows: rows, cols: cols)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: chunks * cols) { partials in
            let partials = partials.baseAddress!
            parallelChunks(chunks) { range in
                for chunk in range {
                    let partial = partials + chunk * cols
                    partial.update(repeating: 0, count: cols)
                    addBlock(partial, chunkRows(chunk, of: chunks, rows: rows))
                }
            }
            if !accumulate { y.update(repeating: 0, count: cols) }
            for chunk in 0..<chunks { Ops.add(y, partials + chunk * cols, count: cols) }
        }
    }

    /// How many row blocks a transposed `[rows, cols]` product is cut into: a power of two (so
    /// 2, 4, 8… threads share them evenly), at least 64 rows per block, at most 64 blocks and at
    /// most 128 Ki floats of partial sums (512 KB, a bounded temporary on every call).
    /// SmolLM2's 1536 × 576 gets 16, its 576 × 576 gets 8.
    public static func transposedChunks(rows: Int, cols: Int) -> Int {
        let limit = max(1, min(64, (1 << 17) / max(cols, 1)))
        var chunks = 1
        while chunks * 2 <= limit && rows / (chunks * 2) >= 64 { chunks *= 2 }
        return chunks
    }

    /// Rows of block `chunk` of `chunks`, boundaries on multiples of 4 where the rows allow.
    @inline(__always)
    static func chunkRows(_ chunk: Int, of chunks: Int, rows: Int) -> Range<Int> {
        func boundary(_ c: Int) -> Int { c == chunks ? rows : (rows * c / chunks) & ~3 }
        return boundary(chunk)..<boundary(chunk + 1)
    }

    /// y[0..<cols] += Σ_k x[k] · Wt[k, :] over `rowCount` consecutive rows, a row at a time, with
    /// the lines 8 KB ahead prefetched (past a row's end they are the next rows'), so the rows are
    /// read as one stream. y stays in L1, so loading and storing it per row costs little.
    @inline(__always)
    static func streamedAxpy(_ y: UnsafeMutablePointer<Float>, _ wt: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                             rowCount: Int, cols: Int) {
        let ahead = 2048
        let vecEnd = cols & ~15
        for k in 0..<rowCount {
            let w0 = wt + k * cols
            let v = V(repeating: x[k])
            var i = 0
            while i < vecEnd {
                chalf_prefetch(w0 + i + ahead)
                var acc = load(y + i)
                acc.addProduct(load(w0 + i), v)
                store(acc, y + i)
                i += 16
            }
            while i < cols {
                y[i] += w0[i] * x[k]
                i += 1
            }
        }
    }

    /// y[columns] (+)= Σ_k x[k] · Wt[row_k, columns], over `rowIndices` (or 0..<rowCount when nil).
    /// Four rows are combined per pass so the output slice is loaded and stored once per four rows.
    @inline(__always)
    public static func axpyRows(_ y: UnsafeMutablePointer<Float>, _ wt: UnsafePointer<Float>,
                                _ x: UnsafePointer<Float>, rowIndices: UnsafePointer<Int32>?, rowCount: Int,
                                cols: Int, columns: Range<Int>, accumulate: Bool) {
        if !accumulate { (y + columns.lowerBound).update(repeating: 0, count: columns.count) }
        let lo = columns.lowerBound, hi = columns.upperBound
        let vecEnd = lo + ((hi - lo) & ~15)
        @inline(__always) func rowIndex(_ k: Int) -> Int { rowIndices.map { Int($0[k]) } ?? k }
        var k = 0
        while k + 4 <= rowCount {
            let r0 = rowIndex(k), r1 = rowIndex(k + 1), r2 = rowIndex(k + 2), r3 = rowIndex(k + 3)
            let w0 = wt + r0 * cols, w1 = wt + r1 * cols, w2 = wt + r2 * cols, w3 = wt + r3 * cols
            let x0 = x[k], x1 = x[k + 1], x2 = x[k + 2], x3 = x[k + 3]
            let v0 = V(repeating: x0), v1 = V(repeating: x1), v2 = V(repeating: x2), v3 = V(repeating: x3)
            let next = k + 8 <= rowCount ? k + 4 : k
            let p0 = wt + rowIndex(next) * cols, p1 = wt + rowIndex(next + 1) * cols
            let p2 = wt + rowIndex(next + 2) * cols, p3 = wt + rowIndex(next + 3) * cols
            var i = lo
            while i < vecEnd {
                chalf_prefetch(p0 + i); chalf_prefetch(p1 + i); chalf_prefetch(p2 + i); chalf_prefetch(p3 + i)
                var acc = load(y + i)
                acc.addProduct(load(w0 + i), v0)
                acc.addProduct(load(w1 + i), v1)
                acc.addProduct(load(w2 + i), v2)
                acc.addProduct(load(w3 + i), v3)
                store(acc, y + i)
                i += 16
            }
            while i < hi {
                y[i] += w0[i] * x0 + w1[i] * x1 + w2[i] * x2 + w3[i] * x3
                i += 1
            }
            k += 4
        }
        while k < rowCount {
            let w0 = wt + rowIndex(k) * cols
            let x0 = x[k]
            for i in lo..<hi { y[i] += w0[i] * x0 }
            k += 1
        }
    }

    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc0 = V(), acc1 = V()
        var i = 0
        while i + 32 <= n {
            acc0.addProduct(load(a + i), load(b + i))
            acc1.addProduct(load(a + i + 16), load(b + i + 16))
            i += 32
        }
        while i + 16 <= n {
            acc0.addProduct(load(a + i), load(b + i))
            i += 16
        }
        var s = (acc0 + acc1).sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    @inline(__always)
    public static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always)
    public static func load(_ p: UnsafeMutablePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always)
    public static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }
}
