import Foundation
import Testing
@testable import ShadowKernels
import ShadowTestSupport

@Suite("GEMV and GEMM kernels", .serialized)
struct MatrixKernelTests {
    static let shapes: [(rows: Int, cols: Int)] = [(1, 1), (3, 7), (4, 16), (5, 33), (17, 64), (130, 257)]

    func naiveMatVec(_ w: [Float], _ x: [Float], rows: Int, cols: Int) -> [Float] {
        (0..<rows).map { r in (0..<cols).reduce(Float(0)) { $0 + w[r * cols + $1] * x[$1] } }
    }

    @Test("GEMV matches a naive loop for odd sizes and tails, on 1 and 2 threads",
          arguments: [1, 2])
    func gemvMatchesNaive(threads: Int) {
        Threads.set(threads)
        defer { Threads.set(Threads.defaultCount) }
        for (rows, cols) in Self.shapes {
            let w = randomFloats(rows * cols, seed: 1), x = randomFloats(cols, seed: 2)
            var y = [Float](repeating: .nan, count: rows)
            GEMV.multiply(&y, w, x, rows: rows, cols: cols)
            expectClose(y, naiveMatVec(w, x, rows: rows, cols: cols), tolerance: 1e-5, "\(rows)x\(cols)")
        }
    }

    @Test("transposed GEMV accumulates Σ x[r]·Wt[r, :] on 1 and 2 threads", arguments: [1, 2])
    func transposedGemv(threads: Int) {
        Threads.set(threads)
        defer { Threads.set(Threads.defaultCount) }
        for (rows, cols) in Self.shapes + [(1536, 576)] {
            let wt = randomFloats(rows * cols, seed: 3), x = randomFloats(rows, seed: 4)
            let start = randomFloats(cols, seed: 5)
            var expected = start
            for r in 0..<rows { for c in 0..<cols { expected[c] += x[r] * wt[r * cols + c] } }
            var y = start
            GEMV.multiplyTransposed(&y, wt, x, rows: rows, cols: cols, accumulate: true)
            expectClose(y, expected, tolerance: 1e-4, "\(rows)x\(cols)")
        }
    }

    @Test("BLAS GEMMs give the same bits on 1, 2 and 3 threads: their column slices depend on the shape and the machine only")
    func gemmIndependentOfThreads() {
        defer { Threads.set(Threads.defaultCount) }
        // A prefill's projections (97 tokens, past the small-GEMM path), an LM head, a weight gradient.
        for (m, n, k) in [(97, 576, 576), (200, 1536, 576), (130, 4000, 64)] {
            // gemmAtB below reads an [m, n] B: its own array, as an [n, k] one is too short.
            let a = randomFloats(m * k, seed: 11), b = randomFloats(n * k, seed: 12), bt = randomFloats(m * n, seed: 13)
            let results = [1, 2, 3].map { threads -> [[Float]] in
                Threads.set(threads)
                var abt = [Float](repeating: 0, count: m * n), ab = abt, atb = [Float](repeating: 0, count: k * n)
                BLAS.gemmABt(&abt, a, b, m: m, n: n, k: k)
                BLAS.gemmAB(&ab, a, b, m: m, n: n, k: k)
                BLAS.gemmAtB(&atb, a, bt, m: k, n: n, k: m)
                return [abt, ab, atb]
            }
            #expect(results[0] == results[1] && results[0] == results[2], "\(m)x\(n)x\(k)")
        }
        #expect(BLAS.sliceCount(m: 512, n: 576, k: 576) == min(BLAS.maximumSlices, 9))
        #expect(BLAS.sliceCount(m: 4, n: 64, k: 8) == 1)
    }

    @Test("transposed GEMV gives the same bits on 1, 2 and 3 threads, fp32 and 16-bit (its row blocks depend on the shape only)")
    func transposedGemvIndependentOfThreads() {
        defer { Threads.set(Threads.defaultCount) }
        for (rows, cols) in [(130, 257), (576, 576), (1536, 576), (1000, 33)] {
            let wt = randomFloats(rows * cols, seed: 8), x = randomFloats(rows, seed: 9)
            let results = [1, 2, 3].map { threads -> [Float] in
                Threads.set(threads)
                var y = [Float](repeating: 0.5, count: cols)
                GEMV.multiplyTransposed(&y, wt, x, rows: rows, cols: cols, accumulate: true)
                return y
            }
            #expect(results[0] == results[1] && results[0] == results[2], "\(rows)x\(cols)")
            for dtype in [WeightDType.f16, .bf16] {
                let w = WeightMatrix(Matrix(rows: rows, cols: cols, values: wt), dtype: dtype)
                let halves = [1, 2, 3].map { threads -> [Float] in
                    Threads.set(threads)
                    var y = [Float](repeating: 0.5, count: cols)
                    w.multiplyTransposed(&y, x, accumulate: true)
                    return y
                }
                #expect(halves[0] == halves[1] && halves[0] == halves[2], "\(dtype) \(rows)x\(cols)")
            }
        }
        #expect(GEMV.transposedChunks(rows: 1536, cols: 576) == 16 && GEMV.transposedChunks(rows: 576, cols: 576) == 8)
        #expect(GEMV.transposedChunks(rows: 100, cols: 576) == 1 && GEMV.transposedChunks(rows: 11008, cols: 4096) == 32)
        #expect(GEMV.transposedChunks(rows: 1 << 20, cols: 16) == 64)
    }

