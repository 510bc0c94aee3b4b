/// How a tensor's elements are stored. Plain types hold one element per "block"; the ggml quantised
/// types pack `blockSize` elements into `bytesPerBlock` bytes (sizes from ggml's type traits). Every
/// type a GGUF or safetensors file may name is listed so that its size can be checked at open;
/// `canConvertToFloats` says which ones `TensorSource.floats` can read.
public enum TensorDType: String, Sendable, CaseIterable {
    case f32, f16, bf16, f64
    case i8, i16, i32, i64, u8, u16, u32, u64, bool
    case f8_e4m3, f8_e5m2
    case q4_0, q4_1, q5_0, q5_1, q8_0, q8_1
    case q2_K, q3_K, q4_K, q5_K, q6_K, q8_K
    case iq2_xxs, iq2_xs, iq3_xxs, iq1_s, iq4_nl, iq3_s, iq2_s, iq4_xs, iq1_m
    case tq1_0, tq2_0, mxfp4

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl, .mxfp4: return 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K,
             .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s, .iq4_xs, .iq1_m, .tq1_0, .tq2_0: return 256
        default: return 1
        }
    }

    /// Bytes per block.
    public var bytesPerBlock: Int {
        switch self {
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .f64, .i64, .u64: return 8
        case .i8, .u8, .bool, .f8_e4m3, .f8_e5m2: return 1
        case .q4_0: return 18          // f16 d, 16 bytes of nibbles
        case .q4_1: return 20          // f16 d, f16 m, 16 bytes of nibbles
        case .q5_0: return 22          // f16 d, 4 bytes of fifth bits, 16 bytes of nibbles
        case .q5_1: return 24          // f16 d, f16 m, 4 bytes of fifth bits, 16 bytes of nibbles
        case .q8_0: return 34          // f16 d, 32 int8
        case .q8_1: return 36          // f16 d, f16 s, 32 int8
        case .q2_K: return 84          // 16 scale/min bytes, 64 bytes of 2-bit quants, f16 d, f16 dmin
        case .q3_K: return 110         // 32 bytes of high bits, 64 bytes of 2-bit quants, 12 scale bytes, f16 d
        case .q4_K: return 144         // f16 d, f16 dmin, 12 scale/min bytes, 128 bytes of nibbles
        case .q5_K: return 176         // as q4_K plus 32 bytes of fifth bits
        case .q6_K: return 210         // 128 bytes of nibbles, 64 bytes of top bits, 16 int8 scales, f16 d
        case .q8_K: return 292         // f32 d, 256 int8, 16 int16 sums
        case .iq2_xxs: return 66
        case .iq2_xs: return 74
        case .iq3_xxs: return 98
        case .iq1_s: return 50
        case .iq4_nl: return 18        // f16 d, 16 bytes of nibbles indexing a table of levels
        case .iq3_s: return 110
        case .iq2_s: return 82
        case .iq4_xs: return 136       // f16 d, u16 + 4 bytes of 6-bit scales, 128 bytes of nibbles
        case .iq1_m: return 56
        case .tq1_0: return 54
        case .tq2_0: return 66
        case .mxfp4: return 17
        }
    }

    /// The ggml type id a GGUF tensor info stores (ggml.h `enum ggml_type`); nil for types only
    /// safetensors has.
    public var ggmlType: UInt32? {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q5_0: return 6
        case .q5_1: return 7
        case .q8_0: return 8
        case .q8_1: return 9
        case .q2_K: return 10
        case .q3_K: return 11
        case .q4_K: return 12
        case .q5_K: return 13
        case .q6_K: return 14
        case .q8_K: return 15
        case .iq2_xxs: return 16
        case .iq2_xs: return 17
        case .iq3_xxs: return 18
        case .iq1_s: return 19
        case .iq4_nl: return 20
        case .iq3_s: return 21
        case .iq2_s: return 22
        case .iq4_xs: return 23
        case .i8: return 24
        case .i16: return 25
        case .i32: return 26
        case .i64: return 27
        case .f64: return 28
        case .iq1_m: return 29
        case .bf16: return 30
        case .tq1_0: return 34
        case .tq2_0: return 35
        case .mxfp4: return 39
        case .u8, .u16, .u32, .u64, .bool, .f8_e4m3, .f8_e5m2: return nil
        }
    }

    public init?(ggmlType: UInt32) {
        guard let found = Self.byGGMLType[ggmlType] else { return nil }
        self = found
    }

    /// The dtype string of a safetensors header ("F32", "BF16", …); nil for ggml block types.
    public var safetensorsName: String? {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64, .u8, .u16, .u32, .u64, .bool:
            return rawValue.uppercased()
        case .f8_e4m3: return "F8_E4M3"
        case .f8_e5m2: return "F8_E5M2"
        default: return nil
        }
    }

    public init?(safetensorsName: String) {
        guard let found = Self.bySafetensorsName[safetensorsName] else { return nil }
        self = found
    }

    /// Whether `TensorSource.floats` can convert this type to fp32.
    public var canConvertToFloats: Bool {
        switch self {
        case .f32, .f16, .bf16, .f64, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
             .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq4_nl, .iq4_xs: return true
        default: return false
        }
    }

    /// The bytes that `elements` elements occupy, or nil when they are not a whole number of blocks
    /// or the size overflows.
    public func byteCount(elements: Int) -> Int? {
        guard elements >= 0, elements % blockSize == 0 else { return nil }
        let (bytes, overflow) = (elements / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
        return overflow ? nil : bytes
    }

    private static let byGGMLType: [UInt32: TensorDType] = Dictionary(
        uniqueKeysWithValues: allCases.compactMap { dtype in dtype.ggmlType.map { ($0, dtype) } })
    private static let bySafetensorsName: [String: TensorDType] = Dictionary(
        uniqueKeysWithValues: allCases.compactMap { dtype in dtype.safetensorsName.map { ($0, dtype) } })
}

