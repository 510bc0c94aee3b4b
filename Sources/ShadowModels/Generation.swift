import Foundation
import ShadowFormats
import ShadowKernels

/// Timings of one generation, in the units llama-bench reports.
public struct GenerationStats: Sendable, Codable {
    public var promptTokens: Int
    public var generatedTokens: Int
    /// Forward passes of one generated token. The prefill's logits choose the first token and the
    /// last token is never fed back, so n tokens take n − 1 passes (n when a stop token ends them).
    public var decodePasses: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var promptTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Decode speed, as llama-bench's tg counts it: passes per second (nil before any pass ran).
    public var generatedTokensPerSecond: Double? { decodePasses > 0 && decodeSeconds > 0 ? Double(decodePasses) / decodeSeconds : nil }
}

public struct GenerationResult: Sendable {
    public var tokens: [Int]
    public var stoppedAtEOS: Bool
    /// Generation ended before `maxTokens` because the prompt and the generated tokens filled the
    /// model's context (together they never exceed it).
    public var stoppedAtContext = false
    /// Prompt tokens whose keys and values were already in the cache (`generate(continuing:)`);
    /// `stats.promptTokens` counts only the ones prefilled.
    public var reusedTokens = 0
    /// Bytes of the kept rows decode read from packed copies when it ended (`packing`).
    public var packedBytes = 0
    public var stats: GenerationStats
}

public enum Generator {
    /// Throws unless `prompt` leaves room in the context for at least one generated token; the
    /// CLI calls it before printing the prompt.
    public static func check(prompt: [Int], model: any CausalLanguageModel, option: String = "--prompt") throws {
        guard !prompt.isEmpty else { throw ShadowError.invalidArgument(name: option, reason: "is empty (no tokens)") }
        try model.shape.checkTokens(prompt, option: option)
        let limit = model.shape.maxContext
        guard prompt.count < limit else {
            throw ShadowError.invalidArgument(name: option, reason: "\(prompt.count) tokens leave no room for a generated token in \(model.contextDescription)")
        }
    }

    /// Prefills `prompt` in one pass, then decodes one token at a time until an end-of-sequence
    /// token, `maxTokens`, the context limit, `onToken` returning false, or `shouldStop` (asked
    /// before each token is sampled, the first one too, so a long prefill can end with none)
    /// returning true. The prompt and the generated tokens together are at most the model's
    /// context, so the text could be fed back whole; the last token is sampled but never enters
    /// the cache.
    public static func generate(model: any CausalLanguageModel, prompt: [Int], maxTokens: Int,
                                sampling: SamplingOptions = .greedy, stopTokens: Set<Int> = [],
                                sparsity: (any SparsityController)? = nil, packing: PackingRule? = nil,
                                onToken: (Int) -> Bool = { _ in true }, shouldStop: () -> Bool = { false }) throws -> GenerationResult {
        try check(prompt: prompt, model: model)
        try model.shape.checkController(sparsity)
        let capacity = min(model.shape.maxContext, prompt.count + max(maxTokens, 0))
        let cache = model.makeCache(capacity: max(capacity, prompt.count))
        cache.scratch.packing = packing
        return try run(model: model, prompt: prompt, from: 0, cache: cache, maxTokens: maxTokens, sampling: sampling,
                   stopTokens: stopTokens, sparsity: sparsity, onToken: onToken, shouldStop: shouldStop)
    }

    /// `generate` continuing `cache`, which holds the keys and values of `cached` (a
    /// conversation's earlier prompt and reply): the positions `prompt` shares with it are kept
    /// and only the rest is prefilled. On return `cached` lists what the cache holds.
    /// Dense, or under one fixed mask given on every call with this cache: a fixed mask computes
    /// each position's keys and values alike whether the prompt is prefilled whole or in parts,
    /// whereas a mask chosen for another prompt may have skipped keys and values that this one's
    /// mask needs (so predicted and oracle masks are not accepted here).
    public static func generate(model: any CausalLanguageModel, prompt: [Int], continuing cache: KVCache, cached: inout [Int],
                                maxTokens: Int, sampling: SamplingOptions = .greedy, stopTokens: Set<Int> = [],
                                sparsity: FixedSparsity? = nil,
                                onToken: (Int) -> Bool = { _ in true }, shouldStop: () -> Bool = { false }) throws -> GenerationResult {
        try check(prompt: prompt, model: model)
        try model.shape.checkController(sparsity)
        guard cache.shape == model.shape else {
            throw ShadowError.invalidArgument(name: "cache", reason: "was made for a model of \(cache.shape.describedSizes), not this one of \(model.shape.describedSizes)")
        }
        guard prompt.count < cache.capacity else {
            throw ShadowError.invalidArgument(name: "--prompt", reason: "\(prompt.count) tokens do not fit a cache of \(cache.capacity)")
        }
        // At least the last prompt token runs again: its logits choose the first reply token.
        let shared = min(zip(cached, prompt).prefix { $0 == $1 }.count, prompt.count - 1, cache.length)
        cache.truncate(to: shared)
        let result: GenerationResult
        do {
            result = try run(model: model, prompt: prompt, from: shared, cache: cache, maxTokens: maxTokens, sampling: sampling,
                             stopTokens: stopTokens, sparsity: sparsity, onToken: onToken, shouldStop: shouldStop)
        } catch {
            // What the cache holds past `shared` is unknown now: a later call must not reuse it.
            cache.truncate(to: shared)
            cached = Array(cached.prefix(shared))
            throw error
        }
        cached = Array((prompt + result.tokens).prefix(cache.length))
        return result
    }

