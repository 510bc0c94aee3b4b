import Foundation
import Testing
@testable import ShadowCLI
@testable import ShadowSparsity
import ShadowFormats
import ShadowModels
import ShadowTestSupport

/// The `shadowllm` executable of this build, for tests that need a real child process to kill.
/// SwiftPM builds executables with the tests but cannot make a test target depend on one, so the
/// test looks beside its own bundle first, then in the package's build folders.
enum BuiltTool {
    static let path: String? = {
        var directories = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
                           URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        directories += ["release", "debug"].map { package.appendingPathComponent(".build/\($0)") }
        return directories.map { $0.appendingPathComponent("shadowllm").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    static let missing: Comment = """
        SKIPPED: the shadowllm executable is not built beside the tests; run \
        `swift build -c release --product shadowllm` first (scripts/test.sh does)
        """
}

/// One run of the tool as a child process, optionally sent `signal` after `delay` seconds.
struct ChildRun {
    enum End: Equatable, CustomStringConvertible {
        case exited(Int32), signalled(Int32)
        var description: String {
            switch self {
            case .exited(let status): return "exit \(status)"
            case .signalled(let signal): return "signal \(signal)"
            }
        }
    }

    let end: End
    let err: String
    let seconds: Double

    /// `environment` is added to this process's own; standard output goes to the file `output`
    /// (none: discarded). A run still going after `timeout` seconds is killed (SIGKILL), so that a
    /// hang fails its test instead of stalling the suite.
    init(_ arguments: [String], signal: Int32? = nil, after delay: Double = 0, environment: [String: String] = [:],
         output: String? = nil, timeout: Double? = nil) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltTool.path!)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        // A file, not a pipe: a chatty child must never block on a full pipe while we wait.
        let errPath = TestScratch.path("child", suffix: ".err")
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer { try? errHandle.close(); try? FileManager.default.removeItem(atPath: errPath) }
        process.standardError = errHandle
        process.standardOutput = try output.map { try FileHandle(forWritingTo: URL(fileURLWithPath: $0)) } ?? FileHandle.nullDevice
        let start = Date()
        try process.run()
        if let signal {
            Thread.sleep(forTimeInterval: delay)
            if process.isRunning { kill(process.processIdentifier, signal) }
        }
        if let timeout {
            while process.isRunning && Date().timeIntervalSince(start) < timeout { Thread.sleep(forTimeInterval: 0.05) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        seconds = Date().timeIntervalSince(start)
        end = process.terminationReason == .uncaughtSignal ? .signalled(process.terminationStatus) : .exited(process.terminationStatus)
        err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    }
}

/// A command the interruption test kills and resumes. A new long-running command (`sweep`)
/// joins the test by adding one of these to `InterruptionTests.commands`.
struct InterruptibleCommand: Sendable {
    let name: String
    /// Arguments of a fresh run writing into the trial directory `dir`.
    let arguments: @Sendable (_ dir: String) -> [String]
    /// Arguments that continue an interrupted run in `dir`.
    let resume: @Sendable (_ dir: String) -> [String]
    /// Throws if anything visible in `dir` is half-written (called after every kill).
    let checkIntact: @Sendable (_ dir: String) throws -> Void
    /// The final outputs, reduced to what must not depend on interruptions (timings dropped).
    let outputs: @Sendable (_ dir: String) throws -> [String: Data]
}

/// Raw bytes of floats, for exact comparisons.
private func bytes(_ values: [Float]) -> Data { values.withUnsafeBytes { Data($0) } }

private func visibleFiles(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
}

/// Every file anywhere under `dir` whose name marks it as an AtomicFile temporary.
private func partialFiles(_ dir: String) -> [String] {
    (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".partial") }
}

@Suite("Interruption", .serialized)
struct InterruptionTests {
    static let model = fixture("tiny-llama")

