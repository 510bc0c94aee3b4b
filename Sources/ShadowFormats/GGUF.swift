// GGUF, llama.cpp's single-file format (ggml docs/gguf.md). Little-endian throughout:
//   "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count,
//   kv*:     string key, u32 value type, value   (string = u64 length + UTF-8 bytes, no NUL;
//                                                 array = u32 element type, u64 count, elements)
//   tensor*: string name, u32 n_dims, u64 ne[n_dims] (innermost first), u32 ggml type,
//            u64 offset from the start of the data section
//   padding to `general.alignment` (default 32), then the data section.
// Every count and length is checked against the bytes that remain before anything is allocated,
// so a short file that claims a huge array throws instead of allocating.

/// One metadata value, in the type the file stores it with (GGUF value types 0–12).
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8)
    case int8(Int8)
    case uint16(UInt16)
    case int16(Int16)
    case uint32(UInt32)
    case int32(Int32)
    case uint64(UInt64)
    case int64(Int64)
    case float32(Float)
    case float64(Double)
    case bool(Bool)
    case string(String)
    case array(GGUFArray)

    /// The GGUF name of the type, for error messages: "uint32", "array of string".
    public var typeName: String {
        if case .array(let array) = self { return "array of \(array.elementTypeName)" }
        return caseName(self)
    }
}

/// The name of `value`'s enum case, which the cases above spell as GGUF names its types. Read by
/// reflection on the case, never by describing the payload (a 49152-string vocabulary).
private func caseName(_ value: some Sendable) -> String {
    Mirror(reflecting: value).children.first?.label ?? "\(value)"
}

/// A metadata array, stored as one Swift array of its element type: the SmolLM2 vocabulary is an
/// array of 49152 strings, and one enum box per element would cost time and memory for nothing.
public enum GGUFArray: Sendable, Equatable {
    case uint8([UInt8])
    case int8([Int8])
    case uint16([UInt16])
    case int16([Int16])
    case uint32([UInt32])
    case int32([Int32])
    case uint64([UInt64])
    case int64([Int64])
    case float32([Float])
    case float64([Double])
    case bool([Bool])
    case string([String])
    case array([GGUFArray])

    public var count: Int {
        switch self {
        case .uint8(let v): return v.count
        case .int8(let v): return v.count
        case .uint16(let v): return v.count
        case .int16(let v): return v.count
        case .uint32(let v): return v.count
        case .int32(let v): return v.count
        case .uint64(let v): return v.count
        case .int64(let v): return v.count
        case .float32(let v): return v.count
        case .float64(let v): return v.count
        case .bool(let v): return v.count
        case .string(let v): return v.count
        case .array(let v): return v.count
        }
    }

    /// The elements one by one, for generic code; the typed cases are faster.
    public var elements: [GGUFValue] { prefix(count) }

    /// The first `n` elements, each in its own `GGUFValue`.
    func prefix(_ n: Int) -> [GGUFValue] {
        switch self {
        case .uint8(let v): return v.prefix(n).map { .uint8($0) }
        case .int8(let v): return v.prefix(n).map { .int8($0) }
        case .uint16(let v): return v.prefix(n).map { .uint16($0) }
        case .int16(let v): return v.prefix(n).map { .int16($0) }
        case .uint32(let v): return v.prefix(n).map { .uint32($0) }
        case .int32(let v): return v.prefix(n).map { .int32($0) }
        case .uint64(let v): return v.prefix(n).map { .uint64($0) }
        case .int64(let v): return v.prefix(n).map { .int64($0) }
        case .float32(let v): return v.prefix(n).map { .float32($0) }
        case .float64(let v): return v.prefix(n).map { .float64($0) }
        case .bool(let v): return v.prefix(n).map { .bool($0) }
        case .string(let v): return v.prefix(n).map { .string($0) }
        case .array(let v): return v.prefix(n).map { .array($0) }
        }
    }

    var elementTypeName: String { caseName(self) }
}

/// A GGUF file (version 2 or 3), memory-mapped: metadata and tensor infos are parsed at open,
/// tensor data is read only when asked for.
public final class GGUFFile: TensorSource {
    public let path: String
    public let file: MappedFile
    public let version: Int
    /// Metadata by key, and the keys in file order.
    public let metadata: [String: GGUFValue]
    public let metadataKeys: [String]
    public let tensorInfos: [String: TensorInfo]
    public let tensorNames: [String]
    /// `general.alignment`, or 32 when absent.
    public let alignment: Int
    /// Where the data section starts, from the start of the file.
    public let dataOffset: Int

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        var reader = GGUFReader(bytes: file.bytes, path: path)

