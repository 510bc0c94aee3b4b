import Foundation
import Testing
@testable import ShadowCLI
import ShadowTestSupport

/// Options a command would not read in the combination given are refused, one line naming the
/// option, rather than run without them (the user guide's promise).
@Suite("Command line: options not read are refused")
struct UnreadOptionsTests {
    func expectRefused(_ arguments: [String], _ option: String, reason: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        let run = CLIRun(arguments)
        #expect(run.status == 1 && run.out.isEmpty, "\(arguments): \(run.out)", sourceLocation: sourceLocation)
        #expect(run.err.hasPrefix("error: \(option): ") && run.err.split(separator: "\n").count == 1,
                "\(arguments): \(run.err)", sourceLocation: sourceLocation)
        if let reason { #expect(run.err.contains(reason), "\(run.err)", sourceLocation: sourceLocation) }
    }

    @Test("generate and perplexity refuse mask options their method does not read")
    func singleMethodCommands() {
        let model = fixture("tiny-llama")
        let generate = ["generate", "--model", model, "-p", "hi", "-n", "1"]
        expectRefused(generate + ["--refresh", "3"], "--refresh", reason: "--method shadow, dejavu or dejavu-lookahead")
        expectRefused(generate + ["--mask-seed", "5"], "--mask-seed", reason: "--method random")
        expectRefused(generate + ["--method", "random", "--sparsity", "0.5", "--refresh", "3"], "--refresh")
        expectRefused(generate + ["--policy", "local"], "--policy")
        expectRefused(generate + ["--method", "static", "--sparsity", "0.5", "--mask-seed", "5"], "--mask-seed")
        // Greedy decoding (the default temperature 0) reads no seed and no nucleus.
        expectRefused(generate + ["--seed", "7"], "--seed", reason: "--temperature above 0")
        expectRefused(generate + ["--top-p", "0.9", "--temperature", "0"], "--top-p")
        #expect(CLIRun(generate + ["--seed", "7", "--top-p", "0.9", "--temperature", "0.8"]).status == 0)
        let perplexity = ["perplexity", "--model", model, "--text", "hello world, hello again"]
        // dejavu selects per layer: a policy is not read (refused before the missing predictor).
        expectRefused(perplexity + ["--method", "dejavu", "--sparsity", "0.5", "--policy", "local"], "--policy", reason: "dejavu selects per layer")
        expectRefused(perplexity + ["--method", "dejavu-lookahead", "--sparsity", "0.5", "--policy", "hybrid", "--hybrid-floor", "0.2"], "--policy")
        expectRefused(perplexity + ["--policy", "hybrid", "--hybrid-floor", "0.2"], "--policy")
        expectRefused(perplexity + ["--mask-seed", "1", "--method", "oracle", "--sparsity", "0.5"], "--mask-seed")
    }

