import Foundation

// safetensors (huggingface/safetensors README): a u64 little-endian header length N, N bytes of
// UTF-8 JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
// then the data; offsets count from the first byte after the header. Tensors are row-major and
// need not be aligned. Zero-element tensors are legal (begin == end).

/// One `.safetensors` file, memory-mapped. F32, F16, BF16 and F64 tensors convert to floats; tensors of
/// other dtypes (an int64 `position_ids` buffer, say) are listed and only fail when read.
public final class SafetensorsFile: TensorSource {
    public let path: String
    public let file: MappedFile
    /// The header's `__metadata__` (empty when absent).
    public let metadata: [String: String]
    public let tensorInfos: [String: TensorInfo]
    /// In the order of their data in the file (JSON objects carry no order of their own).
    public let tensorNames: [String]
    /// Where the data section starts: 8 + the header length.
    public let dataOffset: Int

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let bytes = file.bytes
        guard bytes.count >= 8 else {
            throw ShadowError.corruptFile(path: path, reason: "too short for a safetensors header (\(bytes.count) bytes)")
        }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard headerLength <= UInt64(bytes.count - 8) else {
            // A header opens with "{": a file that does not (JSON, text) is no safetensors file at all.
            let opening = bytes.count > 8 ? bytes[8] : 0
            let text = bytes.prefix(8).allSatisfy { (0x20...0x7E).contains($0) || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
            let json = bytes.prefix(64).first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }.map { $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: "[") } ?? false
            throw ShadowError.corruptFile(
                path: path, reason: opening == UInt8(ascii: "{")
                    ? "header length \(headerLength) runs past the end of the file (\(bytes.count) bytes)"
                    : text ? "not a safetensors file: it is \(json ? "JSON" : "text") (a safetensors file starts with its header's length in 8 bytes)"
                    : "not a safetensors file (its first 8 bytes give a header length of \(headerLength), past the end of its \(bytes.count) bytes)")
        }
        dataOffset = 8 + Int(headerLength)
        let dataSize = bytes.count - dataOffset

        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<dataOffset])
        guard let text = String(validating: headerBytes, as: UTF8.self) else {
            throw ShadowError.corruptFile(path: path, reason: "header is not valid UTF-8")
        }
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: Data(text.utf8))
        } catch let error as DecodingError {
            throw Self.describe(error, path: path)
        } catch {
            throw ShadowError.corruptFile(path: path, reason: "header is not valid JSON")
        }
        metadata = header.metadata
        // JSONDecoder keeps one of two entries of the same name without a word (Python's json the
        // other): a header that names a tensor, or its metadata, twice is refused.
        if case .object(let members)? = try? JSONParser.parse([UInt8](text.utf8)) {
            var seen = Set<String>()
            if let twice = members.first(where: { !seen.insert($0.key).inserted }) {
                throw ShadowError.corruptFile(path: path, reason: "the header names \"\(twice.key)\" twice")
            }
        }

        var infos: [String: TensorInfo] = [:]
        infos.reserveCapacity(header.tensors.count)
        for (name, entry) in header.tensors {
            func bad(_ reason: String) -> ShadowError { .badTensor(path: path, tensor: name, reason: reason) }
            guard let dtype = TensorDType(safetensorsName: entry.dtype) else { throw bad("unknown dtype \"\(entry.dtype)\"") }
            var elements = 1
            for n in entry.shape {
                guard n >= 0 else { throw bad("has a negative dimension in shape \(entry.shape)") }
                let (product, overflow) = elements.multipliedReportingOverflow(by: n)
                guard !overflow else { throw bad("shape \(entry.shape) has more elements than fit in memory") }
                elements = product
            }
            let offsets = entry.dataOffsets
            guard offsets.count == 2 else { throw bad("data_offsets must be [begin, end], found \(offsets)") }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end else { throw bad("data_offsets [\(begin), \(end)] are not a range") }
            guard end <= dataSize else {
                throw bad("data_offsets [\(begin), \(end)] run past the end of the data (\(dataSize) bytes)")
            }
            guard let byteCount = dtype.byteCount(elements: elements), byteCount == end - begin else {
                throw bad("data_offsets [\(begin), \(end)] hold \(end - begin) bytes, but \(entry.dtype) × \(entry.shape) "
                          + "needs \(elements) × \(dtype.bytesPerBlock)")
            }
            infos[name] = TensorInfo(name: name, dtype: dtype, shape: entry.shape,
                                     byteOffset: dataOffset + begin, byteCount: byteCount)
        }
        try checkNoOverlap(path: path, infos: infos.values)
        try Self.checkEveryByteHeld(path: path, infos: infos.values, dataOffset: dataOffset, fileSize: bytes.count)
        tensorInfos = infos
        tensorNames = infos.values.sorted { ($0.byteOffset, $0.name) < ($1.byteOffset, $1.name) }.map(\.name)
    }

    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let info = try info(name)
        return UnsafeRawBufferPointer(rebasing: file.bytes[info.byteOffset..<(info.byteOffset + info.byteCount)])
    }

    public func floats(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        let info = try info(name)
        try convertTensor(path: path, info: info, typeName: info.dtype.safetensorsName ?? info.dtype.rawValue,
                          bytes: try rawBytes(name), into: buffer)
    }

    /// The format lets no byte of the data belong to no tensor (so that no other file hides in
    /// a gap or a tail), and the reference reader refuses such files: a file that goes on after
    /// its last tensor was most likely joined to something or written twice.
    private static func checkEveryByteHeld(path: String, infos: some Sequence<TensorInfo>, dataOffset: Int, fileSize: Int) throws {
        var heldUpTo = dataOffset
        for info in infos.sorted(by: { ($0.byteOffset, $0.byteCount, $0.name) < ($1.byteOffset, $1.byteCount, $1.name) }) {
            guard info.byteOffset == heldUpTo else {
                throw ShadowError.badTensor(path: path, tensor: info.name, reason:
                    "data starts at \(info.byteOffset - dataOffset), after \(info.byteOffset - heldUpTo) bytes of the data that belong to no tensor")
            }
            heldUpTo = info.byteOffset + info.byteCount
        }
        guard heldUpTo == fileSize else {
            throw ShadowError.corruptFile(path: path, reason:
                "\(fileSize - heldUpTo) bytes after the last tensor's data belong to no tensor (the header accounts for \(heldUpTo - dataOffset) of the data's \(fileSize - dataOffset) bytes)")
        }
    }

    /// The header as JSON gives it: every key but `__metadata__` is a tensor.
    private struct Header: Decodable {
        struct Entry: Decodable {
            let dtype: String
            let shape: [Int]
            let dataOffsets: [Int]
            enum CodingKeys: String, CodingKey { case dtype, shape, dataOffsets = "data_offsets" }

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                dtype = try container.decode(String.self, forKey: .dtype)
                shape = try container.decode([Integer].self, forKey: .shape).map(\.value)
                dataOffsets = try container.decode([Integer].self, forKey: .dataOffsets).map(\.value)
            }
        }
        /// An `Int` that says which number was wrong: on Linux, JSONDecoder reports 2.5 or 1e23
        /// for an `Int` as "not valid JSON" without a coding path.
        struct Integer: Decodable {
            let value: Int
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let value = try? container.decode(Int.self) {
                    self.value = value
                } else if let number = try? container.decode(Double.self) {
                    throw DecodingError.dataCorruptedError(in: container, debugDescription: "\(number) is not an integer in range")
                } else {
                    value = try container.decode(Int.self)
                }
            }
        }
        struct Key: CodingKey {
            let stringValue: String
            init(stringValue: String) { self.stringValue = stringValue }
            var intValue: Int? { nil }
            init?(intValue: Int) { nil }
        }

        var tensors: [(String, Entry)] = []
        var metadata: [String: String] = [:]

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            // In name order: the first bad entry named in an error is the same on every run.
            for key in container.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) {
                if key.stringValue == "__metadata__" {
                    metadata = try container.decode([String: String].self, forKey: key)
                } else {
                    tensors.append((key.stringValue, try container.decode(Entry.self, forKey: key)))
                }
            }
        }
    }

    /// One line from a decoding error, naming the tensor whose entry was wrong.
    private static func describe(_ error: DecodingError, path: String) -> ShadowError {
        let context: DecodingError.Context
        let problem: String
        switch error {
        case .typeMismatch(let type, let c): context = c; problem = "expected \(JSONValue.kindName(of: type))"
        case .valueNotFound(let type, let c): context = c; problem = "expected \(JSONValue.kindName(of: type)), found null"
        case .keyNotFound(let key, let c): context = c; problem = "missing \"\(key.stringValue)\""
        case .dataCorrupted(let c): context = c; problem = c.debugDescription
        @unknown default: return .corruptFile(path: path, reason: "header is not valid JSON")
        }
        let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        guard let tensor = keys.first else {
            if case .dataCorrupted = error { return .corruptFile(path: path, reason: "header is not valid JSON") }
            return .corruptFile(path: path, reason: "header: \(problem)")
        }
        let field = keys.dropFirst().joined(separator: " ")
        if tensor == "__metadata__" {
            return .corruptFile(path: path, reason: "header __metadata__\(field.isEmpty ? "" : " " + field): \(problem)")
        }
        return .badTensor(path: path, tensor: tensor, reason: "header entry\(field.isEmpty ? "" : " " + field): \(problem)")
    }
}