        let magic = try reader.read(UInt32.self, "the magic")
        guard magic == 0x4655_4747 else {  // "GGUF" read as a little-endian u32
            throw ShadowError.corruptFile(path: path, reason: "not a GGUF file (magic \(hexBytes(magic)))")
        }
        let rawVersion = try reader.read(UInt32.self, "the version")
        guard rawVersion == 2 || rawVersion == 3 else {
            if rawVersion.byteSwapped == 2 || rawVersion.byteSwapped == 3 {
                throw ShadowError.corruptFile(path: path, reason: "big-endian GGUF is not supported")
            }
            throw ShadowError.corruptFile(path: path, reason: "unsupported GGUF version \(rawVersion) (this reader reads 2 and 3)")
        }
        version = Int(rawVersion)
        // The smallest tensor info is 24 bytes and the smallest key/value 13; this bounds the counts
        // by the file size before any array is reserved.
        let tensorCount = try reader.readCount("the tensor count", elementSize: 24)
        let keyCount = try reader.readCount("the metadata count", elementSize: 13)

        var metadata: [String: GGUFValue] = [:]
        var metadataKeys: [String] = []
        metadata.reserveCapacity(keyCount)
        metadataKeys.reserveCapacity(keyCount)
        for index in 0..<keyCount {
            let key = try reader.readString("the key of metadata entry \(index)")
            let type = try reader.read(UInt32.self, "the type of key \"\(key)\"")
            let value = try reader.readValue(type: type, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw ShadowError.corruptFile(path: path, reason: "key \"\(key)\": appears twice")
            }
            metadataKeys.append(key)
        }
        self.metadata = metadata
        self.metadataKeys = metadataKeys

        var alignment = 32
        if let value = metadata["general.alignment"] {
            guard let a = value.integer, a > 0, a <= 1 << 30, a & (a - 1) == 0 else {
                throw ShadowError.corruptFile(
                    path: path, reason: "key \"general.alignment\": must be a power of two, found \(value.typeName) \(value)")
            }
            alignment = a
        }
        self.alignment = alignment

