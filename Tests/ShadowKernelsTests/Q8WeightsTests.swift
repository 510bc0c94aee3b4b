import Foundation
import Testing
import CHalf
@testable import ShadowKernels
import ShadowTestSupport

@Suite("8-bit weights")
struct Q8WeightsTests {
    /// The factor `columnScales` holds for each column: its largest magnitude / 16384 (1 for zeros).
    func columnFactors(_ values: [Float], rows: Int, cols: Int) -> [Float] {
        (0..<cols).map { c in
            let m = (0..<rows).map { abs(values[$0 * cols + c]) }.max()!
            return m == 0 ? 1 : m / 16384
        }
    }

    /// Checks that every stored value is within half a quantization step of the original: the
    /// step of a block is max |v / factor| / 127 in fp16 (rounded up where rounding to nearest
    /// went below), times the column's factor; a block whose step is 0 is stored as zeros.
    func expectWithinHalfAStep(_ values: [Float], rows: Int, cols: Int, _ w: WeightMatrix) {
        #expect(w.dtype == .q8)
        let stored = w.toMatrix().array, factors = columnFactors(values, rows: rows, cols: cols)
        for r in 0..<rows {
            for block in 0..<(cols / 32) {
                let columns = block * 32 ..< block * 32 + 32
                let largest = columns.map { abs(values[r * cols + $0] / factors[$0]) }.max()!
                var half = Float16(largest / 127)
                if half > 0 && Float(half) * 127 < largest { half = half.nextUp }
                let step = Float(half)
                for c in columns {
                    let i = r * cols + c
                    let bound = step == 0 ? abs(values[i]) : 0.5 * step * factors[c] * 1.0001 + 1e-6 * abs(values[i])
                    #expect(abs(stored[i] - values[i]) <= bound, "row \(r) column \(c): \(stored[i]) for \(values[i])")
                }
            }
        }
    }

    @Test("each value is kept within half a step of its block's scale, on columns normalised by their largest magnitude")
    func quantizationError() {
        let cols = 96, rows = 5
        // Blocks of very different magnitudes, so a scale shared across blocks would fail.
        let values = randomFloats(rows * cols, seed: 1).enumerated().map { i, v in v * pow(10, Float(i / 32 % 4) - 2) }
        let w = WeightMatrix(Matrix(rows: rows, cols: cols, values: values), dtype: .q8)
        // The column factors count too: every product reads them.
        #expect(w.rowBytes == cols + cols / 16 && w.byteCount == rows * (cols + cols / 16) + cols * 4 && w.factorBytes == cols * 4)
        expectWithinHalfAStep(values, rows: rows, cols: cols, w)
    }

    @Test("a column of large values does not coarsen the other columns of its blocks (a projection's massive output channel)")
    func outlierColumn() {
        let rows = 8, cols = 64
        var values = randomFloats(rows * cols, seed: 2)
        for r in 0..<rows { values[r * cols + 5] *= 1000 }
        let w = WeightMatrix(Matrix(rows: rows, cols: cols, values: values), dtype: .q8)
        expectWithinHalfAStep(values, rows: rows, cols: cols, w)
        let stored = w.toMatrix().array
        // Without the column factors a step would be 1000/127 here; with them it stays near 1/127.
        #expect(zip(stored, values).enumerated().allSatisfy { $0.offset % cols == 5 || abs($0.element.0 - $0.element.1) < 0.01 })
    }