    /// Tokens per prefill pass of a long prompt (dense or under a fixed mask).
    static let prefillPart = 512

    /// Prefills `prompt[from...]` after the `from` positions already in `cache`, then decodes.
    /// The prompt and the generated tokens together stay within the model's context and the cache.
    private static func run(model: any CausalLanguageModel, prompt: [Int], from: Int, cache: KVCache, maxTokens: Int,
                            sampling: SamplingOptions, stopTokens: Set<Int>, sparsity: (any SparsityController)?,
                            onToken: (Int) -> Bool, shouldStop: () -> Bool) throws -> GenerationResult {
        let limit = min(model.shape.maxContext, cache.capacity)
        var sampler = Sampler(sampling)
        var tokens: [Int] = []
        var stoppedAtEOS = false, stoppedAtContext = false
        var decodePasses = 0

        let start = Date()
        (sparsity as? PromptAwareController)?.prepare(prompt: prompt)
        // A long prompt is prefilled in parts, so that `shouldStop` (Ctrl-C) is heard between
        // them rather than after minutes of prefill; only dense or under a fixed mask, which
        // compute every position alike either way. Predicted masks read the activations of the
        // pass's last token, so they prefill in one pass.
        let pending = prompt[from...]
        let part = sparsity == nil || sparsity is FixedSparsity ? prefillPart : pending.count
        var logits: [Float] = []
        var prefilled = pending.startIndex
        repeat {
            let end = min(pending.endIndex, prefilled + part)
            logits = model.forward(Array(pending[prefilled..<end]), cache: cache, logits: .last, sparsity: sparsity)
            prefilled = end
            try Self.checkFinite(logits, after: prefilled)
        } while prefilled < pending.endIndex && !shouldStop()
        let prefillSeconds = Date().timeIntervalSince(start)
        let decodeStart = Date()
        while tokens.count < maxTokens, !shouldStop() {
            // Only the repetition penalty reads the history: its last repeatLastN tokens (all for
            // −1), stop tokens left out: the end of a chat turn is no repetition to discourage.
            var history: ArraySlice<Int> = []
            if sampling.repeatPenalty != 1, sampling.repeatLastN != 0 {
                let count = sampling.repeatLastN < 0 ? prompt.count + tokens.count : sampling.repeatLastN
                history = Array(prompt.suffix(count) + tokens.suffix(count)).suffix(count)
                if !stopTokens.isEmpty { history = history.filter { !stopTokens.contains($0) }[...] }
            }
            let next = sampler.sample(logits, history: history)
            if stopTokens.contains(next) { stoppedAtEOS = true; break }
            tokens.append(next)
            if !onToken(next) { break }
            if tokens.count == maxTokens { break }
            if prompt.count + tokens.count == limit { stoppedAtContext = true; break }
            logits = model.forward([next], cache: cache, logits: .last, sparsity: sparsity)
            decodePasses += 1
            try Self.checkFinite(logits, after: prompt.count + tokens.count)
        }
        let stats = GenerationStats(promptTokens: prefilled - from, generatedTokens: tokens.count,
                                    decodePasses: decodePasses, prefillSeconds: prefillSeconds,
                                    decodeSeconds: Date().timeIntervalSince(decodeStart))
        return GenerationResult(tokens: tokens, stoppedAtEOS: stoppedAtEOS, stoppedAtContext: stoppedAtContext, reusedTokens: from,
                                packedBytes: cache.scratch.packedBytes, stats: stats)
    }
}

extension Generator {
    /// A logit of NaN or +∞ makes sampling meaningless (greedy would pick token 0, often EOS,
    /// and report a clean stop); −∞ is a token ruled out, which sampling handles.
    static func checkFinite(_ logits: [Float], after position: Int) throws {
        guard !logits.contains(where: { $0.isNaN || $0 == .infinity }) else {
            throw ShadowError.notFinite("the logits after token \(position) are")
        }
    }
}

extension TransformerShape {
    /// Throws naming `option` when a token id is outside the vocabulary (a forward pass would
    /// trap on it): ids from outside (a library user's prompt), not from this model's tokenizer.
    public func checkTokens(_ tokens: [Int], option: String) throws {
        if let index = tokens.firstIndex(where: { $0 < 0 || $0 >= vocabularySize }) {
            throw ShadowError.invalidArgument(name: option, reason: "token \(index) is id \(tokens[index]), outside the vocabulary of \(vocabularySize)")
        }
    }

    /// Throws when `sparsity` was made for a model of another shape (its predictor or oracle
    /// would read this one's activations with the wrong widths).
    public func checkController(_ sparsity: (any SparsityController)?) throws {
        if let made = sparsity?.modelShape, made != self {
            throw ShadowError.invalidArgument(name: "sparsity", reason: "the controller was made for a model of \(made.describedSizes), not this one of \(describedSizes)")
        }
    }
}
