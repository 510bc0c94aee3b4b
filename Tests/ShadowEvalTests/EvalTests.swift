import Foundation
import Testing
@testable import ShadowEval
import ShadowFormats
import ShadowModels
import ShadowSparsity
import ShadowTasks
import ShadowTokenizers
import ShadowModelTestSupport
import ShadowTestSupport

/// One of the tiny reference checkpoints, loaded.
func fixture(_ name: String) throws -> LoadedModel { try ModelLoader.load(path: ModelFixtures.path(name)) }

let questions = try! [
    MultipleChoiceItem(id: 0, context: "Question: How do you open a jar?\nAnswer:",
                       continuations: [" Twist the lid.", " Eat the glass jar whole."], gold: 0),
    MultipleChoiceItem(id: 1, context: "The cat sat on the",
                       continuations: [" mat", " moon above us", " big red chair", " é"], gold: 2),
    // Winogrande: one context per option, the same continuation.
    MultipleChoiceItem(id: 2, contexts: ["Anna gave Beth a book because Anna", "Anna gave Beth a book because Beth"],
                       continuations: [" was kind.", " was kind."], gold: 0),
    MultipleChoiceItem(id: 3, context: "2 + 2 =", continuations: [" 4", " 5", " four"], gold: 0),
]

/// Σ log p over the continuation from one scratch pass per choice (`Scoring.tokenNLL`).
func handSum(_ model: any CausalLanguageModel, _ tokenizer: any Tokenizer, context: String, continuation: String,
             sparsity: (any SparsityController)? = nil) -> Double {
    let tokens = tokenizer.encodeWithSpecialTokens(context + continuation)
    // lm-eval's _encode_pair: white space ending the context belongs to the continuation.
    let from = tokenizer.encodeWithSpecialTokens(String(context.reversed().drop(while: \.isWhitespace).reversed())).count
    let nll = Scoring.tokenNLL(model: model, tokens: tokens, sparsity: sparsity)
    return -nll[(from - 1)...].reduce(0, +)
}

func randomHalf(_ model: any CausalLanguageModel) -> FixedSparsity {
    let scores = Masks.randomScores(shape: model.shape, seed: 7)
    return FixedSparsity(layers: Masks.plans(headScores: scores.heads, neuronScores: scores.neurons,
                                             settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5),
                                             shape: model.shape))
}

func expectClose(_ a: [Double], _ b: [Double], tolerance: Double = 1e-4, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.count == b.count, sourceLocation: sourceLocation)
    for (x, y) in zip(a, b) {
        #expect(abs(x - y) <= tolerance * max(1, abs(y)), "\(a) vs \(b)", sourceLocation: sourceLocation)
    }
}

@Suite("Multiple-choice scoring")
struct MultipleChoiceTests {
    @Test("acc and acc_norm follow the per-token log-likelihoods summed by hand", arguments: ["tiny-llama", "tiny-opt"])
    func handComputation(checkpoint: String) throws {
        let loaded = try fixture(checkpoint)
        let tokenizer = try loaded.requireTokenizer()
        let scorer = LoglikelihoodScorer(model: loaded.model)
        let result = try Evaluation.multipleChoice(items: questions[...], pool: [], shots: 0, seed: 0,
                                               tokenizer: tokenizer, scorer: scorer)
        var accHits: [Bool] = [], normHits: [Bool] = []
        for (item, outcome) in zip(questions, result.items) {
            let sums = zip(item.contexts, item.continuations).map { handSum(loaded.model, tokenizer, context: $0, continuation: $1) }
            expectClose(outcome.sums, sums)
            expectClose(outcome.denseSums, sums)
            // lm-eval's len(choice): the continuation without its leading " " delimiter.
            #expect(outcome.characters == item.continuations.map { $0.unicodeScalars.count - 1 })
            let best = sums.indices.max(by: { sums[$0] < sums[$1] })!
            let norms = sums.indices.map { sums[$0] / Double(item.continuations[$0].unicodeScalars.count - 1) }
            let bestNorm = norms.indices.max(by: { norms[$0] < norms[$1] })!
            accHits.append(best == item.gold)
            normHits.append(bestNorm == item.gold)
        }
        #expect(result.acc.value == Double(accHits.filter { $0 }.count) / 4)
        #expect(result.accNorm.value == Double(normHits.filter { $0 }.count) / 4)
        #expect(result.agreement == nil)
    }

