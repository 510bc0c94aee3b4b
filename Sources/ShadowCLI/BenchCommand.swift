import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels
import ShadowSparsity

/// `shadowllm bench`: llama-bench's measurements and table for this engine.
enum BenchCommand {
    struct Row: Codable {
        let model: String
        let method: String
        let headSparsity: Double
        let neuronSparsity: Double
        let sizeBytes: Int
        let parameters: Int
        /// What the weights were kept as, and the `--weights` item that asked for them (they
        /// differ where every matrix fell back: q8 rows that are not whole blocks of 32 are f16).
        let weights: String
        var weightsAsked: String? = nil
        let threads: Int
        let test: String
        let tokensPerSecond: Double
        let stddev: Double
        let samples: [Double]
        let bytesPerToken: Int?
        let gigabytesPerSecond: Double?
        /// Share of decode time spent in the mask predictor (learned methods only).
        let predictorShare: Double?
        /// Bytes of the predictor's own weights a decoded token reads (learned methods only; not
        /// in `bytesPerToken`): a DejaVu-style predictor's all, a shadow predictor's none.
        var predictorBytesPerToken: Int?
        /// Realised whole-model sparsity of the masks used (layer 0 counts as dense).
        let realisedHeadSparsity: Double?
        let realisedNeuronSparsity: Double?
        /// Decode read the kept rows from packed copies (`--packing`).
        var packedRows = false
        /// How this row's masks were made (nil for dense): `-o csv`'s masks column, and the
        /// row's `masks` in JSON beside the report's `masks` object.
        var masks: String? = nil

        enum CodingKeys: String, CodingKey {
            case model, weights, threads, test, stddev, samples, method, weightsAsked = "weights_asked"
            case headSparsity = "head_sparsity", neuronSparsity = "neuron_sparsity"
            case sizeBytes = "size_bytes", parameters = "params", tokensPerSecond = "tokens_per_second"
            case bytesPerToken = "bytes_per_token", gigabytesPerSecond = "gigabytes_per_second"
            case predictorShare = "predictor_share", realisedHeadSparsity = "realised_head_sparsity"
            case realisedNeuronSparsity = "realised_neuron_sparsity", packedRows = "packed_rows"
            case predictorBytesPerToken = "predictor_bytes_per_token", masks
        }
    }

    struct Report: Codable {
        let results: [Row]
        let peakResidentBytes: Int
        let machine: String
        let date: String
        let build: String
        /// How the sparse rows' masks were made (absent when every row is dense): the policy of
        /// the ranking methods (absent when only DejaVu-style ones run: they select per layer),
        /// and the files and refresh given.
        var masks: MaskSettings? = nil

        enum CodingKeys: String, CodingKey {
            case results, machine, date, build, masks
            case peakResidentBytes = "peak_rss_bytes"
        }
    }

    struct MaskSettings: Codable {
        let policy: String?
        let hybridFloor: Double?
        let predictor: String?
        let scores: String?
        let refresh: Int?

        enum CodingKeys: String, CodingKey {
            case policy, predictor, scores, refresh, hybridFloor = "hybrid_floor"
        }

        init?(_ options: Options) {
            guard options.methods.contains(where: { $0 != "dense" }) else { return nil }
            let ranks = options.methods.contains { $0 != "dense" && !$0.hasPrefix("dejavu") }
            policy = ranks ? options.policy.rawValue : nil
            hybridFloor = ranks && options.policy == .hybrid ? options.hybridFloor : nil
            predictor = options.predictorPath
            scores = options.scoresPath
            refresh = options.refresh
        }

        /// "masks: policy global, predictor p.safetensors" for the Markdown report's last lines.
        var description: String {
            var parts = policy.map { ["policy \($0)"] } ?? ["selected per layer"]
            if let hybridFloor { parts.append("hybrid floor \(hybridFloor)") }
            if let predictor { parts.append("predictor \(predictor)") }
            if let scores { parts.append("scores \(scores)") }
            if let refresh { parts.append("refresh \(refresh)") }
            return "masks: " + parts.joined(separator: ", ")
        }
    }

