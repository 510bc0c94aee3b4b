import Foundation
import Testing
@testable import ShadowCLI
@testable import ShadowSparsity
import ShadowModels
import ShadowFormats
import ShadowTestSupport

@Suite("Calibration traces", .serialized)
struct CalibrateTests {
    static let corpus: String = {
        let sentences = ["The river ran past the old mill and under the stone bridge.",
                         "Children played in the square while the bells rang at noon.",
                         "A cold wind came down from the hills and the shutters rattled.",
                         "She wrote the numbers 12, 345 and 6789 in the ledger."]
        let path = TestScratch.url("corpus", suffix: ".txt").path
        try! (0..<12).map { sentences[$0 % 4] }.joined(separator: " ").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    func temporaryDirectory() -> String {
        TestScratch.url("traces").path
    }

    func calibrate(_ out: String, _ extra: [String] = []) -> CLIRun {
        CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(Self.corpus)", "--samples", "7",
                "--text-window", "16", "--text-continuation", "4", "--criteria", "plainact,l2_norm",
                "--chunk-size", "2", "--out", out, "--no-progress"] + extra)
    }

    func records(_ directory: String) throws -> [TraceRecord] {
        var all: [TraceRecord] = []
        try TraceStore.forEach(directory: directory) { all.append($0) }
        return all
    }

    func expectSame(_ a: [TraceRecord], _ b: [TraceRecord], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(a.map(\.index) == b.map(\.index), sourceLocation: sourceLocation)
        for (x, y) in zip(a, b) {
            #expect(x.x == y.x && x.heads == y.heads && x.neurons == y.neurons && x.layerInputs == y.layerInputs,
                    "sample \(x.index)", sourceLocation: sourceLocation)
        }
    }

    @Test("calibrate's default text window shrinks to a context shorter than 128 tokens, and an explicit one is refused there")
    func textWindowFitsContext() throws {
        let out = temporaryDirectory()
        let model = fixture("tiny-phi3-longrope")   // a context of 32 without --long-context
        let run = CLIRun(["calibrate", "--model", model, "--source", "text:\(Self.corpus)", "--samples", "2",
                          "--out", out, "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        let manifest = try TraceManifest.load(directory: out)
        #expect(manifest.options.textWindow == 32 && manifest.options.textContinuation == 8 && manifest.sampleCount == 2)
        let explicit = CLIRun(["calibrate", "--model", model, "--source", "text:\(Self.corpus)", "--samples", "2",
                               "--text-window", "64", "--out", temporaryDirectory(), "--no-progress"])
        #expect(explicit.status != 0 && explicit.err.contains("--text-window"), "\(explicit.err)")
        let continuation = CLIRun(["calibrate", "--model", model, "--source", "text:\(Self.corpus)", "--samples", "2",
                                   "--text-continuation", "32", "--out", temporaryDirectory(), "--no-progress"])
        #expect(continuation.status != 0 && continuation.err.hasPrefix("error: --text-continuation: must be less than the text window, here the model's context of 32 tokens"),
                "\(continuation.err)")

        // On a context of 128 or more the window is the default's; a given window is checked against the continuation.
        let long = ["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(Self.corpus)", "--samples", "2", "--no-progress"]
        let overDefault = CLIRun(long + ["--text-continuation", "128", "--out", temporaryDirectory()])
        #expect(overDefault.status == 1 && overDefault.err == "error: --text-continuation: must be less than the text window, here the default of 128 tokens (--text-window sets another)\n",
                "\(overDefault.err)")
        let overGiven = CLIRun(long + ["--text-window", "16", "--text-continuation", "20", "--out", temporaryDirectory()])
        #expect(overGiven.status == 1 && overGiven.err == "error: --text-window: must exceed the continuation length 20\n", "\(overGiven.err)")

        // A model of one position cannot be calibrated at all: said of the model, by its path.
        let single = try CheckpointWriter.directory(config: { $0["max_position_embeddings"] = 1 })
        let tooShort = CLIRun(["calibrate", "--model", single, "--source", "text:\(Self.corpus)", "--out", temporaryDirectory(), "--no-progress"])
        #expect(tooShort.status == 1 && tooShort.err == "error: --model: \(single): a context of 1 token cannot be calibrated: a sample needs a token of context and one to predict\n",
                "\(tooShort.err)")
    }

    @Test("calibrate writes chunked traces with the predictor input and every criterion")
    func writesTraces() throws {
        let out = temporaryDirectory()
        let run = calibrate(out)
        #expect(run.status == 0, "\(run.err)")
        let manifest = try TraceManifest.load(directory: out)
        #expect(manifest.complete && manifest.sampleCount == 7 && manifest.chunks.count == 4)
        let all = try records(out)
        #expect(all.map(\.index) == Array(0..<7))
        let shape = manifest.model.shape
        #expect(all[0].x.count == shape.attentionWidth && all[0].heads["plainact"]?.count == shape.layers * shape.heads)
        #expect(all[0].neurons["l2_norm"]?.count == shape.layers * shape.ffnSize)
        #expect(all[0].x == Array(all[0].attention[0..<shape.attentionWidth]))
        // An existing directory is never overwritten without --resume.
        let again = calibrate(out)
        #expect(again.status != 0 && again.err.contains("--resume"))
        // --json reports the same, and a resumed run that found everything done computed nothing.
        let json = try calibrate(TestScratch.url("traces-json").path, ["--json"]).json()
        #expect(json["samples"] as? Int == 7 && json["chunks"] as? Int == 4 && json["complete"] as? Bool == true && json["interrupted"] as? Bool == false
                && json["left_out"] as? Int == 0 && json["shard"] as? String == "0/1" && (json["samples_per_second"] as? Double ?? 0) > 0, "\(json)")
        let resumed = try calibrate(out, ["--resume", "--json"]).json()
        // Nothing computed: no rate, but the key stays (a script reading it must not break).
        #expect(resumed["samples"] as? Int == 7 && resumed["samples_per_second"] is NSNull, "\(resumed)")
    }

    @Test("traces of HellaSwag record that ctx_b is capitalised; traces begun before (as written) are not extended")
    func hellaswagReading() throws {
        let data = TestScratch.url("hellaswag", suffix: ".txt").path
        try "Roofing: A man is on a roof. he\n0\nfalls.\nwaves.\nsits.\nstands.\nCooking: A cook stirs. the cook\n1\nsings.\ntastes it.\nleaves.\nsits.\n"
            .write(toFile: data, atomically: true, encoding: .utf8)
        let out = temporaryDirectory()
        func run(_ samples: String, _ extra: [String] = []) -> CLIRun {
            CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "hellaswag:\(data)", "--samples", samples,
                    "--criteria", "plainact", "--shots", "1", "--out", out, "--no-progress"] + extra)
        }
        #expect(run("1").status == 0)
        var manifest = try TraceManifest.load(directory: out)
        #expect(manifest.sources == ["hellaswag:\(data) (ctx_b capitalised)"])
        #expect(run("2", ["--resume"]).status == 0)
        // The weights' precision is recorded: bf16 scores do not extend f32 ones. Traces from before it was kept resume as they were.
        #expect(try TraceManifest.load(directory: out).weights == "f32")
        let bf16 = run("3", ["--resume", "--weights", "bf16"])
        #expect(bf16.status != 0 && bf16.err.contains("--weights f32 → bf16"), "\(bf16.err)")
        manifest = try TraceManifest.load(directory: out)
        manifest.weights = nil
        try manifest.save(directory: out)
        #expect(run("2", ["--resume"]).status == 0)
        // As a build from before 2026-12-04 recorded it.
        manifest = try TraceManifest.load(directory: out)
        manifest.sources = ["hellaswag:\(data)"]
        try manifest.save(directory: out)
        let older = run("3", ["--resume"])
        #expect(older.status != 0 && older.err.contains("different run"), "\(older.err)")
    }

    @Test("a slice starting past its file is refused, one ending past it ends with it, a text shorter than a window is named, fewer samples than asked are warned about")
    func shortSources() throws {
        let data = TestScratch.url("hellaswag-two", suffix: ".txt").path
        try "Roofing: A man is on a roof. he\n0\nfalls.\nwaves.\nsits.\nstands.\nCooking: A cook stirs. the cook\n1\nsings.\ntastes it.\nleaves.\nsits.\n"
            .write(toFile: data, atomically: true, encoding: .utf8)
        let short = TestScratch.url("short-text", suffix: ".txt").path
        try "Only a few words here.".write(toFile: short, atomically: true, encoding: .utf8)
        func run(_ source: String, samples: Int = 2) -> CLIRun {
            CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", source, "--samples", String(samples), "--criteria", "plainact",
                    "--out", temporaryDirectory(), "--no-progress"] + (source.hasPrefix("text:") ? ["--text-window", "16", "--text-continuation", "4"] : ["--shots", "0"]))
        }
        let beyond = run("hellaswag:\(data)@5-9")
        #expect(beyond.status == 1 && beyond.err == "error: --source: hellaswag:\(data)@5-9 starts at 5, beyond its 2 items\n", "\(beyond.err)")
        let farBeyond = run("hellaswag:\(data)@\(Int.max)-")
        #expect(farBeyond.status == 1 && farBeyond.err == "error: --source: hellaswag:\(data)@\(Int.max)- starts at \(Int.max), beyond its 2 items\n", "\(farBeyond.err)")
        let tooShort = run("text:\(short)")
        #expect(tooShort.status == 1 && tooShort.err.hasPrefix("error: --source: text:\(short) has ")
                && tooShort.err.contains("tokens, fewer than one --text-window of 16"), "\(tooShort.err)")
        let clamped = run("hellaswag:\(data)@1-9", samples: 3)
        #expect(clamped.status == 0 && clamped.out.contains("wrote 1 sample in 1 chunk to"), "\(clamped.out)")
        #expect(clamped.err == "warning: the sources give 1 sample, fewer than --samples 3\n", "\(clamped.err)")
        // An answer that alone is longer than --max-tokens leaves its item out, and the warning counts it
        // (" falls." is 5 tokens of tiny-llama's, " tastes it." 7).
        func cut(samples: Int, shots: Int = 1) -> CLIRun {
            CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "hellaswag:\(data)", "--samples", String(samples), "--criteria", "plainact",
                    "--max-tokens", "6", "--shots", String(shots), "--out", temporaryDirectory(), "--no-progress", "--json"])
        }
        let both = cut(samples: 2)
        #expect(both.status == 0 && both.err == "warning: the sources give 1 sample, fewer than --samples 2; 1 task item left out: an answer of --max-tokens 6 tokens or more, or one that adds no token to its context\n", "\(both.err)")
        #expect(try both.json()["left_out"] as? Int == 1)
        // Only items passed over on the way count: one sample never reaches the second item.
        let first = cut(samples: 1)
        #expect(try first.status == 0 && first.err.isEmpty && first.json()["left_out"] as? Int == 0, "\(first.err)")
        // Shots come from the slice, so a slice of no more items than --shots is refused, as eval refuses such a file.
        let fewShots = cut(samples: 1, shots: 2)
        #expect(fewShots.status == 1 && fewShots.err == "error: --shots: 2 examples need 3 items; hellaswag:\(data) has 2\n", "\(fewShots.err)")
        let empty = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "", "--out", temporaryDirectory()])
        #expect(empty.status == 1 && empty.err.hasPrefix("error: --source: is empty"), "\(empty.err)")
    }

    @Test("a missing trace directory, a file, or a directory without a manifest is said alike by every command that reads traces")
    func notTraces() throws {
        let empty = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let file = empty + "/notes.txt"
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let piqa = try EvalCommandTests.piqaFiles()
        for (path, message) in [(empty + "/nope", "\(empty)/nope: no such file or directory"),
                                (file, "\(file): not a directory of traces (calibrate writes one)"),
                                (empty, "\(empty): holds no traces (no manifest.json; calibrate writes one)")] {
            let runs = [
                CLIRun(["traces", "info", path]),
                CLIRun(["aggregate", "--traces", path]),
                CLIRun(["train-predictor", "--traces", path, "--out", temporaryDirectory() + "/p.safetensors", "--no-progress"]),
                CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", temporaryDirectory(), "--tasks", "piqa", "--data", "piqa=\(piqa.data)",
                        "--labels", "piqa=\(piqa.labels)", "--methods", "static", "--criteria", "plainact", "--sparsities", "0.5",
                        "--limit", "2", "--traces", path, "--no-progress"]),
            ]
            for run in runs {
                #expect(run.status == 1 && run.err == "error: \(message)\n", "\(run.err)")
            }
        }
    }

    @Test("traces info checks every chunk the manifest lists: one missing or cut short is named")
    func infoChecksChunks() throws {
        let traces = temporaryDirectory()
        #expect(calibrate(traces).status == 0)
        #expect(CLIRun(["traces", "info", traces]).out.contains("complete        yes"))
        let chunk = traces + "/" + (try TraceManifest.load(directory: traces)).chunks[1].file
        let data = try Data(contentsOf: URL(fileURLWithPath: chunk))
        try data.prefix(data.count - 8).write(to: URL(fileURLWithPath: chunk))
        let cut = CLIRun(["traces", "info", traces])
        #expect(cut.status == 1 && cut.err.hasPrefix("error: \(chunk)"), "\(cut.err)")
        try FileManager.default.removeItem(atPath: chunk)
        let gone = CLIRun(["traces", "info", traces])
        #expect(gone.status == 1 && gone.err == "error: \(chunk): no such file or directory\n", "\(gone.err)")
    }

    @Test("aggregate sums the traces' first criterion unless --criterion names another, as train-predictor trains on it")
    func aggregateDefaultCriterion() throws {
        let traces = temporaryDirectory()
        let calibrated = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(Self.corpus)", "--samples", "3",
                                 "--text-window", "16", "--text-continuation", "4", "--criteria", "l2_norm", "--out", traces, "--no-progress"])
        #expect(calibrated.status == 0, "\(calibrated.err)")
        let run = CLIRun(["aggregate", "--traces", traces])
        #expect(try run.json()["criterion"] as? String == "l2_norm", "\(run.err)")
        let missing = CLIRun(["aggregate", "--traces", traces, "--criterion", "plainact"])
        #expect(missing.status == 1 && missing.err.contains("plainact"), "\(missing.err)")
    }

    @Test("traces of an interrupted calibration are used with a warning by aggregate, train-predictor and sweep alike")
    func incompleteTraces() throws {
        let cut = temporaryDirectory()
        #expect(calibrate(cut).status == 0)
        var manifest = try TraceManifest.load(directory: cut)
        manifest.complete = false
        try manifest.save(directory: cut)
        let piqa = try EvalCommandTests.piqaFiles()
        let runs = [
            CLIRun(["aggregate", "--traces", cut]),
            CLIRun(["train-predictor", "--traces", cut, "--out", temporaryDirectory() + "/p.safetensors", "--head-width", "8",
                    "--neuron-width", "8", "--head-epochs", "1", "--neuron-epochs", "1", "--no-progress"]),
            CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", temporaryDirectory(), "--tasks", "piqa", "--data", "piqa=\(piqa.data)",
                    "--labels", "piqa=\(piqa.labels)", "--methods", "static", "--criteria", "plainact", "--sparsities", "0.5",
                    "--limit", "2", "--traces", cut, "--no-progress"]),
        ]
        for run in runs {
            #expect(run.status == 0 && run.err.contains("warning: \(cut) is not complete (\(manifest.sampleCount) samples so far; finish it with calibrate --resume)"), "\(run.err)")
        }
    }

    @Test("a run cut short resumes to the same traces as an uninterrupted run")
    func resumes() throws {
        let whole = temporaryDirectory(), cut = temporaryDirectory()
        #expect(calibrate(whole).status == 0)
        #expect(calibrate(cut).status == 0)
        // Simulate a kill after the second chunk: the manifest lists two chunks, a third is half-written.
        var manifest = try TraceManifest.load(directory: cut)
        for chunk in manifest.chunks.dropFirst(2) { try FileManager.default.removeItem(atPath: cut + "/" + chunk.file) }
        manifest.chunks = Array(manifest.chunks.prefix(2))
        manifest.complete = false
        try manifest.save(directory: cut)
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: cut + "/.chunk-00002.safetensors.123.partial"))
        let resumed = calibrate(cut, ["--resume"])
        #expect(resumed.status == 0, "\(resumed.err)")
        expectSame(try records(cut), try records(whole))
        // Resuming with different settings is refused.
        let different = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(Self.corpus)", "--samples", "5",
                                "--text-window", "16", "--text-continuation", "4", "--out", cut, "--resume"])
        #expect(different.status != 0 && different.err.contains("different run"))
        #expect(different.err.contains("(criteria plainact,l2_norm → plainact, --chunk-size 2 → 64, --samples 7 → 5 (only more can extend them))"), "\(different.err)")
    }

    @Test("the manifest records a digest of each source file: a resume over a changed file is refused, one from before digests continues")
    func resumeChecksSourceContents() throws {
        let directory = temporaryDirectory()
        let corpus = TestScratch.url("corpus-copy", suffix: ".txt").path
        try FileManager.default.copyItem(atPath: Self.corpus, toPath: corpus)
        func run(_ extra: [String] = []) -> CLIRun {
            CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(corpus)", "--samples", "4",
                    "--text-window", "16", "--text-continuation", "4", "--chunk-size", "2", "--out", directory, "--no-progress"] + extra)
        }
        func cutShort() throws {
            var manifest = try TraceManifest.load(directory: directory)
            for chunk in manifest.chunks.dropFirst() { try FileManager.default.removeItem(atPath: directory + "/" + chunk.file) }
            manifest.chunks = Array(manifest.chunks.prefix(1))
            manifest.complete = false
            try manifest.save(directory: directory)
        }
        #expect(run().status == 0)
        let digests = try #require(try TraceManifest.load(directory: directory).sourceDigests)
        #expect(digests == [try FNV1a.ofFile(corpus).hex])
        try cutShort()
        try (String(contentsOfFile: corpus, encoding: .utf8) + " One more sentence.").write(toFile: corpus, atomically: true, encoding: .utf8)
        let changed = run(["--resume"])
        #expect(changed.status == 1 && changed.err.contains("the contents of text:\(corpus) changed"), "\(changed.err)")
        // Traces written before digests were recorded are not compared.
        var manifest = try TraceManifest.load(directory: directory)
        manifest.sourceDigests = nil
        try manifest.save(directory: directory)
        let old = run(["--resume"])
        #expect(old.status == 0, "\(old.err)")
    }

    @Test("a resumed run first checks the chunks already there: one lost or cut short is named, not built upon")
    func resumeChecksChunks() throws {
        let lost = temporaryDirectory(), cut = temporaryDirectory()
        for directory in [lost, cut] {
            #expect(calibrate(directory).status == 0)
            var manifest = try TraceManifest.load(directory: directory)
            manifest.complete = false
            try manifest.save(directory: directory)
        }
        let first = try TraceManifest.load(directory: lost).chunks[0].file
        try FileManager.default.removeItem(atPath: lost + "/" + first)
        let missing = calibrate(lost, ["--resume"])
        #expect(missing.status == 1 && missing.err.hasPrefix("error: \(lost)/\(first)") && missing.err.split(separator: "\n").count == 1, "\(missing.err)")
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: cut + "/" + first))
        try handle.truncate(atOffset: 200)
        try handle.close()
        let short = calibrate(cut, ["--resume"])
        #expect(short.status == 1 && short.err.hasPrefix("error: \(cut)/\(first)") && short.err.split(separator: "\n").count == 1, "\(short.err)")
    }

    @Test("resuming with a larger --samples extends the traces to those of one larger run")
    func extends() throws {
        let whole = temporaryDirectory(), grown = temporaryDirectory()
        #expect(calibrate(whole).status == 0)
        func run(_ samples: Int, _ extra: [String] = []) -> CLIRun {
            CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(Self.corpus)", "--samples", String(samples),
                    "--text-window", "16", "--text-continuation", "4", "--criteria", "plainact,l2_norm",
                    "--chunk-size", "2", "--out", grown, "--no-progress"] + extra)
        }
        #expect(run(3).status == 0)
        #expect(try TraceManifest.load(directory: grown).complete)
        let extended = run(7, ["--resume"])
        #expect(extended.status == 0, "\(extended.err)")
        let manifest = try TraceManifest.load(directory: grown)
        #expect(manifest.complete && manifest.requestedSamples == 7 && manifest.sampleCount == 7)
        expectSame(try records(grown), try records(whole))
        // Shrinking is refused: the traces would hold samples the new run does not ask for.
        let shrunk = run(5, ["--resume"])
        #expect(shrunk.status != 0 && shrunk.err.contains("different run"))
    }

    @Test("shards computed separately merge into the same traces as one run")
    func shardsMerge() throws {
        let whole = temporaryDirectory(), s0 = temporaryDirectory(), s1 = temporaryDirectory(), merged = temporaryDirectory()
        #expect(calibrate(whole).status == 0)
        #expect(calibrate(s0, ["--shard", "0/2"]).status == 0)
        // The other shard names the corpus another way (as from another directory): one file, one calibration.
        let respelled = (Self.corpus as NSString).deletingLastPathComponent + "/./" + (Self.corpus as NSString).lastPathComponent
        let shard1 = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(respelled)", "--samples", "7",
                             "--text-window", "16", "--text-continuation", "4", "--criteria", "plainact,l2_norm",
                             "--chunk-size", "2", "--out", s1, "--no-progress", "--shard", "1/2"])
        #expect(shard1.status == 0, "\(shard1.err)")
        #expect(try records(s1).map(\.index) == [1, 3, 5])
        #expect(CLIRun(["traces", "info", s1]).out.contains("samples         3 of shard 1/2's 3 (7 requested in all)"))
        let twice = CLIRun(["traces", "merge", "--shards", "\(s0),\(s1),\(s0)", "--out", temporaryDirectory()])
        #expect(twice.status == 1 && twice.err == "error: --shards: \(s0) and \(s0) are both shard 0/2\n", "\(twice.err)")
        let run = CLIRun(["traces", "merge", "--shards", "\(s1),\(s0)", "--out", merged])
        #expect(run.status == 0, "\(run.err)")
        // One shard alone holds every other sample: aggregating it is allowed, and said; the merged traces are not.
        let alone = CLIRun(["aggregate", "--traces", s1])
        #expect(alone.status == 0 && alone.err == "warning: \(s1) is shard 1/2 of a calibration (samples 1, 3, 5, …); join the shards with traces merge to use them all\n", "\(alone.err)")
        #expect(CLIRun(["aggregate", "--traces", merged]).err.isEmpty)
        // Shards that record different --weights are refused whichever comes first, even after one that records none.
        let w0 = temporaryDirectory(), w1 = temporaryDirectory(), w2 = temporaryDirectory()
        #expect(calibrate(w0, ["--shard", "0/3"]).status == 0 && calibrate(w1, ["--shard", "1/3", "--weights", "bf16"]).status == 0
                && calibrate(w2, ["--shard", "2/3"]).status == 0)
        var unrecorded = try TraceManifest.load(directory: w0)
        unrecorded.weights = nil
        try unrecorded.save(directory: w0)
        let mixedWeights = CLIRun(["traces", "merge", "--shards", "\(w0),\(w1),\(w2)", "--out", temporaryDirectory()])
        #expect(mixedWeights.status == 1 && mixedWeights.err == "error: merge: the shards were calibrated with different --weights (bf16, f32)\n", "\(mixedWeights.err)")
        // A shard of another calibration is refused, saying what differs.
        let other = temporaryDirectory()
        #expect(calibrate(other, ["--shard", "1/2", "--predictor-token", "last-input"]).status == 0)
        let mixed = CLIRun(["traces", "merge", "--shards", "\(s0),\(other)", "--out", temporaryDirectory()])
        #expect(mixed.status == 1 && mixed.err == "error: \(other): not a shard of the same calibration as \(s0) (--predictor-token last-context → last-input)\n", "\(mixed.err)")
        expectSame(try records(merged), try records(whole))
        let info = CLIRun(["traces", "info", merged, "--json"])
        #expect(info.status == 0, "\(info.err)")
        #expect(try info.json()["samples"] as? Int == 7)
        #expect(CLIRun(["traces"]).status != 0)
        let bad = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(Self.corpus)", "--out", s0, "--shard", "2/2"])
        #expect(bad.status != 0 && bad.err.contains("--shard"))
    }

    @Test("bad sources are one-line errors")
    func badSources() {
        for source in ["nonsense:file.txt", "piqa", "text:/no/such/file.txt", "piqa:x.jsonl@5-2"] {
            let run = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", source, "--out", temporaryDirectory()])
            #expect(run.status != 0 && run.err.hasPrefix("error: ") && run.err.split(separator: "\n").count == 1, "\(source): \(run.err)")
        }
    }

    @Test("chunk files in --out without a manifest (one lost) are refused, not overwritten; other files do not matter")
    func strayChunks() throws {
        let out = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try "notes".write(toFile: out + "/README.txt", atomically: true, encoding: .utf8)
        #expect(calibrate(out).status == 0)
        try FileManager.default.removeItem(atPath: out + "/manifest.json")
        let before = try Data(contentsOf: URL(fileURLWithPath: out + "/chunk-00000.safetensors"))
        let run = calibrate(out)
        #expect(run.status == 1 && run.err == "error: --out: \(out) holds chunk-00000.safetensors but no manifest.json (traces whose manifest was lost?); choose another --out, or remove the chunk files\n", "\(run.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/chunk-00000.safetensors")) == before)
    }

    @Test("an --out that cannot be looked at is named in the error and left in place, not taken for absent and removed")
    func outThatCannotBeLookedAt() throws {
        let loop = temporaryDirectory() + "-loop"
        try FileManager.default.createSymbolicLink(atPath: loop, withDestinationPath: (loop as NSString).lastPathComponent)
        let run = calibrate(loop)
        #expect(run.status == 1 && run.err.hasPrefix("error: cannot read \(loop)/manifest.json: ") && run.err.split(separator: "\n").count == 1, "\(run.err)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: loop) == (loop as NSString).lastPathComponent)
    }
}

