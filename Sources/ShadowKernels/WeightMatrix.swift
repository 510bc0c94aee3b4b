import CHalf

/// How weights are kept in memory. Decode reads every weight once per token and is bound by
/// memory bandwidth, so 16-bit weights (widened to fp32 in registers) nearly double its speed.
/// `bf16dot` keeps bf16 weights and also rounds each projection's input to bf16, so the products
/// run as bf16 dot products with fp32 sums (`BF16Products`): twice the multiply-adds per
/// instruction where the CPU has AVX512-BF16; elsewhere the same products on `bf16`'s paths.
/// `q8` keeps 8-bit weights with an fp16 scale per block of 32 values of a row (GGUF's Q8_0
/// arithmetic, `CHalfQ8.h`): decode reads 1.06 bytes per weight, and prefills and gradients widen
/// them to fp32 as they do 16-bit weights. A matrix whose rows are not whole blocks is kept in f16.
/// Gradient passes widen the weights and run in fp32, as for `bf16`.
public enum WeightDType: String, Sendable, CaseIterable, Codable {
    case f32, bf16, f16
    case bf16dot = "bf16-dot"
    case q8

    /// The dtype asked for that stored `matrices` as they are: a matrix falls back from q8 to f16
    /// or bf16 and from f16 to bf16 on its own (`WeightMatrix.storedDType`), so the most specific
    /// dtype among them is the one asked for (a model's first projection alone may have fallen back).
    public static func asked(storing matrices: [WeightMatrix]) -> WeightDType {
        let order: [WeightDType] = [.q8, .bf16dot, .f16, .bf16, .f32]
        return order.first { dtype in matrices.contains { $0.dtype == dtype } } ?? .f32
    }

    /// Why every matrix asked for as `self` was kept as `stored` instead (nil when they were not).
    public func fallbackReason(stored: WeightDType) -> String? {
        guard stored != self else { return nil }
        switch (self, stored) {
        case (.q8, .f16): return "no matrix has rows of whole blocks of 32 values"
        case (_, .bf16): return "values beyond fp16's range (±65000)"
        default: return "its matrices fell back"
        }
    }

    /// Bytes of one row of `cols` values as this dtype keeps it (`cols` a multiple of 32 for `q8`).
    public func rowBytes(cols: Int) -> Int {
        switch self {
        case .f32: cols * 4
        case .bf16, .f16, .bf16dot: cols * 2
        case .q8: Int(chalf_q8_row_bytes(cols))
        }
    }
}

