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

    /// When decode copies a projection's kept rows together (`keptRows`); nil, the default,
    /// never. Gathered rows cannot be streamed (their addresses jump), so a mask that stays put
    /// reads faster from a copy of its rows, at the cost of holding that copy (the kept fraction
    /// of the weights) and of making it once.
    public var packing: PackingRule?
    private var firstSeen: [ObjectIdentifier: Int] = [:]
    private struct PackedRows {
        let source: WeightMatrix
        let rows: [Int32]
        var reads = 0
        var copy: WeightMatrix?
    }
    private var packed: [ObjectIdentifier: PackedRows] = [:]

    /// The packed copy of `rows` of `weight`, once the same rows have been asked for as many
    /// times in a row as `packing` says; nil means read the rows where they are. A new row
    /// list replaces the copy and restarts the count, so a mask that changes every token
    /// (DejaVu-style) packs only rows that happen to stay the same that long.
    public func keptRows(of weight: WeightMatrix, _ rows: UnsafeBufferPointer<Int32>) -> WeightMatrix? {
        guard let packing else { return nil }
        let key = ObjectIdentifier(weight)
        let order = firstSeen[key] ?? firstSeen.count
        if order == firstSeen.count { firstSeen[key] = order }
        var entry = packed[key].flatMap { $0.source === weight && $0.rows.elementsEqual(rows) ? $0 : nil }
            ?? PackedRows(source: weight, rows: Array(rows))
        if entry.copy == nil {
            entry.reads += 1
            if entry.reads >= packing.reads(order: order) { entry.copy = WeightMatrix(gathering: rows, of: weight) }
            packed[key] = entry
        }
        return entry.copy
    }

    /// Bytes held by packed copies.
    public var packedBytes: Int { packed.values.reduce(0) { $0 + ($1.copy?.byteCount ?? 0) } }
}

/// After how many decode reads in a row of the same rows a projection's kept rows are copied.
/// `after` 2 copies at the second read; a larger count is a ski-rental rule: a mask pays the
/// copy only after it has read its rows gathered about as long as the copy takes, so short
/// generations pay nothing and long ones at most about twice the best choice. `spread` spreads
/// the copies of different projections over that many reads (the n-th projection decode first
/// reads waits `n % spread` more), so no single token waits for all of them (SmolLM2 at 50%:
/// ~100 ms at once).
public struct PackingRule: Sendable, Equatable {
    public var after: Int
    public var spread: Int

    public init(after: Int, spread: Int = 1) {
        self.after = after
        self.spread = spread
    }

    /// Reads before the projection first read `order`-th copies its rows.
    func reads(order: Int) -> Int { after + order % max(spread, 1) }
}