    /// A corpus long enough for ~700 windows of 64 tokens (about a second of calibration).
    static let corpus: String = {
        let sentences = ["The river ran past the old mill and under the stone bridge.",
                         "Children played in the square while the bells rang at noon.",
                         "A cold wind came down from the hills and the shutters rattled.",
                         "She wrote the numbers 12, 345 and 6789 in the ledger."]
        let path = TestScratch.path("interrupt-corpus", suffix: ".txt")
        try! (0..<2000).map { sentences[$0 % 4] }.joined(separator: " ").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    static func calibrateArguments(_ dir: String) -> [String] {
        ["calibrate", "--model", model, "--source", "text:\(corpus)", "--samples", "700", "--text-window", "64",
         "--text-continuation", "16", "--criteria", "plainact,l2_norm", "--chunk-size", "32", "--threads", "1",
         "--no-progress", "--out", dir + "/traces"]
    }

    static let calibrate = InterruptibleCommand(
        name: "calibrate",
        arguments: { dir in calibrateArguments(dir) },
        resume: { dir in calibrateArguments(dir) + ["--resume"] },
        checkIntact: { dir in
            let traces = dir + "/traces"
            guard FileManager.default.fileExists(atPath: traces + "/" + TraceManifest.fileName) else {
                // Killed before the first manifest: nothing visible may exist yet.
                let visible = visibleFiles(traces)
                guard visible.isEmpty else { throw ShadowError.failed("\(traces): \(visible) without a manifest") }
                return
            }
            let manifest = try TraceManifest.load(directory: traces)
            let listed = Set(manifest.chunks.map(\.file))
            for file in visibleFiles(traces) where file != TraceManifest.fileName {
                let path = traces + "/" + file
                if listed.contains(file) {
                    _ = try TraceChunk.read(path: path, criteria: manifest.criteria, shape: manifest.model.shape)
                } else {
                    // A chunk renamed into place just before its manifest: complete, merely unlisted.
                    _ = try SafetensorsFile(path: path).floats("index")
                }
            }
        },
        outputs: { dir in
            let traces = dir + "/traces"
            var manifest = try TraceManifest.load(directory: traces)
            guard manifest.complete else { throw ShadowError.failed("\(traces): not complete") }
            // Ctrl-C saves a short chunk, so chunk boundaries may differ; the samples may not.
            manifest.chunks = []
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            var result = ["manifest": try encoder.encode(manifest)]
            var samples = Data()
            try TraceStore.forEach(directory: traces) { r in
                samples += bytes([Float(r.index), r.loss] + r.x + r.attention + r.layerInputs)
                for key in r.heads.keys.sorted() { samples += bytes(r.heads[key]!) }
                for key in r.neurons.keys.sorted() { samples += bytes(r.neurons[key]!) }
            }
            result["samples"] = samples
            return result
        })

    /// Trains on the traces of the reference calibration (written once per test run).
    static func trainPredictor(traces: String) -> InterruptibleCommand {
        let arguments: @Sendable (String) -> [String] = { dir in
            ["train-predictor", "--traces", traces, "--head-width", "64", "--neuron-width", "64", "--head-epochs", "50",
             "--neuron-epochs", "50", "--threads", "1", "--no-progress", "--out", dir + "/predictor.safetensors",
             "--checkpoint-every", "0.05"]
        }
        return InterruptibleCommand(
            name: "train-predictor",
            arguments: arguments,
            // Continues from the last checkpoint (or starts afresh before the first), and must end
            // with the uninterrupted run's predictor.
            resume: { arguments($0) + ["--resume"] },
            checkIntact: { dir in
                for file in visibleFiles(dir) {
                    switch file {
                    case "predictor.safetensors":
                        _ = try PredictorFile.load(path: dir + "/" + file)
                    case "predictor.safetensors.checkpoint":
                        let checkpoint = try SafetensorsFile(path: dir + "/" + file)
                        guard checkpoint.metadata["format"] == TrainingCheckpoint.format else {
                            throw ShadowError.failed("\(dir): \(file) is not a checkpoint")
                        }
                    default:
                        throw ShadowError.failed("\(dir): unexpected \(file)")
                    }
                }
            },
            outputs: { dir in
                let path = dir + "/predictor.safetensors"
                // The checkpoint goes once the predictor is written.
                if FileManager.default.fileExists(atPath: path + ".checkpoint") {
                    throw ShadowError.failed("\(dir): a checkpoint left beside the finished predictor")
                }
                let file = try SafetensorsFile(path: path)
                var result: [String: Data] = [:]
                for name in file.tensorNames { result[name] = bytes(try file.floats(name)) }
                var metadata = try PredictorFile.metadata(path: path)
                metadata.training?.seconds = 0
                let encoder = JSONEncoder()
                encoder.outputFormatting = .sortedKeys
                result["metadata"] = try encoder.encode(metadata)
                return result
            })
    }

    /// A PIQA-style file of 60 questions with labels, and a short text, for the sweep.
    static let sweepData: (piqa: String, labels: String, text: String) = {
        let dir = TestScratch.path("interrupt-sweep")
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let goals = ["Open a jar", "Dry hands", "Boil water", "Read a book", "Cross a river", "Light a room"]
        let good = ["Twist the lid.", "Use a towel.", "Heat it in a pot.", "Open it.", "Take the bridge.", "Switch on a lamp."]
        let bad = ["Eat the jar.", "Use a rock.", "Freeze it.", "Burn it.", "Drink the river.", "Paint the walls black."]
        var rows: [String] = [], labels: [String] = []
        for i in 0..<60 {
            let g = i % goals.count, swap = i % 3 == 0
            rows.append(#"{"goal": "\#(goals[g]) \#(i)", "sol1": "\#(swap ? bad[g] : good[g])", "sol2": "\#(swap ? good[g] : bad[g])"}"#)
            labels.append(swap ? "1" : "0")
        }
        try! rows.joined(separator: "\n").write(toFile: dir + "/piqa.jsonl", atomically: true, encoding: .utf8)
        try! labels.joined(separator: "\n").write(toFile: dir + "/labels.lst", atomically: true, encoding: .utf8)
        try! String(repeating: "The river ran past the old mill.\nChildren played in the square.\n", count: 20)
            .write(toFile: dir + "/text.txt", atomically: true, encoding: .utf8)
        return (dir + "/piqa.jsonl", dir + "/labels.lst", dir + "/text.txt")
    }()

    /// Sweeps static and random masks over the reference calibration's traces.
    static func sweep(traces: String) -> InterruptibleCommand {
        let arguments: @Sendable (String) -> [String] = { dir in
            ["sweep", "--model", model, "--tasks", "piqa,wikitext", "--data", "piqa=\(sweepData.piqa),wikitext=\(sweepData.text)",
             "--labels", "piqa=\(sweepData.labels)", "--methods", "random,static", "--criteria", "plainact,l2_norm",
             "--sparsities", "0.25,0.5", "--traces", traces, "--context", "32", "--threads", "1", "--json", "--no-progress",
             "--out", dir + "/sweep"]
        }
        return InterruptibleCommand(
            name: "sweep",
            arguments: arguments,
            // The state is saved every few items: the same command continues.
            resume: arguments,
            checkIntact: { dir in
                let sweep = dir + "/sweep"
                for file in visibleFiles(sweep) {
                    let data = try Data(contentsOf: URL(fileURLWithPath: sweep + "/" + file))
                    if file.hasSuffix(".json") {
                        _ = try JSONSerialization.jsonObject(with: data)
                    } else if file.hasSuffix(".svg") || file.hasSuffix(".md") {
                        let text = String(decoding: data, as: UTF8.self)
                        guard text.hasSuffix("\n") else { throw ShadowError.failed("\(file) is cut short") }
                    }
                }
            },
            outputs: { dir in
                let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/sweep/results.json"))
                let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
                var result: [String: Data] = [:]
                // Every digit: KL sums lie on a grid that makes the chunks an interrupted run saved irrelevant.
                func spelled(_ value: Any) -> String {
                    if let number = value as? Double { return "\(number)" }
                    if let dictionary = value as? [String: Any] {
                        return dictionary.keys.sorted().map { "\($0)=\(spelled(dictionary[$0]!))" }.joined(separator: ",")
                    }
                    return "\(value)"
                }
                for row in json["rows"] as? [[String: Any]] ?? [] {
                    var row = row
                    row["seconds"] = nil
                    result["\(row["task"]!) \(row["method"]!) \(row["criterion"] ?? "-") \(row["sparsity"]!)"] = Data(spelled(row).utf8)
                }
                return result
            })
    }

    static func scratch() -> String {
        let dir = TestScratch.path("interrupt")
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("calibrate, train-predictor and sweep killed at 20 random points resume to the uninterrupted outputs",
          .enabled(if: BuiltTool.path != nil, BuiltTool.missing))
    func randomKills() throws {
        let root = Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }

        // Reference runs, uninterrupted; their wall time bounds the kill delays.
        let referenceCalibration = root + "/reference-calibrate"
        let first = try ChildRun(Self.calibrate.arguments(referenceCalibration))
        try #require(first.end == .exited(0), "\(first.err)")
        let commands = [Self.calibrate, Self.trainPredictor(traces: referenceCalibration + "/traces"),
                        Self.sweep(traces: referenceCalibration + "/traces")]
        var references: [String: (outputs: [String: Data], seconds: Double)] = [:]
        for command in commands {
            let dir = root + "/reference-\(command.name)"
            let run = command.name == "calibrate" ? first : try ChildRun(command.arguments(dir))
            try #require(run.end == .exited(0), "\(command.name): \(run.err)")
            references[command.name] = (try command.outputs(dir), run.seconds)
        }

        var generator = SeededGenerator(seed: 2024)
        func uniform() -> Double { Double(generator.next() >> 11) / Double(1 << 53) }
        var killPoints = 0, trial = 0
        var outcomes: [String: Int] = [:]
        while killPoints < 20 {
            let command = commands[trial % commands.count]
            let dir = root + "/trial-\(trial)"
            trial += 1
            let reference = references[command.name]!
            var started = false
            // One kill, sometimes a second one during the resumed run.
            repeat {
                let signal = uniform() < 0.5 ? SIGINT : SIGKILL
                // A resumed run has less left to do.
                let delay = uniform() * reference.seconds * (started ? 0.5 : 0.9)
                let run = try ChildRun(started ? command.resume(dir) : command.arguments(dir), signal: signal, after: delay)
                killPoints += 1
                started = true
                let name = signal == SIGINT ? "SIGINT" : "SIGKILL"
                let label = "\(command.name) \(name) at \(String(format: "%.3f", delay)) s"
                switch run.end {
                case .exited(0):
                    outcomes["\(name): finished first", default: 0] += 1
                case .exited(CLI.interruptedStatus) where signal == SIGINT:
                    #expect(run.err.contains("interrupted: "), "\(label): \(run.err)")
                    outcomes["SIGINT: stopped cleanly (exit 130)", default: 0] += 1
                case .signalled(signal):
                    outcomes["\(name): killed", default: 0] += 1
                default:
                    Issue.record("\(label): unexpected \(run.end): \(run.err)")
                }
                do { try command.checkIntact(dir) } catch { Issue.record("\(label): half-written output: \(error)") }
            } while killPoints < 20 && uniform() < 0.3

            let resumed = try ChildRun(command.resume(dir))
            try #require(resumed.end == .exited(0), "\(command.name) resume in \(dir): \(resumed.err)")
            let outputs = try command.outputs(dir)
            #expect(outputs.keys.sorted() == reference.outputs.keys.sorted(), "\(command.name) trial \(trial)")
            for (key, value) in outputs where value != reference.outputs[key] {
                Issue.record("\(command.name) trial \(trial): \(key) differs from the uninterrupted run")
            }
            #expect(partialFiles(dir).isEmpty, "\(command.name) trial \(trial) left \(partialFiles(dir))")
        }
        print("interruption: \(killPoints) kill points over \(trial) trials: "
              + outcomes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        // Most kills must land mid-run, or the test proves little.
        #expect(outcomes.filter { !$0.key.hasSuffix("finished first") }.values.reduce(0, +) >= 12, "\(outcomes)")
    }

    @Test("SIGINT, or SIGTERM as a batch scheduler sends, stops calibrate after the current sample, saves the finished ones and exits 130",
          .enabled(if: BuiltTool.path != nil, BuiltTool.missing), arguments: [SIGINT, SIGTERM])
    func signalSavesWork(signal: Int32) throws {
        let dir = Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = TestScratch.path("calibrate-json", suffix: ".out")
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: output) }
        let run = try ChildRun(Self.calibrate.arguments(dir) + ["--json"], signal: signal, after: 0.4, output: output)
        try #require(run.end == .exited(CLI.interruptedStatus), "\(run.end): \(run.err)")
        #expect(run.err.hasPrefix("interrupted: ") && run.err.contains("--resume"), "\(run.err)")
        let manifest = try TraceManifest.load(directory: dir + "/traces")
        // The samples computed before Ctrl-C are on disk, and --json reports them.
        #expect(!manifest.complete && manifest.sampleCount > 0)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as? [String: Any]
        #expect(report?["interrupted"] as? Bool == true && report?["complete"] as? Bool == false, "\(String(describing: report))")
        #expect(report?["samples"] as? Int == manifest.sampleCount && report?["chunks"] as? Int == manifest.chunks.count)
    }
}
