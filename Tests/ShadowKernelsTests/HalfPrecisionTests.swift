import Foundation
import Testing
@testable import ShadowKernels
import ShadowTestSupport

@Suite("Half-precision weights", .serialized)
struct HalfPrecisionTests {
    static let shapes: [(rows: Int, cols: Int)] = [(1, 1), (3, 7), (4, 8), (5, 33), (9, 64), (67, 129), (130, 576), (300, 72), (7, 32), (70, 96)]

    /// The matrix as the kernels see it: every value rounded to the storage type.
    func rounded(_ w: WeightMatrix) -> [Float] { w.toMatrix().array }

    @Test("bf16 and fp16 round to nearest and keep values within their precision", arguments: [WeightDType.bf16, .f16])
    func rounding(dtype: WeightDType) {
        let values = randomFloats(1000, seed: 1).map { $0 * 10 }
        let w = WeightMatrix(Matrix(rows: 10, cols: 100, values: values), dtype: dtype)
        let relative: Float = dtype == .bf16 ? 1.0 / 256 : 1.0 / 2048
        expectClose(rounded(w), values, tolerance: relative, "\(dtype)")
        #expect(WeightMatrix(Matrix(rows: 1, cols: 3, values: [1, -2.5, 0.375]), dtype: dtype).toMatrix().array == [1, -2.5, 0.375])
    }

    @Test("narrowing to fp16 rounds to nearest even as Float16 does, in the 8-wide blocks and the tail: ties, subnormals, overflow, infinities, NaN")
    func fp16NarrowingBits() {
        let one = Float(1), step = Float(1) / 2048   // half an fp16 ulp at 1
        let edges: [Float] = [0, -0.0, one, one + step, one + 3 * step, -(one + step), 65504, 65519, 65520, -65520, 1e-8,
                              5.96e-8, 2.98e-8, 6.1e-5, 3.1e-5, .infinity, -.infinity, .nan, .greatestFiniteMagnitude, 0.1, -7.3]
        // Every edge value at every position of a block and of the tail: rotations of the list.
        for (count, offset) in [edges.count, 8, 17, 3].flatMap({ count in (0..<edges.count).map { (count, $0) } }) {
            let values = (0..<count).map { edges[($0 + offset) % edges.count] }
            var narrowed = [UInt16](repeating: 0, count: count)
            HalfVectors.narrow(&narrowed, values, count: count)
            for (value, bits) in zip(values, narrowed) {
                if value.isNaN { #expect(Float16(bitPattern: bits).isNaN); continue }
                #expect(bits == Float16(value).bitPattern, "\(value)")
            }
        }
    }

    @Test("a matrix beyond fp16's range is kept in bf16")
    func fp16Overflow() {
        let w = WeightMatrix(Matrix(rows: 1, cols: 2, values: [1e6, 1]), dtype: .f16)
        #expect(w.dtype == .bf16)
        #expect(abs(w.toMatrix().array[0] - 1e6) / 1e6 < 1e-2)
    }

    @Test("GEMV on 16-bit and 8-bit rows matches a naive loop over the rounded values, on 1 and 2 threads",
          arguments: [(WeightDType.bf16, 1), (.bf16, 2), (.f16, 1), (.f16, 2), (.f32, 2), (.q8, 1), (.q8, 2)])
    func gemv(dtype: WeightDType, threads: Int) {
        Threads.set(threads)
        defer { Threads.set(Threads.defaultCount) }
        for (rows, cols) in Self.shapes {
            let w = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 2)), dtype: dtype)
            let x = randomFloats(cols, seed: 3)
            let r = rounded(w)
            let expected = (0..<rows).map { i in (0..<cols).reduce(Float(0)) { $0 + r[i * cols + $1] * x[$1] } }
            var y = [Float](repeating: .nan, count: rows)
            w.multiply(&y, x)
            expectClose(y, expected, tolerance: 1e-4, "\(dtype) \(rows)x\(cols)")
        }
    }

    @Test("transposed GEMV and gathered rows on 16-bit and 8-bit weights match a naive loop, a list of rows the same bits on 1, 2 and 3 threads",
          arguments: [WeightDType.bf16, .f16, .f32, .q8])
    func transposed(dtype: WeightDType) {
        for (rows, cols) in Self.shapes {
            let w = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 4)), dtype: dtype)
            let r = rounded(w)
            let x = randomFloats(rows, seed: 5)
            var expected = [Float](repeating: 0, count: cols)
            for i in 0..<rows { for c in 0..<cols { expected[c] += x[i] * r[i * cols + c] } }
            var y = [Float](repeating: 0, count: cols)
            w.multiplyTransposed(&y, x, accumulate: true)
            expectClose(y, expected, tolerance: 1e-4, "\(dtype) \(rows)x\(cols)")

            let kept = (0..<rows).filter { $0 % 3 != 1 }.map(Int32.init)
            let xk = randomFloats(kept.count, seed: 6)
            var gathered = [Float](repeating: 7, count: cols)
            var expectedGathered = [Float](repeating: 0, count: cols)
            for (k, i) in kept.enumerated() { for c in 0..<cols { expectedGathered[c] += xk[k] * r[Int(i) * cols + c] } }
            kept.withUnsafeBufferPointer { idx in
                w.axpyRows(&gathered, xk, rowIndices: idx.baseAddress, rowCount: kept.count, columns: 0..<cols, accumulate: false)
            }
            expectClose(gathered, expectedGathered, tolerance: 1e-4, "gathered \(dtype) \(rows)x\(cols)")
            // The whole product over a list of rows, on any thread count the same bits.
            var listed: [[Float]] = []
            for threads in [1, 2, 3] {
                Threads.set(threads)
                var out = [Float](repeating: 7, count: cols)
                kept.withUnsafeBufferPointer { idx in
                    w.multiplyTransposed(&out, xk, rows: idx.baseAddress!, count: kept.count, accumulate: false)
                }
                expectClose(out, expectedGathered, tolerance: 1e-4, "listed \(dtype) \(rows)x\(cols) on \(threads) threads")
                listed.append(out)
            }
            Threads.set(Threads.defaultCount)
            #expect(listed[0] == listed[1] && listed[0] == listed[2], "listed \(dtype) \(rows)x\(cols)")
        }
    }

    @Test("widening rows for a GEMM gives the rounded values, slice after slice", arguments: [WeightDType.bf16, .f16, .f32, .q8])
    func widen(dtype: WeightDType) {
        let w = WeightMatrix(Matrix(rows: 13, cols: 32, values: randomFloats(13 * 32, seed: 7)), dtype: dtype)
        var scratch = [Float](repeating: 0, count: 13 * 32)
        for sliceRows in [nil, 13, 5, 1] as [Int?] {
            var view = [Float](), slices = [Range<Int>]()
            scratch.withUnsafeMutableBufferPointer { buffer in
                w.forEachFloatSlice(sliceRows: sliceRows, scratch: { count in
                    #expect(count <= 13 * 32)
                    return buffer.baseAddress!
                }) { rows, pointer in
                    slices.append(rows)
                    view += UnsafeBufferPointer(start: pointer, count: rows.count * 32)
                }
            }
            #expect(view == rounded(w))
            // fp32 is the matrix itself, one slice; 16-bit rows come in slices of the size asked.
            let size = dtype == .f32 ? 13 : sliceRows ?? 13
            #expect(slices == stride(from: 0, to: 13, by: size).map { $0 ..< min($0 + size, 13) })
        }
    }
}

