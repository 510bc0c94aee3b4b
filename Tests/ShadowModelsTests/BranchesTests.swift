import Foundation
import Testing
@testable import ShadowModels
import ShadowTestSupport

@Suite("Branches: several continuations of a cached context in one forward")
struct BranchesTests {
    static let models = ["tiny-llama", "tiny-qwen2", "tiny-opt", "code-llama"]

    /// Deterministic token ids below the vocabulary size.
    static func tokens(_ count: Int, seed: Int, vocab: Int) -> [Int] { (0..<count).map { ($0 * 37 + seed * 11 + 1) % vocab } }

    /// Every branch's logits, run alone from the context (the reference) and all in one forward.
    static func run(_ model: any CausalLanguageModel, context: [Int], branches: [[Int]],
                    sparsity: (any SparsityController)?) -> (alone: [Float], together: [Float]) {
        let cache = model.makeCache(capacity: 512)
        if !context.isEmpty { _ = model.forward(context, cache: cache, logits: .last, sparsity: sparsity) }
        var alone: [Float] = []
        for branch in branches {
            cache.truncate(to: context.count)
            alone += model.forward(branch, cache: cache, logits: .all, sparsity: sparsity)
        }
        cache.truncate(to: context.count)
        let together = model.forward(branches.flatMap { $0 }, cache: cache, logits: .all, sparsity: sparsity,
                                     branches: Branches(lengths: branches.map(\.count)))
        #expect(cache.length == context.count + branches.reduce(0) { $0 + $1.count })
        return (alone, together)
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

    @Test("positions restart at the context's end in every branch")
    func positions() {
        let branches = Branches(lengths: [3, 1, 2])
        #expect(branches.segments == [0..<3, 3..<4, 4..<6])
        #expect((0..<6).map { branches.position(of: $0, past: 10) } == [10, 11, 12, 10, 10, 11])
        let none: Branches? = nil
        #expect(none.position(of: 4, past: 10) == 14)
    }
}