@Suite("Static importance")
struct AggregateTests {
    @Test("aggregate sums a criterion over the traces and its JSON drives static masks")
    func aggregateDrivesStaticMasks() throws {
        let traces = TestScratch.url("agg").path
        let run = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(CalibrateTests.corpus)",
                          "--samples", "3", "--text-window", "16", "--text-continuation", "4", "--out", traces, "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        let scores = traces + "/static.json"
        let aggregate = CLIRun(["aggregate", "--traces", traces, "--criterion", "plainact", "--out", scores])
        #expect(aggregate.status == 0, "\(aggregate.err)")
        var sum: Float = 0
        try TraceStore.forEach(directory: traces) { sum += $0.heads["plainact"]![5] }
        let json = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scores))) as? [String: Any])
        let heads = try #require(json["heads"] as? [[Double]])
        #expect(abs(Float(heads[1][1]) - sum) <= 1e-4 * max(1, abs(sum)))
        let sparse = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", "The river ran past the mill.",
                             "--sparsity", "0.5", "--method", "static", "--scores", scores, "--json"])
        #expect(sparse.status == 0, "\(sparse.err)")
        let missing = CLIRun(["aggregate", "--traces", traces, "--criterion", "fisher"])
        #expect(missing.status != 0 && missing.err.contains("fisher"))
    }

    @Test("traces calibrated with jacov carry its pooled vectors, and aggregate pools them as in memory")
    func aggregatePoolsJacov() throws {
        let traces = TestScratch.url("agg").path
        let corpus = traces + ".txt"
        defer { for path in [traces, corpus] { try? FileManager.default.removeItem(atPath: path) } }
        let text = try String(contentsOfFile: CalibrateTests.corpus, encoding: .utf8)
        try Array(repeating: text, count: 6).joined(separator: " ").write(toFile: corpus, atomically: true, encoding: .utf8)
        let run = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(corpus)",
                          "--samples", "55", "--text-window", "12", "--text-continuation", "4", "--criteria", "jacov,plainact",
                          "--chunk-size", "16", "--out", traces, "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        var records: [TraceRecord] = []
        try TraceStore.forEach(directory: traces) { records.append($0) }
        let shape = try TraceManifest.load(directory: traces).model.shape
        #expect(records.count == 55 && records.allSatisfy {
            $0.pooledVectors.count == shape.layers * shape.heads * GradientCorrelation.pooledPerSample * shape.headDim
        })
        // 220 pooled vectors: the subset path. The streamed aggregate equals the in-memory one.
        let streamed = try AggregateImportance(traces: traces, criterion: "jacov")
        let inMemory = Importance.aggregate(records.map {
            ImportanceScores(loss: Double($0.loss), heads: [$0.heads["jacov"]!], neurons: nil, pooledVectors: $0.pooledVectors)
        })
        #expect(streamed.pooled && streamed.headsPerSample == streamed.heads)
        for (a, b) in zip(streamed.heads.flatMap { $0 }, inMemory.heads.flatMap { $0 }) { #expect(abs(a - b) <= 1e-4 * abs(b)) }
        // Criteria without pooling keep their sums.
        #expect(try !AggregateImportance(traces: traces, criterion: "plainact").pooled)
    }
}

