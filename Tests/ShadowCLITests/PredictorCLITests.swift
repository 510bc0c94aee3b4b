import Foundation
import Testing
@testable import ShadowCLI
@testable import ShadowModels
@testable import ShadowSparsity
import ShadowTestSupport
import ShadowFormats

/// A small trace directory whose scores depend smoothly on x (a copy of the sparsity tests'
/// generator, reduced: test targets cannot share code).
enum CLITraces {
    static let shape = TransformerShape(layers: 3, hiddenSize: 16, heads: 4, kvHeads: 2, headDim: 4, ffnSize: 12,
                                        vocabularySize: 32, maxContext: 64)

    /// `skip` draws that many samples first and leaves them out: fresh samples of the same mapping.
    static func write(_ directory: String, count: Int = 120, skip: Int = 0, criteria: [String] = ["plainact"], headsOnly: Set<String> = []) throws {
        var generator = SeededGenerator(seed: 5)
        func uniform() -> Float { Float(generator.next() >> 40) / Float(1 << 24) * 2 - 1 }
        let latent = 3
        let mixing = (0..<(shape.layers * shape.hiddenSize + shape.attentionWidth) * latent).map { _ in uniform() }
        let weights = (0..<shape.layers * (shape.heads + shape.ffnSize) * latent).map { _ in uniform() }
        let model = ModelFingerprint(name: "synthetic", architecture: "llama", shape: shape, contentHash: "00000000000000aa")
        let manifest = TraceManifest(model: model, criteria: criteria, predictorToken: .lastContext, sources: ["synthetic"],
                                     options: CalibrationOptions(), requestedSamples: count, shardIndex: 0, shardCount: 1, chunkSize: 50)
        let writer = try TraceWriter(directory: directory, manifest: manifest, resume: false)
        for i in -skip..<count {
            let z = (0..<latent).map { _ in uniform() }
            if i < 0 { continue }
            func embed(_ row: Int) -> Float {
                (0..<latent).reduce(0) { $0 + mixing[row * latent + $1] * z[$1] }
            }
            // The first two entries are 0 and 1, so per-sample min-max scaling keeps the rest.
            let x = (0..<shape.attentionWidth).map { $0 < 2 ? Float($0) : 0.5 + 0.45 * tanh(embed($0)) }
            let inputs = (0..<shape.layers * shape.hiddenSize).map { r in r % shape.hiddenSize < 2 ? Float(r % shape.hiddenSize) : 0.5 + 0.45 * tanh(embed(shape.attentionWidth + r)) }
            func scores(_ offset: Int, _ count: Int) -> [Float] {
                (0..<count).map { u in 1 / (1 + exp(-3 * (0..<latent).reduce(0) { $0 + weights[(offset + u) * latent + $1] * z[$1] })) }
            }
            let heads = scores(0, shape.layers * shape.heads), neurons = scores(shape.layers * shape.heads, shape.layers * shape.ffnSize)
            try writer.append(TraceRecord(index: i, loss: 1, x: x, attention: [Float](repeating: 0, count: shape.layers * shape.attentionWidth),
                                          layerInputs: inputs, heads: Dictionary(uniqueKeysWithValues: criteria.map { ($0, heads) }),
                                          neurons: Dictionary(uniqueKeysWithValues: criteria.filter { !headsOnly.contains($0) }.map { ($0, neurons) })))
        }
        try writer.finish()
    }
}

func scratchPath(_ name: String) -> String {
    TestScratch.path("cli-\(name)")
}

@Suite("Command line: predictors")
struct PredictorCLITests {
    let small = ["--head-width", "32", "--neuron-width", "32", "--head-epochs", "30", "--neuron-epochs", "30", "--batch", "16",
                 "--lr", "0.003", "--no-progress"]

