import Foundation
import Testing
import ShadowFormats
import ShadowTestSupport

/// A small valid file: a few metadata entries and two f32 tensors.
func smallGGUF() -> GGUFBuilder {
    var gguf = GGUFBuilder()
    gguf.add("general.architecture", .string("llama"))
    gguf.add("llama.block_count", .uint32(2))
    gguf.add("tokenizer.ggml.tokens", .array(.string(["<s>", "a", "b"])))
    gguf.tensor("a.weight", ne: [4, 2], type: .f32, data: f32Bytes((0..<8).map(Float.init)))
    gguf.tensor("b.bias", ne: [3], type: .f32, data: f32Bytes([1, 2, 3]))
    return gguf
}

@Suite("GGUF reader")
struct GGUFReaderTests {
    static let scalars: [(String, GGUFValue)] = [
        ("u8", .uint8(255)), ("i8", .int8(-128)), ("u16", .uint16(65535)), ("i16", .int16(-32768)),
        ("u32", .uint32(.max)), ("i32", .int32(.min)), ("u64", .uint64(.max)), ("i64", .int64(.min)),
        ("f32", .float32(-1.5e-3)), ("f64", .float64(.pi)), ("yes", .bool(true)), ("no", .bool(false)),
        ("text", .string("héllo wörld ✓ \u{0} end")), ("empty", .string("")),
    ]

    static let arrays: [(String, GGUFValue)] = [
        ("a.u8", .array(.uint8([0, 7, 255]))), ("a.i8", .array(.int8([-1, 2]))),
        ("a.u16", .array(.uint16([1, 65535]))), ("a.i16", .array(.int16([-300, 300]))),
        ("a.u32", .array(.uint32([1, 2, 3]))), ("a.i32", .array(.int32([-7, 0, 7]))),
        ("a.u64", .array(.uint64([1 << 40]))), ("a.i64", .array(.int64([-(1 << 40)]))),
        ("a.f32", .array(.float32([0.5, -2]))), ("a.f64", .array(.float64([1e-300]))),
        ("a.bool", .array(.bool([true, false, true]))), ("a.string", .array(.string(["Ġthe", "", "日本"]))),
        ("a.empty", .array(.int32([]))),
        ("a.nested", .array(.array([.int32([1, 2]), .string(["x"]), .array([.bool([])])]))),
    ]

