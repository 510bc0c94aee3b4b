import Foundation
import Testing
import ShadowFormats
import ShadowTestSupport

func smallSafetensors() -> SafetensorsBuilder {
    var file = SafetensorsBuilder()
    file.metadata = ["format": "pt"]
    file.tensor("model.embed.weight", dtype: "F32", shape: [2, 3], data: f32Bytes([0, 1, 2, 3, 4, 5]))
    file.tensor("model.norm.weight", dtype: "F16", shape: [3], data: f16Bytes([1, -0.5, 2]))
    file.tensor("lm_head.weight", dtype: "BF16", shape: [1, 2], data: bf16Bytes([0x3F80, 0xC020]))
    return file
}

func expectSafetensorsError(_ file: SafetensorsBuilder, mentioning fragments: [String],
                            sourceLocation: SourceLocation = #_sourceLocation) throws {
    try expectSafetensorsError(file.bytes(), mentioning: fragments, sourceLocation: sourceLocation)
}

func expectSafetensorsError(_ bytes: [UInt8], mentioning fragments: [String],
                            sourceLocation: SourceLocation = #_sourceLocation) throws {
    try withFile(bytes, named: "model.safetensors") { path in
        expectShadowError(mentioning: [path] + fragments, sourceLocation: sourceLocation) {
            _ = try SafetensorsFile(path: path)
        }
    }
}

@Suite("safetensors reader")
struct SafetensorsReaderTests {
    @Test("reads F32, F16 and BF16 tensors, shapes, metadata and data order")
    func reads() throws {
        try withFile(smallSafetensors().bytes(), named: "model.safetensors") { path in
            let file = try SafetensorsFile(path: path)
            #expect(file.metadata == ["format": "pt"])
            #expect(file.tensorNames == ["model.embed.weight", "model.norm.weight", "lm_head.weight"])
            #expect(file.tensorInfos["model.embed.weight"]?.shape == [2, 3])
            #expect(file.tensorInfos["model.embed.weight"]?.byteOffset == file.dataOffset)
            #expect(try file.floats("model.embed.weight") == [0, 1, 2, 3, 4, 5])
            #expect(try file.floats("model.norm.weight") == [1, -0.5, 2])
            #expect(try file.floats("lm_head.weight") == [1, -2.5])
        }
    }

    @Test("reads F16 data that starts at an odd address")
    func unalignedHalves() throws {
        var builder = SafetensorsBuilder()
        builder.headerPadding = 1
        builder.rawHeader = "{\"h\":{\"dtype\":\"F16\",\"shape\":[11],\"data_offsets\":[0,22]}}"
        if builder.rawHeader!.utf8.count % 2 == 0 { builder.rawHeader! += " " }
        let values: [Float] = (0..<11).map { Float($0) - 3.5 }
        let bytes = builder.bytes() + f16Bytes(values)
        try withFile(bytes, named: "odd.safetensors") { path in
            let file = try SafetensorsFile(path: path)
            #expect(file.dataOffset % 2 == 1)
            #expect(try file.floats("h") == values)
        }
    }

    @Test("an empty tensor and a scalar are legal")
    func emptyAndScalar() throws {
        var builder = smallSafetensors()
        builder.tensor("empty", dtype: "F32", shape: [0, 4], data: [])
        builder.tensor("scalar", dtype: "F32", shape: [], data: f32Bytes([7]))
        try withFile(builder.bytes(), named: "model.safetensors") { path in
            let file = try SafetensorsFile(path: path)
            #expect(try file.floats("empty") == [])
            #expect(try file.floats("scalar") == [7])
            #expect(file.tensorInfos["scalar"]?.shape == [])
        }
    }

    @Test("an integer tensor lists fine and fails only when read, naming tensor and dtype")
    func integerTensor() throws {
        var builder = smallSafetensors()
        builder.tensor("position_ids", dtype: "I64", shape: [1, 2], data: [UInt8](repeating: 0, count: 16))
        try withFile(builder.bytes(), named: "model.safetensors") { path in
            let file = try SafetensorsFile(path: path)
            #expect(file.tensorInfos["position_ids"]?.dtype == .i64)
            #expect(try file.rawBytes("position_ids").count == 16)
            expectShadowError(mentioning: [path, "position_ids", "I64"]) { _ = try file.floats("position_ids") }
        }
    }
}

@Suite("safetensors reader robustness")
struct SafetensorsRobustnessTests {
    @Test("rejects a file too short for the header length")
    func tooShort() throws {
        try expectSafetensorsError([1, 2, 3], mentioning: ["too short"])
    }