    @Test("the caches grow with the requests: a question longer than their first size scores as from scratch")
    func longRequests() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let context = String(repeating: "The river ran past the old mill. ", count: 3)
        let item = try MultipleChoiceItem(id: 0, context: context, continuations: [" It was cold.", " Bells rang at noon."], gold: 0)
        let length = tokenizer.encodeWithSpecialTokens(context + item.continuations[1]).count
        #expect(length > 64 && length <= loaded.model.shape.maxContext, "\(length) tokens")
        let scorer = LoglikelihoodScorer(model: loaded.model, sparsity: randomHalf(loaded.model))
        let result = try Evaluation.multipleChoice(items: [item][...], pool: [], shots: 0, seed: 0, tokenizer: tokenizer, scorer: scorer)
        let dense = item.continuations.map { handSum(loaded.model, tokenizer, context: context, continuation: $0) }
        let sparse = item.continuations.map { handSum(loaded.model, tokenizer, context: context, continuation: $0, sparsity: randomHalf(loaded.model)) }
        expectClose(result.items[0].denseSums, dense)
        expectClose(result.items[0].sums, sparse)
    }

    @Test("the scorer times the dense passes and each controller's own passes, only those that ran, until reset")
    func passTimes() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let item = try MultipleChoiceItem(id: 0, context: "The river ran past", continuations: [" the mill.", " the town."], gold: 0)
        let requests = Evaluation.requests(for: item, pool: [], shots: 0, seed: 0, tokenizer: tokenizer, maxTokens: 1000)
        let scorer = LoglikelihoodScorer(model: loaded.model, controllers: [randomHalf(loaded.model), randomHalf(loaded.model)])
        _ = try scorer.scoreAll(requests, only: [1])
        #expect(scorer.denseSeconds > 0)
        #expect(scorer.controllerSeconds[0] == 0 && scorer.controllerSeconds[1] > 0)
        scorer.resetTallies()
        #expect(scorer.denseSeconds == 0 && scorer.controllerSeconds == [0, 0])
    }

    @Test("running the shared context once and each choice from the truncated cache equals scoring each from scratch")
    func cacheReuse() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let mask = randomHalf(loaded.model)
        // A fixed mask is the same in both modes, so per-choice (each request from scratch) must
        // give the causal mode's cached sums.
        let causal = LoglikelihoodScorer(model: loaded.model, sparsity: mask, maskMode: .causal)
        let perChoice = LoglikelihoodScorer(model: loaded.model, sparsity: mask, maskMode: .perChoice)
        for item in questions {
            let requests = Evaluation.requests(for: item, pool: [], shots: 0, seed: 0, tokenizer: tokenizer, maxTokens: 128)
            let cached = try causal.score(requests).sparse!.map(\.logLikelihood)
            let scratch = try perChoice.score(requests).sparse!.map(\.logLikelihood)
            expectClose(cached, scratch)
            let byHand = zip(item.contexts, item.continuations).map {
                handSum(loaded.model, tokenizer, context: $0, continuation: $1, sparsity: mask)
            }
            expectClose(cached, byHand)
        }
    }

    @Test("hand-made requests the model cannot score are refused naming the request: no context, no continuation, an id outside the vocabulary, too many tokens")
    func refusesMalformedRequests() throws {
        let loaded = try fixture("tiny-llama")
        let scorer = LoglikelihoodScorer(model: loaded.model)
        let vocabulary = loaded.model.shape.vocabularySize
        let good = ScoringRequest(tokens: [1, 2, 3], predictFrom: 1, characters: 2)
        let cases: [(ScoringRequest, String)] = [
            (ScoringRequest(tokens: [1, 2, 3], predictFrom: 0, characters: 2), "predictFrom 0: the continuation needs at least one token of context before it"),
            (ScoringRequest(tokens: [1, 2, 3], predictFrom: 3, characters: 0), "the continuation has no tokens (predictFrom 3 of 3 tokens)"),
            (ScoringRequest(tokens: [1, 2, 3], predictFrom: 9, characters: 2), "predictFrom 9 is past the request's 3 tokens"),
            (ScoringRequest(tokens: [1, 2, 3], predictFrom: 1, characters: -3), "characters -3: acc_norm divides by the choice's length, which is at least 0"),
            (ScoringRequest(tokens: [1, vocabulary, 3], predictFrom: 1, characters: 2), "token 1 is id \(vocabulary), outside the vocabulary of \(vocabulary)"),
            (ScoringRequest(tokens: Array(repeating: 5, count: scorer.maxTokens + 1), predictFrom: 1, characters: 2),
             "\(scorer.maxTokens + 1) tokens, more than the model's context and one target (\(scorer.maxTokens))"),
        ]
        for (request, reason) in cases {
            #expect(throws: ShadowError.invalidArgument(name: "request 1", reason: reason)) { _ = try scorer.score([good, request]) }
        }
        #expect(try scorer.score([good]).dense.count == 1)
        // A task item whose choice tokenizes to nothing is refused rather than scored 0 (lm-eval asserts it).
        let empty = try MultipleChoiceItem(id: 0, context: "Q:", continuations: ["", " b"], gold: 1)
        #expect(throws: ShadowError.invalidArgument(name: "item 0, request 0", reason: "the continuation has no tokens (predictFrom 2 of 2 tokens)")) {
            _ = try Evaluation.multipleChoice(items: [empty][...], pool: [], shots: 0, seed: 0, tokenizer: try loaded.requireTokenizer(), scorer: scorer)
        }
        // Masks made for another model's shape (tiny-qwen2: 3 layers) are refused before any pass.
        let qwen = try fixture("tiny-qwen2").model.shape
        let foreign = try Masks.fixedSparsity(headScores: Masks.randomScores(shape: qwen, seed: 1).heads, neuronScores: nil,
                                              settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0), shape: qwen)
        let error = #expect(throws: ShadowError.self) { _ = try LoglikelihoodScorer(model: loaded.model, sparsity: foreign).score([good]) }
        #expect(String(describing: error).contains("the controller was made for a model of 3 layers"), "\(String(describing: error))")
    }

    @Test("answers too long to run as branches together within the model's context are scored one by one")
    func branchesBeyondTheContext() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let context = String(repeating: "The river ran past the old mill. ", count: 2)
        let answers = [String(repeating: " Bells rang at noon.", count: 5), String(repeating: " It was cold.", count: 6)]
        let item = try MultipleChoiceItem(id: 0, context: context, continuations: answers, gold: 0)
        let requests = Evaluation.requests(for: item, pool: [], shots: 0, seed: 0, tokenizer: tokenizer, maxTokens: 128)
        #expect(requests.allSatisfy { $0.tokens.count <= loaded.model.shape.maxContext })
        #expect(LoglikelihoodScorer.branchedLength(requests) > loaded.model.shape.maxContext)
        let scorer = LoglikelihoodScorer(model: loaded.model, sparsity: randomHalf(loaded.model))
        let result = try scorer.score(requests)
        let dense = answers.map { handSum(loaded.model, tokenizer, context: context, continuation: $0) }
        let sparse = answers.map { handSum(loaded.model, tokenizer, context: context, continuation: $0, sparsity: randomHalf(loaded.model)) }
        expectClose(result.dense.map(\.logLikelihood), dense)
        expectClose(result.sparse!.map(\.logLikelihood), sparse)
    }

    @Test("choices group by their context tokens: one group for a shared context, one per Winogrande option")
    func grouping() throws {
        let tokenizer = try fixture("tiny-llama").requireTokenizer()
        let shared = Evaluation.requests(for: questions[1], pool: [], shots: 0, seed: 0, tokenizer: tokenizer, maxTokens: 128)
        #expect(LoglikelihoodScorer.groupsByContext(shared) == [[0, 1, 2, 3]])
        let winogrande = Evaluation.requests(for: questions[2], pool: [], shots: 0, seed: 0, tokenizer: tokenizer, maxTokens: 128)
        #expect(LoglikelihoodScorer.groupsByContext(winogrande) == [[0], [1]])
    }

    @Test("acc_norm counts the choice's code points without the target delimiter, as lm-eval's len(choice)")
    func choiceCharacters() throws {
        #expect(ScoringRequest.choiceCharacters(" yes") == 3)
        #expect(ScoringRequest.choiceCharacters(" False") == 5)
        #expect(ScoringRequest.choiceCharacters(" caf\u{E9}") == 4)        // code points, not UTF-8 bytes
        #expect(ScoringRequest.choiceCharacters("  padded") == 7)         // a choice's own leading space counts
        #expect(ScoringRequest.choiceCharacters("") == 0)
        // lm-eval: −6/2 < −8.5/3 picks "yes"; counting the space, −6/3 > −8.5/4 would pick "no".
        #expect(ChoiceDecision.accNorm([-6, -8.5], characters: [" no", " yes"].map(ScoringRequest.choiceCharacters)) == 1)
    }

    @Test("white space ending the context moves to the front of the continuation, as lm-eval's _encode_pair does")
    func trailingSpaceMoves() throws {
        let moved = ScoringRequest.movingTrailingSpace(context: "The sun is responsible for \n", continuation: " light")
        #expect(moved.context == "The sun is responsible for" && moved.continuation == " \n light")
        let kept = ScoringRequest.movingTrailingSpace(context: "Answer:", continuation: " yes")
        #expect(kept.context == "Answer:" && kept.continuation == " yes")
        let tokenizer = try fixture("tiny-llama").requireTokenizer()
        let request = ScoringRequest(context: "The sun is responsible for ", continuation: " light", tokenizer: tokenizer,
                                     maxTokens: 128)
        #expect(Array(request.context) == tokenizer.encodeWithSpecialTokens("The sun is responsible for"))
        #expect(request.characters == 5)
    }

    @Test("an empty context reads the continuation after lm-eval's prefix token, so its first token is scored too")
    func emptyContext() throws {
        for name in ["tiny-llama", "tiny-opt"] {            // no BOS of its own; OPT's `</s>` in front
            let tokenizer = try fixture(name).requireTokenizer()
            let prefix = try #require(tokenizer.lmEvalPrefixTokenID)
            let request = ScoringRequest(context: "", continuation: " a cat", tokenizer: tokenizer, maxTokens: 128)
            #expect(request.predictFrom == 1, "\(name)")
            #expect(request.tokens.first == prefix, "\(name)")
            #expect(Array(request.continuation) == tokenizer.encode(" a cat"), "\(name)")
        }
    }

    @Test("a request longer than the model's context loses tokens from the left and keeps its continuation")
    func truncation() throws {
        let tokenizer = try fixture("tiny-llama").requireTokenizer()
        let context = String(repeating: "long context ", count: 40)
        let full = ScoringRequest(context: context, continuation: " end", tokenizer: tokenizer, maxTokens: 10_000)
        let cut = ScoringRequest(context: context, continuation: " end", tokenizer: tokenizer, maxTokens: 32)
        #expect(cut.tokens.count == 32)
        #expect(cut.continuation == full.continuation)
        #expect(full.droppedTokens == 0 && cut.droppedTokens == full.tokens.count - 32)
    }

    @Test("an evaluation counts the items whose requests were cut to the model's context")
    func truncatedItemsAreCounted() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let long = String(repeating: "long context ", count: loaded.model.shape.maxContext)
        var items = Array(questions.prefix(2))
        items.append(try MultipleChoiceItem(id: 99, context: long, continuations: [" yes", " no"], gold: 0))
        let scorer = LoglikelihoodScorer(model: loaded.model)
        let result = try Evaluation.multipleChoice(items: items[...], pool: [], shots: 0, seed: 0, tokenizer: tokenizer, scorer: scorer)
        #expect(result.items.map(\.truncated) == [false, false, true])
        #expect(result.truncatedItems == 1)
        let passages = Evaluation.lambadaItems([("a short passage", " word"), (long, " word")])
        let lambada = try Evaluation.lambada(items: passages[...], pool: [], shots: 0, seed: 0, tokenizer: tokenizer, scorer: scorer)
        #expect(lambada.truncated == [false, true] && lambada.truncatedItems == 1)
    }

    @Test("as lm-eval, a scorer keeps the model's context plus one token (the last only a target), in either mask mode")
    func truncationKeepsContextPlusOne() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let maxContext = loaded.model.shape.maxContext
        let dense = LoglikelihoodScorer(model: loaded.model)
        let perChoice = LoglikelihoodScorer(model: loaded.model, sparsity: randomHalf(loaded.model), maskMode: .perChoice)
        #expect(dense.maxTokens == maxContext + 1 && perChoice.maxTokens == maxContext + 1)
        // A request of maxContext + 1 tokens feeds exactly the context.
        let context = String(repeating: "long context ", count: maxContext)
        let longest = ScoringRequest(context: context, continuation: " end", tokenizer: tokenizer, maxTokens: dense.maxTokens)
        #expect(longest.tokens.count == maxContext + 1)
        let scored = try dense.score([longest]).dense[0]
        #expect(scored.tokens == longest.tokens.count - longest.predictFrom && scored.logLikelihood.isFinite && scored.logLikelihood < 0)
        // Per-choice masks score it on the same inputs: a fixed mask gives the causal mode's sums.
        let causal = LoglikelihoodScorer(model: loaded.model, sparsity: randomHalf(loaded.model), maskMode: .causal)
        let (perChoiceDense, perChoiceSparse) = try perChoice.score([longest])
        let (causalDense, causalSparse) = try causal.score([longest])
        #expect(perChoiceDense.map(\.logLikelihood) == causalDense.map(\.logLikelihood))
        expectClose(perChoiceSparse!.map(\.logLikelihood), causalSparse!.map(\.logLikelihood))
    }

    @Test("a per-choice mask of a request one token past the context is predicted from its last tokens that fit and kept for the scoring pass")
    func perChoiceMaskOfTheLongestRequest() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let model = loaded.model, maxContext = model.shape.maxContext
        let fingerprint = ModelFingerprint(name: "tiny", architecture: "llama", shape: model.shape, contentHash: "1")
        let predictor = try Predictor(configuration: PredictorConfiguration(kind: .shadow, headWidth: 16, neuronWidth: 16),
                                      criterion: "plainact", model: fingerprint, predictsNeurons: true, seed: 3)
        let settings = SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5)
        func controller() throws -> ShadowPredictorController {
            try ShadowPredictorController(predictor: predictor, settings: settings, shape: model.shape)
        }
        let context = String(repeating: "long context ", count: maxContext)
        let longest = ScoringRequest(context: context, continuation: " end of it", tokenizer: tokenizer, maxTokens: maxContext + 1)
        #expect(longest.tokens.count == maxContext + 1)
        let perChoice = LoglikelihoodScorer(model: model, sparsity: try controller(), maskMode: .perChoice)
        let (dense, sparse) = try perChoice.score([longest])

        // By hand: the mask the predictor picks reading the last maxContext tokens, as a fixed mask.
        let picking = try controller()
        _ = model.forward(Array(longest.tokens.dropFirst()), cache: model.makeCache(capacity: maxContext), logits: .none, sparsity: picking)
        let fixed = LoglikelihoodScorer(model: model, sparsity: FixedSparsity(layers: picking.plans), maskMode: .causal)
        let (fixedDense, fixedSparse) = try fixed.score([longest])
        #expect(dense.map(\.logLikelihood) == fixedDense.map(\.logLikelihood))
        expectClose(sparse!.map(\.logLikelihood), fixedSparse!.map(\.logLikelihood), tolerance: 1e-5)
        #expect(abs(sparse![0].logLikelihood - dense[0].logLikelihood) > 1e-3)
    }

    @Test("choices with the same tokens tie exactly (scored once), and still count in the agreement tally")
    func identicalChoicesTie() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let endings = [" walks away.", " sits down on the bench.", " walks away.", " sings.", " walks away."]
        let item = try MultipleChoiceItem(id: 0, context: "A man stands in the park. He", continuations: endings, gold: 3)
        let requests = Evaluation.requests(for: item, pool: [], shots: 0, seed: 0, tokenizer: tokenizer, maxTokens: 128)
        let scorer = LoglikelihoodScorer(model: loaded.model, sparsity: randomHalf(loaded.model))
        let (dense, sparse) = try scorer.score(requests)
        for scores in [dense, sparse!] {
            #expect(scores[0] == scores[2] && scores[0] == scores[4])
            #expect(scores[0] != scores[1] && scores[0] != scores[3])
        }
        expectClose(dense.map(\.logLikelihood), endings.map { handSum(loaded.model, tokenizer, context: item.contexts[0], continuation: $0) })
        #expect(scorer.agreement.positions == requests.reduce(0) { $0 + $1.continuationCount })
    }

    @Test("KL is 0 and top-1 agreement 1 when the sparse model keeps everything; random masks at 0.5 diverge")
    func agreement() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let keepAll = FixedSparsity(layers: [LayerPlan](repeating: .dense, count: loaded.model.shape.layers))
        let same = try Evaluation.multipleChoice(items: questions[...], pool: [], shots: 0, seed: 0, tokenizer: tokenizer,
                                             scorer: LoglikelihoodScorer(model: loaded.model, sparsity: keepAll))
        let a = try #require(same.agreement)
        #expect(a.positions > 0)
        #expect(a.meanKL < 1e-9)
        #expect(a.top1 == 1)
        for outcome in same.items { expectClose(outcome.sums, outcome.denseSums, tolerance: 1e-6) }

        let random = try Evaluation.multipleChoice(items: questions[...], pool: [], shots: 0, seed: 0, tokenizer: tokenizer,
                                               scorer: LoglikelihoodScorer(model: loaded.model, sparsity: randomHalf(loaded.model)))
        let b = try #require(random.agreement)
        #expect(b.positions == a.positions)
        #expect(b.meanKL > 1e-4)
        #expect(b.top1 < 1)
    }

    @Test("causal masks: one prediction per context, frozen for the choices; per-choice: one per choice")
    func maskRequests() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        for mode in MaskMode.allCases {
            let spy = SpyController()
            let scorer = LoglikelihoodScorer(model: loaded.model, sparsity: spy, maskMode: mode)
            _ = try Evaluation.multipleChoice(items: questions[...], pool: [], shots: 0, seed: 0, tokenizer: tokenizer, scorer: scorer)
            let choices = questions.map(\.choiceCount).reduce(0, +)
            // Items 0, 1 and 3 share a context; item 2 (Winogrande) has two.
            #expect(spy.resets == (mode == .causal ? 5 : choices))
            #expect(spy.unfrozenCalls == spy.resets, "every request predicts once, at its first call")
            #expect(!spy.frozen)
        }
    }
}