    @Test("every metadata type is named in errors as GGUF names it")
    func typeNames() {
        #expect((Self.scalars + Self.arrays).map(\.1.typeName) == [
            "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64", "bool", "bool",
            "string", "string", "array of uint8", "array of int8", "array of uint16", "array of int16", "array of uint32",
            "array of int32", "array of uint64", "array of int64", "array of float32", "array of float64", "array of bool",
            "array of string", "array of int32", "array of array",
        ])
    }

    @Test("every metadata type round-trips, in file order")
    func metadataRoundTrip() throws {
        var gguf = GGUFBuilder()
        for (key, value) in Self.scalars + Self.arrays { gguf.add(key, value) }
        try withFile(gguf.bytes()) { path in
            let file = try GGUFFile(path: path)
            #expect(file.version == 3)
            #expect(file.metadataKeys == (Self.scalars + Self.arrays).map(\.0))
            for (key, value) in Self.scalars + Self.arrays {
                #expect(file.metadata[key] == value, "key \(key)")
            }
            #expect(file.tensorNames.isEmpty)
        }
    }

    @Test("accessors convert integers and floats and name the key when the type is wrong")
    func accessors() throws {
        var gguf = GGUFBuilder()
        for (key, value) in Self.scalars + Self.arrays { gguf.add(key, value) }
        try withFile(gguf.bytes()) { path in
            let file = try GGUFFile(path: path)
            #expect(try file.int("u32") == Int(UInt32.max))
            #expect(try file.int("i8") == -128)
            #expect(try file.float("f32") == -1.5e-3)
            #expect(try file.float("f64") == Float(Double.pi))
            #expect(try file.float("u8") == 255)
            #expect(try file.bool("yes"))
            #expect(try file.string("empty") == "")
            #expect(try file.stringArray("a.string") == ["Ġthe", "", "日本"])
            #expect(try file.intArray("a.i32") == [-7, 0, 7])
            #expect(try file.intArray("a.u64") == [1 << 40])
            #expect(try file.floatArray("a.f32") == [0.5, -2])
            #expect(try file.floatArray("a.i16") == [-300, 300])
            #expect(try file.stringIfPresent("absent") == nil)
            #expect(try file.intIfPresent("u16") == 65535)
            expectShadowError(mentioning: [path, "\"absent\"", "missing"]) { _ = try file.string("absent") }
            expectShadowError(mentioning: [path, "\"u32\"", "expected a string", "uint32"]) { _ = try file.string("u32") }
            expectShadowError(mentioning: [path, "\"u64\"", "integer", "uint64 18446744073709551615"]) { _ = try file.int("u64") }  // > Int.max
            expectShadowError(mentioning: [path, "\"a.string\"", "array of string"]) { _ = try file.intArray("a.string") }
            expectShadowError(mentioning: [path, "\"text\""]) { _ = try file.boolIfPresent("text") }
        }
    }

    @Test("tensor infos: reversed shape, file order, absolute offsets")
    func tensorInfos() throws {
        var gguf = smallGGUF()
        gguf.tensor("c.q8", ne: [32, 3, 2], type: .q8_0, data: [UInt8](repeating: 0, count: 6 * 34))
        try withFile(gguf.bytes()) { path in
            let file = try GGUFFile(path: path)
            #expect(file.tensorNames == ["a.weight", "b.bias", "c.q8"])
            let a = try #require(file.tensorInfos["a.weight"])
            #expect(a.shape == [2, 4])
            #expect(a.dtype == .f32)
            #expect(a.byteCount == 32)
            #expect(a.byteOffset == file.dataOffset)
            #expect(file.dataOffset % 32 == 0)
            let c = try #require(file.tensorInfos["c.q8"])
            #expect(c.shape == [2, 3, 32])
            #expect(c.byteCount == 6 * 34)
            // Row-major: element [r, c] of the [2, 4] tensor is r * 4 + c, exactly as stored.
            #expect(try file.floats("a.weight") == (0..<8).map(Float.init))
            #expect(try file.floats("b.bias") == [1, 2, 3])
        }
    }

    @Test("alignment: default 32, general.alignment moves the data section and offsets")
    func alignment() throws {
        var gguf = smallGGUF()
        gguf.add("general.alignment", .uint32(64))
        gguf.alignment = 64
        try withFile(gguf.bytes()) { path in
            let file = try GGUFFile(path: path)
            #expect(file.alignment == 64)
            #expect(file.dataOffset % 64 == 0)
            #expect(file.tensorInfos["b.bias"]?.byteOffset == file.dataOffset + 64)
            #expect(try file.floats("b.bias") == [1, 2, 3])
        }
        try withFile(smallGGUF().bytes()) { path in
            let file = try GGUFFile(path: path)
            #expect(file.alignment == 32)
        }
    }

    @Test("reads version 2")
    func version2() throws {
        var gguf = smallGGUF()
        gguf.version = 2
        try withFile(gguf.bytes()) { path in
            let file = try GGUFFile(path: path)
            #expect(file.version == 2)
            #expect(try file.floats("b.bias") == [1, 2, 3])
        }
    }

    @Test("fills a caller's buffer and rejects one of the wrong size")
    func intoBuffer() throws {
        try withFile(smallGGUF().bytes()) { path in
            let file = try GGUFFile(path: path)
            var values = [Float](repeating: -1, count: 8)
            try values.withUnsafeMutableBufferPointer { try file.floats("a.weight", into: $0) }
            #expect(values == (0..<8).map(Float.init))
            var short = [Float](repeating: 0, count: 7)
            expectShadowError(mentioning: [path, "a.weight", "7"]) {
                try short.withUnsafeMutableBufferPointer { try file.floats("a.weight", into: $0) }
            }
            expectShadowError(mentioning: [path, "no.such", "no such tensor"]) { _ = try file.floats("no.such") }
            #expect(try file.rawBytes("b.bias").count == 12)
        }
    }

    @Test("an unsupported type lists fine and fails only when read, naming tensor and type")
    func unsupportedType() throws {
        var gguf = smallGGUF()
        gguf.tensor("k.weight", ne: [256], type: .iq2_xxs, data: [UInt8](repeating: 0, count: 66))
        try withFile(gguf.bytes()) { path in
            let file = try GGUFFile(path: path)
            #expect(file.tensorInfos["k.weight"]?.dtype == .iq2_xxs)
            #expect(try file.string("general.architecture") == "llama")
            expectShadowError(mentioning: [path, "k.weight", "iq2_xxs", "supported: "]) { _ = try file.floats("k.weight") }
        }
    }
}

