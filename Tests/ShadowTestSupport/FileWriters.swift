import Foundation
import ShadowFormats

// Writers for the binary files tests build: little-endian bytes and GGUF files as the test
// describes them (malformed on purpose where a test says so: offsets, dimensions and type ids
// are whatever it gives).

/// Little-endian bytes under construction.
public struct Bytes {
    public var data: [UInt8] = []

    public init() {}

    public mutating func u8(_ v: UInt8) { data.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    public mutating func f32(_ v: Float) { u32(v.bitPattern) }
    /// A GGUF string: u64 length, then the bytes.
    public mutating func string(_ s: String) { bytes(Array(s.utf8)) }
    public mutating func bytes(_ raw: [UInt8]) { u64(UInt64(raw.count)); data.append(contentsOf: raw) }

    /// Writes each tensor's data at its offset from the current end (where the data section
    /// starts), zero-filling gaps; a later placement may overlap an earlier one.
    public mutating func place(_ placements: [(Int, [UInt8])]) {
        let dataStart = data.count
        // Nothing to write for empty data, whose offsets may lie anywhere (near Int.max too).
        for (offset, bytes) in placements where !bytes.isEmpty {
            let end = dataStart + offset + bytes.count
            if data.count < end { data.append(contentsOf: [UInt8](repeating: 0, count: end - data.count)) }
            data.replaceSubrange((dataStart + offset)..<end, with: bytes)
        }
    }
}

/// A GGUF file as the tests describe it.
public struct GGUFBuilder {
    public struct Tensor {
        public var name: String
        public var ne: [UInt64]          // innermost first, as GGUF stores it
        public var type: UInt32
        public var data: [UInt8]
        public var offset: UInt64? = nil // nil: the next aligned position after the previous tensor
        public var nameBytes: [UInt8]? = nil
    }

    public var version: UInt32 = 3
    public var metadata: [(String, GGUFValue)] = []
    public var tensors: [Tensor] = []
    /// Where tensor data is placed; write `general.alignment` into `metadata` to tell the reader.
    public var alignment = 32

    public init() {}

    public mutating func add(_ name: String, _ value: GGUFValue) { metadata.append((name, value)) }

    public mutating func tensor(_ name: String, ne: [UInt64], type: TensorDType, data: [UInt8], offset: UInt64? = nil) {
        tensors.append(Tensor(name: name, ne: ne, type: type.ggmlType!, data: data, offset: offset))
    }

    public func bytes() -> [UInt8] {
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

    public static func typeID(_ value: GGUFValue) -> UInt32 {
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

    public static func write(_ value: GGUFValue, to out: inout Bytes) {
        out.u32(typeID(value))
        writePayload(value, to: &out)
    }

    public static func writePayload(_ value: GGUFValue, to out: inout Bytes) {
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

/// Writes minimal Hugging Face checkpoints (config.json + F32 safetensors) for error-path tests.
public enum CheckpointWriter {
    public static var config: [String: Any] { [
        "model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 10, "tie_word_embeddings": true,
        "rms_norm_eps": 1e-5, "max_position_embeddings": 32,
    ] }

    public static var tensors: [(String, [Int])] {
        let p = "model.layers.0."
        return [("model.embed_tokens.weight", [10, 8]), (p + "input_layernorm.weight", [8]),
                (p + "self_attn.q_proj.weight", [8, 8]), (p + "self_attn.k_proj.weight", [4, 8]),
                (p + "self_attn.v_proj.weight", [4, 8]), (p + "self_attn.o_proj.weight", [8, 8]),
                (p + "post_attention_layernorm.weight", [8]), (p + "mlp.gate_proj.weight", [16, 8]),
                (p + "mlp.up_proj.weight", [16, 8]), (p + "mlp.down_proj.weight", [8, 16]),
                ("model.norm.weight", [8])]
    }

    public static func safetensors(_ tensors: [(String, [Int])]) -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        for (name, shape) in tensors {
            let bytes = shape.reduce(1, *) * 4
            header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data()
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
        data.append(json)
        var values = (0..<offset / 4).map { Float(($0 % 7) - 3) * 0.1 }
        values.withUnsafeMutableBytes { data.append(contentsOf: $0) }
        return data
    }

    /// A fresh directory holding a valid checkpoint, with the edits applied.
    public static func directory(config edit: (inout [String: Any]) -> Void = { _ in },
                          tensors editTensors: (inout [(String, [Int])]) -> Void = { _ in }) throws -> String {
        let dir = TestScratch.url("shadowllm")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var c = config
        edit(&c)
        try JSONSerialization.data(withJSONObject: c).write(to: dir.appendingPathComponent("config.json"))
        var t = tensors
        editTensors(&t)
        try safetensors(t).write(to: dir.appendingPathComponent("model.safetensors"))
        return dir.path
    }
}
