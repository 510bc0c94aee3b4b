import Foundation
import ShadowEval
import ShadowFormats
import ShadowModels
import ShadowSparsity
import ShadowTasks

/// `shadowllm sweep`: tasks × methods × criteria × sparsities, plus the dense model, in one
/// resumable run, with `results.json`, a Markdown report and SVG plots.
enum SweepCommand {
    struct Results: Codable {
        var model: String
        var date: String
        var machine: String
        var command: String
        /// Every command whose cells the results hold, oldest first (the last is `command`).
        var commands: [String]
        var settings: String
        var seconds: Double
        var rows: [SweepRow]
        var skipped: [String]
        /// The units the sparsities prune.
        var units: SweepUnits
        /// Mean per-sample head importance (L × H) per criterion of the traces, for the heat map.
        var headImportance: [String: [[Float]]]

        enum CodingKeys: String, CodingKey {
            case model, date, machine, command, commands, settings, seconds, rows, skipped, units
            case headImportance = "head_importance"
        }
    }

    static let command = Command(
        name: "sweep", abstract: "Evaluate tasks × methods × criteria × sparsities (and dense) in one resumable run, with reports and plots.",
        discussion: """
            Cells: the dense model, then for every method and sparsity one cell per criterion — static masks from \
            that criterion's aggregate scores in --traces, shadow/dejavu masks from the predictor trained on that \
            criterion (found among --predictor files and directories; a missing one is skipped and listed), oracle \
            masks from that criterion computed on each question (a backward pass each: slow, an upper bound), random \
            masks once. Every item runs the dense model once, shared by all sparse cells (which also report KL \
            divergence and top-1 agreement against it, except on WikiText). The state is saved to OUT/sweep-state.json after every \
            chunk of items, so a killed sweep run again with the same command continues where it stopped; cells \
            added to a finished sweep run alone and join the earlier cells in the report (those that cover as many \
            items), and a larger --limit extends every cell given (not with --shots, whose examples come from outside the slice). Writes OUT/results.json, OUT/report.md, OUT/sweep.svg \
            (metric against sparsity, one panel per task) and, with --traces, OUT/heads.svg (mean head importance per layer).
            """,
        options: ModelOptions.prefillOptions + [
            .value("out", short: "o", "dir", help: "Where the state, results and plots go.", default: "shadowllm-sweep"),
            .value("tasks", "names", help: "Tasks to evaluate.", default: "piqa,hellaswag,wikitext",
                   allowed: TaskName.allCases.map(\.rawValue), list: true),
            .value("data-dir", "dir", help: "Finds piqa/, hellaswag/ and wikitext-2/ files laid out as in ../shared/data.",
                   default: "../shared/data"),
            .value("data", "task=path,...", help: "Task files, overriding --data-dir (needed for the other tasks)."),
            .value("labels", "task=path,...", help: "Label files (PIQA, Winogrande) when the data file has none.", defaultDescription: "NAME-labels.lst beside a task's NAME.jsonl, when there (--verbose names it)"),
            .value("methods", "names", help: "Mask sources (\(MaskMethod.sparseNames.joined(separator: ", "))); dense is always included. METHOD:CRITERION runs that method with that criterion only (e.g. shadow:plainact,dejavu:l2_norm), the others with each of --criteria.",
                   default: "static,shadow,dejavu"),
            .value("criteria", "names", help: "Criteria of the static scores and of the predictors' targets.",
                   default: "plainact,l2_norm", allowed: Criterion.allCases.map(\.rawValue), list: true),
            .value("sparsities", "p,...", help: "Sparsities of the pruned units.", default: "0.3,0.5,0.7"),
            .value("units", "which", help: "What the sparsities prune: both, or heads (neurons dense; the heads-only criteria jacov and epenas need it) or neurons alone.",
                   default: SweepUnits.both.rawValue, allowed: SweepUnits.allCases.map(\.rawValue)),
            .value("traces", "dir", help: "static / heat map: a trace directory from calibrate holding the criteria."),
            .value("predictor", "paths", help: "shadow / dejavu: predictor files or directories of them (e.g. a pipeline's predictors/)."),
            .value("policy", "name", help: "How scores become masks (static, shadow, oracle, random; dejavu always selects per layer).", default: MaskPolicy.global.rawValue,
                   allowed: MaskPolicy.allCases.map(\.rawValue)),
            SparsityOptions.hybridFloorOption,
            .value("mask-mode", "mode", help: "causal: one mask per question from its context; per-choice: one per choice.",
                   default: MaskMode.causal.rawValue, allowed: MaskMode.allCases.map(\.rawValue)),
            .value("limit", "n", help: "Items per task (multiple choice and LAMBADA; WikiText's share is --text-bytes).", default: "1000"),
            .value("offset", "k", help: "Skip the first k items of each task file (not WikiText, whose --text-bytes subset starts at the file's start).", default: "0"),
            .value("shots", "k", help: "Few-shot examples per question, drawn as eval --shots draws them.", default: "0"),
            .value("seed", "n", help: "Seed of the few-shot draw.", default: "1234"),
            .value("mask-seed", "n", help: "random: the seed of the random scores.", default: "0"),
            .value("text-bytes", "n", help: "WikiText: score the first n bytes of the file (cut at a line end); 0 for the whole text.",
                   default: "60000"),
            .flag("as-stored", help: "Read WikiText and HellaSwag as the files store them, as sweeps did before 2026-12-04 (and as eval --as-stored does): WikiText without lm-eval's detokenizer, HellaSwag's ctx_b as written (llama.cpp's text: \"… on a roof. he\") rather than capitalised as lm-eval's. Resumes a sweep begun before then."),
            .flag("detokenize", help: "WikiText: lm-eval's detokenizer, the default since 2026-12-04 (accepted for older commands)."),
            .value("context", short: "c", "n", help: "WikiText: window length in tokens.", defaultDescription: "512, or the model's context if smaller"),
            .flag("json", help: "Print results.json instead of the Markdown table."),
            .flag("no-progress", help: "Hide the progress bar."),
        ],
        interruptible: true
    ) { arguments, console in
        try run(arguments, console: console)
    }