/// A Hugging Face checkpoint directory: one `model.safetensors` or shards listed by
/// `model.safetensors.index.json` (its `weight_map` from tensor name to file); without an index,
/// every `*.safetensors` in the directory. A tensor name in two files is an error.
public final class SafetensorsCollection: TensorSource {
    /// The directory.
    public let path: String
    public let files: [SafetensorsFile]
    public let tensorInfos: [String: TensorInfo]
    /// File by file (in index or name order), each in its own file order.
    public let tensorNames: [String]
    private let owners: [String: SafetensorsFile]

    public init(directory: String) throws {
        path = directory
        guard try existingFileKind(atPath: directory) == .directory else {
            throw ShadowError.corruptFile(path: directory, reason: "not a directory")
        }
        let root = URL(fileURLWithPath: directory)
        let indexPath = root.appendingPathComponent("model.safetensors.index.json").path

        let fileNames: [String]
        var weightMap: [String: String]? = nil
        if try fileKind(atPath: indexPath) != nil {
            let map = try Self.readWeightMap(indexPath)
            // Shards in name order: model-00001-of-00003 first.
            var seen = Set<String>()
            fileNames = map.values.sorted().filter { seen.insert($0).inserted }
            weightMap = map
        } else {
            let listing: [String]
            do {
                listing = try FileManager.default.contentsOfDirectory(atPath: directory)
            } catch {
                throw ShadowError.corruptFile(path: directory, reason: "cannot list the directory")
            }
            fileNames = listing.filter { $0.hasSuffix(".safetensors") }.sorted()
            guard !fileNames.isEmpty else {
                throw ShadowError.fileNotFound(path: root.appendingPathComponent("*.safetensors").path)
            }
        }

        var files: [SafetensorsFile] = []
        var owners: [String: SafetensorsFile] = [:]
        var infos: [String: TensorInfo] = [:]
        var names: [String] = []
        for fileName in fileNames {
            let file = try SafetensorsFile(path: root.appendingPathComponent(fileName).path)
            for name in file.tensorNames {
                if let other = owners[name] {
                    throw ShadowError.badTensor(path: directory, tensor: name,
                                                reason: "appears in both \(other.path) and \(file.path)")
                }
                owners[name] = file
                infos[name] = file.tensorInfos[name]
                names.append(name)
            }
            files.append(file)
        }
        if let weightMap {
            for (name, fileName) in weightMap.sorted(by: { $0.key < $1.key }) {
                guard let owner = owners[name], URL(fileURLWithPath: owner.path).lastPathComponent == fileName else {
                    throw ShadowError.badTensor(path: indexPath, tensor: name, reason: "not found in \(fileName)")
                }
            }
        }
        self.files = files
        self.owners = owners
        tensorInfos = infos
        tensorNames = names
    }

