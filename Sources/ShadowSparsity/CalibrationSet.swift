import Foundation
import ShadowFormats
import ShadowTasks
import ShadowTokenizers

/// Where calibration samples come from: a task file (k-shot prompts with the gold answer as
/// continuation) or plain text (windows whose last tokens are the continuation). DESIGN §3.
public struct CalibrationSource: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case task(TaskName)
        case text
    }

    public var kind: Kind
    public var path: String
    /// Items (tasks) or windows (text) `from ..< to` of the file; nil: all.
    public var range: Range<Int>?
    /// PIQA / Winogrande labels file (found beside the data as `NAME-labels.lst` when not given).
    public var labels: String?

    public var description: String {
        let name: String
        switch kind {
        case .task(let task): name = task.rawValue
        case .text: name = "text"
        }
        return "\(name):\(path)" + (range.map { "@\($0.lowerBound)-" + ($0.upperBound == Int.max ? "" : "\($0.upperBound)") } ?? "")
    }

    /// `description` as a trace manifest records it: with how the source is read where that has
    /// changed, so that traces begun under the old reading are not extended under the new one
    /// (HellaSwag's ctx_b is capitalised as lm-eval's since 2026-12-04).
    public var recordedDescription: String {
        kind == .task(.hellaswag) ? description + " (ctx_b capitalised)" : description
    }

    /// FNV-1a over the file's bytes and its labels file's, which a trace manifest records: a
    /// resumed run or another shard over changed files would mix samples of two versions.
    public func contentDigest() throws -> String {
        var digest = try FNV1a.ofFile(path)
        if let labels { try digest.mixFile(path: labels) }
        return digest.hex
    }

    /// Parses `kind:path[@from-to]`, e.g. `piqa:data/piqa/valid.jsonl@1000-1838`, `text:corpus.txt`.
    public static func parse(_ spec: String) throws -> CalibrationSource {
        guard let colon = spec.firstIndex(of: ":") else {
            throw ShadowError.invalidArgument(name: "--source", reason: "\"\(spec)\" is not KIND:PATH (e.g. piqa:valid.jsonl, text:corpus.txt)")
        }
        let name = String(spec[..<colon])
        var path = String(spec[spec.index(after: colon)...])
        var range: Range<Int>?
        if let at = path.lastIndex(of: "@") {
            let bounds = path[path.index(after: at)...].split(separator: "-", omittingEmptySubsequences: false)
            // @FROM- runs to the end, Int.max standing for it (FROM = Int.max is then an empty
            // slice, refused later as starting past the items, like any FROM past them).
            guard bounds.count == 2, let from = Int(bounds[0]), let to = bounds[1].isEmpty ? Int.max : Int(bounds[1]),
                  from >= 0, to > from || bounds[1].isEmpty else {
                throw ShadowError.invalidArgument(name: "--source", reason: "\"\(spec)\": the slice must be @FROM-TO with FROM < TO, or @FROM- to the end")
            }
            range = from..<to
            path = String(path[..<at])
        }
        guard !path.isEmpty else { throw ShadowError.invalidArgument(name: "--source", reason: "\"\(spec)\" has no path") }
        let kind: Kind
        if name == "text" {
            kind = .text
        } else if let task = TaskName(rawValue: name), task.isMultipleChoice {
            kind = .task(task)
        } else {
            let names = TaskName.allCases.filter(\.isMultipleChoice).map(\.rawValue) + ["text"]
            throw ShadowError.invalidArgument(name: "--source", reason: "unknown kind \"\(name)\" (one of \(names.joined(separator: ", ")))")
        }
        var labels: String?
        if case .task(let task) = kind { labels = try TaskFile.labelsBeside(data: path, task: task) }
        return CalibrationSource(kind: kind, path: path, range: range, labels: labels)
    }
}

/// One calibration sample, tokenized: the loss is taken over tokens[predictFrom...].
public struct CalibrationSample: Sendable, Equatable {
    /// Position in the whole calibration set (stable across runs, shards and resumes).
    public var index: Int
    public var source: String
    public var tokens: [Int]
    public var predictFrom: Int