    @Test("train-predictor writes a predictor and predictor info --json reports its held-out quality")
    func trainAndInspect() throws {
        let traces = scratchPath("traces"), out = scratchPath("out") + "/shadow.safetensors"
        defer { try? FileManager.default.removeItem(atPath: traces); try? FileManager.default.removeItem(atPath: (out as NSString).deletingLastPathComponent) }
        try CLITraces.write(traces)
        let train = CLIRun(["train-predictor", "--traces", traces, "--out", out, "--rank", "12"] + small)
        #expect(train.status == 0, "\(train.err)")
        #expect(train.out.contains("Spearman") && train.out.contains("heads") && train.out.contains(out))
        #expect(train.err.isEmpty)

        let info = CLIRun(["predictor", "info", out, "--json"])
        #expect(info.status == 0, "\(info.err)")
        let json = try info.json()
        #expect(json["kind"] as? String == "shadow" && json["criterion"] as? String == "plainact" && json["rank"] as? Int == 12)
        #expect(json["target_scaling"] as? String == "per-layer" && json["loss"] as? String == "mse")
        let quality = try #require(json["quality"] as? [String: Any])
        let heads = try #require(quality["heads"] as? [String: Any]), neurons = try #require(quality["neurons"] as? [String: Any])
        #expect(try #require(heads["spearman"] as? Double) > 0.8)
        #expect(try #require(neurons["spearman"] as? Double) > 0.75)
        let recall = try #require(heads["recall"] as? [String: Double])
        #expect(recall.keys.sorted() == ["0.3", "0.5", "0.7"])
        #expect(neurons["recall"] as? [String: Double] != nil)
        #expect((heads["recall_local"] as? [String: Double])?.keys.sorted() == ["0.3", "0.5", "0.7"])
        #expect(neurons["recall_local"] as? [String: Double] != nil)
        let training = try #require(json["training"] as? [String: Any])
        #expect(training["samples"] as? Int == 120 && training["held_out_samples"] as? Int == 24 && training["traces"] as? String == traces)
        #expect(training["predictor_token"] as? String == "last-context")
        #expect((training["seconds"] as? Double ?? -1) >= 0)
        let model = try #require(json["model"] as? [String: Any])
        #expect(model["contentHash"] as? String == "00000000000000aa" || model["content_hash"] as? String == "00000000000000aa")
        #expect(((json["parameters"] as? [String: Any])?["total"] as? Int ?? 0) > 0)
        #expect(((json["flops_per_prediction"] as? [String: Any])?["total"] as? Int ?? 0) > 0)

        let text = CLIRun(["predictor", "info", out])
        #expect(text.status == 0 && text.out.contains("recall@0.5") && text.out.contains("kind: shadow"))
        #expect(text.out.contains("  epochs 30 heads / 30 neurons, batch 16 / 16, lr 0.003"), "\(text.out)")
        // Counts past 32 bits are printed whole (a C format's %d cut them to their low bits).
        var metadata = try JSONSerialization.jsonObject(with: JSONEncoder().encode(try PredictorFile.metadata(path: out))) as! [String: Any]
        var trainingRecord = metadata["training"] as! [String: Any], options = trainingRecord["options"] as! [String: Any]
        options["head_epochs"] = 5_000_000_000
        trainingRecord["options"] = options
        metadata["training"] = trainingRecord
        let large = try JSONDecoder().decode(PredictorMetadata.self, from: JSONSerialization.data(withJSONObject: metadata))
        #expect(PredictorInfoCommand.description(large).contains { $0.hasPrefix("  epochs 5000000000 heads / 30 neurons") },
                "\(PredictorInfoCommand.description(large))")
        #expect(text.out.contains("each layer its own top k (the local policy):"), "\(text.out)")

