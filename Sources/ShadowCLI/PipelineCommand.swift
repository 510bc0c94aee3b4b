import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels
import ShadowSparsity
import ShadowTasks
import ShadowTokenizers

/// What a step run in-process wrote to one of its streams.
private final class CapturedText: @unchecked Sendable { var out = "" }

/// `shadowllm pipeline`: the whole method on one model, end to end, each step resumable.
enum PipelineCommand {
    /// One step's outcome, kept in results.json.
    struct Step: Codable {
        var name: String
        /// For a skipped step, what it took in the run that did it (0 when unknown).
        var seconds: Double
        var skipped: Bool
    }

    struct Row: Codable {
        var method: String
        var sparsity: Double
        /// The fractions of heads and neurons the masks really pruned, a mean over the tasks
        /// evaluated (the nominal sparsity is rounded per layer or per policy); nil for dense.
        var realisedHeadSparsity: Double?
        var realisedNeuronSparsity: Double?
        var perplexity: Double?
        var tasks: [String: Double] = [:]
        var decodeTokensPerSecond: Double?
        var prefillTokensPerSecond: Double?
        var predictorShare: Double?
        var bytesPerToken: Int?
        /// Decode with `--weights q8` (the other speed columns are f16's).
        var q8DecodeTokensPerSecond: Double?
        /// The method's greedy reply to `Results.generation`'s prompt.
        var generatedText: String?

        /// The speed columns from bench's rows for this method. A q8-asked row whose weights were
        /// kept as another dtype (a model no matrix of which q8 can hold) fills no q8 column: it
        /// measured f16 (or bf16) again.
        mutating func fillSpeeds(from bench: [[String: Any]]) {
            for r in bench where r["method"] as? String == method {
                let decodes = (r["test"] as? String ?? "").hasPrefix("tg")
                if Self.askedForQ8(r) {
                    if decodes && r["weights"] as? String == "q8" { q8DecodeTokensPerSecond = r["tokens_per_second"] as? Double }
                } else if decodes {
                    decodeTokensPerSecond = r["tokens_per_second"] as? Double
                    predictorShare = r["predictor_share"] as? Double
                    bytesPerToken = r["bytes_per_token"] as? Int
                } else {
                    prefillTokensPerSecond = r["tokens_per_second"] as? Double
                }
            }
        }

        /// A bench row of a `--weights q8` run, whatever it kept. Runs from before 2026-12-06
        /// benchmarked f16 only (no q8 rows, and no weights key before that).
        static func askedForQ8(_ benchRow: [String: Any]) -> Bool {
            (benchRow["weights_asked"] ?? benchRow["weights"]) as? String == "q8"
        }

        enum CodingKeys: String, CodingKey {
            case method, sparsity, perplexity, tasks
            case realisedHeadSparsity = "realised_head_sparsity", realisedNeuronSparsity = "realised_neuron_sparsity"
            case decodeTokensPerSecond = "tg_tokens_per_second"
            case prefillTokensPerSecond = "pp_tokens_per_second", predictorShare = "predictor_share"
            case bytesPerToken = "bytes_per_token", q8DecodeTokensPerSecond = "q8_tg_tokens_per_second"
            case generatedText = "generated_text"
        }
    }

    struct Results: Codable {
        var model: String
        var date: String
        var machine: String
        var quick: Bool
        var samples: Int
        var sparsity: Double
        var heldOutText: String
        var steps: [Step]
        var rows: [Row]
        var predictors: [String: PredictorQualitySummary]
        /// Items scored per multiple-choice task (PIQA, HellaSwag) and the bench's test names
        /// (pp512, tg128), so the numbers say what they measured.
        var items: [String: Int] = [:]
        var benchTests: [String] = []
        /// What every row's `generatedText` answers.
        var generation: Generation? = nil
        /// Why the table lacks what it would show (a column left out), as printed on stderr.
        var notes: [String] = []

        enum CodingKeys: String, CodingKey {
            case model, date, machine, quick, samples, sparsity, heldOutText = "held_out_text", steps, rows, predictors, items
            case benchTests = "bench_tests", generation, notes
        }
    }

    /// The prompt each method replies to in the report, greedily, so what the numbers mean for
    /// text can be read beside them.
    struct Generation: Codable {
        var prompt: String
        /// Sent as a user's turn of the model's chat template, without a system turn.
        var chat: Bool
        /// The template's thinking switched off (Qwen3, SmolLM3), so the tokens go to the answer.
        var noThink = false
        var maxTokens: Int
        var weights = "f16"
        /// The ids `generate` reads for the prompt (kept out of results.json): what tells a reply
        /// left by an earlier run to another question or template.
        var promptTokens: [Int] = []
        enum CodingKeys: String, CodingKey { case prompt, chat, noThink = "no_think", maxTokens = "max_tokens", weights }

        /// A question for models with a chat template, the same question as a text to continue
        /// for the others; nil when the prompt leaves no room in the model's context.
        init?(loaded: LoadedModel, maxTokens: Int) {
            guard let tokenizer = loaded.tokenizer else { return nil }
            // A template, not only its tokens: a base model with ChatML's tokens continues text.
            var template = tokenizer.chatTemplate == nil ? nil : try? ChatTemplate(tokenizer: tokenizer, option: "--chat")
            if template?.hasThinkingSwitch == true {
                try? template?.chooseThinking(noThink: true, system: nil)
                noThink = true
            }
            chat = template != nil
            let question = chat ? "Why is the sky blue?" : "Question: Why is the sky blue?\nAnswer:"
            prompt = question
            // The tokens `generate` reads: the same template call it makes with --no-system
            // (without a system turn a template refuses nothing).
            let ids = template.flatMap { try? $0.prompt(system: nil, user: question) } ?? tokenizer.encodeWithSpecialTokens(question)
            promptTokens = ids
            let room = loaded.model.shape.maxContext - ids.count
            guard room >= 1 else { return nil }
            self.maxTokens = min(maxTokens, room)
        }

