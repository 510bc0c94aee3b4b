import Foundation
import Testing
import ShadowFormats
import ShadowTestSupport

// Small writers for the files the tests read, plus the checks every suite shares. The writers
// can produce malformed files on purpose: tensor offsets, dimensions and type ids are whatever
// the test says.

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