    @Test("transposed GEMV without accumulating overwrites the output, on 1 and 2 threads", arguments: [1, 2])
    func transposedGemvStores(threads: Int) {
        Threads.set(threads)
        defer { Threads.set(Threads.defaultCount) }
        for (rows, cols) in Self.shapes + [(1536, 576), (200, 40)] {
            let wt = randomFloats(rows * cols, seed: 10), x = randomFloats(rows, seed: 11)
            var expected = [Float](repeating: 0, count: cols)
            for r in 0..<rows { for c in 0..<cols { expected[c] += x[r] * wt[r * cols + c] } }
            var y = [Float](repeating: .nan, count: cols)
            GEMV.multiplyTransposed(&y, wt, x, rows: rows, cols: cols, accumulate: false)
            expectClose(y, expected, tolerance: 1e-4, "\(rows)x\(cols)")
        }
    }

    @Test("gathered rows skip the rows that are not listed")
    func gatheredRows() {
        let rows = 11, cols = 37
        let wt = randomFloats(rows * cols, seed: 6)
        let kept: [Int32] = [0, 3, 4, 7, 10]
        let x = randomFloats(kept.count, seed: 7)
        var expected = [Float](repeating: 0, count: cols)
        for (k, r) in kept.enumerated() { for c in 0..<cols { expected[c] += x[k] * wt[Int(r) * cols + c] } }
        var y = [Float](repeating: 9, count: cols)
        kept.withUnsafeBufferPointer { idx in
            GEMV.axpyRows(&y, wt, x, rowIndices: idx.baseAddress, rowCount: kept.count, cols: cols,
                          columns: 0..<cols, accumulate: false)
        }
        expectClose(y, expected, tolerance: 1e-5)
    }

