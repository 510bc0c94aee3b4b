import Foundation
import Testing
import CHalf
@testable import ShadowKernels
import ShadowTestSupport

@Suite("8-bit weights")
struct Q8WeightsTests {
    /// Each column's largest magnitude (1 for zeros), the factor `columnScales` holds.
    func columnMaxima(_ values: [Float], rows: Int, cols: Int) -> [Float] {
        (0..<cols).map { c in
            let m = (0..<rows).map { abs(values[$0 * cols + c]) }.max()!
            return m == 0 ? 1 : m
        }
    }

    /// Checks that every stored value is within half a quantization step of the original: the
    /// step of a block is fp16(max |v / column maximum| / 127), times the column's maximum.
    func expectWithinHalfAStep(_ values: [Float], rows: Int, cols: Int, _ w: WeightMatrix) {
        #expect(w.dtype == .q8)
        let stored = w.toMatrix().array, maxima = columnMaxima(values, rows: rows, cols: cols)
        for r in 0..<rows {
            for block in 0..<(cols / 32) {
                let columns = block * 32 ..< block * 32 + 32
                let step = Float(Float16(columns.map { abs(values[r * cols + $0] / maxima[$0]) }.max()! / 127))
                for c in columns {
                    let i = r * cols + c
                    let bound = step == 0 ? abs(values[i]) : 0.5 * step * maxima[c] * 1.0001 + 1e-7 * abs(values[i])
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
        #expect(w.rowBytes == cols + cols / 16 && w.byteCount == rows * (cols + cols / 16))
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

    @Test("zeros stay zeros, and values under 4e-6 of their column's largest become zeros rather than noise")
    func tinyValues() {
        let ordinary = (0..<32).map { Float($0) - 16 }
        let values = [Float](repeating: 0, count: 32) + [Float](repeating: 1e-6, count: 32) + ordinary + ordinary.map { $0 + 0.5 }
        let w = WeightMatrix(Matrix(rows: 2, cols: 64, values: values), dtype: .q8)
        let stored = w.toMatrix().array
        #expect(stored[0..<64].allSatisfy { $0 == 0 })
        expectWithinHalfAStep(values, rows: 2, cols: 64, w)
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
        #expect(packed.dtype == .q8 && packed.rows == 4 && packed.byteCount == 4 * w.rowBytes && packed.columnScales != nil)
        let all = w.toMatrix().array, copy = packed.toMatrix().array
        for (k, r) in kept.enumerated() { #expect(Array(copy[k * cols ..< (k + 1) * cols]) == Array(all[Int(r) * cols ..< (Int(r) + 1) * cols])) }
        let x = randomFloats(cols, seed: 9)
        var listed = [Float](repeating: 0, count: 4), dense = listed
        kept.withUnsafeBufferPointer { w.multiply(&listed, x, rows: $0.baseAddress!, count: 4) }
        packed.multiply(&dense, x)
        expectClose(dense, listed, tolerance: 1e-6)
    }
}
