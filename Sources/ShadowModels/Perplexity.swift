import Foundation
import ShadowFormats
import ShadowKernels

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
    /// −log p(token | previous tokens) for tokens 1 ..< count of one sequence (token 0 is context only).
    public static func tokenNLL(model: any CausalLanguageModel, tokens: [Int],
                                sparsity: (any SparsityController)? = nil) -> [Double] {
        guard tokens.count > 1 else { return [] }
        let cache = model.makeCache(capacity: tokens.count)
        let logits = model.forward(tokens, cache: cache, logits: .all, sparsity: sparsity)
        let vocab = model.shape.vocabularySize
        return logits.withUnsafeBufferPointer { all in
            (0..<tokens.count - 1).map { t in
                let row = all.baseAddress! + t * vocab
                return Ops.logSumExp(row, vocab) - Double(row[tokens[t + 1]])
            }
        }
    }

    /// The stride of lm-eval's rolling windows (`get_rolling_token_windows` with context_len 1):
    /// each window after the first starts at the last token of the one before, so the windows'
    /// predictions are disjoint and every token after the first is predicted, with at least one
    /// token of context. A stride of `context` would leave each window's first token unpredicted
    /// and so bias word and byte perplexity low.
    public static func defaultStride(context: Int) -> Int { max(1, context - 1) }

    /// How many windows `perplexity` runs over `tokens` tokens (the same walk, without the model).
    public static func windowCount(tokens: Int, context: Int, stride: Int? = nil) -> Int {
        let step = max(1, min(stride ?? defaultStride(context: context), context))
        guard tokens >= 2, context >= 2 else { return 0 }
        var windows = 0, start = 0, scoredUpTo = 1
        while scoredUpTo < tokens {
            let end = min(start + context, tokens)
            scoredUpTo = end
            windows += 1
            if end == tokens { break }
            start += step
            if step == context { scoredUpTo = start + 1 }
        }
        return windows
    }

    /// Scores `tokens` in windows of `context` tokens. Windows start every `stride` tokens
    /// (default `defaultStride`: lm-eval's rolling windows, whose predictions are disjoint and
    /// cover every token); each window predicts only tokens no earlier window predicted, using the
    /// rest of the window as context. The very first token is never predicted (it is the BOS the
    /// tokenizer adds, lm-eval's prefix token). With `stride == context` the windows' inputs are
    /// disjoint and each window's first token is context only.
    public static func perplexity(model: any CausalLanguageModel, tokens: [Int], context: Int, stride: Int? = nil,
                                  sparsity: (any SparsityController)? = nil, progress: ((Int, Int) -> Void)? = nil) throws -> PerplexityResult {
        guard tokens.count >= 2 else {
            throw ShadowError.invalidArgument(name: "text", reason: "needs at least 2 tokens to score, got \(tokens.count)")
        }
        guard context >= 2 else { throw ShadowError.invalidArgument(name: "--context", reason: "must be at least 2, got \(context)") }
        guard context <= model.shape.maxContext else {
            throw ShadowError.invalidArgument(name: "--context", reason: "\(context) exceeds the model's context of \(model.shape.maxContext)")
        }
        let step = stride ?? defaultStride(context: context)
        guard step >= 1 && step <= context else {
            throw ShadowError.invalidArgument(name: "--stride", reason: "must be between 1 and the context (\(context)), got \(step)")
        }
        var nll = 0.0, predicted = 0, windows = 0
        var scoredUpTo = 1          // tokens before this index are already predicted (or token 0)
        var start = 0
        let totalWindows = windowCount(tokens: tokens.count, context: context, stride: step)
        while scoredUpTo < tokens.count {
            let end = min(start + context, tokens.count)
            let window = Array(tokens[start..<end])
            (sparsity as? PromptAwareController)?.prepare(prompt: window)
            let perToken = tokenNLL(model: model, tokens: window, sparsity: sparsity)
            // perToken[i] predicts window[i + 1] = tokens[start + i + 1].
            let firstNew = max(scoredUpTo, start + 1)
            if firstNew < end {
                for i in (firstNew - start - 1)..<(end - start - 1) { nll += perToken[i] }
                predicted += end - firstNew
            }
            scoredUpTo = end
            windows += 1
            progress?(windows, totalWindows)
            if end == tokens.count { break }
            start += step
            // Disjoint windows restart their context; the first token of each is context only.
            if step == context { scoredUpTo = start + 1 }
        }
        return PerplexityResult(nllSum: nll, predictedTokens: predicted, windows: windows)
    }
}