/// Counts resets and the forward calls that would predict (those made while not frozen).
final class SpyController: RequestScopedMasks, @unchecked Sendable {
    var frozen = false
    var resets = 0
    var unfrozenCalls = 0
    let execution = SparseExecution.skip
    let keepsAllKeysAndValues = false

    func reset() { resets += 1 }
    func observe(layer: Int, input: UnsafePointer<Float>, attention: UnsafePointer<Float>, tokens: Int, position: Int) {
        if layer == 0 && !frozen { unfrozenCalls += 1 }
    }
    func plan(layer: Int, input: UnsafePointer<Float>, tokens: Int, position: Int) -> LayerPlan { .dense }
}

@Suite("Metrics")
struct MetricTests {
    @Test("standard error is the sample standard deviation of 0/1 outcomes over √n")
    func stderr() {
        let outcomes = [true, false, true, true, false, true, true, true]
        let p = Proportion(outcomes)
        let mean = 6.0 / 8
        let variance = outcomes.map { pow(($0 ? 1 : 0) - mean, 2) }.reduce(0, +) / 7
        #expect(p.value == mean)
        #expect(abs(p.stderr - (variance / 8).squareRoot()) < 1e-12)
        #expect(abs(p.stderr - (mean * (1 - mean) / 7).squareRoot()) < 1e-12)
        #expect(Proportion([true]).stderr.isNaN)
    }