/// Where one tensor lives in its file.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: TensorDType
    /// Row-major, outermost first, as PyTorch writes it: a linear layer's weight is `[out, in]`.
    /// (GGUF stores the dimensions innermost first; the reader reverses them.)
    public let shape: [Int]
    /// Offset of the first byte from the start of the file that holds the tensor.
    public let byteOffset: Int
    public let byteCount: Int

    public init(name: String, dtype: TensorDType, shape: [Int], byteOffset: Int, byteCount: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteOffset = byteOffset
        self.byteCount = byteCount
    }

    /// The product of the dimensions (1 for a scalar). Readers check that it does not overflow.
    public var elementCount: Int { shape.reduce(1, *) }
}

/// What a model loader reads weights from: a GGUF file, a safetensors file or a directory of them.
public protocol TensorSource: AnyObject, Sendable {
    /// The file or directory the tensors come from.
    var path: String { get }
    var tensorInfos: [String: TensorInfo] { get }
    /// Every tensor name once, in file order.
    var tensorNames: [String] { get }
    /// The tensor's stored bytes, straight from a file mapping (never from the heap: see
    /// `dropPages(of:)`); valid while `self` is alive.
    func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer
    /// The tensor converted to fp32, row-major.
    func floats(_ name: String) throws -> [Float]
    /// The tensor converted to fp32 into `buffer`, which must hold exactly its element count.
    func floats(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws
}

extension TensorSource {
    /// The tensor's info, or an error naming it.
    public func info(_ name: String) throws -> TensorInfo {
        guard let info = tensorInfos[name] else {
            throw ShadowError.badTensor(path: path, tensor: name, reason: "no such tensor")
        }
        return info
    }

    /// Releases the resident file pages of a tensor that has been converted (it stays readable).
    public func dropPages(of name: String) {
        if let bytes = try? rawBytes(name) { MappedFile.dropPages(bytes) }
    }

    /// Rows `rows` of a 2-D tensor `[R, C]` converted to fp32 into `buffer` (`rows.count × C`
    /// values), so a large tensor can be read a slice at a time. Quantised rows are whole
    /// blocks (GGML quantises each row on its own), which is checked.
    public func floats(_ name: String, rows: Range<Int>, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        let info = try info(name)
        guard info.shape.count == 2, rows.lowerBound >= 0, rows.upperBound <= info.shape[0],
              let rowBytes = info.dtype.byteCount(elements: info.shape[1]) else {
            throw ShadowError.badTensor(path: path, tensor: name, reason: "rows \(rows) cannot be read from a tensor of shape \(info.shape) and type \(info.dtype.rawValue)")
        }
        let all = try rawBytes(name)
        let slice = UnsafeRawBufferPointer(rebasing: all[(rows.lowerBound * rowBytes)..<(rows.upperBound * rowBytes)])
        let part = TensorInfo(name: name, dtype: info.dtype, shape: [rows.count, info.shape[1]],
                              byteOffset: info.byteOffset + rows.lowerBound * rowBytes, byteCount: slice.count)
        try convertTensor(path: path, info: part, typeName: info.dtype.rawValue, bytes: slice, into: buffer)
    }

    public func floats(_ name: String) throws -> [Float] {
        let count = try info(name).elementCount
        // Not `unsafeUninitializedCapacity: 0`, which writes to the shared empty-array singleton.
        guard count > 0 else { return [] }
        return try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            try floats(name, into: UnsafeMutableBufferPointer(rebasing: buffer[0..<count]))
            initialized = count
        }
    }
}

/// Converts one tensor's bytes to fp32: the shared body of every reader's `floats(_:into:)`.
/// `typeName` is the type as the file spells it, for the error message.
func convertTensor(path: String, info: TensorInfo, typeName: String, bytes: UnsafeRawBufferPointer,
                   into buffer: UnsafeMutableBufferPointer<Float>) throws {
    guard info.dtype.canConvertToFloats else {
        let supported = TensorDType.allCases.filter(\.canConvertToFloats).map(\.rawValue).joined(separator: ", ")
        throw ShadowError.badTensor(path: path, tensor: info.name,
                                    reason: "type \(typeName) cannot be converted to floats (supported: \(supported))")
    }
    let count = info.elementCount
    guard buffer.count == count else {
        throw ShadowError.badTensor(path: path, tensor: info.name,
                                    reason: "destination holds \(buffer.count) floats, tensor has \(count) elements")
    }
    // Readers validate sizes at open; this guards the unsafe loops below against a reader bug.
    guard info.dtype.byteCount(elements: count) == bytes.count else {
        throw ShadowError.badTensor(path: path, tensor: info.name,
                                    reason: "\(bytes.count) bytes do not hold \(count) elements of type \(typeName)")
    }
    guard count > 0, let source = bytes.baseAddress, let destination = buffer.baseAddress else { return }
    dequantize(info.dtype, from: source, to: destination, count: count)
}
