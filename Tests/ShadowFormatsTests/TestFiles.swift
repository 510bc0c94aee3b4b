import Foundation
import Testing
import ShadowFormats

// Small writers for the files the tests read, plus the checks every suite shares. The writers
// can produce malformed files on purpose: tensor offsets, dimensions and type ids are whatever
// the test says.

/// Little-endian bytes under construction.
struct Bytes {
    var data: [UInt8] = []

    mutating func u8(_ v: UInt8) { data.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func f32(_ v: Float) { u32(v.bitPattern) }
    /// A GGUF string: u64 length, then the bytes.
    mutating func string(_ s: String) { bytes(Array(s.utf8)) }
    mutating func bytes(_ raw: [UInt8]) { u64(UInt64(raw.count)); data.append(contentsOf: raw) }

    /// Writes each tensor's data at its offset from the current end (where the data section
    /// starts), zero-filling gaps; a later placement may overlap an earlier one.
    mutating func place(_ placements: [(Int, [UInt8])]) {
        let dataStart = data.count
        for (offset, bytes) in placements {
            let end = dataStart + offset + bytes.count
            if data.count < end { data.append(contentsOf: [UInt8](repeating: 0, count: end - data.count)) }
            data.replaceSubrange((dataStart + offset)..<end, with: bytes)
        }
    }
}

/// A GGUF file as the tests describe it.
struct GGUFBuilder {
    struct Tensor {
        var name: String
        var ne: [UInt64]          // innermost first, as GGUF stores it
        var type: UInt32
        var data: [UInt8]
        var offset: UInt64? = nil // nil: the next aligned position after the previous tensor
        var nameBytes: [UInt8]? = nil
    }

    var version: UInt32 = 3
    var metadata: [(String, GGUFValue)] = []
    var tensors: [Tensor] = []
    /// Where tensor data is placed; write `general.alignment` into `metadata` to tell the reader.
    var alignment = 32

    mutating func add(_ name: String, _ value: GGUFValue) { metadata.append((name, value)) }

    mutating func tensor(_ name: String, ne: [UInt64], type: TensorDType, data: [UInt8], offset: UInt64? = nil) {
        tensors.append(Tensor(name: name, ne: ne, type: type.ggmlType!, data: data, offset: offset))
    }

    func bytes() -> [UInt8] {
        var out = Bytes()
        out.data.append(contentsOf: Array("GGUF".utf8))
        out.u32(version)
        out.u64(UInt64(tensors.count))
        out.u64(UInt64(metadata.count))
        for (key, value) in metadata {
            out.string(key)
            Self.write(value, to: &out)
        }
        var next = 0
        var placements: [(Int, [UInt8])] = []
        for tensor in tensors {
            if let nameBytes = tensor.nameBytes { out.bytes(nameBytes) } else { out.string(tensor.name) }
            out.u32(UInt32(tensor.ne.count))
            for n in tensor.ne { out.u64(n) }
            out.u32(tensor.type)
            let offset = tensor.offset ?? UInt64((next + alignment - 1) / alignment * alignment)
            out.u64(offset)
            // Offsets far beyond the file are for tests that expect the reader to refuse them.
            if offset < 1 << 32 {
                placements.append((Int(offset), tensor.data))
                next = Int(offset) + tensor.data.count
            }
        }
        while out.data.count % alignment != 0 { out.u8(0) }
        out.place(placements)
        return out.data
    }

    static func typeID(_ value: GGUFValue) -> UInt32 {
        switch value {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }

    static func write(_ value: GGUFValue, to out: inout Bytes) {
        out.u32(typeID(value))
        writePayload(value, to: &out)
    }

    static func writePayload(_ value: GGUFValue, to out: inout Bytes) {
        switch value {
        case .uint8(let v): out.u8(v)
        case .int8(let v): out.u8(UInt8(bitPattern: v))
        case .uint16(let v): out.u16(v)
        case .int16(let v): out.u16(UInt16(bitPattern: v))
        case .uint32(let v): out.u32(v)
        case .int32(let v): out.u32(UInt32(bitPattern: v))
        case .uint64(let v): out.u64(v)
        case .int64(let v): out.u64(UInt64(bitPattern: v))
        case .float32(let v): out.u32(v.bitPattern)
        case .float64(let v): out.u64(v.bitPattern)
        case .bool(let v): out.u8(v ? 1 : 0)
        case .string(let v): out.string(v)
        case .array(let array):
            // The element type of an empty array still comes from its case.
            let elementType: UInt32
            switch array {
            case .uint8: elementType = 0
            case .int8: elementType = 1
            case .uint16: elementType = 2
            case .int16: elementType = 3
            case .uint32: elementType = 4
            case .int32: elementType = 5
            case .float32: elementType = 6
            case .bool: elementType = 7
            case .string: elementType = 8
            case .array: elementType = 9
            case .uint64: elementType = 10
            case .int64: elementType = 11
            case .float64: elementType = 12
            }
            out.u32(elementType)
            out.u64(UInt64(array.count))
            for element in array.elements { writePayload(element, to: &out) }
        }
    }
}

/// A safetensors file as the tests describe it.
struct SafetensorsBuilder {
    struct Tensor {
        var name: String
        var dtype: String
        var shape: [Int]
        var data: [UInt8]
        var offsets: (Int, Int)? = nil  // nil: packed after the previous tensor
    }
    var tensors: [Tensor] = []
    var metadata: [String: String] = [:]
    /// Pads the header to a multiple of this (the reference writer uses 8); 1 leaves it as is.
    var headerPadding = 8
    /// Replaces the generated JSON entirely.
    var rawHeader: String? = nil