    @Test("argmax takes the first of equal values; acc_norm divides by characters")
    func decisions() {
        #expect(ChoiceDecision.acc([-3, -1, -1]) == 1)
        #expect(ChoiceDecision.accNorm([-10, -6], characters: [20, 6]) == 0)
    }

    @Test("KL divergence and top-1 agreement of logits rows match an fp64 computation from the definition")
    func agreementMatchesDefinition() {
        let vocab = 1_003, rows = 4
        let dense = randomFloats(rows * vocab, seed: 11).map { $0 * 12 }
        // The sparse rows: the dense ones perturbed, one row identical (KL 0, same top token).
        var sparse = zip(dense, randomFloats(rows * vocab, seed: 12)).map { $0 + 3 * $1 }
        for v in 0..<vocab { sparse[2 * vocab + v] = dense[2 * vocab + v] }
        var expectedKL = 0.0, expectedMatches = 0
        for r in 0..<rows {
            let d = dense[r * vocab ..< (r + 1) * vocab].map(Double.init)
            let s = sparse[r * vocab ..< (r + 1) * vocab].map(Double.init)
            let lseD = log(d.map { exp($0) }.reduce(0, +)), lseS = log(s.map { exp($0) }.reduce(0, +))
            expectedKL += zip(d, s).map { exp($0 - lseD) * (($0 - lseD) - ($1 - lseS)) }.reduce(0, +)
            if d.firstIndex(of: d.max()!) == s.firstIndex(of: s.max()!) { expectedMatches += 1 }
        }
        var tally = Agreement()
        tally.add(dense: ScoredRows(dense, vocab: vocab), sparse: ScoredRows(sparse, vocab: vocab))
        #expect(tally.positions == rows)
        #expect(tally.matches == expectedMatches)
        #expect(abs(tally.meanKL - expectedKL / Double(rows)) < 1e-5 * max(1, expectedKL), "\(tally.meanKL) vs \(expectedKL / Double(rows))")
        var same = Agreement()
        same.add(dense: ScoredRows(dense, vocab: vocab), sparse: ScoredRows(dense, vocab: vocab))
        #expect(same.meanKL == 0 && same.top1 == 1)
    }

