import Foundation
import Testing
import ShadowFormats
@testable import ShadowTasks

// A fixed-seed cousin of the libFuzzer targets in fuzz/: CI cannot fuzz for long, so every task
// reader gets a few hundred mutations of the committed seed files in fuzz/corpus/ on each run.

/// The seed files of one libFuzzer target, read from the source tree.
func fuzzSeeds(_ target: String) throws -> [[UInt8]] {
    let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../fuzz/corpus/\(target)").standardized
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    return try names.map { [UInt8](try Data(contentsOf: directory.appendingPathComponent($0))) }
}

/// Damages `bytes` a few times: overwrites with a byte that matters to the formats, deletions,
/// insertions and a repeated span, the mutations libFuzzer leans on most.
func mutate(_ bytes: [UInt8], using generator: inout SplitMix64) -> [UInt8] {
    let interesting = Array("{}[]\":,\\\n\r\t <>&;/#x0123456789-.eE_".utf8) + [0x00, 0x80, 0xC3, 0xE2, 0xFF]
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

@Suite("Task readers under random corruption")
struct TaskFuzzTests {
    /// Reads `bytes` with one task reader, as the libFuzzer target of that name does; true when
    /// it read or threw a ShadowError.
    func survives(_ target: String, _ bytes: [UInt8], in directory: TempDirectory) throws -> Bool {
        // A NUL splits an items file from its labels file (PIQA, Winogrande), as in fuzz/Targets.swift.
        let nul = bytes.firstIndex(of: 0)
        let items = try directory.bytes("items", Array(bytes[..<(nul ?? bytes.count)]))
        let labels = try nul.map { try directory.bytes("labels", Array(bytes[($0 + 1)...])) }
        do {
            switch target {
            case "piqa": _ = try TaskFile.multipleChoice(task: .piqa, path: items, labels: labels)
            case "winogrande": _ = try TaskFile.multipleChoice(task: .winogrande, path: items, labels: labels)
            case "hellaswag": _ = try TaskFile.multipleChoice(task: .hellaswag, path: items)
            case "copa": _ = try TaskFile.multipleChoice(task: .copa, path: items)
            case "ai2":
                for task in [TaskName.arcEasy, .openbookqa] {
                    do { _ = try TaskFile.multipleChoice(task: task, path: items) } catch is ShadowError {}
                }
            case "rte": _ = try TaskFile.multipleChoice(task: .rte, path: items)
            case "boolq": _ = try TaskFile.multipleChoice(task: .boolq, path: items)
            case "lambada": _ = try TaskFile.lambada(path: items)
            case "wikitext": _ = try TaskFile.wikitext(path: items)
            default: Issue.record("no reader for \(target)")
            }
            return true
        } catch is ShadowError {
            return true
        } catch {
            return false
        }
    }

    @Test("mutated task files of every format throw ShadowError or read, never trap",
          arguments: ["piqa", "hellaswag", "copa", "ai2", "winogrande", "rte", "boolq", "lambada", "wikitext"])
    func mutatedTaskFiles(target: String) throws {
        let directory = try TempDirectory()
        var generator = SplitMix64(seed: 0x5EED_0000 + UInt64(target.utf8.count))
        let seeds = try fuzzSeeds(target)
        #expect(!seeds.isEmpty)
        for round in 0..<150 {
            let bytes = mutate(seeds[round % seeds.count], using: &generator)
            #expect(try survives(target, bytes, in: directory), "\(target): \(bytes)")
        }
    }

    @Test("the Python string helpers take any text",
          arguments: ["", " ", "\u{1C}a\u{1F}", "[", "]", "[[]]", "ǅx", "ß", "\u{0301}", "a\u{0}b", "  [title] x  "])
    func pythonHelpers(text: String) {
        var generator = SplitMix64(seed: 11)
        for _ in 0..<20 {
            let mutated = String(decoding: mutate(Array(text.utf8), using: &generator), as: UTF8.self)
            _ = mutated.pythonStripped
            _ = mutated.pythonCapitalized
            _ = mutated.lowercasingFirst
            _ = mutated.pythonReplacing("  ", with: " ")
            _ = mutated.removingBracketedText
        }
    }
}
