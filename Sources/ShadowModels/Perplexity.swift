import Foundation
import ShadowFormats
import ShadowKernels
import ShadowTokenizers

/// Summed negative log-likelihood of a token sequence, scored in windows of the model's context.
public struct PerplexityResult: Sendable, Codable, Equatable {
    /// Natural-log sum over predicted tokens.
    public var nllSum: Double
    public var predictedTokens: Int
    public var windows: Int
    public var perplexity: Double { predictedTokens > 0 ? exp(nllSum / Double(predictedTokens)) : .nan }

    enum CodingKeys: String, CodingKey {
        case nllSum = "nll_sum", predictedTokens = "predicted_tokens", windows, perplexity
    }

    public init(nllSum: Double, predictedTokens: Int, windows: Int) {
        self.nllSum = nllSum
        self.predictedTokens = predictedTokens
        self.windows = windows
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nllSum = try c.decode(Double.self, forKey: .nllSum)
        predictedTokens = try c.decode(Int.self, forKey: .predictedTokens)
        windows = try c.decode(Int.self, forKey: .windows)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nllSum, forKey: .nllSum)
        try c.encode(predictedTokens, forKey: .predictedTokens)
        try c.encode(windows, forKey: .windows)
        try c.encode(perplexity, forKey: .perplexity)
    }
}

public enum Scoring {
    /// −log p(token | previous tokens) for tokens 1 ..< count of one sequence (token 0 is context only),
    /// in one pass: at most the model's context plus one tokens (`perplexity` windows longer texts).
    public static func tokenNLL(model: any CausalLanguageModel, tokens: [Int],
                                sparsity: (any SparsityController)? = nil) -> [Double] {
        guard tokens.count > 1 else { return [] }
        guard tokens.count - 1 <= model.shape.maxContext else {
            fatalError("Scoring.tokenNLL: \(tokens.count) tokens need a pass of \(tokens.count - 1), past \(model.contextDescription); Scoring.perplexity windows a longer text")
        }
        let cache = model.makeCache(capacity: tokens.count - 1)
        let logProbabilities = model.forward(Array(tokens.dropLast()), cache: cache,
                                             logits: .targetLogProbabilities(Array(tokens.dropFirst())), sparsity: sparsity)
        return logProbabilities.map { -Double($0) }
    }

    /// The default stride: lm-eval's rolling windows (`get_rolling_token_windows` with context_len 1).
    public static func defaultStride(context: Int) -> Int { context }

    /// The windows `perplexity` runs: lm-eval's rolling windows, generalised to a stride. The
    /// targets (every token after the first) are taken in blocks of `stride`; one forward pass
    /// predicts a block from the `context` tokens just before its last target (fewer at the
    /// start of the text), so no token is predicted twice and each gets as much context as the
    /// window allows. With `stride == context` (the default) these are exactly lm-eval's windows:
    /// the first token of each block has one token of context, and the last window reaches back
    /// a whole context. A smaller stride gives every block more context, at more passes.
    public static func windows(tokens: Int, context: Int, stride: Int? = nil) -> [PerplexityWindow] {
        let step = max(1, min(stride ?? defaultStride(context: context), context))
        guard tokens >= 2, context >= 1 else { return [] }
        return Swift.stride(from: 1, to: tokens, by: step).map { first in
            let end = min(first + step, tokens)
            return PerplexityWindow(input: max(0, end - 1 - context)..<(end - 1), targets: first..<end)
        }
    }

    /// How many windows `perplexity` runs over `tokens` tokens (the same walk, without the model).
    public static func windowCount(tokens: Int, context: Int, stride: Int? = nil) -> Int {
        windows(tokens: tokens, context: context, stride: stride).count
    }