        struct RawTensor { let name: String; let dtype: TensorDType; let shape: [Int]; let offset: Int; let byteCount: Int }
        var raw: [RawTensor] = []
        raw.reserveCapacity(tensorCount)
        for index in 0..<tensorCount {
            let name = try reader.readString("the name of tensor \(index)")
            func bad(_ reason: String) -> ShadowError { .badTensor(path: path, tensor: name, reason: reason) }
            let rank = try reader.read(UInt32.self, "the rank of tensor \"\(name)\"")
            guard (1...4).contains(rank) else { throw bad("has \(rank) dimensions (GGUF allows 1 to 4)") }
            var ne: [Int] = []
            var elements = 1
            for _ in 0..<rank {
                let n = try reader.read(UInt64.self, "the shape of tensor \"\(name)\"")
                guard n > 0 else { throw bad("has a zero dimension") }
                guard n <= UInt64(Int.max) else { throw bad("has a negative or oversized dimension \(n)") }
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(n))
                guard !overflow else { throw bad("has more elements than fit in memory") }
                ne.append(Int(n))
                elements = product
            }
            let typeID = try reader.read(UInt32.self, "the type of tensor \"\(name)\"")
            let offset = try reader.read(UInt64.self, "the offset of tensor \"\(name)\"")
            guard let dtype = TensorDType(ggmlType: typeID) else { throw bad("unknown ggml type \(typeID)") }
            // ggml quantises along rows: the innermost dimension must be whole blocks.
            guard ne[0] % dtype.blockSize == 0 else {
                throw bad("innermost dimension \(ne[0]) is not a multiple of the \(dtype.rawValue) block size \(dtype.blockSize)")
            }
            guard let byteCount = dtype.byteCount(elements: elements) else { throw bad("byte size overflows") }
            guard offset <= UInt64(Int.max) else { throw bad("offset \(offset) runs past the end of the file") }
            guard Int(offset) % alignment == 0 else {
                throw bad("offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            raw.append(RawTensor(name: name, dtype: dtype, shape: ne.reversed(), offset: Int(offset), byteCount: byteCount))
        }

        // The data section starts at the end of the header, rounded up to the alignment.
        let headerEnd = reader.offset
        dataOffset = (headerEnd + alignment - 1) / alignment * alignment
        let fileSize = file.byteCount
        var infos: [String: TensorInfo] = [:]
        infos.reserveCapacity(raw.count)
        for tensor in raw {
            func bad(_ reason: String) -> ShadowError { .badTensor(path: path, tensor: tensor.name, reason: reason) }
            let (start, overflow1) = dataOffset.addingReportingOverflow(tensor.offset)
            let (end, overflow2) = start.addingReportingOverflow(tensor.byteCount)
            guard !overflow1, !overflow2, end <= fileSize else {
                throw bad("data runs past the end of the file (offset \(tensor.offset) + \(tensor.byteCount) bytes "
                          + "after the data section at \(dataOffset); file has \(fileSize) bytes)")
            }
            let info = TensorInfo(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape,
                                  byteOffset: start, byteCount: tensor.byteCount)
            guard infos.updateValue(info, forKey: tensor.name) == nil else { throw bad("appears twice") }
        }
        try checkNoOverlap(path: path, infos: infos.values)
        tensorInfos = infos
        tensorNames = raw.map(\.name)
    }

    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let info = try info(name)
        return UnsafeRawBufferPointer(rebasing: file.bytes[info.byteOffset..<(info.byteOffset + info.byteCount)])
    }

    public func floats(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        let info = try info(name)
        try convertTensor(path: path, info: info, typeName: info.dtype.rawValue, bytes: try rawBytes(name), into: buffer)
    }

    // MARK: Metadata accessors. Each throws an error that names the key and the type it found.

    public func value(_ key: String) throws -> GGUFValue {
        guard let value = metadata[key] else {
            throw ShadowError.corruptFile(path: path, reason: "key \"\(key)\": missing")
        }
        return value
    }

    public func string(_ key: String) throws -> String {
        let value = try value(key)
        guard case .string(let s) = value else { throw mismatch(key, "a string", value) }
        return s
    }

    /// Any integer type, if it fits in `Int`.
    public func int(_ key: String) throws -> Int {
        let value = try value(key)
        guard let n = value.integer else { throw mismatch(key, "an integer", value) }
        return n
    }

    /// float32 or float64 (narrowed), or an integer: some converters write whole numbers as integers.
    public func float(_ key: String) throws -> Float {
        let value = try value(key)
        switch value {
        case .float32(let x): return x
        case .float64(let x): return Float(x)
        default:
            guard let n = value.integer else { throw mismatch(key, "a number", value) }
            return Float(n)
        }
    }

    public func bool(_ key: String) throws -> Bool {
        let value = try value(key)
        guard case .bool(let b) = value else { throw mismatch(key, "a bool", value) }
        return b
    }

    public func stringArray(_ key: String) throws -> [String] {
        let value = try value(key)
        guard case .array(.string(let strings)) = value else { throw mismatch(key, "an array of strings", value) }
        return strings
    }

    /// An array of any integer type whose elements all fit in `Int`.
    public func intArray(_ key: String) throws -> [Int] {
        let value = try value(key)
        let result: [Int]?
        switch value {
        case .array(.uint8(let v)): result = v.map(Int.init)
        case .array(.int8(let v)): result = v.map(Int.init)
        case .array(.uint16(let v)): result = v.map(Int.init)
        case .array(.int16(let v)): result = v.map(Int.init)
        case .array(.uint32(let v)): result = v.map(Int.init)
        case .array(.int32(let v)): result = v.map(Int.init)
        case .array(.int64(let v)): result = v.map(Int.init)
        case .array(.uint64(let v)): result = v.allSatisfy({ $0 <= UInt64(Int.max) }) ? v.map { Int($0) } : nil
        default: result = nil
        }
        guard let result else { throw mismatch(key, "an array of integers", value) }
        return result
    }

    /// An array of float32, float64 (narrowed) or integers.
    public func floatArray(_ key: String) throws -> [Float] {
        let value = try value(key)
        switch value {
        case .array(.float32(let v)): return v
        case .array(.float64(let v)): return v.map { Float($0) }
        default:
            guard case .array = value, let ints = try? intArray(key) else { throw mismatch(key, "an array of numbers", value) }
            return ints.map { Float($0) }
        }
    }

    public func stringIfPresent(_ key: String) throws -> String? { metadata[key] == nil ? nil : try string(key) }
    public func intIfPresent(_ key: String) throws -> Int? { metadata[key] == nil ? nil : try int(key) }
    public func floatIfPresent(_ key: String) throws -> Float? { metadata[key] == nil ? nil : try float(key) }
    public func boolIfPresent(_ key: String) throws -> Bool? { metadata[key] == nil ? nil : try bool(key) }
    public func stringArrayIfPresent(_ key: String) throws -> [String]? { metadata[key] == nil ? nil : try stringArray(key) }
    public func intArrayIfPresent(_ key: String) throws -> [Int]? { metadata[key] == nil ? nil : try intArray(key) }
    public func floatArrayIfPresent(_ key: String) throws -> [Float]? { metadata[key] == nil ? nil : try floatArray(key) }

    private func mismatch(_ key: String, _ expected: String, _ found: GGUFValue) -> ShadowError {
        // Numbers are shown (a uint64 too large for Int); strings and arrays may be long.
        let shown: String
        switch found {
        case .string, .array: shown = found.typeName
        default: shown = "\(found.typeName) \(found)"
        }
        return .corruptFile(path: path, reason: "key \"\(key)\": expected \(expected), found \(shown)")
    }
}