    @Test("--sparsity beside both --head-sparsity and --neuron-sparsity, and calibrate's text options without a text source, are refused")
    func overriddenOptions() {
        let model = fixture("tiny-llama")
        expectRefused(["generate", "--model", model, "-p", "hi", "-n", "1", "--method", "random", "--sparsity", "0.3",
                       "--head-sparsity", "0.5", "--neuron-sparsity", "0.2"], "--sparsity", reason: "is not read when --head-sparsity and --neuron-sparsity are both given")
        #expect(CLIRun(["generate", "--model", model, "-p", "hi", "-n", "1", "--method", "random", "--sparsity", "0.3",
                        "--head-sparsity", "0.5"]).status == 0)
        let piqa = try! EvalCommandTests.piqaFiles()
        for option in ["--text-window", "--text-continuation"] {
            expectRefused(["calibrate", "--model", model, "--source", "piqa:\(piqa.data)", "--samples", "2", "--out", scratchPath("unread-text"),
                           option, "8"], option, reason: "is only read with a text: source")
        }
        for option in ["--shots", "--seed", "--max-tokens"] {
            expectRefused(["calibrate", "--model", model, "--source", "text:\(CalibrateTests.corpus)", "--samples", "2", "--out", scratchPath("unread-task"),
                           option, "8"], option, reason: "is only read with a task source (piqa:, hellaswag:, …)")
        }
        // One file's items are taken once: overlapping slices would be duplicate samples.
        expectRefused(["calibrate", "--model", model, "--source", "piqa:\(piqa.data)@0-2,piqa:\(piqa.data)@1-", "--samples", "2",
                       "--out", scratchPath("twice")], "--source", reason: "piqa:\(piqa.data)@0-2 and piqa:\(piqa.data)@1- take the same items twice")
    }

    @Test("the options a method reads are still accepted")
    func readOptionsAccepted() throws {
        let model = fixture("tiny-llama")
        let text = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."
        let perplexity = ["perplexity", "--model", model, "--text", text, "--json", "--method", "random", "--sparsity", "0.5"]
        let seeded = CLIRun(perplexity + ["--mask-seed", "5", "--policy", "hybrid", "--hybrid-floor", "0.2"])
        let other = CLIRun(perplexity + ["--mask-seed", "6", "--policy", "hybrid", "--hybrid-floor", "0.2"])
        #expect(seeded.status == 0 && other.status == 0, "\(seeded.err)")
        #expect(try seeded.json()["nll_sum"] as? Double != (try other.json()["nll_sum"] as? Double))
    }

    @Test("bench refuses options none of its methods reads, and --sparsity with dense alone")
    func bench() {
        let bench = ["bench", "--model", fixture("tiny-llama"), "-p", "16", "-n", "0", "-r", "1", "--no-progress"]
        expectRefused(bench + ["--method", "random", "--predictor", "/nonexistent"], "--predictor")
        expectRefused(bench + ["--method", "dense,random", "--refresh", "2"], "--refresh")
        expectRefused(bench + ["--method", "random", "--scores", "s.json"], "--scores")
        // bench refuses the oracle, so the methods it names as readers leave it out.
        expectRefused(bench + ["--policy", "local"], "--policy", reason: "--method random, static or shadow\n")
        // Why dejavu reads no policy is said where dejavu was asked for.
        expectRefused(bench + ["--method", "dejavu", "--sparsity", "0.5", "--policy", "local"], "--policy",
                      reason: "--method random, static or shadow (dejavu selects per layer)")
        expectRefused(bench + ["--sparsity", "0.5"], "--sparsity", reason: "dense runs at 0")
        expectRefused(bench + ["--method", "random", "--sparsity", "0.5", "-b", "8"], "-b", reason: "dense method only")
        let local = CLIRun(bench + ["--method", "dense,random", "--sparsity", "0.5", "--policy", "local"])
        #expect(local.status == 0, "\(local.err)")
    }

    @Test("eval refuses --mask-mode with the dense model and on WikiText")
    func evalMaskMode() throws {
        let files = try EvalCommandTests.piqaFiles()
        let wiki = TestScratch.url("unread-wiki.txt").path
        try " = A = \n text .\n".write(toFile: wiki, atomically: true, encoding: .utf8)
        let eval = ["eval", "--model", fixture("tiny-llama"), "--no-progress"]
        expectRefused(eval + ["--task", "piqa", "--data", files.data, "--labels", files.labels, "--mask-mode", "per-choice"],
                      "--mask-mode", reason: "sparse --method")
        expectRefused(eval + ["--task", "wikitext", "--data", wiki, "--method", "random", "--sparsity", "0.5", "--mask-mode", "causal"],
                      "--mask-mode", reason: "wikitext")
        expectRefused(eval + ["--task", "piqa", "--data", files.data, "--labels", files.labels, "--refresh", "2"], "--refresh")
        // The seed draws few-shot examples only.
        expectRefused(eval + ["--task", "piqa", "--data", files.data, "--labels", files.labels, "--seed", "3"], "--seed", reason: "--shots above 0")
        expectRefused(eval + ["--task", "piqa", "--data", files.data, "--labels", files.labels, "--seed", "3", "--shots", "0"], "--seed")
        #expect(CLIRun(eval + ["--task", "piqa", "--data", files.data, "--labels", files.labels, "--limit", "1", "--seed", "3", "--shots", "1"]).status == 0)
        // Prefill-only commands have no decode tokens to refresh masks on, whatever the method.
        expectRefused(eval + ["--task", "piqa", "--data", files.data, "--labels", files.labels, "--method", "shadow",
                              "--sparsity", "0.5", "--predictor", files.data, "--refresh", "2"], "--refresh", reason: "unknown option")
        expectRefused(["perplexity", "--model", fixture("tiny-llama"), "--text", "a b c", "--method", "shadow", "--sparsity", "0.5",
                       "--predictor", files.data, "--refresh", "2"], "--refresh", reason: "unknown option")
    }

    @Test("sweep refuses --hybrid-floor without --policy hybrid")
    func sweepHybridFloor() throws {
        let text = TestScratch.url("unread-sweep.txt").path
        try "The river ran past the old mill.\nChildren played in the square.\n".write(toFile: text, atomically: true, encoding: .utf8)
        let out = scratchPath("sweep-unread")
        expectRefused(["sweep", "--model", fixture("tiny-llama"), "--out", out, "--tasks", "wikitext", "--data", "wikitext=\(text)",
                       "--methods", "random", "--sparsities", "0.5", "--text-bytes", "500", "--context", "16",
                       "--hybrid-floor", "0.3", "--no-progress"], "--hybrid-floor", reason: "--policy hybrid")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("sweep refuses criteria no cell or heat map reads, and keeps the item options a resumed sweep must match")
    func sweepUnreadCriteria() throws {
        let text = TestScratch.url("unread-sweep-wiki.txt").path
        try " = A = \n The river ran past the old mill .\n".write(toFile: text, atomically: true, encoding: .utf8)
        let piqa = try EvalCommandTests.piqaFiles()
        let out = scratchPath("sweep-unread-items")
        let both = ["sweep", "--model", fixture("tiny-llama"), "--out", out, "--tasks", "piqa,wikitext",
                    "--data", "piqa=\(piqa.data),wikitext=\(text)", "--labels", "piqa=\(piqa.labels)", "--sparsities", "0.5",
                    "--context", "16", "--limit", "1", "--no-progress"]
        // Every method names its criterion (or has none) and no --traces asks for a heat map.
        expectRefused(both + ["--methods", "random,oracle:plainact", "--criteria", "fisher"], "--criteria", reason: "METHOD:CRITERION")
        #expect(!FileManager.default.fileExists(atPath: out))
        let read = CLIRun(both + ["--methods", "oracle", "--criteria", "l2_norm"])
        #expect(read.status == 0, "\(read.err)")
        // A state written with --seed 7 (and no shots) by an earlier command resumes only with it:
        // such options are part of the settings, whatever the tasks read.
        let wikitext = ["sweep", "--model", fixture("tiny-llama"), "--out", scratchPath("sweep-unread-seed"), "--tasks", "wikitext",
                        "--data", "wikitext=\(text)", "--methods", "random", "--sparsities", "0.5", "--context", "16", "--no-progress"]
        #expect(CLIRun(wikitext + ["--seed", "7", "--offset", "2"]).status == 0)
        #expect(CLIRun(wikitext + ["--seed", "7", "--offset", "2"]).status == 0)
    }
}
