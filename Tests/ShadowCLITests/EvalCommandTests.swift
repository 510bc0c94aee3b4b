import Foundation
import Testing
@testable import ShadowCLI
import ShadowTestSupport

@Suite("eval command")
struct EvalCommandTests {
    /// A four-item PIQA file and its labels in a fresh directory.
    static func piqaFiles() throws -> (data: String, labels: String) {
        let directory = TestScratch.url("eval")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let rows = [
            #"{"goal": "Open a jar", "sol1": "Twist the lid.", "sol2": "Eat the jar."}"#,
            #"{"goal": "Dry hands", "sol1": "Use a towel.", "sol2": "Use a rock."}"#,
            #"{"goal": "Boil water", "sol1": "Freeze it.", "sol2": "Heat it in a pot."}"#,
            #"{"goal": "Read a book", "sol1": "Open it.", "sol2": "Burn it."}"#,
        ]
        let data = directory.appendingPathComponent("valid.jsonl").path
        let labels = directory.appendingPathComponent("valid-labels.lst").path
        try rows.joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
        try "0\n0\n1\n0\n".write(toFile: labels, atomically: true, encoding: .utf8)
        return (data, labels)
    }

    @Test("--json reports accuracy, standard errors, sparsity, agreement and the dense model")
    func jsonKeys() throws {
        let files = try Self.piqaFiles()
        let arguments = ["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", files.data,
                         "--labels", files.labels, "--offset", "1", "--limit", "2", "--shots", "1",
                         "--method", "random", "--sparsity", "0.5", "--json", "--no-progress"]
        let run = CLIRun(arguments)
        #expect(run.status == 0, "\(run.err)")
        let json = try run.json()
        for key in ["task", "n", "acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "method", "head_sparsity",
                    "neuron_sparsity", "realised_head_sparsity", "kl_divergence", "top1_agreement", "dense",
                    "offset", "limit", "seconds", "mask_mode", "truncated_items"] {
            #expect(json[key] != nil, "missing \(key)")
        }
        #expect(json["task"] as? String == "piqa")
        #expect(json["data"] as? String == files.data && json["weights"] as? String == "f32")
        #expect(json["n"] as? Int == 2)
        #expect(json["offset"] as? Int == 1 && json["limit"] as? Int == 2)
        #expect(json["truncated_items"] as? Int == 0 && !run.err.contains("warning"))
        // Where the masks came from: random's seed and the policy, defaulted.
        #expect(json["mask_seed"] as? Int == 0 && json["policy"] as? String == "global" && json["predictor"] == nil, "\(json)")
        let hybrid = try CLIRun(arguments + ["--policy", "hybrid", "--mask-seed", "3"]).json()
        #expect(hybrid["mask_seed"] as? Int == 3 && hybrid["policy"] as? String == "hybrid" && hybrid["hybrid_floor"] as? Double == 0.1)
        #expect((json["kl_divergence"] as? Double ?? 0) > 0)
        let dense = try #require(json["dense"] as? [String: Any])
        #expect(dense["acc"] != nil && dense["acc_norm"] != nil)

        // Deterministic: the same command gives the same numbers.
        var again = try CLIRun(arguments).json()
        var first = json
        first["seconds"] = nil
        again["seconds"] = nil
        // Other suites change the global thread count while this runs, and BLAS sums in a
        // different order with another thread count: equal up to float rounding.
        #expect(Set(first.keys) == Set(again.keys))
        for (key, value) in first {
            if let a = value as? Double, let b = again[key] as? Double {
                #expect(abs(a - b) <= 1e-6 * max(1, abs(a)), "\(key): \(a) vs \(b)")
            } else if !(value is [String: Any]) {
                #expect("\(value)" == "\(again[key]!)", "\(key)")
            }
        }
    }