    static func run(_ arguments: ParsedArguments, console: Console) throws {
        let out = try arguments.required("out")
        let options = try Options(arguments)
        if arguments.flag("verbose") {
            let given = Set((try arguments.list("labels") ?? []).map { String($0.prefix { $0 != "=" }) })
            for task in options.tasks {
                if let labels = task.labels {
                    console.printLabels("sweep", task: task.task.rawValue, labels: labels, data: task.path, given: given.contains(task.task.rawValue))
                }
            }
        }
        // Every input is read before the model is loaded, so a bad file fails fast.
        let taskInputs = try readTasks(options)
        let tracesPath = arguments.string("traces")
        let traces = try readStaticScores(tracesPath, options: options, console: console)

        let loaded = try ModelOptions.load(arguments, console: console)
        let model = loaded.model
        let tokenizer = try loaded.requireTokenizer()
        let fingerprint = try ModelFingerprint(loaded: loaded)
        // Scores of another model's units would index past this model's layers and heads.
        if let tracesPath, let tracesModel = traces.model { try fingerprint.check(matches: tracesModel, what: tracesPath) }
        let context = try arguments.int("context", range: 1...1_000_000) ?? min(512, model.shape.maxContext)
        guard context <= model.shape.maxContext else {
            throw ShadowError.invalidArgument(name: "--context", reason: "\(context) exceeds \(model.contextDescription)")
        }
        let sources = MaskSources(tracesPath: tracesPath, aggregates: traces.aggregates,
                                  predictors: try discoverPredictors(try arguments.list("predictor") ?? [], fingerprint: fingerprint))
        let (cells, skipped) = try plannedCells(options, sources: sources)
        for line in skipped { console.printError("sweep: skipped \(line)") }
        for cell in cells {
            // "warning: random (plainact): head sparsity …": the cell named after the warning's prefix.
            let name = cell.method + (cell.criterion.map { " (\($0))" } ?? "")
            for line in try SparsityOptions.sparsityWarnings(method: cell.method, settings: options.settings(sparsity: cell.sparsity), shape: model.shape) {
                let prefix = "warning: "
                console.printError(line.hasPrefix(prefix) ? prefix + name + ": " + line.dropFirst(prefix.count) : line)
            }
        }

        // The resumable state, checked against the settings that change numbers.
        try OutputDirectory.refuseForeign(out, holding: "sweep", inputs: options.tasks.flatMap { [$0.path, $0.labels ?? ""] }
                                          + [tracesPath ?? ""] + (try arguments.list("predictor") ?? [])) { $0 == Self.stateFile }
        try AtomicFile.createDirectory(out)
        let settings = settingsLine(options, model: fingerprint, weights: try arguments.required("weights"), context: context,
                                    longContext: arguments.flag("long-context"))
        var state = try resumedState(out: out, settings: settings, options: options, cells: cells, sources: sources, shape: model.shape)
        func save(_ state: SweepState) throws {
            try AtomicFile.write(try JSONOutput.string(state) + "\n", to: path(stateFile, in: out))
        }

        let runnable: [SweepTask] = taskInputs.map { input in
            switch input {
            case .ready(let task): task
            case .text(let name, let text): .perplexity(name: name.rawValue, text: text, context: context)
            }
        }
        let runner = SweepRunner(model: model, tokenizer: tokenizer, maskMode: options.maskMode, shots: options.shots,
                                 seed: options.seed, detokenizeWikiText: options.detokenize)
        let talliesBefore = state.tallies
        let total = try runnable.reduce(0) { $0 + (try runner.work($1, cells: cells.count)) }
        // No `started:`: each task reports before its first unit, and a resumed sweep's first report
        // holds the cells it found done, a baseline rather than work of this run.
        let bar = ProgressBar(console: console, label: "sweep", total: total, enabled: !arguments.flag("no-progress"))
        var done = 0
        let start = Date()
        for task in runnable {
            var taskDone = 0
            try runner.run(task, cells: cells, state: &state,
                           makeController: { try sources.controller(for: $0, options: options, loaded: loaded) }, save: save) { units in
                taskDone += units
                bar.update(done + taskDone, detail: task.name)
            }
            done += try runner.work(task, cells: cells.count)
        }

        // The report holds this command's cells and the finished cells of earlier commands in --out.
        var rows: [SweepRow] = []
        for task in runnable {
            for cell in state.reportedCells(task: task.name, requested: cells) {
                rows.append(SweepRow(task: task, cell: cell, tally: state.tally(task: task.name, cell: cell)))
            }
        }
        let command = (["shadowllm", "sweep"] + arguments.given.map(shellQuoted)).joined(separator: " ")
        // A command that only re-reports (every cell already done) filled nothing.
        if state.tallies != talliesBefore || (state.commands ?? []).isEmpty { state.record(command: command) }
        // The heat map and the skipped cells of earlier commands stay in the report: a later
        // command may add cells without --traces, or run a cell an earlier one skipped.
        if !traces.aggregates.isEmpty {
            state.headImportance = (state.headImportance ?? [:]).merging(traces.aggregates.mapValues(\.headsPerSample)) { $1 }
        }
        let ran = Set(rows.map(\.cell.series))
        let earlierSkipped = (state.skipped ?? []).filter { line in !ran.contains(String(line.prefix { $0 != ":" })) }
        state.skipped = earlierSkipped + skipped.filter { !earlierSkipped.contains($0) }
        try save(state)
        let seconds = state.tallies.values.flatMap(\.values).reduce(0) { $0 + $1.seconds }
        let results = Results(model: loaded.path, date: ISO8601DateFormatter().string(from: Date()), machine: Machine.description,
                              command: command, commands: state.commands ?? [command], settings: settings,
                              seconds: max(seconds, Date().timeIntervalSince(start)), rows: rows, skipped: state.skipped ?? [],
                              units: options.units, headImportance: state.headImportance ?? [:])
        try writeReports(results, out: out, maxContext: model.shape.maxContext, json: arguments.flag("json"), console: console)
    }