@Suite("GGUF reader robustness")
struct GGUFRobustnessTests {
    @Test("rejects a missing file, a directory and an empty file")
    func missing() throws {
        expectShadowError(mentioning: ["/no/such/file.gguf", "no such file"]) { _ = try GGUFFile(path: "/no/such/file.gguf") }
        try withTemporaryDirectory { directory in
            expectShadowError(mentioning: [directory.path, "not a regular file"]) { _ = try GGUFFile(path: directory.path) }
        }
        try expectGGUFError([], mentioning: ["truncated"])
    }

    @Test("rejects bad magic")
    func badMagic() throws {
        var bytes = smallGGUF().bytes()
        bytes[0] = UInt8(ascii: "X")
        try expectGGUFError(bytes, mentioning: ["not a GGUF file"])
    }

    @Test("rejects unsupported versions", arguments: [UInt32(0), 1, 4, 0x0300_0000])
    func badVersion(version: UInt32) throws {
        var gguf = smallGGUF()
        gguf.version = version
        try expectGGUFError(gguf.bytes(), mentioning: [version == 0x0300_0000 ? "big-endian" : "version \(version)"])
    }

    @Test("rejects every truncation of a valid file")
    func truncations() throws {
        let bytes = smallGGUF().bytes()
        try withTemporaryDirectory { directory in
            for length in 0..<bytes.count {
                let url = directory.appendingPathComponent("cut-\(length).gguf")
                try Data(bytes[0..<length]).write(to: url)
                expectShadowError(mentioning: [url.path]) { _ = try GGUFFile(path: url.path) }
            }
        }
    }

    @Test("rejects a 100-byte file claiming a 2^60-element array without allocating it")
    func hugeArray() throws {
        for elementType: UInt32 in [0, 6, 8, 9, 12] {
            let bytes = tinyGGUF(key: "big", type: 9, { $0.u32(elementType); $0.u64(1 << 60) })
            try expectGGUFError(bytes, mentioning: ["\"big\"", "cannot fit"])
        }
    }

    @Test("rejects a string longer than the file")
    func hugeString() throws {
        try expectGGUFError(tinyGGUF(key: "name", type: 8, { $0.u64(1 << 60) }), mentioning: ["\"name\"", "past the end"])
        var out = Bytes()
        out.data.append(contentsOf: Array("GGUF".utf8))
        out.u32(3); out.u64(0); out.u64(1)
        out.u64(UInt64.max)  // the key's own length
        out.data += [UInt8](repeating: 0, count: 16)
        try expectGGUFError(out.data, mentioning: ["key of metadata entry 0"])
    }

    @Test("rejects tensor and key counts the file cannot hold")
    func hugeCounts() throws {
        var out = Bytes()
        out.data.append(contentsOf: Array("GGUF".utf8))
        out.u32(3); out.u64(1 << 60); out.u64(0)
        try expectGGUFError(out.data, mentioning: ["tensor count"])
        out = Bytes()
        out.data.append(contentsOf: Array("GGUF".utf8))
        out.u32(3); out.u64(0); out.u64(.max)
        try expectGGUFError(out.data, mentioning: ["metadata count"])
    }

    @Test("rejects unknown value types, bad bools and arrays nested too deep")
    func badValues() throws {
        try expectGGUFError(tinyGGUF(key: "odd", type: 13, { _ in }), mentioning: ["\"odd\"", "unknown value type 13"])
        try expectGGUFError(tinyGGUF(key: "odd", type: 9, { $0.u32(77); $0.u64(1) }),
                            mentioning: ["\"odd\"", "unknown array element type 77"])
        try expectGGUFError(tinyGGUF(key: "flag", type: 7, { $0.u8(2) }), mentioning: ["\"flag\"", "bool"])
        try expectGGUFError(tinyGGUF(key: "deep", type: 9, { out in
            for _ in 0..<20 { out.u32(9); out.u64(1) }
            out.u32(0); out.u64(0)
        }, padTo: 400), mentioning: ["\"deep\"", "nested"])
    }

    @Test("rejects invalid UTF-8 in keys, strings, string arrays and tensor names")
    func invalidUTF8() throws {
        let bad: [UInt8] = [0x61, 0xC3, 0x28]  // "a", then a two-byte lead without its continuation
        var out = Bytes()
        out.data.append(contentsOf: Array("GGUF".utf8))
        out.u32(3); out.u64(0); out.u64(1)
        out.bytes(bad); out.u32(4); out.u32(1)
        try expectGGUFError(out.data, mentioning: ["key of metadata entry 0", "UTF-8"])
        try expectGGUFError(tinyGGUF(key: "s", type: 8, { $0.bytes(bad) }), mentioning: ["\"s\"", "UTF-8"])
        try expectGGUFError(tinyGGUF(key: "list", type: 9, { $0.u32(8); $0.u64(2); $0.string("ok"); $0.bytes(bad) }),
                            mentioning: ["element 1 of key \"list\"", "UTF-8"])
        var gguf = smallGGUF()
        gguf.tensors[1].nameBytes = bad
        try expectGGUFError(gguf.bytes(), mentioning: ["name of tensor 1", "UTF-8"])
    }