    @Test("an item longer than the model's context is cut from the left, counted in the JSON, marked in --samples and warned about")
    func truncatedItems() throws {
        let directory = TestScratch.url("eval-truncated")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let long = String(repeating: "open the jar ", count: 400)
        let data = directory.appendingPathComponent("valid.jsonl").path
        let labels = directory.appendingPathComponent("valid-labels.lst").path
        let samples = directory.appendingPathComponent("samples.jsonl").path
        try [#"{"goal": "Dry hands", "sol1": "Use a towel.", "sol2": "Use a rock."}"#,
             #"{"goal": "\#(long)", "sol1": "Twist the lid.", "sol2": "Eat the jar."}"#].joined(separator: "\n")
            .write(toFile: data, atomically: true, encoding: .utf8)
        try "0\n0\n".write(toFile: labels, atomically: true, encoding: .utf8)
        let run = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", data, "--labels", labels,
                          "--samples", samples, "--json", "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        #expect(try run.json()["truncated_items"] as? Int == 1)
        #expect(run.err.contains("warning: 1 of 2 items were longer than the model's context of"), "\(run.err)")
        let lines = try String(contentsOfFile: samples, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(lines.map { $0["truncated"] as? Bool } == [nil, true])
    }

    @Test("--samples writes one JSON line per item with its requests and log-likelihoods, per article for WikiText")
    func samples() throws {
        let files = try Self.piqaFiles()
        let directory = TestScratch.url("eval-samples")
        let path = directory.appendingPathComponent("piqa.jsonl").path
        func lines(_ path: String) throws -> [[String: Any]] {
            try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
                try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            }
        }
        let report = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", files.data,
                                 "--labels", files.labels, "--offset", "1", "--limit", "3", "--method", "random",
                                 "--sparsity", "0.5", "--samples", path, "--json", "--no-progress"]).json()
        let items = try lines(path)
        #expect(items.map { $0["doc_id"] as? Int } == [1, 2, 3])
        #expect(items.map { $0["gold"] as? Int } == [0, 1, 0])
        #expect(items[0]["contexts"] as? [String] == ["Question: Dry hands\nAnswer:", "Question: Dry hands\nAnswer:"])
        #expect(items[0]["continuations"] as? [String] == [" Use a towel.", " Use a rock."])
        #expect(items[0]["characters"] as? [Int] == [12, 11])
        for item in items {
            let sparse = try #require(item["loglikelihoods"] as? [Double])
            let dense = try #require(item["dense_loglikelihoods"] as? [Double])
            #expect(sparse.count == 2 && dense.count == 2 && sparse != dense)
            #expect(item["acc"] as? Bool == ((sparse[0] >= sparse[1] ? 0 : 1) == item["gold"] as? Int))
        }
        let accuracy = Double(items.filter { $0["acc"] as? Bool == true }.count) / 3
        #expect(abs(accuracy - (report["acc"] as? Double ?? -1)) < 1e-12)

