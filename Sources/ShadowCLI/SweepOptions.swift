import ShadowEval
import ShadowFormats
import ShadowSparsity
import ShadowTasks

extension SweepCommand {
    /// What a `sweep` command asks for, read and checked from its options before any file is read
    /// (the task files are only looked for, once the other options are known to be good).
    struct Options {
        /// The sparse methods in the order given (dense always runs and is not listed).
        let methods: [String]
        /// --criteria without repeats: the criteria of every method given bare.
        let criteria: [String]
        /// The criteria a method names itself ("shadow:plainact"), in the order given.
        let namedCriteria: [String: [String]]
        /// Methods given without a criterion of their own: they take each of --criteria.
        let bareMethods: Set<String>
        let sparsities: [Double]
        let limit: Int
        let offset: Int
        let shots: Int
        let seed: UInt64
        let maskSeed: UInt64
        let textBytes: Int
        let maskMode: MaskMode
        let policy: MaskPolicy
        let hybridFloor: Double
        let units: SweepUnits
        let tasks: [(task: TaskName, path: String, labels: String?)]
        /// WikiText and HellaSwag as the files store them (lm-eval's text otherwise).
        let asStored: Bool
        var detokenize: Bool { !asStored }

        init(_ arguments: ParsedArguments) throws {
            // Repeats are dropped, as for --methods and --sparsities (each would be a second cell of
            // the same name). The parser allows only criteria.
            criteria = (try arguments.list("criteria") ?? []).droppingRepeats()
            (methods, namedCriteria, bareMethods) = try Self.parseMethods(arguments)
            sparsities = try Self.parseSparsities(arguments)
            limit = try arguments.int("limit", range: 1...Int.max)!
            offset = try arguments.int("offset", range: 0...Int.max)!
            shots = try arguments.int("shots", range: 0...1000)!
            seed = UInt64(try arguments.int("seed", range: 0...Int.max)!)
            maskSeed = UInt64(try arguments.int("mask-seed", range: 0...Int.max)!)
            textBytes = try arguments.int("text-bytes", range: 0...Int.max)!
            maskMode = MaskMode(rawValue: try arguments.required("mask-mode"))!
            policy = MaskPolicy(rawValue: try arguments.required("policy"))!
            hybridFloor = try arguments.double("hybrid-floor", range: 0...1)!
            units = SweepUnits(rawValue: try arguments.required("units"))!
            tasks = try Self.parseTasks(arguments)
            // lm-eval's text by default, as eval's: WikiText detokenized, HellaSwag's ctx_b capitalised.
            asStored = arguments.flag("as-stored")
            let hasWikiText = tasks.contains { $0.task == .wikitext }, hasHellaSwag = tasks.contains { $0.task == .hellaswag }
            if arguments.flag("detokenize") {
                if !hasWikiText { throw ShadowError.invalidArgument(name: "--detokenize", reason: "is only read with the wikitext task") }
                if asStored { throw ShadowError.invalidArgument(name: "--as-stored", reason: "contradicts --detokenize") }
            }
            if asStored, !hasWikiText, !hasHellaSwag {
                throw ShadowError.invalidArgument(name: "--as-stored", reason: "is only read with the wikitext and hellaswag tasks")
            }
            if arguments.has("hybrid-floor"), policy != .hybrid {
                throw ShadowError.invalidArgument(name: "--hybrid-floor", reason: "is only read with --policy hybrid")
            }
            // --criteria serves the methods given without one, and with --traces picks the heat map's
            // scores. (--offset, --shots, --seed and --limit are accepted whatever the tasks: they are
            // in the settings a resumed sweep must match, as a state of another command wrote them.)
            if arguments.has("criteria"), bareMethods.subtracting(["random"]).isEmpty, !arguments.has("traces") {
                throw ShadowError.invalidArgument(name: "--criteria", reason: "is not read: every method in --methods names its criterion (METHOD:CRITERION) or has none, and there is no --traces heat map")
            }
        }

        /// The criteria a method runs: each of --criteria when it was given bare, then those it names.
        func criteria(of method: String) -> [String] {
            var result = bareMethods.contains(method) ? criteria : []
            for criterion in namedCriteria[method] ?? [] where !result.contains(criterion) { result.append(criterion) }
            return result
        }