@Suite("Worker pool")
struct WorkerPoolTests {
    @Test("parallel chunks cover every index exactly once, also when called from many threads at once")
    func coverage() async {
        Threads.set(2)
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var hits = [Int](repeating: 0, count: 1000)
                    hits.withUnsafeMutableBufferPointer { buffer in
                        let base = buffer.baseAddress!
                        for _ in 0..<50 { parallelChunks(1000, granularity: 4) { range in for i in range { base[i] += 1 } } }
                    }
                    return hits.allSatisfy { $0 == 50 }
                }
            }
            for await ok in group { #expect(ok) }
        }
    }

    /// With more threads than cores the workers sleep between jobs instead of spinning; a job wakes
    /// at most parts − 1 of them (the caller takes a part).
    @Test("each part of a job runs exactly once and before run returns, whichever thread claims it, with or without spinning workers",
          arguments: [64, 1])
    func claiming(cores: Int) {
        let pool = WorkerPool(workers: 3, cores: cores)
        #expect((pool.spinLimit == 0) == (cores < 4), "4 threads on \(cores) cores")
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        defer { counts.deallocate() }
        for job in 0..<2000 {
            let parts = job % 5 == 4 ? 1 + job / 5 % 4 : 4   // now and then fewer parts than threads
            counts.initialize(repeating: 0, count: parts)
            pool.run(parts: parts) { part in
                // A slow part now and then, as when its thread waits for a core: the others
                // (the caller included) take the remaining parts meanwhile.
                if job % 97 == part { usleep(200) }
                counts[part] += 1
            }
            let seen = (0..<parts).map { counts[$0] }
            #expect(seen == Array(repeating: 1, count: parts), "job \(job): \(seen)")
            if seen != Array(repeating: 1, count: parts) { break }
        }
        // Fewer parts than threads: the idle workers claim nothing.
        pool.run(parts: 1) { part in counts[part] = 7 }
        #expect(counts[0] == 7)
    }
}