    @Test("zeros stay zeros; blocks far below their columns' largest values keep their precision, subnormal fp16 scales included, down to 2e-10 of it")
    func smallValues() {
        let cols = 64
        let ordinary = (0..<cols).map { Float($0 % 32) - 15.5 }   // column maxima 0.5 … 15.5
        func row(_ relative: Float) -> [Float] { ordinary.enumerated().map { ($0.offset % 7 == 0 ? -1 : 1) * relative * abs($0.element) } }
        // Relative sizes 1e-6 (a normal fp16 scale), 1e-7 and 2e-8 (subnormal scales), 1e-11 (zeros).
        let values = [Float](repeating: 0, count: cols) + ordinary + row(1e-6) + row(1e-7) + row(2e-8) + row(1e-11)
        let rows = values.count / cols
        let w = WeightMatrix(Matrix(rows: rows, cols: cols, values: values), dtype: .q8)
        let stored = w.toMatrix().array
        #expect(stored[0..<cols].allSatisfy { $0 == 0 } && stored[(5 * cols)...].allSatisfy { $0 == 0 })
        expectWithinHalfAStep(values, rows: rows, cols: cols, w)
        // The subnormal rows are not clipped: their largest values keep their size and sign.
        for r in 3...4 {
            for c in 0..<cols where abs(values[r * cols + c]) == values[(r * cols)..<((r + 1) * cols)].map(abs).max()! {
                #expect(abs(stored[r * cols + c] / values[r * cols + c] - 1) < 0.1, "row \(r) column \(c)")
            }
        }
    }

    @Test("a matrix whose rows are not whole blocks of 32 is kept in fp16, one beyond fp16's range in bf16")
    func fallbacks() {
        #expect(WeightMatrix(Matrix(rows: 2, cols: 48, values: randomFloats(96, seed: 2)), dtype: .q8).dtype == .f16)
        #expect(WeightMatrix(Matrix(rows: 1, cols: 32, values: [1e6] + randomFloats(31, seed: 3)), dtype: .q8).dtype == .bf16)
        #expect(WeightMatrix.storedDType(.q8, cols: 576, fitsHalf: true) == .q8)
        #expect(WeightMatrix.storedDType(.q8, cols: 577, fitsHalf: true) == .f16)
        #expect(WeightMatrix.storedDType(.q8, cols: 576, fitsHalf: false) == .bf16)
        #expect(WeightDType.q8.rowBytes(cols: 576) == 612 && WeightDType.f16.rowBytes(cols: 576) == 1152)
    }