        /// The targets of a cell's sparsity, under --units, --policy and --hybrid-floor.
        func settings(sparsity: Double) -> SparsitySettings {
            units.settings(sparsity: sparsity, policy: policy, hybridFloor: hybridFloor)
        }

        /// Every criterion the command names, whichever method runs it (the static scores to read).
        var allNamedCriteria: Set<String> { Set(criteria + namedCriteria.values.joined()) }

        /// How a task's text is read where that has changed: kept per task in the state (sources
        /// "reading TASK"), so that tasks can still be added to a sweep or left out. A task a state
        /// evaluated without a reading was read the old way: WikiText and HellaSwag as stored (before
        /// 2026-12-04), LAMBADA's few-shot prompts with one space (before 2026-12-03).
        func reading(_ task: TaskName) -> (now: String, old: String)? {
            switch task {
            case .wikitext: return (detokenize ? "detokenized" : "as stored", "as stored")
            case .hellaswag: return (asStored ? "ctx_b as written" : "ctx_b capitalised", "ctx_b as written")
            case .lambada where shots > 0: return ("shots lm-eval", "shots one space")
            default: return nil
            }
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

        /// --methods: each a method, or METHOD:CRITERION for that method with that criterion only.
        private static func parseMethods(_ arguments: ParsedArguments) throws
            -> (methods: [String], named: [String: [String]], bare: Set<String>) {
            var methods: [String] = [], named: [String: [String]] = [:], bare: Set<String> = []
            for entry in try arguments.list("methods") ?? [] {
                let parts = entry.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                let method = parts[0]
                guard method != "dense" else {
                    throw ShadowError.invalidArgument(name: "--methods", reason: "dense is not listed: every sweep runs it (expected \(MaskMethod.sparseNames.joined(separator: ", ")))")
                }
                guard MaskMethod.sparseNames.contains(method) else {
                    throw ShadowError.invalidArgument(name: "--methods", reason: "unknown method \"\(method)\" (expected \(MaskMethod.sparseNames.joined(separator: ", ")))")
                }
                if !methods.contains(method) { methods.append(method) }
                guard parts.count == 2 else { bare.insert(method); continue }
                guard method != "random" else {
                    throw ShadowError.invalidArgument(name: "--methods", reason: "random has no criterion, got \"\(entry)\"")
                }
                guard Criterion(rawValue: parts[1]) != nil else {
                    throw ShadowError.invalidArgument(name: "--methods", reason: "unknown criterion \"\(parts[1])\" in \"\(entry)\"")
                }
                if !named[method, default: []].contains(parts[1]) { named[method, default: []].append(parts[1]) }
            }
            guard !methods.isEmpty else {
                throw ShadowError.invalidArgument(name: "--methods", reason: "the list is empty; give one or more of \(MaskMethod.sparseNames.joined(separator: ", ")) (dense always runs)")
            }
            for method in methods where MaskMethod.predictorNames.contains(method) && arguments.has("methods") && !arguments.has("predictor") {
                throw ShadowError.invalidArgument(name: "--predictor", reason: "is required by the \(method) method (predictor files or directories from train-predictor)")
            }
            return (methods, named, bare)
        }

        /// --sparsities. Results are keyed by sparsity to two decimals: a repeat is dropped, and two
        /// values that round alike are refused (their cells would overwrite each other).
        private static func parseSparsities(_ arguments: ParsedArguments) throws -> [Double] {
            var sparsities: [Double] = [], spelledAs: [String: String] = [:]
            for text in try arguments.list("sparsities") ?? [] {
                guard let p = Double(text) else {
                    throw ShadowError.invalidArgument(name: "--sparsities", reason: "\"\(text)\" is not a number")
                }
                guard p > 0, p < 1 else {
                    throw ShadowError.invalidArgument(name: "--sparsities", reason: "each must be in (0, 1), got \(text)\(SparsitySettings.percentageHint(p))")
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
            return sparsities
        }

        /// Each task with its data file and labels: `--data task=path` first, then `--data-dir`.
        private static func parseTasks(_ arguments: ParsedArguments) throws -> [(task: TaskName, path: String, labels: String?)] {
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
            let names = (try arguments.list("tasks") ?? []).droppingRepeats()
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
    }
}