    @Test("rejects a header length larger than the file")
    func headerPastEnd() throws {
        var bytes = smallSafetensors().bytes()
        bytes.replaceSubrange(0..<8, with: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
        try expectSafetensorsError(bytes, mentioning: ["header length", "past the end"])
        var out = Bytes(); out.u64(UInt64(bytes.count))
        bytes.replaceSubrange(0..<8, with: out.data)
        try expectSafetensorsError(bytes, mentioning: ["header length"])
    }

    @Test("rejects every truncation of a valid file")
    func truncations() throws {
        let bytes = smallSafetensors().bytes()
        try withTemporaryDirectory { directory in
            for length in 0..<bytes.count {
                let url = directory.appendingPathComponent("cut-\(length).safetensors")
                try Data(bytes[0..<length]).write(to: url)
                expectShadowError(mentioning: [url.path]) { _ = try SafetensorsFile(path: url.path) }
            }
        }
    }

    @Test("rejects a header that is not UTF-8")
    func notUTF8() throws {
        var out = Bytes()
        out.u64(4)
        out.data += [0x7B, 0xFF, 0xFE, 0x7D]
        try expectSafetensorsError(out.data, mentioning: ["UTF-8"])
    }

    @Test("rejects malformed JSON headers", arguments: [
        ("{\"a\":", "header is not valid JSON"),
        ("[1, 2]", "header"),
        ("", "header"),
        ("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "\"w\": header entry: missing \"dtype\""),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", "\"w\": header entry shape [0]"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,8]}}", "\"w\": header entry shape [0]"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999999]}}", "\"w\": header entry data_offsets [1]: 1e+23 is not an integer"),
        ("{\"w\":{\"dtype\":3,\"shape\":[2],\"data_offsets\":[0,8]}}", "\"w\": header entry dtype: expected a string"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "\"w\": has a negative dimension"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", "\"w\": data_offsets must be [begin, end]"),
        ("{\"w\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}", "\"w\": unknown dtype \"Q9\""),
        ("{\"__metadata__\":{\"n\":1}}", "__metadata__"),
        (String(repeating: "[", count: 100_000), "header"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "the header names \"w\" twice"),
        ("{\"__metadata__\":{\"a\":\"1\"},\"__metadata__\":{\"a\":\"2\"}}", "the header names \"__metadata__\" twice"),
    ])
    func malformedJSON(header: String, message: String) throws {
        var builder = SafetensorsBuilder()
        builder.rawHeader = header
        try expectSafetensorsError(builder.bytes() + [UInt8](repeating: 0, count: 8), mentioning: [message])
    }

    @Test("of two bad entries, the one first by name is named, on every run")
    func firstBadEntryByName() throws {
        var builder = SafetensorsBuilder()
        builder.rawHeader = "{" + (0..<20).map { "\"t\(String(format: "%02d", $0))\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}" }.reversed().joined(separator: ",") + "}"
        for _ in 0..<5 {
            try expectSafetensorsError(builder.bytes() + [UInt8](repeating: 0, count: 8), mentioning: ["\"t00\": unknown dtype"])
        }
    }

    @Test("rejects data_offsets that do not match dtype × shape")
    func sizeMismatch() throws {
        var builder = smallSafetensors()
        builder.tensors[0].shape = [2, 2]
        try expectSafetensorsError(builder, mentioning: ["\"model.embed.weight\"", "24 bytes", "needs 4 × 4"])
        builder = smallSafetensors()
        builder.tensors[1].dtype = "F32"
        try expectSafetensorsError(builder, mentioning: ["\"model.norm.weight\"", "needs 3 × 4"])
    }

    @Test("rejects data past the end, reversed offsets and overlaps")
    func badOffsets() throws {
        var builder = smallSafetensors()
        builder.tensor("late", dtype: "F32", shape: [1], data: [], offsets: (1000, 1004))
        try expectSafetensorsError(builder, mentioning: ["\"late\"", "past the end"])
        builder = smallSafetensors()
        builder.tensor("backwards", dtype: "F32", shape: [1], data: [], offsets: (8, 4))
        try expectSafetensorsError(builder, mentioning: ["\"backwards\"", "not a range"])
        builder = smallSafetensors()
        builder.tensor("shared", dtype: "F32", shape: [2], data: [], offsets: (4, 12))
        try expectSafetensorsError(builder, mentioning: ["\"shared\"", "overlaps", "model.embed.weight"])
    }

    @Test("rejects bytes that belong to no tensor: a gap between two tensors or a tail after the last, as the reference reader does")
    func unheldBytes() throws {
        var builder = SafetensorsBuilder()
        builder.tensor("first", dtype: "F32", shape: [1], data: [0, 0, 128, 63])
        builder.tensor("second", dtype: "F32", shape: [1], data: [0, 0, 0, 64], offsets: (8, 12))
        try expectSafetensorsError(builder.bytes(), mentioning: ["\"second\"", "after 4 bytes of the data that belong to no tensor"])
        let whole = smallSafetensors().bytes()
        try withFile(whole, named: "held.safetensors") { path in _ = try SafetensorsFile(path: path) }
        try expectSafetensorsError(whole + [1, 2, 3], mentioning: ["3 bytes after the last tensor's data belong to no tensor"])
    }

    @Test("rejects a shape whose product overflows")
    func shapeOverflow() throws {
        var builder = SafetensorsBuilder()
        builder.tensor("huge", dtype: "F32", shape: [1 << 40, 1 << 40], data: [], offsets: (0, 0))
        try expectSafetensorsError(builder, mentioning: ["\"huge\"", "more elements"])
    }
}