        /// `generate`'s options for this prompt.
        var arguments: [String] {
            ["--prompt", prompt, "-n", String(maxTokens), "--weights", weights]
                + (chat ? ["--chat", "--no-system"] : []) + (noThink ? ["--no-think"] : [])
        }
    }

    struct PredictorQualitySummary: Codable {
        var headSpearman: Double?
        var neuronSpearman: Double?
        var parameters: Int?
        var trainingSeconds: Double?
        /// Recall at sparsity 0.5 with layers ranked together (global) and each layer on its own
        /// (local): {"sparsity": 0.5, "global": …, "local": …}.
        var headRecall: [String: Double]? = nil
        var neuronRecall: [String: Double]? = nil
        enum CodingKeys: String, CodingKey {
            case headSpearman = "head_spearman", neuronSpearman = "neuron_spearman", parameters
            case trainingSeconds = "training_seconds", headRecall = "head_recall", neuronRecall = "neuron_recall"
        }
    }

    /// What decides a pipeline run's numbers (not --threads, --no-progress), kept in
    /// `pipeline-settings.json`; a later run into the same --out must match it. Files are kept as
    /// the absolute paths actually read, so a default that now finds another file is a change and
    /// the same file named another way is not.
    struct RunSettings: Codable, Equatable {
        var model: ModelFingerprint
        var quick: Bool
        var samples: Int
        /// Only when there are multiple-choice tasks for it to limit.
        var limit: Int?
        var sparsity: Double
        var calibrationText: String
        var heldOutText: String
        /// Task name → data file, for the tasks found under --data-dir.
        var tasks: [String: String]
        /// How task text is read: "lm-eval" since 2026-12-04 (WikiText detokenized, HellaSwag's
        /// ctx_b capitalised); absent in the settings of earlier runs, which read both as stored.
        var taskText: String? = "lm-eval"
        /// "end" when one text is both calibrated on and held out: its end is held out and not
        /// calibrated on (since 2026-12-05; before, calibration read the whole text and the
        /// held-out sample was its start).
        var heldOutPart: String? = nil

        enum CodingKeys: String, CodingKey {
            case model, quick, samples, limit, sparsity, tasks, taskText = "task_text", heldOutPart = "held_out_part"
            case calibrationText = "calibration_text", heldOutText = "held_out_text"
        }

        static func absolute(_ path: String) -> String {
            URL(fileURLWithPath: (path as NSString).expandingTildeInPath).standardizedFileURL.path
        }

