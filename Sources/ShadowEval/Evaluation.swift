import Foundation
import ShadowFormats
import ShadowModels
import ShadowSparsity
import ShadowTasks
import ShadowTokenizers

/// One question's outcome: the sums the decisions came from, sparse (or dense when the run is
/// dense) and dense side by side.
public struct ItemOutcome: Sendable, Equatable {
    public var id: Int
    public var gold: Int
    public var sums: [Double]
    public var denseSums: [Double]
    public var characters: [Int]
    /// The request strings lm-eval would log: each choice's context (after the few-shot
    /// examples) and continuation.
    public var contexts: [String] = []
    public var continuations: [String] = []
    /// Whether a choice's request was longer than the model reads and lost its first tokens.
    public var truncated = false

    public var acc: Bool { ChoiceDecision.acc(sums) == gold }
    public var accNorm: Bool { ChoiceDecision.accNorm(sums, characters: characters) == gold }
    public var denseAcc: Bool { ChoiceDecision.acc(denseSums) == gold }
    public var denseAccNorm: Bool { ChoiceDecision.accNorm(denseSums, characters: characters) == gold }
}

public struct MultipleChoiceResult: Sendable {
    public var items: [ItemOutcome]
    /// Nil for a dense run (nothing to compare).
    public var agreement: Agreement?

    public var n: Int { items.count }
    /// Items one of whose requests lost tokens from its start to fit the model's context.
    public var truncatedItems: Int { items.filter(\.truncated).count }
    public var acc: Proportion { Proportion(items.map(\.acc)) }
    public var accNorm: Proportion { Proportion(items.map(\.accNorm)) }
    public var denseAcc: Proportion { Proportion(items.map(\.denseAcc)) }
    public var denseAccNorm: Proportion { Proportion(items.map(\.denseAccNorm)) }
}

/// LAMBADA: accuracy is greedy decoding reproducing the last word's tokens; perplexity is
/// lm-eval's `exp(−mean log-likelihood of the target)` per passage, and per target token.
public struct LambadaResult: Sendable {
    public struct Side: Sendable, Equatable {
        public var greedy: [Bool] = []
        public var logLikelihoods: [Double] = []
        public var tokens = 0

        public var acc: Proportion { Proportion(greedy) }
        public var perplexity: Double { exp(-logLikelihoods.reduce(0, +) / Double(logLikelihoods.count)) }
        public var tokenPerplexity: Double { exp(-logLikelihoods.reduce(0, +) / Double(tokens)) }

        mutating func add(_ score: ChoiceScore) {
            greedy.append(score.isGreedy)
            logLikelihoods.append(score.logLikelihood)
            tokens += score.tokens
        }
    }

    public var sparse = Side()
    public var dense = Side()
    /// Per passage: its id, the context (after the few-shot examples) and the target.
    public var passages: [(id: Int, context: String, continuation: String)] = []
    /// Per passage, whether its request lost tokens from its start to fit the model's context.
    public var truncated: [Bool] = []
    public var truncatedItems: Int { truncated.filter { $0 }.count }
    public var agreement: Agreement?
    public var n: Int { dense.greedy.count }
}

public enum Evaluation {
    /// `body`'s scoring, a request the scorer refuses (or whose score is not finite) named by
    /// its item as well: the scorer numbers an item's requests from 0.
    static func scoring<T>(item id: Int, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch ShadowError.invalidArgument(let name, let reason) where name.hasPrefix("request ") {
            throw ShadowError.invalidArgument(name: "item \(id), \(name)", reason: reason)
        } catch ShadowError.failed(let message) where message.hasPrefix("request ") {
            throw ShadowError.failed("item \(id), \(message)")
        }
    }

    /// The items `offset ..< offset + limit` of a file of `count`, with one-line errors.
    public static func slice(count: Int, offset: Int, limit: Int?, unit: String = "items") throws -> Range<Int> {
        guard offset >= 0 else { throw ShadowError.invalidArgument(name: "--offset", reason: "must be at least 0, got \(offset)") }
        guard count > 0 else { throw ShadowError.failed("the file holds no \(unit)") }
        guard offset < count else {
            throw ShadowError.invalidArgument(name: "--offset", reason: "\(offset) is beyond the file's \(count) \(unit)")
        }
        if let limit, limit < 1 { throw ShadowError.invalidArgument(name: "--limit", reason: "must be at least 1, got \(limit)") }
        return offset ..< offset + min(count - offset, limit ?? count)   // no overflow for a huge --limit
    }

    /// Where the few-shot examples of the items `range` of `items` come from: the rest of the
    /// file, so a slice's shots never show another evaluated question's answer; when the rest
    /// holds fewer than `shots` (the whole file evaluated), every item, each prompt leaving out
    /// its own question — as lm-eval does when its few-shot split is the one evaluated.
    public static func fewShotPool(items: [MultipleChoiceItem], range: Range<Int>, shots: Int) throws -> [MultipleChoiceItem] {
        guard shots > 0 else { return [] }
        guard shots < items.count else {
            throw ShadowError.invalidArgument(name: "--shots", reason: "\(shots) \(shots == 1 ? "example needs" : "examples need") \(shots + 1) items; the file has \(items.count)")
        }
        let rest = Array(items[..<range.lowerBound] + items[range.upperBound...])
        return rest.count >= shots ? rest : items
    }