    mutating func tensor(_ name: String, dtype: String, shape: [Int], data: [UInt8], offsets: (Int, Int)? = nil) {
        tensors.append(Tensor(name: name, dtype: dtype, shape: shape, data: data, offsets: offsets))
    }

    func bytes() -> [UInt8] {
        var entries: [String] = []
        var next = 0
        var placements: [(Int, [UInt8])] = []
        if !metadata.isEmpty {
            let fields = metadata.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\"\($0.value)\"" }
            entries.append("\"__metadata__\":{\(fields.joined(separator: ","))}")
        }
        for tensor in tensors {
            let (begin, end) = tensor.offsets ?? (next, next + tensor.data.count)
            entries.append("\"\(tensor.name)\":{\"dtype\":\"\(tensor.dtype)\",\"shape\":\(tensor.shape),\"data_offsets\":[\(begin),\(end)]}")
            placements.append((begin, tensor.data))
            next = max(next, begin + tensor.data.count)
        }
        var header = Array((rawHeader ?? "{\(entries.joined(separator: ","))}").utf8)
        while header.count % headerPadding != 0 { header.append(0x20) }
        var out = Bytes()
        out.u64(UInt64(header.count))
        out.data.append(contentsOf: header)
        out.place(placements)
        return out.data
    }
}

/// A GGUF header with no tensors and one key whose type and payload the test writes, padded
/// with zeros to `size` bytes.
func tinyGGUF(key: String = "k", type: UInt32, _ payload: (inout Bytes) -> Void, padTo size: Int = 100) -> [UInt8] {
    var out = Bytes()
    out.data.append(contentsOf: Array("GGUF".utf8))
    out.u32(3); out.u64(0); out.u64(1)
    out.string(key)
    out.u32(type)
    payload(&out)
    while out.data.count < size { out.u8(0) }
    return out.data
}

/// A fresh directory for one test, removed afterwards.
func withTemporaryDirectory<T>(_ body: (URL) throws -> T) throws -> T {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("ShadowFormatsTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try body(directory)
}

/// Writes `bytes` to a file named `name` in a fresh directory and passes its path.
func withFile<T>(_ bytes: [UInt8], named name: String = "test.gguf", _ body: (String) throws -> T) throws -> T {
    try withTemporaryDirectory { directory in
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return try body(url.path)
    }
}

/// Expects `body` to throw a one-line `ShadowError` whose description contains every fragment.
func expectShadowError(mentioning fragments: [String], sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected an error mentioning \(fragments)", sourceLocation: sourceLocation)
    } catch let error as ShadowError {
        let text = error.description
        for fragment in fragments {
            #expect(text.contains(fragment), "\"\(text)\" does not mention \"\(fragment)\"", sourceLocation: sourceLocation)
        }
        #expect(!text.contains("\n"), "error is not one line: \(text)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a ShadowError, got \(error)", sourceLocation: sourceLocation)
    }
}

/// Reads a GGUF file written from `bytes` and expects a ShadowError naming the file and `fragments`.
func expectGGUFError(_ bytes: [UInt8], mentioning fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
    try withFile(bytes) { path in
        expectShadowError(mentioning: [path] + fragments, sourceLocation: sourceLocation) { _ = try GGUFFile(path: path) }
    }
}

/// Compares two float arrays element by element; on failure reports the first mismatches and the
/// largest difference.
func expectClose(_ actual: [Float], _ expected: [Float], tolerance: Float = 1e-6,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual.count == expected.count else {
        Issue.record("expected \(expected.count) values, got \(actual.count)", sourceLocation: sourceLocation)
        return
    }
    var mismatches: [String] = []
    var largest: Float = 0
    for i in actual.indices {
        let difference = abs(actual[i] - expected[i])
        let bad = !(difference <= tolerance * max(1, abs(expected[i]))) && !(actual[i].isNaN && expected[i].isNaN)
        if bad {
            largest = max(largest, difference.isNaN ? .infinity : difference)
            if mismatches.count < 5 { mismatches.append("[\(i)] \(actual[i]) != \(expected[i])") }
        }
    }
    if !mismatches.isEmpty {
        Issue.record("values differ: \(mismatches.joined(separator: ", ")); largest difference \(largest)",
                     sourceLocation: sourceLocation)
    }
}

/// Little-endian bytes of fp32, fp16 and bf16 values.
func f32Bytes(_ values: [Float]) -> [UInt8] {
    var out = Bytes(); for v in values { out.f32(v) }; return out.data
}
func f16Bytes(_ values: [Float]) -> [UInt8] {
    var out = Bytes(); for v in values { out.u16(Float16(v).bitPattern) }; return out.data
}
func bf16Bytes(_ bits: [UInt16]) -> [UInt8] {
    var out = Bytes(); for b in bits { out.u16(b) }; return out.data
}