    static let command = Command(
        name: "bench", abstract: "Measure prompt processing (pp) and generation (tg) speed, like llama-bench.",
        discussion: "Every combination of the comma-separated lists is run; rows report tokens/s mean ± sd over -r repetitions. MB/token counts the model weights a decoded token reads under its masks, not a predictor's own weights: DejaVu-style predictors read theirs every token, and the predictor column gives the share of decode time spent predicting and, where a decoded token reads any, the predictor's own MB per token (JSON: predictor_bytes_per_token).",
        options: [
            ModelOptions.modelOption,
            ModelOptions.longContextOption,
            .value("p", short: "p", "n,…", help: "Prompt lengths to process, up to the model's context (0 skips).", default: "512"),
            .value("n", short: "n", "n,…", help: "Tokens to generate from an empty context, up to the model's context (0 skips).", default: "128"),
            .value("b", short: "b", "n,…", help: "Samples of n tokens for fw<n> (a forward pass with every logit, as the loss needs) and fb<n> (forward + hand-written backward + plainact scores, one calibrate sample, its last 32 tokens the continuation, or all but the first when n ≤ 32); dense only; n from 2 to the model's context (0 skips).", default: "0"),
            .value("r", short: "r", "n", help: "Repetitions of each test.", default: "5"),
            .value("threads", short: "t", "n,…", help: "Thread counts.", default: String(Threads.defaultCount)),
            .value("weights", "dtype,…", help: "Weight precisions to compare (q8: 8-bit blocks, about half of f16's bytes per token).", default: WeightDType.f16.rawValue,
                   allowed: WeightDType.allCases.map(\.rawValue), list: true),
            .value("o", short: "o", "format", help: "Output format.", default: "md", allowed: ["md", "csv", "json"]),
            // Unprepared, the oracle would run dense under a sparse label; timing it on a real prompt
            // would leave out the backward pass that is its real cost.
            .value("method", "name,…", help: "Mask sources to compare (dense runs at sparsity 0). oracle is refused: its masks need a backward pass over a real prompt, which bench has not.", default: "dense",
                   allowed: MaskMethod.names.filter { $0 != MaskMethod.oracle.rawValue }, list: true,
                   refusals: [MaskMethod.oracle.rawValue: "cannot be timed: its masks need a backward pass over a real prompt, which bench has not (time masks of that sparsity with random or static)"]),
            .value("sparsity", "p,…", help: "Fractions of heads and neurons to prune, for each sparse method.", default: "0.5"),
            .value("head-sparsity", "p", help: "Fraction of heads to prune in every sparse row (overrides --sparsity for heads: --sparsity 0.3,0.5 --head-sparsity 0 varies the neurons only)."),
            .value("neuron-sparsity", "p", help: "Fraction of FFN neurons to prune in every sparse row (overrides --sparsity for neurons)."),
            SparsityOptions.hybridFloorOption,
            .value("policy", "name", help: "How scores become masks (random, static, shadow; dejavu always selects per layer).", default: MaskPolicy.global.rawValue,
                   allowed: MaskPolicy.allCases.map(\.rawValue)),
            .value("scores", "path", help: "static: aggregate importance scores (JSON)."),
            .value("predictor", "path", help: "shadow/dejavu: a predictor file, or a directory holding METHOD.safetensors or one METHOD-*.safetensors."),
            .value("refresh", "n", help: "shadow/dejavu: re-predict masks every n decode tokens.", defaultDescription: "0 for shadow, 1 for dejavu"),
            .value("packing", "when,…", help: SparsityOptions.packingHelp + " Each sparse method's tg rows are timed once per distinct choice the list makes for it. bench's auto is the steady state of generate's: packed for masks chosen once per prompt, gathered for masks re-predicted during decode (off,auto: a gathered row and, for masks that stay put, a packed one marked 'packed'); bench times the steady state, so a packed row's copies are made at the warm-up run's second token and its timed runs read them.",
                   default: SparsityOptions.Packing.off.rawValue, allowed: SparsityOptions.Packing.allCases.map(\.rawValue), list: true),
            .flag("no-progress", help: "Hide progress on stderr."),
        ]
    ) { arguments, console in
        try run(arguments, console: console)
    }