    /// A file of the sweep's directory.
    static func path(_ name: String, in out: String) -> String { (out as NSString).appendingPathComponent(name) }

    /// What each task reads, before the model is loaded: items and their slice, or WikiText's
    /// text (its first --text-bytes), which becomes a task once --context is known.
    enum TaskInput {
        case ready(SweepTask)
        case text(name: TaskName, String)
    }

    /// Each task's input, read and checked before the model is loaded.
    static func readTasks(_ options: Options) throws -> [TaskInput] {
        var inputs: [TaskInput] = []
        for (task, path, labels) in options.tasks {
            switch task {
            case .wikitext:
                let text = subset(try TaskFile.wikitext(path: path), bytes: options.textBytes)
                // (The reader refuses a file of only white space; a cut can still leave only that.)
                guard text.contains(where: { !$0.isWhitespace }) else {
                    throw ShadowError.invalidArgument(name: "--text-bytes", reason: "the first \(options.textBytes) bytes of \(path), cut at a line end, hold only white space; give more, or 0 for the whole text")
                }
                inputs.append(.text(name: task, text))
            case .lambada:
                let items = Evaluation.lambadaItems(try TaskFile.lambada(path: path))
                let range = try Evaluation.slice(count: items.count, offset: options.offset, limit: options.limit)
                try options.checkShots(items: items, range: range, task: task, path: path)
                inputs.append(.ready(.lambada(items: items, range: range)))
            default:
                let items = try TaskFile.multipleChoice(task: task, path: path, labels: labels, asStored: options.asStored)
                let range = try Evaluation.slice(count: items.count, offset: options.offset, limit: options.limit)
                try options.checkShots(items: items, range: range, task: task, path: path)
                inputs.append(.ready(.multipleChoice(name: task.rawValue, items: items, range: range)))
            }
        }
        return inputs
    }

