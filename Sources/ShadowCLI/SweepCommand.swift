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

    static let sparseMethods = MaskMethod.sparseNames

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
            .value("methods", "names", help: "Mask sources (\(sparseMethods.joined(separator: ", "))); dense is always included. METHOD:CRITERION runs that method with that criterion only (e.g. shadow:plainact,dejavu:l2_norm), the others with each of --criteria.",
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
        let out = try arguments.required("out")
        // A method may name its own criteria ("shadow:plainact"); the others take --criteria.
        // Repeats are dropped, as for --methods and --sparsities (each would be a second cell of the same name).
        // (The parser allows only criteria.)
        let criteria = (try arguments.list("criteria") ?? []).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        // A method given bare takes each of --criteria, beside any it names itself.
        var methods: [String] = [], criteriaOf: [String: [String]] = [:], bare: Set<String> = []
        for entry in try arguments.list("methods") ?? [] {
            let parts = entry.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let method = parts[0]
            guard method != "dense" else {
                throw ShadowError.invalidArgument(name: "--methods", reason: "dense is not listed: every sweep runs it (expected \(sparseMethods.joined(separator: ", ")))")
            }
            guard sparseMethods.contains(method) else {
                throw ShadowError.invalidArgument(name: "--methods", reason: "unknown method \"\(method)\" (expected \(sparseMethods.joined(separator: ", ")))")
            }
            if !methods.contains(method) { methods.append(method) }
            guard parts.count == 2 else { bare.insert(method); continue }
            guard method != "random" else {
                throw ShadowError.invalidArgument(name: "--methods", reason: "random has no criterion, got \"\(entry)\"")
            }
            guard Criterion(rawValue: parts[1]) != nil else {
                throw ShadowError.invalidArgument(name: "--methods", reason: "unknown criterion \"\(parts[1])\" in \"\(entry)\"")
            }
            if !criteriaOf[method, default: []].contains(parts[1]) { criteriaOf[method, default: []].append(parts[1]) }
        }
        guard !methods.isEmpty else {
            throw ShadowError.invalidArgument(name: "--methods", reason: "the list is empty; give one or more of \(sparseMethods.joined(separator: ", ")) (dense always runs)")
        }
        for method in methods where MaskMethod.predictorNames.contains(method) && arguments.has("methods") && !arguments.has("predictor") {
            throw ShadowError.invalidArgument(name: "--predictor", reason: "is required by the \(method) method (predictor files or directories from train-predictor)")
        }
        // Results are keyed by sparsity to two decimals: a repeat is dropped, and two values that
        // round alike are refused (their cells would overwrite each other).
        var sparsities: [Double] = [], spelledAs: [String: String] = [:]
        for text in try arguments.list("sparsities") ?? [] {
            guard let p = Double(text) else {
                throw ShadowError.invalidArgument(name: "--sparsities", reason: "\"\(text)\" is not a number")
            }
            guard p > 0, p < 1 else {
                throw ShadowError.invalidArgument(name: "--sparsities", reason: "each must be in (0, 1), got \(text)")
            }
            let key = SweepCell(method: "random", sparsity: p).key   // the sparsity as results.json keys it
            if key.hasSuffix("/0.00") {
                throw ShadowError.invalidArgument(name: "--sparsities", reason: "\(text) is 0.00 to two decimals, the precision results are kept in; give 0.01 or more")
            }
            if key.hasSuffix("/1.00") {
                throw ShadowError.invalidArgument(name: "--sparsities", reason: "\(text) is 1.00 to two decimals, the precision results are kept in; give 0.99 or less")
            }
            if let earlier = spelledAs[key] {
                if Double(earlier) == p { continue }
                throw ShadowError.invalidArgument(name: "--sparsities", reason: "\(earlier) and \(text) are one cell (results are kept to two decimals, \(key.split(separator: "/").last ?? ""))")
            }
            spelledAs[key] = text
            sparsities.append(p)
        }
        guard !sparsities.isEmpty else {
            throw ShadowError.invalidArgument(name: "--sparsities", reason: "the list is empty; give one or more sparsities in (0, 1), e.g. 0.5")
        }
        let limit = try arguments.int("limit", range: 1...Int.max)!
        let offset = try arguments.int("offset", range: 0...Int.max)!
        let shots = try arguments.int("shots", range: 0...1000)!
        let seed = UInt64(try arguments.int("seed", range: 0...Int.max)!)
        let maskSeed = UInt64(try arguments.int("mask-seed", range: 0...Int.max)!)
        let textBytes = try arguments.int("text-bytes", range: 0...Int.max)!
        let maskMode = MaskMode(rawValue: try arguments.required("mask-mode"))!
        let policy = MaskPolicy(rawValue: try arguments.required("policy"))!
        let floor = try arguments.double("hybrid-floor", range: 0...1)!
        let units = SweepUnits(rawValue: try arguments.required("units"))!
        // The task files are looked for once the options are known to be good.
        let tasks = try parseTasks(arguments)
        // lm-eval's text by default, as eval's: WikiText detokenized, HellaSwag's ctx_b capitalised.
        let asStored = arguments.flag("as-stored")
        let hasWikiText = tasks.contains { $0.task == .wikitext }, hasHellaSwag = tasks.contains { $0.task == .hellaswag }
        if arguments.flag("detokenize") {
            if !hasWikiText { throw ShadowError.invalidArgument(name: "--detokenize", reason: "is only read with the wikitext task") }
            if asStored { throw ShadowError.invalidArgument(name: "--as-stored", reason: "contradicts --detokenize") }
        }
        if asStored, !hasWikiText, !hasHellaSwag {
            throw ShadowError.invalidArgument(name: "--as-stored", reason: "is only read with the wikitext and hellaswag tasks")
        }
        let detokenize = !asStored
        if arguments.has("hybrid-floor"), policy != .hybrid {
            throw ShadowError.invalidArgument(name: "--hybrid-floor", reason: "is only read with --policy hybrid")
        }
        if arguments.flag("verbose") {
            for task in tasks { if let labels = task.labels { console.printError("sweep: \(task.task.rawValue) labels from \(labels)") } }
        }

        /// Too few items for --shots: refused before any task runs (a later task's error would leave
        /// the earlier ones' results under settings the corrected command cannot resume).
        func checkShots(items: [MultipleChoiceItem], range: Range<Int>, task: TaskName, path: String) throws {
            do {
                _ = try Evaluation.fewShotPool(items: items, range: range, shots: shots)
            } catch ShadowError.invalidArgument(let name, let reason) {
                throw ShadowError.invalidArgument(name: name, reason: "\(reason) (\(task.rawValue): \(path))")
            }
        }

        // Read every input before loading the model, so a bad file fails fast.
        var loadedTasks: [(name: TaskName, task: SweepTask?)] = []
        for (task, path, labels) in tasks {
            switch task {
            case .wikitext:
                loadedTasks.append((task, nil))
                _ = try TaskFile.wikitext(path: path)
            case .lambada:
                let items = Evaluation.lambadaItems(try TaskFile.lambada(path: path))
                let range = try Evaluation.slice(count: items.count, offset: offset, limit: limit)
                try checkShots(items: items, range: range, task: task, path: path)
                loadedTasks.append((task, .lambada(items: items, range: range)))
            default:
                let items = try TaskFile.multipleChoice(task: task, path: path, labels: labels, asStored: asStored)
                let range = try Evaluation.slice(count: items.count, offset: offset, limit: limit)
                try checkShots(items: items, range: range, task: task, path: path)
                loadedTasks.append((task, .multipleChoice(name: task.rawValue, items: items, range: range)))
            }
        }
        let tracesPath = arguments.string("traces")
        var aggregates: [String: AggregateImportance] = [:]
        var skipped: [String] = []
        var tracesModel: ModelFingerprint?
        if let tracesPath {
            let manifest = try TraceManifest.load(directory: tracesPath)
            tracesModel = manifest.model
            if !manifest.complete {
                console.printError("sweep: warning: \(tracesPath) is not complete (\(counted(manifest.sampleCount, "sample")) so far; finish it with calibrate --resume)")
            }
            let available = manifest.criteria
            // --criteria and the criteria methods name themselves (static:l2_norm).
            let wanted = Set(criteria + criteriaOf.values.joined())
            for criterion in available where wanted.contains(criterion) || aggregates.isEmpty {
                aggregates[criterion] = try AggregateImportance(traces: tracesPath, criterion: criterion)
            }
        } else if methods.contains("static") {
            throw ShadowError.invalidArgument(name: "--traces", reason: "is required by the static method (a trace directory from calibrate)")
        }

        let loaded = try ModelOptions.load(arguments, console: console)
        let model = loaded.model
        let tokenizer = try loaded.requireTokenizer()
        let fingerprint = try ModelFingerprint(loaded: loaded)
        // Scores of another model's units would index past this model's layers and heads.
        if let tracesPath, let tracesModel { try fingerprint.check(matches: tracesModel, what: tracesPath) }
        let context = try arguments.int("context", range: 1...1_000_000) ?? min(512, model.shape.maxContext)
        guard context <= model.shape.maxContext else {
            throw ShadowError.invalidArgument(name: "--context", reason: "\(context) exceeds \(model.contextDescription)")
        }
        let predictors = try discoverPredictors(try arguments.list("predictor") ?? [], fingerprint: fingerprint)

        // The cells: dense, then every method × criterion × sparsity that has a mask source.
        var cells = [SweepCell.dense]
        for method in methods {
            var criteria = bare.contains(method) ? criteria : []
            for criterion in criteriaOf[method] ?? [] where !criteria.contains(criterion) { criteria.append(criterion) }
            let cellCriteria: [String?]
            switch method {
            case "random":
                cellCriteria = [nil]
            case "oracle":
                cellCriteria = criteria.filter { criterion in
                    if Criterion(rawValue: criterion)!.headsOnly && units != .heads {
                        skipped.append("oracle (\(criterion)): scores heads only (--units heads)"); return false
                    }
                    return true
                }
            case "static":
                cellCriteria = criteria.filter { criterion in
                    guard let aggregate = aggregates[criterion] else {
                        skipped.append("static (\(criterion)): \(tracesPath ?? "") has no \(criterion) scores"); return false
                    }
                    if aggregate.neurons == nil && units != .heads {
                        skipped.append("static (\(criterion)): scores heads only (--units heads)"); return false
                    }
                    return true
                }
            default:
                cellCriteria = criteria.filter { criterion in
                    guard let found = predictors[PredictorKey(kind: method, criterion: criterion)] else {
                        skipped.append("\(method) (\(criterion)): no such predictor among --predictor")
                        return false
                    }
                    if !found.predictor.predictsNeurons && units != .heads {
                        skipped.append("\(method) (\(criterion)): predicts heads only (--units heads)"); return false
                    }
                    return true
                }
            }
            for criterion in cellCriteria {
                for p in sparsities { cells.append(SweepCell(method: method, criterion: criterion, sparsity: p)) }
            }
        }
        // Asked for sparse cells and none can run: the dense row alone answers nothing asked.
        if cells.count == 1 && !methods.isEmpty {
            throw ShadowError.invalidArgument(
                name: "--methods", reason: "none of the cells of \(methods.joined(separator: ",")) can run (\(skipped.isEmpty ? "no criteria" : skipped.joined(separator: "; ")))")
        }
        for line in skipped { console.printError("sweep: skipped \(line)") }
        for cell in cells {
            let settings = units.settings(sparsity: cell.sparsity, policy: policy, hybridFloor: floor)
            for line in SparsityOptions.sparsityWarnings(method: cell.method, settings: settings, shape: model.shape) {
                console.printError("sweep: \(cell.method)\(cell.criterion.map { " (\($0))" } ?? ""): \(line)")
            }
        }

        func makeController(_ cell: SweepCell) throws -> (any SparsityController)? {
            let settings = units.settings(sparsity: cell.sparsity, policy: policy, hybridFloor: floor)
            // The cells were built from checked methods, criteria and the sources found for them.
            switch MaskMethod(rawValue: cell.method)! {
            case .dense:
                return nil
            case .random:
                return SparsityOptions.fixedMasks(Masks.randomScores(shape: model.shape, seed: maskSeed), settings: settings, shape: model.shape)
            case .static:
                let aggregate = aggregates[cell.criterion!]!
                return SparsityOptions.fixedMasks((aggregate.heads, aggregate.neurons), settings: settings, shape: model.shape)
            case .oracle:
                return try SparsityOptions.oracle(criterion: Criterion(rawValue: cell.criterion!)!, settings: settings, loaded: loaded)
            case .shadow, .dejavu, .dejavuLookahead:
                let found = predictors[PredictorKey(kind: cell.method, criterion: cell.criterion!)]!
                return try SparsityOptions.predictorController(found.predictor, settings: settings, shape: model.shape, refresh: nil)
            }
        }

        // The resumable state, checked against the settings that change numbers.
        try AtomicFile.createDirectory(out)
        func path(_ name: String) -> String { (out as NSString).appendingPathComponent(name) }
        let settings = ([
            "model \(fingerprint.contentHash)", "weights \(try arguments.required("weights"))",
            "offset \(offset)", "shots \(shots)", "seed \(seed)", "mask-mode \(maskMode.rawValue)",
            "policy \(policy.rawValue)", "hybrid-floor \(floor)", "mask-seed \(maskSeed)", "text-bytes \(textBytes)",
            "context \(context)", "units \(units.rawValue)",
            // The scoring rules of the 2026-12 lm-eval audit (acc_norm length, rolling windows,
            // WikiText article by article): a state scored under older rules must not be extended.
            "scoring lm-eval-2026-12-pages",
        ] + (arguments.flag("long-context") ? ["long-context"] : [])
          // Few-shot examples come from outside the --offset/--limit slice: another --limit gives
          // the items already scored other examples, so with shots the limit cannot grow.
          + (shots > 0 ? ["limit \(limit)"] : [])).joined(separator: "; ")
        // How a task's text is read where that has changed: kept per task (state.sources
        // "reading TASK"), so that tasks can still be added to a sweep or left out. A task a state
        // evaluated without a reading was read the old way: WikiText and HellaSwag as stored
        // (before 2026-12-04), LAMBADA's few-shot prompts with one space (before 2026-12-03).
        func reading(_ task: TaskName) -> (now: String, old: String)? {
            switch task {
            case .wikitext: return (detokenize ? "detokenized" : "as stored", "as stored")
            case .hellaswag: return (asStored ? "ctx_b as written" : "ctx_b capitalised", "ctx_b as written")
            case .lambada where shots > 0: return ("shots lm-eval", "shots one space")
            default: return nil
            }
        }
        func source(_ cell: SweepCell) -> String? {
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
        var state = SweepState(settings: settings)
        if try fileKind(atPath: path("sweep-state.json")) != nil {
            var saved = try ConfigDecoding.decode(SweepState.self, path: path("sweep-state.json"))
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
                    reason: "\(out) holds a sweep with other settings (\(Self.settingsDifference(saved.settings, settings))); give another --out or remove \(path("sweep-state.json"))")
            }
            // After the settings: a state of another model is that, not a heat map of the wrong size.
            try saved.validate(path: path("sweep-state.json"), shape: model.shape)
            state = saved
            // Tasks can be added or left out; a task must keep its file.
            for task in tasks {
                if let old = state.sources["task " + task.task.rawValue], old != task.path {
                    throw ShadowError.invalidArgument(name: "--data", reason: "\(out) evaluated \(task.task.rawValue) on \(old), not \(task.path); give another --out")
                }
                let name = task.task.rawValue
                if state.sources["task " + name] != nil, let reading = reading(task.task) {
                    let before = state.sources["reading " + name] ?? reading.old
                    if before != reading.now {
                        let how = task.task == .lambada ? "give another --out"
                            : asStored ? "leave out --as-stored to continue it, or give another --out"
                            : "add --as-stored to continue it (as sweeps before 2026-12-04 read it), or give another --out"
                        throw ShadowError.invalidArgument(name: "--out", reason: "\(out) read \(name) \(before), this command \(reading.now); \(how)")
                    }
                }
            }
            for cell in cells {
                if let old = state.sources[cell.key], let new = source(cell), old != new {
                    throw ShadowError.invalidArgument(name: "--out", reason: "\(out) computed \(cell.key) from \(old), not \(new); give another --out")
                }
            }
            // A larger --limit extends a sweep (items run in order); a smaller one cannot undo work.
            for (task, tallies) in state.tallies where task != "wikitext" {
                if let most = tallies.values.map(\.items).max(), most > limit {
                    throw ShadowError.invalidArgument(name: "--limit", reason: "\(out) already holds \(most) items of \(task); give --limit \(most) or more, or another --out")
                }
            }
        }
        for cell in cells { state.sources[cell.key] = source(cell) }
        for task in tasks {
            state.sources["task " + task.task.rawValue] = task.path
            if let reading = reading(task.task) { state.sources["reading " + task.task.rawValue] = reading.now }
        }
        func save(_ state: SweepState) throws {
            try AtomicFile.write(try JSONOutput.string(state) + "\n", to: path("sweep-state.json"))
        }

        var runnable: [SweepTask] = []
        for (name, task) in loadedTasks {
            if let task { runnable.append(task); continue }
            let text = subset(try TaskFile.wikitext(path: tasks.first { $0.task == name }!.path), bytes: textBytes)
            runnable.append(.perplexity(name: name.rawValue, text: text, context: context))
        }
        let runner = SweepRunner(model: model, tokenizer: tokenizer, maskMode: maskMode, shots: shots, seed: seed,
                                 detokenizeWikiText: detokenize)
        let talliesBefore = state.tallies
        let total = try runnable.reduce(0) { $0 + (try runner.work($1, cells: cells.count)) }
        let bar = ProgressBar(console: console, label: "sweep", total: total, enabled: !arguments.flag("no-progress"))
        var done = 0
        let start = Date()
        for task in runnable {
            var taskDone = 0
            try runner.run(task, cells: cells, state: &state, makeController: makeController, save: save) { units in
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
        if !aggregates.isEmpty { state.headImportance = (state.headImportance ?? [:]).merging(aggregates.mapValues(\.headsPerSample)) { $1 } }
        let ran = Set(rows.map(\.cell.series))
        let earlierSkipped = (state.skipped ?? []).filter { line in !ran.contains(String(line.prefix { $0 != ":" })) }
        state.skipped = earlierSkipped + skipped.filter { !earlierSkipped.contains($0) }
        try save(state)
        let seconds = state.tallies.values.flatMap(\.values).reduce(0) { $0 + $1.seconds }
        let results = Results(model: loaded.path, date: ISO8601DateFormatter().string(from: Date()), machine: Machine.description,
                              command: command, commands: state.commands ?? [command], settings: settings,
                              seconds: max(seconds, Date().timeIntervalSince(start)), rows: rows, skipped: state.skipped ?? [], units: units,
                              headImportance: state.headImportance ?? [:])
        let json = try JSONOutput.string(results)
        try AtomicFile.write(json + "\n", to: path("results.json"))
        try AtomicFile.write(SweepReport.markdown(results), to: path("report.md"))
        try AtomicFile.write(SweepReport.plots(results), to: path("sweep.svg"))
        if !results.headImportance.isEmpty { try AtomicFile.write(SweepReport.heatMap(results), to: path("heads.svg")) }
        for cut in SweepReport.truncation(results) {
            console.printError("sweep: warning: \(cut.task): \(cut.items) of \(cut.of) items were longer than the model's context of \(model.shape.maxContext) tokens and lost tokens from their start (as lm-eval truncates them); results.json counts them in truncated_items")
        }
        for row in results.rows {
            if let dense = row.denseMasks, dense > 0 {
                console.printError("sweep: warning: \(row.task) \(row.cell.key): \(dense) oracle masks ran dense (a prompt cut to one token gives no loss to score); its realised sparsity counts them, results.json in dense_masks")
            }
        }
        console.print(arguments.flag("json") ? json : SweepReport.table(results).joined(separator: "\n"))
        if !arguments.flag("json") {
            let written = ["report.md", "results.json", "sweep.svg"] + (results.headImportance.isEmpty ? [] : ["heads.svg"])
            console.print("report: " + written.map(path).joined(separator: ", "))
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
            func shown(_ value: String?) -> String { value.map { $0.isEmpty ? "given" : $0 } ?? "none" }
            return "\(name) \(shown(before)) → \(shown(after))"
        }
        return differences.isEmpty ? saved : differences.joined(separator: ", ")
    }

    /// Each task with its data file and labels: `--data task=path` first, then `--data-dir`.
    static func parseTasks(_ arguments: ParsedArguments) throws -> [(task: TaskName, path: String, labels: String?)] {
        func pairs(_ option: String) throws -> [String: String] {
            var result: [String: String] = [:]
            for entry in try arguments.list(option) ?? [] {
                let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, TaskName(rawValue: parts[0]) != nil else {
                    throw ShadowError.invalidArgument(name: "--\(option)", reason: "expected TASK=PATH with a known task, got \"\(entry)\"")
                }
                guard result[parts[0]] == nil else {
                    throw ShadowError.invalidArgument(name: "--\(option)", reason: "\(parts[0]) is given twice")
                }
                result[parts[0]] = parts[1]
            }
            return result
        }
        let data = try pairs("data"), labels = try pairs("labels")
        // A file for a task that does not run is most likely a task missing from --tasks.
        let names = (try arguments.list("tasks") ?? []).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        for (option, files) in [("data", data), ("labels", labels)] {
            for task in files.keys.sorted() where !names.contains(task) {
                throw ShadowError.invalidArgument(name: "--\(option)", reason: "\(task) is not among --tasks (\(names.joined(separator: ","))); add it there or drop its file")
            }
        }
        // As eval says it: a labels file only PIQA and Winogrande read (it was dropped unread).
        for name in labels.keys.sorted() {
            if let refusal = TaskName(rawValue: name)?.labelsFileRefusal {
                throw ShadowError.invalidArgument(name: "--labels", reason: refusal)
            }
        }
        let files = DataFiles(directory: try arguments.required("data-dir"))
        var tasks: [(TaskName, String, String?)] = []
        for name in names {
            let task = TaskName(rawValue: name)!   // the parser allows only tasks
            let found: String? = switch task {
            case .piqa: files.piqa
            case .hellaswag: files.hellaswag
            case .wikitext: files.wikitextTest
            default: nil
            }
            guard let path = data[name] ?? found else {
                let searched = switch task {
                case .piqa, .hellaswag, .wikitext:
                    (try? fileKind(atPath: files.directory)) == nil
                        ? " (--data-dir \(files.directory) does not exist)" : " (none in --data-dir \(files.directory))"
                default: ""
                }
                throw ShadowError.invalidArgument(name: "--data", reason: "no file for \(name)\(searched): give --data \(name)=PATH")
            }
            _ = try existingFileKind(atPath: path)
            // Without --labels, the labels file the release keeps beside the data, as calibrate finds it.
            tasks.append((task, path, try labels[name] ?? TaskFile.labelsBeside(data: path, task: task)))
        }
        guard !tasks.isEmpty else { throw ShadowError.invalidArgument(name: "--tasks", reason: "needs at least one task") }
        return tasks
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
