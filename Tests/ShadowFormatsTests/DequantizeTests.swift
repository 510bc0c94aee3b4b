import Foundation
import Testing
import ShadowFormats
import ShadowTestSupport

/// Writes one tensor of `dtype` holding `data` into a GGUF file and reads it back as floats.
func roundTrip(_ dtype: TensorDType, ne: [UInt64], data: [UInt8]) throws -> [Float] {
    var gguf = GGUFBuilder()
    gguf.tensor("t", ne: ne, type: dtype, data: data)
    return try withFile(gguf.bytes()) { path in try GGUFFile(path: path).floats("t") }
}

func halfBits(_ x: Float) -> [UInt8] { f16Bytes([x]) }

/// The plain-Swift reading of ggml's block layouts, element by element: the naive twin of the
/// reader's pointer loops.
func naiveDequantize(_ dtype: TensorDType, _ bytes: [UInt8]) -> [Float] {
    func half(_ i: Int) -> Float { Float(Float16(bitPattern: UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8)) }
    func u32(_ i: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[i + $1]) << (8 * UInt32($1)) } }
    var out: [Float] = []
    for start in stride(from: 0, to: bytes.count, by: dtype.bytesPerBlock) {
        for e in 0..<32 {
            let nibble = { (qs: Int) -> Int in
                let byte = Int(bytes[start + qs + e % 16])
                return e < 16 ? byte & 15 : byte >> 4
            }
            switch dtype {
            case .q8_0: out.append(Float(Int8(bitPattern: bytes[start + 2 + e])) * half(start))
            case .q4_0: out.append(Float(nibble(2) - 8) * half(start))
            case .q4_1: out.append(Float(nibble(4)) * half(start) + half(start + 2))
            case .q5_0:
                let q = nibble(6) + Int((u32(start + 2) >> UInt32(e)) & 1) * 16
                out.append(Float(q - 16) * half(start))
            case .q5_1:
                let q = nibble(8) + Int((u32(start + 4) >> UInt32(e)) & 1) * 16
                out.append(Float(q) * half(start) + half(start + 2))
            default: fatalError("no naive twin for \(dtype)")
            }
        }
    }
    return out
}

@Suite("Dequantisation")
struct DequantizeTests {
    @Test("f32, f16 (with subnormals and a tail past the 8-wide loop) and bf16 convert exactly")
    func plainTypes() throws {
        let values: [Float] = [1, -2, 0.5, 65504, 6.1035156e-05, 5.9604645e-08, 0, -0.0, 3.140625, -1e-3,
                               1000, 2, 4, 8, 16, 32, 64, 128, 0.25]
        #expect(try roundTrip(.f32, ne: [19], data: f32Bytes(values)) == values)
        let halves = values.map { Float(Float16($0)) }
        #expect(try roundTrip(.f16, ne: [19], data: f16Bytes(values)) == halves)
        let bf16 = try roundTrip(.bf16, ne: [5], data: bf16Bytes([0x3F80, 0xC020, 0x4049, 0x0000, 0x7F80]))
        #expect(bf16 == [1, -2.5, 3.140625, 0, .infinity])
    }

    @Test("Q8_0: value d·q")
    func q8_0() throws {
        let block1 = halfBits(0.5) + (0..<32).map { UInt8(bitPattern: Int8($0 * 8 - 128)) }
        let block2 = halfBits(-0.25) + (0..<32).map { UInt8(bitPattern: Int8($0 - 16)) }
        let values = try roundTrip(.q8_0, ne: [64], data: block1 + block2)
        let first: [Float] = (0..<32).map { Float(4 * $0 - 64) }
        let second: [Float] = (0..<32).map { Float($0 - 16) * -0.25 }
        #expect(values == first + second)
        #expect([values[0], values[31], values[32]] == [-64, 60, 4])
    }

    /// 16 bytes whose low nibble is j and high nibble 15 − j.
    static let nibbles: [UInt8] = (0..<16).map { UInt8($0 | (15 - $0) << 4) }

    @Test("Q4_0: value d·(q − 8); low nibbles are elements 0–15, high nibbles 16–31")
    func q4_0() throws {
        let values = try roundTrip(.q4_0, ne: [32], data: halfBits(2) + Self.nibbles)
        let low: [Float] = (0..<16).map { Float(2 * $0 - 16) }
        let high: [Float] = (0..<16).map { Float(14 - 2 * $0) }
        #expect(values == low + high)
    }