    static func run(_ arguments: ParsedArguments, console: Console) throws {
        let options = try Options(arguments)
        var rows: [Row] = []
        for dtype in options.dtypes {
            let loaded = try ModelOptions.applyingLongContext(arguments, to: try ModelLoader.load(path: options.path, weights: dtype), path: options.path)
            let model = loaded.model
            ModelOptions.warn(asked: dtype, kept: model.weightDType, path: options.path, console: console)
            // tg<n> decodes n tokens from an empty cache, so n positions must fit as a prompt's would.
            for (flag, lengths) in [("-p", options.prompts), ("-n", options.generations), ("-b", options.backwardLengths)] {
                for length in lengths where length > model.shape.maxContext {
                    let given = arguments.has(String(flag.dropFirst()))
                    throw ShadowError.invalidArgument(name: flag, reason: "\(length)\(given ? "" : " (the default)") exceeds \(model.contextDescription)")
                }
            }
            let configurations = try Configuration.all(options, loaded: loaded, warnings: dtype == options.dtypes.first ? console : nil)
            for threads in options.threadCounts {
                Threads.set(threads)
                for configuration in configurations {
                    rows += try measure(configuration, loaded: loaded, asked: dtype, threads: threads, options: options, console: console)
                }
            }
        }
        let report = Report(results: rows, peakResidentBytes: Benchmark.peakResidentBytes, machine: Machine.description,
                            date: ISO8601DateFormatter().string(from: Date()), build: "shadowllm \(CLI.version)",
                            masks: MaskSettings(options))
        switch options.format {
        case "json": console.print(try JSONOutput.string(report))
        case "csv": for line in csv(rows) { console.print(line) }
        default: for line in markdown(report) { console.print(line) }
        }
    }

    /// What one sparse (or dense) row set runs: a method at one sparsity, with its masks.
    struct Configuration {
        let method: String
        let sparsity: SparsityPair
        let controller: (any SparsityController)?
        /// How its masks are made, as `-o csv` says it per row: "policy global; predictor
        /// DIR/shadow.safetensors; refresh 0" (the file a directory gave, the refresh in force).
        let masks: String

        init(method: String, sparsity: SparsityPair, controller: (any SparsityController)?, options: Options) {
            (self.method, self.sparsity, self.controller) = (method, sparsity, controller)
            var parts: [String] = []
            switch controller {
            case nil: break
            // The predictor's path is the file it was read from, also where --predictor named a directory.
            case let shadow as ShadowPredictorController:
                parts = ["policy \(options.policy.rawValue)", "predictor \(shadow.predictor.path ?? options.predictorPath ?? "")", "refresh \(shadow.refresh)"]
            case let perLayer as DejaVuController:
                parts = ["selected per layer", "predictor \(perLayer.predictor.path ?? options.predictorPath ?? "")", "refresh \(perLayer.refresh)"]
            default:
                parts = ["policy \(options.policy.rawValue)"] + (method == MaskMethod.static.rawValue ? ["scores \(options.scoresPath ?? "")"] : [])
            }
            if controller != nil, method != MaskMethod.dejavu.rawValue, method != MaskMethod.dejavuLookahead.rawValue, options.policy == .hybrid {
                parts.insert("hybrid floor \(options.hybridFloor)", at: 1)
            }
            masks = parts.joined(separator: "; ")
        }