    /// The file that holds the tensor; its `TensorInfo.byteOffset` counts from the start of that file.
    public func file(containing name: String) throws -> SafetensorsFile {
        guard let file = owners[name] else {
            throw ShadowError.badTensor(path: path, tensor: name, reason: "no such tensor")
        }
        return file
    }

    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        try file(containing: name).rawBytes(name)
    }

    public func floats(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        try file(containing: name).floats(name, into: buffer)
    }

    private struct Index: Decodable {
        let weightMap: [String: String]
        enum CodingKeys: String, CodingKey { case weightMap = "weight_map" }
    }

    private static func readWeightMap(_ indexPath: String) throws -> [String: String] {
        let data = try readWholeFile(indexPath)
        let index: Index
        do {
            index = try JSONDecoder().decode(Index.self, from: data)
        } catch {
            throw ShadowError.badJSON(path: indexPath, key: "weight_map", reason: "expected an object from tensor name to file name")
        }
        // Shards sit beside the index; a name that climbs out of the directory is not a shard.
        for (name, fileName) in index.weightMap where fileName.contains("/") || fileName == ".." || fileName.isEmpty {
            throw ShadowError.badJSON(path: indexPath, key: "weight_map", reason: "tensor \"\(name)\" maps to \"\(fileName)\", not a file name")
        }
        return index.weightMap
    }
}