    @Test("Q4_1: value d·q + m")
    func q4_1() throws {
        let values = try roundTrip(.q4_1, ne: [32], data: halfBits(0.25) + halfBits(-1) + Self.nibbles)
        let low: [Float] = (0..<16).map { Float($0) * 0.25 - 1 }
        let high: [Float] = (0..<16).map { Float(15 - $0) * 0.25 - 1 }
        #expect(values == low + high)
        #expect([values[0], values[15], values[16], values[31]] == [-1, 2.75, 2.75, -1])
    }

    /// Fifth bits for elements 0, 16 and 31.
    static let fifthBits: [UInt8] = [0x01, 0x00, 0x01, 0x80]

    @Test("Q5_0: value d·(q − 16), the fifth bit of element j is bit j")
    func q5_0() throws {
        let values = try roundTrip(.q5_0, ne: [32], data: halfBits(1) + Self.fifthBits + Self.nibbles)
        let low: [Float] = (0..<16).map { Float($0 - 16) }
        let high: [Float] = (0..<16).map { Float(15 - $0 - 16) }
        var expected = low + high
        expected[0] = 0; expected[16] = 15; expected[31] = 0
        #expect(values == expected)
    }

    @Test("Q5_1: value d·q + m")
    func q5_1() throws {
        let values = try roundTrip(.q5_1, ne: [32], data: halfBits(0.5) + halfBits(1) + Self.fifthBits + Self.nibbles)
        let low: [Float] = (0..<16).map { Float($0) * 0.5 + 1 }
        let high: [Float] = (0..<16).map { Float(15 - $0) * 0.5 + 1 }
        var expected = low + high
        expected[0] = 9; expected[16] = 16.5; expected[31] = 9
        #expect(values == expected)
    }