    /// A sample of one's own tokens: `predictFrom` is where the scored continuation starts.
    public init(index: Int, source: String, tokens: [Int], predictFrom: Int) {
        self.index = index
        self.source = source
        self.tokens = tokens
        self.predictFrom = predictFrom
    }
}

/// Which token's activations the predictor reads (DESIGN §3).
public enum PredictorToken: String, Sendable, Codable, CaseIterable {
    /// The last context token: what the engine sees before it generates (the default).
    case lastContext = "last-context"
    /// The last token of context + continuation (the paper's choice).
    case lastInput = "last-input"

    public func position(in sample: CalibrationSample) -> Int {
        self == .lastContext ? sample.predictFrom - 1 : sample.tokens.count - 1
    }
}

public struct CalibrationOptions: Sendable, Codable, Equatable {
    public var shots: Int = 5
    public var seed: UInt64 = 1234
    /// Plain text: window length and continuation length in tokens.
    public var textWindow: Int = 128
    public var textContinuation: Int = 32
    /// Longer samples lose tokens from the left (their continuation is kept).
    public var maxTokens: Int = 512

    enum CodingKeys: String, CodingKey {
        case shots, seed, textWindow = "text_window", textContinuation = "text_continuation", maxTokens = "max_tokens"
    }

    public init(shots: Int = 5, seed: UInt64 = 1234, textWindow: Int = 128, textContinuation: Int = 32, maxTokens: Int = 512) {
        self.shots = shots
        self.seed = seed
        self.textWindow = textWindow
        self.textContinuation = textContinuation
        self.maxTokens = maxTokens
    }

    /// The defaults fitted to a model of `maxContext` tokens: task samples of at most
    /// min(512, context) tokens, text windows of min(128, context) tokens whose continuation is a
    /// quarter of a window shorter than 128 (as 32 is of 128). What `calibrate` uses unless told.
    /// A context below 2 tokens throws: a sample needs a token of context and one to predict.
    public init(fittedTo maxContext: Int, shots: Int = 5, seed: UInt64 = 1234) throws {
        guard maxContext >= 2 else {
            throw ShadowError.invalidArgument(name: "context", reason: "a context of \(counted(maxContext, "token")) cannot be calibrated: a sample needs a token of context and one to predict")
        }
        let window = min(128, maxContext)
        self.init(shots: shots, seed: seed, textWindow: window, textContinuation: window < 128 ? max(1, window / 4) : 32,
                  maxTokens: min(512, maxContext))
    }
}

public enum CalibrationSet {
    /// Builds up to `count` samples, taking sources in turn (round robin) so any prefix of the set
    /// mixes them. The result depends only on the arguments.
    public static func samples(sources: [CalibrationSource], count: Int, options: CalibrationOptions,
                               tokenizer: any Tokenizer) throws -> [CalibrationSample] {
        var leftOut = 0
        return try samples(sources: sources, count: count, options: options, tokenizer: tokenizer, leftOut: &leftOut)
    }

    /// The same, counting in `leftOut` the task items passed over on the way (those that gave no
    /// sample: an answer that alone does not fit `options.maxTokens`, or one that adds no token to
    /// its context), not those of the sources' tails that no sample reached.
    public static func samples(sources: [CalibrationSource], count: Int, options: CalibrationOptions,
                               tokenizer: any Tokenizer, leftOut: inout Int) throws -> [CalibrationSample] {
        guard !sources.contains(where: { $0.kind == .text }) || (options.textContinuation >= 1 && options.textWindow > options.textContinuation) else {
            throw ShadowError.invalidArgument(name: "--text-window", reason: "must exceed the continuation length \(options.textContinuation)")
        }
        let perSource = try sources.map { try samples(from: $0, options: options, tokenizer: tokenizer) }
        var result: [CalibrationSample] = []
        var cursor = [Int](repeating: 0, count: perSource.count)
        while result.count < count {
            var progressed = false
            for s in perSource.indices where result.count < count {
                while cursor[s] < perSource[s].count, perSource[s][cursor[s]] == nil {
                    leftOut += 1
                    cursor[s] += 1
                }
                guard cursor[s] < perSource[s].count, var sample = perSource[s][cursor[s]] else { continue }
                sample.index = result.count
                result.append(sample)
                cursor[s] += 1
                progressed = true
            }
            if !progressed { break }
        }
        return result
    }