    @Test("rejects duplicate keys and duplicate tensor names")
    func duplicates() throws {
        var gguf = smallGGUF()
        gguf.add("llama.block_count", .uint32(3))
        try expectGGUFError(gguf.bytes(), mentioning: ["\"llama.block_count\"", "twice"])
        gguf = smallGGUF()
        gguf.tensor("b.bias", ne: [3], type: .f32, data: f32Bytes([4, 5, 6]))
        try expectGGUFError(gguf.bytes(), mentioning: ["\"b.bias\"", "twice"])
    }

    @Test("rejects an alignment that is not a power of two or not an integer",
          arguments: [GGUFValue.uint32(0), .uint32(3), .uint32(48), .int32(-32), .string("32")])
    func badAlignment(value: GGUFValue) throws {
        var gguf = smallGGUF()
        gguf.add("general.alignment", value)
        try expectGGUFError(gguf.bytes(), mentioning: ["general.alignment", "power of two"])
    }

    @Test("rejects a tensor that runs past the end of the file")
    func pastEnd() throws {
        var gguf = smallGGUF()
        gguf.tensor("c.weight", ne: [64], type: .f32, data: f32Bytes([1, 2]))  // claims 256 bytes, has 8
        try expectGGUFError(gguf.bytes(), mentioning: ["\"c.weight\"", "past the end"])
        gguf = smallGGUF()
        gguf.tensors[0].offset = UInt64.max - 31  // aligned, but beyond any Int
        try expectGGUFError(gguf.bytes(), mentioning: ["\"a.weight\"", "past the end"])
        gguf = smallGGUF()
        gguf.tensors[0].offset = UInt64(Int.max) - 31  // aligned, fits an Int, overflows when added
        try expectGGUFError(gguf.bytes(), mentioning: ["\"a.weight\"", "past the end"])
        gguf = smallGGUF()
        gguf.tensors[0].offset = 1 << 62
        try expectGGUFError(gguf.bytes(), mentioning: ["\"a.weight\"", "past the end"])
    }

    @Test("rejects overlapping tensors, naming the same two in the same order every run")
    func overlap() throws {
        var gguf = smallGGUF()
        // The bytes of a.weight exactly: a tie that names break, not the order of a dictionary
        // (which changes from process to process: before, about half the runs named them swapped).
        gguf.tensor("c.weight", ne: [8], type: .f32, data: f32Bytes(Array(repeating: 0, count: 8)), offset: 0)
        try expectGGUFError(gguf.bytes(), mentioning: ["tensor \"c.weight\": data overlaps tensor \"a.weight\""])
    }

    @Test("rejects an offset that is not a multiple of the alignment")
    func unaligned() throws {
        var gguf = smallGGUF()
        gguf.tensors[1].offset = 36
        try expectGGUFError(gguf.bytes(), mentioning: ["\"b.bias\"", "alignment 32"])
    }

    @Test("rejects bad dimensions", arguments: [
        ([UInt64](), "0 dimensions"),
        ([1, 1, 1, 1, 1], "5 dimensions"),
        ([4, 0], "zero dimension"),
        ([4, UInt64.max], "negative"),
        ([1 << 32, 1 << 32, 1 << 32], "more elements"),
        ([1 << 62], "overflows"),  // 2^62 floats do not fit in 2^63 bytes
    ])
    func badDimensions(ne: [UInt64], message: String) throws {
        var gguf = smallGGUF()
        gguf.tensor("bad.weight", ne: ne, type: .f32, data: [])
        try expectGGUFError(gguf.bytes(), mentioning: ["\"bad.weight\"", message])
    }

    @Test("rejects a row that is not a whole number of blocks")
    func partialBlock() throws {
        var gguf = smallGGUF()
        gguf.tensor("q.weight", ne: [48, 2], type: .q8_0, data: [UInt8](repeating: 0, count: 3 * 34))
        try expectGGUFError(gguf.bytes(), mentioning: ["\"q.weight\"", "48", "block size 32"])
    }

    @Test("rejects an unknown ggml type")
    func unknownType() throws {
        var gguf = smallGGUF()
        gguf.tensors[0].type = 4  // Q4_2, long removed from ggml
        try expectGGUFError(gguf.bytes(), mentioning: ["\"a.weight\"", "unknown ggml type 4"])
    }
}
