import Foundation
import Testing
@testable import ShadowKernels
@testable import ShadowModels
import ShadowTestSupport

/// Decode with a `packing` rule reads a mask's kept rows from packed copies instead of gathering
/// them from the full matrices: the same products, summed by the dense kernels.
@Suite("Packed kept rows")
struct PackedRowsTests {
    @Test("a packed copy holds the listed rows in order, in the source's dtype", arguments: [WeightDType.f32, .bf16, .f16])
    func gatheringCopiesRows(dtype: WeightDType) {
        let rows = 13, cols = 37
        let source = WeightMatrix(Matrix(rows: rows, cols: cols, values: randomFloats(rows * cols, seed: 21)), dtype: dtype)
        let listed: [Int32] = [12, 0, 5, 6, 9]
        let packed = listed.withUnsafeBufferPointer { WeightMatrix(gathering: $0, of: source) }
        #expect(packed.rows == listed.count && packed.cols == cols && packed.dtype == source.dtype)
        let whole = source.toMatrix(), copy = packed.toMatrix()
        for (k, row) in listed.enumerated() {
            for c in 0..<cols { #expect(copy.pointer[k * cols + c] == whole.pointer[Int(row) * cols + c]) }
        }
    }

    @Test("a row list is packed at its n-th read in a row, kept while it repeats, and dropped when it changes", arguments: [2, 5])
    func packsRepeatedRowLists(after: Int) {
        let source = WeightMatrix(Matrix(rows: 64, cols: 16, values: randomFloats(64 * 16, seed: 22)), dtype: .f32)
        let scratch = Scratch()
        let first: [Int32] = [1, 4, 9, 30], second: [Int32] = [2, 4, 9, 31]
        func ask(_ rows: [Int32]) -> WeightMatrix? { rows.withUnsafeBufferPointer { scratch.keptRows(of: source, $0) } }
        #expect(ask(first) == nil && ask(first) == nil)   // off by default
        scratch.packing = PackingRule(after: after)
        for read in 1..<after { #expect(ask(first) == nil, "read \(read)") }   // read in place until the n-th
        let packed = ask(first)
        #expect(packed?.rows == 4 && ask(first) === packed && scratch.packedBytes == 4 * 16 * 4)
        #expect(ask(second) == nil && scratch.packedBytes == 0)   // a new mask: the copy goes, the count restarts
        for _ in 2..<after { #expect(ask(second) == nil) }
        #expect(ask(first) == nil)                         // an interruption restarts the count too
        for _ in 1..<after { #expect(ask(second) == nil) }
        #expect(ask(second) != nil)
    }

    @Test("a spread delays the n-th projection first read by n modulo the spread, each keeping its place when its rows change")
    func spreadsCopies() {
        let weights = (0..<3).map { WeightMatrix(Matrix(rows: 16, cols: 4, values: randomFloats(64, seed: 30 + UInt64($0))), dtype: .f32) }
        let scratch = Scratch()
        scratch.packing = PackingRule(after: 3, spread: 2)
        let rows: [Int32] = [1, 5, 7], other: [Int32] = [2, 5, 7]
        func ask(_ w: WeightMatrix, _ rows: [Int32]) -> Bool { rows.withUnsafeBufferPointer { scratch.keptRows(of: w, $0) } != nil }
        // Reads 1…4 of each projection, as decode makes them, one round per token.
        var packedAt: [Int?] = [nil, nil, nil]
        for read in 1...4 {
            for (n, w) in weights.enumerated() where ask(w, rows) && packedAt[n] == nil { packedAt[n] = read }
        }
        #expect(packedAt == [3, 4, 3])   // orders 0, 1, 2: 3 + 0, 3 + 1, 3 + 0
        // New rows for the second projection: its count restarts, its place (order 1) stays.
        #expect(!ask(weights[1], other) && !ask(weights[1], other) && !ask(weights[1], other) && ask(weights[1], other))
    }

    @Test("sparse decode with packed rows gives the logits of gathered rows", arguments: ["tiny-llama", "tiny-llama-bias", "tiny-opt", "tiny-qwen2", "tiny-qwen3", "tiny-phi3-longrope", "tiny-qwen2-window", "tiny-gemma3", "tiny-gemma2"])
    func packedDecodeMatchesGathered(name: String) throws {
        for dtype in [WeightDType.f32, .f16] {
            let model = try ModelLoader.load(path: Fixtures.path(name), weights: dtype).model
            let plans = randomPlans(shape: model.shape, keep: 0.5, seed: 23)
            func decode(packing: Bool) -> [Float] {
                let cache = model.makeCache(capacity: 32)
                cache.scratch.packing = packing ? PackingRule(after: 2) : nil
                let controller = FixedSparsity(layers: plans)
                var out = model.forward([5, 17, 42, 8, 9, 23, 4, 61], cache: cache, logits: .last, sparsity: controller)
                for t in [30, 12, 77, 3, 50, 6] { out += model.forward([t], cache: cache, logits: .last, sparsity: controller) }
                #expect((cache.scratch.packedBytes > 0) == packing, "\(name) \(dtype)")
                return out
            }
            expectClose(decode(packing: true), decode(packing: false), tolerance: 1e-4, "\(name) \(dtype)")
        }
    }
}
