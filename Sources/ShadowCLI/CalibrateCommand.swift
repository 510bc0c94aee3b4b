import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels
import ShadowSparsity

/// `shadowllm calibrate`: per-sample importance traces for predictor training.
enum CalibrateCommand {
    static let command = Command(
        name: "calibrate", abstract: "Compute per-sample importance of every head and neuron and stream traces to disk.",
        discussion: """
            Sources are KIND:PATH[@FROM-TO] (items or text windows FROM..<TO), comma-separated; KIND is a task \
            (piqa, hellaswag, copa, arc_easy, arc_challenge, openbookqa, winogrande, rte, boolq) giving k-shot prompts \
            with the gold answer as continuation, or text giving windows whose last tokens are the continuation. \
            Samples alternate between sources. Traces go to --out in chunks with a manifest rewritten after each \
            chunk: a killed run continues with --resume (Ctrl-C first saves the samples already computed), and --shard i/n computes every n-th sample so machines can \
            share the work (join them with `shadowllm traces merge`).
            """,
        options: ModelOptions.prefillOptions + [
            .value("source", "specs", help: "Calibration sources, e.g. piqa:valid.jsonl@1000-1838,text:corpus.txt. @FROM-TO takes items (text: windows) FROM to TO − 1; @FROM- or a TO past the end reads to the end, a FROM past it is an error; a file's items are taken once (overlapping slices of one file are refused)."),
            .value("samples", "n", help: "Number of samples (taken from the sources in turn).", default: "256"),
            .value("criteria", "names", help: "Criteria to record.", default: "plainact",
                   allowed: Criterion.allCases.map(\.rawValue), list: true),
            .value("shots", "k", help: "Examples before each task query.", default: "5"),
            .value("seed", "n", help: "Seed for drawing the shots.", default: "1234"),
            .value("text-window", "n", help: "Tokens per plain-text window.", defaultDescription: "128, or the model's context if smaller"),
            .value("text-continuation", "n", help: "Tokens of each window scored as its continuation.",
                   defaultDescription: "32, or a quarter of a default window shrunk to the model's context"),
            .value("max-tokens", "n", help: "Task samples (piqa:, hellaswag:, … every KIND but text) longer than this lose tokens from the left (an item whose answer alone has this many tokens or more is left out, and counted in a warning); text windows are --text-window tokens long whatever this says.", defaultDescription: "512, or the model's context if smaller"),
            .value("predictor-token", "rule", help: "Which token's activations the predictor reads.",
                   default: PredictorToken.lastContext.rawValue, allowed: PredictorToken.allCases.map(\.rawValue)),
            .value("out", short: "o", "dir", help: "Trace directory."),
            .value("shard", "i/n", help: "Compute only the samples with index ≡ i (mod n).", default: "0/1"),
            .value("chunk-size", "n", help: "Samples per chunk file.", default: "64"),
            .flag("resume", help: "Continue the traces already in --out."),
            .flag("no-progress", help: "Hide the progress bar."),
            .flag("json", help: "Print {\"out\", \"samples\", \"chunks\", \"complete\", \"interrupted\", \"left_out\", \"shard\", \"seconds\", \"samples_per_second\" (null when this run computed none)} instead of the summary line (also when Ctrl-C stops the run: interrupted true, status 130)."),
        ],
        interruptible: true
    ) { arguments, console in
        let sourceSpecs = try arguments.required("source")
        guard !sourceSpecs.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ShadowError.invalidArgument(name: "--source", reason: "is empty (e.g. piqa:valid.jsonl@1000-1838,text:corpus.txt)")
        }
        let sources = try (arguments.list("source") ?? []).map { try CalibrationSource.parse($0) }
        if arguments.flag("verbose") {
            // Two ranges of one file read the same labels: said once.
            var said = Set<String>()
            for source in sources {
                guard case .task(let task) = source.kind, let labels = source.labels, said.insert("\(task.rawValue):\(source.path)").inserted else { continue }
                console.printLabels("calibrate", task: task.rawValue, labels: labels, data: source.path, given: false)
            }
        }
        let out = try arguments.required("out")
        let count = try arguments.int("samples", range: 1...10_000_000) ?? 256
        let criteria = (try arguments.list("criteria") ?? ["plainact"]).compactMap(Criterion.init(rawValue:))
        guard !criteria.isEmpty else { throw ShadowError.invalidArgument(name: "--criteria", reason: "needs at least one criterion") }
        if let twice = criteria.first(where: { c in criteria.filter { $0 == c }.count > 1 }) {
            throw ShadowError.invalidArgument(name: "--criteria", reason: "lists \(twice.rawValue) twice")
        }
        let shots = try arguments.int("shots", range: 0...64) ?? 5
        let seed = UInt64(try arguments.int("seed", range: 0...Int.max) ?? 1234)
        let textWindow = try arguments.int("text-window", range: 2...1_000_000)
        let textContinuation = try arguments.int("text-continuation", range: 1...1_000_000)
        let maxTokens = try arguments.int("max-tokens", range: 2...1_000_000)
        if !sources.contains(where: { $0.kind == .text }) {
            for option in ["text-window", "text-continuation"] where arguments.has(option) {
                throw ShadowError.invalidArgument(name: "--\(option)", reason: "is only read with a text: source")
            }
        }
        if !sources.contains(where: { $0.kind != .text }) {
            for option in ["shots", "seed", "max-tokens"] where arguments.has(option) {
                throw ShadowError.invalidArgument(name: "--\(option)", reason: "is only read with a task source (piqa:, hellaswag:, …)")
            }
        }
        // The same items twice would be duplicate samples, which can fall on both sides of a
        // predictor's held-out split and flatter its quality.
        for (i, a) in sources.enumerated() {
            for b in sources[(i + 1)...] where a.kind == b.kind && AtomicFile.canonical(a.path) == AtomicFile.canonical(b.path)
                && (a.range ?? 0..<Int.max).overlaps(b.range ?? 0..<Int.max) {
                throw ShadowError.invalidArgument(name: "--source", reason: "\(a) and \(b) take the same \(a.kind == .text ? "windows" : "items") twice")
            }
        }
        let (shardIndex, shardCount) = try parseShard(try arguments.required("shard"))
        let chunkSize = try arguments.int("chunk-size", range: 1...100_000) ?? 64
        let predictorToken = PredictorToken(rawValue: try arguments.required("predictor-token"))!