        let markdown = CLIRun(["predictor", "info", out, "--markdown"])
        #expect(markdown.status == 0, "\(markdown.err)")
        let lines = markdown.out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.first == "# Predictor `\(out)`")
        #expect(lines.contains { $0.hasPrefix("- training: 120 samples") && $0.contains("; epochs ") }, "\(markdown.out)")
        #expect(lines.contains("| units | Spearman ρ | recall@0.3 | recall@0.5 | recall@0.7 | per-layer recall@0.3 | per-layer recall@0.5 | per-layer recall@0.7 |"))
        let headsRow = try #require(lines.first { $0.hasPrefix("| heads | ") }).components(separatedBy: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(headsRow.count == 10 && Double(headsRow[2]).map { abs($0 - (heads["spearman"] as! Double)) < 5e-4 } == true, "\(headsRow)")
        #expect(lines.contains { $0.hasPrefix("| neurons | ") })

        // Measured on fresh samples of the same mapping, in every output form.
        let other = scratchPath("traces-other"), otherCriterion = scratchPath("traces-l2")
        defer { try? FileManager.default.removeItem(atPath: other); try? FileManager.default.removeItem(atPath: otherCriterion) }
        try CLITraces.write(other, count: 40, skip: 120)
        let measured = CLIRun(["predictor", "info", out, "--traces", other, "--json"])
        #expect(measured.status == 0, "\(measured.err)")
        let onTraces = try #require(try measured.json()["quality_on_traces"] as? [String: Any])
        #expect(onTraces["traces"] as? String == URL(fileURLWithPath: other).standardizedFileURL.path)
        let otherQuality = try #require(onTraces["quality"] as? [String: Any])
        #expect(otherQuality["held_out_samples"] as? Int == 40)
        #expect(try #require((otherQuality["heads"] as? [String: Any])?["spearman"] as? Double) > 0.7, "\(otherQuality)")
        #expect((otherQuality["neurons"] as? [String: Any])?["recall_local"] != nil)
        #expect(onTraces["training_samples_left_out"] as? Int == 0)
        // A copy of the training traces: the samples it trained on are found by content and left
        // out, so what is measured is the held-out split, as in the file.
        let copy = scratchPath("traces-copy")
        defer { try? FileManager.default.removeItem(atPath: copy) }
        try FileManager.default.copyItem(atPath: traces, toPath: copy)
        let onCopy = try #require(try CLIRun(["predictor", "info", out, "--traces", copy, "--json"]).json()["quality_on_traces"] as? [String: Any])
        #expect(onCopy["training_samples_left_out"] as? Int == 96)
        let copyHeads = try #require((onCopy["quality"] as? [String: Any])?["heads"] as? [String: Any])
        #expect(abs(try #require(copyHeads["spearman"] as? Double) - (heads["spearman"] as! Double)) < 1e-9, "\(copyHeads) vs \(heads)")
        #expect(CLIRun(["predictor", "info", out, "--traces", copy]).out.contains("; 96 samples it trained on left out):"))
        #expect(CLIRun(["predictor", "info", out, "--traces", other]).out.contains("quality on \(URL(fileURLWithPath: other).standardizedFileURL.path) (40 samples"))
        let measuredMarkdown = CLIRun(["predictor", "info", out, "--traces", other, "--markdown"]).out
        #expect(measuredMarkdown.contains("## Quality on `") && measuredMarkdown.components(separatedBy: "Spearman ρ between").count == 2, "\(measuredMarkdown)")
        let single = scratchPath("traces-single")
        defer { try? FileManager.default.removeItem(atPath: single) }
        try CLITraces.write(single, count: 1, skip: 160)
        let one = CLIRun(["predictor", "info", out, "--traces", single, "--json"])
        #expect(one.status == 0, "\(one.err)")
        #expect((try one.json()["quality_on_traces"] as? [String: Any])?["quality"] != nil)
        try CLITraces.write(otherCriterion, count: 10, criteria: ["l2_norm"])
        let link = scratchPath("traces-link")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: traces)
        defer { try? FileManager.default.removeItem(atPath: link) }
        let dotted = (traces as NSString).deletingLastPathComponent + "/./" + (traces as NSString).lastPathComponent + "/"
        for (traces, message) in [(traces, "is what the predictor was trained on"), (link, "is what the predictor was trained on"),
                                  (dotted, "is what the predictor was trained on"), (otherCriterion, #"has no "plainact" scores, the predictor's criterion (it has l2_norm)"#),
                                  (scratchPath("none"), "none")] {
            let refused = CLIRun(["predictor", "info", out, "--traces", traces])
            #expect(refused.status == 1 && refused.err.contains(message) && refused.out.isEmpty, "\(refused.err)")
        }

        let both = CLIRun(["predictor", "info", out, "--markdown", "--json"])
        #expect(both.status != 0 && both.err.contains("--markdown: give only one of --json and --markdown") && both.out.isEmpty)
    }

    @Test("train-predictor trains the DejaVu kinds and shows progress on stderr")
    func dejavu() throws {
        let traces = scratchPath("traces"), out = scratchPath("dejavu") + ".safetensors"
        defer { try? FileManager.default.removeItem(atPath: traces); try? FileManager.default.removeItem(atPath: out) }
        try CLITraces.write(traces, count: 40)
        for kind in ["dejavu", "dejavu-lookahead"] {
            let run = CLIRun(["train-predictor", "--traces", traces, "--out", out, "--kind", kind, "--head-width", "8",
                              "--neuron-width", "8", "--head-epochs", "2", "--neuron-epochs", "1", "--loss", "rank",
                              "--target-scaling", "global", "--dtype", kind == "dejavu" ? "f16" : "f32"])
            #expect(run.status == 0, "\(run.err)")
            #expect(run.err.contains("layer 2 neurons") && run.err.contains("ρ"))
            let json = try CLIRun(["predictor", "info", out, "--json"]).json()
            #expect(json["kind"] as? String == kind && json["loss"] as? String == "rank" && json["target_scaling"] as? String == "global")
            #expect(json["weights_dtype"] as? String == (kind == "dejavu" ? "f16" : "f32"))
            #expect(CLIRun(["predictor", "info", out]).out.contains("stored as \(kind == "dejavu" ? "f16" : "f32")"))
        }
    }

    @Test("train-predictor replaces a stale checkpoint without --resume, refuses a corrupt one with it, removes its own at the end, and never a file that is no checkpoint")
    func checkpointOptions() throws {
        let traces = scratchPath("traces"), out = scratchPath("checkpointed") + ".safetensors"
        let checkpoint = out + ".checkpoint"
        defer {
            for path in [traces, out, checkpoint] { try? FileManager.default.removeItem(atPath: path) }
        }
        try CLITraces.write(traces, count: 30)
        let small = ["--traces", traces, "--out", out, "--head-width", "8", "--neuron-width", "8", "--head-epochs", "2",
                     "--neuron-epochs", "1", "--no-progress"]
        // A file that is not a checkpoint (a typo naming the model, say) is never replaced nor removed.
        try Data("someone's notes".utf8).write(to: URL(fileURLWithPath: checkpoint))
        for extra in [[], ["--resume"]] {
            let refused = CLIRun(["train-predictor"] + small + extra)
            #expect(refused.status != 0 && refused.err.contains(checkpoint) && refused.err.split(separator: "\n").count == 1, "\(refused.err)")
            #expect(try String(contentsOfFile: checkpoint, encoding: .utf8) == "someone's notes")
        }
        // A checkpoint left by an interrupted run, whose state this build cannot read.
        var stale = SafetensorsWriter(metadata: ["format": TrainingCheckpoint.format, "state": "{}"])
        stale.add("optimiser.m", shape: [1], values: [0])
        try stale.write(to: checkpoint)
        // With --resume the stale file is read, and its state is refused.
        let refused = CLIRun(["train-predictor"] + small + ["--resume"])
        #expect(refused.status != 0 && refused.err.contains(checkpoint) && refused.err.split(separator: "\n").count == 1, "\(refused.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
        // Without it, training starts afresh, says so, and leaves no checkpoint behind.
        let fresh = CLIRun(["train-predictor"] + small)
        #expect(fresh.status == 0, "\(fresh.err)")
        #expect(fresh.err.contains("starting afresh") && fresh.err.contains(checkpoint), "\(fresh.err)")
        #expect(FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: checkpoint))
        // A checkpoint cut short (its data lost, its header intact) is refused with --resume,
        // naming it, and replaced without.
        try stale.write(to: checkpoint)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: checkpoint))
        try handle.truncate(atOffset: try handle.seekToEnd() - 2)
        try handle.close()
        let cut = CLIRun(["train-predictor"] + small + ["--resume"])
        #expect(cut.status == 1 && cut.err.hasPrefix("error: \(checkpoint)") && cut.err.split(separator: "\n").count == 1, "\(cut.err)")
        let afresh = CLIRun(["train-predictor"] + small)
        #expect(afresh.status == 0 && afresh.err.contains("starting afresh"), "\(afresh.err)")
        // --resume with no checkpoint there trains from the start as well; its first progress line
        // (as pipeline's log shows it) has an estimate: the first epoch is this run's own work.
        let nothingToResume = CLIRun(["train-predictor"] + small.filter { $0 != "--no-progress" } + ["--resume"])
        let firstLine = nothingToResume.err.split(separator: "\n").first { $0.hasPrefix("train ") } ?? ""
        #expect(nothingToResume.status == 0 && firstLine.contains(" 1/") && !firstLine.contains("ETA ?"), "\(nothingToResume.err)")
        for (extra, mention) in [(["--checkpoint", traces], "--checkpoint"), (["--checkpoint", out], "--checkpoint"),
                                 (["--checkpoint", traces + "/manifest.json"], "--checkpoint"), (["--checkpoint-every", "0"], "--checkpoint-every")] {
            let run = CLIRun(["train-predictor"] + small + extra)
            #expect(run.status != 0 && run.err.contains(mention) && run.err.split(separator: "\n").count == 1, "\(extra): \(run.err)")
        }
    }

    @Test("train-predictor refuses a named pipe as --out or --checkpoint at once, before training (opening one waits for a reader past Ctrl-C)",
          .enabled(if: BuiltTool.path != nil, BuiltTool.missing))
    func namedPipes() throws {
        let traces = scratchPath("traces-pipes"), out = scratchPath("piped") + ".safetensors", pipe = scratchPath("train-pipe")
        try? FileManager.default.removeItem(atPath: pipe)
        #expect(mkfifo(pipe, 0o600) == 0)
        defer { for path in [traces, out, pipe] { try? FileManager.default.removeItem(atPath: path) } }
        try CLITraces.write(traces, count: 30)
        let small = ["train-predictor", "--traces", traces, "--head-width", "8", "--neuron-width", "8", "--head-epochs", "1",
                     "--neuron-epochs", "1", "--no-progress"]
        let asCheckpoint = try ChildRun(small + ["--out", out, "--checkpoint", pipe, "--resume"], timeout: 60)
        #expect(asCheckpoint.end == .exited(1) && asCheckpoint.err == "error: --checkpoint: \(pipe) is not a regular file (a checkpoint is replaced as training saves and removed at its end)\n",
                "\(asCheckpoint.end): \(asCheckpoint.err)")
        let asOut = try ChildRun(small + ["--out", pipe], timeout: 60)
        #expect(asOut.end == .exited(1) && asOut.err == "error: --out: \(pipe) is a pipe; a predictor must be a file (later commands map it)\n",
                "\(asOut.end): \(asOut.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("--predictor DIR finds METHOD.safetensors, else the one METHOD-*.safetensors there, and names the files when it cannot choose")
    func predictorDirectories() throws {
        let source = SweepCommandTests.inputs.predictors
        let directory = scratchPath("predictor-names")
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: source + "/shadow.safetensors", toPath: directory + "/shadow-plainact.safetensors")
        try FileManager.default.copyItem(atPath: source + "/dejavu.safetensors", toPath: directory + "/dejavu-lookahead-l2_norm.safetensors")
        func generate(_ method: String) -> CLIRun {
            CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "a b c", "--max-tokens", "2", "--method", method,
                    "--sparsity", "0.5", "--predictor", directory])
        }
        let found = generate("shadow")
        #expect(found.status == 0, "\(found.err)")
        // dejavu-lookahead's file is not dejavu's.
        let none = generate("dejavu")
        #expect(none.status == 1 && none.err == "error: --predictor: \(directory) holds no dejavu.safetensors or dejavu-*.safetensors; name the predictor file\n", "\(none.err)")
        try FileManager.default.copyItem(atPath: source + "/shadow.safetensors", toPath: directory + "/shadow-fisher.safetensors")
        let several = generate("shadow")
        #expect(several.status == 1 && several.err.contains("holds several shadow predictors (shadow-fisher.safetensors, shadow-plainact.safetensors); name one"), "\(several.err)")
    }

    @Test("bad traces, criteria, kinds and predictor files are one-line errors")
    func badInput() throws {
        let traces = scratchPath("traces"), directory = scratchPath("bad")
        defer { try? FileManager.default.removeItem(atPath: traces); try? FileManager.default.removeItem(atPath: directory) }
        try CLITraces.write(traces, count: 20, criteria: ["plainact", "jacov"], headsOnly: ["jacov"])
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let corrupt = directory + "/corrupt.safetensors"
        try Data("not a safetensors file at all".utf8).write(to: URL(fileURLWithPath: corrupt))
        let out = directory + "/p.safetensors"
        let cases: [([String], String)] = [
            (["train-predictor", "--traces", "/nonexistent/traces", "--out", out], "/nonexistent/traces"),
            (["train-predictor", "--traces", directory, "--out", out], "no traces"),
            (["train-predictor", "--traces", traces, "--out", out, "--criterion", "fisher"], "fisher"),
            (["train-predictor", "--traces", traces, "--out", out, "--criterion", "jacov", "--rank", "4"], "jacov"),
            (["train-predictor", "--traces", traces, "--out", out, "--kind", "oracle"], "--kind"),
            (["train-predictor", "--traces", traces], "--out"),
            (["train-predictor", "--traces", traces, "--out", directory], "directory"),
            (["train-predictor", "--traces", traces, "--out", traces + "/p.safetensors"], "write the predictor elsewhere"),
            (["train-predictor", "--traces", traces, "--out", out, "--head-width", "0"], "--head-width"),
            (["predictor", "info", corrupt], corrupt),
            (["predictor", "info", directory + "/missing.safetensors"], "missing.safetensors"),
            (["predictor", "info"], "<file>: is required (shadowllm predictor info <file>)"),
            (["train-predictor", "--traces", traces, "--out", out, "--rank-temperature", "5"], "--rank-temperature: is only read with --loss rank"),
            (["train-predictor", "--traces", traces, "--out", out, "--rank", "100000"],
             "--rank: 100000 does not shrink the 1024 × 36 output layer (rank r has r·(1024 + 36) weights, against 36864): it must be at most 34"),
            (["train-predictor", "--traces", traces, "--out", out, "--neuron-width", "16", "--rank", "12"],
             "--rank: 12 does not shrink the 16 × 36 output layer (rank r has r·(16 + 36) weights, against 576): it must be at most 11"),
            (["train-predictor", "--traces", traces, "--out", out, "--kind", "dejavu", "--rank", "12"], "against 12288): it must be at most 11"),
            (["predictor", "info", corrupt, "extra"], "extra"),
            // A network that does not exist takes no options; no epochs would leave networks untrained.
            (["train-predictor", "--traces", traces, "--out", out, "--criterion", "jacov", "--neuron-width", "99"],
             "--neuron-width: criterion jacov has no neuron scores, so there is no neuron network to train"),
            (["train-predictor", "--traces", traces, "--out", out, "--criterion", "jacov", "--neuron-epochs", "7"], "--neuron-epochs: criterion jacov"),
            (["train-predictor", "--traces", traces, "--out", out, "--head-epochs", "0"], "--head-epochs"),
        ]
        for (arguments, mention) in cases {
            let run = CLIRun(arguments)
            #expect(run.status != 0, "\(arguments)")
            #expect(run.err.hasPrefix("error: ") && run.err.split(separator: "\n").count == 1 && run.err.contains(mention),
                    "\(arguments): \(run.err)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
        // A heads-only criterion trains the head network alone.
        let headsOnly = CLIRun(["train-predictor", "--traces", traces, "--out", out, "--criterion", "jacov", "--head-width", "8",
                                "--head-epochs", "1", "--no-progress", "--json"])
        #expect(headsOnly.status == 0, "\(headsOnly.err)")
        #expect(try headsOnly.json()["predicts_neurons"] as? Bool == false)
        // A batch past the 16 training samples is the whole set, and the file says so.
        try FileManager.default.removeItem(atPath: out)
        let wholeBatch = CLIRun(["train-predictor", "--traces", traces, "--out", out, "--criterion", "jacov", "--head-width", "8",
                                 "--head-epochs", "1", "--batch", "1000", "--no-progress", "--json"])
        #expect(wholeBatch.status == 0, "\(wholeBatch.err)")
        let options = (try wholeBatch.json()["training"] as? [String: Any])?["options"] as? [String: Any]
        #expect(options?["head_batch"] as? Int == 16 && options?["neuron_batch"] as? Int == 16, "\(wholeBatch.out)")
    }

    @Test("a learning rate that makes training diverge stops it with one line naming the network and epoch, and writes no predictor")
    func divergence() throws {
        let traces = scratchPath("traces-diverge"), directory = scratchPath("diverge")
        defer { try? FileManager.default.removeItem(atPath: traces); try? FileManager.default.removeItem(atPath: directory) }
        try CLITraces.write(traces, count: 40)
        let out = directory + "/p.safetensors"
        let run = CLIRun(["train-predictor", "--traces", traces, "--out", out, "--head-width", "16", "--neuron-width", "16",
                          "--head-epochs", "5", "--neuron-epochs", "5", "--lr", "1e10", "--no-progress"])
        #expect(run.status == 1 && run.out.isEmpty, "\(run.out)")
        #expect(run.err.hasPrefix("error: training diverged: the heads network's loss became ") && run.err.contains(" at epoch ")
                && run.err.contains("(--lr 1e+10)") && run.err.hasSuffix("give a lower --lr\n") && run.err.split(separator: "\n").count == 1,
                "\(run.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
        // Rates single precision cannot hold are named so (1e-300 had read "must be positive, got 0.0").
        for (option, value, side) in [("--lr", "1e-300", "below"), ("--lr", "1e39", "beyond"), ("--rank-temperature", "1e-300", "below")] {
            let refused = CLIRun(["train-predictor", "--traces", traces, "--out", out, "--loss", "rank", option, value, "--no-progress"])
            #expect(refused.status == 1 && refused.err.hasPrefix("error: \(option): \(value) is \(side) single precision, which training computes in")
                    && refused.err.split(separator: "\n").count == 1, "\(refused.err)")
        }
        // The same run at a sane rate trains, and predictor info reads what it wrote.
        let sane = CLIRun(["train-predictor", "--traces", traces, "--out", out, "--head-width", "16", "--neuron-width", "16",
                           "--head-epochs", "5", "--neuron-epochs", "5", "--no-progress"])
        #expect(sane.status == 0, "\(sane.err)")
        #expect(CLIRun(["predictor", "info", out, "--json"]).status == 0)
    }

    @Test("both commands document their options")
    func help() {
        let train = CLIRun(["train-predictor", "--help"])
        #expect(train.status == 0 && train.out.contains("--target-scaling") && train.out.contains("(default: 2048)"))
        let info = CLIRun(["predictor", "info", "--help"])
        #expect(info.status == 0 && info.out.contains("USAGE: shadowllm predictor info <file>"))
        #expect(CLIRun(["--help"]).out.contains("train-predictor"))
    }
}
