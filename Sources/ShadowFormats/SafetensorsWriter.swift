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
/// Every failure is one line naming the path and the cause in words.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent()
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ShadowError.failed("cannot write \(path): it is a directory")
        }
        try createDirectory(directory.path)
        let temporary = partialPath(for: path)
        guard let file = fopen(temporary, "wb") else {
            throw ShadowError.failed("cannot write \(path): cannot create a file in \(directory.path) (\(describe(errno: errno)))")
        }
        let written = data.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        let writeError = written == data.count ? 0 : errno
        let closeError = fclose(file) == 0 ? 0 : errno
        if writeError != 0 || closeError != 0 {
            try? FileManager.default.removeItem(atPath: temporary)
            throw ShadowError.failed("cannot write \(path): \(describe(errno: writeError != 0 ? writeError : closeError))")
        }
        do {
            try moveIntoPlace(temporary, to: path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    public static func write(_ text: String, to path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    /// Where this process builds `path` before renaming it into place (`.NAME.PID.partial` beside
    /// it), after removing what killed writers of the same target left there.
    public static func partialPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path), directory = url.deletingLastPathComponent()
        removeStalePartials(of: url.lastPathComponent, in: directory.path)
        return directory.appendingPathComponent(".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).partial").path
    }

    /// Renames a finished file or directory over `path` (atomic within one file system).
    public static func moveIntoPlace(_ source: String, to path: String) throws {
        guard rename(source, path) == 0 else {
            throw ShadowError.failed("cannot write \(path): \(describe(errno: errno))")
        }
    }

    /// Creates the directory `path` and its missing parents (nothing when it exists). The error
    /// names the directory and the cause: a file in the way, a parent that cannot be created,
    /// no permission.
    public static func createDirectory(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ShadowError.failed("cannot create directory \(path): a file of that name exists") }
            return
        }
        // Foundation reports a file in place of a parent without its cause: find it first.
        var ancestor = (path as NSString).deletingLastPathComponent
        while !ancestor.isEmpty && ancestor != "/" && !FileManager.default.fileExists(atPath: ancestor, isDirectory: &isDirectory) {
            ancestor = (ancestor as NSString).deletingLastPathComponent
        }
        if !ancestor.isEmpty && ancestor != "/" && !isDirectory.boolValue {
            throw ShadowError.failed("cannot create directory \(path): \(ancestor) is a file, not a directory")
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw ShadowError.failed("cannot create directory \(path): \(describe(error))")
        }
    }

    /// The system's words for an error number ("No such file or directory").
    static func describe(errno code: Int32) -> String {
        code == 0 ? "unknown error" : String(cString: strerror(code))
    }

    /// The POSIX cause of a Foundation file error in words, not its `Error Domain=…` dump.
    public static func describe(_ error: any Error) -> String {
        let nsError = error as NSError
        if let underlying = (nsError.userInfo[NSUnderlyingErrorKey] as? any Error).map({ $0 as NSError }),
           underlying.domain == NSPOSIXErrorDomain {
            return describe(errno: Int32(underlying.code))
        }
        if nsError.domain == NSPOSIXErrorDomain { return describe(errno: Int32(nsError.code)) }
        return nsError.localizedFailureReason ?? nsError.localizedDescription
    }

    /// Temporary files (or merge directories) a killed writer of the same target left behind (`.NAME.PID.partial`):
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