/// A row-major `(rows, cols)` weight matrix in fp32, bf16, fp16 or 8-bit blocks, 64-byte aligned.
/// Rows are the unit that sparse execution skips (one output unit, or one neuron of a
/// transposed projection), so every row is contiguous (a `q8` row holds its own scales).
public final class WeightMatrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let dtype: WeightDType
    public let raw: UnsafeMutableRawPointer
    /// `q8` only: a factor per column that the stored values are multiplied by (each column's
    /// largest magnitude / 16384), so the 32 columns of a block are quantized on a common footing.
    /// A projection stored transposed has its output channels as columns, and one channel of large
    /// weights (SmolLM2's down projections write a few massive residual channels) would otherwise
    /// crush the 31 others of its block: up to 5% more NLL on short texts without the factors,
    /// within ±1% with them. Dividing by 16384 keeps a block's fp16 scale (at most 16384 / 127)
    /// clear of fp16's subnormals for blocks down to 5e-7 of their columns' largest values.
    /// Products scale the input (`dotRows`) or the sums (`axpyRows`) once per call.
    public private(set) var columnScales: UnsafeMutablePointer<Float>?

    public var count: Int { rows * cols }
    /// Bytes of one row in memory.
    public var rowBytes: Int { dtype.rowBytes(cols: cols) }
    /// The q8 column factors' bytes, read with every product (0 without them).
    public var factorBytes: Int { columnScales == nil ? 0 : cols * MemoryLayout<Float>.size }
    public var byteCount: Int { rows * rowBytes + factorBytes }

    /// Stores `source` in `dtype` (rounding to nearest even for 16-bit types). A matrix with a
    /// value past ±65000 (a margin below fp16's largest, 65504) is kept in bf16 instead of fp16
    /// or q8 (whose scales are fp16), which has fp32's range; see `storedDType`.
    public convenience init(_ source: Matrix, dtype requested: WeightDType) {
        self.init(rows: source.rows, cols: source.cols, values: source.pointer, dtype: requested)
    }

    /// The same for `rows × cols` values at `values`, row-major.
    public convenience init(rows: Int, cols: Int, values source: UnsafePointer<Float>, dtype requested: WeightDType) {
        let fitsHalf = Ops.allWithin(source, count: rows * cols, magnitude: WeightMatrix.halfLimit)
        self.init(rows: rows, cols: cols, dtype: WeightMatrix.storedDType(requested, cols: cols, fitsHalf: fitsHalf))
        if dtype == .q8 {
            var maxima = [Float](repeating: 0, count: cols)
            Ops.columnMaxMagnitudes(&maxima, source, rows: rows, cols: cols)
            setColumnScales(maxima: maxima)
        }
        store(rows: 0..<rows, from: source)
    }

    /// For `q8`, before any row is stored: each column's largest magnitude over all rows (a column
    /// of zeros gets 1) sets its factor in `columnScales`. Other dtypes ignore it.
    public func setColumnScales(maxima: [Float]) {
        guard dtype == .q8 else { return }
        // -Ounchecked drops preconditions; rows stored under other factors would read wrong.
        guard maxima.count == cols, columnScales == nil, !storedRows else {
            fatalError("column scales: \(maxima.count) for \(cols) columns, set twice or after rows were stored")
        }
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: cols)
        // Each column divided by its factor lies within ±16384, well inside the fp16 block scales'
        // range; multiplying back in the product restores it to within a rounding (far below the
        // 8-bit quantization step).
        for c in 0..<cols { scales[c] = maxima[c] > 0 ? maxima[c] / 16384 : 1 }
        columnScales = scales
    }

    /// Whether `store` has run (column factors must come first).
    private var storedRows = false

    /// The largest magnitude kept in fp16 (a margin below its largest, 65504).
    public static let halfLimit: Float = 65000

    /// The dtype a matrix of `cols` columns asked for as `requested` is kept in: bf16 instead of
    /// fp16 or q8 when a value is beyond `halfLimit` (`fitsHalf` false), and fp16 instead of q8
    /// when its rows are not whole blocks of 32.
    public static func storedDType(_ requested: WeightDType, cols: Int, fitsHalf: Bool) -> WeightDType {
        switch requested {
        case .f16: fitsHalf ? .f16 : .bf16
        case .q8: !fitsHalf ? .bf16 : cols % Int(CHALF_Q8_BLOCK) == 0 ? .q8 : .f16
        case .f32, .bf16, .bf16dot: requested
        }
    }

    /// A `(rows, cols)` matrix in `dtype` exactly, its values undefined until `store` fills every row.
    public init(rows: Int, cols: Int, dtype: WeightDType) {
        guard dtype != .q8 || cols % Int(CHALF_Q8_BLOCK) == 0 else { fatalError("q8 rows are whole blocks of 32, not \(cols)") }
        self.rows = rows
        self.cols = cols
        self.dtype = dtype
        raw = UnsafeMutableRawPointer.allocate(byteCount: max(rows * dtype.rowBytes(cols: cols), 1), alignment: 64)
    }

    /// Stores rows `range` from `range.count × cols` fp32 values (rounding to nearest even for
    /// 16-bit types).
    public func store(rows range: Range<Int>, from values: UnsafePointer<Float>) {
        guard range.lowerBound >= 0 && range.upperBound <= rows else { fatalError("rows \(range) outside a matrix of \(rows) rows") }   // -Ounchecked drops preconditions
        storedRows = true
        let start = range.lowerBound * cols, count = range.count * cols
        switch dtype {
        case .f32:
            (floatPointer + start).update(from: values, count: count)
        case .bf16, .bf16dot, .f16:
            chalf_narrow(halfPointer + start, values, count, isBF16)
        case .q8:
            let (rowBytes, cols, scales) = (rowBytes, cols, columnScales)
            parallelChunks(range.count, minimumPerThread: 64) { chunk in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: cols) { normalized in
                    for r in chunk {
                        var row = values + r * cols
                        if let scales {
                            for c in 0..<cols { normalized[c] = row[c] / scales[c] }
                            row = UnsafePointer(normalized.baseAddress!)
                        }
                        chalf_q8_quantize_row(self.bytePointer + (range.lowerBound + r) * rowBytes, row, cols)
                    }
                }
            }
        }
    }

    /// The listed rows of `source`, in order, in its dtype: a packed copy that the dense kernels
    /// read as one stream (see `Scratch.keptRows`).
    public init(gathering rows: UnsafeBufferPointer<Int32>, of source: WeightMatrix) {
        self.rows = rows.count
        cols = source.cols
        dtype = source.dtype
        let rowBytes = source.rowBytes
        raw = UnsafeMutableRawPointer.allocate(byteCount: max(rows.count * rowBytes, 1), alignment: 64)
        for (k, row) in rows.enumerated() {
            guard row >= 0 && Int(row) < source.rows else { fatalError("row \(row) outside a matrix of \(source.rows) rows") }   // -Ounchecked drops preconditions
            (raw + k * rowBytes).copyMemory(from: source.raw + Int(row) * rowBytes, byteCount: rowBytes)
        }
        if let scales = source.columnScales {
            columnScales = UnsafeMutablePointer<Float>.allocate(capacity: cols)
            columnScales!.initialize(from: scales, count: cols)
        }
    }

    deinit {
        raw.deallocate()
        columnScales?.deallocate()
    }

    public var floatPointer: UnsafeMutablePointer<Float> { raw.assumingMemoryBound(to: Float.self) }
    public var halfPointer: UnsafeMutablePointer<UInt16> { raw.assumingMemoryBound(to: UInt16.self) }
    var bytePointer: UnsafeMutablePointer<UInt8> { raw.assumingMemoryBound(to: UInt8.self) }
    var isBF16: Int32 { dtype == .f16 ? 0 : 1 }

    /// Copies rows `range` as fp32 into `out` (`range.count × cols` values).
    public func widenRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        // Embedding lookups index rows by token id: a stray id must stop here, not read past the
        // table. Loading refuses tokenizers with such ids; this is the last line, and a check that
        // -Ounchecked keeps (it drops preconditions).
        guard range.lowerBound >= 0 && range.upperBound <= rows else {
            fatalError("rows \(range) outside a matrix of \(rows) rows (a token id outside the vocabulary?)")
        }
        let n = range.count * cols
        switch dtype {
        case .f32: out.update(from: floatPointer + range.lowerBound * cols, count: n)
        case .bf16, .bf16dot, .f16: chalf_widen(out, halfPointer + range.lowerBound * cols, n, isBF16)
        case .q8:
            for (k, r) in range.enumerated() { chalf_q8_widen(out + k * cols, bytePointer + r * rowBytes, cols, 0, cols, columnScales) }
        }
    }

    /// Copies columns `columns` of row `row` as fp32 into `out` (`columns.count` values).
    public func widen(row: Int, columns: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .f32: out.update(from: floatPointer + row * cols + columns.lowerBound, count: columns.count)
        case .bf16, .bf16dot, .f16: chalf_widen(out, halfPointer + row * cols + columns.lowerBound, columns.count, isBF16)
        case .q8:
            chalf_q8_widen(out, bytePointer + row * rowBytes, cols, columns.lowerBound, columns.upperBound, columnScales)
        }
    }

    /// The whole matrix in fp32 (tests, conversions).
    public func toMatrix() -> Matrix {
        let m = Matrix(rows: rows, cols: cols)
        widenRows(0..<rows, into: m.pointer)
        return m
    }

    /// y[k] = dot(W[row_k, :], x) for k in `rowRange`, row_k = `rowIndices[k]` or k.
    @inline(__always)
    public func dotRows(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rowRange: Range<Int>,
                        rowIndices: UnsafePointer<Int32>? = nil) {
        switch dtype {
        case .f32: GEMV.rowsDot(y, floatPointer, x, cols: cols, rows: rowRange, rowIndices: rowIndices)
        case .bf16, .bf16dot, .f16:
            chalf_gemv_rows(y, halfPointer, x, cols, rowIndices, rowRange.lowerBound, rowRange.upperBound, isBF16)
        case .q8:
            guard let columnScales else {
                return chalf_q8_gemv_rows(y, bytePointer, x, cols, rowIndices, rowRange.lowerBound, rowRange.upperBound)
            }
            withUnsafeTemporaryAllocation(of: Float.self, capacity: cols) { scaled in
                Ops.multiply(scaled.baseAddress!, x, columnScales, count: cols)
                chalf_q8_gemv_rows(y, bytePointer, scaled.baseAddress!, cols, rowIndices, rowRange.lowerBound, rowRange.upperBound)
            }
        }
    }

    /// y[k] = dot(W[rows[k], :], x): only the listed rows are read (sparse execution).
    public func multiply(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count: Int) {
        parallelChunks(count, granularity: 4, minimumPerThread: 64) { range in
            dotRows(y, x, rowRange: range, rowIndices: rows)
        }
    }

    /// y (+)= Σ_k x[k] · W[rows[k], :]: only the listed rows are read (sparse execution).
    /// 16-bit rows go in blocks of the list, each block's whole rows into a partial sum (the blocks
    /// depend on the count only, so the sums do not depend on the thread count); on a Zen 3 that
    /// decoded 8–10% faster than splitting the output columns over the threads, which fp32 keeps
    /// (docs/results.md, "The Zen 3").
    public func multiplyTransposed(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: UnsafePointer<Int32>,
                                   count: Int, accumulate: Bool) {
        if dtype == .f32 {
            parallelChunks(cols, granularity: 64, minimumPerThread: 128) { range in
                axpyRows(y, x, rowIndices: rows, rowCount: count, columns: range, accumulate: accumulate)
            }
            return
        }
        GEMV.multiplyTransposedInBlocks(y, rows: count, cols: cols, accumulate: accumulate) { partial, block in
            axpyRows(partial, x + block.lowerBound, rowIndices: rows + block.lowerBound, rowCount: block.count,
                     columns: 0..<cols, accumulate: true)
        }
    }

    /// Copies the listed rows, widened to fp32, into `out` (`count × cols`), for a prefill GEMM
    /// over the kept units only.
    public func gatherRows(_ rows: UnsafePointer<Int32>, count: Int, into out: UnsafeMutablePointer<Float>) {
        parallelChunks(count, minimumPerThread: 16) { range in
            for k in range {
                let r = Int(rows[k])
                widenRows(r..<r + 1, into: out + k * cols)
            }
        }
    }

    /// y[columns] (+)= Σ_k x[k] · W[row_k, columns] over the listed rows (or the first `rowCount`).
    @inline(__always)
    public func axpyRows(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rowIndices: UnsafePointer<Int32>?,
                         rowCount: Int, columns: Range<Int>, accumulate: Bool) {
        switch dtype {
        case .f32:
            GEMV.axpyRows(y, floatPointer, x, rowIndices: rowIndices, rowCount: rowCount, cols: cols,
                          columns: columns, accumulate: accumulate)
        case .bf16, .bf16dot, .f16:
            if !accumulate { (y + columns.lowerBound).update(repeating: 0, count: columns.count) }
            chalf_axpy_rows(y, halfPointer, x, rowIndices, rowCount, cols, columns.lowerBound, columns.upperBound, isBF16)
        case .q8:
            guard let columnScales else {
                if !accumulate { (y + columns.lowerBound).update(repeating: 0, count: columns.count) }
                return chalf_q8_axpy_rows(y, bytePointer, x, rowIndices, rowCount, cols, columns.lowerBound, columns.upperBound)
            }
            withUnsafeTemporaryAllocation(of: Float.self, capacity: columns.count) { sums in
                let sums = sums.baseAddress!
                sums.update(repeating: 0, count: columns.count)
                // The kernel indexes by column; `sums` holds columns.lowerBound onwards.
                chalf_q8_axpy_rows(sums - columns.lowerBound, bytePointer, x, rowIndices, rowCount, cols,
                                   columns.lowerBound, columns.upperBound)
                let y = y + columns.lowerBound, scales = columnScales + columns.lowerBound
                if accumulate {
                    for c in 0..<columns.count { y[c] += sums[c] * scales[c] }
                } else {
                    Ops.multiply(y, sums, scales, count: columns.count)
                }
            }
        }
    }

    /// y = W x, rows spread over the threads.
    public func multiply(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>) {
        parallelChunks(rows, granularity: 4, minimumPerThread: 64) { range in dotRows(y, x, rowRange: range) }
    }

    /// y (+)= Wᵀ x for a transposed matrix (rows are inputs): blocks of rows read as streams into
    /// partial sums (`GEMV.multiplyTransposed`), not the output columns split over the threads,
    /// which leaves each thread reading pieces of rows (docs/results.md, "The Zen 3").
    public func multiplyTransposed(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, accumulate: Bool) {
        switch dtype {
        case .f32: GEMV.multiplyTransposed(y, floatPointer, x, rows: rows, cols: cols, accumulate: accumulate)
        case .bf16, .bf16dot, .f16:
            let (w, cols, isBF16) = (halfPointer, cols, isBF16)
            GEMV.multiplyTransposedInBlocks(y, rows: rows, cols: cols, accumulate: accumulate) { partial, block in
                chalf_axpy_stream(partial, w + block.lowerBound * cols, x + block.lowerBound, block.count, cols, isBF16)
            }
        case .q8:
            let (w, cols, rowBytes, scales) = (bytePointer, cols, rowBytes, columnScales)
            GEMV.multiplyTransposedInBlocks(y, rows: rows, cols: cols, accumulate: accumulate) { partial, block in
                chalf_q8_axpy_rows(partial, w + block.lowerBound * rowBytes, x + block.lowerBound, nil, block.count, cols, 0, cols)
                if let scales { Ops.multiply(partial, scales, count: cols) }
            }
        }
    }

    /// At most this many values (64 MB) of a 16-bit matrix are widened to fp32 at once, so a
    /// large one (a Gemma 3 4B head is 2.7 GB in fp32) never needs its whole fp32 copy.
    public static let widenedSliceValues = 16 << 20

    /// fp32 views for GEMM, a slice of rows at a time: `body(rows, pointer to those rows)`. fp32
    /// matrices are one slice, the matrix itself; 16-bit ones are widened `sliceRows` rows at a
    /// time (by default as many as fit in `widenedSliceValues`) into the buffer `scratch(count)`
    /// returns. Widening costs one pass over the weights, which a prefill of many tokens amortises.
    public func forEachFloatSlice(sliceRows: Int? = nil, scratch: (Int) -> UnsafeMutablePointer<Float>,
                                  _ body: (Range<Int>, UnsafePointer<Float>) -> Void) {
        guard rows > 0 else { return }
        if dtype == .f32 { return body(0..<rows, UnsafePointer(floatPointer)) }
        let slice = min(rows, max(1, sliceRows ?? Self.widenedSliceValues / max(cols, 1)))
        let base = scratch(slice * cols)
        for first in stride(from: 0, to: rows, by: slice) {
            let n = min(slice, rows - first)
            parallelChunks(n, minimumPerThread: 16) { range in
                widenRows(first + range.lowerBound ..< first + range.upperBound, into: base + range.lowerBound * cols)
            }
            body(first ..< first + n, UnsafePointer(base))
        }
    }
}
