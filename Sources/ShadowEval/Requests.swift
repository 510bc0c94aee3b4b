import ShadowFormats
import ShadowTasks
import ShadowTokenizers

/// One lm-eval `loglikelihood(context, continuation)` request, tokenized: context and
/// continuation are joined and tokenized once, and the continuation is whatever follows the
/// context's own tokens (the rule calibration uses, so a merge across the boundary is scored
/// as part of the continuation).
public struct ScoringRequest: Sendable, Equatable {
    /// Context followed by continuation; at most the scorer's `maxTokens` long (the model's
    /// context and one more token, which is only a target).
    public var tokens: [Int]
    /// Index of the first continuation token; tokens before it are context only (≥ 1).
    public var predictFrom: Int
    /// The choice's length for `acc_norm`: lm-eval divides by `len(choice)` of the `doc_to_choice`
    /// string, i.e. Unicode scalars (Python's code points) of the continuation without the " "
    /// target delimiter lm-eval adds in front of it (" yes" counts 3, not 4).
    public var characters: Int
    /// Tokens cut from the start because the request was longer than `maxTokens` (0 for most).
    public var droppedTokens: Int

    public init(tokens: [Int], predictFrom: Int, characters: Int, droppedTokens: Int = 0) {
        self.tokens = tokens
        self.predictFrom = predictFrom
        self.characters = characters
        self.droppedTokens = droppedTokens
    }

    /// Tokenizes `context + continuation`; the context's own tokenization fixes where the
    /// continuation starts. As lm-eval's `_encode_pair` does, white space at the end of the
    /// context is moved to the front of the continuation first, so a stem written "… for "
    /// does not leave a lone space token in the context. A request longer than `maxTokens`
    /// loses tokens from the left (lm-eval truncates the same side); the first kept token is
    /// then context only.
    public init(context: String, continuation: String, tokenizer: any Tokenizer, maxTokens: Int) {
        let characters = Self.choiceCharacters(continuation)
        let (context, continuation) = Self.movingTrailingSpace(context: context, continuation: continuation)
        var tokens = tokenizer.encodeWithSpecialTokens(context + continuation)
        var from = min(tokenizer.encodeWithSpecialTokens(context).count, tokens.count)
        // An empty context (an empty question stem, a LAMBADA text " word"): lm-eval reads the
        // continuation after its prefix token, so that the first continuation token is scored too.
        if from == 0, let prefix = tokenizer.lmEvalPrefixTokenID {
            tokens.insert(prefix, at: 0)
            from = 1
        }
        let drop = max(0, tokens.count - maxTokens)
        if drop > 0 {
            tokens.removeFirst(drop)
            from -= drop
        }
        // Position 0 has nothing before it, so it can only be context.
        self.init(tokens: tokens, predictFrom: max(1, from), characters: characters, droppedTokens: drop)
    }

    /// `len(choice)` in lm-eval: the continuation's code points, less the one " " in front of it
    /// that is lm-eval's target delimiter rather than part of the choice (every multiple-choice
    /// continuation of ShadowTasks starts with it; a choice that itself starts with a space
    /// keeps that one).
    public static func choiceCharacters(_ continuation: String) -> Int {
        let count = continuation.unicodeScalars.count
        return continuation.unicodeScalars.first == " " ? count - 1 : count
    }

    /// lm-eval's `_encode_pair` preamble: `n = len(context) - len(context.rstrip())` trailing
    /// white-space code points leave the context and start the continuation.
    static func movingTrailingSpace(context: String, continuation: String) -> (context: String, continuation: String) {
        let scalars = context.unicodeScalars
        guard let last = scalars.last, isPythonSpace(last) else { return (context, continuation) }
        var cut = scalars.endIndex
        while cut > scalars.startIndex, isPythonSpace(scalars[scalars.index(before: cut)]) {
            cut = scalars.index(before: cut)
        }
        return (String(scalars[..<cut]), String(scalars[cut...]) + continuation)
    }

    public var context: ArraySlice<Int> { tokens[..<predictFrom] }
    public var continuation: ArraySlice<Int> { tokens[predictFrom...] }
    public var continuationCount: Int { tokens.count - predictFrom }
}

extension Tokenizer {
    /// lm-eval's `prefix_token_id`: the token its Hugging Face backend puts before a text that has
    /// no context of its own (an empty context, a rolling-window document): BOS, else EOS.
    public var lmEvalPrefixTokenID: Int? { bosTokenID ?? eosTokenID }
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
