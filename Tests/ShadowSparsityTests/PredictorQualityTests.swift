import Testing
@testable import ShadowSparsity

@Suite("Predictor quality")
struct PredictorQualityTests {
    @Test("tied values share the mean of their ranks")
    func averageRanks() {
        #expect(PredictorQuality.ranks([10, 20, 20, 30]) == [1, 2.5, 2.5, 4])
        #expect(PredictorQuality.ranks([5, 5, 5]) == [2, 2, 2])
        #expect(PredictorQuality.ranks([3, 1, 2]) == [3, 1, 2])
    }

    @Test("Spearman's rho matches hand-computed values, with and without ties")
    func spearman() {
        // Without ties ρ = 1 − 6Σd²/(n(n² − 1)) = 1 − 6·2/60.
        #expect(abs(PredictorQuality.spearman([1, 2, 3, 4], [1, 3, 2, 4]) - 0.8) < 1e-12)
        #expect(abs(PredictorQuality.spearman([1, 2, 3, 4], [40, 30, 20, 10]) + 1) < 1e-12)
        // Ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4]: 4.5 / √(4.5 · 5) = 3/√10.
        #expect(abs(PredictorQuality.spearman([1, 2, 2, 3], [1, 2, 3, 4]) - 3 / 10.0.squareRoot()) < 1e-12)
        // Monotone transforms do not change it; a constant side has no correlation.
        #expect(abs(PredictorQuality.spearman([0.1, 5, 2], [1, 1000, 3]) - 1) < 1e-12)
        #expect(PredictorQuality.spearman([1, 1, 1], [1, 2, 3]) == 0)
    }

    // Layer 0 is ignored; at 50% the true scores keep (1,0), (2,0), (1,1), (2,2).
    let truth: [[Float]] = [[0, 0, 0, 0], [1, 0.8, 0.2, 0], [0.9, 0.1, 0.5, 0.3]]
    let predicted: [[Float]] = [[7, 7, 7, 7], [1, 0.2, 0.8, 0], [0.9, 0.1, 0.5, 0.3]]

    @Test("top-k recall counts the truly kept units that the prediction keeps, over layers 1…")
    func recall() {
        #expect(PredictorQuality.recall(predicted: predicted, truth: truth, sparsity: 0.5) == 0.75)
        #expect(PredictorQuality.recall(predicted: truth, truth: truth, sparsity: 0.7) == 1)
        // At 0.3 six of eight are kept, and the swapped pair (1,1) / (1,2) is among them in both.
        #expect(PredictorQuality.recall(predicted: predicted, truth: truth, sparsity: 0.3) == 1)
    }

    @Test("per-layer recall counts each layer's own top k, as the local policy keeps them")
    func localRecall() {
        // At 50% each layer keeps two: layer 1 truly (0, 1), predicted (0, 2); layer 2 (0, 2) both.
        #expect(PredictorQuality.recall(predicted: predicted, truth: truth, sparsity: 0.5, policy: .local) == 0.75)
        var accumulator = PredictorQuality.Accumulator()
        let p = Array(predicted.dropFirst().joined()), t = Array(truth.dropFirst().joined())
        accumulator.add(predicted: p, truth: t, layerSize: 4)
        let local = accumulator.result.localRecall
        #expect(local?.keys.sorted() == ["0.3", "0.5", "0.7"])
        for sparsity in PredictorQuality.sparsities {
            #expect(local?[PredictorQuality.key(sparsity)] == PredictorQuality.recall(predicted: predicted, truth: truth, sparsity: sparsity, policy: .local),
                    "\(sparsity)")
        }
        var global = PredictorQuality.Accumulator()
        global.add(predicted: p, truth: t)
        #expect(global.result.localRecall == nil)
    }

    @Test("the sample accumulator agrees with Masks.keep and the plain Spearman")
    func accumulator() {
        var accumulator = PredictorQuality.Accumulator()
        let p = Array(predicted.dropFirst().joined()), t = Array(truth.dropFirst().joined())
        accumulator.add(predicted: p, truth: t)
        let result = accumulator.result
        #expect(abs(result.spearman - PredictorQuality.spearman(p, t)) < 1e-12)
        for sparsity in PredictorQuality.sparsities {
            #expect(result.recall[PredictorQuality.key(sparsity)] == PredictorQuality.recall(predicted: predicted, truth: truth, sparsity: sparsity))
        }
        #expect(result.recall.keys.sorted() == ["0.3", "0.5", "0.7"])
    }

    @Test("a mean ρ that cancels out reads 0, not the rounding left over (−1.9e-17)")
    func cancellingSpearman() {
        let truth: [Float] = [1, 2, 3, 4]
        let predictions: [[Float]] = [[2, 1, 4, 3], [2, 4, 3, 1], [2, 3, 4, 1]]   // ρ 0.6, −0.4, −0.2
        var accumulator = PredictorQuality.Accumulator()
        for p in predictions { accumulator.add(predicted: p, truth: truth) }
        let plainMean = predictions.map { PredictorQuality.spearman($0, truth) }.reduce(0, +) / 3
        #expect(plainMean != 0 && abs(plainMean) < 1e-15, "the plain sum should leave rounding: \(plainMean)")
        #expect(accumulator.result.spearman == 0)
    }

    @Test("recall handles ties in the scores the way Masks.keep does (lower position first)")
    func recallTies() {
        let flatTruth: [[Float]] = [[0, 0], [1, 1], [1, 0]]
        let flatPrediction: [[Float]] = [[0, 0], [0, 0], [0, 0]]
        var accumulator = PredictorQuality.Accumulator()
        accumulator.add(predicted: [0, 0, 0, 0], truth: [1, 1, 1, 0])
        for sparsity in PredictorQuality.sparsities {
            #expect(accumulator.result.recall[PredictorQuality.key(sparsity)]
                    == PredictorQuality.recall(predicted: flatPrediction, truth: flatTruth, sparsity: sparsity))
        }
    }
}
