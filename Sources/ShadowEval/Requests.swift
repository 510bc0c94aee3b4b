import ShadowTokenizers

/// One lm-eval `loglikelihood(context, continuation)` request, tokenized: context and
/// continuation are joined and tokenized once, and the continuation is whatever follows the
/// context's own tokens (the rule calibration uses, so a merge across the boundary is scored
/// as part of the continuation).
public struct ScoringRequest: Sendable, Equatable {
    /// Context followed by continuation; at most the model's context long.
    public var tokens: [Int]
    /// Index of the first continuation token; tokens before it are context only (≥ 1).
    public var predictFrom: Int
    /// The continuation's length for `acc_norm`: its Unicode scalars, which is what Python's
    /// `len(str)` counts in lm-eval (equal to UTF-8 bytes for ASCII text).
    public var characters: Int

    public init(tokens: [Int], predictFrom: Int, characters: Int) {
        self.tokens = tokens
        self.predictFrom = predictFrom
        self.characters = characters
    }

    /// Tokenizes `context + continuation`; the context's own tokenization fixes where the
    /// continuation starts. A request longer than `maxTokens` loses tokens from the left
    /// (lm-eval truncates the same side); the first kept token is then context only.
    public init(context: String, continuation: String, tokenizer: any Tokenizer, maxTokens: Int) {
        var tokens = tokenizer.encodeWithSpecialTokens(context + continuation)
        var from = min(tokenizer.encodeWithSpecialTokens(context).count, tokens.count)
        if tokens.count > maxTokens {
            let drop = tokens.count - maxTokens
            tokens.removeFirst(drop)
            from -= drop
        }
        // Position 0 has nothing before it, so it can only be context.
        self.init(tokens: tokens, predictFrom: max(1, from), characters: continuation.unicodeScalars.count)
    }

    public var context: ArraySlice<Int> { tokens[..<predictFrom] }
    public var continuation: ArraySlice<Int> { tokens[predictFrom...] }
    public var continuationCount: Int { tokens.count - predictFrom }
}

/// What a model gave one request: the summed log-likelihood of the continuation and whether
/// greedy decoding reproduces it (every continuation token is its row's argmax).
public struct ChoiceScore: Sendable, Equatable {
    public var logLikelihood: Double
    public var tokens: Int
    public var isGreedy: Bool

    public init(logLikelihood: Double, tokens: Int, isGreedy: Bool) {
        self.logLikelihood = logLikelihood
        self.tokens = tokens
        self.isGreedy = isGreedy
    }
}