        /// Every method at every sparsity (dense at 0 alone), its masks made for `loaded`; the
        /// masks' warnings printed to `warnings` when given (once, not per weight type).
        static func all(_ options: Options, loaded: LoadedModel, warnings: Console?) throws -> [Configuration] {
            var configurations: [Configuration] = []
            for method in options.methods {
                for sparsity in method == "dense" ? [SparsityPair(heads: 0, neurons: 0)] : options.pairs {
                    let settings = SparsitySettings(headSparsity: sparsity.heads, neuronSparsity: sparsity.neurons,
                                                    policy: options.policy, hybridFloor: options.hybridFloor)
                    let controller = try SparsityOptions.controller(method: method, settings: settings, scoresPath: options.scoresPath,
                                                                    predictorPath: options.predictorPath, refresh: options.refresh,
                                                                    seed: 0, loaded: loaded)
                    configurations.append(Configuration(method: method, sparsity: sparsity, controller: controller, options: options))
                    for line in try SparsityOptions.sparsityWarnings(method: method, settings: settings, shape: loaded.model.shape) {
                        warnings?.printError(line)
                    }
                }
            }
            return configurations
        }
    }

    /// One configuration's rows at one thread count: pp<n>, fw<n>/fb<n> (dense only) and tg<n>
    /// (once per packing choice).
    static func measure(_ configuration: Configuration, loaded: LoadedModel, asked dtype: WeightDType, threads: Int,
                        options: Options, console: Console) throws -> [Row] {
        let model = loaded.model
        let label = "\(dtype.rawValue) t=\(threads) \(configuration.method)@\(configuration.sparsity)"
        var measurements: [(Benchmark.Measurement, packed: Bool)] = []
        for prompt in options.prompts where prompt > 0 {
            if options.showProgress { console.printError("bench: \(label) pp\(prompt) …") }
            measurements.append((Benchmark.promptProcessing(model: model, tokens: prompt, repetitions: options.repetitions,
                                                            sparsity: configuration.controller), false))
        }
        for length in options.backwardLengths where length > 0 && configuration.method == "dense" {
            let differentiable = try loaded.requireDifferentiable(for: "bench -b")
            if options.showProgress { console.printError("bench: \(label) fw\(length) and fb\(length) …") }
            measurements += try forwardBackward(model: differentiable, tokens: length, repetitions: options.repetitions).map { ($0, false) }
        }
        let predicting = configuration.controller as? any PredictingController
        var predictorShares: [Int: Double] = [:]   // by index in measurements
        // Each distinct choice once: auto is on or off for a given controller.
        let packing = options.packings.map { $0.packs(configuration.controller) }.droppingRepeats()
        for count in options.generations where count > 0 {
            for packed in packing {
                if options.showProgress { console.printError("bench: \(label) tg\(count)\(packed ? " packed" : "") …") }
                let m = Benchmark.textGeneration(model: model, tokens: count, repetitions: options.repetitions,
                                                 sparsity: configuration.controller, packKeptRows: packed) { predicting?.resetStatistics() }
                if let predicting {
                    let decodeSeconds = m.samplesTokensPerSecond.reduce(0) { $0 + Double(count) / $1 }
                    predictorShares[measurements.count] = predicting.statistics.seconds / decodeSeconds
                }
                measurements.append((m, packed))
            }
        }
        let plans = (configuration.controller as? FixedSparsity)?.layers ?? predicting?.plans
        let bytes = model.decodeBytesPerToken(plans: plans, keepingAllKeysAndValues: configuration.controller?.keepsAllKeysAndValues ?? false)
        let realised = plans.map { Masks.realisedSparsity($0, shape: model.shape) }
        return measurements.enumerated().map { index, measurement in
            let (m, packed) = measurement
            let isDecode = m.test.hasPrefix("tg")
            var row = Row(model: options.name, method: configuration.method, headSparsity: configuration.sparsity.heads,
                          neuronSparsity: configuration.sparsity.neurons, sizeBytes: model.decodeBytesPerToken,
                          parameters: model.parameterCount, weights: model.weightDType.rawValue,
                          threads: threads, test: m.test, tokensPerSecond: m.mean, stddev: m.stddev,
                          samples: m.samplesTokensPerSecond, bytesPerToken: isDecode ? bytes : nil,
                          gigabytesPerSecond: isDecode ? Double(bytes) * m.mean / 1e9 : nil,
                          predictorShare: predictorShares[index],
                          realisedHeadSparsity: realised?.heads, realisedNeuronSparsity: realised?.neurons)
            row.packedRows = packed
            row.weightsAsked = dtype.rawValue
            row.masks = configuration.controller == nil ? nil : configuration.masks
            if isDecode { row.predictorBytesPerToken = predicting?.predictorBytesPerDecodeToken }
            return row
        }
    }