    /// The aggregate scores of --traces for the criteria the command names (one at least, for
    /// the heat map), and the model the traces were computed on.
    static func readStaticScores(_ tracesPath: String?, options: Options, console: Console) throws
        -> (aggregates: [String: AggregateImportance], model: ModelFingerprint?) {
        guard let tracesPath else {
            if options.methods.contains("static") {
                throw ShadowError.invalidArgument(name: "--traces", reason: "is required by the static method (a trace directory from calibrate)")
            }
            return ([:], nil)
        }
        let manifest = try TraceManifest.load(directory: tracesPath)
        if !manifest.complete {
            console.printError("warning: \(tracesPath) is not complete (\(counted(manifest.sampleCount, "sample")) so far; finish it with calibrate --resume)")
        }
        var aggregates: [String: AggregateImportance] = [:]
        for criterion in manifest.criteria where options.allNamedCriteria.contains(criterion) || aggregates.isEmpty {
            aggregates[criterion] = try AggregateImportance(traces: tracesPath, criterion: criterion)
        }
        return (aggregates, manifest.model)
    }

    /// The cells: dense, then every method × criterion × sparsity that has a mask source; and
    /// why the others are skipped.
    static func plannedCells(_ options: Options, sources: MaskSources) throws -> (cells: [SweepCell], skipped: [String]) {
        var cells = [SweepCell.dense], skipped: [String] = []
        for method in options.methods {
            let cellCriteria: [String?] = method == "random" ? [nil] : options.criteria(of: method).filter { criterion in
                guard let reason = sources.unavailableReason(method: method, criterion: criterion, units: options.units) else { return true }
                skipped.append("\(method) (\(criterion)): \(reason)")
                return false
            }
            for criterion in cellCriteria {
                for p in options.sparsities { cells.append(SweepCell(method: method, criterion: criterion, sparsity: p)) }
            }
        }
        // Asked for sparse cells and none can run: the dense row alone answers nothing asked.
        if cells.count == 1 {
            throw ShadowError.invalidArgument(
                name: "--methods", reason: "none of the cells of \(options.methods.joined(separator: ",")) can run (\(skipped.isEmpty ? "no criteria" : skipped.joined(separator: "; ")))")
        }
        return (cells, skipped)
    }

    /// The settings that change numbers, as one line the state keeps: a sweep resumes only under
    /// the same line.
    static func settingsLine(_ options: Options, model: ModelFingerprint, weights: String, context: Int, longContext: Bool) -> String {
        ([
            "model \(model.contentHash)", "weights \(weights)",
            "offset \(options.offset)", "shots \(options.shots)", "seed \(options.seed)", "mask-mode \(options.maskMode.rawValue)",
            "policy \(options.policy.rawValue)", "hybrid-floor \(options.hybridFloor)", "mask-seed \(options.maskSeed)",
            "text-bytes \(options.textBytes)", "context \(context)", "units \(options.units.rawValue)",
            // The scoring rules of the 2026-12 lm-eval audit (acc_norm length, rolling windows,
            // WikiText article by article): a state scored under older rules must not be extended.
            "scoring lm-eval-2026-12-pages",
        ] + (longContext ? ["long-context"] : [])
          // Few-shot examples come from outside the --offset/--limit slice: another --limit gives
          // the items already scored other examples, so with shots the limit cannot grow.
          + (options.shots > 0 ? ["limit \(options.limit)"] : [])).joined(separator: "; ")
    }