        let loaded = try ModelOptions.load(arguments, console: console)
        let model = try loaded.requireDifferentiable(for: "calibrate")
        // Defaults fit a context shorter than the default lengths (tiny test models); given values
        // are taken as they are (a --text-window given keeps the default continuation of 32).
        var options: CalibrationOptions
        do {
            options = try CalibrationOptions(fittedTo: model.shape.maxContext, shots: shots, seed: seed)
        } catch ShadowError.invalidArgument("context", let reason) {
            // The library names the context; here it is the model's, given with --model.
            throw ShadowError.invalidArgument(name: "--model", reason: "\(loaded.path): \(reason)")
        }
        if let textWindow { (options.textWindow, options.textContinuation) = (textWindow, CalibrationOptions().textContinuation) }
        if let textContinuation { options.textContinuation = textContinuation }
        if textWindow == nil, options.textContinuation >= options.textWindow {
            throw ShadowError.invalidArgument(name: "--text-continuation", reason: "must be less than the text window, here \(model.shape.maxContext < CalibrationOptions().textWindow ? "the model's context of" : "the default of") \(options.textWindow) tokens (--text-window sets another)")
        }
        if let maxTokens {
            guard maxTokens <= model.shape.maxContext else {
                throw ShadowError.invalidArgument(name: "--max-tokens", reason: "exceeds \(model.contextDescription)")
            }
            options.maxTokens = maxTokens
        }
        var leftOut = 0
        let samples = try CalibrationSet.samples(sources: sources, count: count, options: options,
                                                 tokenizer: try loaded.requireTokenizer(), leftOut: &leftOut)
        let why = leftOut == 0 ? "" : "\(counted(leftOut, "task item")) left out: an answer of --max-tokens \(options.maxTokens) tokens or more, or one that adds no token to its context"
        guard !samples.isEmpty else { throw ShadowError.invalidArgument(name: "--source", reason: "gave no samples" + (why.isEmpty ? "" : "; " + why)) }
        if samples.count < count {
            console.printError("warning: the sources give \(counted(samples.count, "sample")), fewer than --samples \(count)" + (why.isEmpty ? "" : "; " + why))
        } else if !why.isEmpty {
            console.printError("warning: " + why)
        }
        // Checked before --out is created: text windows are not cut to --max-tokens.
        if let long = samples.first(where: { $0.tokens.count > model.shape.maxContext }) {
            throw ShadowError.invalidArgument(name: long.source.hasPrefix("text:") ? "--text-window" : "--max-tokens",
                                              reason: "sample \(long.index) (\(long.source)) has \(long.tokens.count) tokens, more than \(model.contextDescription)")
        }
        let manifest = TraceManifest(
            model: try ModelFingerprint(loaded: loaded), criteria: criteria.map(\.rawValue), predictorToken: predictorToken,
            sources: sources.map(\.recordedDescription), options: options, requestedSamples: count,
            shardIndex: shardIndex, shardCount: shardCount, chunkSize: chunkSize, weights: loaded.model.weightDType.rawValue,
            sourceDigests: try sources.map { try $0.contentDigest() })
        let existed = try entryExists(atPath: out)
        let manifestPath = (out as NSString).appendingPathComponent(TraceManifest.fileName)
        let manifestExisted = try fileKind(atPath: manifestPath) != nil   // as TraceWriter decides
        let writer = try TraceWriter(directory: out, manifest: manifest, resume: arguments.flag("resume"))
        let samplesBefore = writer.manifest.sampleCount, started = Date()
        var bar: ProgressBar?
        let calibrator = Calibrator(model: model, criteria: criteria, predictorToken: predictorToken)
        func printReport(interrupted: Bool) throws {
            let seconds = Date().timeIntervalSince(started)
            // samples_per_second counts this run's samples only (a resumed run found the others done).
            let computed = writer.manifest.sampleCount - samplesBefore
            console.print(try JSONOutput.string(Report(
                out: out, samples: writer.manifest.sampleCount, chunks: writer.manifest.chunks.count, complete: writer.manifest.complete,
                interrupted: interrupted, leftOut: leftOut, shard: "\(shardIndex)/\(shardCount)", seconds: seconds,
                samplesPerSecond: computed > 0 && seconds > 0 ? Double(computed) / seconds : nil)))
        }
        do {
            try calibrator.run(samples: samples, writer: writer) { done, total in
                if bar == nil {
                    bar = ProgressBar(console: console, label: "calibrate", total: total, enabled: !arguments.flag("no-progress"))
                }
                bar?.update(done)
            }
        } catch {
            // A directory this run created and failed before filling would block the corrected
            // command, and so would the manifest it wrote into a directory that was there (an
            // interrupted run is kept for --resume).
            var interrupted = false
            if case .interrupted? = error as? ShadowError { interrupted = true }
            if !interrupted && writer.manifest.chunks.isEmpty {
                if !existed { try? FileManager.default.removeItem(atPath: out) }
                else if !manifestExisted { try? FileManager.default.removeItem(atPath: manifestPath) }
            }
            // What an interrupted run saved is reported as a finished one is (then status 130).
            if interrupted && arguments.flag("json") { try printReport(interrupted: true) }
            throw error
        }
        if arguments.flag("json") {
            try printReport(interrupted: false)
            return
        }
        console.print("wrote \(counted(writer.manifest.sampleCount, "sample")) in \(counted(writer.manifest.chunks.count, "chunk")) to \(out)"
                      + (shardCount > 1 ? " (shard \(shardIndex)/\(shardCount))" : ""))
    }

