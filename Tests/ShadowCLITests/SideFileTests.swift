import Foundation
import Testing
@testable import ShadowCLI
@testable import ShadowSparsity
import ShadowFormats
import ShadowModels
import ShadowTestSupport

/// Traces, scores and states that do not fit the model or the command: one-line errors, no crash,
/// nothing half-written.
@Suite("Side files that do not fit", .serialized)
struct SideFileTests {
    /// The error is one line that names `names`, and the status is 1.
    func expectOneLineError(_ run: CLIRun, naming names: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(run.status == 1, "status \(run.status): \(run.err)", sourceLocation: sourceLocation)
        #expect(run.err.hasPrefix("error: ") && run.err.split(separator: "\n").count == 1, "\(run.err)", sourceLocation: sourceLocation)
        for name in names { #expect(run.err.contains(name), "\(run.err) does not name \(name)", sourceLocation: sourceLocation) }
    }

    @Test("an output that cannot be written is refused before the work that would fill it: eval --samples, train-predictor and aggregate --out")
    func outputsCheckedFirst() throws {
        let directory = scratchPath("unwritable")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = directory + "/a-file"
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let piqa = try EvalCommandTests.piqaFiles()
        let traces = SweepCommandTests.inputs.traces
        for (arguments, option, reason) in [
            (["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", piqa.data, "--labels", piqa.labels,
              "--samples", file + "/x.jsonl", "--no-progress"], "--samples", "\(file) is a file, not a directory"),
            (["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", piqa.data, "--labels", piqa.labels,
              "--samples", directory, "--no-progress"], "--samples", "\(directory) is a directory"),
            (["train-predictor", "--traces", traces, "--out", file + "/deeper/p.safetensors", "--no-progress"], "--out", "\(file) is a file, not a directory"),
            (["aggregate", "--traces", traces, "--out", directory], "--out", "\(directory) is a directory"),
        ] {
            let run = CLIRun(arguments)
            expectOneLineError(run, naming: ["error: \(option): ", reason])
            #expect(run.out.isEmpty, "\(arguments)")
        }
        #expect(!FileManager.default.fileExists(atPath: file + "/deeper"))
    }

    @Test("a path that is a symbolic link loop is named as one by every command, not called missing")
    func symbolicLinkLoops() throws {
        let directory = scratchPath("loops")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let loop = directory + "/loop"
        try FileManager.default.createSymbolicLink(atPath: loop, withDestinationPath: loop)
        let reason = "Too many levels of symbolic links"
        let runs: [[String]] = [
            ["info", "--model", loop],
            ["tokenize", "--model", fixture("tiny-llama"), "--text-file", loop],
            ["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", loop],
            ["train-predictor", "--traces", loop, "--out", directory + "/predictor.safetensors"],
            ["predictor", "info", loop],
        ]
        for arguments in runs {
            let run = CLIRun(arguments)
            expectOneLineError(run, naming: [loop, reason])
            #expect(!run.err.contains("no such file"), "\(arguments): \(run.err)")
        }
        // A looping tokenizer.json in a checkpoint directory was taken for none at all.
        let model = directory + "/model"
        try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: model)
        try FileManager.default.removeItem(atPath: model + "/tokenizer.json")
        try FileManager.default.createSymbolicLink(atPath: model + "/tokenizer.json", withDestinationPath: model + "/tokenizer.json")
        expectOneLineError(CLIRun(["info", "--model", model]), naming: [model + "/tokenizer.json", reason])
    }

