import Foundation
import Testing
import ShadowFormats
import ShadowTestSupport

// A header's counts, lengths and sizes come from the file, so a stranger's 100-byte file can claim
// terabytes. Each must be checked against the bytes the file really has before anything is
// allocated; these tests claim absurd sizes in tiny files and expect a prompt, specific error
// (were the reader to allocate first, the test would die of memory exhaustion instead).

/// Opens `bytes` as GGUF and expects `corruptFile` whose reason contains every fragment.
func expectCorruptGGUF(_ bytes: [UInt8], _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
    try expectCorruptFile(bytes, named: "limits.gguf", fragments, sourceLocation: sourceLocation) { _ = try GGUFFile(path: $0) }
}

func expectCorruptFile(_ bytes: [UInt8], named name: String, _ fragments: [String],
                       sourceLocation: SourceLocation = #_sourceLocation, open: (String) throws -> Void) throws {
    try withFile(bytes, named: name) { path in
        do {
            try open(path)
            Issue.record("expected corruptFile mentioning \(fragments)", sourceLocation: sourceLocation)
        } catch ShadowError.corruptFile(let errorPath, let reason) {
            #expect(errorPath == path, sourceLocation: sourceLocation)
            for fragment in fragments {
                #expect(reason.contains(fragment), "\"\(reason)\" does not mention \"\(fragment)\"", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("expected corruptFile, got \(error)", sourceLocation: sourceLocation)
        }
    }
}

@Suite("Header limits: sizes are checked against the file before allocating")
struct HeaderLimitsTests {
    @Test("a 100-byte GGUF claiming a 2^40-element array of any element type is corrupt",
          arguments: Array(UInt32(0)...12))
    func hugeArrayOfEveryType(elementType: UInt32) throws {
        let bytes = tinyGGUF(key: "big", type: 9) { $0.u32(elementType); $0.u64(1 << 40) }
        #expect(bytes.count == 100)
        try expectCorruptGGUF(bytes, ["\"big\"", "1099511627776", "cannot fit"])
    }

    @Test("an array count is measured against the bytes left after it, not the whole file")
    func arrayCountAgainstRemainingBytes() throws {
        // 25 uint32 would fill the 100-byte file, but only the bytes after the count are left.
        let bytes = tinyGGUF(key: "ids", type: 9) { $0.u32(4); $0.u64(25) }
        try expectCorruptGGUF(bytes, ["\"ids\"", "25 cannot fit"])
    }

    @Test("an array nested inside an array cannot claim 2^40 elements either")
    func hugeNestedArray() throws {
        let bytes = tinyGGUF(key: "nest", type: 9) { out in
            out.u32(9); out.u64(1)              // one inner array…
            out.u32(8); out.u64(1 << 40)        // …of 2^40 strings
        }
        try expectCorruptGGUF(bytes, ["\"nest\"", "cannot fit"])
    }

    @Test("a GGUF string value, key or array element of length 2^50 is corrupt")
    func hugeStrings() throws {
        try expectCorruptGGUF(tinyGGUF(key: "name", type: 8) { $0.u64(1 << 50) },
                              ["\"name\"", "string length 1125899906842624", "past the end"])
        try expectCorruptGGUF(tinyGGUF(key: "list", type: 9) { $0.u32(8); $0.u64(2); $0.string("ok"); $0.u64(1 << 50) },
                              ["element 1 of key \"list\"", "past the end"])
        var out = Bytes()
        out.data.append(contentsOf: Array("GGUF".utf8))
        out.u32(3); out.u64(0); out.u64(1)
        out.u64(1 << 50)  // the key's own length
        while out.data.count < 100 { out.u8(0) }
        try expectCorruptGGUF(out.data, ["key of metadata entry 0", "past the end"])
    }

    @Test("2^40 tensors or 2^40 metadata entries in a 100-byte GGUF are corrupt")
    func hugeCounts() throws {
        for (tensors, keys, what) in [(UInt64(1) << 40, UInt64(0), "tensor count"), (0, 1 << 40, "metadata count")] {
            var out = Bytes()
            out.data.append(contentsOf: Array("GGUF".utf8))
            out.u32(3); out.u64(tensors); out.u64(keys)
            while out.data.count < 100 { out.u8(0) }
            try expectCorruptGGUF(out.data, [what, "cannot fit"])
        }
    }

    @Test("a GGUF tensor whose size fits in memory but not in the file is refused at open")
    func tensorLargerThanFile() throws {
        var gguf = GGUFBuilder()
        gguf.tensor("big.weight", ne: [1 << 20, 1 << 20], type: .f32, data: [])  // 4 TiB of floats
        try expectGGUFError(gguf.bytes(), mentioning: ["\"big.weight\"", "past the end", "4398046511104 bytes"])
        gguf = GGUFBuilder()
        gguf.tensor("far.weight", ne: [4], type: .f32, data: f32Bytes([1, 2, 3, 4]), offset: 1 << 40)
        try expectGGUFError(gguf.bytes(), mentioning: ["\"far.weight\"", "past the end"])
    }

    @Test("a safetensors header length of 2^60 is corrupt")
    func hugeSafetensorsHeader() throws {
        var out = Bytes()
        out.u64(1 << 60)
        out.data += Array("{}".utf8)
        try expectCorruptFile(out.data, named: "limits.safetensors", ["header length 1152921504606846976", "past the end"]) {
            _ = try SafetensorsFile(path: $0)
        }
    }

    @Test("a safetensors tensor whose offsets exceed the file is refused at open")
    func safetensorsOffsetsPastFile() throws {
        var builder = SafetensorsBuilder()
        builder.tensor("big", dtype: "F32", shape: [1 << 38], data: [], offsets: (0, 1 << 40))
        try expectSafetensorsError(builder, mentioning: ["\"big\"", "past the end of the data"])
        builder = SafetensorsBuilder()
        builder.tensor("late", dtype: "F32", shape: [1], data: [], offsets: (Int.max - 4, Int.max))
        try expectSafetensorsError(builder, mentioning: ["\"late\"", "past the end of the data"])
    }

    @Test("a safetensors shape whose byte size overflows is refused, even with matching-looking offsets")
    func safetensorsByteSizeOverflow() throws {
        var builder = SafetensorsBuilder()
        // 2^62 elements fit in an Int, 2^64 bytes do not.
        builder.tensor("wide", dtype: "F32", shape: [1 << 31, 1 << 31], data: [], offsets: (0, 0))
        try expectSafetensorsError(builder, mentioning: ["\"wide\""])
    }
}