        /// Writes the settings at `path`, or checks them against the ones already there.
        func claim(_ path: String, out: String) throws {
            guard try fileKind(atPath: path) != nil else {
                // An --out of an older version holds steps but no settings: they are taken as these.
                return try AtomicFile.write(try JSONOutput.string(self) + "\n", to: path)
            }
            let earlier: RunSettings
            do {
                earlier = try ConfigDecoding.decode(RunSettings.self, path: path)
            } catch ShadowError.badJSON(_, let key, let reason) {
                throw ShadowError.corruptFile(path: path, reason: "not the settings of a pipeline run (\(key.map { "key \"\($0)\": " } ?? "")\(reason)); remove it or give another --out")
            } catch ShadowError.corruptFile(_, let reason) {   // not even text
                throw ShadowError.corruptFile(path: path, reason: "not the settings of a pipeline run (it \(reason)); remove it or give another --out")
            }
            guard earlier != self else { return }
            func describe<T>(_ value: T?) -> String { value.map { "\($0)" } ?? "none" }
            var differences: [String] = []
            if earlier.model != model { differences.append("model (\(earlier.model.difference(to: model)))") }
            if earlier.quick != quick { differences.append("--quick (\(earlier.quick ? "on" : "off") → \(quick ? "on" : "off"))") }
            if earlier.samples != samples { differences.append("--samples (\(earlier.samples) → \(samples))") }
            if earlier.limit != limit { differences.append("--limit (\(describe(earlier.limit)) → \(describe(limit)))") }
            if earlier.sparsity != sparsity { differences.append("--sparsity (\(earlier.sparsity) → \(sparsity))") }
            if earlier.calibrationText != calibrationText {
                differences.append("calibration text (\(earlier.calibrationText) → \(calibrationText))")
            }
            if earlier.heldOutText != heldOutText { differences.append("held-out text (\(earlier.heldOutText) → \(heldOutText))") }
            if earlier.heldOutPart != heldOutPart {
                func part(_ value: String?) -> String { value == "end" ? "its end, not calibrated on" : "its start" }
                differences.append("held-out part of the text (\(part(earlier.heldOutPart)) → \(part(heldOutPart)))")
            }
            if earlier.taskText != taskText {
                differences.append("task text (\(earlier.taskText ?? "as stored") → \(describe(taskText)): WikiText detokenized and HellaSwag's ctx_b capitalised since 2026-12-04)")
            }
            if earlier.tasks != tasks {
                let names = Set(earlier.tasks.keys).union(tasks.keys).sorted().filter { earlier.tasks[$0] != tasks[$0] }
                differences += names.map { "\($0) data (\(describe(earlier.tasks[$0])) → \(describe(tasks[$0])))" }
            }
            throw ShadowError.invalidArgument(name: "--out", reason: "\(out) holds a pipeline run with other settings: "
                + differences.joined(separator: ", ") + "; give another --out, or remove it to start afresh")
        }
    }

    /// The first PIQA item calibration reads (HellaSwag's is 5000): the evaluated items end before it.
    static let calibrationStart = 1000
    /// HellaSwag's calibration items (its first 1,000 are evaluated, as PIQA's).
    static let hellaswagCalibrationStart = 5000
    /// The tokens of text each calibration window's scores are taken on.
    static let textContinuation = 32

    static let command = Command(
        name: "pipeline", abstract: "Run the whole ShadowLLM method on a model: calibrate, train predictors, evaluate, benchmark, generate, report.",
        discussion: """
            Steps (each skipped when its output is already in --out, so an interrupted run continues): \
            calibrate (plainact and l2_norm traces) → train-predictor (shadow on plainact, dejavu on l2_norm; stored as f16) → \
            one sweep (sweep/) of dense, shadow and dejavu at --sparsity over held-out text (the first 60 KB of WikiText-2 test, 4 KB \
            with --quick) and, when --data-dir has them, the first --limit items of PIQA and HellaSwag, sharing each item's dense pass → \
            bench (f16; decode at q8 too) → generate (each method's greedy reply to one question, in the report beside the numbers) → \
            report.md, results.json and plots.svg. The settings that decide the numbers (model, --quick, --samples, \
            --limit, --sparsity, and the data and text files read) are kept in pipeline-settings.json; a run with other settings into the \
            same --out is refused rather than reporting the earlier run's numbers. Ctrl-C during calibrate, \
            train-predictor, the sweep or a generate step stops that step at a safe point (status 130), elsewhere at once; running the \
            same command again continues from the last finished step, or from inside the one stopped.
            """,
        options: [
            ModelOptions.modelOption,
            .value("out", short: "o", "dir", help: "Where every step writes.", default: "shadowllm-run"),
            .value("data-dir", "dir", help: "Evaluation data (piqa/, hellaswag/, wikitext-2/ as in ../shared/data), relative to the current directory.", default: "../shared/data"),
            .value("text", "path", help: "Plain calibration text (also the held-out text when --data-dir has no WikiText test).",
                   defaultDescription: "WikiText-2 valid from --data-dir, else the corpus scripts/setup.sh fetched"),
            .value("samples", "n", help: "Calibration samples, at least 8 (the predictors hold out a fifth).", defaultDescription: "160 (24 with --quick)"),
            .value("limit", "n", help: "Items of each multiple-choice task (PIQA and HellaSwag, from item 0; at most 1000: calibration uses items 1000+ and 5000+).",
                   defaultDescription: "100 (20 with --quick)"),
            .value("sparsity", "p", help: "Fraction of heads and neurons the sparse rows prune.", default: "0.5"),
            .value("threads", short: "t", "n", help: "Threads.", default: String(Threads.defaultCount)),
            .flag("quick", help: "A smoke run: few samples, short training, short benchmarks (about two minutes)."),
            .flag("no-progress", help: "Hide progress bars."),
        ]
    ) { arguments, console in
        try run(arguments, console: console)
    }

    /// The predictors trained, and the paper's pairing: the shadow predictor learns plainact,
    /// the DejaVu-style one l2_norm.
    static let predictorKinds = ["shadow", "dejavu"]
    static let criterionOf = ["shadow": "plainact", "dejavu": "l2_norm"]

    static func run(_ arguments: ParsedArguments, console: Console) throws {
        // Every option is checked before anything is written.
        let plan = try Plan(arguments, console: console)
        // What marks a run's directory (one of an older version has steps but no settings).
        try OutputDirectory.refuseForeign(plan.out, holding: "pipeline run", inputs: [plan.calibrationText, plan.heldOut]) {
            ["pipeline-settings.json", "traces", "predictors", "sweep"].contains($0)
        }
        // Finished steps are skipped by their outputs alone, so a run with other settings into the
        // same --out would report the earlier run's numbers under its own settings.
        try AtomicFile.createDirectory(plan.out)
        try plan.settings.claim(plan.path("pipeline-settings.json"), out: plan.out)
        var steps = StepRunner(plan: plan, console: console)

        // 0. The held-out text (and, with one text for both, the part calibrated on).
        try plan.writeTextParts()
        // 1. Calibration traces.
        try steps.run("calibrate", plan.calibrateArguments, output: "traces/.complete")
        _ = FileManager.default.createFile(atPath: plan.path("traces/.complete"), contents: Data())
        // 2. Predictors.
        for kind in predictorKinds {
            try steps.run("train \(kind) predictor", plan.trainArguments(kind: kind), output: "predictors/\(kind).safetensors")
        }
        // 3. Held-out perplexity and multiple-choice slices, dense and sparse, in one sweep: every
        // item runs the dense model once, shared by both sparse methods.
        try steps.run("evaluate (sweep)", plan.sweepArguments, output: "sweep/report.md")
        let evaluation = try readSweep(plan)
        // 4. Speed, at f16 and (decode) at q8.
        try steps.run("bench", plan.benchArguments, output: "bench.json")
        // 5. Each method's greedy reply to one question: what the perplexities mean for text.
        let generated = try generateReplies(plan, steps: &steps, console: console)
        // 6. Report.
        try writeReport(plan, steps: steps.steps, evaluation: evaluation, generated: generated, console: console)
    }

    /// A run's checked options, the files it reads and the arguments of its steps.
    struct Plan {
        let quick: Bool
        let out: String
        let model: String
        let data: DataFiles
        let samples: Int
        let itemLimit: Int
        let sparsity: Double
        let threads: String
        let progress: [String]
        let maxContext: Int
        let fingerprint: ModelFingerprint
        let generation: Generation?
        let calibrationText: String
        let heldOut: String
        /// One file (however named) both calibrated on and held out: its end is held out.
        let sharesText: Bool
        let heldOutBytes: Int

        init(_ arguments: ParsedArguments, console: Console) throws {
            quick = arguments.flag("quick")
            out = try arguments.required("out")
            model = try ModelOptions.modelPath(arguments)
            let dataDir = try arguments.required("data-dir")
            // The default directory missing only means no task data; a file there, or a directory
            // given that is not there (a typo), is a mistake.
            switch try fileKind(atPath: dataDir) {
            case .directory?: break
            case nil where !arguments.has("data-dir"): break
            case nil: throw ShadowError.invalidArgument(name: "--data-dir", reason: "\(dataDir) does not exist")
            case _?: throw ShadowError.invalidArgument(name: "--data-dir", reason: "\(dataDir) is not a directory")
            }
            samples = try arguments.int("samples", range: 8...1_000_000) ?? (quick ? 24 : 160)
            itemLimit = try arguments.int("limit", range: Int.min...Int.max) ?? (quick ? 20 : 100)
            guard (1...calibrationStart).contains(itemLimit) else {
                throw ShadowError.invalidArgument(name: "--limit", reason: "must be in 1...\(calibrationStart), got \(itemLimit): calibration reads PIQA items \(calibrationStart)+, which evaluation must not")
            }
            sparsity = try arguments.double("sparsity") ?? 0.5
            guard (0.01...0.99).contains(sparsity) else {
                throw ShadowError.invalidArgument(name: "--sparsity", reason: "must be in 0.01...0.99, got \(sparsity)\(SparsitySettings.percentageHint(sparsity))")
            }
            threads = String(try arguments.int("threads", range: 1...256) ?? Threads.defaultCount)
            progress = arguments.flag("no-progress") ? ["--no-progress"] : []
            data = DataFiles(directory: dataDir)
            // Window sizes must fit the model's context (tiny test models have short ones). The model
            // is loaded only for that and its fingerprint, and let go at once.
            let quick = quick, model = model
            (maxContext, fingerprint, generation) = try { () throws -> (Int, ModelFingerprint, Generation?) in
                let loaded = try ModelLoader.load(path: model)
                return (loaded.model.shape.maxContext, try ModelFingerprint(loaded: loaded), Generation(loaded: loaded, maxTokens: quick ? 16 : 48))
            }()
            // Its predictors choose the units of layers 1…; layer 0 always runs dense.
            guard fingerprint.shape.layers >= 2 else {
                throw ShadowError.invalidArgument(name: "--model", reason: "\(model) has one layer; the pipeline's predictors need at least 2 (layer 0 always runs dense)")
            }
            // Calibration's text windows end in a 32-token continuation after some context.
            guard maxContext > textContinuation else {
                throw ShadowError.invalidArgument(name: "--model", reason: "\(model) has a context of \(counted(maxContext, "token")); the pipeline's calibration windows need at least \(textContinuation + 1) (a \(textContinuation)-token continuation after its context)")
            }
            guard let calibrationText = arguments.string("text") ?? data.wikitextValid ?? DataFiles.fetchedCorpus else {
                throw ShadowError.invalidArgument(
                    name: "--text", reason: "no calibration text: none given, no wikitext-2/valid.txt under --data-dir \(dataDir), and no corpus fetched by scripts/setup.sh (\(DataFiles.fetchedCorpusPath)); give --text FILE (plain English, at least a few hundred KB) or run scripts/setup.sh")
            }
            self.calibrationText = calibrationText
            heldOut = data.wikitextTest ?? calibrationText
            sharesText = AtomicFile.canonical(heldOut) == AtomicFile.canonical(calibrationText)
            heldOutBytes = quick ? 4000 : 60000
            // A bad --text found by the calibration step would leave an --out whose settings
            // refuse the corrected command.
            try requireText(calibrationText, option: arguments.has("text") || data.wikitextValid == nil ? "--text" : "--data-dir")
            if !sharesText { try requireText(heldOut, option: "--data-dir") }
            // The calibration slices must start inside the task files: found by the calibration
            // step, a short file would leave an --out whose settings refuse the corrected command.
            for (task, file, start) in [(TaskName.piqa, data.piqa, calibrationStart), (.hellaswag, data.hellaswag, hellaswagCalibrationStart)] {
                guard let file else { continue }
                let items = try TaskFile.multipleChoice(task: task, path: file, labels: try TaskFile.labelsBeside(data: file, task: task)).count
                guard items > start else {
                    throw ShadowError.invalidArgument(name: "--data-dir", reason: "\(file) has \(counted(items, "item")); the pipeline calibrates on its items \(start)+ and evaluates the first --limit, so it needs more than \(start)")
                }
            }
            if data.piqa == nil && data.hellaswag == nil {
                let absolute = RunSettings.absolute(dataDir)
                console.printError("pipeline: no PIQA or HellaSwag under --data-dir \(dataDir)\(absolute == dataDir ? "" : " (\(absolute))"); the report has perplexity and speed only")
            }
        }

        func path(_ name: String) -> String { (out as NSString).appendingPathComponent(name) }
        func exists(_ name: String) throws -> Bool { try fileKind(atPath: path(name)) != nil }
        /// A window size cut to the model's context.
        func fit(_ n: Int) -> String { String(min(n, maxContext)) }

        var settings: RunSettings {
            var taskFiles: [String: String] = [:]
            if let piqa = data.piqa { taskFiles["piqa"] = RunSettings.absolute(piqa) }
            if let hellaswag = data.hellaswag { taskFiles["hellaswag"] = RunSettings.absolute(hellaswag) }
            return RunSettings(model: fingerprint, quick: quick, samples: samples, limit: taskFiles.isEmpty ? nil : itemLimit,
                               sparsity: sparsity, calibrationText: RunSettings.absolute(calibrationText),
                               heldOutText: RunSettings.absolute(heldOut), tasks: taskFiles, heldOutPart: sharesText ? "end" : nil)
        }

        /// The rows of the report: dense and each predictor's method at --sparsity.
        var methods: [(name: String, sparsity: Double)] { [("dense", 0)] + predictorKinds.map { ($0, sparsity) } }

        var heldOutSample: String { path("heldout-sample.txt") }
        /// The text calibration reads: with one text for both, all of it but the held-out end.
        var calibrationFile: String { sharesText ? path("calibration-text.txt") : calibrationText }

        /// The held-out text: a slice of WikiText-2 test (cut at a line end; the whole set would
        /// take half an hour per method here), or with one text for both, its end, which
        /// calibration then never reads.
        func writeTextParts() throws {
            guard try !exists("heldout-sample.txt") || (sharesText && !exists("calibration-text.txt")) else { return }
            let text = try utf8Text([UInt8](try readWholeFile(heldOut, acceptingStreams: true)), path: heldOut)
            if sharesText {
                let (head, tail) = splitOffTail(text, bytes: heldOutBytes)
                try AtomicFile.write(head, to: calibrationFile)
                try AtomicFile.write(tail, to: heldOutSample)
            } else {
                try AtomicFile.write(SweepCommand.subset(text, bytes: heldOutBytes), to: heldOutSample)
            }
        }

        var calibrateArguments: [String] {
            get throws {
                var sources: [String] = []
                if let piqa = data.piqa { sources.append("piqa:\(piqa)@\(calibrationStart)-1838") }
                if let hellaswag = data.hellaswag { sources.append("hellaswag:\(hellaswag)@\(hellaswagCalibrationStart)-10042") }
                sources.append("text:\(calibrationFile)")
                // Prompt length and shots apply to the task sources only (calibrate refuses them without one).
                let taskOptions = sources.count > 1 ? ["--max-tokens", fit(quick ? 160 : 256), "--shots", quick ? "2" : "5"] : []
                return ["calibrate", "--model", model, "--source", sources.joined(separator: ","), "--samples", String(samples),
                        "--criteria", "plainact,l2_norm", "--text-window", fit(128), "--text-continuation", String(textContinuation)]
                    + taskOptions + ["--out", path("traces"), "--threads", threads] + progress
                    + (try exists("traces/manifest.json") ? ["--resume"] : [])
            }
        }

        /// Stored as f16: half the bytes (the DejaVu-style one of SmolLM2: 195 instead of 390 MB),
        /// the quality in the metadata measured on the rounded weights.
        func trainArguments(kind: String) -> [String] {
            let epochs = quick ? ["--head-epochs", "5", "--neuron-epochs", "2"] : ["--head-epochs", "60", "--neuron-epochs", "12"]
            return ["train-predictor", "--traces", path("traces"), "--kind", kind, "--criterion", criterionOf[kind]!,
                    "--out", path("predictors/\(kind).safetensors"), "--dtype", "f16", "--threads", threads, "--resume"]
                + epochs + progress
        }

        /// One sweep of dense and each predictor at --sparsity over the held-out text and the
        /// task slices. (PIQA's labels, valid-labels.lst beside the data, sweep finds by itself.)
        var sweepArguments: [String] {
            var tasks = [("wikitext", heldOutSample)]
            if let piqa = data.piqa { tasks.append(("piqa", piqa)) }
            if let hellaswag = data.hellaswag { tasks.append(("hellaswag", hellaswag)) }
            return ["sweep", "--model", model, "--out", path("sweep"), "--threads", threads,
                    "--tasks", tasks.map(\.0).joined(separator: ","),
                    "--data", tasks.map { "\($0.0)=\($0.1)" }.joined(separator: ","),
                    "--methods", predictorKinds.map { "\($0):\(criterionOf[$0]!)" }.joined(separator: ","), "--sparsities", String(sparsity),
                    "--predictor", path("predictors"), "--traces", path("traces"),
                    "--limit", String(itemLimit), "--text-bytes", "0", "--context", fit(quick ? 128 : 512)] + progress
        }

        var benchArguments: [String] {
            ["bench", "--model", model, "-p", fit(quick ? 64 : 512), "-n", fit(quick ? 32 : 128), "-r", quick ? "1" : "3",
             "-t", threads, "--method", methods.map(\.name).joined(separator: ","), "--sparsity", String(sparsity), "--weights", "f16,q8",
             "--predictor", path("predictors"), "-o", "json", "--no-progress"]
        }
    }

    /// Runs the steps in-process, each skipped when its output is already there, and keeps what
    /// each took.
    struct StepRunner {
        let plan: Plan
        let console: Console
        private(set) var steps: [Step] = []
        /// A continued run reports the steps it skips with the times they took when they ran.
        private let earlierSeconds: [String: Double]

        init(plan: Plan, console: Console) {
            self.plan = plan
            self.console = console
            earlierSeconds = ((try? PipelineCommand.readJSON(plan.path("results.json")))?["steps"] as? [[String: Any]] ?? [])
                .reduce(into: [String: Double]()) { seconds, step in
                    if let name = step["name"] as? String, let taken = step["seconds"] as? Double, taken > 0 { seconds[name] = taken }
                }
        }

        /// Runs a subcommand in-process, capturing its stdout (kept as `output` when that is a
        /// JSON file); errors stop the pipeline.
        mutating func run(_ name: String, _ arguments: [String], output: String? = nil) throws {
            if let output, try plan.exists(output) {
                console.printError("pipeline: \(name) — already done (\(plan.path(output)))")
                steps.append(Step(name: name, seconds: earlierSeconds[name] ?? 0, skipped: true))
                return
            }
            console.printError("pipeline: \(name) …")
            let box = CapturedText()
            let start = Date()
            // A step's own "interrupted: … continue with --resume" would name an option pipeline has
            // not; pipeline says how to continue instead.
            let err = console.err
            let status = CLI.run(arguments, console: Console(out: { box.out += $0 }, err: { if !$0.hasPrefix("interrupted: ") { err($0) } },
                                                             errIsTerminal: console.errIsTerminal))
            if status == CLI.interruptedStatus {
                throw ShadowError.interrupted("pipeline stopped during \(name); run it again with the same --out to continue")
            }
            guard status == 0 else { throw ShadowError.failed("pipeline: step \(name) failed (see the error above)") }
            if let output, output.hasSuffix(".json") { try AtomicFile.write(box.out, to: plan.path(output)) }
            steps.append(Step(name: name, seconds: Date().timeIntervalSince(start), skipped: false))
        }
    }

    /// What the sweep measured, per method of the report.
    struct Evaluated {
        struct Method {
            var perplexity: Double?
            var tasks: [String: Double] = [:]
            /// Realised head and neuron sparsity of each task evaluated.
            var realisedHeads: [Double] = [], realisedNeurons: [Double] = []
        }
        var methods: [String: Method] = [:]
        /// Items scored per multiple-choice task.
        var items: [String: Int] = [:]
    }

    /// The sweep's rows of the report's methods. The outputs of finished steps may come from an
    /// earlier run: one that cannot be read is named, never taken as "no numbers".
    static func readSweep(_ plan: Plan) throws -> Evaluated {
        let sweepRows = try readStepOutput(plan.path("sweep/results.json"), step: "evaluate (sweep)", output: "sweep") { json in
            let rows = json["rows"] as? [[String: Any]]
            for row in rows ?? [] {
                let metrics = row["metrics"] as? [String: Any] ?? [:]
                for key in ["acc", "acc_norm"] { try PlausibleNumber.check(metrics[key], key: key, in: 0...1, "a fraction from 0 to 1") }
                try PlausibleNumber.check(metrics["token_perplexity"], key: "token_perplexity", in: 1...Double.greatestFiniteMagnitude, "a finite perplexity of 1 or more")
                for key in ["realised_head_sparsity", "realised_neuron_sparsity"] { try PlausibleNumber.check(row[key], key: key, in: 0...1, "a fraction from 0 to 1") }
                try PlausibleNumber.check(row["n"], key: "n", in: 0...Double(Int32.max), "a count of items")
            }
            return rows
        }
        var evaluation = Evaluated()
        for sweepRow in sweepRows {
            // A metric may be null (the standard error of one item).
            guard let method = sweepRow["method"] as? String, let task = sweepRow["task"] as? String,
                  let metrics = (sweepRow["metrics"] as? [String: Any])?.compactMapValues({ $0 as? Double }) else { continue }
            guard method == "dense" || sweepRow["criterion"] as? String == criterionOf[method] else { continue }
            if task == "wikitext" {
                evaluation.methods[method, default: .init()].perplexity = metrics["token_perplexity"]
            } else {
                for key in ["acc", "acc_norm"] { evaluation.methods[method, default: .init()].tasks["\(task)_\(key)"] = metrics[key] }
                if let n = sweepRow["n"] as? Int { evaluation.items[task] = n }
            }
            if method != "dense", let heads = sweepRow["realised_head_sparsity"] as? Double {
                evaluation.methods[method, default: .init()].realisedHeads.append(heads)
                if let neurons = sweepRow["realised_neuron_sparsity"] as? Double { evaluation.methods[method, default: .init()].realisedNeurons.append(neurons) }
            }
        }
        return evaluation
    }

    /// Each method's greedy reply to the plan's question (none when it leaves no room in the
    /// model's context).
    static func generateReplies(_ plan: Plan, steps: inout StepRunner, console: Console) throws -> [String: String] {
        guard let generation = plan.generation else {
            console.printError("pipeline: no replies to show: the question leaves no room in the model's context")
            return [:]
        }
        var generated: [String: String] = [:]
        try AtomicFile.createDirectory(plan.path("generated"))
        for (method, p) in plan.methods {
            let output = "generated/\(method).json"
            let sparse = method == "dense" ? [] : ["--method", method, "--sparsity", String(p), "--predictor", plan.path("predictors")]
            // Seconds of work: a reply to another question (an earlier version's) is redone, not shown.
            if try plan.exists(output), let why = Self.staleness(ofReply: plan.path(output), to: generation) {
                console.printError("pipeline: \(plan.path(output)) \(why); generating it again")
                try FileManager.default.removeItem(atPath: plan.path(output))
            }
            try steps.run("generate (\(method))", ["generate", "--model", plan.model, "--threads", plan.threads, "--json"] + generation.arguments + sparse,
                          output: output)
            generated[method] = try readStepOutput(plan.path(output), step: "generate (\(method))", output: output) { $0["text"] as? String }
        }
        return generated
    }

    /// The predictor's quality and size, from `predictor info --json` (what users would run).
    static func predictorSummary(_ file: String) throws -> PredictorQualitySummary {
        let box = CapturedText(), errors = CapturedText()
        guard CLI.run(["predictor", "info", file, "--json"],
                      console: Console(out: { box.out += $0 }, err: { errors.out += $0 })) == 0,
              let json = try? JSONSerialization.jsonObject(with: Data(box.out.utf8)) as? [String: Any] else {
            let why = errors.out.split(separator: "\n").first.map { String($0.dropFirst($0.hasPrefix("error: ") ? 7 : 0)) }
            throw ShadowError.failed("pipeline: \(why ?? "\(file): unreadable") (left by an earlier run? remove it and run again to retrain)")
        }
        let quality = json["quality"] as? [String: Any]
        func recallAtHalf(_ unit: String) -> [String: Double]? {
            guard let unit = quality?[unit] as? [String: Any] else { return nil }
            let values = ["global": (unit["recall"] as? [String: Double])?["0.5"], "local": (unit["recall_local"] as? [String: Double])?["0.5"]]
                .compactMapValues { $0 }
            return values.isEmpty ? nil : values.merging(["sparsity": 0.5]) { mine, _ in mine }
        }
        return PredictorQualitySummary(
            headSpearman: (quality?["heads"] as? [String: Any])?["spearman"] as? Double,
            neuronSpearman: (quality?["neurons"] as? [String: Any])?["spearman"] as? Double,
            parameters: (json["parameters"] as? [String: Any])?["total"] as? Int,
            trainingSeconds: (json["training"] as? [String: Any])?["seconds"] as? Double,
            headRecall: recallAtHalf("heads"), neuronRecall: recallAtHalf("neurons"))
    }

    /// results.json, report.md and plots.svg from the steps' outputs, and the summary on stdout.
    static func writeReport(_ plan: Plan, steps: [Step], evaluation: Evaluated, generated: [String: String], console: Console) throws {
        let bench = try readStepOutput(plan.path("bench.json"), step: "bench", output: "bench.json") { json in
            let rows = json["results"] as? [[String: Any]]
            for row in rows ?? [] {
                try PlausibleNumber.check(row["tokens_per_second"], key: "tokens_per_second", in: Double.leastNonzeroMagnitude...1e9, "a speed above 0 and below 10⁹ tokens per second")
                try PlausibleNumber.check(row["predictor_share"], key: "predictor_share", in: 0...1, "a fraction from 0 to 1")
                try PlausibleNumber.check(row["bytes_per_token"], key: "bytes_per_token", in: 0...Double(1 << 50), "a count of bytes")
            }
            return rows
        }
        var rows: [Row] = []
        for (method, p) in plan.methods {
            let evaluated = evaluation.methods[method]
            var row = Row(method: method, sparsity: p)
            // The masks differ from task to task: the mean over the tasks evaluated.
            row.realisedHeadSparsity = SweepReport.mean(evaluated?.realisedHeads ?? [])
            row.realisedNeuronSparsity = SweepReport.mean(evaluated?.realisedNeurons ?? [])
            row.perplexity = evaluated?.perplexity
            row.tasks = evaluated?.tasks ?? [:]
            row.generatedText = generated[method]
            row.fillSpeeds(from: bench)
            rows.append(row)
        }
        var predictors: [String: PredictorQualitySummary] = [:]
        for kind in predictorKinds { predictors[kind] = try predictorSummary(plan.path("predictors/\(kind).safetensors")) }
        let heldOutText = plan.sharesText
            ? "\(plan.heldOut) (its last \(plan.heldOutBytes / 1000) KB at most, which calibration did not read)"
            : "\(plan.heldOut) (first \(plan.heldOutBytes / 1000) KB)"
        var results = Results(model: plan.model, date: ISO8601DateFormatter().string(from: Date()), machine: Machine.description,
                              quick: plan.quick, samples: plan.samples, sparsity: plan.sparsity, heldOutText: heldOutText, steps: steps,
                              rows: rows, predictors: predictors)
        results.items = evaluation.items
        results.benchTests = bench.compactMap { $0["test"] as? String }.droppingRepeats()
        results.generation = plan.generation
        let q8Asked = bench.filter(Row.askedForQ8)
        if q8Asked.isEmpty {
            results.notes.append("\(plan.path("bench.json")) is from a run that benched f16 only; remove it to bench q8 too")
        } else if let kept = (q8Asked.first?["weights"] as? String).flatMap(WeightDType.init(rawValue:)),
                  let why = WeightDType.q8.fallbackReason(stored: kept) {
            results.notes.append("no q8 column: bench kept \(plan.model) as \(kept.rawValue) when asked for q8 (\(why))")
        }
        for note in results.notes { console.printError("pipeline: \(note)") }
        try AtomicFile.write(try JSONOutput.string(results) + "\n", to: plan.path("results.json"))
        try AtomicFile.write(PipelineReport.markdown(results), to: plan.path("report.md"))
        try AtomicFile.write(PipelineReport.svg(results), to: plan.path("plots.svg"))
        console.print(PipelineReport.summary(results))
        console.print("report: \(plan.path("report.md")), \(plan.path("results.json")), \(plan.path("plots.svg"))")
    }

    /// `text` cut in two at a line start: the end, about `bytes` bytes and at most half of it, and
    /// what comes before, so that the held-out part is never calibrated on.
    static func splitOffTail(_ text: String, bytes: Int) -> (head: String, tail: String) {
        let utf8 = Array(text.utf8)
        var start = max(utf8.count - min(bytes, utf8.count / 2), 0)
        if let newline = utf8[start...].firstIndex(of: UInt8(ascii: "\n")), newline + 1 < utf8.count {
            start = newline + 1
        } else {
            while start < utf8.count && utf8[start] & 0xC0 == 0x80 { start += 1 }   // not inside a multi-byte character
        }
        return (String(decoding: utf8[..<start], as: UTF8.self), String(decoding: utf8[start...], as: UTF8.self))
    }

    /// A text the run will read: there, UTF-8, and not blank. A pipe or a device is only checked
    /// to be there: reading it here would leave nothing for the step that uses it.
    static func requireText(_ path: String, option: String) throws {
        try ModelOptions.requireFile(path, option: String(option.drop(while: { $0 == "-" })))
        guard try fileKind(atPath: path) == .regularFile else { return }
        let text: String
        do {
            text = try utf8Text([UInt8](try readWholeFile(path)), path: path)
        } catch ShadowError.corruptFile(_, let reason) {
            // The check every text file gets, named by the option that gave the path.
            throw ShadowError.invalidArgument(name: option, reason: "\(path) \(reason)")
        }
        if text.allSatisfy(\.isWhitespace) {
            throw ShadowError.invalidArgument(name: option, reason: "\(path) holds no text")
        }
    }

    /// Why a reply an earlier run left is not the one this run asks for: another prompt or
    /// template, or another length. Nil when it is, and when the file cannot be read
    /// (`readStepOutput` names it then).
    static func staleness(ofReply path: String, to generation: Generation) -> String? {
        guard let json = try? readJSON(path) else { return nil }
        if json["prompt_tokens"] as? [Int] != generation.promptTokens { return "answers another prompt" }
        let count = (json["tokens"] as? [Any])?.count ?? 0
        let stopped = ["stopped_at_eos", "stopped_at_stop", "stopped_at_context"].contains { json[$0] as? Bool == true }
        if count > generation.maxTokens || (count < generation.maxTokens && !stopped) {
            return "holds \(counted(count, "token")), not \(generation.maxTokens)"
        }
        return nil
    }

    /// What `extract` finds in a finished step's JSON output; a file that is missing, not JSON or
    /// without it is an error naming the file and the directory or file to remove.
    static func readStepOutput<T>(_ path: String, step: String, output: String, _ extract: ([String: Any]) throws -> T?) throws -> T {
        let json: [String: Any]
        do {
            json = try readJSON(path)
        } catch {
            throw ShadowError.failed("pipeline: the \(step) step's output cannot be read: \(error); remove \(output) in --out and run again to redo the step")
        }
        let extracted: T?
        do {
            extracted = try extract(json)
        } catch let PlausibleNumber.Failure.outside(key, value, expected) {
            throw ShadowError.failed("pipeline: \(path) from the \(step) step holds \(key) \(value), not \(expected); "
                                     + "remove \(output) in --out and run again to redo the step")
        }
        guard let value = extracted else {
            throw ShadowError.failed("pipeline: \(path) from the \(step) step does not hold its results; remove \(output) in --out and run again to redo the step")
        }
        return value
    }

    /// A number read from a finished step's JSON, checked to lie where that step's numbers lie:
    /// an output edited or damaged since would otherwise reach the report as a 300-digit speed
    /// or "inf%". (Absent and null pass: the reading code treats them as missing.)
    enum PlausibleNumber {
        enum Failure: Error { case outside(key: String, value: String, expected: String) }

        static func check(_ value: Any?, key: String, in range: ClosedRange<Double>, _ expected: String) throws {
            guard let value, !(value is NSNull) else { return }
            if let number = value as? Double, range.contains(number) { return }
            let shown = (value as? Double).map { String($0) } ?? "\"\(value)\""
            throw Failure.outside(key: key, value: shown, expected: expected)
        }
    }

    static func readJSON(_ path: String) throws -> [String: Any] {
        // Regular files of at most 64 MiB: the steps write a few kilobytes each.
        let data = try readWholeFile(path, limit: 64 << 20)
        guard let parsed = try? JSONSerialization.jsonObject(with: data) else {
            throw ShadowError.badJSON(path: path, key: nil, reason: JSONParser.syntaxError(in: [UInt8](data)) ?? "not JSON")
        }
        guard let json = parsed as? [String: Any] else {
            throw ShadowError.badJSON(path: path, key: nil, reason: "not a JSON object")
        }
        return json
    }
}

/// The evaluation files of a data directory laid out like ../shared/data.
struct DataFiles {
    let directory: String

    private func file(_ relative: String) -> String? {
        let path = (directory as NSString).appendingPathComponent(relative)
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    var piqa: String? { file("piqa/valid.jsonl") }
    var hellaswag: String? { file("hellaswag/hellaswag_val_full.txt") }
    var wikitextTest: String? { file("wikitext-2/test.txt") }
    var wikitextValid: String? { file("wikitext-2/valid.txt") }

    /// The plain-text corpus scripts/setup.sh fetches from PyPI (gensim's lee_background.cor).
    static var fetchedCorpus: String? {
        FileManager.default.fileExists(atPath: fetchedCorpusPath) ? fetchedCorpusPath : nil
    }

    static var fetchedCorpusPath: String { DefaultModel.cacheDirectory + "/data/lee_background.cor" }
}
