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
}
