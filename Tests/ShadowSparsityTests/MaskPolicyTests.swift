import Testing
@testable import ShadowModels
@testable import ShadowSparsity

@Suite("Mask policies")
struct MaskPolicyTests {
    // Layer 0 scores are ignored (it stays dense); layer 1 is important, layer 2 is not.
    let scores: [[Float]] = [[9, 9, 9, 9], [8, 7, 6, 5], [4, 3, 2, 1]]

    @Test("local keeps the best units of every layer and layer 0 whole")
    func local() {
        let kept = Masks.keep(scores: scores, sparsity: 0.5, policy: .local, floor: 0)
        #expect(kept == [[0, 1, 2, 3], [0, 1], [0, 1]])
    }

    @Test("global ranks layers 1… together, so counts per layer follow the scores")
    func global() {
        let kept = Masks.keep(scores: scores, sparsity: 0.5, policy: .global, floor: 0)
        #expect(kept == [[0, 1, 2, 3], [0, 1, 2, 3], []])
    }

    @Test("hybrid is global with a per-layer floor")
    func hybrid() {
        let kept = Masks.keep(scores: scores, sparsity: 0.5, policy: .hybrid, floor: 0.25)
        #expect(kept == [[0, 1, 2, 3], [0, 1, 2], [0]])
    }

    @Test("realised whole-model sparsity counts layer 0 as dense")
    func realised() {
        let shape = TransformerShape(layers: 3, hiddenSize: 8, heads: 4, kvHeads: 2, headDim: 2, ffnSize: 4,
                                     vocabularySize: 10, maxContext: 16)
        let plans = Masks.plans(headScores: scores, neuronScores: scores,
                                settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.25, policy: .local), shape: shape)
        #expect(plans[0] == .dense)
        let realised = Masks.realisedSparsity(plans, shape: shape)
        #expect(abs(realised.heads - 4.0 / 12) < 1e-9 && abs(realised.neurons - 2.0 / 12) < 1e-9)
    }

    @Test("a unit type at sparsity 0, or without scores, stays dense instead of listing every unit")
    func zeroSparsityStaysDense() {
        let shape = TransformerShape(layers: 3, hiddenSize: 8, heads: 4, kvHeads: 2, headDim: 2, ffnSize: 4,
                                     vocabularySize: 10, maxContext: 16)
        let headsOnly = Masks.plans(headScores: scores, neuronScores: scores,
                                    settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0), shape: shape)
        #expect(headsOnly.dropFirst().allSatisfy { $0.heads != nil && $0.neurons == nil })
        let neuronsOnly = Masks.plans(headScores: scores, neuronScores: scores,
                                      settings: SparsitySettings(headSparsity: 0, neuronSparsity: 0.5), shape: shape)
        #expect(neuronsOnly.dropFirst().allSatisfy { $0.heads == nil && $0.neurons != nil })
        let noNeuronScores = Masks.plans(headScores: scores, neuronScores: nil,
                                         settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5), shape: shape)
        #expect(noNeuronScores.dropFirst().allSatisfy { $0.neurons == nil })
        #expect(Masks.realisedSparsity(headsOnly, shape: shape).neurons == 0)
    }

    @Test("random scores are seeded and settings reject impossible sparsities")
    func randomAndValidation() throws {
        let shape = TransformerShape(layers: 2, hiddenSize: 8, heads: 4, kvHeads: 2, headDim: 2, ffnSize: 6,
                                     vocabularySize: 10, maxContext: 16)
        // Pinned values: the same seed gives the same scores in every process and build.
        #expect(Masks.randomScores(shape: shape, seed: 3).heads[1] == [0.21643907, 0.6362223, 0.13514584, 0.8887184])
        #expect(Masks.randomScores(shape: shape, seed: 3).heads != Masks.randomScores(shape: shape, seed: 4).heads)
        #expect(throws: (any Error).self) { try SparsitySettings(headSparsity: 1, neuronSparsity: 0).validate() }
        #expect(throws: (any Error).self) { try SparsitySettings(headSparsity: 0.5, neuronSparsity: -1).validate() }
        try SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.9).validate()
    }
}