@Suite("Predicted masks from the command line", .serialized)
struct PredictedMaskCLITests {
    @Test("shadow and dejavu predictors trained on traces drive perplexity, generate and bench; --packing on packs kept rows and bench's auto times masks chosen once per prompt packed")
    func predictorsDriveSparseRuns() throws {
        let base = TestScratch.url("pred").path
        let traces = base + "/traces", predictors = base + "/predictors"
        let calibrate = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(CalibrateTests.corpus)",
                                "--samples", "10", "--text-window", "12", "--text-continuation", "4", "--out", traces, "--no-progress"])
        #expect(calibrate.status == 0, "\(calibrate.err)")
        for kind in ["shadow", "dejavu"] {
            // DejaVu-style stored as f16, as pipeline trains it: the commands below predict from its
            // fp16 copies alone, its fp32 weights released.
            let train = CLIRun(["train-predictor", "--traces", traces, "--kind", kind, "--out", "\(predictors)/\(kind).safetensors",
                                "--head-width", "16", "--neuron-width", "16", "--head-epochs", "3", "--neuron-epochs", "2", "--no-progress",
                                "--dtype", kind == "dejavu" ? "f16" : "f32"])
            #expect(train.status == 0, "\(train.err)")
        }
        let text = "The river ran past the old mill and under the stone bridge."
        for method in ["shadow", "dejavu"] {
            let run = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", text, "--json", "--sparsity", "0.5",
                              "--method", method, "--predictor", predictors])
            #expect(run.status == 0, "\(method): \(run.err)")
            let generate = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "The river", "-n", "4", "--json",
                                   "--sparsity", "0.5", "--method", method, "--predictor", predictors])
            #expect(generate.status == 0, "\(method): \(generate.err)")
            // Too short for auto (the default) to pack.
            #expect(try generate.json()["packed_rows"] as? Bool == false, "\(method)")
            let on = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "The river", "-n", "4", "--json",
                             "--sparsity", "0.5", "--method", method, "--predictor", predictors, "--packing", "on"])
            #expect(on.status == 0, "\(method): \(on.err)")
            if method == "shadow" { #expect(try on.json()["packed_rows"] as? Bool == true, "\(on.err)") }
        }
        // A shadow mask re-predicted every other token is packed by on (its rows stay two tokens), never by off.
        for (options, packed) in [(["--refresh", "2", "--packing", "off"], false), (["--refresh", "2", "--packing", "on"], true)] {
            let generate = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "The river", "-n", "4", "--json",
                                   "--sparsity", "0.5", "--method", "shadow", "--predictor", predictors] + options)
            #expect(generate.status == 0, "\(options): \(generate.err)")
            #expect(try generate.json()["packed_rows"] as? Bool == packed, "\(options)")
        }
        let bench = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "8", "-n", "4", "-r", "1", "--method", "dense,shadow,dejavu",
                            "--sparsity", "0.5", "--predictor", predictors, "--packing", "auto", "-o", "json", "--no-progress"])
        #expect(bench.status == 0, "\(bench.err)")
        let rows = try #require(try bench.json()["results"] as? [[String: Any]])
        #expect(rows.count == 6)
        let decode = rows.filter { ($0["test"] as? String)?.hasPrefix("tg") == true }
        #expect(decode.map { "\($0["method"] as? String ?? "") \($0["packed_rows"] as? Bool ?? false)" } == ["dense false", "shadow true", "dejavu false"])
        #expect(decode.filter { $0["predictor_share"] is Double }.map { $0["method"] as? String } == ["shadow", "dejavu"])
        // The predictor's own bytes per decoded token: none for a mask chosen once per prompt, all of DejaVu-style's.
        let predictorBytes = decode.map { $0["predictor_bytes_per_token"] as? Int }
        #expect(predictorBytes.count == 3 && predictorBytes[0] == nil && predictorBytes[1] == 0 && (predictorBytes[2] ?? 0) > 0, "\(predictorBytes)")
        let masks = try bench.json()["masks"] as? [String: Any]
        #expect(masks?["policy"] as? String == "global" && masks?["predictor"] as? String == predictors && masks?["refresh"] == nil, "\(String(describing: masks))")
        // DejaVu-style masks alone read no policy, and the report says none.
        let perLayer = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "8", "-n", "0", "-r", "1", "--method", "dejavu",
                               "--sparsity", "0.5", "--predictor", predictors, "--refresh", "2", "--no-progress"])
        #expect(perLayer.status == 0 && perLayer.out.contains("\nmasks: selected per layer, predictor \(predictors), refresh 2\n"), "\(perLayer.out)")
        // -o csv says per row how its masks were made: the file the directory gave and the refresh in force.
        let csv = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "8", "-n", "0", "-r", "1", "--method", "dense,shadow,dejavu,random",
                          "--sparsity", "0.5", "--predictor", predictors, "--policy", "hybrid", "-o", "csv", "--no-progress"])
        let lines = csv.out.split(separator: "\n").map(String.init)
        #expect(csv.status == 0 && lines.count == 5 && lines[0].hasSuffix(",masks"), "\(csv.out) \(csv.err)")
        #expect(lines.dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false).last.map(String.init) ?? "" }
                == ["", "policy hybrid; hybrid floor 0.1; predictor \(predictors)/shadow.safetensors; refresh 0",
                    "selected per layer; predictor \(predictors)/dejavu.safetensors; refresh 1", "policy hybrid; hybrid floor 0.1"], "\(csv.out)")
        let file = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "8", "-n", "0", "-r", "1", "--method", "shadow", "--sparsity", "0.5",
                           "--predictor", "\(predictors)/shadow.safetensors", "--refresh", "3", "-o", "csv", "--no-progress"])
        #expect(file.status == 0 && file.out.hasSuffix(",policy global; predictor \(predictors)/shadow.safetensors; refresh 3\n"), "\(file.out) \(file.err)")
        // JSON rows carry the same string (none for dense rows).
        #expect(decode.map { $0["masks"] as? String } == [nil, "policy global; predictor \(predictors)/shadow.safetensors; refresh 0",
                                                           "selected per layer; predictor \(predictors)/dejavu.safetensors; refresh 1"], "\(decode)")
        // A predictor of the wrong kind or for another model is refused with one line.
        let wrongKind = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", text, "--sparsity", "0.5",
                                "--method", "dejavu", "--predictor", "\(predictors)/shadow.safetensors"])
        #expect(wrongKind.status != 0 && wrongKind.err.contains("shadow"))
        let otherModel = CLIRun(["perplexity", "--model", fixture("tiny-llama-tied"), "--text", text, "--sparsity", "0.5",
                                 "--method", "shadow", "--predictor", predictors])
        #expect(otherModel.status != 0 && otherModel.err.hasPrefix("error: "))
    }
}

