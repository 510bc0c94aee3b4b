import Foundation
import ShadowFormats

// What the fixed-seed cousins of the libFuzzer targets in fuzz/ share: CI cannot fuzz for long, so
// each run damages the committed seed files a few hundred times.

/// The seed files of one libFuzzer target, read from the source tree (fuzz/corpus/<target>).
public func fuzzSeeds(_ target: String) throws -> [[UInt8]] {
    let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../fuzz/corpus/\(target)").standardized
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    return try names.map { [UInt8](try Data(contentsOf: directory.appendingPathComponent($0))) }
}

/// Damages `bytes` a few times: overwrites with one of `interesting` (characters that matter to the
/// format under test) or with NUL, a UTF-8 continuation or lead byte or 0xFF, deletions,
/// insertions and a repeated span, the mutations libFuzzer leans on most.
public func mutate(_ bytes: [UInt8], interesting characters: String, using generator: inout SplitMix64) -> [UInt8] {
    let interesting = Array(characters.utf8) + [0x00, 0x80, 0xC3, 0xE2, 0xFF]
    var out = bytes
    for _ in 0..<(1 + generator.next(below: 4)) {
        let position = out.isEmpty ? 0 : generator.next(below: out.count)
        switch generator.next(below: 4) {
        case 0 where !out.isEmpty: out[position] = interesting[generator.next(below: interesting.count)]
        case 1 where !out.isEmpty: out.removeSubrange(position..<min(out.count, position + 1 + generator.next(below: 8)))
        case 2: out.insert(interesting[generator.next(below: interesting.count)], at: position)
        default:
            guard !out.isEmpty else { continue }
            let span = out[position..<min(out.count, position + 1 + generator.next(below: 16))]
            out.insert(contentsOf: span, at: generator.next(below: out.count + 1))
        }
    }
    return out
}