    /// One entry per task item (nil for an item that gives no sample) or text window.
    static func samples(from source: CalibrationSource, options: CalibrationOptions,
                        tokenizer: any Tokenizer) throws -> [CalibrationSample?] {
        switch source.kind {
        case .task(let task):
            var items = try TaskFile.multipleChoice(task: task, path: source.path, labels: source.labels)
            if let range = source.range { items = Array(items[try clamped(range, count: items.count, of: "items", source)]) }
            // Shots come from the same slice, never the item itself (FewShot guarantees it); a
            // slice too small for them is refused, as eval refuses a file too small.
            if options.shots > 0, items.count <= options.shots {
                throw ShadowError.invalidArgument(
                    name: "--shots", reason: "\(options.shots) \(options.shots == 1 ? "example needs" : "examples need") \(options.shots + 1) items; \(source) has \(items.count)")
            }
            return items.map { item in
                let context = FewShot.contexts(for: item, shots: options.shots, pool: items, seed: options.seed)[item.gold]
                let contextTokens = tokenizer.encodeWithSpecialTokens(context)
                let tokens = tokenizer.encodeWithSpecialTokens(context + item.continuations[item.gold])
                return sample(tokens: tokens, predictFrom: contextTokens.count, source: source, options: options)
            }
        case .text:
            let data = try readWholeFile(source.path, acceptingStreams: true)
            // Byte for byte, as --text-file: Foundation's decoding would drop a leading BOM.
            let text = try utf8Text([UInt8](data), path: source.path)
            let tokens = tokenizer.encode(text)
            let window = options.textWindow
            var windows = stride(from: 0, to: tokens.count - window + 1, by: window).map { Array(tokens[$0..<$0 + window]) }
            guard !windows.isEmpty else {
                throw ShadowError.invalidArgument(name: "--source", reason: "\(source) has \(tokens.count) tokens, fewer than one --text-window of \(window)")
            }
            if let range = source.range { windows = Array(windows[try clamped(range, count: windows.count, of: "windows", source)]) }
            return windows.map {
                CalibrationSample(index: 0, source: source.description, tokens: $0, predictFrom: window - options.textContinuation)
            }
        }
    }

    /// A source's FROM-TO within its `count` items or windows: one that starts past them is
    /// refused (as eval's --offset is), one that ends past them ends with them.
    static func clamped(_ range: Range<Int>, count: Int, of what: String, _ source: CalibrationSource) throws -> Range<Int> {
        guard range.lowerBound < count else {
            throw ShadowError.invalidArgument(name: "--source", reason: "\(source) starts at \(range.lowerBound), beyond its \(count) \(what)")
        }
        return range.lowerBound..<min(range.upperBound, count)
    }

    /// A sample whose continuation is the tokens after the context's own (the joined text is
    /// tokenized once, as lm-eval does); nil when the continuation adds no token.
    static func sample(tokens: [Int], predictFrom: Int, source: CalibrationSource, options: CalibrationOptions) -> CalibrationSample? {
        guard predictFrom >= 1, tokens.count > predictFrom else { return nil }
        var tokens = tokens, from = predictFrom
        if tokens.count > options.maxTokens {
            let drop = tokens.count - options.maxTokens
            guard drop < from else { return nil }   // the continuation alone is too long
            tokens.removeFirst(drop)
            from -= drop
        }
        return CalibrationSample(index: 0, source: source.description, tokens: tokens, predictFrom: from)
    }
}