@Suite("Pipeline")
struct PipelineTests {
    @Test("pipeline checks its options and texts before it writes anything, so the corrected command can use the same --out")
    func pipelineChecksFirst() throws {
        let out = TestScratch.url("pipeline-early").path
        let empty = TestScratch.url("empty-text", suffix: ".txt").path
        try "  \n".write(toFile: empty, atomically: true, encoding: .utf8)
        let invalid = TestScratch.url("invalid-text", suffix: ".txt").path
        try Data([0x66, 0xFF, 0x66]).write(to: URL(fileURLWithPath: invalid))
        for (options, message) in [(["--threads", "0"], "--threads"), (["--text", empty], "\(empty) holds no text"),
                                   (["--limit", "1001"], "--limit: must be in 1...1000, got 1001: calibration reads PIQA items 1000+"),
                                   (["--text", invalid], "\(invalid) is not valid UTF-8 text"),
                                   (["--text", out + "-none.txt"], "no such file")] {
            let run = CLIRun(["pipeline", "--model", fixture("tiny-llama"), "--quick", "--out", out, "--data-dir", Self.noData,
                              "--no-progress"] + options)
            #expect(run.status == 1 && run.err.hasPrefix("error: ") && run.err.contains(message), "\(run.err)")
            #expect(run.err.split(separator: "\n").count == 1, "\(run.err)")
            #expect(!FileManager.default.fileExists(atPath: out), "\(options)")
        }
        // A PIQA file too short for the calibration slice (items 1000+) is named before anything is written.
        let small = TestScratch.url("pipeline-small-data").path
        try FileManager.default.createDirectory(atPath: small + "/piqa", withIntermediateDirectories: true)
        let piqa = try EvalCommandTests.piqaFiles()
        try? FileManager.default.removeItem(atPath: small + "/piqa/valid.jsonl")
        try? FileManager.default.removeItem(atPath: small + "/piqa/valid-labels.lst")
        try FileManager.default.copyItem(atPath: piqa.data, toPath: small + "/piqa/valid.jsonl")
        try FileManager.default.copyItem(atPath: piqa.labels, toPath: small + "/piqa/valid-labels.lst")
        let text = TestScratch.url("pipeline-small-text", suffix: ".txt").path
        try String(repeating: "The river ran past the old mill and the children played. ", count: 200).write(toFile: text, atomically: true, encoding: .utf8)
        let run = CLIRun(["pipeline", "--model", fixture("tiny-llama"), "--quick", "--out", out, "--data-dir", small, "--text", text, "--no-progress"])
        #expect(run.status == 1 && run.err == "error: --data-dir: \(small)/piqa/valid.jsonl has 4 items; the pipeline calibrates on its items 1000+ and evaluates the first --limit, so it needs more than 1000\n", "\(run.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("pipeline without any calibration text says where it looked and how to give one, before writing anything",
          .enabled(if: BuiltTool.path != nil, BuiltTool.missing))
    func pipelineWithoutText() throws {
        let out = TestScratch.path("pipeline-no-text")
        let home = TestScratch.path("pipeline-empty-home")   // no fetched corpus there
        let run = try ChildRun(["pipeline", "--model", fixture("tiny-llama"), "--quick", "--out", out, "--data-dir", Self.noData,
                                "--no-progress"], environment: ["SHADOWLLM_HOME": home])
        #expect(run.end == .exited(1), "\(run.end): \(run.err)")
        #expect(run.err.hasPrefix("error: --text: no calibration text: none given, no wikitext-2/valid.txt under --data-dir ")
                && run.err.contains("\(home)/data/lee_background.cor") && run.err.contains("run scripts/setup.sh"), "\(run.err)")
        #expect(run.err.split(separator: "\n").count == 1 && !FileManager.default.fileExists(atPath: out))
    }

    /// An empty data directory: no task data.
    static var noData: String {
        let path = TestScratch.url("pipeline-no-data").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("pipeline refuses a --data-dir that is a file or is not there (a typo), before writing anything")
    func dataDirIsAFile() throws {
        let file = TestScratch.path("pipeline-data-file", suffix: ".txt")
        try "not a directory\n".write(toFile: file, atomically: true, encoding: .utf8)
        let out = TestScratch.url("pipeline-data-file-out").path
        let run = CLIRun(["pipeline", "--model", fixture("tiny-llama"), "--quick", "--out", out, "--data-dir", file, "--no-progress"])
        #expect(run.status == 1 && run.err == "error: --data-dir: \(file) is not a directory\n", "\(run.err)")
        let missing = CLIRun(["pipeline", "--model", fixture("tiny-llama"), "--quick", "--out", out, "--data-dir", file + "-none", "--no-progress"])
        #expect(missing.status == 1 && missing.err == "error: --data-dir: \(file)-none does not exist\n", "\(missing.err)")
        // A sparsity of 0 has no sparse rows to show: refused here, not after calibrating and training.
        let dense = CLIRun(["pipeline", "--model", fixture("tiny-llama"), "--quick", "--out", out, "--sparsity", "0", "--no-progress"])
        #expect(dense.status == 1 && dense.err.hasPrefix("error: --sparsity: must be in 0.01...0.99"), "\(dense.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
        // A context too short for calibration's windows: refused before writing, naming the model, not a step's option.
        let short = TestScratch.path("pipeline-short-context")
        try? FileManager.default.removeItem(atPath: short)
        try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: short)
        let configURL = URL(fileURLWithPath: short + "/config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["max_position_embeddings"] = 32
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let tooShort = CLIRun(["pipeline", "--model", short, "--quick", "--out", out, "--data-dir", Self.noData, "--no-progress"])
        #expect(tooShort.status == 1 && tooShort.err == "error: --model: \(short) has a context of 32 tokens; the pipeline's calibration windows need at least 33 (a 32-token continuation after its context)\n", "\(tooShort.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
        // One layer: nothing for the predictors to choose, refused before calibrating.
        config["max_position_embeddings"] = 128
        config["num_hidden_layers"] = 1
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let weights = try SafetensorsCollection(directory: short)
        var writer = SafetensorsWriter(metadata: [:])
        for name in weights.tensorNames where !name.hasPrefix("model.layers.1.") {
            writer.add(name, shape: try weights.info(name).shape, values: try weights.floats(name))
        }
        for file in try FileManager.default.contentsOfDirectory(atPath: short) where file.hasPrefix("model") {
            try FileManager.default.removeItem(atPath: short + "/" + file)
        }
        try writer.write(to: short + "/model.safetensors")
        let oneLayer = CLIRun(["pipeline", "--model", short, "--quick", "--out", out, "--data-dir", Self.noData, "--no-progress"])
        #expect(oneLayer.status == 1 && oneLayer.err == "error: --model: \(short) has one layer; the pipeline's predictors need at least 2 (layer 0 always runs dense)\n", "\(oneLayer.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("the report's question is a chat turn only for a model with a chat template, with thinking switched off where the template has a switch")
    func generationPrompt() throws {
        let plain = try #require(PipelineCommand.Generation(loaded: try ModelLoader.load(path: fixture("tiny-llama")), maxTokens: 48))
        #expect(!plain.chat && !plain.noThink && plain.maxTokens == 48 && plain.prompt == "Question: Why is the sky blue?\nAnswer:")
        #expect(plain.arguments == ["--prompt", plain.prompt, "-n", "48", "--weights", "f16"])
        let directory = try ThinkingChatTests.model(name: "pipeline")
        let thinking = try #require(PipelineCommand.Generation(loaded: try ModelLoader.load(path: directory), maxTokens: 16))
        #expect(thinking.chat && thinking.noThink && thinking.arguments.suffix(3) == ["--chat", "--no-system", "--no-think"])
        let run = CLIRun(["generate", "--model", directory, "--json"] + thinking.arguments)
        let tokenizer = try ModelLoader.loadTokenizer(path: directory)
        #expect(try run.json()["prompt_tokens"] as? [Int]
                == tokenizer.encode("<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"), "\(run.err)")
    }

    @Test("a row's q8 column is bench's q8 decode speed, and empty where the weights were kept as f16 instead")
    func q8Column() {
        func row(_ bench: [[String: Any]]) -> PipelineCommand.Row {
            var row = PipelineCommand.Row(method: "shadow", sparsity: 0.5)
            row.fillSpeeds(from: bench)
            return row
        }
        let f16: [[String: Any]] = [["method": "shadow", "test": "pp64", "weights": "f16", "tokens_per_second": 300.0],
                                    ["method": "shadow", "test": "tg32", "weights": "f16", "tokens_per_second": 80.0, "bytes_per_token": 1000],
                                    ["method": "dense", "test": "tg32", "weights": "f16", "tokens_per_second": 50.0]]
        let q8 = row(f16 + [["method": "shadow", "test": "tg32", "weights": "q8", "weights_asked": "q8", "tokens_per_second": 120.0]])
        #expect(q8.prefillTokensPerSecond == 300 && q8.decodeTokensPerSecond == 80 && q8.bytesPerToken == 1000 && q8.q8DecodeTokensPerSecond == 120)
        // Asked for q8, kept as f16: the same speed again, not a q8 figure. Its f16 columns stay f16's own.
        let fellBack = row(f16 + [["method": "shadow", "test": "tg32", "weights": "f16", "weights_asked": "q8", "tokens_per_second": 81.0]])
        #expect(fellBack.q8DecodeTokensPerSecond == nil && fellBack.decodeTokensPerSecond == 80)
        // A bench.json from before q8 (no weights keys at all).
        let old = row([["method": "shadow", "test": "tg32", "tokens_per_second": 70.0]])
        #expect(old.decodeTokensPerSecond == 70 && old.q8DecodeTokensPerSecond == nil)
    }

    @Test("with one text for calibration and evaluation, the pipeline holds out its end and calibrates on the rest only")
    func heldOutSplit() throws {
        let text = (0..<40).map { "line \($0): café naïve — 東京 and some more words\n" }.joined()
        let (head, tail) = PipelineCommand.splitOffTail(text, bytes: 500)
        #expect(head + tail == text && tail.utf8.count <= 500 && tail.utf8.count > 400 && head.hasSuffix("\n") && tail.hasPrefix("line "))
        // At most half of a short text; a text without line ends is cut at a character boundary.
        let short = PipelineCommand.splitOffTail("alpha\nbeta\n", bytes: 4000)
        #expect(short == ("alpha\n", "beta\n"))
        let oneLine = PipelineCommand.splitOffTail("ééééé", bytes: 3)
        #expect(oneLine.head + oneLine.tail == "ééééé" && !oneLine.tail.isEmpty && !oneLine.head.isEmpty)
    }

    @Test("the whole method runs on Gemma 2 and Gemma 3 (soft-caps, output norms, sliding layers, GeGLU): calibrate, train, evaluate, bench",
          arguments: ["tiny-gemma2", "tiny-gemma3"])
    func quickPipelineOnGemma(model: String) throws {
        let out = TestScratch.url("pipeline-\(model)").path
        let text = TestScratch.url("pipeline-\(model)-text", suffix: ".txt").path
        try String(repeating: try String(contentsOfFile: CalibrateTests.corpus, encoding: .utf8) + " ", count: 20)
            .write(toFile: text, atomically: true, encoding: .utf8)
        let run = CLIRun(["pipeline", "--model", fixture(model), "--quick", "--out", out, "--data-dir", Self.noData,
                          "--text", text, "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        let results = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/results.json"))) as? [String: Any])
        let rows = try #require(results["rows"] as? [[String: Any]])
        #expect(rows.count == 3 && rows.allSatisfy { ($0["perplexity"] as? Double)?.isFinite == true && $0["generated_text"] is String }, "\(rows)")
    }

    @Test("a quick pipeline on a tiny model writes traces, predictors, a report and plots, and resumes")
    func quickPipeline() throws {
        let out = TestScratch.url("pipeline").path
        let text = TestScratch.url("pipeline-text", suffix: ".txt").path
        try String(repeating: try String(contentsOfFile: CalibrateTests.corpus, encoding: .utf8) + " ", count: 20)
            .write(toFile: text, atomically: true, encoding: .utf8)
        let arguments = ["pipeline", "--model", fixture("tiny-llama"), "--quick", "--out", out, "--data-dir", Self.noData,
                         "--text", text, "--no-progress"]
        let run = CLIRun(arguments)
        #expect(run.status == 0, "\(run.err)")
        for file in ["results.json", "report.md", "plots.svg", "predictors/shadow.safetensors", "predictors/dejavu.safetensors",
                     "traces/manifest.json", "bench.json", "generated/dense.json", "generated/shadow.json", "generated/dejavu.json"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + file), "\(file)")
        }
        #expect(run.out.contains("| dense |") && run.out.contains("| shadow |") && run.out.contains("| dejavu |"))
        #expect(run.err.contains("pipeline: no PIQA or HellaSwag under --data-dir") && !run.err.contains("skipped"), "\(run.err)")
        // The held-out text is the end of --text, calibration read the rest.
        let calibrated = try String(contentsOfFile: out + "/calibration-text.txt", encoding: .utf8)
        let heldOut = try String(contentsOfFile: out + "/heldout-sample.txt", encoding: .utf8)
        #expect(calibrated + heldOut == (try String(contentsOfFile: text, encoding: .utf8)) && !heldOut.isEmpty)
        #expect(try String(contentsOfFile: out + "/traces/manifest.json", encoding: .utf8).contains("calibration-text.txt"))
        let results = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/results.json"))) as? [String: Any])
        #expect((results["held_out_text"] as? String)?.contains("which calibration did not read") == true, "\(results)")
        let rows = try #require(results["rows"] as? [[String: Any]])
        #expect(rows.count == 3 && rows.allSatisfy { $0["perplexity"] is Double && $0["tg_tokens_per_second"] is Double })
        // The realised sparsity beside the nominal one, and what bench measured.
        #expect(rows.filter { $0["method"] as? String != "dense" }.allSatisfy { ($0["realised_head_sparsity"] as? Double).map { $0 > 0 && $0 < 1 } == true }, "\(rows)")
        #expect(rows.first { $0["method"] as? String == "dense" }?["realised_head_sparsity"] == nil)
        #expect(results["bench_tests"] as? [String] == ["pp64", "tg32"], "\(results)")
        #expect(run.out.contains("| pp64 t/s | tg32 t/s | tg32 t/s, q8 |") && run.out.contains("| shadow | 0.5 (0."), "\(run.out)")
        #expect(rows.allSatisfy { ($0["q8_tg_tokens_per_second"] as? Double ?? 0) > 0 }, "\(rows)")
        // Each method's greedy reply, as `generate` gives it with the same masks (the fixture has
        // ChatML's tokens but no chat template: it continues the question as text).
        let generation = try #require(results["generation"] as? [String: Any])
        #expect(generation["chat"] as? Bool == false && generation["max_tokens"] as? Int == 16, "\(generation)")
        let markdown = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
        #expect(markdown.contains("## Generated text") && markdown.contains("**shadow** at 0.5"), "\(markdown)")
        for row in rows {
            let method = try #require(row["method"] as? String)
            let text = try #require(row["generated_text"] as? String, "\(method)")
            #expect(markdown.contains(Markdown.codeBlock(PipelineReport.visible(text)).joined(separator: "\n")), "\(method)")
            let sparse = method == "dense" ? [] : ["--method", method, "--sparsity", "0.5", "--predictor", out + "/predictors"]
            let alone = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", generation["prompt"] as? String ?? "", "-n", "16", "--json"] + sparse)
            #expect(try alone.json()["text"] as? String == text, "\(method)")
        }
        for kind in ["shadow", "dejavu"] {   // stored in half the bytes
            let info = CLIRun(["predictor", "info", out + "/predictors/\(kind).safetensors", "--json"])
            #expect(try info.json()["weights_dtype"] as? String == "f16", "\(kind)")
        }
        // Each predictor's recall at 0.5, global and per layer, in the JSON and the report.
        let predictors = try #require(results["predictors"] as? [String: [String: Any]])
        for kind in ["shadow", "dejavu"] {
            let recall = try #require(predictors[kind]?["head_recall"] as? [String: Double], "\(kind)")
            #expect(recall["sparsity"] == 0.5 && recall["global"] != nil && recall["local"] != nil, "\(recall)")
            #expect(predictors[kind]?["neuron_recall"] as? [String: Double] != nil)
        }
        #expect(markdown.contains("| predictor | heads ρ | neurons ρ | heads recall@0.5 global / per layer | neurons recall@0.5 global / per layer |"))
        // Every step is skipped the second time, and the report keeps what each took when it ran.
        func steps() throws -> [String: Double] {
            let results = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/results.json"))) as? [String: Any])
            let steps = try #require(results["steps"] as? [[String: Any]])
            return Dictionary(uniqueKeysWithValues: steps.map { ($0["name"] as? String ?? "", $0["seconds"] as? Double ?? -1) })
        }
        let firstRun = try steps()
        let again = CLIRun(arguments)
        #expect(try steps() == firstRun && (firstRun["calibrate"] ?? 0) > 0, "\(firstRun)")
        #expect(again.status == 0 && again.err.contains("already done"))
        #expect(!again.err.contains("pipeline: calibrate …"))
        #expect(try String(contentsOfFile: out + "/report.md", encoding: .utf8).contains("| done by an earlier run |"))
        // A reply left by a run that asked another question, or for another length, is generated again.
        let shadowReply = URL(fileURLWithPath: out + "/generated/shadow.json")
        let reply = try Data(contentsOf: shadowReply)
        for (key, value, why) in [("prompt_tokens", [1, 2, 3], "answers another prompt"), ("tokens", [5], "holds 1 token, not 16")] {
            var edited = try #require(JSONSerialization.jsonObject(with: reply) as? [String: Any])
            edited[key] = value
            try JSONSerialization.data(withJSONObject: edited).write(to: shadowReply)
            let redone = CLIRun(arguments)
            #expect(redone.status == 0 && redone.err.contains("\(shadowReply.path) \(why); generating it again")
                    && redone.err.contains("pipeline: generate (shadow) …") && !redone.err.contains("generate (dense) …"), "\(redone.err)")
            let first = try #require(JSONSerialization.jsonObject(with: reply) as? [String: Any])
            let rewritten = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: shadowReply)) as? [String: Any])
            #expect(rewritten["text"] as? String == first["text"] as? String && rewritten["tokens"] as? [Int] == first["tokens"] as? [Int])
        }
        // A bench.json from before q8 was benched: no q8 column, and a note saying how to get one.
        let benchFile = URL(fileURLWithPath: out + "/bench.json")
        let benched = try Data(contentsOf: benchFile)
        var benchObject = try #require(JSONSerialization.jsonObject(with: benched) as? [String: Any])
        benchObject["results"] = (benchObject["results"] as? [[String: Any]])?.filter { $0["weights"] as? String != "q8" }
        try JSONSerialization.data(withJSONObject: benchObject).write(to: benchFile)
        let f16Only = CLIRun(arguments)
        #expect(f16Only.status == 0 && f16Only.err.contains("bench.json is from a run that benched f16 only; remove it to bench q8 too"), "\(f16Only.err)")
        #expect(f16Only.out.contains("| pp64 t/s | tg32 t/s | MB/token |") && !f16Only.out.contains("q8"), "\(f16Only.out)")
        // The report says it too, under its table.
        #expect(try String(contentsOfFile: out + "/report.md", encoding: .utf8).contains("Note: \(out)/bench.json is from a run that benched f16 only; remove it to bench q8 too."))
        try benched.write(to: benchFile)
        // A finished step's output that cannot be read is named, not reported as "—".
        let benchJSON = try Data(contentsOf: URL(fileURLWithPath: out + "/bench.json"))
        try benchJSON.prefix(40).write(to: URL(fileURLWithPath: out + "/bench.json"))
        let brokenBench = CLIRun(arguments)
        #expect(brokenBench.status != 0 && brokenBench.err.contains("the bench step's output cannot be read: \(out)/bench.json: line 3, column 8: unterminated string")
                && brokenBench.err.contains("remove bench.json") && !brokenBench.err.contains("NSCocoaErrorDomain"), "\(brokenBench.err)")
        // A named pipe in its place is refused at once, not waited on for a writer.
        try FileManager.default.removeItem(atPath: out + "/bench.json")
        #expect(mkfifo(out + "/bench.json", 0o600) == 0)
        let pipedBench = CLIRun(arguments)
        #expect(pipedBench.status != 0 && pipedBench.err.contains("\(out)/bench.json: not a regular file"), "\(pipedBench.err)")
        try FileManager.default.removeItem(atPath: out + "/bench.json")
        // A number bench never writes is named rather than shown as a 300-digit speed.
        var implausible = try #require(JSONSerialization.jsonObject(with: benchJSON) as? [String: Any])
        var benchRows = try #require(implausible["results"] as? [[String: Any]])
        benchRows[0]["tokens_per_second"] = 1e308
        implausible["results"] = benchRows
        try JSONSerialization.data(withJSONObject: implausible).write(to: URL(fileURLWithPath: out + "/bench.json"))
        let implausibleBench = CLIRun(arguments)
        #expect(implausibleBench.status != 0 && implausibleBench.err.contains("bench.json from the bench step holds tokens_per_second 1e+308, not a speed"),
                "\(implausibleBench.err)")
        try benchJSON.write(to: URL(fileURLWithPath: out + "/bench.json"))
        let predictor = out + "/predictors/shadow.safetensors"
        let predictorBytes = try Data(contentsOf: URL(fileURLWithPath: predictor))
        try predictorBytes.prefix(1000).write(to: URL(fileURLWithPath: predictor))
        let brokenPredictor = CLIRun(arguments)
        #expect(brokenPredictor.status != 0 && brokenPredictor.err.contains(predictor) && brokenPredictor.err.contains("remove it"), "\(brokenPredictor.err)")
        try predictorBytes.write(to: URL(fileURLWithPath: predictor))
        // Other settings would be reported with the earlier run's numbers: refused, nothing touched.
        let report = try String(contentsOfFile: out + "/results.json", encoding: .utf8)
        let other = CLIRun(arguments + ["--samples", "30", "--sparsity", "0.7"])
        #expect(other.status != 0)
        #expect(other.err.contains("holds a pipeline run with other settings: --samples (24 → 30), --sparsity (0.5 → 0.7)"), "\(other.err)")
        #expect(try String(contentsOfFile: out + "/results.json", encoding: .utf8) == report)
        // Without PIQA or HellaSwag data, --limit decides nothing and may change.
        #expect(CLIRun(arguments + ["--limit", "5"]).status == 0)
        // The same text named another way is the same setting.
        let respelled = (text as NSString).deletingLastPathComponent + "/./" + (text as NSString).lastPathComponent
        let same = CLIRun(arguments.map { $0 == text ? respelled : $0 })
        #expect(same.status == 0, "\(same.err)")
        // A run from before 2026-12-04 read WikiText and HellaSwag as stored: its settings have no task_text.
        let settingsPath = out + "/pipeline-settings.json"
        var settings = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: settingsPath))) as? [String: Any])
        #expect(settings["task_text"] as? String == "lm-eval" && settings["held_out_part"] as? String == "end")
        // A run from before 2026-12-05 held out the start of a shared text, which it calibrated on.
        settings["held_out_part"] = nil
        try JSONSerialization.data(withJSONObject: settings).write(to: URL(fileURLWithPath: settingsPath))
        let unsplit = CLIRun(arguments)
        #expect(unsplit.status != 0 && unsplit.err.contains("held-out part of the text (its start → its end, not calibrated on)"), "\(unsplit.err)")
        settings["held_out_part"] = "end"
        settings["task_text"] = nil
        try JSONSerialization.data(withJSONObject: settings).write(to: URL(fileURLWithPath: settingsPath))
        let older = CLIRun(arguments)
        #expect(older.status != 0 && older.err.contains("other settings: task text (as stored → lm-eval"), "\(older.err)")
        try "{".write(toFile: out + "/pipeline-settings.json", atomically: true, encoding: .utf8)
        let corrupt = CLIRun(arguments)
        #expect(corrupt.status != 0 && corrupt.err.contains("pipeline-settings.json"), "\(corrupt.err)")
        // Not even text (a binary file in its place): the same advice.
        try Data([0x1F, 0x8B, 0x08, 0x00]).write(to: URL(fileURLWithPath: out + "/pipeline-settings.json"))
        let binary = CLIRun(arguments)
        #expect(binary.status == 1 && binary.err.contains("pipeline-settings.json: not the settings of a pipeline run (it is gzip-compressed")
                && binary.err.hasSuffix("remove it or give another --out\n"), "\(binary.err)")
    }
}