    /// The state in --out when there is one (checked to be this command's sweep: same settings,
    /// task files, readings and mask sources, and no --limit below the items done), else a new
    /// one; with this command's sources recorded.
    static func resumedState(out: String, settings: String, options: Options, cells: [SweepCell],
                             sources: MaskSources, shape: TransformerShape) throws -> SweepState {
        let statePath = path(stateFile, in: out)
        var state = SweepState(settings: settings)
        // Each task file read once: checked against the state, then recorded in it.
        let digests = Dictionary(options.tasks.map { ($0.task.rawValue, Self.contentDigest($0)) }, uniquingKeysWith: { first, _ in first })
        if try fileKind(atPath: statePath) != nil {
            var saved = try ConfigDecoding.decode(SweepState.self, path: statePath)
            // States written before readings were kept per task said so in their settings.
            for (marker, task, value) in [("; wikitext detokenized", "wikitext", "detokenized"),
                                          ("; lambada shots lm-eval", "lambada", "shots lm-eval")]
            where saved.settings.contains(marker) {
                saved.settings = saved.settings.replacingOccurrences(of: marker, with: "")
                if saved.sources["task " + task] != nil { saved.sources["reading " + task] = value }
            }
            guard saved.settings == settings else {
                throw ShadowError.invalidArgument(
                    name: "--out",
                    reason: "\(out) holds a sweep with other settings (\(Self.settingsDifference(saved.settings, settings))); give another --out or remove \(statePath)")
            }
            // After the settings: a state of another model is that, not a heat map of the wrong size.
            try saved.validate(path: statePath, shape: shape)
            state = saved
            // Tasks can be added or left out; a task must keep its file (however its path is spelled).
            for task in options.tasks {
                if let old = state.sources["task " + task.task.rawValue], old != task.path,
                   AtomicFile.canonical(old) != AtomicFile.canonical(task.path) {
                    throw ShadowError.invalidArgument(name: "--data", reason: "\(out) evaluated \(task.task.rawValue) on \(old), not \(task.path); give another --out")
                }
                let name = task.task.rawValue
                // The same path with other contents: new items would join tallies of the old ones.
                if let old = state.sources["digest " + name], let now = digests[name] ?? nil, old != now {
                    throw ShadowError.invalidArgument(name: "--data", reason: "\(task.path)\(task.labels == nil ? "" : " (or its labels)") changed since \(out) evaluated \(name) on it; give another --out")
                }
                if state.sources["task " + name] != nil, let reading = options.reading(task.task) {
                    let before = state.sources["reading " + name] ?? reading.old
                    if before != reading.now {
                        let how = task.task == .lambada ? "give another --out"
                            : options.asStored ? "leave out --as-stored to continue it, or give another --out"
                            : "add --as-stored to continue it (as sweeps before 2026-12-04 read it), or give another --out"
                        throw ShadowError.invalidArgument(name: "--out", reason: "\(out) read \(name) \(before), this command \(reading.now); \(how)")
                    }
                }
            }
            for cell in cells {
                if let old = state.sources[cell.key], let new = sources.description(of: cell), old != new {
                    throw ShadowError.invalidArgument(name: "--out", reason: "\(out) computed \(cell.key) from \(old), not \(new); give another --out")
                }
            }
            // A larger --limit extends a sweep (items run in order); a smaller one cannot undo work.
            for (task, tallies) in state.tallies where task != "wikitext" {
                if let most = tallies.values.map(\.items).max(), most > options.limit {
                    throw ShadowError.invalidArgument(name: "--limit", reason: "\(out) already holds \(most) items of \(task); give --limit \(most) or more, or another --out")
                }
            }
        }
        for cell in cells { state.sources[cell.key] = sources.description(of: cell) }
        for task in options.tasks {
            state.sources["task " + task.task.rawValue] = task.path
            if let digest = digests[task.task.rawValue] ?? nil { state.sources["digest " + task.task.rawValue] = digest }
            if let reading = options.reading(task.task) { state.sources["reading " + task.task.rawValue] = reading.now }
        }
        return state
    }

    /// Written before any result: what marks a directory as a sweep's (results.json and report.md
    /// are common names).
    static let stateFile = "sweep-state.json"

