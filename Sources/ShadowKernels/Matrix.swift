import Foundation

/// A row-major fp32 matrix in 64-byte-aligned memory that it owns. Weights live here: a
/// `[out, in]` projection has one contiguous row per output unit, and the transposed layouts
/// (down projection, attention output) have one contiguous row per neuron or head dimension.
public final class Matrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let pointer: UnsafeMutablePointer<Float>

    public var count: Int { rows * cols }

    public init(rows: Int, cols: Int) {
        // Guards, not preconditions: this module builds -Ounchecked.
        guard rows >= 0 && cols >= 0 else { fatalError("a matrix of \(rows) × \(cols)") }
        self.rows = rows
        self.cols = cols
        let bytes = max(rows * cols, 1) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(rows * cols, 1))
        pointer.initialize(repeating: 0, count: max(rows * cols, 1))
    }

    public convenience init(rows: Int, cols: Int, values: [Float]) {
        guard values.count == rows * cols else { fatalError("matrix needs \(rows * cols) values, got \(values.count)") }
        self.init(rows: rows, cols: cols)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    public func row(_ r: Int) -> UnsafeMutablePointer<Float> { pointer + r * cols }

    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    /// A new matrix holding the transpose: `[rows, cols]` → `[cols, rows]`.
    public func transposed() -> Matrix {
        let t = Matrix(rows: cols, cols: rows)
        Matrix.transpose(pointer, rows: rows, cols: cols, into: t.pointer)
        return t
    }

    /// Writes the transpose of the row-major `(rows, cols)` values at `source` to `out` as
    /// `(cols, rows)`, in tiles so both sides stay in cache.
    public static func transpose(_ source: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>) {
        let tileSize = 32
        for r0 in stride(from: 0, to: rows, by: tileSize) {
            for c0 in stride(from: 0, to: cols, by: tileSize) {
                for r in r0..<min(r0 + tileSize, rows) {
                    for c in c0..<min(c0 + tileSize, cols) {
                        out[c * rows + r] = source[r * cols + c]
                    }
                }
            }
        }
    }
}
