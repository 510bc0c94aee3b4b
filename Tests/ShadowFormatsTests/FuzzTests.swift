import Foundation
import Testing
import ShadowFormats
import ShadowTestSupport

/// Opens and reads every tensor; any outcome but a trap is fine, and every error must be ours.
func openAndReadAll(_ open: () throws -> any TensorSource) -> Bool {
    do {
        let source = try open()
        for name in source.tensorNames {
            do { _ = try source.floats(name) } catch is ShadowError {} catch { return false }
        }
        return true
    } catch is ShadowError {
        return true
    } catch {
        return false
    }
}

@Suite("Readers under random corruption")
struct FuzzTests {
    /// Overwrites a few random bytes (biased towards the header, where the lengths live) of a valid
    /// file, many times with a fixed seed.
    func mutations(of bytes: [UInt8], count: Int, seed: UInt64) -> [[UInt8]] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            var mutated = bytes
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let limit = Bool.random(using: &generator) ? min(bytes.count, 160) : bytes.count
                let position = Int.random(in: 0..<limit, using: &generator)
                mutated[position] = Bool.random(using: &generator) ? UInt8.random(in: 0...255, using: &generator) : 0xFF
            }
            return mutated
        }
    }

    @Test("corrupted GGUF files throw ShadowError or read, never trap")
    func gguf() throws {
        var builder = smallGGUF()
        builder.tensor("q.weight", ne: [32, 2], type: .q4_1, data: [UInt8](repeating: 0x5A, count: 40))
        builder.add("names", .array(.string(["x", "yy"])))
        try withTemporaryDirectory { directory in
            let url = directory.appendingPathComponent("fuzz.gguf")
            for bytes in mutations(of: builder.bytes(), count: 400, seed: 1) {
                try Data(bytes).write(to: url)
                #expect(openAndReadAll { try GGUFFile(path: url.path) })
            }
        }
    }

    @Test("corrupted safetensors files throw ShadowError or read, never trap")
    func safetensors() throws {
        try withTemporaryDirectory { directory in
            let url = directory.appendingPathComponent("fuzz.safetensors")
            for bytes in mutations(of: smallSafetensors().bytes(), count: 400, seed: 2) {
                try Data(bytes).write(to: url)
                #expect(openAndReadAll { try SafetensorsFile(path: url.path) })
            }
        }
    }
}
