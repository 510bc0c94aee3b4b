import Testing
@testable import ShadowKernels
@testable import ShadowModels
import ShadowModelTestSupport
import ShadowTestSupport

@Suite("Projection paths")
struct ProductPathTests {
    static let inputs = 70, outputs = 40

    /// fp64 reference of Linear (x · Wᵀ over the listed rows) or TransposedLinear (Σ_k x[k] · Wt[row_k]).
    static func reference(_ x: [Float], tokens: Int, _ w: Matrix, rows: [Int], transposed: Bool) -> [Float] {
        if transposed {
            return (0..<tokens).flatMap { t in
                (0..<w.cols).map { c in
                    Float(rows.indices.reduce(0.0) { $0 + Double(x[t * rows.count + $1]) * Double(w.pointer[rows[$1] * w.cols + c]) })
                }
            }
        }
        return (0..<tokens).flatMap { t in
            rows.map { r in Float((0..<w.cols).reduce(0.0) { $0 + Double(x[t * w.cols + $1]) * Double(w.pointer[r * w.cols + $1]) }) }
        }
    }

    @Test("without bf16 kernels, bf16 dot products take the 16-bit paths (GEMV, small GEMM, BLAS) on inputs rounded to bf16",
          arguments: [1, 3, 8, 120])
    func bf16ProductsWithoutKernels(tokens: Int) {
        let expectedPath: ProductPath = tokens <= gemvTokenLimit ? .gemv : tokens <= SmallGEMM.tokenLimit ? .smallGEMM : .blas
        let weight = WeightMatrix(Matrix(rows: Self.outputs, cols: Self.inputs, values: randomFloats(Self.outputs * Self.inputs, seed: 31)),
                                  dtype: .bf16dot)
        let weightT = WeightMatrix(Matrix(rows: Self.outputs, cols: Self.inputs, values: randomFloats(Self.outputs * Self.inputs, seed: 32)),
                                   dtype: .bf16dot)
        BF16Products.$usesKernels.withValue(true) {
            #expect(ProductPath(tokens: tokens, weight) == .smallGEMM)
        }
        BF16Products.$usesKernels.withValue(false) {
            #expect(ProductPath(tokens: tokens, weight) == expectedPath)
            let kept: [Int32] = stride(from: Self.outputs - 1, through: 0, by: -2).map(Int32.init)
            for rows in [nil, kept] {
                let listed = rows.map { $0.map(Int.init) } ?? Array(0..<Self.outputs)
                let label = "\(tokens) tokens, \(listed.count) rows"

                // Linear: (tokens, inputs) · Wᵀ.
                let x = randomFloats(tokens * Self.inputs, seed: 33)
                var out = [Float](repeating: .nan, count: tokens * listed.count)
                if let rows {
                    Linear(weight: weight).apply(&out, x, tokens: tokens, rows: rows, scratch: Scratch())
                } else {
                    Linear(weight: weight).apply(&out, x, tokens: tokens, scratch: Scratch())
                }
                let w = weight.toMatrix()
                let rounded = Self.reference(x.map(BF16Products.roundedToBF16), tokens: tokens, w, rows: listed, transposed: false)
                expectClose(out, rounded, tolerance: 3e-5, "Linear, \(label)")
                let unrounded = Self.reference(x, tokens: tokens, w, rows: listed, transposed: false)
                #expect(zip(out, unrounded).map { abs($0 - $1) }.max()! > 1e-4, "Linear, \(label): the input was not rounded")

                // TransposedLinear: (tokens, kept input units) · Wt[kept].
                let xt = randomFloats(tokens * listed.count, seed: 34)
                var outT = [Float](repeating: .nan, count: tokens * Self.inputs)
                if let rows {
                    TransposedLinear(weightT: weightT).apply(&outT, xt, tokens: tokens, rows: rows, accumulate: false, scratch: Scratch())
                } else {
                    TransposedLinear(weightT: weightT).apply(&outT, xt, tokens: tokens, accumulate: false, scratch: Scratch())
                }
                let wt = weightT.toMatrix()
                let roundedT = Self.reference(xt.map(BF16Products.roundedToBF16), tokens: tokens, wt, rows: listed, transposed: true)
                expectClose(outT, roundedT, tolerance: 3e-5, "TransposedLinear, \(label)")
                let unroundedT = Self.reference(xt, tokens: tokens, wt, rows: listed, transposed: true)
                #expect(zip(outT, unroundedT).map { abs($0 - $1) }.max()! > 1e-4, "TransposedLinear, \(label): the input was not rounded")
            }
        }
    }

    @Test("the BLAS path multiplies a 16-bit matrix slice by slice of widened rows, as whole", arguments: [WeightDType.bf16, .f16, .f32])
    func slicedWidening(dtype: WeightDType) {
        let tokens = 9
        let weight = WeightMatrix(Matrix(rows: Self.outputs, cols: Self.inputs, values: randomFloats(Self.outputs * Self.inputs, seed: 35)),
                                  dtype: dtype)
        let weightT = WeightMatrix(Matrix(rows: Self.outputs, cols: Self.inputs, values: randomFloats(Self.outputs * Self.inputs, seed: 36)),
                                   dtype: dtype)
        let x = randomFloats(tokens * Self.inputs, seed: 37), xt = randomFloats(tokens * Self.outputs, seed: 38)
        let all = Array(0..<Self.outputs)
        let expected = Self.reference(x, tokens: tokens, weight.toMatrix(), rows: all, transposed: false)
        let sums = Self.reference(xt, tokens: tokens, weightT.toMatrix(), rows: all, transposed: true)
        let start = Array(repeating: randomFloats(Self.inputs, seed: 39), count: tokens).flatMap { $0 }
        for sliceRows in [nil, Self.outputs, 7, 1] as [Int?] {
            var out = [Float](repeating: .nan, count: tokens * Self.outputs)
            Linear(weight: weight).multiplyWidened(&out, x, tokens: tokens, scratch: Scratch(), sliceRows: sliceRows)
            expectClose(out, expected, tolerance: 1e-5, "Linear, slices of \(sliceRows ?? 0)")
            // Transposed: the slices' parts add up, onto what `out` holds when accumulating.
            for accumulate in [false, true] {
                var outT = start
                TransposedLinear(weightT: weightT).multiplyWidened(&outT, xt, tokens: tokens, accumulate: accumulate, scratch: Scratch(),
                                                                   sliceRows: sliceRows)
                let expectedT = accumulate ? zip(sums, start).map(+) : sums
                expectClose(outT, expectedT, tolerance: 1e-5, "TransposedLinear, slices of \(sliceRows ?? 0), accumulate \(accumulate)")
            }
        }
    }

    @Test("a bf16-dot model gives the same logits with and without the bf16 kernels",
          .enabled(if: BF16Products.isAvailable, "this CPU has no AVX512-BF16: only the fallback runs"))
    func bf16ModelWithoutKernels() {
        let model = TinyModels.llama(weights: .bf16dot, maxContext: 200)
        for tokens in [[7], (0..<9).map { ($0 * 5 + 1) % 50 }, (0..<150).map { ($0 * 7 + 3) % 50 }] {
            let kernels = BF16Products.$usesKernels.withValue(true) { model.forward(tokens, cache: model.makeCache(capacity: 160), logits: .all) }
            let fallback = BF16Products.$usesKernels.withValue(false) { model.forward(tokens, cache: model.makeCache(capacity: 160), logits: .all) }
            expectClose(fallback, kernels, tolerance: 1e-4, "\(tokens.count) tokens")
        }
    }
}
