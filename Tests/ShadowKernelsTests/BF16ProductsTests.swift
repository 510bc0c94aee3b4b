import Foundation
import Testing
@testable import ShadowKernels
import ShadowTestSupport

@Suite("bf16 dot products", .serialized)
struct BF16ProductsTests {
    /// Token counts around the kernels' blocks (4 tokens for products, up to 6 for sums) and past
    /// the small-GEMM limit; widths with a masked tail past 32 values, odd row counts (a lone last
    /// row in the sums' pairs), a subset of rows.
    static let tokenCounts = [1, 3, 4, 5, 6, 7, 8, 13, 100]
    static let shapes: [(rows: Int, cols: Int)] = [(1, 8), (5, 20), (16, 37), (17, 64), (7, 96), (6, 160), (9, 200)]

    static func bf16Values(_ count: Int, seed: UInt64) -> [Float] {
        randomFloats(count, seed: seed).map(BF16Products.roundedToBF16)
    }

    /// Runs both forms against fp64 sums of the bf16-rounded inputs and weights.
    static func checkAgainstFP64(kernels: Bool, threads: Int) {
        Threads.set(threads)
        defer { Threads.set(Threads.defaultCount) }
        for (rows, cols) in shapes {
            let weight = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 21)), dtype: .bf16dot)
            let w = weight.toMatrix()
            let subset: [Int32] = stride(from: rows - 1, through: 0, by: -2).map(Int32.init)
            for kept in [nil, subset] {
                let listed = kept.map { $0.map(Int.init) } ?? Array(0..<rows)
                func withRows(_ body: (UnsafePointer<Int32>?) -> Void) {
                    if let kept { kept.withUnsafeBufferPointer { body($0.baseAddress!) } } else { body(nil) }
                }
                for tokens in tokenCounts {
                    // Products: out[t, j] = x[t] · W[row_j]; x not yet rounded (the kernels round it).
                    let x = randomFloats(tokens * cols, seed: 22), xr = x.map(BF16Products.roundedToBF16)
                    var expected = [Float](repeating: 0, count: tokens * listed.count)
                    for t in 0..<tokens {
                        for (j, r) in listed.enumerated() {
                            var s = 0.0
                            for i in 0..<cols { s += Double(xr[t * cols + i]) * Double(w.pointer[r * cols + i]) }
                            expected[t * listed.count + j] = Float(s)
                        }
                    }
                    var out = [Float](repeating: .nan, count: expected.count)
                    withRows { BF16Products.multiply(&out, x, tokens: tokens, weight, rowIndices: $0, rowCount: listed.count, kernels: kernels) }
                    expectClose(out, expected, tolerance: 3e-5, "products \(tokens)×\(cols) · [\(rows), \(cols)]ᵀ kept \(listed.count)")

                    // Sums of rows: out[t, :] (+)= Σ_k x[t, k] · W[row_k, :].
                    let xt = randomFloats(tokens * listed.count, seed: 23), xtr = xt.map(BF16Products.roundedToBF16)
                    let start = randomFloats(tokens * cols, seed: 24)
                    for accumulate in [false, true] {
                        var expectedT = [Float](repeating: 0, count: tokens * cols)
                        for t in 0..<tokens {
                            for c in 0..<cols {
                                var s = accumulate ? Double(start[t * cols + c]) : 0
                                for (k, r) in listed.enumerated() { s += Double(xtr[t * listed.count + k]) * Double(w.pointer[r * cols + c]) }
                                expectedT[t * cols + c] = Float(s)
                            }
                        }
                        var outT = start
                        withRows {
                            BF16Products.multiplyTransposed(&outT, xt, tokens: tokens, weight, rowIndices: $0,
                                                            rowCount: listed.count, accumulate: accumulate, kernels: kernels)
                        }
                        expectClose(outT, expectedT, tolerance: 3e-5,
                                    "sums \(tokens)×\(listed.count) · [\(rows), \(cols)] accumulate \(accumulate)")
                    }
                }
            }
        }
    }

    @Test("the AVX-512 kernels equal fp64 sums of bf16-rounded inputs and weights, on 1 and 2 threads",
          .enabled(if: BF16Products.isAvailable, "this CPU has no AVX512-BF16: only the fallback is tested"),
          arguments: [1, 2])
    func kernelsMatchFP64(threads: Int) {
        Self.checkAgainstFP64(kernels: true, threads: threads)
    }

    @Test("sums of rows from packed strips give the in-place kernel's bits, on 1 and 2 threads",
          .enabled(if: BF16Products.isAvailable, "this CPU has no AVX512-BF16: no packed kernel to test"),
          arguments: [1, 2])
    func packedSumRowsMatchInPlace(threads: Int) {
        Threads.set(threads)
        defer { Threads.set(Threads.defaultCount) }
        // Widths around the 32-column strips (two strips per thread at 150), odd row counts (a lone
        // last row), token counts on both sides of one block of eight (up to 8: in place) and
        // around the blocks of 4–8.
        let shapes: [(rows: Int, cols: Int)] = [(1, 8), (7, 33), (18, 95), (37, 150), (600, 70)]
        for (rows, cols) in shapes {
            let weight = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 27)),
                                      dtype: .bf16dot)
            for tokens in [1, 8, 9, 13, 16, 17, 41] {
                for kept in [nil, stride(from: rows - 1, through: 0, by: -3).map(Int32.init), []] as [[Int32]?] {
                    let count = kept?.count ?? rows
                    let x = randomFloats(tokens * count, seed: 28), start = randomFloats(tokens * cols, seed: 29)
                    for accumulate in [false, true] {
                        var packed = start, inPlace = start
                        func run(_ indices: UnsafePointer<Int32>?) {
                            BF16Products.multiplyTransposed(&packed, x, tokens: tokens, weight, rowIndices: indices,
                                                            rowCount: count, accumulate: accumulate, packed: true)
                            BF16Products.multiplyTransposed(&inPlace, x, tokens: tokens, weight, rowIndices: indices,
                                                            rowCount: count, accumulate: accumulate, packed: false)
                        }
                        if let kept { kept.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
                        #expect(packed == inPlace, "\(tokens)×\(count) · [\(rows), \(cols)], accumulate \(accumulate)")
                    }
                }
            }
        }
    }

    @Test("a token's products are the same bits alone (decode) as among other tokens (prefill)",
          .enabled(if: BF16Products.isAvailable, "this CPU has no AVX512-BF16: no one-token kernel to test"),
          arguments: [1, 2])
    func oneTokenMatchesBlocks(threads: Int) {
        Threads.set(threads)
        defer { Threads.set(Threads.defaultCount) }
        // Row counts around the one-token kernel's 16-row blocks; a masked tail past 32 columns;
        // a prefill's worth of tokens.
        for (rows, cols, tokens) in [(5, 20, 6), (16, 64, 6), (17, 96, 6), (40, 200, 6), (130, 576, 6), (9, 576, 460)] {
            let weight = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 26)), dtype: .bf16dot)
            let subset: [Int32] = stride(from: rows - 1, through: 0, by: -3).map(Int32.init)
            for kept in [nil, subset] {
                let count = kept?.count ?? rows
                let x = randomFloats(tokens * cols, seed: 27)
                var block = [Float](repeating: .nan, count: tokens * count)
                var alone = [Float](repeating: .nan, count: count)
                func withRows(_ body: (UnsafePointer<Int32>?) -> Void) {
                    if let kept { kept.withUnsafeBufferPointer { body($0.baseAddress!) } } else { body(nil) }
                }
                withRows { BF16Products.multiply(&block, x, tokens: tokens, weight, rowIndices: $0, rowCount: count) }
                for t in 0..<tokens {
                    let token = Array(x[t * cols..<(t + 1) * cols])
                    withRows { BF16Products.multiply(&alone, token, tokens: 1, weight, rowIndices: $0, rowCount: count) }
                    #expect(alone.map(\.bitPattern) == block[t * count..<(t + 1) * count].map(\.bitPattern),
                            "token \(t) of \(tokens) · [\(rows), \(cols)]ᵀ kept \(count)")
                }
            }
        }
    }

    @Test("the fallback for CPUs without AVX512-BF16 gives the same products", arguments: [1, 2])
    func fallbackMatchesFP64(threads: Int) {
        Self.checkAgainstFP64(kernels: false, threads: threads)
    }

    @Test("inputs really are rounded to bf16 (the products differ from fp32 inputs on bf16 weights)")
    func inputsAreRounded() {
        let rows = 8, cols = 64, tokens = 5
        let values = randomFloats(rows * cols, seed: 25)
        let dot = WeightMatrix(Matrix(rows: rows, cols: cols, values: values), dtype: .bf16dot)
        let plain = WeightMatrix(Matrix(rows: rows, cols: cols, values: values), dtype: .bf16)
        #expect(dot.toMatrix().array == plain.toMatrix().array)   // the same stored weights
        let x = randomFloats(tokens * cols, seed: 26)
        var rounded = [Float](repeating: 0, count: tokens * rows), unrounded = rounded
        SmallGEMM.multiply(&rounded, x, tokens: tokens, dot, rowIndices: nil, rowCount: rows)
        SmallGEMM.multiply(&unrounded, x, tokens: tokens, plain, rowIndices: nil, rowCount: rows)
        expectClose(rounded, unrounded, tolerance: 2e-2)
        #expect(rounded != unrounded)
    }

    @Test("rounding to bf16 is to nearest, ties to even, and keeps NaN and infinities")
    func rounding() {
        #expect(BF16Products.roundedToBF16(1 + 1.0 / 256) == 1)                  // a tie: down to even
        #expect(BF16Products.roundedToBF16(1 + 3.0 / 256) == 1 + 4.0 / 256)      // a tie: up to even
        #expect(BF16Products.roundedToBF16(1 + 1.5 / 256) == 1 + 2.0 / 256)
        #expect(BF16Products.roundedToBF16(.infinity) == .infinity)
        #expect(BF16Products.roundedToBF16(.nan).isNaN)
    }
}