    @Test("random blocks agree with the naive reading", arguments: [TensorDType.q8_0, .q4_0, .q4_1, .q5_0, .q5_1])
    func randomBlocks(dtype: TensorDType) throws {
        var generator = SplitMix64(seed: 42)
        let blocks = 3 * 4  // a [3, 128] matrix
        var bytes = (0..<(blocks * dtype.bytesPerBlock)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        // Scales must be finite halves: overwrite d (and m) of each block with values in ±2.
        let scaleCount = (dtype == .q4_1 || dtype == .q5_1) ? 2 : 1
        for b in 0..<blocks {
            for s in 0..<scaleCount {
                let scale = halfBits(Float.random(in: -2...2, using: &generator))
                bytes[b * dtype.bytesPerBlock + 2 * s] = scale[0]
                bytes[b * dtype.bytesPerBlock + 2 * s + 1] = scale[1]
            }
        }
        let values = try roundTrip(dtype, ne: [128, 3], data: bytes)
        expectClose(values, naiveDequantize(dtype, bytes), tolerance: 1e-6)
    }

    @Test("rows read a slice at a time are the whole tensor's rows bit for bit, for plain and quantised types; rows past the end are refused, naming the tensor",
          arguments: [TensorDType.f32, .f16, .q8_0, .q4_1, .q5_0])
    func rowSlices(dtype: TensorDType) throws {
        var generator = SplitMix64(seed: 43)
        let rows = 5, cols = 128
        let data: [UInt8]
        switch dtype {
        case .f32, .f16:
            let values = (0..<(rows * cols)).map { _ in Float.random(in: -3...3, using: &generator) }
            data = dtype == .f32 ? f32Bytes(values) : f16Bytes(values)
        default:
            let blocks = rows * cols / 32
            var bytes = (0..<(blocks * dtype.bytesPerBlock)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for b in 0..<blocks {   // finite scales (and minimums), as above
                for s in 0..<((dtype == .q4_1) ? 2 : 1) {
                    let scale = halfBits(Float.random(in: -2...2, using: &generator))
                    bytes[b * dtype.bytesPerBlock + 2 * s] = scale[0]
                    bytes[b * dtype.bytesPerBlock + 2 * s + 1] = scale[1]
                }
            }
            data = bytes
        }
        var gguf = GGUFBuilder()
        gguf.tensor("t", ne: [UInt64(cols), UInt64(rows)], type: dtype, data: data)
        try withFile(gguf.bytes()) { path in
            let file = try GGUFFile(path: path)
            let whole = try file.floats("t")
            for slice in [0..<1, 1..<3, 3..<5, 0..<5, 2..<2] {
                var part = [Float](repeating: .nan, count: slice.count * cols)
                try part.withUnsafeMutableBufferPointer { try file.floats("t", rows: slice, into: $0) }
                #expect(part.map(\.bitPattern) == whole[(slice.lowerBound * cols)..<(slice.upperBound * cols)].map(\.bitPattern), "\(slice)")
            }
            var part = [Float](repeating: 0, count: 2 * cols)
            #expect(throws: ShadowError.self) { try part.withUnsafeMutableBufferPointer { try file.floats("t", rows: 4..<6, into: $0) } }
            do {
                try part.withUnsafeMutableBufferPointer { try file.floats("t", rows: 4..<6, into: $0) }
            } catch let error as ShadowError {
                #expect(error.description.contains(path) && error.description.contains("\"t\""), "\(error)")
            }
        }
    }
}

/// Blocks of the K-quant and IQ4 types with the floats the `gguf` Python package dequantises them
/// to, written by scripts/reference/quant_fixtures.py (two random blocks and one of all 0xFF bits
/// per type, as a GGUF tensor of shape `ne` holds them).
enum QuantFixture {
    struct Entry: Decodable {
        let type: String
        let ne: [UInt64]
        let bytes: String
        let values: String
    }

    private struct File: Decodable { let types: [Entry] }

    static func entry(_ dtype: TensorDType) throws -> Entry {
        let url = Bundle.module.url(forResource: "quants", withExtension: "json", subdirectory: "Fixtures")!
        let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
        let found = file.types.first { $0.type == dtype.rawValue }
        return try #require(found, "no fixture for \(dtype)")
    }

    static func bytes(hex: String) -> [UInt8] {
        let digits = Array(hex.utf8).map { $0 <= UInt8(ascii: "9") ? $0 - UInt8(ascii: "0") : $0 - UInt8(ascii: "a") + 10 }
        return stride(from: 0, to: digits.count, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
    }

    /// The little-endian float32 bit patterns of `values`.
    static func floatBits(hex: String) -> [UInt32] {
        let raw = bytes(hex: hex)
        return stride(from: 0, to: raw.count, by: 4).map { i in
            (0..<4).reduce(0) { $0 | UInt32(raw[i + $1]) << (8 * UInt32($1)) }
        }
    }
}

@Suite("Dequantisation of K-quants and IQ4")
struct KQuantDequantizeTests {
    static let types: [TensorDType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq4_nl, .iq4_xs]

    // Bit for bit: gguf's numpy code takes the same products in the same order as ggml and as ours
    // (d·scale first, then times the quant, then minus dmin·min), in float32 without fused multiply-adds.
    @Test("each type reads back through a GGUF file bit for bit as the gguf package dequantises it",
          arguments: types)
    func matchesReference(dtype: TensorDType) throws {
        let entry = try QuantFixture.entry(dtype)
        let data = QuantFixture.bytes(hex: entry.bytes)
        #expect(data.count == dtype.byteCount(elements: 768))
        let values = try roundTrip(dtype, ne: entry.ne, data: data)
        let expected = QuantFixture.floatBits(hex: entry.values)
        #expect(values.count == expected.count)
        let mismatches = zip(values, expected).enumerated().filter { $0.element.0.bitPattern != $0.element.1 }
        #expect(mismatches.isEmpty, """
            \(mismatches.count) of \(values.count) differ; first at \(mismatches.first.map(\.offset) ?? -1): \
            \(mismatches.first.map { "\($0.element.0) vs \(Float(bitPattern: $0.element.1))" } ?? "")
            """)
    }

    @Test("every type in the list is convertible and the other 256-element types are still refused")
    func convertibility() {
        for dtype in Self.types { #expect(dtype.canConvertToFloats, "\(dtype)") }
        for dtype in [TensorDType.iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s, .iq1_m, .tq1_0, .tq2_0] {
            #expect(!dtype.canConvertToFloats, "\(dtype)")
        }
    }

    @Test("a K-quant or IQ4 tensor whose data is cut short is refused at open, naming the tensor",
          arguments: types)
    func truncated(dtype: TensorDType) throws {
        let entry = try QuantFixture.entry(dtype)
        // Two rows claimed, only the first row's blocks present, and the file ends there.
        let data = Array(QuantFixture.bytes(hex: entry.bytes).prefix(dtype.byteCount(elements: Int(entry.ne[0]))!))
        var gguf = GGUFBuilder()
        gguf.tensor("blk.0.ffn_down.weight", ne: [entry.ne[0], 2], type: dtype, data: data)
        try expectGGUFError(gguf.bytes(), mentioning: ["\"blk.0.ffn_down.weight\"", "past the end"])
    }

    @Test("a K-quant row that is not whole super-blocks is refused at open (576 columns, as SmolLM2's hidden size)")
    func partialSuperBlock() throws {
        var gguf = GGUFBuilder()
        gguf.tensor("blk.0.attn_q.weight", ne: [576, 1], type: .q4_K, data: [UInt8](repeating: 0, count: 324))
        try expectGGUFError(gguf.bytes(), mentioning: ["\"blk.0.attn_q.weight\"", "576", "q4_K block size 256"])
    }
}