    @Test("sweep refuses traces calibrated on another model before it writes anything")
    func sweepChecksTheTracesModel() throws {
        let piqa = try EvalCommandTests.piqaFiles()
        let out = scratchPath("sweep-other-model")
        // The sweep suite's traces come from tiny-llama; tiny-llama-tied has other weights and KV heads.
        let run = CLIRun(["sweep", "--model", fixture("tiny-llama-tied"), "--out", out, "--tasks", "piqa",
                          "--data", "piqa=\(piqa.data)", "--labels", "piqa=\(piqa.labels)", "--methods", "static",
                          "--criteria", "plainact", "--sparsities", "0.5", "--limit", "2",
                          "--traces", SweepCommandTests.inputs.traces, "--no-progress"])
        expectOneLineError(run, naming: [SweepCommandTests.inputs.traces, "tiny-llama", "its kv_heads is 2, the model's 4"])
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("static masks of heads alone accept a heads-only scores file; pruning neurons still needs neuron scores")
    func headsOnlyStaticScores() throws {
        let dir = TestScratch.url("heads-only-scores")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let scores = dir.appendingPathComponent("jacov.json")
        let heads = (0..<2).map { l in (0..<4).map { Double(l * 4 + $0) } }
        try JSONSerialization.data(withJSONObject: ["criterion": "jacov", "samples": 3, "heads": heads]).write(to: scores)
        func generate(_ sparsity: [String]) -> CLIRun {
            CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Once", "--max-tokens", "2", "--json",
                    "--method", "static", "--scores", scores.path] + sparsity)
        }
        let headsOnly = generate(["--head-sparsity", "0.5"])
        #expect(headsOnly.status == 0, "\(headsOnly.err)")
        expectOneLineError(generate(["--sparsity", "0.5"]), naming: [scores.path, "neurons"])
    }

    @Test("static scores from aggregate or scores --json carry their model's fingerprint: another model of the same sizes is refused")
    func staticScoresNameTheirModel() throws {
        let dir = TestScratch.url("fingerprinted-scores")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let aggregated = dir.appendingPathComponent("plainact.json").path
        let aggregate = CLIRun(["aggregate", "--traces", SweepCommandTests.inputs.traces, "--out", aggregated])
        #expect(aggregate.status == 0, "\(aggregate.err)")
        let single = dir.appendingPathComponent("one-sample.json").path
        let scores = CLIRun(["scores", "--model", fixture("tiny-llama"), "--context", "Once upon", "--continuation", " a time", "--json"])
        #expect(scores.status == 0, "\(scores.err)")
        #expect(((try scores.json()["model"] as? [String: Any])?["content_hash"] as? String)?.count == 16)
        try scores.out.write(toFile: single, atomically: true, encoding: .utf8)
        func generate(_ model: String, _ path: String) -> CLIRun {
            CLIRun(["generate", "--model", fixture(model), "--prompt", "Once", "--max-tokens", "2", "--json",
                    "--method", "static", "--scores", path, "--sparsity", "0.5"])
        }
        for path in [aggregated, single] {
            let same = generate("tiny-llama", path)
            #expect(same.status == 0, "\(same.err)")
            // tiny-llama-tied has tiny-llama's layers, heads and FFN width (so the scores fit) but other weights.
            expectOneLineError(generate("tiny-llama-tied", path), naming: [path, "made for tiny-llama", "not for the loaded model tiny-llama-tied"])
        }
        // tiny-qwen3-gguf holds tiny-qwen3's weights as a GGUF: every size the same, only the file differs, and the error says so.
        let qwen3 = CLIRun(["scores", "--model", fixture("tiny-qwen3"), "--context", "Once upon", "--continuation", " a time", "--json"])
        #expect(qwen3.status == 0, "\(qwen3.err)")
        let qwen3Scores = dir.appendingPathComponent("qwen3.json").path
        try qwen3.out.write(toFile: qwen3Scores, atomically: true, encoding: .utf8)
        let converted = CLIRun(["generate", "--model", fixture("tiny-qwen3-gguf") + "/model.gguf", "--prompt", "Once", "--max-tokens", "2",
                                "--method", "static", "--scores", qwen3Scores, "--sparsity", "0.5"])
        expectOneLineError(converted, naming: [qwen3Scores, "made for tiny-qwen3 (qwen3", "the same architecture and sizes, other weights",
                                               "a conversion to GGUF or another quantisation counts as another model"])
    }

    @Test("a resumed sweep refuses a state with negative or impossible counts or another version, naming the key")
    func sweepStateIsChecked() throws {
        let piqa = try EvalCommandTests.piqaFiles()
        let out = scratchPath("sweep-state")
        func sweep() -> CLIRun {
            CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", out, "--tasks", "piqa", "--data", "piqa=\(piqa.data)",
                    "--labels", "piqa=\(piqa.labels)", "--methods", "random", "--sparsities", "0.5", "--limit", "2", "--no-progress"])
        }
        let first = sweep()
        #expect(first.status == 0, "\(first.err)")
        let statePath = out + "/sweep-state.json", resultsPath = out + "/results.json"
        let good = try Data(contentsOf: URL(fileURLWithPath: statePath))
        let results = try Data(contentsOf: URL(fileURLWithPath: resultsPath))
        let goodState = try #require(try JSONSerialization.jsonObject(with: good) as? [String: Any])
        let denseTally = try #require(((goodState["tallies"] as? [String: Any])?["piqa"] as? [String: Any])?["dense"])
        let cases: [([String], Any, String)] = [
            (["tallies", "piqa", "dense", "items"], -5, "tallies.piqa.dense.items"),
            (["tallies", "piqa", "random/-/0.50", "accCorrect"], 7, "tallies.piqa.random/-/0.50.accCorrect"),
            (["tallies", "piqa", "random/-/0.50", "agreement", "positions"], -1, "agreement.positions"),
            (["version"], 99, "version"),
            // Sums no sweep can reach, and cells no sweep writes.
            (["tallies", "piqa", "random/-/0.50", "agreement", "klSum"], -0.8, "agreement.klSum"),
            (["tallies", "piqa", "dense", "nllSum"], -2.5, "tallies.piqa.dense.nllSum"),
            (["tallies", "piqa", "random/-/0.50", "headSparsitySum"], 1e6, "headSparsitySum"),
            (["tallies", "piqa", "static/inf/nan"], denseTally, "tallies.piqa.static/inf/nan"),
            (["tallies", "piqa", "dense", "truncatedItems"], 99, "tallies.piqa.dense.truncatedItems"),
            // What the report draws: a cell's own sparsity, the heat map's rows and columns.
            (["cells", "random/-/0.50", "sparsity"], 1e300, "cells.random/-/0.50"),
            (["headImportance", "plainact"], Array(repeating: [0.5], count: 3000), "headImportance.plainact"),
        ]
        for (keys, value, mention) in cases {
            var state = try #require(try JSONSerialization.jsonObject(with: good) as? [String: Any])
            setJSON(&state, keys, value)
            try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: statePath))
            expectOneLineError(sweep(), naming: [statePath, mention])
            #expect(try Data(contentsOf: URL(fileURLWithPath: resultsPath)) == results)
        }
    }

    func calibrate(_ out: String, _ extra: [String] = []) -> CLIRun {
        CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(CalibrateTests.corpus)", "--samples", "3",
                "--text-window", "16", "--text-continuation", "4", "--chunk-size", "2", "--out", out, "--no-progress"] + extra)
    }

    @Test("outputs that cannot be written name the path and the cause in words, not a Foundation dump")
    func unwritableOutputs() throws {
        let traces = scratchPath("unwritable-traces")
        #expect(calibrate(traces).status == 0)
        let file = scratchPath("a-file")
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let piqa = try EvalCommandTests.piqaFiles()
        func sweep(_ out: String) -> CLIRun {
            CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", out, "--tasks", "piqa", "--data", "piqa=\(piqa.data)",
                    "--labels", "piqa=\(piqa.labels)", "--methods", "random", "--sparsities", "0.5", "--limit", "2", "--no-progress"])
        }
        let cases: [(CLIRun, [String])] = [
            (calibrate(file), ["cannot create directory \(file)", "a file of that name exists"]),
            (calibrate(file + "/traces"), ["cannot create directory \(file)/traces", "\(file) is a file, not a directory"]),
            (CLIRun(["traces", "merge", "--shards", traces, "--out", file + "/merged"]), ["cannot create directory \(file)/merged"]),
            (sweep(file + "/sweep"), ["cannot create directory \(file)/sweep"]),
            (CLIRun(["aggregate", "--traces", traces, "--out", NSTemporaryDirectory()]), ["--out: \(NSTemporaryDirectory()) is a directory"]),
            (CLIRun(["aggregate", "--traces", traces, "--out", traces + "/manifest.json"]), ["would overwrite --traces \(traces)"]),
            (CLIRun(["aggregate", "--traces", traces, "--out", file + "/scores.json"]), ["cannot write \(file)/scores.json", "\(file) is a file, not a directory"]),
            (CLIRun(["aggregate", "--traces", traces, "--out", file + "/sub/scores.json"]), ["cannot write \(file)/sub/scores.json", "\(file) is a file, not a directory"]),
        ]
        for (run, mentions) in cases {
            expectOneLineError(run, naming: mentions)
            #expect(!run.err.contains("Error Domain") && !run.err.contains("errno"), "\(run.err)")
        }
        // A directory that refuses new files (procfs): the cause is the directory, in words.
        if FileManager.default.fileExists(atPath: "/proc/self") {
            for (run, mention) in [(calibrate("/proc/tr"), "cannot create directory /proc/tr: No such file or directory"),
                                   (CLIRun(["aggregate", "--traces", traces, "--out", "/proc/agg.json"]), "cannot write /proc/agg.json: cannot create a file in /proc"),
                                   // Checked before training, which would save its first checkpoint minutes in.
                                   (CLIRun(["train-predictor", "--traces", traces, "--out", scratchPath("p.safetensors"), "--checkpoint", "/proc/ckpt",
                                            "--no-progress"]), "--checkpoint: cannot write /proc/ckpt: cannot create a file in /proc")] {
                expectOneLineError(run, naming: [mention])
                #expect(!run.err.contains("Error Domain"), "\(run.err)")
            }
        }
    }

    @Test("traces merge of some shards names the missing one; a failed merge leaves no directory to block the retry")
    func mergeCoversEveryShard() throws {
        let s0 = scratchPath("merge-s0"), s1 = scratchPath("merge-s1"), out = scratchPath("merge-out")
        #expect(calibrate(s0, ["--shard", "0/2"]).status == 0)
        #expect(calibrate(s1, ["--shard", "1/2"]).status == 0)
        expectOneLineError(CLIRun(["traces", "merge", "--shards", s0, "--out", out]), naming: ["shard 1/2 is missing"])
        #expect(!FileManager.default.fileExists(atPath: out))
        // A chunk listed by the manifest but gone: the merge fails, and leaves nothing.
        let broken = scratchPath("merge-s1-broken")
        try FileManager.default.copyItem(atPath: s1, toPath: broken)
        try FileManager.default.removeItem(atPath: broken + "/chunk-00000.safetensors")
        expectOneLineError(CLIRun(["traces", "merge", "--shards", "\(s0),\(broken)", "--out", out]), naming: [broken + "/chunk-00000.safetensors"])
        #expect(!FileManager.default.fileExists(atPath: out))
        // A file where a parent of --out would be is named as such, as other commands do.
        let file = scratchPath("merge-file")
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let blocked = CLIRun(["traces", "merge", "--shards", "\(s0),\(s1)", "--out", file + "/x"])
        #expect(blocked.status == 1 && blocked.err == "error: cannot create directory \(file)/x: \(file) is a file, not a directory\n", "\(blocked.err)")
        let retry = CLIRun(["traces", "merge", "--shards", "\(s0),\(s1)", "--out", out, "--json"])
        #expect(retry.status == 0, "\(retry.err)")
        #expect(try TraceManifest.load(directory: out).sampleCount == 3)
        let report = try JSONSerialization.jsonObject(with: Data(retry.out.utf8)) as? [String: Any]
        #expect(report?["samples"] as? Int == 3 && report?["shards"] as? Int == 2 && report?["complete"] as? Bool == true, "\(retry.out)")
    }

    @Test("aggregate warns about incomplete traces and refuses NaN scores naming the chunk, writing nothing")
    func aggregateChecksTraces() throws {
        let traces = scratchPath("aggregate-traces")
        #expect(calibrate(traces).status == 0)
        var manifest = try TraceManifest.load(directory: traces)
        manifest.complete = false
        try manifest.save(directory: traces)
        let out = traces + "-scores.json"
        let incomplete = CLIRun(["aggregate", "--traces", traces, "--out", out])
        #expect(incomplete.status == 0 && incomplete.err.contains("not complete"), "\(incomplete.err)")

        let chunk = traces + "/chunk-00001.safetensors"
        let file = try SafetensorsFile(path: chunk)
        var writer = SafetensorsWriter(metadata: file.metadata)
        writer.tensors = try file.tensorNames.map { name in
            let values = try file.floats(name)
            return .init(name: name, shape: try file.info(name).shape, values: name == "plainact.heads" ? values.map { _ in .nan } : values)
        }
        try writer.write(to: chunk)
        let nanOut = traces + "-nan.json"
        expectOneLineError(CLIRun(["aggregate", "--traces", traces, "--out", nanOut]), naming: [chunk, "plainact.heads", "non-finite"])
        #expect(!FileManager.default.fileExists(atPath: nanOut))
    }

    @Test("calibrate checks its windows and criteria before it creates --out, so the corrected command runs")
    func calibrateChecksFirst() throws {
        let out = scratchPath("calibrate-first"), long = scratchPath("long") + ".txt"
        let text = try String(contentsOfFile: CalibrateTests.corpus, encoding: .utf8)
        try String(repeating: text + " ", count: 20).write(toFile: long, atomically: true, encoding: .utf8)
        expectOneLineError(CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(long)", "--samples", "2",
                                   "--text-window", "1000", "--out", out, "--no-progress"]),
                           naming: ["--text-window", "1000 tokens", "128"])
        #expect(!FileManager.default.fileExists(atPath: out))
        expectOneLineError(calibrate(out, ["--criteria", ""]), naming: ["--criteria"])
        expectOneLineError(calibrate(out, ["--criteria", "plainact,plainact"]), naming: ["--criteria", "plainact twice"])
        #expect(!FileManager.default.fileExists(atPath: out))
        let corrected = calibrate(out)
        #expect(corrected.status == 0, "\(corrected.err)")
    }

    @Test("calibrate removes an --out it created when the first chunk fails, and leaves an --out that was there before")
    func calibrateFailingFirstChunk() throws {
        // Every sample passes the checks made before --out is created, so the failure is forced
        // where it can happen in earnest: writing the first chunk. The progress bar's first line is
        // drawn once --out holds its manifest and before any sample is computed; at that moment a
        // directory is put where chunk 0 goes, so the chunk cannot be written.
        func calibrateFailingChunk(_ out: String) -> CLIRun {
            final class Blocked: @unchecked Sendable { var done = false }
            let blocked = Blocked()
            let run = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(CalibrateTests.corpus)",
                              "--samples", "3", "--text-window", "16", "--text-continuation", "4", "--chunk-size", "1",
                              "--out", out]) { _ in
                guard !blocked.done, FileManager.default.fileExists(atPath: out + "/" + TraceManifest.fileName) else { return }
                blocked.done = (try? FileManager.default.createDirectory(atPath: out + "/chunk-00000.safetensors",
                                                                       withIntermediateDirectories: false)) != nil
            }
            #expect(blocked.done, "the progress bar was not drawn after --out was created: \(run.err)")
            return run
        }
        /// The run failed with an error naming chunk 0 (after the progress bar's line).
        func expectChunkError(_ run: CLIRun, _ out: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let last = run.err.split(separator: "\n").last.map(String.init) ?? ""
            #expect(run.status == 1 && last == "error: cannot write \(out)/chunk-00000.safetensors: it is a directory",
                    "\(run.status): \(run.err)", sourceLocation: sourceLocation)
        }
        let created = scratchPath("calibrate-created")
        expectChunkError(calibrateFailingChunk(created), created)
        #expect(!FileManager.default.fileExists(atPath: created))
        let retry = calibrate(created)
        #expect(retry.status == 0, "\(retry.err)")

        // A directory that was there is kept with what it held, and without the manifest this run
        // wrote, so that the corrected command does not need --resume.
        let existing = scratchPath("calibrate-existing")
        try FileManager.default.createDirectory(atPath: existing, withIntermediateDirectories: true)
        try "mine".write(toFile: existing + "/notes.txt", atomically: true, encoding: .utf8)
        expectChunkError(calibrateFailingChunk(existing), existing)
        #expect(try String(contentsOfFile: existing + "/notes.txt", encoding: .utf8) == "mine")
        #expect(!FileManager.default.fileExists(atPath: existing + "/" + TraceManifest.fileName))
    }

    @Test("a predictor's quality without recall at a sparsity shows a dash there, not nan")
    func missingRecallIsADash() {
        let report = PredictorQualityReport(heldOutSamples: 4, heads: UnitQuality(spearman: 0.9, recall: ["0.5": 0.8, "0.45": 0.7]),
                                            neurons: UnitQuality(spearman: 0.7, recall: [:], localRecall: ["0.3": 0.6]))
        let text = (PredictorInfoCommand.qualityLines(report, title: "held-out", layers: 3)
                    + PredictorInfoCommand.qualityTable(report, layers: 3, explained: false)).joined(separator: "\n")
        #expect(!text.contains("nan") && text.contains("0.800") && text.contains("0.600") && text.contains("—"), "\(text)")
    }
}
