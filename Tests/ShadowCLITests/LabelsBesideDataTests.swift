import Foundation
import Testing
import ShadowFormats
@testable import ShadowCLI
import ShadowTestSupport
import ShadowTasks

/// PIQA and Winogrande keep their gold labels in `NAME-labels.lst` beside the data; `eval` and
/// `sweep` find it there without `--labels`, as `calibrate` does; `--verbose` names it in all three.
@Suite("Command line: labels files beside the data")
struct LabelsBesideDataTests {
    @Test("eval --task piqa without --labels reads NAME-labels.lst beside the data and names it with --verbose")
    func evalFindsLabels() throws {
        let files = try EvalCommandTests.piqaFiles()
        let base = ["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", files.data, "--no-progress", "--json"]
        let given = CLIRun(base + ["--labels", files.labels])
        let found = CLIRun(base + ["--verbose"])
        #expect(given.status == 0 && found.status == 0, "\(found.err)")
        #expect(try found.json()["acc"] as? Double == (try given.json()["acc"] as? Double))
        #expect(found.err.contains("eval: piqa labels from \(files.labels) (found beside \(files.data))"), "\(found.err)")
        #expect(!CLIRun(base).err.contains("labels from"))
        let named = CLIRun(base + ["--labels", files.labels, "--verbose"])
        #expect(named.err.contains("eval: piqa labels from \(files.labels) (--labels)"), "\(named.err)")
    }

    @Test("eval without a labels file anywhere still names the missing key")
    func evalWithoutLabels() throws {
        let directory = TestScratch.url("labels-none")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let data = directory.appendingPathComponent("valid.jsonl").path
        try #"{"goal": "Open a jar", "sol1": "Twist the lid.", "sol2": "Eat the jar."}"#.write(toFile: data, atomically: true, encoding: .utf8)
        let run = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", data, "--no-progress"])
        #expect(run.status == 1 && run.err.contains("key \"label\": missing"), "\(run.err)")
    }

    @Test("sweep --data piqa=PATH without --labels reads the labels file beside it")
    func sweepFindsLabels() throws {
        let files = try EvalCommandTests.piqaFiles()
        let out = scratchPath("sweep-labels-beside")
        let run = CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", out, "--tasks", "piqa", "--data", "piqa=\(files.data)",
                          "--methods", "random", "--sparsities", "0.5", "--limit", "2", "--json", "--no-progress", "--verbose"])
        #expect(run.status == 0, "\(run.err)")
        #expect(run.err.contains("sweep: piqa labels from \(files.labels) (found beside \(files.data))"), "\(run.err)")
    }

    @Test("calibrate --source piqa:PATH names the labels file it found beside the data with --verbose")
    func calibrateNamesLabels() throws {
        let files = try EvalCommandTests.piqaFiles()
        let base = ["calibrate", "--model", fixture("tiny-llama"), "--shots", "0", "--samples", "1", "--no-progress"]
        // Two ranges of one file: their labels file is named once.
        let run = CLIRun(base + ["--source", "piqa:\(files.data)@0-2,piqa:\(files.data)@2-",
                                 "--out", scratchPath("calibrate-labels-beside"), "--verbose"])
        #expect(run.status == 0, "\(run.err)")
        let line = "calibrate: piqa labels from \(files.labels) (found beside \(files.data))"
        #expect(run.err.components(separatedBy: line).count == 2, "\(run.err)")
        #expect(!CLIRun(base + ["--source", "piqa:\(files.data)", "--out", scratchPath("calibrate-labels-quiet")]).err.contains("labels from"))
    }

    @Test("the lookup: NAME-labels.lst beside NAME.jsonl for PIQA and Winogrande only")
    func lookup() throws {
        let directory = TestScratch.url("labels-lookup")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let dev = directory.appendingPathComponent("dev.jsonl").path, devLabels = directory.appendingPathComponent("dev-labels.lst").path
        try "{}".write(toFile: dev, atomically: true, encoding: .utf8)
        #expect(try TaskFile.labelsBeside(data: dev, task: .winogrande) == nil)
        try "1\n".write(toFile: devLabels, atomically: true, encoding: .utf8)
        #expect(try TaskFile.labelsBeside(data: dev, task: .winogrande) == devLabels)
        #expect(try TaskFile.labelsBeside(data: dev, task: .piqa) == devLabels)
        #expect(try TaskFile.labelsBeside(data: dev, task: .hellaswag) == nil)
        // A labels file that is there but cannot be looked at is an error, not "no labels".
        try FileManager.default.removeItem(atPath: devLabels)
        try FileManager.default.createSymbolicLink(atPath: devLabels, withDestinationPath: devLabels)
        #expect(throws: ShadowError.self) { try TaskFile.labelsBeside(data: dev, task: .winogrande) }
    }
}