    /// What `--json` prints.
    struct Report: Encodable {
        let out: String
        let samples: Int, chunks: Int
        let complete: Bool
        /// True when Ctrl-C (or SIGTERM) stopped the run: the samples saved so far, kept for --resume.
        let interrupted: Bool
        /// Task items left out (an answer of --max-tokens tokens or more, or one adding no token).
        let leftOut: Int
        let shard: String
        let seconds: Double
        /// nil (written as null, never left out) when this run computed no sample.
        let samplesPerSecond: Double?
        enum CodingKeys: String, CodingKey {
            case out, samples, chunks, complete, interrupted, shard, seconds
            case leftOut = "left_out", samplesPerSecond = "samples_per_second"
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(out, forKey: .out)
            try c.encode(samples, forKey: .samples)
            try c.encode(chunks, forKey: .chunks)
            try c.encode(complete, forKey: .complete)
            try c.encode(interrupted, forKey: .interrupted)
            try c.encode(leftOut, forKey: .leftOut)
            try c.encode(shard, forKey: .shard)
            try c.encode(seconds, forKey: .seconds)
            try c.encode(samplesPerSecond, forKey: .samplesPerSecond)
        }
    }

    static func parseShard(_ text: String) throws -> (Int, Int) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, i >= 0, i < n else {
            throw ShadowError.invalidArgument(name: "--shard", reason: "expected i/n with 0 ≤ i < n, got \"\(text)\"")
        }
        return (i, n)
    }
}