    /// `-o csv`: a header and one line per row.
    static func csv(_ rows: [Row]) -> [String] {
        func number(_ value: Double?) -> String { value.map { String(format: "%.4f", $0) } ?? "" }
        // RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled.
        func field(_ text: String) -> String {
            text.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
        }
        return ["model,size_bytes,params,weights,threads,method,head_sparsity,neuron_sparsity,test,tokens_per_second,stddev,bytes_per_token,gigabytes_per_second,"
                + "realised_head_sparsity,realised_neuron_sparsity,predictor_share,predictor_bytes_per_token,masks"]
            + rows.map { r in
                "\(field(r.model)),\(r.sizeBytes),\(r.parameters),\(r.weights),\(r.threads),\(r.method)\(r.packedRows ? "+packed" : ""),\(r.headSparsity),\(r.neuronSparsity),\(r.test),"
                    + String(format: "%.3f,%.3f,", r.tokensPerSecond, r.stddev)
                    + "\(r.bytesPerToken.map(String.init) ?? ""),\(r.gigabytesPerSecond.map { String(format: "%.3f", $0) } ?? ""),"
                    + "\(number(r.realisedHeadSparsity)),\(number(r.realisedNeuronSparsity)),\(number(r.predictorShare)),"
                    + "\(r.predictorBytesPerToken.map(String.init) ?? ""),\(field(r.masks ?? ""))"
            }
    }

    /// `-o md` (the default): llama-bench's table, the backward pass's cost where fb rows ran,
    /// and the peak memory, machine and build.
    static func markdown(_ report: Report) -> [String] {
        let rows = report.results
        var lines = ["| model | size | params | weights | threads | method | sparsity | test | t/s | MB/token | GB/s | predictor |",
                     "| --- | ---: | ---: | --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |"]
        for r in rows {
            let size = String(format: "%.1f MiB", Double(r.sizeBytes) / 1_048_576)
            let params = String(format: "%.1f M", Double(r.parameters) / 1e6)
            let speed = String(format: "%.2f ± %.2f", r.tokensPerSecond, r.stddev)
            let bandwidth = r.gigabytesPerSecond.map { String(format: "%.1f", $0) } ?? ""
            let perToken = r.bytesPerToken.map(Markdown.megabytes) ?? ""
            // The share of decode time, and the predictor's own MB per token where it reads any.
            let share = (r.predictorShare.map { String(format: "%.1f%%", $0 * 100) } ?? "")
                + (r.predictorBytesPerToken.flatMap { $0 > 0 ? ", \(Markdown.megabytes($0)) MB" : nil } ?? "")
            let asked = SparsityPair(heads: r.headSparsity, neurons: r.neuronSparsity).description
            let sparsity = r.realisedHeadSparsity.map { asked + String(format: " (%.2f/%.2f)", $0, r.realisedNeuronSparsity ?? 0) } ?? asked
            let weights = r.weightsAsked.map { $0 == r.weights ? r.weights : "\(r.weights) (\($0) asked)" } ?? r.weights
            lines.append("| \(r.model) | \(size) | \(params) | \(weights) | \(r.threads) | \(r.method)\(r.packedRows ? " (packed)" : "") | \(sparsity) | \(r.test) | \(speed) | \(perToken) | \(bandwidth) | \(share) |")
        }
        for fb in rows where fb.test.hasPrefix("fb") {
            if let fw = rows.first(where: { $0.test == "fw" + fb.test.dropFirst(2) && $0.weights == fb.weights && $0.weightsAsked == fb.weightsAsked && $0.threads == fb.threads }) {
                lines.append(String(format: "\n%@ %@ t=%ld: forward + backward takes %.2f× the forward pass's time",
                                    fb.test, fb.weights, fb.threads, fw.tokensPerSecond / fb.tokensPerSecond))
            }
        }
        lines.append("")
        if let masks = report.masks { lines.append(masks.description) }
        lines.append("peak RSS \(String(format: "%.1f MiB", Double(report.peakResidentBytes) / 1_048_576)); \(report.machine); \(report.build)")
        return lines
    }
}