    /// The contents of a task's file and labels file (states written before 2026-12-07 have none);
    /// nil where one is not a regular file (a pipe is read once).
    static func contentDigest(_ task: (task: TaskName, path: String, labels: String?)) -> String? {
        var digest = FNV1a()
        for path in [task.path] + (task.labels.map { [$0] } ?? []) {
            guard (try? fileKind(atPath: path)) == .regularFile, (try? digest.mixFile(path: path)) != nil else { return nil }
        }
        return digest.hex
    }

    /// results.json, report.md and the plots, written whole; then the warnings the results carry
    /// and the table (or the JSON) on standard output.
    static func writeReports(_ results: Results, out: String, maxContext: Int, json asJSON: Bool, console: Console) throws {
        let json = try JSONOutput.string(results)
        try AtomicFile.write(json + "\n", to: path("results.json", in: out))
        try AtomicFile.write(SweepReport.markdown(results), to: path("report.md", in: out))
        try AtomicFile.write(SweepReport.plots(results), to: path("sweep.svg", in: out))
        if !results.headImportance.isEmpty { try AtomicFile.write(SweepReport.heatMap(results), to: path("heads.svg", in: out)) }
        for cut in SweepReport.truncation(results) {
            console.printError("warning: \(cut.task): \(cut.items) of \(cut.of) items were longer than the model's context of \(maxContext) tokens and lost tokens from their start (as lm-eval truncates them); results.json counts them in truncated_items")
        }
        for row in results.rows {
            if let dense = row.denseMasks, dense > 0 {
                console.printError("warning: \(row.task) \(row.cell.key): \(dense) oracle masks ran dense (a prompt cut to one token gives no loss to score); its realised sparsity counts them, results.json in dense_masks")
            }
        }
        console.print(asJSON ? json : SweepReport.table(results).joined(separator: "\n"))
        if !asJSON {
            let written = ["report.md", "results.json", "sweep.svg"] + (results.headImportance.isEmpty ? [] : ["heads.svg"])
            console.print("report: " + written.map { path($0, in: out) }.joined(separator: ", "))
        }
    }

    /// Where the sparse cells' masks come from: the static scores of --traces and the predictors
    /// found among --predictor (oracle and random masks need neither).
    struct MaskSources {
        let tracesPath: String?
        let aggregates: [String: AggregateImportance]
        let predictors: [PredictorKey: (path: String, predictor: Predictor)]

        /// Why `method` cannot run `criterion` with these sources and units, or nil when it can.
        func unavailableReason(method: String, criterion: String, units: SweepUnits) -> String? {
            let prunesNeurons = units != .heads
            switch method {
            case "oracle":
                return Criterion(rawValue: criterion)!.headsOnly && prunesNeurons ? "scores heads only (--units heads)" : nil
            case "static":
                guard let aggregate = aggregates[criterion] else { return "\(tracesPath ?? "") has no \(criterion) scores" }
                return aggregate.neurons == nil && prunesNeurons ? "scores heads only (--units heads)" : nil
            default:
                guard let found = predictors[PredictorKey(kind: method, criterion: criterion)] else {
                    return "no such predictor among --predictor"
                }
                return !found.predictor.predictsNeurons && prunesNeurons ? "predicts heads only (--units heads)" : nil
            }
        }

        /// What a cell's masks are computed from, as the state records it: a resumed cell must
        /// keep its traces or predictor file. Nil for masks that need no file.
        func description(of cell: SweepCell) -> String? {
            switch cell.method {
            case "static": return "\(tracesPath ?? "") (\(aggregates[cell.criterion!]?.samples ?? 0) samples)"
            case let method where MaskMethod.predictorNames.contains(method):
                let path = predictors[PredictorKey(kind: cell.method, criterion: cell.criterion!)]!.path
                let attributes = try? FileManager.default.attributesOfItem(atPath: path)
                let modified = (attributes?[.modificationDate] as? Date).map { ISO8601DateFormatter().string(from: $0) } ?? "?"
                return "\(path) (\(attributes?[.size] as? Int ?? 0) bytes, modified \(modified))"
            default: return nil
            }
        }

