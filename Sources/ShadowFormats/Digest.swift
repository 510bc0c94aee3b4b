import Foundation

/// FNV-1a (64 bits): a cheap digest that tells files and arrays apart. Not cryptographic: it
/// catches a changed or different input, not a forged one.
public struct FNV1a: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    static let prime: UInt64 = 0x0000_0100_0000_01b3

    public init() {}

    public mutating func mix(_ bytes: UnsafeRawBufferPointer) {
        var hash = value
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* Self.prime }
        value = hash
    }

    /// One step over a whole word (a float's bits), as the training checkpoints' digest was defined.
    public mutating func mix(word: UInt64) {
        value = (value ^ word) &* Self.prime
    }

    /// Sixteen lowercase hex digits.
    public var hex: String { String(format: "%016llx", value) }
}

extension FNV1a {
    /// Mixes in a whole file's bytes (mapped, not read into memory).
    public mutating func mixFile(path: String) throws {
        let file = try MappedFile(path: path)
        // The bytes are valid only while the mapping lives.
        withExtendedLifetime(file) { mix(file.bytes) }
    }

    /// The digest of a whole file's bytes.
    public static func ofFile(_ path: String) throws -> FNV1a {
        var digest = FNV1a()
        try digest.mixFile(path: path)
        return digest
    }
}