@Suite("Pipeline on SmolLM2", .enabled(if: FileManager.default.fileExists(atPath: ShadowModels.DefaultModel.path)
                                           && ProcessInfo.processInfo.environment["SHADOWLLM_SKIP_MODEL_TESTS"] != "1",
                                       "SmolLM2 not fetched (run scripts/setup.sh), or SHADOWLLM_SKIP_MODEL_TESTS=1"))
struct SmolLM2PipelineTests {
    @Test("pipeline --quick runs the whole method on the default model and prints dense, shadow and dejavu rows")
    func quickPipelineOnSmolLM2() throws {
        let out = TestScratch.url("smollm2-pipeline").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let dataDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data").path
        // A clone without ../shared/data beside it runs without task data (an explicit --data-dir that is not there is refused).
        let data = FileManager.default.fileExists(atPath: dataDir) ? ["--data-dir", dataDir] : ["--data-dir", PipelineTests.noData]
        let run = CLIRun(["pipeline", "--quick", "--out", out, "--no-progress"] + data)
        #expect(run.status == 0, "\(run.err)")
        for method in ["dense", "shadow", "dejavu"] { #expect(run.out.contains("| \(method) |"), "\(run.out)") }
        let results = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/results.json"))) as? [String: Any])
        let rows = try #require(results["rows"] as? [[String: Any]])
        #expect(rows.allSatisfy { ($0["perplexity"] as? Double ?? 0) > 1 && ($0["tg_tokens_per_second"] as? Double ?? 0) > 0 })
        // SmolLM2-Instruct answers in its chat turn; the dense reply is about the sky.
        #expect((results["generation"] as? [String: Any])?["chat"] as? Bool == true)
        let dense = try #require(rows.first { $0["method"] as? String == "dense" }?["generated_text"] as? String)
        #expect(dense.lowercased().contains("sky") || dense.lowercased().contains("light"), "\(dense)")
    }
}

@Suite("Output directories")
struct OutputDirectoryTests {
    /// sweep and pipeline write results.json and report.md, names a directory of someone else's may hold.
    @Test("sweep and pipeline refuse an --out that holds other files and none of theirs (a model's directory given by mistake)")
    func foreignDirectories() throws {
        let model = TestScratch.path("foreign-model")
        try? FileManager.default.removeItem(atPath: model)
        try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: model)
        let before = try FileManager.default.contentsOfDirectory(atPath: model).sorted()
        let text = TestScratch.path("foreign-text", suffix: ".txt")
        try String(repeating: "The river ran past the old mill and the children played in the square. ", count: 40)
            .write(toFile: text, atomically: true, encoding: .utf8)
        let sweep = ["sweep", "--model", fixture("tiny-llama"), "--tasks", "wikitext", "--data", "wikitext=\(text)", "--methods", "random",
                     "--sparsities", "0.5", "--context", "16", "--text-bytes", "200", "--no-progress", "--out"]
        let pipeline = ["pipeline", "--model", fixture("tiny-llama"), "--quick", "--text", text, "--data-dir", PipelineTests.noData, "--no-progress", "--out"]
        for arguments in [sweep, pipeline] {
            let run = CLIRun(arguments + [model])
            let last = run.err.split(separator: "\n").last.map(String.init) ?? ""
            #expect(run.status == 1 && last.hasPrefix("error: --out: \(model) holds other files (config.json, ") && last.hasSuffix("; give a new or empty directory")
                    && run.err.split(separator: "\n").filter({ $0.hasPrefix("error") }).count == 1, "\(arguments[0]): \(run.err)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: model).sorted() == before)
        // results.json and report.md are common names: without a sweep's state they are someone else's.
        let reports = TestScratch.path("foreign-reports")
        try? FileManager.default.removeItem(atPath: reports)
        try FileManager.default.createDirectory(atPath: reports, withIntermediateDirectories: true)
        for name in ["results.json", "report.md"] { try "mine\n".write(toFile: reports + "/" + name, atomically: true, encoding: .utf8) }
        let overReports = CLIRun(sweep + [reports])
        #expect(overReports.status == 1 && overReports.err.contains("holds other files (report.md, results.json) and no sweep"), "\(overReports.err)")
        #expect(try String(contentsOfFile: reports + "/report.md", encoding: .utf8) == "mine\n")
        // The command's own inputs kept there do not count.
        let withText = TestScratch.path("foreign-with-text")
        try? FileManager.default.removeItem(atPath: withText)
        try FileManager.default.createDirectory(atPath: withText, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: text, toPath: withText + "/wiki.txt")
        var ownInput = sweep
        ownInput[ownInput.firstIndex(of: "wikitext=\(text)")!] = "wikitext=\(withText)/wiki.txt"
        let besideInput = CLIRun(ownInput + [withText])
        #expect(besideInput.status == 0, "\(besideInput.err)")
        // An empty directory made beforehand is fine, and so is one holding a sweep.
        let empty = TestScratch.path("foreign-empty")
        try? FileManager.default.removeItem(atPath: empty)
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let first = CLIRun(sweep + [empty])
        #expect(first.status == 0, "\(first.err)")
        #expect(CLIRun(sweep + [empty]).status == 0)
    }
}