    /// Scores `tokens` in the rolling windows of `windows`. The very first token is never
    /// predicted: it is the BOS or prefix token (lm-eval's `prefix_token_id`) the caller puts
    /// there, or the first token of a text scored as it stands.
    public static func perplexity(model: any CausalLanguageModel, tokens: [Int], context: Int, stride: Int? = nil,
                                  sparsity: (any SparsityController)? = nil, progress: ((Int, Int) -> Void)? = nil) throws -> PerplexityResult {
        guard tokens.count >= 2 else {
            throw ShadowError.invalidArgument(name: "text", reason: "needs at least 2 tokens to score, got \(tokens.count)")
        }
        try model.shape.checkTokens(tokens, option: "text")
        try model.shape.checkController(sparsity)
        guard context >= 1 else { throw ShadowError.invalidArgument(name: "--context", reason: "must be at least 1, got \(context)") }
        guard context <= model.shape.maxContext else {
            throw ShadowError.invalidArgument(name: "--context", reason: "\(context) exceeds \(model.contextDescription)")
        }
        let step = stride ?? defaultStride(context: context)
        guard step >= 1 && step <= context else {
            throw ShadowError.invalidArgument(name: "--stride", reason: "must be between 1 and the context (\(context)), got \(step)")
        }
        let windows = windows(tokens: tokens.count, context: context, stride: step)
        var nll = 0.0, predicted = 0
        // A first report before any work, so a progress bar is on screen from the start.
        progress?(0, windows.count)
        for (index, window) in windows.enumerated() {
            let input = Array(tokens[window.input])
            (sparsity as? PromptAwareController)?.prepare(prompt: input)
            let cache = model.makeCache(capacity: input.count)
            // Row r of the input predicts tokens[input.lowerBound + r + 1].
            let next = Array(tokens[window.input.lowerBound + 1 ... window.input.upperBound])
            let logProbabilities = model.forward(input, cache: cache, logits: .targetLogProbabilities(next), sparsity: sparsity)
            for target in window.targets {
                nll -= Double(logProbabilities[target - 1 - window.input.lowerBound])
            }
            guard nll.isFinite else {
                throw ShadowError.notFinite("the log-probabilities of window \(index + 1) of \(windows.count) (tokens \(window.targets.lowerBound)–\(window.targets.upperBound - 1)) are")
            }
            predicted += window.targets.count
            progress?(index + 1, windows.count)
        }
        return PerplexityResult(nllSum: nll, predictedTokens: predicted, windows: windows.count)
    }
}

/// A text's perplexity with the bytes behind it, for bits per byte.
public struct ScoredText: Sendable, Equatable, Codable {
    public var result: PerplexityResult
    /// The text's tokens, the first included (context only, never predicted).
    public var tokens: Int
    /// UTF-8 bytes of the text.
    public var bytes: Int
    /// The bytes of the predicted tokens: the text's, less those of its first token (none when it
    /// is the BOS the tokenizer adds). At least 1.
    public var predictedBytes: Int
    public var bitsPerByte: Double { result.nllSum / Double(predictedBytes) / log(2) }

    enum CodingKeys: String, CodingKey {
        case result, tokens, bytes, predictedBytes = "predicted_bytes"
    }

    public init(result: PerplexityResult, tokens: Int, bytes: Int, predictedBytes: Int) {
        self.result = result
        self.tokens = tokens
        self.bytes = bytes
        self.predictedBytes = predictedBytes
    }
}

extension Scoring {
    /// The window length the commands use when none is given: 1024, or the model's context if smaller.
    public static func defaultContext(for model: any CausalLanguageModel) -> Int { min(1024, model.shape.maxContext) }

    /// Tokenizes `text` as the `perplexity` command does (special tokens' spellings read as those
    /// tokens, a BOS when the tokenizer adds one) and scores it in rolling windows of `context`
    /// tokens (`defaultContext(for:)` when nil), counting the bytes behind the predicted tokens.
    /// Errors about the text name it "text".
    public static func perplexity(model: any CausalLanguageModel, tokenizer: any Tokenizer, text: String,
                                  context: Int? = nil, stride: Int? = nil, sparsity: (any SparsityController)? = nil,
                                  progress: ((Int, Int) -> Void)? = nil) throws -> ScoredText {
        guard !text.isEmpty else { throw ShadowError.invalidArgument(name: "text", reason: "is empty") }
        let tokens = tokenizer.encodeWithSpecialTokens(text)
        if let outside = tokens.first(where: { $0 >= model.shape.vocabularySize }) {
            throw ShadowError.invalidArgument(name: "tokenizer", reason: "gives id \(outside), outside the model's vocabulary of \(model.shape.vocabularySize): is it this model's own tokenizer?")
        }
        guard tokens.count >= 2 else {
            throw ShadowError.invalidArgument(name: "text", reason: "is \(counted(tokens.count, "token")); scoring needs at least 2 (the first is never predicted)")
        }
        let result = try perplexity(model: model, tokens: tokens, context: context ?? defaultContext(for: model),
                                    stride: stride, sparsity: sparsity, progress: progress)
        // The first token is context only: a BOS the tokenizer adds holds none of the text's
        // bytes; else its raw bytes leave the count (one of a character's several, a BOM's first,
        // all of a special token's spelling), not the U+FFFD its text would read as.
        let firstTokenBytes = tokenizer.addsBOS ? 0 : tokenizer.decodeBytes([tokens[0]], skipSpecialTokens: false).count
        let bytes = text.utf8.count
        return ScoredText(result: result, tokens: tokens.count, bytes: bytes, predictedBytes: max(1, bytes - firstTokenBytes))
    }
}

/// One forward pass of a perplexity walk: the tokens it reads and the tokens it predicts (each
/// target `t` from the input up to token `t − 1`).
public struct PerplexityWindow: Sendable, Equatable {
    public var input: Range<Int>
    public var targets: Range<Int>
}
