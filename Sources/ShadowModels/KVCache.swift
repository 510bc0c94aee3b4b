import ShadowKernels

/// Keys and values of every layer for the tokens seen so far, plus the scratch buffers the
/// forward pass reuses, so decode allocates nothing per token.
public final class KVCache: @unchecked Sendable {
    public let shape: TransformerShape
    public let capacity: Int
    /// Per layer: `(capacity, kvHeads, headDim)`.
    public let keys: [Matrix]
    public let values: [Matrix]
    /// Tokens stored so far (the position of the next token).
    public private(set) var length: Int = 0

    public init(shape: TransformerShape, capacity: Int) {
        self.shape = shape
        self.capacity = capacity
        keys = (0..<shape.layers).map { _ in Matrix(rows: capacity, cols: shape.kvWidth) }
        values = (0..<shape.layers).map { _ in Matrix(rows: capacity, cols: shape.kvWidth) }
    }

    public var remaining: Int { capacity - length }

    /// Called by a model after all layers have stored `count` new positions.
    public func advance(by count: Int) {
        precondition(length + count <= capacity, "KV cache overflow")
        length += count
    }

    /// Forgets everything after `newLength` (used to re-score from a shared prefix).
    public func truncate(to newLength: Int) {
        precondition(newLength <= length)
        length = newLength
    }

    public func reset() { length = 0 }

    /// Buffers the forward pass reuses from token to token.
    public let scratch = Scratch()

    /// A reusable `(rows, cols)` buffer named `name`; its contents are undefined.
    public func buffer(_ name: String, rows: Int, cols: Int) -> UnsafeMutablePointer<Float> {
        scratch.buffer(name, rows: rows, cols: cols)
    }
}