    @Test("BLAS wrappers compute A·Bᵀ, A·B and Aᵀ·B, also when split over 2 threads and accumulating",
          arguments: [(5, 7, 9, 1), (37, 301, 515, 1), (37, 301, 515, 2), (64, 1030, 576, 2)])
    func blasWrappers(m: Int, n: Int, k: Int, threads: Int) {
        Threads.set(threads)
        defer { Threads.set(Threads.defaultCount) }
        let a = randomFloats(m * k, seed: 8), bt = randomFloats(n * k, seed: 9), b = randomFloats(k * n, seed: 10)
        let start = randomFloats(m * n, seed: 12)
        var c1 = [Float](repeating: 0, count: m * n), c2 = c1, c4 = start
        BLAS.gemmABt(&c1, a, bt, m: m, n: n, k: k)
        BLAS.gemmAB(&c2, a, b, m: m, n: n, k: k)
        BLAS.gemmABt(&c4, a, bt, m: m, n: n, k: k, accumulate: true)
        var e1 = [Float](repeating: 0, count: m * n), e2 = e1
        for i in 0..<m { for j in 0..<n { for p in 0..<k {
            e1[i * n + j] += a[i * k + p] * bt[j * k + p]
            e2[i * n + j] += a[i * k + p] * b[p * n + j]
        } } }
        let tolerance: Float = 1e-5 * Float(k).squareRoot()
        expectClose(c1, e1, tolerance: tolerance, "ABt")
        expectClose(c2, e2, tolerance: tolerance, "AB")
        expectClose(c4, zip(e1, start).map { $0 + $1 }, tolerance: tolerance, "ABt accumulated")
        let at = randomFloats(k * m, seed: 11)
        var c3 = [Float](repeating: 0, count: m * n)
        BLAS.gemmAtB(&c3, at, b, m: m, n: n, k: k)
        var e3 = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for p in 0..<k { e3[i * n + j] += at[p * m + i] * b[p * n + j] } } }
        expectClose(c3, e3, tolerance: tolerance, "AtB")
    }

    @Test("a transposed matrix swaps rows and columns")
    func transpose() {
        let m = Matrix(rows: 3, cols: 45, values: randomFloats(135, seed: 12))
        let t = m.transposed()
        #expect(t.rows == 45 && t.cols == 3)
        for r in 0..<3 { for c in 0..<45 { #expect(t.pointer[c * 3 + r] == m.pointer[r * 45 + c]) } }
    }
}

@Suite("Norms, softmax and rotary embedding")
struct ElementwiseTests {
    @Test("RMSNorm divides by the root mean square and scales")
    func rmsNorm() {
        let n = 37
        let x = randomFloats(2 * n, seed: 1), w = randomFloats(n, seed: 2)
        var out = [Float](repeating: 0, count: 2 * n)
        Ops.rmsNorm(&out, x, w, rows: 2, n: n, eps: 1e-5)
        var expected = [Float]()
        for t in 0..<2 {
            let row = Array(x[t * n..<(t + 1) * n])
            let rms = (row.map { $0 * $0 }.reduce(0, +) / Float(n) + 1e-5).squareRoot()
            expected += row.enumerated().map { $0.element / rms * w[$0.offset] }
        }
        expectClose(out, expected, tolerance: 1e-5)
    }

    @Test("LayerNorm uses the biased variance like PyTorch")
    func layerNorm() {
        let n = 19
        let x = randomFloats(n, seed: 3), w = randomFloats(n, seed: 4), b = randomFloats(n, seed: 5)
        var out = [Float](repeating: 0, count: n)
        Ops.layerNorm(&out, x, w, b, rows: 1, n: n, eps: 1e-5)
        let mean = x.reduce(0, +) / Float(n)
        let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(n)
        let expected = (0..<n).map { (x[$0] - mean) / (variance + 1e-5).squareRoot() * w[$0] + b[$0] }
        expectClose(out, expected, tolerance: 1e-5)
    }

    @Test("softmax sums to one, survives large logits, scales them and gives −∞ no weight")
    func softmax() {
        var x: [Float] = [1000, 1001, 999, -Float.infinity]
        Ops.softmax(&x, 4)
        #expect(abs(x.reduce(0, +) - 1) < 1e-6)
        #expect(x[3] == 0)
        #expect(x[1] > x[0] && x[0] > x[2])
        #expect(abs(Ops.logSumExp([1000, 1000], 2) - (1000 + log(2))) < 1e-9)
        // Rows of eight and more take the vector path; a scale multiplies the logits first.
        let logits = (0..<21).map { Float($0 % 7) - 3 }
        var scaled = logits + [-Float.infinity]
        Ops.softmax(&scaled, scaled.count, scale: 0.125)
        let weights = logits.map { exp(Double($0) * 0.125) }
        let expected = weights.map { Float($0 / weights.reduce(0, +)) } + [0]
        expectClose(scaled, expected, tolerance: 1e-6)
        #expect(scaled.last == 0)
    }

    @Test("rotate-half RoPE rotates the pairs (i, i + d/2) by position × frequency")
    func rope() {
        let headDim = 8, heads = 2
        var x = randomFloats(heads * headDim, seed: 6)
        let original = x
        let inv: [Float] = (0..<headDim / 2).map { Float(1 / pow(10000.0, Double(2 * $0) / Double(headDim))) }
        inv.withUnsafeBufferPointer { Ops.rope(&x, heads: heads, headDim: headDim, position: 3, inverseFrequencies: $0) }
        for h in 0..<heads {
            for i in 0..<headDim / 2 {
                let angle = 3 * Double(inv[i])
                let a = original[h * headDim + i], b = original[h * headDim + i + headDim / 2]
                #expect(abs(x[h * headDim + i] - (a * Float(cos(angle)) - b * Float(sin(angle)))) < 1e-5)
                #expect(abs(x[h * headDim + i + headDim / 2] - (b * Float(cos(angle)) + a * Float(sin(angle)))) < 1e-5)
            }
        }
    }

    @Test("firstNonFinite finds the first NaN or infinity in the 16-wide blocks and in the tail, and passes large and tiny finite values")
    func nonFinite() {
        for count in [0, 1, 15, 16, 17, 40] {
            var values = (0..<count).map { $0 % 2 == 0 ? Float.greatestFiniteMagnitude : -Float.leastNonzeroMagnitude }
            #expect(Ops.firstNonFinite(values, count: count) == nil, "count \(count)")
            for (position, bad) in [(count - 1, Float.nan), (count / 2, -Float.infinity), (0, Float.infinity)] where position >= 0 && position < count {
                let kept = values[position]
                values[position] = bad
                let first = Ops.firstNonFinite(values, count: count)
                #expect(first == position, "count \(count), \(bad) at \(position)")
                values[position] = kept
            }
        }
    }

    @Test("allWithin passes magnitudes up to the limit, both signs, and refuses a larger one, an infinity or a NaN anywhere in the blocks or the tail")
    func magnitudesWithin() {
        for count in [0, 1, 15, 16, 17, 40] {
            var values = (0..<count).map { $0 % 2 == 0 ? Float(65000) : -65000 }
            #expect(Ops.allWithin(values, count: count, magnitude: 65000), "count \(count)")
            for position in [0, count / 2, count - 1] where position >= 0 && position < count {
                for bad in [Float(65000).nextUp, -65001, .infinity, -.infinity, .nan, -.nan] {
                    let kept = values[position]
                    values[position] = bad
                    #expect(!Ops.allWithin(values, count: count, magnitude: 65000), "count \(count), \(bad) at \(position)")
                    values[position] = kept
                }
            }
        }
    }
}