extension BenchCommand {
    /// What a `bench` command asks for, read and checked before any model is loaded.
    struct Options {
        let path: String
        /// The model's file name, as the rows name it.
        let name: String
        let prompts: [Int]
        let generations: [Int]
        let backwardLengths: [Int]
        let repetitions: Int
        let threadCounts: [Int]
        let dtypes: [WeightDType]
        let format: String
        let showProgress: Bool
        let methods: [String]
        /// Each sparse row's (heads, neurons): --sparsity's list, a side fixed by its own option.
        let pairs: [SparsityPair]
        let policy: MaskPolicy
        let hybridFloor: Double
        let packings: [SparsityOptions.Packing]
        let scoresPath: String?
        let predictorPath: String?
        let refresh: Int?

        init(_ arguments: ParsedArguments) throws {
            path = try ModelOptions.modelPath(arguments)
            name = URL(fileURLWithPath: path).lastPathComponent
            prompts = (try arguments.intList("p", range: 0...65536) ?? [512]).droppingRepeats()
            generations = (try arguments.intList("n", range: 0...65536) ?? [128]).droppingRepeats()
            backwardLengths = (try arguments.intList("b", range: 0...65536) ?? [0]).droppingRepeats()
            repetitions = try arguments.int("r", range: 1...1000) ?? 5
            threadCounts = (try arguments.intList("threads", range: 1...256) ?? [Threads.defaultCount]).droppingRepeats()
            dtypes = (try arguments.list("weights") ?? ["f16"]).compactMap(WeightDType.init(rawValue:)).droppingRepeats()
            format = arguments.string("o") ?? "md"
            showProgress = !arguments.flag("no-progress")
            methods = (try arguments.list("method") ?? ["dense"]).droppingRepeats()
            let sparsities = (try (arguments.list("sparsity") ?? ["0.5"]).map { text -> Double in
                guard let value = Double(text), value >= 0, value < 1 else {
                    let hint = Double(text).map(SparsitySettings.percentageHint) ?? ""
                    throw ShadowError.invalidArgument(name: "--sparsity", reason: "values must be in [0, 1), got \"\(text)\"\(hint)")
                }
                return value
            }).droppingRepeats()
            policy = MaskPolicy(rawValue: try arguments.required("policy"))!
            let headOverride = try arguments.double("head-sparsity")
            let neuronOverride = try arguments.double("neuron-sparsity")
            try SparsityOptions.refuseUnreadSparsity(arguments)
            pairs = (headOverride != nil && neuronOverride != nil ? [0] : sparsities).map {
                SparsityPair(heads: headOverride ?? $0, neurons: neuronOverride ?? $0)
            }.droppingRepeats()
            hybridFloor = try arguments.double("hybrid-floor") ?? 0.1
            for pair in pairs {
                try SparsitySettings(headSparsity: pair.heads, neuronSparsity: pair.neurons, policy: policy, hybridFloor: hybridFloor).validate()
            }
            // fb<n> scores one calibrate sample, which predicts at least one token from at least one.
            if backwardLengths.contains(1) {
                throw ShadowError.invalidArgument(name: "-b", reason: "1 is too short: fw/fb need at least 2 tokens, one predicted from another (0 skips)")
            }
            // -b runs for the dense method only.
            let measures = prompts.contains { $0 > 0 } || generations.contains { $0 > 0 }
                || (methods.contains("dense") && backwardLengths.contains { $0 > 0 })
            guard measures else {
                let why = backwardLengths.contains { $0 > 0 } ? "-p and -n are 0, and -b runs for the dense method only" : "-p, -n and -b are 0"
                throw ShadowError.invalidArgument(name: "bench", reason: "nothing to measure: \(why)")
            }
            try SparsityOptions.refuseUnread(arguments, methods: methods, offersOracle: false)
            if backwardLengths.contains(where: { $0 > 0 }), !methods.contains("dense") {
                throw ShadowError.invalidArgument(name: "-b", reason: "runs for the dense method only; add dense to --method")
            }
            packings = (try (arguments.list("packing") ?? ["off"]).compactMap(SparsityOptions.Packing.init(rawValue:))).droppingRepeats()
            if arguments.has("packing"), !generations.contains(where: { $0 > 0 }) {
                throw ShadowError.invalidArgument(name: "--packing", reason: "is only read when decoding (-n above 0)")
            }
            for option in ["sparsity", "head-sparsity", "neuron-sparsity"] where arguments.has(option) && methods.allSatisfy({ $0 == "dense" }) {
                throw ShadowError.invalidArgument(name: "--\(option)", reason: "is only read with a sparse --method (dense runs at 0)")
            }
            scoresPath = arguments.string("scores")
            predictorPath = arguments.string("predictor")
            refresh = try arguments.int("refresh", range: 0...1_000_000)
        }
    }
}

