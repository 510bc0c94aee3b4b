import Foundation
import Testing
@testable import ShadowKernels
import ShadowTestSupport

@Suite("Small-token GEMM and vector exp", .serialized)
struct SmallGEMMTests {
    /// Token counts around the kernels' blocks of four and six, row counts around their pair of
    /// rows, and widths with and without a tail past the last SIMD block or block of 16 columns.
    static let tokenCounts = [1, 3, 4, 5, 6, 7, 8, 13]
    static let shapes: [(rows: Int, cols: Int)] = [(1, 8), (5, 20), (16, 37), (17, 64), (33, 64), (40, 48), (6, 160)]

    @Test("multiply equals x·Wᵀ over all rows and over a listed subset, on 1 and 2 threads", arguments: [1, 2])
    func multiplyMatchesNaive(threads: Int) {
        Threads.set(threads)
        defer { Threads.set(Threads.defaultCount) }
        for (rows, cols) in Self.shapes {
            for tokens in Self.tokenCounts {
                let w = randomFloats(rows * cols, seed: 3), x = randomFloats(tokens * cols, seed: 4)
                let subset: [Int32] = stride(from: rows - 1, through: 0, by: -2).map(Int32.init)
                for kept in [nil, subset] {
                    let listed = kept.map { $0.map(Int.init) } ?? Array(0..<rows)
                    var expected = [Float](repeating: 0, count: tokens * listed.count)
                    for t in 0..<tokens {
                        for (j, r) in listed.enumerated() {
                            expected[t * listed.count + j] = (0..<cols).reduce(Float(0)) { $0 + x[t * cols + $1] * w[r * cols + $1] }
                        }
                    }
                    var out = [Float](repeating: .nan, count: expected.count)
                    w.withUnsafeBufferPointer { wp in
                        func run(_ indices: UnsafePointer<Int32>?) {
                            SmallGEMM.multiply(&out, x, tokens: tokens, wp.baseAddress!, cols: cols, rowIndices: indices,
                                               rowCount: listed.count)
                        }
                        if let kept { kept.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
                    }
                    expectClose(out, expected, tolerance: 1e-5, "\(tokens)×\(cols) · [\(rows), \(cols)]ᵀ kept \(listed.count)")
                }
            }
        }
    }

    @Test("multiplyTransposed sums x·Wt over listed rows, storing or accumulating, on 1 and 2 threads", arguments: [1, 2])
    func multiplyTransposedMatchesNaive(threads: Int) {
        Threads.set(threads)
        defer { Threads.set(Threads.defaultCount) }
        for (rows, cols) in Self.shapes {
            for tokens in Self.tokenCounts {
                let wt = randomFloats(rows * cols, seed: 5)
                let subset: [Int32] = stride(from: 0, to: rows, by: 3).map(Int32.init)
                for kept in [nil, subset] {
                    let listed = kept.map { $0.map(Int.init) } ?? Array(0..<rows)
                    let x = randomFloats(tokens * listed.count, seed: 6)
                    let start = randomFloats(tokens * cols, seed: 7)
                    for accumulate in [false, true] {
                        var expected = accumulate ? start : [Float](repeating: 0, count: tokens * cols)
                        for t in 0..<tokens {
                            for (k, r) in listed.enumerated() {
                                for c in 0..<cols { expected[t * cols + c] += x[t * listed.count + k] * wt[r * cols + c] }
                            }
                        }
                        var out = start
                        wt.withUnsafeBufferPointer { wp in
                            func run(_ indices: UnsafePointer<Int32>?) {
                                SmallGEMM.multiplyTransposed(&out, x, tokens: tokens, wp.baseAddress!, cols: cols,
                                                             rowIndices: indices, rowCount: listed.count, accumulate: accumulate)
                            }
                            if let kept { kept.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
                        }
                        expectClose(out, expected, tolerance: 1e-5,
                                    "\(tokens)×\(listed.count) · [\(rows), \(cols)] accumulate \(accumulate)")
                    }
                }
            }
        }
    }

    @Test("16-bit weights, widened a panel of rows at a time, give the fp32 kernels' result on the widened values",
          arguments: [WeightDType.f16, .bf16])
    func halfWeightsMatchWidened(dtype: WeightDType) {
        // More rows than one panel, so panel boundaries and a partial last panel are crossed.
        let rows = 2 * SmallGEMM.panelRows + 7, cols = 48, tokens = 6
        let half = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 8)), dtype: dtype)
        #expect(half.dtype == dtype)
        let widened = half.toMatrix()
        let subset: [Int32] = stride(from: rows - 1, through: 0, by: -3).map(Int32.init)
        for kept in [nil, subset] {
            let count = kept?.count ?? rows
            func listed(_ body: (UnsafePointer<Int32>?) -> Void) {
                if let kept { kept.withUnsafeBufferPointer { body($0.baseAddress!) } } else { body(nil) }
            }
            let x = randomFloats(tokens * cols, seed: 9)
            var expected = [Float](repeating: 0, count: tokens * count), out = expected
            listed { indices in
                SmallGEMM.multiply(&expected, x, tokens: tokens, widened.pointer, cols: cols, rowIndices: indices, rowCount: count)
                SmallGEMM.multiply(&out, x, tokens: tokens, half, rowIndices: indices, rowCount: count)
            }
            expectClose(out, expected, tolerance: 1e-5, "\(dtype) multiply, kept \(count)")

            let xt = randomFloats(tokens * count, seed: 10), start = randomFloats(tokens * cols, seed: 11)
            for accumulate in [false, true] {
                var expectedT = start, outT = start
                listed { indices in
                    SmallGEMM.multiplyTransposed(&expectedT, xt, tokens: tokens, widened.pointer, cols: cols,
                                                 rowIndices: indices, rowCount: count, accumulate: accumulate)
                    SmallGEMM.multiplyTransposed(&outT, xt, tokens: tokens, half, rowIndices: indices, rowCount: count,
                                                 accumulate: accumulate)
                }
                expectClose(outT, expectedT, tolerance: 1e-5, "\(dtype) multiplyTransposed, kept \(count), accumulate \(accumulate)")
            }
        }
    }

    @Test("the vector exp stays within 2 ulp of expf from −87 to 88, is 0 below and finite above")
    func vectorExpMatchesExpf() {
        var worst: Float = 0
        var x: Float = -87
        while x + 8 * 0.0013 < 88 {
            let lanes = VectorExp.V((0..<8).map { x + Float($0) * 0.0013 })
            let e = VectorExp.exp(lanes)
            for i in 0..<8 {
                let reference = expf(lanes[i])
                worst = max(worst, abs(e[i] - reference) / reference.ulp)
            }
            x += 0.0117
        }
        #expect(worst <= 2, "largest error \(worst) ulp")
        // Below −87 is 0, as a masked softmax entry (−∞) must be; above 88 stays finite.
        let ends = VectorExp.exp(VectorExp.V([-1000, -.infinity, -87.5, 200, 88, 0, 1, -1]))
        #expect(ends[0] == 0 && ends[1] == 0 && ends[2] == 0)
        #expect(ends[3].isFinite && ends[3] > 1e38)
    }

    @Test("logSumExp of a vocabulary-sized row agrees with an fp64 sum of expf")
    func logSumExpMatchesDouble() {
        for n in [1, 7, 8, 49_152, 50_001] {
            let row = randomFloats(n, seed: UInt64(n)).map { $0 * 30 }
            let m = row.max()!
            let reference = Double(m) + log(row.reduce(0.0) { $0 + exp(Double($1 - m)) })
            let value = row.withUnsafeBufferPointer { Ops.logSumExp($0.baseAddress!, n) }
            #expect(abs(value - reference) < 1e-6, "n = \(n): \(value) vs \(reference)")
        }
    }
}
