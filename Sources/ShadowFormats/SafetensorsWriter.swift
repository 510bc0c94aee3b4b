import Foundation
import ShadowKernels

/// Writes safetensors files of F32 or F16 tensors (traces, predictors). The file appears
/// atomically: it is written to a temporary name beside the target and renamed, so a killed run
/// never leaves half a file.
public struct SafetensorsWriter {
    public struct Tensor {
        public let name: String
        public let shape: [Int]
        public let values: [Float]
        /// How the file stores the values: `.f32`, or `.f16` rounded to nearest even.
        public let dtype: TensorDType

        public init(name: String, shape: [Int], values: [Float], dtype: TensorDType = .f32) {
            precondition(shape.reduce(1, *) == values.count, "\(name): shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
            precondition(dtype == .f32 || dtype == .f16, "\(name): the writer stores F32 or F16, not \(dtype)")
            self.name = name
            self.shape = shape
            self.values = values
            self.dtype = dtype
        }

        var byteCount: Int { values.count * (dtype == .f16 ? 2 : 4) }
    }

    public var tensors: [Tensor] = []
    public var metadata: [String: String] = [:]

    public init(metadata: [String: String] = [:]) { self.metadata = metadata }

    public mutating func add(_ name: String, shape: [Int], values: [Float], dtype: TensorDType = .f32) {
        tensors.append(Tensor(name: name, shape: shape, values: values, dtype: dtype))
    }

    /// The file's bytes: u64 header length, JSON header (padded to 8 bytes), then the data.
    public func encoded() throws -> Data {
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
        var data = Data(capacity: 8 + json.count + offset)
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
        data.append(json)
        for tensor in tensors {
            if tensor.dtype == .f16 {
                var half = [UInt16](repeating: 0, count: tensor.values.count)
                HalfVectors.narrow(&half, tensor.values, count: half.count)
                half.withUnsafeBytes { data.append(contentsOf: $0) }
            } else {
                tensor.values.withUnsafeBytes { data.append(contentsOf: $0) }
            }
        }
        return data
    }

    /// Writes the file atomically.
    public func write(to path: String) throws {
        try AtomicFile.write(try encoded(), to: path)
    }
}

/// Whole-file writes that never leave a partial file: write beside the target, then rename.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).partial")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            removeStalePartials(of: url.lastPathComponent, in: directory.path)
            try data.write(to: temporary)
            if rename(temporary.path, path) != 0 {
                throw ShadowError.failed("\(path): cannot rename the finished file into place (errno \(errno))")
            }
        } catch let error as ShadowError {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw ShadowError.failed("\(path): cannot write (\(error.localizedDescription))")
        }
    }

    public static func write(_ text: String, to path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    /// Temporary files a killed writer of the same target left behind (`.NAME.PID.partial`):
    /// they are never read, but a resumed run should not leave them to pile up.
    static func removeStalePartials(of name: String, in directory: String) {
        let prefix = ".\(name).", suffix = ".partial"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for entry in entries where entry.hasPrefix(prefix) && entry.hasSuffix(suffix) {
            let pid = entry.dropFirst(prefix.count).dropLast(suffix.count)
            // Another process still writing the same target keeps its file.
            guard let id = Int32(pid), id == ProcessInfo.processInfo.processIdentifier || kill(id, 0) != 0 else { continue }
            try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(entry))
        }
    }
}