extension BenchCommand {
    /// fw<n>: a forward pass over n tokens with every logit (what the loss needs); fb<n>: what
    /// `calibrate` does per sample (forward saving activations, backward, plainact scores).
    static func forwardBackward(model: any DifferentiableLanguageModel, tokens count: Int,
                                repetitions: Int) throws -> [Benchmark.Measurement] {
        let tokens = Benchmark.tokens(count, vocabulary: model.shape.vocabularySize)
        let predictFrom = max(1, count - 32)
        let cache = model.makeCache(capacity: count)
        _ = try Importance.scores(model: model, tokens: tokens, predictFrom: predictFrom, criteria: [.plainact])  // warm-up
        func tokensPerSecond(_ body: () throws -> Void) rethrows -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(count) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        var forward: [Double] = [], both: [Double] = []
        for _ in 0..<repetitions {
            cache.reset()
            forward.append(tokensPerSecond { _ = model.forward(tokens, cache: cache, logits: .all, sparsity: nil) })
            both.append(try tokensPerSecond {
                _ = try Importance.scores(model: model, tokens: tokens, predictFrom: predictFrom, criteria: [.plainact])
            })
        }
        return [Benchmark.Measurement(test: "fw\(count)", tokens: count, samplesTokensPerSecond: forward),
                Benchmark.Measurement(test: "fb\(count)", tokens: count, samplesTokensPerSecond: both)]
    }
}

/// One sparse row's fractions of heads and neurons to prune; written "p" when they are equal,
/// "heads/neurons" when not.
struct SparsityPair: Hashable, CustomStringConvertible {
    var heads: Double
    var neurons: Double

    var description: String { heads == neurons ? "\(heads)" : "\(heads)/\(neurons)" }
}

/// A one-line description of this machine for benchmark rows, naming AVX512-BF16 when present
/// (what `--weights bf16-dot` needs to run fast).
enum Machine {
    static var description: String {
        var cpu = "unknown CPU"
        if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
           let name = line.split(separator: ":", maxSplits: 1).last {
            cpu = name.trimmingCharacters(in: .whitespaces)
        }
        let bf16 = BF16Products.isAvailable ? ", AVX512-BF16" : ""
        // The cores this process may run on (taskset, cgroups), as the thread default counts them.
        let usable = Threads.defaultCount, online = ProcessInfo.processInfo.activeProcessorCount
        let cores = usable < online ? "\(usable) of \(online) cores" : "\(online) cores"
        return "\(cpu), \(cores)\(bf16)"
    }

}