        /// The masks of a cell (nil: dense). The cells were built from checked methods, criteria
        /// and the sources found for them.
        func controller(for cell: SweepCell, options: Options, loaded: LoadedModel) throws -> (any SparsityController)? {
            let shape = loaded.model.shape
            let settings = options.settings(sparsity: cell.sparsity)
            switch MaskMethod(rawValue: cell.method)! {
            case .dense:
                return nil
            case .random:
                return try SparsityOptions.fixedMasks(Masks.randomScores(shape: shape, seed: options.maskSeed), settings: settings, shape: shape)
            case .static:
                let aggregate = aggregates[cell.criterion!]!
                return try SparsityOptions.fixedMasks((aggregate.heads, aggregate.neurons), settings: settings, shape: shape)
            case .oracle:
                return try SparsityOptions.oracle(criterion: Criterion(rawValue: cell.criterion!)!, settings: settings, loaded: loaded)
            case .shadow, .dejavu, .dejavuLookahead:
                let found = predictors[PredictorKey(kind: cell.method, criterion: cell.criterion!)]!
                return try found.predictor.controller(settings: settings, shape: shape)
            }
        }
    }

    /// What differs between two settings lines ("name value; name value; …"), as
    /// "shots 0 → 1, long-context (none → given)": the entries by name, with their values.
    static func settingsDifference(_ saved: String, _ current: String) -> String {
        func entries(_ line: String) -> [(name: String, value: String)] {
            line.components(separatedBy: "; ").map { entry in
                let parts = entry.split(separator: " ", maxSplits: 1).map(String.init)
                return (parts.first ?? "", parts.count > 1 ? parts[1] : "")
            }
        }
        let old = entries(saved), new = entries(current)
        var names: [String] = []
        for entry in old + new where !names.contains(entry.name) { names.append(entry.name) }
        let differences = names.compactMap { name -> String? in
            let before = old.first { $0.name == name }.map(\.value), after = new.first { $0.name == name }.map(\.value)
            guard before != after else { return nil }
            // The limit is kept only with shots: without, any limit continues the sweep.
            func shown(_ value: String?) -> String { value.map { $0.isEmpty ? "given" : $0 } ?? (name == "limit" ? "any (no shots)" : "none") }
            return "\(name) \(shown(before)) → \(shown(after))"
        }
        return differences.isEmpty ? saved : differences.joined(separator: ", ")
    }

    /// The first `bytes` of a text, cut after its last line end there (or its last space, when the
    /// slice holds no line end; or at a character boundary); the whole text for 0.
    static func subset(_ text: String, bytes: Int) -> String {
        let utf8 = Array(text.utf8)
        guard bytes > 0, utf8.count > bytes else { return text }
        let head = utf8[..<bytes]
        if let newline = head.lastIndex(of: UInt8(ascii: "\n")) { return String(decoding: utf8[...newline], as: UTF8.self) }
        if let space = head.lastIndex(of: UInt8(ascii: " ")), space > 0 { return String(decoding: utf8[..<space], as: UTF8.self) }
        var end = bytes
        while end > 0 && utf8[end] & 0xC0 == 0x80 { end -= 1 }    // not inside a multi-byte character
        return String(decoding: utf8[..<end], as: UTF8.self)
    }

    struct PredictorKey: Hashable {
        var kind: String
        var criterion: String
    }

    /// Every predictor file named or inside a named directory, keyed by kind and criterion; each
    /// is checked against the model.
    static func discoverPredictors(_ paths: [String], fingerprint: ModelFingerprint) throws -> [PredictorKey: (path: String, predictor: Predictor)] {
        var files: [String] = []
        for path in paths {
            if try existingFileKind(atPath: path) == .directory {
                let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".safetensors") }.sorted()
                files += names.map { (path as NSString).appendingPathComponent($0) }
            } else {
                files.append(path)
            }
        }
        var found: [PredictorKey: (path: String, predictor: Predictor)] = [:]
        for file in files {
            // The sweep only predicts with it: an f16 predictor keeps its fp16 copies alone.
            let predictor = try PredictorFile.load(path: file, forPredictionOnly: true)
            try predictor.check(fingerprint: fingerprint)
            let key = PredictorKey(kind: predictor.kind.rawValue, criterion: predictor.criterion)
            if let other = found[key] {
                throw ShadowError.invalidArgument(name: "--predictor", reason: "\(other.path) and \(file) are both \(key.kind) predictors of \(key.criterion)")
            }
            found[key] = (file, predictor)
        }
        return found
    }
}
