import Foundation
import Testing
import ShadowFormats
@testable import ShadowModels
@testable import ShadowSparsity
import ShadowModelTestSupport

@Suite("Oracle masks")
struct OracleTests {
    let settings = SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5, policy: .local)

    @Test("the oracle masks each prompt with the criterion computed on that prompt")
    func masksFromTheTrueCriterion() throws {
        let model = TinyModels.criteriaLlama(layers: 3)
        let oracle = try OracleController(model: model, criterion: .plainact, settings: settings)
        for prompt in [[1, 5, 9, 2, 7], [3, 3, 8, 41, 12, 6, 30]] {
            oracle.prepare(prompt: prompt)
            let scores = try #require(try Importance.scores(model: model, tokens: prompt, predictFrom: 1, criteria: [.plainact])[.plainact])
            let expected = Masks.plans(headScores: scores.heads, neuronScores: scores.neurons!, settings: settings, shape: model.shape)
            #expect(oracle.plans == expected)
            #expect(oracle.plans[0] == .dense)
        }
        #expect(oracle.statistics.masks == 2 && oracle.statistics.headSparsity > 0.3)
    }

    @Test("the sparse forward uses the oracle's plans: equal to a fixed mask of the same scores")
    func forwardUsesPlans() throws {
        let model = TinyModels.criteriaLlama(layers: 3)
        let prompt = [1, 5, 9, 2, 7, 11]
        let oracle = try OracleController(model: model, criterion: .fisher, settings: settings)
        let nll = Scoring.tokenNLL(model: model, tokens: prompt, sparsity: { oracle.prepare(prompt: prompt); return oracle }())
        let fixed = FixedSparsity(layers: oracle.plans)
        #expect(nll == Scoring.tokenNLL(model: model, tokens: prompt, sparsity: fixed))
        #expect(nll != Scoring.tokenNLL(model: model, tokens: prompt))
    }

    @Test("a one-token prompt runs dense and counts as a dense mask in the realised sparsity; heads-only criteria are refused")
    func edges() throws {
        let model = TinyModels.criteriaLlama()
        let oracle = try OracleController(model: model, criterion: .l2Norm, settings: settings)
        oracle.prepare(prompt: [4])
        #expect(oracle.plans.allSatisfy { $0 == .dense })
        #expect(oracle.statistics.masks == 1 && oracle.statistics.headSparsity == 0 && oracle.statistics.neuronSparsity == 0)
        oracle.prepare(prompt: [4, 9, 2, 7])
        // One dense mask and one at about half: the mean says so instead of hiding the dense one.
        #expect(oracle.statistics.masks == 2 && oracle.statistics.headSparsity > 0.1 && oracle.statistics.headSparsity < 0.35)
        #expect(throws: ShadowError.self) { try OracleController(model: model, criterion: .jacov, settings: settings) }
    }
}
