import Foundation
import ShadowKernels

/// Writes safetensors files of F32 or F16 tensors (traces, predictors, training checkpoints). The
/// file appears atomically: it is written to a temporary name beside the target and renamed, so a
/// killed run never leaves half a file.
///
/// The file is streamed: the header first (the tensors' sizes decide it), then each tensor's bytes
/// from its own buffer, so writing never holds a second copy of the data (a training checkpoint of
/// a large predictor once held 1.2 GB more while it was encoded whole).
public struct SafetensorsWriter {
    public struct Tensor {
        public let name: String
        public let shape: [Int]
        /// How the file stores the values: `.f32`, or `.f16` rounded to nearest even.
        public let dtype: TensorDType
        private let storage: Storage

        private enum Storage {
            case owned([Float])
            /// Floats the caller keeps alive and unchanged until the file is written.
            case borrowed(UnsafeBufferPointer<Float>)
        }

        public init(name: String, shape: [Int], values: [Float], dtype: TensorDType = .f32) {
            self.init(name: name, shape: shape, storage: .owned(values), dtype: dtype)
        }

        /// A tensor read from `values` when the file is written, not copied: the buffer must stay
        /// valid and unchanged until `write(to:)` or `encoded()` returns.
        public init(name: String, shape: [Int], borrowing values: UnsafeBufferPointer<Float>, dtype: TensorDType = .f32) {
            self.init(name: name, shape: shape, storage: .borrowed(values), dtype: dtype)
        }

        private init(name: String, shape: [Int], storage: Storage, dtype: TensorDType) {
            self.name = name
            self.shape = shape
            self.storage = storage
            self.dtype = dtype
            // fatalError, not precondition: a release build drops a precondition's message.
            guard shape.reduce(1, *) == count else { fatalError("\(name): shape \(shape) needs \(shape.reduce(1, *)) values, got \(count)") }
            guard dtype == .f32 || dtype == .f16 else { fatalError("\(name): the writer stores F32 or F16, not \(dtype)") }
        }

        /// The values (a copy, for a borrowed tensor).
        public var values: [Float] { withValues { Array($0) } }

        var count: Int {
            switch storage {
            case .owned(let values): return values.count
            case .borrowed(let buffer): return buffer.count
            }
        }

        var byteCount: Int { count * (dtype == .f16 ? 2 : 4) }

        func withValues<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
            switch storage {
            case .owned(let values): return try values.withUnsafeBufferPointer(body)
            case .borrowed(let buffer): return try body(buffer)
            }
        }
    }

    public var tensors: [Tensor] = []
    public var metadata: [String: String] = [:]

    public init(metadata: [String: String] = [:]) { self.metadata = metadata }

    public mutating func add(_ name: String, shape: [Int], values: [Float], dtype: TensorDType = .f32) {
        tensors.append(Tensor(name: name, shape: shape, values: values, dtype: dtype))
    }

    /// Adds a tensor whose floats are read from `values` when the file is written; the buffer must
    /// stay valid and unchanged until then.
    public mutating func add(_ name: String, shape: [Int], borrowing values: UnsafeBufferPointer<Float>, dtype: TensorDType = .f32) {
        tensors.append(Tensor(name: name, shape: shape, borrowing: values, dtype: dtype))
    }

    /// u64 header length and the JSON header, padded with spaces to 8 bytes; and the data's size.
    func header() throws -> (bytes: Data, dataSize: Int) {
        var header: [String: Any] = [:]
        var offset = 0
        for tensor in tensors {
            let bytes = tensor.byteCount
            header[tensor.name] = ["dtype": tensor.dtype.safetensorsName!, "shape": tensor.shape,
                                   "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var bytes = Data(capacity: 8 + json.count)
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
        bytes.append(json)
        return (bytes, offset)
    }

    /// Hands the file's bytes to `sink` in order: the header, then every tensor straight from its
    /// buffer (F16 narrowed a block at a time), so nothing the size of the data is allocated.
    func stream(_ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try header().bytes.withUnsafeBytes { try sink($0) }
        // 64 Ki halves (128 KB): large enough that each write is cheap, small enough to stay in cache.
        let block = 1 << 16
        var half: [UInt16] = []
        for tensor in tensors {
            try tensor.withValues { values in
                guard let base = values.baseAddress, !values.isEmpty else { return }
                if tensor.dtype == .f16 {
                    if half.isEmpty { half = [UInt16](repeating: 0, count: block) }
                    try half.withUnsafeMutableBufferPointer { half in
                        for start in stride(from: 0, to: values.count, by: block) {
                            let count = min(block, values.count - start)
                            HalfVectors.narrow(half.baseAddress!, base + start, count: count)
                            try sink(UnsafeRawBufferPointer(start: half.baseAddress!, count: count * 2))
                        }
                    }
                } else {
                    try sink(UnsafeRawBufferPointer(values))
                }
            }
        }
    }

    /// The file's bytes: u64 header length, JSON header (padded to 8 bytes), then the data.
    public func encoded() throws -> Data {
        let (header, dataSize) = try header()
        var data = Data(capacity: header.count + dataSize)
        try stream { data.append(contentsOf: $0) }
        return data
    }

    /// Writes the file atomically, streaming it to the temporary file.
    public func write(to path: String) throws {
        try AtomicFile.write(to: path) { sink in try stream(sink) }
    }
}
