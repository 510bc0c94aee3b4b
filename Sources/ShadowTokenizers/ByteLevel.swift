/// GPT-2's reversible map between bytes and printable characters ("bytes_to_unicode").
///
/// Byte-level BPE vocabularies are written in these characters so that every entry is printable
/// text: the 188 bytes that are visible Latin-1 characters ('!'…'~', '¡'…'¬', '®'…'ÿ') stand for
/// themselves, and the other 68 (controls, space, DEL, NBSP, soft hyphen) take U+0100, U+0101, …
/// in byte order. So a space is 'Ġ' (U+0120) and a newline 'Ċ' (U+010A).
enum ByteLevel {
    /// The scalar that stands for each byte.
    static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            if isSelfMapped(byte) {
                table[byte] = UInt32(byte)
            } else {
                table[byte] = next
                next += 1
            }
        }
        return table
    }()

    /// The inverse map, indexed by scalar value (all mapped scalars are below U+0144); -1 if the
    /// scalar stands for no byte.
    static let byteForScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (byte, scalar) in scalarForByte.enumerated() { table[Int(scalar)] = Int16(byte) }
        return table
    }()

    /// UTF-8 of each byte's stand-in character (one or two bytes each).
    static let utf8ForByte: [[UInt8]] = scalarForByte.map { Array(String(Unicode.Scalar($0)!).utf8) }

    private static func isSelfMapped(_ byte: Int) -> Bool {
        (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
    }

    /// The bytes a vocabulary entry stands for, or nil if one of its characters is not in the map
    /// (added tokens such as "<|im_start|>" are plain ASCII and map to themselves).
    static func bytes(ofToken utf8: [UInt8]) -> [UInt8]? {
        var result: [UInt8] = []
        result.reserveCapacity(utf8.count)
        for scalar in String(decoding: utf8, as: UTF8.self).unicodeScalars {
            let value = Int(scalar.value)
            guard value < byteForScalar.count, byteForScalar[value] >= 0 else { return nil }
            result.append(UInt8(byteForScalar[value]))
        }
        return result
    }

    /// Raw bytes → the UTF-8 of their stand-in characters, i.e. how the vocabulary spells them.
    static func encode(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count * 2)
        for byte in bytes { result.append(contentsOf: utf8ForByte[Int(byte)]) }
        return result
    }
}