        let wiki = directory.appendingPathComponent("wiki.txt").path
        try " = One = \n\n The cat sat . \n = Two = \n\n It rained . \n".write(toFile: wiki, atomically: true, encoding: .utf8)
        let pagesPath = directory.appendingPathComponent("wiki.jsonl").path
        let text = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", wiki,
                               "--samples", pagesPath, "--json", "--no-progress"]).json()
        let pages = try lines(pagesPath)
        #expect(pages.map { $0["doc_id"] as? Int } == [0, 1])
        #expect(pages.map { $0["words"] as? Int } == [9, 8])
        #expect(pages.map { $0["bytes"] as? Int } == [" = One = \n\n The cat sat . ".utf8.count, " = Two = \n\n It rained . \n".utf8.count])
        let nll = pages.reduce(0.0) { $0 - ($1["loglikelihood"] as? Double ?? .nan) }
        #expect(abs(nll - (text["nll_sum"] as? Double ?? 0)) < 1e-9 * max(1, nll))
        #expect(pages.reduce(0) { $0 + ($1["tokens"] as? Int ?? 0) } == text["predicted_tokens"] as? Int)
        // Its Markdown report counts tokens as an integer and names neither a mask mode nor shots, which WikiText does not read.
        let markdown = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", wiki,
                               "--method", "random", "--sparsity", "0.5", "--no-progress"]).out
        #expect(markdown.contains("| wikitext | 2 | predicted_tokens | \(text["predicted_tokens"] as? Int ?? -1) |"), "\(markdown)")
        #expect(!markdown.contains("masks") && !markdown.contains("-shot") && markdown.contains("offset 0;"), "\(markdown)")
    }

    @Test("--samples over the task file it reads is refused and leaves the file alone")
    func samplesOverData() throws {
        let data = TestScratch.path("piqa-copy", suffix: ".jsonl")
        let line = #"{"goal": "Keep a door open", "sol1": "Use a wedge.", "sol2": "Use a cloud.", "label": 0}"#
        try (line + "\n" + line + "\n").write(toFile: data, atomically: true, encoding: .utf8)
        let before = try Data(contentsOf: URL(fileURLWithPath: data))
        let run = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", data, "--limit", "1",
                          "--samples", data, "--no-progress"])
        #expect(run.status == 1 && run.err == "error: --samples: \(data) would overwrite --data \(data)\n", "\(run.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: data)) == before)
        // Nor any file loading reads in a model directory: its weights, configs or tokenizer.
        let model = TestScratch.path("samples-model")
        try? FileManager.default.removeItem(atPath: model)
        try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: model)
        for name in try FileManager.default.contentsOfDirectory(atPath: model).sorted() {
            let file = model + "/" + name
            let original = try Data(contentsOf: URL(fileURLWithPath: file))
            let over = CLIRun(["eval", "--model", model, "--task", "piqa", "--data", data, "--limit", "1", "--samples", file, "--no-progress"])
            #expect(over.status == 1 && over.err == "error: --samples: \(file) would overwrite --model \(file)\n", "\(over.err)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == original, "\(name)")
        }
        // A samples file of one's own kept there is no model file: written, then replaced.
        let own = model + "/samples.jsonl"
        for _ in 0..<2 {
            let run = CLIRun(["eval", "--model", model, "--task", "piqa", "--data", data, "--limit", "1", "--samples", own, "--no-progress"])
            #expect(run.status == 0 && FileManager.default.fileExists(atPath: own), "\(run.err)")
        }
    }

    @Test("oracle masks come from each question's own criterion; a heads-only criterion is refused")
    func oracle() throws {
        let files = try Self.piqaFiles()
        let base = ["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", files.data, "--labels", files.labels,
                    "--method", "oracle", "--sparsity", "0.5", "--json", "--no-progress"]
        let run = CLIRun(base + ["--oracle-criterion", "fisher"])
        #expect(run.status == 0, "\(run.err)")
        let json = try run.json()
        #expect((json["kl_divergence"] as? Double ?? 0) > 0 && (json["realised_head_sparsity"] as? Double ?? 0) > 0)
        let bad = CLIRun(base + ["--oracle-criterion", "jacov"])
        #expect(bad.status != 0 && bad.err.contains("jacov") && bad.err.split(separator: "\n").count == 1, "\(bad.err)")
        #expect(!run.err.contains("ran dense"), "\(run.err)")

        // Answers that fill tiny-llama's context of 128 leave one context token (each choice's
        // request is cut on its own, so each has its mask): those masks are dense, and said so.
        let long = String(repeating: " and the river ran on", count: 40)
        let data = TestScratch.url("piqa-long", suffix: ".jsonl").path
        try #"{"goal": "Describe a river", "sol1": "It ran\#(long).", "sol2": "It ran\#(long) again."}"#
            .write(toFile: data, atomically: true, encoding: .utf8)
        let labels = TestScratch.url("piqa-long-labels", suffix: ".lst").path
        try "0\n".write(toFile: labels, atomically: true, encoding: .utf8)
        let cut = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", data, "--labels", labels,
                          "--method", "oracle", "--sparsity", "0.5", "--json", "--no-progress"])
        #expect(cut.status == 0, "\(cut.err)")
        #expect(cut.err.contains("warning: 2 of 2 oracle masks ran dense") && cut.err.contains("were longer than the model's context"), "\(cut.err)")
        #expect(try cut.json()["realised_head_sparsity"] as? Double == 0)
    }

    @Test("--weights bf16-dot scores within bf16 rounding of f32, and an unknown --weights names the choices")
    func bf16Products() throws {
        let files = try Self.piqaFiles()
        let directory = TestScratch.url("eval-bf16")
        func logLikelihoods(_ weights: String) throws -> [Double] {
            let path = directory.appendingPathComponent("\(weights).jsonl").path
            let run = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", files.data,
                              "--labels", files.labels, "--weights", weights, "--samples", path, "--no-progress"])
            #expect(run.status == 0, "\(run.err)")
            return try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").flatMap {
                let item = try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
                return try #require(item["loglikelihoods"] as? [Double])
            }
        }
        let f32 = try logLikelihoods("f32"), bf16 = try logLikelihoods("bf16-dot")
        #expect(f32.count == 8 && bf16.count == 8)
        for (a, b) in zip(f32, bf16) { #expect(abs(a - b) <= 0.02 * abs(a) + 0.02, "\(a) vs \(b)") }
        #expect(f32 != bf16)   // really rounded
        let bad = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", files.data,
                          "--weights", "bf8", "--no-progress"])
        #expect(bad.status != 0 && bad.err.contains("--weights") && bad.err.contains("bf16-dot"), "\(bad.err)")
    }

    @Test("a dense run reports KL 0 and agreement 1; Markdown by default")
    func dense() throws {
        let files = try Self.piqaFiles()
        let run = CLIRun(["eval", "--model", fixture("tiny-opt"), "--task", "piqa", "--data", files.data,
                          "--labels", files.labels, "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        #expect(run.out.contains("| piqa | 4 | acc |"))
        #expect(run.out.contains("offset 0, 0-shot;"), "\(run.out)")
        // Accuracies keep four decimals, whole or not (1.0000 beside 0.5000); token counts are integers.
        var report = EvalCommand.Report(task: "piqa", model: "m", n: 2, metrics: ["acc": 1, "acc_stderr": 0, "acc_norm": 0.5, "predicted_tokens": 12],
                                        method: "random", maskMode: "causal", headSparsity: 0.5, neuronSparsity: 0.5, dense: ["acc": 0, "predicted_tokens": 12],
                                        offset: 0, limit: nil, shots: 0, seed: 1, seconds: 0)
        let table = EvalCommand.markdown(report)
        #expect(table.contains("| piqa | 2 | acc | 1.0000 | 0.0000 | 0.0000 |") && table.contains("| piqa | 2 | acc_norm | 0.5000 | — | — |")
                && table.contains("| piqa | 2 | predicted_tokens | 12 | — | 12 |"), "\(table)")
        // The dense model alone has nothing to stand beside: no dense column, no KL against itself.
        report.method = "dense"
        report.klDivergence = 0
        report.top1Agreement = 1
        let dense = EvalCommand.markdown(report)
        #expect(dense.contains("| task | n | metric | value | stderr |\n") && dense.contains("| piqa | 2 | acc | 1.0000 | 0.0000 |\n")
                && !dense.contains("KL"), "\(dense)")
        let json = try CLIRun(["eval", "--model", fixture("tiny-opt"), "--task", "piqa", "--data", files.data,
                               "--labels", files.labels, "--json", "--no-progress"]).json()
        #expect(json["kl_divergence"] as? Double == 0 && json["top1_agreement"] as? Double == 1)
        #expect(json["acc"] as? Double == (json["dense"] as? [String: Any])?["acc"] as? Double)
        // One item has no standard error: null in JSON (not the string "nan"), a dash in the table.
        let one = CLIRun(["eval", "--model", fixture("tiny-opt"), "--task", "piqa", "--data", files.data,
                          "--labels", files.labels, "--limit", "1", "--json", "--no-progress"])
        #expect(one.status == 0 && one.out.contains("\"acc_stderr\" : null") && !one.out.contains("nan"), "\(one.out)")
        #expect(try one.json()["acc_stderr"] is NSNull)
        let oneTable = CLIRun(["eval", "--model", fixture("tiny-opt"), "--task", "piqa", "--data", files.data,
                               "--labels", files.labels, "--limit", "1", "--no-progress"])
        #expect(oneTable.out.contains("| piqa | 1 | acc |") && !oneTable.out.contains("nan"), "\(oneTable.out)")
    }

    @Test("LAMBADA and WikiText report their own metrics; HellaSwag and WikiText read --as-stored")
    func otherTasks() throws {
        let directory = TestScratch.url("eval")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let lambada = directory.appendingPathComponent("lambada.jsonl").path
        try "{\"text\": \"the cat sat on the mat\"}\n{\"text\": \"one two three four\"}\n".write(toFile: lambada, atomically: true, encoding: .utf8)
        let wiki = directory.appendingPathComponent("wiki.txt").path
        try " = Title = \n\n The cat sat on the mat . \n = Another = \n\n It rained . \n".write(toFile: wiki, atomically: true, encoding: .utf8)

        let l = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "lambada", "--data", lambada, "--json",
                            "--method", "random", "--sparsity", "0.5", "--mask-mode", "per-choice", "--no-progress"]).json()
        #expect(l["acc"] != nil && l["perplexity"] != nil && l["n"] as? Int == 2)
        #expect((l["dense"] as? [String: Any])?["token_perplexity"] as? Double != nil, "\(l)")   // the dense pass reports it too
        // LAMBADA takes few-shot examples (passage + " " + word, as documented); WikiText has no questions to put them before.
        let shots = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "lambada", "--data", lambada, "--shots", "1",
                            "--seed", "3", "--json", "--no-progress"])
        #expect(shots.status == 0, "\(shots.err)")
        #expect(try shots.json()["shots"] as? Int == 1)
        let w = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", wiki, "--json",
                            "--context", "8", "--no-progress"]).json()
        for key in ["word_perplexity", "byte_perplexity", "bits_per_byte", "nll_sum", "predicted_tokens"] {
            #expect(w[key] as? Double != nil, "missing \(key)")
        }
        #expect(w["detokenized"] as? Bool == true && w["n"] as? Int == 2)   // lm-eval's detokenized text; two articles
        #expect(w["context"] as? Int == 8 && w["stride"] as? Int == 8)
        #expect(w["shots"] == nil && w["seed"] == nil && w["mask_mode"] == nil)   // settings WikiText refuses
        // Without --context the windows are the model's whole context, as lm-eval's.
        let whole = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", wiki, "--json",
                                "--no-progress"]).json()
        #expect(whole["context"] as? Int == 128 && whole["stride"] as? Int == 128)
        let d = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", wiki, "--json",
                            "--context", "8", "--detokenize", "--no-progress"]).json()
        #expect(d["detokenized"] as? Bool == true && d["nll_sum"] as? Double == w["nll_sum"] as? Double)
        let stored = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", wiki, "--json",
                                 "--context", "8", "--as-stored", "--no-progress"]).json()
        #expect(stored["detokenized"] as? Bool == false && stored["nll_sum"] as? Double != w["nll_sum"] as? Double)
        for flags in [["--detokenize"], ["--as-stored"]] {
            let wrongTask = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "lambada", "--data", lambada, "--no-progress"] + flags)
            #expect(wrongTask.status != 0 && wrongTask.err.contains(flags[0]))
        }
        // --limit and --offset pick articles (lm-eval's documents): the second alone scores as a file of it alone
        // (a --limit beyond the file, the largest there is, too: offset + limit must not overflow).
        let second = directory.appendingPathComponent("second.txt").path
        try " = Another = \n\n It rained . \n".write(toFile: second, atomically: true, encoding: .utf8)
        let secondSamples = directory.appendingPathComponent("second-samples.jsonl").path
        let sliced = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", wiki, "--json",
                                 "--context", "8", "--offset", "1", "--limit", String(Int.max), "--samples", secondSamples, "--no-progress"]).json()
        let alone = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", second, "--json",
                                "--context", "8", "--no-progress"]).json()
        #expect(sliced["n"] as? Int == 1 && sliced["offset"] as? Int == 1)
        for key in ["nll_sum", "predicted_tokens", "word_perplexity", "byte_perplexity"] {
            #expect(sliced[key] as? Double == alone[key] as? Double, "\(key)")
        }
        let sample = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: secondSamples))) as? [String: Any]
        #expect(sample?["doc_id"] as? Int == 1)
        let first = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", wiki, "--json",
                                "--context", "8", "--limit", "1", "--no-progress"]).json()
        #expect(first["n"] as? Int == 1)
        #expect(abs((first["nll_sum"] as? Double ?? 0) + (alone["nll_sum"] as? Double ?? 0) - (w["nll_sum"] as? Double ?? 0)) < 1e-9)
        let beyond = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", wiki, "--offset", "2", "--no-progress"])
        #expect(beyond.status != 0 && beyond.err == "error: --offset: 2 is beyond the file's 2 articles\n", "\(beyond.err)")
        let both = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "wikitext", "--data", wiki,
                           "--detokenize", "--as-stored", "--no-progress"])
        #expect(both.status != 0 && both.err.contains("--as-stored"))
        // HellaSwag: ctx_b capitalised as lm-eval's query by default; --as-stored reads llama.cpp's line as written.
        let hellaswag = directory.appendingPathComponent("hellaswag.txt").path
        let hellaswagSamples = directory.appendingPathComponent("hellaswag-samples.jsonl").path
        try "Roofing: A man is on a roof. he\n0\nfalls.\nwaves.\nsits.\nstands.\n".write(toFile: hellaswag, atomically: true, encoding: .utf8)
        func hellaswagRun(_ flags: [String]) throws -> [String: Any] {
            try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "hellaswag", "--data", hellaswag, "--json",
                        "--samples", hellaswagSamples, "--no-progress"] + flags).json()
        }
        let capitalised = try hellaswagRun([])
        #expect(capitalised["ctx_b_capitalized"] as? Bool == true)
        #expect(try String(contentsOfFile: hellaswagSamples, encoding: .utf8).contains("on a roof. He\""))
        let asWritten = try hellaswagRun(["--as-stored"])
        #expect(asWritten["ctx_b_capitalized"] as? Bool == false)
        #expect(try String(contentsOfFile: hellaswagSamples, encoding: .utf8).contains("on a roof. he\""))
        #expect(w["ctx_b_capitalized"] == nil)
        // lm-eval's task name for LAMBADA reads the same file.
        let openai = try CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "lambada_openai", "--data", lambada, "--json",
                                 "--no-progress"]).json()
        #expect(openai["task"] as? String == "lambada" && openai["n"] as? Int == 2)
    }

    @Test("a model whose weights overflow single precision gives an error naming what is not finite, never a NaN result or a clean stop")
    func overflowingModel() throws {
        // Every up projection's weights 3e38: finite, so the load takes them, but gate × up
        // overflows to ±∞ and the down projection sums them to NaN. (All weights that large
        // would not do: the first norm's squares overflow, its scale becomes 0 and the logits a
        // finite, uniform 0.)
        let model = scratchPath("overflowing-llama")
        defer { try? FileManager.default.removeItem(atPath: model) }
        try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: model)
        for shard in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
            let url = URL(fileURLWithPath: model + "/" + shard)
            var data = try Data(contentsOf: url)
            let headerLength = Int(UInt64(littleEndian: data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
            let header = try #require(try JSONSerialization.jsonObject(with: data[8 ..< 8 + headerLength]) as? [String: Any])
            for case let (name, entry as [String: Any]) in header where name.hasSuffix("mlp.up_proj.weight") {
                let range = try #require(entry["data_offsets"] as? [Int])
                withUnsafeBytes(of: Float(3e38).bitPattern.littleEndian) { huge in
                    for offset in stride(from: 8 + headerLength + range[0], to: 8 + headerLength + range[1], by: 4) {
                        data.replaceSubrange(offset..<offset + 4, with: huge)
                    }
                }
            }
            try data.write(to: url)
        }
        let files = try Self.piqaFiles()
        let wikitext = scratchPath("overflowing-wikitext") + ".txt"
        defer { try? FileManager.default.removeItem(atPath: wikitext) }
        try " = Mills = \n \n The river ran past the old mill . \n".write(toFile: wikitext, atomically: true, encoding: .utf8)
        let suffix = " not finite (NaN or infinity): the model's weights or settings overflow single precision\n"
        let runs: [([String], String)] = [
            (["perplexity", "--text", "the cat sat on the mat", "--json", "--no-progress"], "error: the log-probabilities of window 1 of 1 (tokens 1–"),
            (["generate", "--prompt", "the cat", "--max-tokens", "4", "--json"], "error: the logits after token "),
            (["scores", "--context", "the cat", "--continuation", " sat", "--criterion", "plainact", "--json"], "error: the loss is"),
            (["eval", "--task", "piqa", "--data", files.data, "--labels", files.labels, "--offset", "1", "--limit", "2", "--json", "--no-progress"],
             "error: item 1, request 0's log-likelihood is"),
            (["eval", "--task", "wikitext", "--data", wikitext, "--json", "--no-progress"], "error: article 0 of 1: the log-probabilities of window 1 of 1"),
        ]
        for (arguments, start) in runs {
            let run = CLIRun([arguments[0], "--model", model] + arguments.dropFirst())
            // (f16 keeps such weights as bf16, with a warning before the error.)
            let error = run.err.split(separator: "\n").filter { !$0.hasPrefix("warning: ") }.joined(separator: "\n") + "\n"
            #expect(run.status == 1 && error.hasPrefix(start) && error.hasSuffix(suffix) && run.out.isEmpty, "\(arguments[0]): \(run.err)")
        }
        // Streamed text: the echoed prompt ends its line before the error.
        let streamed = CLIRun(["generate", "--model", model, "--prompt", "the cat", "--max-tokens", "4"])
        #expect(streamed.status == 1 && streamed.out == "the cat\n", "\(streamed.out)")
    }

    @Test("an unknown task, a missing data file and an offset beyond the file fail with one line")
    func errors() throws {
        let files = try Self.piqaFiles()
        let model = fixture("tiny-llama")
        for arguments in [["--task", "squad", "--data", files.data],
                          ["--task", "piqa", "--data", "/nonexistent/piqa.jsonl"],
                          ["--task", "piqa", "--data", files.data, "--labels", files.labels, "--offset", "4"]] {
            let run = CLIRun(["eval", "--model", model] + arguments)
            #expect(run.status != 0, "\(arguments)")
            #expect(run.err.hasPrefix("error: ") && run.err.split(separator: "\n").count == 1, "\(arguments): \(run.err)")
        }
    }

    @Test("an option the task, method or policy does not read is refused, naming it")
    func unreadOptions() throws {
        let files = try Self.piqaFiles()
        let model = fixture("tiny-llama")
        let piqa = ["--task", "piqa", "--data", files.data, "--labels", files.labels]
        let wiki = TestScratch.url("eval-unread.txt").path
        try " = A = \n text .\n".write(toFile: wiki, atomically: true, encoding: .utf8)
        for (arguments, option) in [(piqa + ["--context", "8"], "--context"), (piqa + ["--stride", "4"], "--stride"),
                                    (["--task", "wikitext", "--data", wiki, "--labels", files.labels], "--labels"),
                                    (["--task", "wikitext", "--data", wiki, "--shots", "2"], "--shots"),
                                    (["--task", "wikitext", "--data", wiki, "--seed", "7"], "--seed"),
                                    (piqa + ["--method", "random", "--sparsity", "0.5", "--predictor", "p.safetensors"], "--predictor"),
                                    (piqa + ["--method", "random", "--sparsity", "0.5", "--scores", "s.json"], "--scores"),
                                    (piqa + ["--method", "random", "--sparsity", "0.5", "--hybrid-floor", "0.2"], "--hybrid-floor"),
                                    (piqa + ["--method", "random", "--sparsity", "0.5", "--oracle-criterion", "fisher"], "--oracle-criterion")] {
            let run = CLIRun(["eval", "--model", model, "--no-progress"] + arguments)
            #expect(run.status != 0 && run.err.hasPrefix("error: --\(option.dropFirst(2))") && run.err.split(separator: "\n").count == 1,
                    "\(arguments): \(run.err)")
        }
        // WikiText's window options are checked before the model is read (this model does not exist).
        for option in ["--context", "--stride"] {
            let run = CLIRun(["eval", "--model", TestScratch.url("no-such-model").path, "--task", "wikitext", "--data", wiki, option, "0"])
            #expect(run.status != 0 && run.err.hasPrefix("error: \(option)") && run.err.split(separator: "\n").count == 1, "\(run.err)")
        }
        // Read by the policy that names it.
        let hybrid = CLIRun(["eval", "--model", model, "--no-progress", "--json"] + piqa
                            + ["--method", "random", "--sparsity", "0.5", "--policy", "hybrid", "--hybrid-floor", "0.2"])
        #expect(hybrid.status == 0, "\(hybrid.err)")
    }

    @Test("few-shot over the whole file draws from the other items, and more shots than the file holds is an error")
    func fewShotWholeFile() throws {
        let files = try Self.piqaFiles()
        let samples = TestScratch.url("eval-shots.jsonl").path
        let run = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", files.data, "--labels", files.labels,
                          "--shots", "2", "--samples", samples, "--no-progress", "--json"])
        #expect(run.status == 0, "\(run.err)")
        let lines = try String(contentsOfFile: samples, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4)
        for line in lines {
            let sample = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let context = try #require((sample["contexts"] as? [String])?.first)
            // Two shots, then the question; never the question among its own shots.
            #expect(context.components(separatedBy: "\n\n").count == 3, "\(context)")
            let question = try #require(context.components(separatedBy: "\n\n").last)
            #expect(!context.components(separatedBy: "\n\n").dropLast().contains { $0.hasPrefix(question) }, "\(context)")
        }
        let tooMany = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", files.data, "--labels", files.labels,
                              "--shots", "4", "--no-progress"])
        #expect(tooMany.status != 0 && tooMany.err.hasPrefix("error: --shots: 4 examples need 5 items; the file has 4"), "\(tooMany.err)")
    }

    @Test("runs on the shared PIQA data when it is present", .enabled(if: FileManager.default.fileExists(atPath: "/work/shared/data/piqa/valid.jsonl")))
    func sharedData() throws {
        let run = CLIRun(["eval", "--model", fixture("tiny-llama"), "--task", "piqa",
                          "--data", "/work/shared/data/piqa/valid.jsonl", "--labels", "/work/shared/data/piqa/valid-labels.lst",
                          "--limit", "3", "--json", "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        #expect(try run.json()["n"] as? Int == 3)
    }
}