@Suite("safetensors checkpoint directory")
struct SafetensorsCollectionTests {
    func write(_ builder: SafetensorsBuilder, _ name: String, in directory: URL) throws {
        try Data(builder.bytes()).write(to: directory.appendingPathComponent(name))
    }

    func shards() -> (SafetensorsBuilder, SafetensorsBuilder) {
        var first = SafetensorsBuilder()
        first.tensor("a", dtype: "F32", shape: [2], data: f32Bytes([1, 2]))
        first.tensor("b", dtype: "F32", shape: [1], data: f32Bytes([3]))
        var second = SafetensorsBuilder()
        second.tensor("c", dtype: "BF16", shape: [1], data: bf16Bytes([0x4000]))
        return (first, second)
    }

    func index(_ map: [String: String]) -> Data {
        let entries = map.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \"\($0.value)\"" }
        return Data("{\"metadata\": {\"total_size\": 14}, \"weight_map\": {\(entries.joined(separator: ", "))}}".utf8)
    }

    @Test("reads a single model.safetensors")
    func single() throws {
        try withTemporaryDirectory { directory in
            try write(smallSafetensors(), "model.safetensors", in: directory)
            let collection = try SafetensorsCollection(directory: directory.path)
            #expect(collection.files.count == 1)
            #expect(collection.tensorNames == ["model.embed.weight", "model.norm.weight", "lm_head.weight"])
            #expect(try collection.floats("lm_head.weight") == [1, -2.5])
        }
    }

    @Test("follows model.safetensors.index.json across shards")
    func indexed() throws {
        try withTemporaryDirectory { directory in
            let (first, second) = shards()
            try write(first, "model-00001-of-00002.safetensors", in: directory)
            try write(second, "model-00002-of-00002.safetensors", in: directory)
            try index(["a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                       "c": "model-00002-of-00002.safetensors"])
                .write(to: directory.appendingPathComponent("model.safetensors.index.json"))
            let collection = try SafetensorsCollection(directory: directory.path)
            #expect(collection.tensorNames == ["a", "b", "c"])
            #expect(try collection.floats("a") == [1, 2])
            #expect(try collection.floats("c") == [2])
            #expect(try collection.file(containing: "c").path.hasSuffix("model-00002-of-00002.safetensors"))
            expectShadowError(mentioning: [directory.path, "\"z\"", "no such tensor"]) { _ = try collection.floats("z") }
        }
    }

    @Test("without an index reads every *.safetensors")
    func globbed() throws {
        try withTemporaryDirectory { directory in
            let (first, second) = shards()
            try write(second, "b.safetensors", in: directory)
            try write(first, "a.safetensors", in: directory)
            try Data("{}".utf8).write(to: directory.appendingPathComponent("config.json"))
            let collection = try SafetensorsCollection(directory: directory.path)
            #expect(collection.tensorNames == ["a", "b", "c"])
        }
    }

    @Test("rejects a tensor name found in two files")
    func duplicate() throws {
        try withTemporaryDirectory { directory in
            let (first, _) = shards()
            try write(first, "a.safetensors", in: directory)
            try write(first, "b.safetensors", in: directory)
            expectShadowError(mentioning: [directory.path, "\"a\"", "a.safetensors", "b.safetensors"]) {
                _ = try SafetensorsCollection(directory: directory.path)
            }
        }
    }

    @Test("rejects an index that points at a missing file or the wrong shard, or is malformed")
    func badIndex() throws {
        try withTemporaryDirectory { directory in
            let (first, second) = shards()
            try write(first, "one.safetensors", in: directory)
            try write(second, "two.safetensors", in: directory)
            let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
            try index(["a": "one.safetensors", "c": "three.safetensors"]).write(to: indexURL)
            expectShadowError(mentioning: ["three.safetensors", "no such file"]) {
                _ = try SafetensorsCollection(directory: directory.path)
            }
            try index(["a": "one.safetensors", "c": "one.safetensors", "b": "one.safetensors"]).write(to: indexURL)
            expectShadowError(mentioning: [indexURL.path, "\"c\"", "not found in one.safetensors"]) {
                _ = try SafetensorsCollection(directory: directory.path)
            }
            try index(["a": "../one.safetensors"]).write(to: indexURL)
            expectShadowError(mentioning: [indexURL.path, "weight_map"]) {
                _ = try SafetensorsCollection(directory: directory.path)
            }
            try Data("{\"weight_map\": [1]}".utf8).write(to: indexURL)
            expectShadowError(mentioning: [indexURL.path, "weight_map"]) {
                _ = try SafetensorsCollection(directory: directory.path)
            }
        }
    }

    @Test("rejects a missing or empty directory")
    func missing() throws {
        expectShadowError(mentioning: ["/no/such/dir", "no such file"]) { _ = try SafetensorsCollection(directory: "/no/such/dir") }
        try withTemporaryDirectory { directory in
            expectShadowError(mentioning: [directory.path, "*.safetensors"]) {
                _ = try SafetensorsCollection(directory: directory.path)
            }
        }
    }
}
