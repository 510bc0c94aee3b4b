import Foundation
import Testing
import ShadowFormats
import ShadowTestSupport
@testable import ShadowTasks

// A fixed-seed cousin of the libFuzzer targets in fuzz/: CI cannot fuzz for long, so every task
// reader gets a few hundred mutations of the committed seed files in fuzz/corpus/ on each run.

/// Characters the task readers split, quote, escape or parse numbers on.
let taskCharacters = "{}[]\":,\\\n\r\t <>&;/#x0123456789-.eE_"

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
            let bytes = mutate(seeds[round % seeds.count], interesting: taskCharacters, using: &generator)
            #expect(try survives(target, bytes, in: directory), "\(target): \(bytes)")
        }
    }

    @Test("the Python string helpers take any text",
          arguments: ["", " ", "\u{1C}a\u{1F}", "[", "]", "[[]]", "ǅx", "ß", "\u{0301}", "a\u{0}b", "  [title] x  "])
    func pythonHelpers(text: String) {
        var generator = SplitMix64(seed: 11)
        for _ in 0..<20 {
            let mutated = String(decoding: mutate(Array(text.utf8), interesting: taskCharacters, using: &generator), as: UTF8.self)
            _ = mutated.pythonStripped
            _ = mutated.pythonCapitalized
            _ = mutated.lowercasingFirst
            _ = mutated.pythonReplacing("  ", with: " ")
            _ = mutated.removingBracketedText
        }
    }
}
