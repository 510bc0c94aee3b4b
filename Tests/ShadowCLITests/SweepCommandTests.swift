import Foundation
import Testing
@testable import ShadowCLI
import ShadowEval

@Suite("sweep command", .serialized)
struct SweepCommandTests {
    /// Traces (plainact, l2_norm) of the tiny Llama and a shadow and a DejaVu-style predictor
    /// trained on them, made once for the suite.
    static let inputs: (traces: String, predictors: String) = {
        let root = scratchPath("sweep-inputs")
        let traces = root + "/traces", predictors = root + "/predictors"
        try! FileManager.default.createDirectory(atPath: predictors, withIntermediateDirectories: true)
        let calibrate = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(CalibrateTests.corpus)",
                                "--samples", "12", "--text-window", "16", "--text-continuation", "4",
                                "--criteria", "plainact,l2_norm", "--out", traces, "--no-progress"])
        precondition(calibrate.status == 0, calibrate.err)
        let small = ["--head-width", "16", "--neuron-width", "16", "--head-epochs", "3", "--neuron-epochs", "3", "--no-progress"]
        for (kind, criterion) in [("shadow", "plainact"), ("dejavu", "l2_norm")] {
            let train = CLIRun(["train-predictor", "--traces", traces, "--kind", kind, "--criterion", criterion,
                                "--out", "\(predictors)/\(kind).safetensors"] + small)
            precondition(train.status == 0, train.err)
        }
        return (traces, predictors)
    }()

    static let piqa = try! EvalCommandTests.piqaFiles()

    static let text: String = {
        let path = scratchPath("sweep-text") + ".txt"
        try! "The river ran past the old mill.\nChildren played in the square.\nA cold wind came down from the hills.\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    /// The suite's sweep; an option in `extra` replaces its value here (an option is given once).
    func sweep(out: String, _ extra: [String] = []) throws -> CLIRun {
        let piqa = Self.piqa
        let base: [(option: String, value: String?)] = [
            ("--model", fixture("tiny-llama")), ("--out", out), ("--tasks", "piqa,wikitext"),
            ("--data", "piqa=\(piqa.data),wikitext=\(Self.text)"), ("--labels", "piqa=\(piqa.labels)"),
            ("--methods", "random,static,shadow,dejavu"), ("--criteria", "plainact,l2_norm"), ("--sparsities", "0.25,0.5"),
            ("--traces", Self.inputs.traces), ("--predictor", Self.inputs.predictors), ("--context", "32"),
            ("--json", nil), ("--no-progress", nil)]
        let replaced = Set(extra.filter { $0.hasPrefix("--") })
        let kept = base.filter { !replaced.contains($0.option) }.flatMap { [$0.option] + ($0.value.map { [$0] } ?? []) }
        return CLIRun(["sweep"] + kept + extra)
    }

    /// Rows keyed by task and cell, without their timings.
    func rows(_ json: [String: Any]) -> [String: [String: Any]] {
        var result: [String: [String: Any]] = [:]
        for row in json["rows"] as? [[String: Any]] ?? [] {
            var row = row
            row["seconds"] = nil
            let key = "\(row["task"]!) \(row["method"]!) \(row["criterion"] ?? "-") \(row["sparsity"]!)"
            result[key] = row
        }
        return result
    }

    @Test("a cell whose sparsity prunes no unit, or every one, is warned of as every command warns: 'warning: ' first, then the cell")
    func cellWarnings() throws {
        let out = scratchPath("sweep-cell-warnings")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let run = CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", out, "--tasks", "wikitext", "--data", "wikitext=\(Self.text)",
                          "--methods", "random", "--sparsities", "0.01,0.99", "--context", "16", "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        let lines = run.err.split(separator: "\n").filter { $0.contains("sparsity") }
        #expect(lines.contains { $0.hasPrefix("warning: random: head sparsity 0.01 prunes no head") }, "\(run.err)")
        #expect(lines.contains { $0.hasPrefix("warning: random: head sparsity 0.99 prunes every head of layer 1") }, "\(run.err)")
        #expect(lines.allSatisfy { $0.hasPrefix("warning: ") }, "\(run.err)")
    }

    @Test("a --text-bytes cut that leaves only white space (WikiText starts with a blank line) is refused before any work")
    func blankTextSubset() throws {
        let path = scratchPath("sweep-blank-start") + ".txt", out = scratchPath("sweep-blank-start-out")
        defer { try? FileManager.default.removeItem(atPath: path); try? FileManager.default.removeItem(atPath: out) }
        try " \n = Title = \n \n The river ran past the old mill . \n".write(toFile: path, atomically: true, encoding: .utf8)
        let arguments = ["sweep", "--model", fixture("tiny-llama"), "--out", out, "--tasks", "wikitext", "--data", "wikitext=\(path)",
                         "--methods", "random", "--sparsities", "0.5", "--context", "16", "--no-progress"]
        let blank = CLIRun(arguments + ["--text-bytes", "3"])
        #expect(blank.status == 1 && blank.err == "error: --text-bytes: the first 3 bytes of \(path), cut at a line end, hold only white space; give more, or 0 for the whole text\n",
                "\(blank.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(CLIRun(arguments + ["--text-bytes", "16"]).status == 0)
    }

    @Test("sweep scores WikiText detokenized as eval does by default; --as-stored reads the file as stored, in a state of its own")
    func detokenizedWikiText() throws {
        let path = scratchPath("sweep-wikitext") + ".txt"
        let out = scratchPath("sweep-detokenized")
        defer { try? FileManager.default.removeItem(atPath: path); try? FileManager.default.removeItem(atPath: out) }
        try " = Valley = \n\n The valley 's 3 @,@ 000 @-@ year history , as told , ends here . \n It rains ( often ) .\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let model = fixture("tiny-llama")
        func sweep(_ extra: [String]) -> CLIRun {
            CLIRun(["sweep", "--model", model, "--out", out, "--tasks", "wikitext", "--data", "wikitext=\(path)",
                    "--methods", "random", "--sparsities", "0.5", "--context", "16", "--json", "--no-progress"] + extra)
        }
        func dense(_ run: CLIRun) throws -> [String: Double] {
            let rows = try run.json()["rows"] as? [[String: Any]] ?? []
            return try #require(rows.first { $0["method"] as? String == "dense" }?["metrics"] as? [String: Double])
        }
        func evaluated(_ extra: [String]) throws -> Double? {
            let eval = CLIRun(["eval", "--model", model, "--task", "wikitext", "--data", path, "--context", "16", "--json"] + extra)
            #expect(eval.status == 0, "\(eval.err)")
            return try eval.json()["word_perplexity"] as? Double
        }
        let detokenized = sweep([])
        #expect(detokenized.status == 0, "\(detokenized.err)")
        #expect(try dense(detokenized)["word_perplexity"] == evaluated([]))
        // --detokenize, the default, continues the same state.
        let again = sweep(["--detokenize"])
        #expect(again.status == 0, "\(again.err)")
        // The same --out as stored: other numbers, so the saved state is refused.
        let mixed = sweep(["--as-stored"])
        #expect(mixed.status != 0 && mixed.err.contains("read wikitext detokenized, this command as stored; leave out --as-stored"), "\(mixed.err)")
        try FileManager.default.removeItem(atPath: out)
        let stored = sweep(["--as-stored"])
        #expect(stored.status == 0, "\(stored.err)")
        // An as-stored state (as every sweep's before 2026-12-04) says how to continue it.
        let hinted = sweep([])
        #expect(hinted.status != 0 && hinted.err.contains("read wikitext as stored, this command detokenized; add --as-stored to continue it"), "\(hinted.err)")
        let storedPerplexity = try dense(stored)["word_perplexity"]
        let evaluatedAsStored = try evaluated(["--as-stored"]), detokenizedPerplexity = try dense(detokenized)["word_perplexity"]
        #expect(storedPerplexity != nil && storedPerplexity == evaluatedAsStored)
        #expect(storedPerplexity != detokenizedPerplexity)
        let contradiction = sweep(["--as-stored", "--detokenize"])
        #expect(contradiction.status != 0 && contradiction.err.contains("contradicts --detokenize"), "\(contradiction.err)")
        let unread = CLIRun(["sweep", "--model", model, "--out", out + "-piqa", "--tasks", "piqa", "--data", "piqa=\(Self.piqa.data)",
                             "--labels", "piqa=\(Self.piqa.labels)", "--methods", "random", "--sparsities", "0.5", "--detokenize"])
        #expect(unread.status != 0 && unread.err.contains("--detokenize"), "\(unread.err)")
    }

    @Test("sweep capitalises HellaSwag's ctx_b as eval does; --as-stored reads it as written, in a state of its own")
    func hellaswagCapitalisation() throws {
        let path = scratchPath("sweep-hellaswag") + ".txt"
        let out = scratchPath("sweep-hellaswag")
        defer { try? FileManager.default.removeItem(atPath: path); try? FileManager.default.removeItem(atPath: out) }
        try "Roofing: A man is on a roof. he\n0\nfalls.\nwaves.\nsits.\nstands.\nCooking: A cook stirs. the cook\n1\nsings.\ntastes it.\nleaves.\nsits.\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let model = fixture("tiny-llama")
        func sweep(_ extra: [String]) -> CLIRun {
            CLIRun(["sweep", "--model", model, "--out", out, "--tasks", "hellaswag", "--data", "hellaswag=\(path)",
                    "--methods", "random", "--sparsities", "0.5", "--json", "--no-progress"] + extra)
        }
        // The sparse row's KL from the dense model is read at each context's last token, so it
        // tells which context the model read.
        func randomKL(_ run: CLIRun) throws -> Double? {
            let rows = try run.json()["rows"] as? [[String: Any]] ?? []
            return rows.first { $0["method"] as? String == "random" }?["kl_divergence"] as? Double
        }
        func evaluatedKL(_ extra: [String]) throws -> Double? {
            let run = CLIRun(["eval", "--model", model, "--task", "hellaswag", "--data", path, "--method", "random",
                              "--sparsity", "0.5", "--json", "--no-progress"] + extra)
            #expect(run.status == 0, "\(run.err)")
            return try run.json()["kl_divergence"] as? Double
        }
        let capitalised = sweep([])
        #expect(capitalised.status == 0, "\(capitalised.err)")
        let kl = try #require(try randomKL(capitalised))
        #expect(try kl == evaluatedKL([]))
        #expect(try kl != evaluatedKL(["--as-stored"]))
        // The same --out read as written: other contexts, so the saved state is refused.
        let mixed = sweep(["--as-stored"])
        #expect(mixed.status != 0 && mixed.err.contains("read hellaswag ctx_b capitalised, this command ctx_b as written"), "\(mixed.err)")
        try FileManager.default.removeItem(atPath: out)
        let stored = sweep(["--as-stored"])
        #expect(stored.status == 0, "\(stored.err)")
        #expect(try randomKL(stored) == evaluatedKL(["--as-stored"]))
        let unread = CLIRun(["sweep", "--model", model, "--out", out + "-piqa", "--tasks", "piqa", "--data", "piqa=\(Self.piqa.data)",
                             "--labels", "piqa=\(Self.piqa.labels)", "--methods", "random", "--sparsities", "0.5", "--as-stored"])
        #expect(unread.status != 0 && unread.err.contains("--as-stored"), "\(unread.err)")
    }

    @Test("every task × cell gets a row, predictors missing for a criterion are listed, reports and plots are written")
    func fullSweep() throws {
        let out = scratchPath("sweep")
        let run = try sweep(out: out)
        #expect(run.status == 0, "\(run.err)")
        let json = try run.json()
        // dense + random × 2 + static × 2 criteria × 2 + shadow (plainact) × 2 + dejavu (l2_norm) × 2.
        let rows = self.rows(json)
        #expect(rows.count == 2 * 11, "\(rows.keys.sorted())")
        let skipped = json["skipped"] as? [String] ?? []
        #expect(skipped.count == 2 && skipped.contains { $0.hasPrefix("shadow (l2_norm)") } && skipped.contains { $0.hasPrefix("dejavu (plainact)") })
        let dense = try #require(rows["piqa dense - 0"])
        #expect(dense["kl_divergence"] as? Double == 0 && dense["n"] as? Int == 4)
        // Perplexity rows compare no next-token distributions, dense or sparse (as `eval`).
        let denseText = try #require(rows["wikitext dense - 0"])
        #expect(denseText["kl_divergence"] == nil && denseText["top1_agreement"] == nil, "\(denseText)")
        let shadow = try #require(rows["piqa shadow plainact 0.5"])
        let metrics = try #require(shadow["metrics"] as? [String: Double])
        #expect(metrics["acc"] != nil && metrics["acc_norm_stderr"] != nil)
        #expect((shadow["kl_divergence"] as? Double ?? 0) > 0 && (shadow["realised_head_sparsity"] as? Double ?? 0) > 0)
        let text = try #require(rows["wikitext static l2_norm 0.25"]?["metrics"] as? [String: Double])
        #expect(text["word_perplexity"] != nil && text["bits_per_byte"] != nil)
        #expect((json["head_importance"] as? [String: Any])?.keys.sorted() == ["l2_norm", "plainact"])

        let report = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
        #expect(report.contains("| shadow | plainact | 0.50 |") && report.contains("## Criteria"))
        for name in ["sweep.svg", "heads.svg"] {
            let svg = try String(contentsOfFile: out + "/" + name, encoding: .utf8)
            #expect(wellFormedXML(svg) == nil, "\(name): \(wellFormedXML(svg) ?? "")")
            #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
            try expectRenders(out + "/" + name)
        }
        // Each panel draws every cell once (the rows hold one per task): no point repeats in a line.
        let plot = try String(contentsOfFile: out + "/sweep.svg", encoding: .utf8)
        let lines = plot.split(separator: "\n").filter { $0.hasPrefix("<polyline") }
        #expect(!lines.isEmpty)
        for line in lines {
            let points = line.split(separator: "\"")[1].split(separator: " ")
            #expect(Set(points).count == points.count, "\(line)")
        }

        // Run again: everything comes from the saved state, with the same numbers.
        let again = try sweep(out: out)
        #expect(again.status == 0)
        #expect(NSDictionary(dictionary: self.rows(try again.json())).isEqual(to: rows))
    }

    @Test("--units heads prunes heads only and lets the heads-only criteria (jacov) into static and oracle cells")
    func headsOnlyUnits() throws {
        let traces = scratchPath("sweep-jacov-traces")
        let calibrate = CLIRun(["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(CalibrateTests.corpus)",
                                "--samples", "6", "--text-window", "16", "--text-continuation", "4",
                                "--criteria", "plainact,jacov", "--out", traces, "--no-progress"])
        #expect(calibrate.status == 0, "\(calibrate.err)")
        let piqa = Self.piqa
        func run(_ units: String) -> CLIRun {
            CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", scratchPath("sweep-units-\(units)"), "--tasks", "piqa",
                    "--data", "piqa=\(piqa.data)", "--labels", "piqa=\(piqa.labels)", "--methods", "static,oracle",
                    "--criteria", "plainact,jacov", "--sparsities", "0.5", "--units", units, "--traces", traces,
                    "--json", "--no-progress"])
        }
        let heads = run("heads")
        #expect(heads.status == 0, "\(heads.err)")
        let rows = self.rows(try heads.json())
        #expect(rows.keys.sorted() == ["piqa dense - 0", "piqa oracle jacov 0.5", "piqa oracle plainact 0.5",
                                       "piqa static jacov 0.5", "piqa static plainact 0.5"])
        for (key, row) in rows where key != "piqa dense - 0" {
            #expect(row["realised_neuron_sparsity"] as? Double == 0, "\(key)")
            #expect((row["realised_head_sparsity"] as? Double ?? 0) > 0.2, "\(key)")   // layer 0 of 2 stays dense
        }
        #expect(try heads.json()["units"] as? String == "heads")

        // Pruning both, jacov has no neuron scores: its cells are skipped and say why.
        let both = run("both")
        #expect(both.status == 0, "\(both.err)")
        let json = try both.json()
        #expect(self.rows(json).keys.sorted() == ["piqa dense - 0", "piqa oracle plainact 0.5", "piqa static plainact 0.5"])
        #expect((json["skipped"] as? [String] ?? []).filter { $0.contains("(jacov): scores heads only") }.count == 2)
    }

    @Test("tasks can be added to a sweep or left out whatever they read; a state from before readings were kept per task resumes as it was read")
    func tasksComeAndGo() throws {
        let wiki = scratchPath("sweep-tasks-wiki") + ".txt", hellaswag = scratchPath("sweep-tasks-hellaswag") + ".txt"
        let out = scratchPath("sweep-tasks")
        defer { for path in [wiki, hellaswag, out] { try? FileManager.default.removeItem(atPath: path) } }
        try " = Valley = \n\n The valley 's 3 @,@ 000 @-@ year history , as told . \n".write(toFile: wiki, atomically: true, encoding: .utf8)
        try "Roofing: A man is on a roof. he\n0\nfalls.\nwaves.\nsits.\nstands.\n".write(toFile: hellaswag, atomically: true, encoding: .utf8)
        let model = fixture("tiny-llama")
        func sweep(_ tasks: [String], _ extra: [String] = []) -> CLIRun {
            let files = ["piqa": Self.piqa.data, "wikitext": wiki, "hellaswag": hellaswag]
            return CLIRun(["sweep", "--model", model, "--out", out, "--tasks", tasks.joined(separator: ","),
                           "--data", tasks.map { "\($0)=\(files[$0]!)" }.joined(separator: ","),
                           "--methods", "random", "--sparsities", "0.5", "--context", "16", "--limit", "2", "--json", "--no-progress"]
                          + (tasks.contains("piqa") ? ["--labels", "piqa=\(Self.piqa.labels)"] : []) + extra)
        }
        for tasks in [["piqa"], ["piqa", "wikitext"], ["piqa", "wikitext", "hellaswag"], ["hellaswag"], ["piqa"]] {
            let run = sweep(tasks)
            #expect(run.status == 0, "\(tasks): \(run.err)")
        }
        // A state as an older build wrote it after `--detokenize`: the reading in its settings.
        let statePath = (out as NSString).appendingPathComponent("sweep-state.json")
        var state = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: statePath))) as? [String: Any])
        var sources = try #require(state["sources"] as? [String: String])
        sources["reading wikitext"] = nil
        state["sources"] = sources
        state["settings"] = try #require(state["settings"] as? String) + "; wikitext detokenized"
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: statePath))
        #expect(sweep(["piqa", "wikitext"]).status == 0)
        let storedNow = sweep(["wikitext"], ["--as-stored"])
        #expect(storedNow.status != 0 && storedNow.err.contains("read wikitext detokenized, this command as stored"), "\(storedNow.err)")
    }

    @Test("items longer than the model's context are counted per row, warned about and noted under the report's table")
    func truncatedItems() throws {
        let directory = scratchPath("sweep-truncated")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let long = String(repeating: "open the jar ", count: 400)
        let data = directory + "/valid.jsonl", labels = directory + "/valid-labels.lst"
        try [#"{"goal": "Dry hands", "sol1": "Use a towel.", "sol2": "Use a rock."}"#,
             #"{"goal": "\#(long)", "sol1": "Twist the lid.", "sol2": "Eat the jar."}"#].joined(separator: "\n")
            .write(toFile: data, atomically: true, encoding: .utf8)
        try "0\n0\n".write(toFile: labels, atomically: true, encoding: .utf8)
        let out = directory + "/out"
        let run = try sweep(out: out, ["--tasks", "piqa,wikitext", "--data", "piqa=\(data),wikitext=\(Self.text)", "--labels", "piqa=\(labels)",
                                       "--methods", "random", "--sparsities", "0.5"])
        #expect(run.status == 0, "\(run.err)")
        let found = rows(try run.json())
        let counted: [Int?] = ["piqa dense - 0", "piqa random - 0.5"].map { found[$0]?["truncated_items"] as? Int }
        #expect(counted == [1, 1], "\(found)")
        let text: [String: Any]? = found["wikitext dense - 0"]
        #expect(text != nil && text?["truncated_items"] == nil)
        #expect(run.err.contains("warning: piqa: 1 of 2 items were longer than the model's context of"), "\(run.err)")
        let report = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
        #expect(report.contains("as lm-eval truncates them): piqa 1 of 2."), "\(report)")

        let short = try sweep(out: scratchPath("sweep-not-truncated"), ["--tasks", "piqa", "--data", "piqa=\(Self.piqa.data)", "--methods", "random", "--sparsities", "0.5"])
        #expect(short.status == 0 && !short.err.contains("warning"), "\(short.err)")
        #expect(rows(try short.json())["piqa dense - 0"]?["truncated_items"] as? Int == 0)
    }

    @Test("a sweep with other settings refuses an output directory that holds a different one")
    func settingsMismatch() throws {
        let out = scratchPath("sweep-mismatch")
        #expect(try sweep(out: out, ["--methods", "random", "--sparsities", "0.5"]).status == 0)
        let other = try sweep(out: out, ["--methods", "random", "--sparsities", "0.5", "--mask-seed", "9"])
        #expect(other.status != 0 && other.err.contains("sweep-state.json") && other.err.split(separator: "\n").count == 1, "\(other.err)")
        #expect(other.err.contains("holds a sweep with other settings (mask-seed 0 → 9);"), "\(other.err)")
        #expect(SweepCommand.settingsDifference("model a; shots 0", "model a; shots 1; long-context") == "shots 0 → 1, long-context none → given")
        #expect(SweepCommand.settingsDifference("model a; shots 0", "model a; shots 1; limit 3") == "shots 0 → 1, limit any (no shots) → 3")
    }

    @Test("a larger --limit extends a finished sweep to the numbers of one run; a smaller one, or an edited task file, is refused")
    func extendLimit() throws {
        let small = ["--methods", "random", "--sparsities", "0.5", "--tasks", "piqa", "--data", "piqa=\(Self.piqa.data)"]
        let extended = scratchPath("sweep-extend"), direct = scratchPath("sweep-direct")
        #expect(try sweep(out: extended, small + ["--limit", "2"]).status == 0)
        let grown = try sweep(out: extended, small + ["--limit", "4"])
        let once = try sweep(out: direct, small + ["--limit", "4"])
        #expect(grown.status == 0 && once.status == 0)
        try expectSameRows(rows(try grown.json()), rows(try once.json()))
        let shrunk = try sweep(out: extended, small + ["--limit", "3"])
        #expect(shrunk.status != 0 && shrunk.err.contains("--limit 4"), "\(shrunk.err)")
        // The same path with other contents is not extended: its new items would join the old ones' tallies.
        let edited = scratchPath("sweep-edited") + ".jsonl", editedOut = scratchPath("sweep-edited-out")
        try? FileManager.default.removeItem(atPath: edited)
        try FileManager.default.copyItem(atPath: Self.piqa.data, toPath: edited)
        let onCopy = ["--methods", "random", "--sparsities", "0.5", "--tasks", "piqa", "--data", "piqa=\(edited)"]
        #expect(try sweep(out: editedOut, onCopy + ["--limit", "2"]).status == 0)
        let text = try String(contentsOfFile: edited, encoding: .utf8)
        try text.replacingOccurrences(of: "Open a jar", with: "Close a jar").write(toFile: edited, atomically: true, encoding: .utf8)
        let changed = try sweep(out: editedOut, onCopy + ["--limit", "4"])
        #expect(changed.status == 1 && changed.err == "error: --data: \(edited) (or its labels) changed since \(editedOut) evaluated piqa on it; give another --out\n", "\(changed.err)")
        try text.write(toFile: edited, atomically: true, encoding: .utf8)
        #expect(try sweep(out: editedOut, onCopy + ["--limit", "4"]).status == 0)
        // The same file spelled another way continues the sweep; another file does not.
        let respelled = ["--methods", "random", "--sparsities", "0.5", "--tasks", "piqa", "--data",
                         "piqa=\((edited as NSString).deletingLastPathComponent)/./\((edited as NSString).lastPathComponent)"]
        let again = try sweep(out: editedOut, respelled + ["--limit", "4"])
        #expect(again.status == 0, "\(again.err)")
        let elsewhere = try sweep(out: editedOut, small + ["--limit", "4"])
        #expect(elsewhere.status == 1 && elsewhere.err.contains(" evaluated piqa on "), "\(elsewhere.err)")
    }

    @Test("sweep plots draw ± one standard error through each accuracy and keep accuracy axes within 0–1")
    func plotErrorBars() throws {
        let json = #"""
        {"model": "m", "date": "d", "machine": "x", "command": "c", "commands": ["c"], "settings": "s", "seconds": 1,
         "skipped": [], "units": "both", "head_importance": {},
         "rows": [{"task": "piqa", "method": "dense", "sparsity": 0, "n": 10, "metrics": {"acc": 1.0, "acc_stderr": 0}, "seconds": 1},
                  {"task": "piqa", "method": "random", "sparsity": 0.5, "n": 10, "metrics": {"acc": 0.5, "acc_stderr": 0.1}, "seconds": 1}]}
        """#
        let results = try JSONDecoder().decode(SweepCommand.Results.self, from: Data(json.utf8))
        let svg = SweepReport.plots(results)
        #expect(wellFormedXML(svg) == nil)
        #expect(svg.components(separatedBy: "stroke-opacity=\"0.5\"").count == 2, "one error bar, for the random cell")
        // Padded, the axis would reach 1.040: it ends at 1, on round ticks from 0.2.
        #expect(svg.contains(">1.0</text>") && svg.contains(">0.2</text>") && !svg.contains(">1.2</text>"), "\(svg)")
    }

    @Test("plot axes end on round ticks: steps of 1, 2, 2.5 or 5 × 10^k, at most six of them, labelled with the decimals they need")
    func roundTicks() {
        let cases: [(Double, Double, [Double], Int)] = [
            (0.352, 1.0, [0.2, 0.4, 0.6, 0.8, 1.0], 1),
            (0.202, 0.701, [0.2, 0.4, 0.6, 0.8], 1),
            (0.24, 0.36, [0.2, 0.25, 0.3, 0.35, 0.4], 2),
            (0.3, 0.39, [0.3, 0.325, 0.35, 0.375, 0.4], 3),
            (18, 97, [0, 20, 40, 60, 80, 100], 0),
            (0, 95, [0, 25, 50, 75, 100], 0),
        ]
        for (low, high, expected, decimals) in cases {
            let axis = SweepReport.roundTicks(low: low, high: high)
            #expect(axis.decimals == decimals && axis.ticks.count == expected.count, "\(low)…\(high): \(axis)")
            for (tick, value) in zip(axis.ticks, expected) { #expect(abs(tick - value) < 1e-9, "\(low)…\(high): \(axis.ticks)") }
            #expect(axis.ticks.first! <= low + 1e-12 && axis.ticks.last! >= high - 1e-12 && axis.ticks.count <= 7)
        }
    }

    @Test("a progress time that is not finite or beyond any run prints ?, or caps, rather than trapping")
    func progressTimes() {
        #expect(ProgressBar.format(.infinity) == "?" && ProgressBar.format(.nan) == "?")
        #expect(ProgressBar.format(3725) == "1:02:05" && ProgressBar.format(-3) == "0:00")
        #expect(ProgressBar.format(1e300) == ProgressBar.format(1e9))
        // A log's start line, before any unit is done, has no rate to estimate from.
        final class Box: @unchecked Sendable { var err = "" }
        let box = Box()
        let bar = ProgressBar(console: Console(out: { _ in }, err: { box.err += $0 }), label: "eval", total: 4)
        bar.update(0)
        #expect(box.err.hasPrefix("eval ") && box.err.contains(" 0/4 ") && box.err.hasSuffix("elapsed, ETA ?\n"), "\(box.err)")
        // Nor does a resumed run's first update, the work it found done; a bar told when the work began has one.
        box.err = ""
        let resumed = ProgressBar(console: Console(out: { _ in }, err: { box.err += $0 }), label: "calibrate", total: 10)
        resumed.update(5)
        #expect(box.err.contains(" 5/10 ") && box.err.hasSuffix("elapsed, ETA ?\n"), "\(box.err)")
        // The log's next line waits for a rate, then comes at once rather than 30 s later, and
        // only once: later units wait for the log interval again.
        box.err = ""
        resumed.update(5)
        #expect(box.err.isEmpty, "\(box.err)")
        resumed.update(6)
        #expect(box.err.contains(" 6/10 ") && box.err.range(of: #"elapsed, ETA \d+:\d\d\n$"#, options: .regularExpression) != nil, "\(box.err)")
        box.err = ""
        resumed.update(7)
        #expect(box.err.isEmpty, "\(box.err)")
        box.err = ""
        ProgressBar(console: Console(out: { _ in }, err: { box.err += $0 }), label: "eval", total: 10, started: Date() - 5).update(5)
        // (About 0:05; the pattern leaves room for a slow machine.)
        #expect(box.err.range(of: #"elapsed, ETA 0:0[4-9]\n$"#, options: .regularExpression) != nil, "\(box.err)")
    }

    @Test("a cell missing a task (left unfinished by a later command) gets no accuracy mean, KL, top-1 or seconds over the tasks it has, and — for the missing one")
    func meansNeedEveryTask() throws {
        let json = #"""
        {"model": "m", "date": "d", "machine": "x", "command": "c", "commands": ["c"], "settings": "s", "seconds": 1,
         "skipped": [], "units": "both", "head_importance": {},
         "rows": [{"task": "piqa", "method": "dense", "sparsity": 0, "n": 10, "metrics": {"acc": 0.8, "acc_stderr": 0.1}, "seconds": 1, "kl_divergence": 0, "top1_agreement": 1},
                  {"task": "hellaswag", "method": "dense", "sparsity": 0, "n": 10, "metrics": {"acc_norm": 0.4, "acc_norm_stderr": 0.1}, "seconds": 1, "kl_divergence": 0, "top1_agreement": 1},
                  {"task": "piqa", "method": "random", "sparsity": 0.5, "n": 10, "metrics": {"acc": 0.5, "acc_stderr": 0.1}, "seconds": 1, "kl_divergence": 2, "top1_agreement": 0.5}]}
        """#
        let results = try JSONDecoder().decode(SweepCommand.Results.self, from: Data(json.utf8))
        #expect(SweepReport.meanAccuracy(results, cell: .dense).map { abs($0 - 0.6) < 1e-12 } == true)
        #expect(SweepReport.meanAccuracy(results, cell: SweepCell(method: "random", sparsity: 0.5)) == nil)
        let table = SweepReport.table(results)
        let random = try #require(table.first { $0.hasPrefix("| random |") })
        #expect(random == "| random | — | 0.50 | 0.500 ± 0.100 | — | — | — | — | — / — | — |", "\(random)")
        #expect(table.first { $0.hasPrefix("| dense |") }?.hasSuffix(" | 2.0 |") == true, "\(table)")
    }

    @Test("a later command without --traces keeps the heat map and the skipped cells of earlier ones; one that adds nothing is not recorded")
    func laterCommandsKeepTheReport() throws {
        let out = scratchPath("sweep-later")
        let first = try sweep(out: out, ["--methods", "static,shadow", "--sparsities", "0.5", "--limit", "2"])
        #expect(first.status == 0, "\(first.err)")
        let firstSkipped = try first.json()["skipped"] as? [String] ?? []
        #expect(firstSkipped.contains { $0.hasPrefix("shadow (l2_norm)") })
        let piqa = Self.piqa
        let later = ["sweep", "--model", fixture("tiny-llama"), "--out", out, "--tasks", "piqa,wikitext",
                     "--data", "piqa=\(piqa.data),wikitext=\(Self.text)", "--labels", "piqa=\(piqa.labels)",
                     "--methods", "random", "--sparsities", "0.5", "--limit", "2", "--context", "32", "--json", "--no-progress"]
        let added = CLIRun(later)
        #expect(added.status == 0, "\(added.err)")
        let json = try added.json()
        #expect((json["head_importance"] as? [String: Any])?.keys.sorted() == ["l2_norm", "plainact"], "\(json.keys.sorted())")
        #expect((json["skipped"] as? [String] ?? []).contains { $0.hasPrefix("shadow (l2_norm)") }, "\(json["skipped"] ?? "")")
        #expect(try String(contentsOfFile: out + "/report.md", encoding: .utf8).contains("heads.svg"))
        // The first command again (after another) computes nothing and is not listed a second time.
        let again = try sweep(out: out, ["--methods", "static,shadow", "--sparsities", "0.5", "--limit", "2"])
        let commands = try again.json()["commands"] as? [String]
        #expect(again.status == 0 && commands?.count == 2, "\(again.out)")
    }

    @Test("cells added by a later command join the earlier cells in one report; a cell left at a smaller --limit is not shown")
    func addedCellsJoinTheReport() throws {
        let out = scratchPath("sweep-added"), direct = scratchPath("sweep-added-direct")
        let shadow = ["--methods", "shadow", "--criteria", "plainact", "--sparsities", "0.5", "--limit", "2"]
        #expect(try sweep(out: out, ["--methods", "random", "--sparsities", "0.5", "--limit", "2"]).status == 0)
        let added = try sweep(out: out, shadow)
        let once = try sweep(out: direct, ["--methods", "random,shadow", "--criteria", "plainact", "--sparsities", "0.5", "--limit", "2"])
        #expect(added.status == 0 && once.status == 0, "\(added.err)\(once.err)")
        let joined = rows(try added.json())
        #expect(joined.keys.contains { $0.hasPrefix("piqa random") } && joined.keys.contains { $0.hasPrefix("wikitext random") },
                "\(joined.keys.sorted())")
        try expectSameRows(joined, rows(try once.json()))
        let commands = try added.json()["commands"] as? [String] ?? []
        #expect(commands.count == 2 && commands[0].contains("--methods random") && commands[1].contains("--methods shadow"), "\(commands)")
        let report = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
        #expect(report.contains("earlier commands") && report.contains(commands[0]), "\(report)")

        // Extending only the shadow cell leaves the random one at 2 items: not reported beside 3.
        let extended = try sweep(out: out, Array(shadow.dropLast(2)) + ["--limit", "3"])
        #expect(extended.status == 0, "\(extended.err)")
        let keys = rows(try extended.json()).keys
        #expect(!keys.contains { $0.hasPrefix("piqa random") } && keys.contains { $0.hasPrefix("piqa shadow") }
                && keys.contains { $0.hasPrefix("wikitext random") }, "\(keys.sorted())")
    }

    @Test("bad sweeps are one-line errors", arguments: [
        (["--sparsities", "0.5,1.5"], "--sparsities"),
        (["--sparsities", ""], "--sparsities: the list is empty"),
        (["--sparsities", "1e-9"], "--sparsities: 1e-9 is 0.00 to two decimals, the precision results are kept in; give 0.01 or more"),
        (["--sparsities", "0.996"], "--sparsities: 0.996 is 1.00 to two decimals, the precision results are kept in; give 0.99 or less"),
        (["--sparsities", "0.301,0.5,0.304"], "--sparsities: 0.301 and 0.304 are one cell (results are kept to two decimals, 0.30)"),
        (["--criteria", "plainact,"], "--criteria: has an empty item; expected names from"),
        (["--tasks", "copa,piqa,wikitext"], "--data: no file for copa"),
        (["--tasks", "piqa"], "--data: wikitext is not among --tasks (piqa)"),
        (["--tasks", "wikitext", "--data", "wikitext=x.txt"], "--labels: piqa is not among --tasks (wikitext)"),
        (["--data", "piqa=a.jsonl,piqa=b.jsonl,wikitext=x.txt"], "--data: piqa is given twice"),
        (["--methods", "nope"], "--methods"),
        (["--methods", ""], "--methods: the list is empty; give one or more of"),
        (["--labels", "piqa=\(SweepCommandTests.piqa.labels),wikitext=x.lst"], "--labels: applies to piqa and winogrande only (wikitext has no labels)"),
        (["--criteria", "nope"], "--criteria"),
        (["--data", "piqa"], "--data"),
        (["--predictor", "/nonexistent/predictors"], "/nonexistent/predictors"),
        (["--methods", "shadow:nope"], "--methods: unknown criterion \"nope\" in \"shadow:nope\""),
        (["--methods", "random:plainact"], "--methods: random has no criterion"),
        // Every cell asked for skipped: an error naming why, not a dense-only sweep.
        (["--methods", "shadow", "--criteria", "fisher"], "--methods: none of the cells of shadow can run (shadow (fisher): no such predictor among --predictor)"),
        // Too few items for the shots of a task after the first: refused before the first runs.
        (["--tasks", "wikitext,piqa", "--shots", "4"], "--shots: 4 examples need 5 items; the file has 4 (piqa: \(SweepCommandTests.piqa.data))"),
    ])
    func badArguments(extra: [String], expected: String) throws {
        let out = scratchPath("sweep-bad")
        let run = try sweep(out: out, extra)
        #expect(run.status != 0 && run.err.contains(expected) && run.err.split(separator: "\n").count == 1, "\(run.err)")
        #expect(!FileManager.default.fileExists(atPath: out + "/sweep-state.json"), "a refused sweep left a state behind")
    }

    @Test("an oracle cell counts the masks it left dense (a context cut to one token) and warns, as eval does")
    func oracleDenseMasks() throws {
        let long = String(repeating: " and the river ran on", count: 40)
        let data = scratchPath("piqa-long") + ".jsonl"
        try (#"{"goal": "Describe a river", "sol1": "It ran\#(long).", "sol2": "It ran\#(long) again."}"# + "\n"
             + #"{"goal": "Dry hands", "sol1": "Use a towel.", "sol2": "Use a rock."}"#).write(toFile: data, atomically: true, encoding: .utf8)
        let labels = scratchPath("piqa-long-labels") + ".lst"
        try "0\n0\n".write(toFile: labels, atomically: true, encoding: .utf8)
        let run = CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", scratchPath("sweep-oracle-dense"), "--tasks", "piqa",
                          "--data", "piqa=\(data)", "--labels", "piqa=\(labels)", "--methods", "oracle", "--criteria", "plainact",
                          "--sparsities", "0.5", "--json", "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        let oracle = try #require(rows(try run.json())["piqa oracle plainact 0.5"])
        // The long question's two choices are cut separately, each to a one-token context; the short one is not.
        #expect(oracle["dense_masks"] as? Int == 2, "\(oracle)")
        #expect(run.err.contains("warning: piqa oracle/plainact/0.50: 2 oracle masks ran dense"), "\(run.err)")
        #expect(rows(try run.json())["piqa dense - 0"]?["dense_masks"] == nil)
    }

    @Test("a text subset ends at a line end, else at a space, else at a character boundary")
    func subsets() {
        #expect(SweepCommand.subset("ab\ncd\nef", bytes: 7) == "ab\ncd\n")
        #expect(SweepCommand.subset("ab cd ef", bytes: 6) == "ab cd")
        #expect(SweepCommand.subset("aé", bytes: 2) == "a")
        #expect(SweepCommand.subset("short", bytes: 0) == "short" && SweepCommand.subset("short", bytes: 99) == "short")
    }

    @Test("a method may name its criteria (shadow:plainact), the others take --criteria")
    func methodCriteria() throws {
        let run = try sweep(out: scratchPath("sweep-pairs"), ["--methods", "shadow:plainact,dejavu:l2_norm,random", "--sparsities", "0.5"])
        #expect(run.status == 0 && !run.err.contains("skipped"), "\(run.err)")
        let cells = Set(rows(try run.json()).keys.map { $0.split(separator: " ").dropFirst().joined(separator: " ") })
        #expect(cells == ["dense - 0", "shadow plainact 0.5", "dejavu l2_norm 0.5", "random - 0.5"], "\(cells)")
        // Bare, a method also takes each of --criteria.
        let both = try sweep(out: scratchPath("sweep-pairs-bare"), ["--methods", "static:plainact,static", "--criteria", "l2_norm", "--sparsities", "0.5"])
        let staticCells = Set(rows(try both.json()).keys.map { $0.split(separator: " ").dropFirst().joined(separator: " ") })
        #expect(staticCells == ["dense - 0", "static l2_norm 0.5", "static plainact 0.5"], "\(staticCells) \(both.err)")
        // A criterion only a method names has its scores read too; a criterion or task given twice is one.
        let named = try sweep(out: scratchPath("sweep-pairs-named"), ["--methods", "static:l2_norm", "--criteria", "plainact,plainact",
                                                                      "--tasks", "piqa,piqa,wikitext", "--sparsities", "0.5"])
        #expect(named.status == 0, "\(named.err)")
        let namedJSON = try named.json()
        let namedRows = try #require(namedJSON["rows"] as? [[String: Any]])
        let namedCells = Set(rows(namedJSON).keys.map { $0.split(separator: " ").dropFirst().joined(separator: " ") })
        #expect(namedRows.count == 4 && namedCells == ["dense - 0", "static l2_norm 0.5"], "\(namedRows)")
    }

    @Test("shadow and dejavu cells asked for need --predictor, as eval's methods do; a missing data directory is named")
    func predictorRequired() throws {
        let piqa = try EvalCommandTests.piqaFiles()
        let run = CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", scratchPath("sweep-no-predictor"), "--tasks", "piqa",
                          "--data", "piqa=\(piqa.data)", "--labels", "piqa=\(piqa.labels)", "--methods", "shadow", "--no-progress"])
        #expect(run.status == 1 && run.err == "error: --predictor: is required by the shadow method (predictor files or directories from train-predictor)\n", "\(run.err)")
        let missing = CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", scratchPath("sweep-no-data"), "--tasks", "piqa",
                              "--data-dir", "/nonexistent", "--methods", "random", "--no-progress"])
        #expect(missing.status == 1 && missing.err.contains("no file for piqa (--data-dir /nonexistent does not exist)"), "\(missing.err)")
    }

    @Test("static masks need a trace directory")
    func staticNeedsTraces() throws {
        let piqa = try EvalCommandTests.piqaFiles()
        let run = CLIRun(["sweep", "--model", fixture("tiny-llama"), "--out", scratchPath("sweep-static"), "--tasks", "piqa",
                          "--data", "piqa=\(piqa.data)", "--labels", "piqa=\(piqa.labels)", "--methods", "static", "--no-progress"])
        #expect(run.status != 0 && run.err.contains("--traces"), "\(run.err)")
    }

    func expectSameRows(_ a: [String: [String: Any]], _ b: [String: [String: Any]], sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(Set(a.keys) == Set(b.keys), sourceLocation: sourceLocation)
        func numbers(_ row: [String: Any]) -> [String: Double] {
            var result: [String: Double] = [:]
            for (key, value) in row {
                if let value = value as? Double { result[key] = value }
                if let metrics = value as? [String: Double] { for (k, v) in metrics { result["metrics." + k] = v } }
            }
            return result
        }
        for (key, row) in a {
            let x = numbers(row), y = numbers(try #require(b[key]))
            #expect(Set(x.keys) == Set(y.keys), "\(key)", sourceLocation: sourceLocation)
            for (name, value) in x {
                // The mean KL sums values on a grid that makes the order of adding irrelevant: exact.
                let tolerance = name == "kl_divergence" ? 0 : 1e-9 * max(1, abs(value))
                #expect(abs(value - (y[name] ?? .nan)) <= tolerance, "\(key) \(name)", sourceLocation: sourceLocation)
            }
        }
    }

    /// Nil when `xml` is well-formed (balanced tags, quoted attributes, only the five predefined
    /// entities), else what is wrong. FoundationXML needs libxml2 at run time, so the check is ours.
    func wellFormedXML(_ xml: String) -> String? {
        var stack: [Substring] = []
        var rest = Substring(xml)
        while let open = rest.firstIndex(of: "<") {
            if let problem = checkText(rest[..<open]) { return problem }
            guard let close = rest[open...].firstIndex(of: ">") else { return "unclosed tag" }
            let tag = rest[rest.index(after: open)..<close]
            rest = rest[rest.index(after: close)...]
            if tag.hasPrefix("/") {
                guard stack.popLast() == tag.dropFirst() else { return "mismatched </\(tag.dropFirst())>" }
                continue
            }
            let selfClosing = tag.hasSuffix("/")
            let body = selfClosing ? tag.dropLast() : tag
            let name = body.prefix { !$0.isWhitespace }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == ":" }) else { return "bad tag name <\(name)>" }
            // Attributes: name="value" pairs.
            var attributes = body.dropFirst(name.count).drop { $0.isWhitespace }
            while !attributes.isEmpty {
                guard let eq = attributes.firstIndex(of: "="), attributes[attributes.index(after: eq)] == "\"" else { return "bad attribute in <\(name)>" }
                let valueStart = attributes.index(eq, offsetBy: 2)
                guard let valueEnd = attributes[valueStart...].firstIndex(of: "\"") else { return "unterminated attribute in <\(name)>" }
                if let problem = checkText(attributes[valueStart..<valueEnd]) { return problem }
                attributes = attributes[attributes.index(after: valueEnd)...].drop { $0.isWhitespace }
            }
            if !selfClosing { stack.append(name) }
        }
        if let problem = checkText(rest) { return problem }
        return stack.isEmpty ? nil : "unclosed <\(stack.last!)>"
    }

    func checkText(_ text: Substring) -> String? {
        var rest = text
        while let amp = rest.firstIndex(of: "&") {
            let entity = rest[amp...].prefix { $0 != ";" }
            guard ["&amp", "&lt", "&gt", "&quot", "&apos"].contains(entity) else { return "bad entity \(entity.prefix(8))" }
            rest = rest[rest.index(amp, offsetBy: entity.count)...]
        }
        return nil
    }

    /// Renders an SVG with librsvg when it is installed (scripts/setup.sh installs it).
    func expectRenders(_ svg: String) throws {
        guard let tool = ["/usr/bin/rsvg-convert", "/usr/local/bin/rsvg-convert"].first(where: FileManager.default.isExecutableFile) else {
            print("note: rsvg-convert not installed; SVG rendering not checked")
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = [svg, "-o", svg + ".png"]
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "rsvg-convert failed on \(svg)")
        #expect((try? FileManager.default.attributesOfItem(atPath: svg + ".png")[.size] as? Int) ?? 0 > 1000)
    }
}