    @Test("KL values on their grid sum to the same total in any order, as a sweep resumed in other chunks adds them")
    func klSumsIgnoreOrder() {
        var generator = SplitMix64(seed: 3)
        let values = (0..<1000).map { _ in Double(generator.next() % 1_000_000_007) / 1e8 }
        func total(_ xs: [Double], chunk: Int) -> Double {
            stride(from: 0, to: xs.count, by: chunk).map { xs[$0 ..< min(xs.count, $0 + chunk)].reduce(0, +) }.reduce(0, +)
        }
        // Plain doubles: the grouping shows in the last bits.
        #expect(Set([1, 5, 7, 64].map { total(values, chunk: $0) }).count > 1)
        let gridded = values.map(Agreement.onKLGrid)
        #expect(Set([1, 5, 7, 64].map { total(gridded, chunk: $0) } + [total(gridded.reversed(), chunk: 3)]).count == 1)
        #expect(gridded.map { abs($0 - Agreement.onKLGrid($0)) }.max() == 0)
        #expect(zip(values, gridded).map { abs($0 - $1) }.max()! <= 0x1p-33)
    }

    @Test("WikiText: word and byte perplexity and bits per byte, article by article after the prefix token")
    func wikitext() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let pages = [" = Cats = \n\n The cat sat on the mat . ", " = Days = \n It was a fine day , and the sun shone . \n"]
        let text = pages.joined(separator: "\n")
        let prefix = try #require(tokenizer.bosTokenID ?? tokenizer.eosTokenID)
        func reference(_ read: (String) -> String) throws -> (nll: Double, predicted: Int) {
            try pages.reduce((0, 0)) { sum, page in
                let tokens = [prefix] + tokenizer.encode(read(page))
                let scored = try Scoring.perplexity(model: loaded.model, tokens: tokens, context: 16)
                #expect(scored.predictedTokens == tokens.count - 1)
                return (sum.nll + scored.nllSum, sum.predicted + scored.predictedTokens)
            }
        }
        let scored = try Evaluation.wikitext(text: text, model: loaded.model, tokenizer: tokenizer, context: 16,
                                             stride: nil, sparsity: nil)
        let expected = try reference { $0 }
        #expect(scored.result.nllSum == expected.nll)
        #expect(scored.result.predictedTokens == expected.predicted)
        // lm-eval's len(re.split(r"\s+", page)) per page, empty ends included: 12 + 16; the line
        // break between the pages belongs to neither.
        let bytes = text.utf8.count - 1
        #expect(scored.result.words == 28 && scored.result.bytes == bytes)
        #expect(abs(scored.result.wordPerplexity - exp(expected.nll / 28)) < 1e-9)
        #expect(abs(scored.result.bytePerplexity - exp(expected.nll / Double(bytes))) < 1e-9)
        #expect(abs(scored.result.bitsPerByte - expected.nll / Double(bytes) / log(2)) < 1e-12)

