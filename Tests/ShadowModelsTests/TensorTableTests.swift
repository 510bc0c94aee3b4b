import Foundation
import Testing
import ShadowFormats
@testable import ShadowKernels
@testable import ShadowModels
import ShadowTestSupport

/// Weights larger than `sliceValues` are read a slice of rows at a time; the result must be the
/// weight read whole.
@Suite("Tensor table")
struct TensorTableTests {
    @Test("a weight read in slices of rows is the weight read whole, in every storage dtype (8-bit: the same column factors)",
          arguments: [WeightDType.f32, .f16, .bf16, .q8])
    func slicedMatchesWhole(dtype: WeightDType) throws {
        let source = try SafetensorsCollection(directory: Fixtures.path("tiny-llama"))
        let name = "model.embed_tokens.weight"
        let shape = try source.info(name).shape
        let whole = try TensorTable(source, weightDType: dtype).weight(name, rows: shape[0], cols: shape[1])
        // 100 values: slices of one row of the 64-wide embedding, the last one shorter.
        for sliceValues in [100, 64 * 7] {
            let sliced = try TensorTable(source, weightDType: dtype, sliceValues: sliceValues).weight(name, rows: shape[0], cols: shape[1])
            #expect(sliced.dtype == whole.dtype && sliced.rows == whole.rows && sliced.cols == whole.cols)
            #expect((sliced.columnScales != nil) == (dtype == .q8) && (whole.columnScales != nil) == (dtype == .q8))
            #expect(sliced.toMatrix().array.map(\.bitPattern) == whole.toMatrix().array.map(\.bitPattern), "\(dtype), \(sliceValues)")
        }
    }

    @Test("a sliced weight with a value beyond fp16's range in its last slice is kept in bf16, and a NaN is refused naming its element")
    func slicedRangeAndFiniteness() throws {
        let rows = 6, cols = 10
        var values = (0..<(rows * cols)).map { Float($0 % 13) - 6 }
        values[rows * cols - 3] = 70000
        var writer = SafetensorsWriter()
        writer.add("wide", shape: [rows, cols], values: values)
        var bad = values
        bad[42] = .nan
        writer.add("bad", shape: [rows, cols], values: bad)
        let path = TestScratch.path("sliced", suffix: ".safetensors")
        try writer.write(to: path)
        let table = TensorTable(try SafetensorsFile(path: path), weightDType: .f16, sliceValues: 2 * cols)
        let wide = try table.weight("wide", rows: rows, cols: cols)
        #expect(wide.dtype == .bf16)
        #expect(wide.toMatrix().array == WeightMatrix(rows: rows, cols: cols, values: values, dtype: .f16).toMatrix().array)
        #expect(throws: ShadowError.badTensor(path: path, tensor: "bad", reason: "holds a non-finite value (nan at element 42)")) {
            try table.weight("bad", rows: rows, cols: cols)
        }
    }
}