extension GGUFValue: CustomStringConvertible {
    /// The value as text; long arrays show their first elements and their length.
    public var description: String {
        switch self {
        case .uint8(let n): return String(n)
        case .int8(let n): return String(n)
        case .uint16(let n): return String(n)
        case .int16(let n): return String(n)
        case .uint32(let n): return String(n)
        case .int32(let n): return String(n)
        case .uint64(let n): return String(n)
        case .int64(let n): return String(n)
        case .float32(let x): return String(x)
        case .float64(let x): return String(x)
        case .bool(let b): return String(b)
        case .string(let s): return s.debugDescription  // quoted, newlines escaped: stays one line
        case .array(let array):
            let shown = array.prefix(8).map(\.description).joined(separator: ", ")
            return array.count > 8 ? "[\(shown), … (\(array.count) elements)]" : "[\(shown)]"
        }
    }

    /// The value as an `Int` when it is an integer that fits.
    var integer: Int? {
        switch self {
        case .uint8(let n): return Int(n)
        case .int8(let n): return Int(n)
        case .uint16(let n): return Int(n)
        case .int16(let n): return Int(n)
        case .uint32(let n): return Int(n)
        case .int32(let n): return Int(n)
        case .uint64(let n): return Int(exactly: n)
        case .int64(let n): return Int(n)
        default: return nil
        }
    }
}

/// Throws if two tensors' byte ranges overlap (shared by the GGUF and safetensors readers).
func checkNoOverlap(path: String, infos: some Sequence<TensorInfo>) throws {
    // Names break ties, so two tensors on the same bytes are named in the same order every run.
    let sorted = infos.sorted { ($0.byteOffset, $0.byteCount, $0.name) < ($1.byteOffset, $1.byteCount, $1.name) }
    for (previous, next) in zip(sorted, sorted.dropFirst()) where next.byteOffset < previous.byteOffset + previous.byteCount {
        throw ShadowError.badTensor(path: path, tensor: next.name,
                                    reason: "data overlaps tensor \"\(previous.name)\"")
    }
}

private func hexBytes(_ value: UInt32) -> String {
    let digits = Array("0123456789abcdef")
    return (0..<4).map { i in
        let byte = Int(truncatingIfNeeded: value >> (8 * UInt32(i))) & 0xFF
        return String([digits[byte >> 4], digits[byte & 15]])
    }.joined(separator: " ")
}