        // Detokenized, the model reads lm-eval's text; words and bytes still count the text as given.
        let detokenized = try Evaluation.wikitext(text: text, detokenize: true, model: loaded.model, tokenizer: tokenizer,
                                                  context: 16, stride: nil, sparsity: nil)
        let readable = try reference(TaskFile.wikitextDetokenized)
        #expect(detokenized.result.nllSum == readable.nll && detokenized.result.nllSum != expected.nll)
        #expect(detokenized.result.words == 28 && detokenized.result.bytes == bytes)

        let sparse = try Evaluation.wikitext(text: text, model: loaded.model, tokenizer: tokenizer, context: 16,
                                             stride: 8, sparsity: randomHalf(loaded.model))
        #expect(sparse.dense.nllSum != sparse.result.nllSum)
    }

    @Test("LAMBADA: accuracy is greedy reproduction of the target, perplexity exp(−mean log-likelihood)")
    func lambada() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let items = Evaluation.lambadaItems([("the cat sat on the", " mat"), ("one two three", " four")])
        let result = try Evaluation.lambada(items: items[...], pool: [], shots: 0, seed: 0, tokenizer: tokenizer,
                                        scorer: LoglikelihoodScorer(model: loaded.model))
        let sums = items.map { handSum(loaded.model, tokenizer, context: $0.contexts[0], continuation: $0.continuations[0]) }
        expectClose(result.dense.logLikelihoods, sums)
        #expect(abs(result.dense.perplexity - exp(-(sums[0] + sums[1]) / 2)) < 1e-3 * result.dense.perplexity)
        // Greedy: every target token must be its row's argmax.
        for (index, item) in items.enumerated() {
            let request = Evaluation.requests(for: item, pool: [], shots: 0, seed: 0, tokenizer: tokenizer, maxTokens: 128)[0]
            let logits = loaded.model.forward(request.tokens, cache: loaded.model.makeCache(), logits: .all)
            let vocab = loaded.model.shape.vocabularySize
            let greedy = (request.predictFrom ..< request.tokens.count).allSatisfy { t in
                let row = logits[(t - 1) * vocab ..< t * vocab]
                return row.indices.max(by: { row[$0] < row[$1] })! - (t - 1) * vocab == request.tokens[t]
            }
            #expect(result.dense.greedy[index] == greedy)
        }
    }

    @Test("LAMBADA shots read as lm-eval writes them: passage, its target delimiter, then the target's own space")
    func lambadaShotsKeepLmEvalsDoubleSpace() throws {
        let loaded = try fixture("tiny-llama")
        let tokenizer = try loaded.requireTokenizer()
        let items = Evaluation.lambadaItems([("the cat sat on the", " mat"), ("one two three", " four")])
        let result = try Evaluation.lambada(items: items[..<1], pool: items, shots: 1, seed: 0, tokenizer: tokenizer,
                                        scorer: LoglikelihoodScorer(model: loaded.model))
        #expect(result.passages[0].context == "one two three  four\n\nthe cat sat on the")
        #expect(result.passages[0].continuation == " mat")
    }
}