    /// Scores `items` with `shots` examples each, drawn with `seed` from `pool` (`fewShotPool`:
    /// the rest of the file when it holds enough, else every item) — never the question itself.
    public static func multipleChoice(items: ArraySlice<MultipleChoiceItem>, pool: [MultipleChoiceItem], shots: Int,
                                      seed: UInt64, tokenizer: any Tokenizer, scorer: LoglikelihoodScorer,
                                      progress: ((Int, Int) -> Void)? = nil) throws -> MultipleChoiceResult {
        var outcomes: [ItemOutcome] = []
        for item in items {
            let contexts = FewShot.contexts(for: item, shots: shots, pool: pool, seed: seed)
            let requests = requests(contexts: contexts, continuations: item.continuations, tokenizer: tokenizer,
                                    maxTokens: scorer.maxTokens)
            let scores = try scoring(item: item.id) { try scorer.score(requests) }
            let dense = scores.dense.map(\.logLikelihood)
            outcomes.append(ItemOutcome(id: item.id, gold: item.gold, sums: scores.sparse?.map(\.logLikelihood) ?? dense,
                                        denseSums: dense, characters: requests.map(\.characters),
                                        contexts: contexts, continuations: item.continuations,
                                        truncated: requests.contains { $0.droppedTokens > 0 }))
            progress?(outcomes.count, items.count)
        }
        return MultipleChoiceResult(items: outcomes, agreement: scorer.sparsity == nil ? nil : scorer.agreement)
    }

    /// The tokenized requests of one item after its few-shot prefix.
    public static func requests(for item: MultipleChoiceItem, pool: [MultipleChoiceItem], shots: Int, seed: UInt64,
                                tokenizer: any Tokenizer, maxTokens: Int) -> [ScoringRequest] {
        requests(contexts: FewShot.contexts(for: item, shots: shots, pool: pool, seed: seed), continuations: item.continuations,
                 tokenizer: tokenizer, maxTokens: maxTokens)
    }

    static func requests(contexts: [String], continuations: [String], tokenizer: any Tokenizer, maxTokens: Int) -> [ScoringRequest] {
        zip(contexts, continuations).map {
            ScoringRequest(context: $0, continuation: $1, tokenizer: tokenizer, maxTokens: maxTokens)
        }
    }

    /// LAMBADA passages as one-choice items, so slicing and few-shot work as for the others.
    public static func lambadaItems(_ passages: [(context: String, target: String)]) -> [MultipleChoiceItem] {
        // One continuation and gold 0: nothing for the initializer to refuse.
        passages.enumerated().map { try! MultipleChoiceItem(id: $0.offset, context: $0.element.context, continuations: [$0.element.target], gold: 0) }
    }

    /// LAMBADA passages as lm-eval writes them when they serve as shots: its target (" word")
    /// already starts with a space and the sampler puts its default target delimiter " " before
    /// it, so a shot reads "passage  word" with two spaces. The query itself keeps one.
    public static func lambadaShots(_ pool: [MultipleChoiceItem]) -> [MultipleChoiceItem] {
        pool.map { try! MultipleChoiceItem(id: $0.id, context: $0.contexts[0] + " ", continuations: $0.continuations, gold: 0) }
    }

    /// `pool` holds plain LAMBADA items (`lambadaItems`); their shot form is made here.
    public static func lambada(items: ArraySlice<MultipleChoiceItem>, pool: [MultipleChoiceItem], shots: Int, seed: UInt64,
                               tokenizer: any Tokenizer, scorer: LoglikelihoodScorer,
                               progress: ((Int, Int) -> Void)? = nil) throws -> LambadaResult {
        var result = LambadaResult()
        let pool = lambadaShots(pool)
        for (done, item) in items.enumerated() {
            let contexts = FewShot.contexts(for: item, shots: shots, pool: pool, seed: seed)
            let requests = requests(contexts: contexts, continuations: item.continuations, tokenizer: tokenizer,
                                    maxTokens: scorer.maxTokens)
            let scores = try scoring(item: item.id) { try scorer.score(requests) }
            result.passages.append((item.id, contexts[0], item.continuations[0]))
            result.truncated.append(requests[0].droppedTokens > 0)
            result.dense.add(scores.dense[0])
            result.sparse.add(scores.sparse?[0] ?? scores.dense[0])
            progress?(done + 1, items.count)
        }
        result.agreement = scorer.sparsity == nil ? nil : scorer.agreement
        return result
    }

