import ShadowKernels

/// Keys and values of every layer for the tokens seen so far, plus the scratch buffers the
/// forward pass reuses, so decode allocates nothing per token.
///
/// Each (layer, KV group) holds one contiguous `(capacity, headDim)` block of keys and one of
/// values, so attention over a group reads a dense block. Models with 16-bit weights keep the
/// cache in fp16 (`dtype`): half the memory, and half the bytes attention reads per token at long
/// contexts; attention widens the values to fp32 in registers, as the weight kernels do. (Keys
/// and values of the supported models stay far inside fp16's ±65504; the weights, which can
/// exceed it, fall back to bf16 instead, see `WeightMatrix`.)
public final class KVCache: @unchecked Sendable {
    public let shape: TransformerShape
    public let capacity: Int
    /// `.f32` or `.f16`.
    public let dtype: WeightDType
    /// Tokens stored so far (the position of the next token).
    public private(set) var length: Int = 0

    private let storage: UnsafeMutableRawPointer
    private let blockBytes: Int

    /// Memory is reserved, not touched: pages are only made resident as positions are written.
    public init(shape: TransformerShape, capacity: Int, dtype: WeightDType = .f32) {
        // A guard, not a precondition: this module builds -Ounchecked, and another dtype's rows
        // would be sized for one format and written in another.
        guard dtype == .f32 || dtype == .f16 else { fatalError("the KV cache is kept in fp32 or fp16, not \(dtype.rawValue)") }
        guard capacity >= 0 else { fatalError("a KV cache of \(capacity) positions") }
        self.shape = shape
        self.capacity = capacity
        self.dtype = dtype
        blockBytes = dtype.rowBytes(cols: capacity * shape.headDim)
        let total = max(2 * shape.layers * shape.kvHeads * blockBytes, 1)
        storage = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: 64)
    }

    deinit { storage.deallocate() }

    /// Bytes the cache holds when full.
    public var byteCount: Int { 2 * shape.layers * shape.kvHeads * blockBytes }

    /// The `(capacity, headDim)` key block of one layer's KV group.
    public func keys(layer: Int, group: Int) -> UnsafeMutableRawPointer {
        storage + ((layer * 2) * shape.kvHeads + group) * blockBytes
    }

    /// The `(capacity, headDim)` value block of one layer's KV group.
    public func values(layer: Int, group: Int) -> UnsafeMutableRawPointer {
        storage + ((layer * 2 + 1) * shape.kvHeads + group) * blockBytes
    }

    /// Writes `headDim` values from `source` at `position` of a key or value block.
    func write(_ block: UnsafeMutableRawPointer, position: Int, from source: UnsafePointer<Float>) {
        let headDim = shape.headDim
        switch dtype {
        case .f16:
            HalfVectors.narrow(block.assumingMemoryBound(to: UInt16.self) + position * headDim, source, count: headDim)
        default:
            (block.assumingMemoryBound(to: Float.self) + position * headDim).update(from: source, count: headDim)
        }
    }

    /// Rows `0 ..< count` of a key or value block in fp32: the block itself for an fp32 cache,
    /// else widened into the scratch buffer `name`.
    func widened(_ block: UnsafeMutableRawPointer, count: Int, name: String) -> UnsafePointer<Float> {
        switch dtype {
        case .f16:
            let out = buffer(name, rows: count, cols: shape.headDim)
            HalfVectors.widen(out, block.assumingMemoryBound(to: UInt16.self), count: count * shape.headDim)
            return UnsafePointer(out)
        default:
            return UnsafePointer(block.assumingMemoryBound(to: Float.self))
        }
    }

    public var remaining: Int { capacity - length }

    /// Called by a model after all layers have stored `count` new positions.
    public func advance(by count: Int) {
        guard length + count <= capacity else { fatalError("KV cache overflow") }
        length += count
    }

    /// Forgets everything after `newLength` (used to re-score from a shared prefix).
    public func truncate(to newLength: Int) {
        guard newLength <= length else { fatalError("truncating past the cache's length") }
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
