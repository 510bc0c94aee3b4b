import Foundation
import Testing
@testable import ShadowModels
import ShadowModelTestSupport
import ShadowTestSupport

@Suite("Branches: several continuations of a cached context in one forward")
struct BranchesTests {
    static let models = ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-smollm3", "tiny-phi3-longrope", "tiny-mistral-window", "tiny-qwen2-window", "tiny-gemma3", "tiny-gemma2", "tiny-opt", "code-llama"]

    /// Deterministic token ids below the vocabulary size.
    static func tokens(_ count: Int, seed: Int, vocab: Int) -> [Int] { (0..<count).map { ($0 * 37 + seed * 11 + 1) % vocab } }

    /// Every branch's logits, run alone from the context (the reference) and all in one forward.
    static func run(_ model: any CausalLanguageModel, context: [Int], branches: [[Int]],
                    sparsity: (any SparsityController)?) -> (alone: [Float], together: [Float]) {
        let cache = model.makeCache(capacity: 512)
        let alone = separately(model, cache: cache, context: context, branches: branches, contextSparsity: sparsity,
                               branchSparsity: sparsity).rows
        cache.truncate(to: context.count)
        let together = model.forward(branches.flatMap { $0 }, cache: cache, logits: .all, sparsity: sparsity,
                                     branches: Branches(lengths: branches.map(\.count)))
        #expect(cache.length == context.count + branches.reduce(0) { $0 + $1.count })
        return (alone, together)
    }

    /// The reference: the context from an empty cache (its last logits row, when it has tokens),
    /// then each branch alone from the cached context (their rows, concatenated).
    static func separately(_ model: any CausalLanguageModel, cache: KVCache, context: [Int], branches: [[Int]],
                           contextSparsity: (any SparsityController)?,
                           branchSparsity: (any SparsityController)?) -> (last: [Float], rows: [Float]) {
        cache.reset()
        let last = context.isEmpty ? [] : model.forward(context, cache: cache, logits: .last, sparsity: contextSparsity)
        var rows: [Float] = []
        for branch in branches {
            cache.truncate(to: context.count)
            rows += model.forward(branch, cache: cache, logits: .all, sparsity: branchSparsity)
        }
        return (last, rows)
    }

    @Test("each branch's logits equal the branch run alone from the context, dense and with a sparse plan",
          arguments: models)
    func branchesEqualSeparateForwards(name: String) throws {
        let model = try SparseExecutionTests.model(name)
        let v = model.shape.vocabularySize
        let context = Self.tokens(7, seed: 1, vocab: v)
        // Three branches (one of a single token), and two that are four tokens together (the
        // size that otherwise takes the one-token-at-a-time attention).
        let sets = [[Self.tokens(5, seed: 2, vocab: v), Self.tokens(1, seed: 3, vocab: v), Self.tokens(9, seed: 4, vocab: v)],
                    [Self.tokens(2, seed: 5, vocab: v), Self.tokens(2, seed: 6, vocab: v)]]
        let sparse = FixedSparsity(layers: randomPlans(shape: model.shape, keep: 0.5, seed: 5))
        for sparsity in [nil, sparse] as [(any SparsityController)?] {
            for branches in sets {
                let result = Self.run(model, context: context, branches: branches, sparsity: sparsity)
                expectClose(result.together, result.alone, tolerance: 1e-4,
                            "\(name) \(branches.map(\.count)) sparse \(sparsity != nil)")
            }
        }
    }

    @Test("a branch longer than one causal block, and branches with no context before them, match too")
    func longBranchesAndNoContext() {
        let model = TinyModels.llama(kvHeads: 2, maxContext: 512)
        let v = model.shape.vocabularySize
        let long = [Self.tokens(6, seed: 7, vocab: v), Self.tokens(CausalBlocks.rows + 9, seed: 8, vocab: v)]
        for context in [Self.tokens(5, seed: 9, vocab: v), []] {
            let result = Self.run(model, context: context, branches: long, sparsity: nil)
            expectClose(result.together, result.alone, tolerance: 1e-4, "context \(context.count)")
        }
    }

    @Test("the context in the same pass as its branches: the same logits, and a controller reads the context's last row",
          arguments: models)
    func contextInThePass(name: String) throws {
        let model = try SparseExecutionTests.model(name)
        let v = model.shape.vocabularySize
        let context = Self.tokens(6, seed: 10, vocab: v)
        let branches = [Self.tokens(4, seed: 11, vocab: v), Self.tokens(1, seed: 12, vocab: v), Self.tokens(7, seed: 13, vocab: v)]
        let alone = LastRowRecorder(shape: model.shape), together = LastRowRecorder(shape: model.shape)
        let cache = model.makeCache(capacity: 64)
        let reference = Self.separately(model, cache: cache, context: context, branches: branches, contextSparsity: alone,
                                        branchSparsity: nil)
        let expected = reference.last + reference.rows
        cache.reset()
        let rows = model.forward(context + branches.flatMap { $0 }, cache: cache, logits: .from(context.count - 1),
                                 sparsity: together, branches: Branches(prefix: context.count, lengths: branches.map(\.count)))
        expectClose(rows, expected, tolerance: 1e-4, name)
        #expect(!alone.attention.isEmpty && !alone.input.isEmpty)
        expectClose(together.attention, alone.attention, tolerance: 1e-5, "\(name) layer-0 attention row")
        expectClose(together.input, alone.input, tolerance: 1e-5, "\(name) layer-1 input row")
    }

    @Test("positions restart at the context's end in every branch")
    func positions() {
        let branches = Branches(lengths: [3, 1, 2])
        #expect(branches.segments == [0..<3, 3..<4, 4..<6])
        #expect((0..<6).map { branches.position(of: $0, past: 10) } == [10, 11, 12, 10, 10, 11])
        let none: Branches? = nil
        #expect(none.position(of: 4, past: 10) == 14)
        // With the context in the pass: its rows run on from `past`, the branches after all of it.
        let folded = Branches(prefix: 2, lengths: [2, 1])
        #expect(folded.segments == [2..<4, 4..<5])
        #expect((0..<5).map { folded.position(of: $0, past: 3) } == [3, 4, 5, 6, 5])
        #expect(folded.runs(past: 3).map(\.context) == [3, 5, 5])
        #expect(folded.promptRows(tokens: 5) == 2 && branches.promptRows(tokens: 6) == 6)
    }
}

/// A dense controller that keeps what a predictor reads: the last of the rows it is given, of
/// layer 0's attention output and of the residual entering layer 1.
final class LastRowRecorder: SparsityController, @unchecked Sendable {
    let execution = SparseExecution.skip
    let keepsAllKeysAndValues = false
    let shape: TransformerShape
    var attention: [Float] = []
    var input: [Float] = []

    init(shape: TransformerShape) { self.shape = shape }

    func observe(layer: Int, input: UnsafePointer<Float>, attention a: UnsafePointer<Float>, tokens: Int, position: Int) {
        if layer == 0 { attention = Array(UnsafeBufferPointer(start: a + (tokens - 1) * shape.attentionWidth, count: shape.attentionWidth)) }
    }

    func plan(layer: Int, input x: UnsafePointer<Float>, tokens: Int, position: Int) -> LayerPlan {
        if layer == 1 { input = Array(UnsafeBufferPointer(start: x + (tokens - 1) * shape.hiddenSize, count: shape.hiddenSize)) }
        return .dense
    }
}
