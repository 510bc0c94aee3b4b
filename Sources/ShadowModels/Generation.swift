import Foundation
import ShadowFormats

/// Timings of one generation, in the units llama-bench reports.
public struct GenerationStats: Sendable, Codable {
    public var promptTokens: Int
    public var generatedTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var promptTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    public var generatedTokensPerSecond: Double { decodeSeconds > 0 ? Double(generatedTokens) / decodeSeconds : 0 }
}

public struct GenerationResult: Sendable {
    public var tokens: [Int]
    public var stoppedAtEOS: Bool
    /// Generation ended before `maxTokens` because the prompt and the generated tokens filled the
    /// model's context (together they never exceed it).
    public var stoppedAtContext = false
    public var stats: GenerationStats
}

public enum Generator {
    /// Throws unless `prompt` leaves room in the context for at least one generated token; the
    /// CLI calls it before printing the prompt.
    public static func check(prompt: [Int], model: any CausalLanguageModel) throws {
        guard !prompt.isEmpty else { throw ShadowError.invalidArgument(name: "--prompt", reason: "is empty (no tokens)") }
        let limit = model.shape.maxContext
        guard prompt.count < limit else {
            throw ShadowError.invalidArgument(name: "--prompt", reason: "\(prompt.count) tokens do not fit the model's context of \(limit)")
        }
    }

    /// Prefills `prompt` in one pass, then decodes one token at a time until an end-of-sequence
    /// token, `maxTokens`, the context limit, or `onToken` returning false. The prompt and the
    /// generated tokens together are at most the model's context, so the text could be fed back
    /// whole; the last token is sampled but never enters the cache.
    public static func generate(model: any CausalLanguageModel, prompt: [Int], maxTokens: Int,
                                sampling: SamplingOptions = .greedy, stopTokens: Set<Int> = [],
                                sparsity: (any SparsityController)? = nil, packKeptRows: Bool = false,
                                onToken: (Int) -> Bool = { _ in true }) throws -> GenerationResult {
        try check(prompt: prompt, model: model)
        let limit = model.shape.maxContext
        let capacity = min(limit, prompt.count + max(maxTokens, 0))
        let cache = model.makeCache(capacity: max(capacity, prompt.count))
        cache.scratch.packsKeptRows = packKeptRows
        var sampler = Sampler(sampling)
        var tokens: [Int] = []
        var stoppedAtEOS = false, stoppedAtContext = false

        let start = Date()
        (sparsity as? PromptAwareController)?.prepare(prompt: prompt)
        var logits = model.forward(prompt, cache: cache, logits: .last, sparsity: sparsity)
        let prefillSeconds = Date().timeIntervalSince(start)
        let decodeStart = Date()
        while tokens.count < maxTokens {
            let next = sampler.sample(logits)
            if stopTokens.contains(next) { stoppedAtEOS = true; break }
            tokens.append(next)
            if !onToken(next) { break }
            if tokens.count == maxTokens { break }
            if prompt.count + tokens.count == limit { stoppedAtContext = true; break }
            logits = model.forward([next], cache: cache, logits: .last, sparsity: sparsity)
        }
        let stats = GenerationStats(promptTokens: prompt.count, generatedTokens: tokens.count,
                                    prefillSeconds: prefillSeconds,
                                    decodeSeconds: Date().timeIntervalSince(decodeStart))
        return GenerationResult(tokens: tokens, stoppedAtEOS: stoppedAtEOS, stoppedAtContext: stoppedAtContext, stats: stats)
    }
}
