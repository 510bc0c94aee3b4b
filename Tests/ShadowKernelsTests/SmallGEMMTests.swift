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

    /// The AVX2 kernels, and the AVX-512 ones where this CPU has them.
    static let kernels: [Bool] = SmallGEMM.avx512Available ? [false, true] : [false]

    @Test("multiply equals x·Wᵀ over all rows and over a listed subset, on 1 and 2 threads, with each kernel",
          arguments: [1, 2], kernels)
    func multiplyMatchesNaive(threads: Int, wide: Bool) {
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
                                               rowCount: listed.count, wide: wide)
                        }
                        if let kept { kept.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
                    }
                    expectClose(out, expected, tolerance: 1e-5, "\(tokens)×\(cols) · [\(rows), \(cols)]ᵀ kept \(listed.count)")
                }
            }
        }
    }

    @Test("multiplyTransposed sums x·Wt over listed rows, storing or accumulating, on 1 and 2 threads, with each kernel",
          arguments: [1, 2], kernels)
    func multiplyTransposedMatchesNaive(threads: Int, wide: Bool) {
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
                                                             rowIndices: indices, rowCount: listed.count, accumulate: accumulate,
                                                             wide: wide)
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

    @Test("16-bit and 8-bit weights, widened a panel of rows at a time, give the fp32 kernels' result on the widened values",
          arguments: [WeightDType.f16, .bf16, .q8])
    func halfWeightsMatchWidened(dtype: WeightDType) {
        // More rows than one panel, so panel boundaries and a partial last panel are crossed.
        let rows = 2 * SmallGEMM.panelRows + 7, cols = 96, tokens = 6
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

    @Test("16-bit weights widened in the kernels or in panels equal a plain reference on odd shapes and row lists, and the AVX-512 kernels give the fp32 kernels' bits",
          arguments: [WeightDType.f16, .bf16], kernels)
    func halfKernelsMatchReference(dtype: WeightDType, wide: Bool) {
        // Odd widths around the kernels' 16- and 32-column vectors, 1,100 rows to cross a strip of
        // the sums of rows (CHALF_STRIP_ROWS), token counts around their blocks of four and six.
        let shapes: [(rows: Int, cols: Int)] = [(1, 8), (7, 33), (18, 95), (37, 150), (1_100, 40)]
        for threads in [1, 2] {
            Threads.set(threads)
            defer { Threads.set(Threads.defaultCount) }
            for (rows, cols) in shapes {
                let half = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 21)), dtype: dtype)
                let widened = half.toMatrix()
                let w = Array(UnsafeBufferPointer(start: widened.pointer, count: rows * cols))
                for tokens in [1, 3, 6, 7, 13] {
                    for kept in [nil, stride(from: rows - 1, through: 0, by: -3).map(Int32.init), []] as [[Int32]?] {
                        let listed = kept.map { $0.map(Int.init) } ?? Array(0..<rows)
                        func run(_ body: (UnsafePointer<Int32>?) -> Void) {
                            if let kept { kept.withUnsafeBufferPointer { body($0.baseAddress) } } else { body(nil) }
                        }
                        let label = "\(dtype) \(wide ? "AVX-512" : "panels") \(threads) threads, \(tokens)×[\(rows), \(cols)] kept \(listed.count)"
                        let x = randomFloats(tokens * cols, seed: 22)
                        var expected = [Float](repeating: 0, count: tokens * listed.count)
                        for t in 0..<tokens {
                            for (j, r) in listed.enumerated() {
                                var sum: Double = 0
                                for c in 0..<cols { sum += Double(x[t * cols + c]) * Double(w[r * cols + c]) }
                                expected[t * listed.count + j] = Float(sum)
                            }
                        }
                        var out = [Float](repeating: .nan, count: expected.count), bits = out
                        run { indices in
                            SmallGEMM.multiplyWidening(&out, x, tokens: tokens, half, rowIndices: indices,
                                                       rowCount: listed.count, wide: wide)
                            if wide {
                                SmallGEMM.multiply(&bits, x, tokens: tokens, widened.pointer, cols: cols, rowIndices: indices,
                                                   rowCount: listed.count, wide: true)
                            }
                        }
                        expectClose(out, expected, tolerance: 1e-4, label)
                        if wide { #expect(out == bits, "\(label): bits of chalf_f32_dot_rows") }

                        let xt = randomFloats(tokens * listed.count, seed: 23), start = randomFloats(tokens * cols, seed: 24)
                        for accumulate in [false, true] {
                            var expectedT = (0..<tokens * cols).map { accumulate ? Double(start[$0]) : 0 }
                            for t in 0..<tokens {
                                for (k, r) in listed.enumerated() {
                                    for c in 0..<cols { expectedT[t * cols + c] += Double(xt[t * listed.count + k]) * Double(w[r * cols + c]) }
                                }
                            }
                            var outT = start, bitsT = start
                            run { indices in
                                SmallGEMM.multiplyTransposedWidening(&outT, xt, tokens: tokens, half, rowIndices: indices,
                                                                     rowCount: listed.count, accumulate: accumulate, wide: wide)
                                if wide {
                                    SmallGEMM.multiplyTransposed(&bitsT, xt, tokens: tokens, widened.pointer, cols: cols,
                                                                 rowIndices: indices, rowCount: listed.count,
                                                                 accumulate: accumulate, wide: true, packed: false)
                                }
                            }
                            expectClose(outT, expectedT.map { Float($0) }, tolerance: 1e-4, "\(label) transposed, accumulate \(accumulate)")
                            if wide { #expect(outT == bitsT, "\(label) transposed, accumulate \(accumulate): bits of chalf_f32_sum_rows") }
                        }
                    }
                }
            }
        }
    }

    // Skipped, not failed, on a CPU without AVX-512 (CI's machines have been Zen 3s too).
    @Test("fp32 sums of rows through packed strips equal a plain reference on odd shapes and row lists, and give the in-place kernel's bits",
          .enabled(if: SmallGEMM.avx512Available, "no AVX-512 on this CPU: no packed kernel to test"))
    func packedF32SumRowsMatchInPlace() throws {
        // Odd widths around the 16- and 32-column vectors, 1,100 and 2,100 rows to cross one and
        // two strips (CHALF_STRIP_ROWS), token counts around the blocks of six.
        let shapes: [(rows: Int, cols: Int)] = [(1, 8), (7, 33), (18, 95), (37, 150), (1_100, 40), (2_100, 70)]
        for threads in [1, 2] {
            Threads.set(threads)
            defer { Threads.set(Threads.defaultCount) }
            for (rows, cols) in shapes {
                let w = randomFloats(rows * cols, seed: 31)
                for tokens in [1, 3, 6, 7, 13] {
                    for kept in [nil, stride(from: rows - 1, through: 0, by: -3).map(Int32.init), []] as [[Int32]?] {
                        let listed = kept.map { $0.map(Int.init) } ?? Array(0..<rows)
                        let label = "\(threads) threads, \(tokens)×\(listed.count) · [\(rows), \(cols)]"
                        let x = randomFloats(tokens * listed.count, seed: 32), start = randomFloats(tokens * cols, seed: 33)
                        for accumulate in [false, true] {
                            var expected = (0..<tokens * cols).map { accumulate ? Double(start[$0]) : 0 }
                            for t in 0..<tokens {
                                for (k, r) in listed.enumerated() {
                                    for c in 0..<cols { expected[t * cols + c] += Double(x[t * listed.count + k]) * Double(w[r * cols + c]) }
                                }
                            }
                            var out = start, bits = start
                            func run(_ indices: UnsafePointer<Int32>?) {
                                SmallGEMM.multiplyTransposed(&out, x, tokens: tokens, w, cols: cols, rowIndices: indices,
                                                             rowCount: listed.count, accumulate: accumulate, wide: true,
                                                             packed: true)
                                SmallGEMM.multiplyTransposed(&bits, x, tokens: tokens, w, cols: cols, rowIndices: indices,
                                                             rowCount: listed.count, accumulate: accumulate, wide: true,
                                                             packed: false)
                            }
                            if let kept { kept.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
                            expectClose(out, expected.map { Float($0) }, tolerance: 1e-4, "\(label), accumulate \(accumulate)")
                            #expect(out == bits, "\(label), accumulate \(accumulate): bits of chalf_f32_sum_rows")
                        }
                    }
                }
            }
        }
    }

    @Test("long inputs, taken a chunk of tokens at a time, give x·Wᵀ and the sums of rows (fp32 and f16 weights)",
          arguments: kernels)
    func longInputsCrossTokenChunks(wide: Bool) {
        // 8,192 columns make the chunks short (16 tokens in the AVX-512 dot kernel, 64 for the
        // widened panels), so 70 tokens cross several of them and end in a partial one.
        let rows = 5, cols = 8192, tokens = 70
        let w = randomFloats(rows * cols, seed: 12), x = randomFloats(tokens * cols, seed: 13)
        let xt = randomFloats(tokens * rows, seed: 14)
        var expected = [Float](repeating: 0, count: tokens * rows)
        var expectedT = [Float](repeating: 0, count: tokens * cols)
        for t in 0..<tokens {
            for r in 0..<rows {
                var sum: Double = 0
                for c in 0..<cols { sum += Double(x[t * cols + c]) * Double(w[r * cols + c]) }
                expected[t * rows + r] = Float(sum)
                for c in 0..<cols { expectedT[t * cols + c] += xt[t * rows + r] * w[r * cols + c] }
            }
        }
        var out = [Float](repeating: .nan, count: expected.count), outT = [Float](repeating: .nan, count: expectedT.count)
        SmallGEMM.multiply(&out, x, tokens: tokens, w, cols: cols, rowIndices: nil, rowCount: rows, wide: wide)
        SmallGEMM.multiplyTransposed(&outT, xt, tokens: tokens, w, cols: cols, rowIndices: nil, rowCount: rows,
                                     accumulate: false, wide: wide)
        expectClose(out, expected, tolerance: 1e-3, "fp32 multiply")
        expectClose(outT, expectedT, tolerance: 1e-4, "fp32 multiplyTransposed")
        // The widened paths use the default kernel: compare them with the fp32 path on the same values.
        let half = WeightMatrix(Matrix(rows: rows, cols: cols, values: w), dtype: .f16)
        let widened = half.toMatrix()
        var reference = out, referenceT = outT
        SmallGEMM.multiply(&reference, x, tokens: tokens, widened.pointer, cols: cols, rowIndices: nil, rowCount: rows)
        SmallGEMM.multiply(&out, x, tokens: tokens, half, rowIndices: nil, rowCount: rows)
        SmallGEMM.multiplyTransposed(&referenceT, xt, tokens: tokens, widened.pointer, cols: cols, rowIndices: nil,
                                     rowCount: rows, accumulate: false)
        SmallGEMM.multiplyTransposed(&outT, xt, tokens: tokens, half, rowIndices: nil, rowCount: rows, accumulate: false)
        #expect(out == reference, "f16 multiply over token chunks")
        #expect(outT == referenceT, "f16 multiplyTransposed over token chunks")
    }

    @Test("the AVX-512 kernels form each sum alike whatever its block, thread split or token count",
          .enabled(if: SmallGEMM.avx512Available, "no AVX-512 on this CPU: nothing to compare"))
    func wideSumsDoNotDependOnTheirBlock() throws {
        let rows = 23, cols = 83, tokens = 11
        let w = randomFloats(rows * cols, seed: 15), x = randomFloats(tokens * cols, seed: 16)
        // All rows and tokens at once, against each token alone over rows [3, 23) split at 9.
        var whole = [Float](repeating: 0, count: tokens * rows)
        SmallGEMM.dotBlock(&whole, x, tokens: tokens, w, cols: cols, rowIndices: nil, rows: 0..<rows,
                           outStride: rows, wide: true)
        for t in 0..<tokens {
            var single = [Float](repeating: 0, count: rows)
            x.withUnsafeBufferPointer { xp in
                SmallGEMM.dotBlock(&single, xp.baseAddress! + t * cols, tokens: 1, w, cols: cols, rowIndices: nil,
                                   rows: 3..<9, outStride: rows, wide: true)
                SmallGEMM.dotBlock(&single, xp.baseAddress! + t * cols, tokens: 1, w, cols: cols, rowIndices: nil,
                                   rows: 9..<rows, outStride: rows, wide: true)
            }
            #expect(Array(single[3...]) == Array(whole[t * rows + 3 ..< (t + 1) * rows]), "token \(t)")
        }
        // The sums of rows are the AVX2 kernel's fused multiply-adds in the same order: the same bits
        // (in whole blocks of 16 columns; the AVX2 kernel's last few columns are plain C).
        let xt = randomFloats(tokens * rows, seed: 17), width = 80
        var narrow = randomFloats(tokens * width, seed: 18), wide = narrow
        for accumulate in [false, true] {
            SmallGEMM.multiplyTransposed(&narrow, xt, tokens: tokens, w, cols: width, rowIndices: nil, rowCount: rows,
                                         accumulate: accumulate, wide: false)
            SmallGEMM.multiplyTransposed(&wide, xt, tokens: tokens, w, cols: width, rowIndices: nil, rowCount: rows,
                                         accumulate: accumulate, wide: true)
            #expect(wide == narrow, "accumulate \(accumulate)")
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
