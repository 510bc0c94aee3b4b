/// Named fp32 buffers that grow on demand and are then reused, so a forward pass allocates
/// nothing once warmed up (decode runs the same shapes every token).
public final class Scratch: @unchecked Sendable {
    private var buffers: [String: Matrix] = [:]

    public init() {}

    /// A `(rows, cols)` buffer named `name`; its contents are undefined.
    public func buffer(_ name: String, rows: Int, cols: Int) -> UnsafeMutablePointer<Float> {
        let needed = rows * cols
        if let m = buffers[name], m.count >= needed { return m.pointer }
        let m = Matrix(rows: needed, cols: 1)
        buffers[name] = m
        return m.pointer
    }

    public func buffer(_ name: String, count: Int) -> UnsafeMutablePointer<Float> {
        buffer(name, rows: count, cols: 1)
    }

    /// Whether decode may read the kept rows of a projection from a packed copy (`keptRows`).
    /// Gathered rows cannot be streamed (their addresses jump), so a mask that stays put — shadow,
    /// static or random masks, predicted once per prompt — reads faster from a copy of its rows,
    /// at the cost of holding that copy (the kept fraction of the block weights). Off by default.
    public var packsKeptRows = false
    private var packed: [ObjectIdentifier: (source: WeightMatrix, rows: [Int32], copy: WeightMatrix?)] = [:]

    /// The packed copy of `rows` of `weight`, when packing is on and the same rows were asked for
    /// the time before; nil means read the rows where they are. A new row list replaces the copy,
    /// so a mask that changes every token (DejaVu-style) pays a copy whenever two tokens in a row
    /// keep the same rows of a projection and gains little: packing is for masks that stay put.
    public func keptRows(of weight: WeightMatrix, _ rows: UnsafeBufferPointer<Int32>) -> WeightMatrix? {
        guard packsKeptRows else { return nil }
        let key = ObjectIdentifier(weight)
        guard let entry = packed[key], entry.source === weight, entry.rows.elementsEqual(rows) else {
            packed[key] = (weight, Array(rows), nil)
            return nil
        }
        if let copy = entry.copy { return copy }
        let copy = WeightMatrix(gathering: rows, of: weight)
        packed[key] = (weight, entry.rows, copy)
        return copy
    }

    /// Bytes held by packed copies.
    public var packedBytes: Int { packed.values.reduce(0) { $0 + ($1.copy?.byteCount ?? 0) } }
}