    @Test("the dtype a model's matrices were asked for is read from them even when some fell back (q8 to f16 or bf16, f16 to bf16)")
    func askedDType() {
        func matrix(cols: Int, _ dtype: WeightDType, large: Bool = false) -> WeightMatrix {
            WeightMatrix(Matrix(rows: 2, cols: cols, values: randomFloats(2 * cols, seed: 20).map { large ? $0 * 1e6 : $0 }), dtype: dtype)
        }
        #expect(WeightDType.asked(storing: [matrix(cols: 48, .q8), matrix(cols: 64, .q8), matrix(cols: 64, .q8, large: true)]) == .q8)
        #expect(WeightDType.asked(storing: [matrix(cols: 64, .f16, large: true), matrix(cols: 64, .f16)]) == .f16)
        for dtype in WeightDType.allCases { #expect(WeightDType.asked(storing: [matrix(cols: 64, dtype)]) == dtype) }
    }

    @Test("any columns of a row widen to the stored values, across block edges, for every dtype",
          arguments: [WeightDType.f32, .bf16, .f16, .q8])
    func widenColumns(dtype: WeightDType) {
        let rows = 3, cols = 96
        let w = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 4)), dtype: dtype)
        let all = w.toMatrix().array
        for row in 0..<rows {
            for columns in [0..<96, 5..<37, 31..<33, 32..<64, 40..<41, 60..<96, 7..<7] {
                var out = [Float](repeating: .nan, count: columns.count)
                w.widen(row: row, columns: columns, into: &out)
                #expect(out == Array(all[row * cols + columns.lowerBound ..< row * cols + columns.upperBound]), "\(dtype) row \(row) \(columns)")
            }
        }
    }

    @Test("sums of listed 8-bit rows over any column range match a naive loop, inside and across blocks")
    func axpyColumnRanges() {
        let rows = 11, cols = 128
        let w = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 5)), dtype: .q8)
        let stored = w.toMatrix().array
        let kept: [Int32] = [10, 0, 3, 4, 7, 9, 2]
        let x = randomFloats(kept.count, seed: 6)
        for columns in [0..<128, 32..<96, 3..<70, 64..<65, 33..<63] {
            for count in [kept.count, 4, 3] {
                let start = randomFloats(cols, seed: 7)
                var expected = start
                for k in 0..<count { for c in columns { expected[c] += x[k] * stored[Int(kept[k]) * cols + c] } }
                var y = start
                kept.withUnsafeBufferPointer { idx in
                    w.axpyRows(&y, x, rowIndices: idx.baseAddress, rowCount: count, columns: columns, accumulate: true)
                }
                expectClose(y, expected, tolerance: 1e-5, "\(columns), \(count) rows")
            }
        }
    }

    @Test("a packed copy of listed 8-bit rows holds those rows with their scales, and the dense kernels read it as the listed rows")
    func packedRows() {
        let rows = 9, cols = 64
        let w = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 8)), dtype: .q8)
        let kept: [Int32] = [8, 1, 4, 5]
        let packed = kept.withUnsafeBufferPointer { WeightMatrix(gathering: $0, of: w) }
        #expect(packed.dtype == .q8 && packed.rows == 4 && packed.byteCount == 4 * w.rowBytes + cols * 4 && packed.columnScales != nil)
        let all = w.toMatrix().array, copy = packed.toMatrix().array
        for (k, r) in kept.enumerated() { #expect(Array(copy[k * cols ..< (k + 1) * cols]) == Array(all[Int(r) * cols ..< (Int(r) + 1) * cols])) }
        let x = randomFloats(cols, seed: 9)
        var listed = [Float](repeating: 0, count: 4), dense = listed
        kept.withUnsafeBufferPointer { w.multiply(&listed, x, rows: $0.baseAddress!, count: 4) }
        packed.multiply(&dense, x)
        expectClose(dense, listed, tolerance: 1e-6)
    }

    @Test("8-bit rows stored without column factors (rows stored straight) go through the same products")
    func withoutFactors() {
        let rows = 11, cols = 96
        let values = randomFloats(rows * cols, seed: 10)
        let w = WeightMatrix(rows: rows, cols: cols, dtype: .q8)
        values.withUnsafeBufferPointer { w.store(rows: 0..<rows, from: $0.baseAddress!) }
        #expect(w.columnScales == nil)
        expectProducts(w)
    }

    @Test("listed rows past the kernel's groups of four, consecutive rows and any column range give a naive loop's results")
    func productsWithFactors() {
        let rows = 11, cols = 96
        expectProducts(WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 11)), dtype: .q8))
    }

    /// dotRows over listed (9 and 11) and consecutive rows, and axpyRows over listed and
    /// consecutive rows on whole and partial column ranges, against loops over the stored values.
    func expectProducts(_ w: WeightMatrix) {
        let (rows, cols) = (w.rows, w.cols)
        let stored = w.toMatrix().array
        let x = randomFloats(cols, seed: 12)
        for listed in [Array(0..<Int32(rows)).reversed(), [10, 1, 2, 3, 4, 5, 6, 7, 9]] as [[Int32]] {
            var y = [Float](repeating: .nan, count: listed.count)
            listed.withUnsafeBufferPointer { w.multiply(&y, x, rows: $0.baseAddress!, count: listed.count) }
            let expected = listed.map { r in (0..<cols).reduce(Float(0)) { $0 + stored[Int(r) * cols + $1] * x[$1] } }
            expectClose(y, expected, tolerance: 1e-5, "\(listed.count) listed rows")
        }
        var dense = [Float](repeating: .nan, count: rows)
        w.multiply(&dense, x)
        expectClose(dense, (0..<rows).map { r in (0..<cols).reduce(Float(0)) { $0 + stored[r * cols + $1] * x[$1] } }, tolerance: 1e-5)
        let xr = randomFloats(rows, seed: 13)
        for columns in [0..<cols, 7..<90, 32..<64, 40..<41] {
            for accumulate in [false, true] {
                let start = randomFloats(cols, seed: 14)
                var expected = start
                for c in columns { expected[c] = (accumulate ? start[c] : 0) + (0..<rows).reduce(Float(0)) { $0 + xr[$1] * stored[$1 * cols + c] } }
                var y = start
                w.axpyRows(&y, xr, rowIndices: nil, rowCount: rows, columns: columns, accumulate: accumulate)
                expectClose(y, expected, tolerance: 1e-5, "consecutive rows, \(columns), accumulate \(accumulate)")
            }
        }
    }
}