/// A cursor over the header bytes; every read checks what remains and throws an error naming
/// what it was reading.
private struct GGUFReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset = 0

    /// Arrays may nest; GGUF files in the wild use one level. The limit keeps a crafted file from
    /// recursing the stack away.
    static let maxDepth = 8

    var remaining: Int { bytes.count - offset }

    func truncated(_ what: String) -> ShadowError {
        .corruptFile(path: path, reason: "truncated header: file ends at byte \(bytes.count) while reading \(what)")
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw truncated(what()) }
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(littleEndian: value)
    }

    /// Reads a u64 count of elements of at least `elementSize` bytes each and checks that they can
    /// fit in the rest of the file.
    mutating func readCount(_ what: @autoclosure () -> String, elementSize: Int) throws -> Int {
        let count = try read(UInt64.self, what())
        guard count <= UInt64(remaining / elementSize) else {
            throw ShadowError.corruptFile(
                path: path, reason: "\(what()) \(count) cannot fit in the \(remaining) bytes left in the file")
        }
        return Int(count)
    }

    mutating func readString(_ what: @autoclosure () -> String) throws -> String {
        let length = try read(UInt64.self, what())
        guard length <= UInt64(remaining) else {
            throw ShadowError.corruptFile(
                path: path, reason: "\(what()): string length \(length) runs past the end of the file")
        }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + Int(length))])
        guard let string = String(validating: slice, as: UTF8.self) else {
            throw ShadowError.corruptFile(path: path, reason: "\(what()): invalid UTF-8")
        }
        offset += Int(length)
        return string
    }

    mutating func readValue(type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        let what = "the value of key \"\(key)\""
        switch type {
        case 0: return .uint8(try read(UInt8.self, what))
        case 1: return .int8(try read(Int8.self, what))
        case 2: return .uint16(try read(UInt16.self, what))
        case 3: return .int16(try read(Int16.self, what))
        case 4: return .uint32(try read(UInt32.self, what))
        case 5: return .int32(try read(Int32.self, what))
        case 6: return .float32(Float(bitPattern: try read(UInt32.self, what)))
        case 7: return .bool(try readBool(key))
        case 8: return .string(try readString(what))
        case 9: return .array(try readArray(key: key, depth: depth))
        case 10: return .uint64(try read(UInt64.self, what))
        case 11: return .int64(try read(Int64.self, what))
        case 12: return .float64(Double(bitPattern: try read(UInt64.self, what)))
        default: throw ShadowError.corruptFile(path: path, reason: "key \"\(key)\": unknown value type \(type)")
        }
    }

    mutating func readBool(_ key: String) throws -> Bool {
        let byte = try read(UInt8.self, "the value of key \"\(key)\"")
        guard byte <= 1 else { throw ShadowError.corruptFile(path: path, reason: "key \"\(key)\": bool byte \(byte) is not 0 or 1") }
        return byte == 1
    }

    mutating func readArray(key: String, depth: Int) throws -> GGUFArray {
        guard depth < Self.maxDepth else {
            throw ShadowError.corruptFile(path: path, reason: "key \"\(key)\": arrays nested more than \(Self.maxDepth) deep")
        }
        let what = "the array of key \"\(key)\""
        let type = try read(UInt32.self, what)
        // The smallest encoding of one element: a string is at least its u64 length, an array at
        // least its u32 type and u64 count.
        let elementSize: Int
        switch type {
        case 0, 1, 7: elementSize = 1
        case 2, 3: elementSize = 2
        case 4, 5, 6: elementSize = 4
        case 8, 10, 11, 12: elementSize = 8
        case 9: elementSize = 12
        default: throw ShadowError.corruptFile(path: path, reason: "key \"\(key)\": unknown array element type \(type)")
        }
        let count = try readCount("the length of \(what)", elementSize: elementSize)
        switch type {
        case 0: return .uint8(readNumbers(count))
        case 1: return .int8(readNumbers(count))
        case 2: return .uint16(readNumbers(count))
        case 3: return .int16(readNumbers(count))
        case 4: return .uint32(readNumbers(count))
        case 5: return .int32(readNumbers(count))
        case 6: return .float32(readNumbers(count))
        case 7:
            let bytes: [UInt8] = readNumbers(count)
            guard bytes.allSatisfy({ $0 <= 1 }) else {
                throw ShadowError.corruptFile(path: path, reason: "key \"\(key)\": bool array holds a byte that is not 0 or 1")
            }
            return .bool(bytes.map { $0 == 1 })
        case 8:
            var strings: [String] = []
            strings.reserveCapacity(count)
            for index in 0..<count { strings.append(try readString("element \(index) of key \"\(key)\"")) }
            return .string(strings)
        case 9:
            var arrays: [GGUFArray] = []
            arrays.reserveCapacity(count)
            for _ in 0..<count { arrays.append(try readArray(key: key, depth: depth + 1)) }
            return .array(arrays)
        case 10: return .uint64(readNumbers(count))
        case 11: return .int64(readNumbers(count))
        default: return .float64(readNumbers(count))
        }
    }

    /// Copies `count` little-endian numbers; `readCount` has checked that they are in the file.
    mutating func readNumbers<T: BitwiseCopyable>(_ count: Int) -> [T] {
        // An empty array must not come from `unsafeUninitializedCapacity: 0`: that stores the count
        // into the shared empty-array singleton, a data race between threads (TSan reports it).
        guard count > 0 else { return [] }
        let size = count * MemoryLayout<T>.stride
        let values = [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if size > 0 {
                UnsafeMutableRawBufferPointer(buffer).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + size)]))
            }
            initialized = count
        }
        offset += size
        return values
    }
}