    /// WikiText as lm-eval scores it: article by article (`WikiTextPages`), each in rolling
    /// windows of `context` tokens, by the sparse model when given a controller and always by the
    /// dense one. With `detokenize` the model reads lm-eval's detokenized text; words and bytes
    /// are always counted over the text as given, as lm-eval counts them on the original page.
    public static func wikitext(text: String, detokenize: Bool = false, model: any CausalLanguageModel,
                                tokenizer: any Tokenizer, context: Int, stride: Int?, sparsity: (any SparsityController)?,
                                progress: ((Int, Int) -> Void)? = nil) throws -> (result: TextPerplexity, dense: TextPerplexity) {
        let pages = WikiTextPages(text: text, detokenize: detokenize, tokenizer: tokenizer)
        let passes = sparsity == nil ? 1 : 2
        let windows = pages.windowCount(context: context, stride: stride)
        func run(_ controller: (any SparsityController)?, pass: Int) throws -> TextPerplexity {
            var done = 0
            let scored = try pages.score(model: model, context: context, stride: stride, sparsity: controller) { windowsDone in
                done += windowsDone
                progress?(pass * windows + done, passes * windows)
            }
            var result = TextPerplexity(nllSum: scored.total.nllSum, predictedTokens: scored.total.predictedTokens, text: text)
            result.pages = zip(TaskFile.wikitextPages(text), scored.pages).map { page, score in
                TextPerplexity(nllSum: score.nllSum, predictedTokens: score.predictedTokens,
                               words: TaskFile.wikitextWordCount(page), bytes: page.utf8.count)
            }
            return result
        }
        let dense = try run(nil, pass: 0)
        guard let sparsity else { return (dense, dense) }
        return (try run(sparsity, pass: 1), dense)
    }

    /// The whole-model sparsity the controller's masks realised (layer 0 counted dense), or nil
    /// when it cannot tell.
    public static func realisedSparsity(_ controller: (any SparsityController)?,
                                        shape: TransformerShape) -> (heads: Double, neurons: Double)? {
        switch controller {
        case nil: return (0, 0)
        case let predicting as PredictingController:
            return (predicting.statistics.headSparsity, predicting.statistics.neuronSparsity)
        case let fixed as FixedSparsity:
            return Masks.realisedSparsity(fixed.layers, shape: shape)
        default:
            return nil
        }
    }
}

/// A WikiText text as lm-eval's `loglikelihood_rolling` scores it: each article on its own
/// (`TaskFile.wikitextPages`), tokenized without special tokens after lm-eval's prefix token (the
/// tokenizer's BOS, else its EOS), so that every token of the article is predicted and no
/// window reaches into the article before.
public struct WikiTextPages: Sendable {
    /// Per article (`TaskFile.wikitextPages`, in order): the prefix token and the article's tokens.
    public let tokens: [[Int]]

    static let empty = WikiTextPages(tokens: [])

    private init(tokens: [[Int]]) { self.tokens = tokens }

    public init(text: String, detokenize: Bool, tokenizer: any Tokenizer) {
        let prefix = tokenizer.lmEvalPrefixTokenID.map { [$0] } ?? []
        tokens = TaskFile.wikitextPages(text).map { page in
            prefix + tokenizer.encode(detokenize ? TaskFile.wikitextDetokenized(page) : page)
        }
    }

    /// Forward passes `score` runs (the progress bar's total).
    public func windowCount(context: Int, stride: Int?) -> Int {
        tokens.reduce(0) { $0 + Scoring.windowCount(tokens: $1.count, context: context, stride: stride) }
    }

    /// Summed NLL of every article, and each article's (an article without a token to predict
    /// scores 0 over 0 tokens); `progress` is told how many windows each step finished.
    public func score(model: any CausalLanguageModel, context: Int, stride: Int?, sparsity: (any SparsityController)?,
                      progress: (Int) -> Void) throws -> (total: PerplexityResult, pages: [PerplexityResult]) {
        guard tokens.contains(where: { $0.count >= 2 }) else {
            throw ShadowError.invalidArgument(name: "text", reason: "has no article with a token to score")
        }
        var total = PerplexityResult(nllSum: 0, predictedTokens: 0, windows: 0)
        var pages: [PerplexityResult] = []
        for (article, page) in tokens.enumerated() {
            guard page.count >= 2 else {
                pages.append(PerplexityResult(nllSum: 0, predictedTokens: 0, windows: 0))
                continue
            }
            var reported = 0
            // Scoring's callback is optional, hence formally escaping; it is only called during the call.
            let scored: PerplexityResult
            do {
                scored = try withoutActuallyEscaping(progress) { progress in
                    try Scoring.perplexity(model: model, tokens: page, context: context, stride: stride,
                                           sparsity: sparsity) { done, _ in
                        progress(done - reported)
                        reported = done
                    }
                }
            } catch ShadowError.failed(let message) {
                // Its windows are counted within the article: name the article too.
                throw ShadowError.failed("article \(article) of \(tokens.count): \(message)")
            }
            total.nllSum += scored.nllSum
            total.predictedTokens += scored.predictedTokens
            total.windows += scored.windows
            pages.append(scored)
        }
        return (total, pages)
    }
}