/// `shadowllm traces merge`: joins calibration shards.
enum MergeTracesCommand {
    static let command = Command(
        name: "traces merge", abstract: "Join the trace directories of calibration shards into one, in sample order.",
        options: [
            .value("shards", "dirs", help: "The shard directories, comma-separated (any order)."),
            .value("out", short: "o", "dir", help: "The merged trace directory (must not exist yet)."),
            .flag("json", help: "Print JSON: out, shards, samples, chunks, complete."),
        ]
    ) { arguments, console in
        let shards = (try arguments.list("shards") ?? []).filter { !$0.isEmpty }
        let out = try arguments.required("out")
        try TraceStore.merge(shards: shards, into: out)
        let manifest = try TraceManifest.load(directory: out)
        if arguments.flag("json") {
            console.print(try JSONOutput.string(Report(
                out: out, shards: shards.count, samples: manifest.sampleCount, chunks: manifest.chunks.count, complete: manifest.complete)))
            return
        }
        console.print("merged \(counted(shards.count, "shard")) into \(out) (\(counted(manifest.sampleCount, "sample")))")
    }

    /// What `--json` prints.
    struct Report: Encodable {
        let out: String
        let shards: Int, samples: Int, chunks: Int
        let complete: Bool
    }
}

/// `shadowllm traces info DIR`: what a trace directory holds.
enum TraceInfoCommand {
    struct Report: Encodable {
        let directory: String
        let manifest: TraceManifest
        let samples: Int
        let bytes: Int
    }

    static let command = Command(
        name: "traces info", abstract: "Describe a trace directory: model, criteria, sources, samples, shard, progress.",
        positional: .value("dir", "dir", help: "The trace directory."),
        options: [.flag("json", help: "Print JSON (the manifest plus totals).")]
    ) { arguments, console in
        let directory = try arguments.required("dir")
        // Every chunk the manifest lists is opened and its header checked, so that a directory
        // with a chunk missing or cut short is not described as complete.
        let manifest = try TraceStore.open(directory: directory)
        let bytes = manifest.chunks.reduce(0) { total, chunk in
            let path = (directory as NSString).appendingPathComponent(chunk.file)
            return total + ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
        }
        if arguments.flag("json") {
            console.print(try JSONOutput.string(Report(directory: directory, manifest: manifest, samples: manifest.sampleCount, bytes: bytes)))
            return
        }
        console.print("""
            traces          \(directory)
            model           \(manifest.model)
            criteria        \(manifest.criteria.joined(separator: ", "))
            predictor token \(manifest.predictorToken.rawValue)
            weights         \(manifest.weights ?? "not recorded (traces from before 2026-12-05)")
            sources         \(manifest.sources.joined(separator: ", "))
            samples         \(samplesLine(manifest))
            chunks          \(manifest.chunks.count) (\(String(format: "%.1f MB", Double(bytes) / 1e6)))
            complete        \(manifest.complete ? "yes" : "no (continue with calibrate --resume)")
            """)
    }

    /// "5 of 8 requested", or for a shard its share as an interrupted calibrate counts it:
    /// "2 of shard 0/2's 4 (8 requested in all)" (fewer when the sources held fewer samples).
    static func samplesLine(_ manifest: TraceManifest) -> String {
        let (index, count, requested) = (manifest.shardIndex, manifest.shardCount, manifest.requestedSamples)
        guard count > 1 else { return "\(manifest.sampleCount) of \(requested) requested" }
        let share = requested > index ? (requested - index + count - 1) / count : 0
        return "\(manifest.sampleCount) of shard \(index)/\(count)'s \(share) (\(requested) requested in all)"
    }
}
