import Foundation
import ShadowModels

/// Held-out quality of one half of a predictor (heads or neurons), DESIGN §4.
public struct UnitQuality: Sendable, Equatable, Codable {
    /// Mean over held-out samples of the Spearman ρ between predicted and true scores, both taken
    /// over layers 1…L−1 together (true scores min–max scaled per layer).
    public var spearman: Double
    /// Top-k recall keyed by sparsity ("0.3", "0.5", "0.7"): the fraction of the units that the
    /// true scores keep under the global policy that the predicted scores keep too.
    public var recall: [String: Double]
    /// The same under the local policy, each layer keeping its own top k (how DejaVu-style masks
    /// are chosen); absent from files written before 2026-12-06.
    public var localRecall: [String: Double]?

    enum CodingKeys: String, CodingKey {
        case spearman, recall, localRecall = "recall_local"
    }

    public init(spearman: Double, recall: [String: Double], localRecall: [String: Double]? = nil) {
        self.spearman = spearman
        self.recall = recall
        self.localRecall = localRecall
    }
}

public struct PredictorQualityReport: Sendable, Equatable, Codable {
    public var heldOutSamples: Int
    public var heads: UnitQuality
    /// nil for heads-only criteria.
    public var neurons: UnitQuality?

    enum CodingKeys: String, CodingKey {
        case heads, neurons, heldOutSamples = "held_out_samples"
    }

    public init(heldOutSamples: Int, heads: UnitQuality, neurons: UnitQuality?) {
        self.heldOutSamples = heldOutSamples
        self.heads = heads
        self.neurons = neurons
    }
}

public enum PredictorQuality {
    /// The sparsities at which recall is reported.
    public static let sparsities: [Double] = [0.3, 0.5, 0.7]

    public static func key(_ sparsity: Double) -> String { String(format: "%.1f", sparsity) }

    /// 1-based ranks in ascending order of value; tied values share the mean of their ranks.
    public static func ranks(_ values: [Float]) -> [Double] {
        let order = values.indices.sorted { values[$0] < values[$1] }
        return ranks(values, ascending: order)
    }

    static func ranks(_ values: [Float], ascending order: [Int]) -> [Double] {
        var result = [Double](repeating: 0, count: values.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && values[order[j + 1]] == values[order[i]] { j += 1 }
            let rank = Double(i + j) / 2 + 1
            for k in i...j { result[order[k]] = rank }
            i = j + 1
        }
        return result
    }

    /// Spearman's ρ: the Pearson correlation of the (tie-averaged) ranks. 0 when either side is
    /// constant (the correlation is undefined there).
    public static func spearman(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count)
        return pearson(ranks(a), ranks(b))
    }

    static func pearson(_ a: [Double], _ b: [Double]) -> Double {
        let n = Double(a.count)
        guard a.count > 1 else { return 0 }
        let ma = a.reduce(0, +) / n, mb = b.reduce(0, +) / n
        var sab = 0.0, saa = 0.0, sbb = 0.0
        for i in a.indices {
            let da = a[i] - ma, db = b[i] - mb
            sab += da * db; saa += da * da; sbb += db * db
        }
        guard saa > 0, sbb > 0 else { return 0 }
        return sab / (saa * sbb).squareRoot()
    }

    /// Top-k recall of one sample at `sparsity`: of the units of layers 1…L−1 that
    /// `Masks.keep(truth, sparsity, policy)` keeps, the fraction `Masks.keep(predicted, …)` keeps.
    public static func recall(predicted: [[Float]], truth: [[Float]], sparsity: Double, policy: MaskPolicy = .global) -> Double {
        let kept = Masks.keep(scores: truth, sparsity: sparsity, policy: policy, floor: 0)
        let guessed = Masks.keep(scores: predicted, sparsity: sparsity, policy: policy, floor: 0)
        var total = 0, hit = 0
        for l in 1..<truth.count {
            total += kept[l].count
            hit += Set(kept[l]).intersection(guessed[l]).count
        }
        return total == 0 ? 1 : Double(hit) / Double(total)
    }

    /// Mean Spearman ρ and recall over samples, accumulated one sample at a time. Each sample's
    /// scores are sorted once and the sort serves ρ and every sparsity (the same order, ties
    /// broken by position, that `Masks.keep` uses).
    public struct Accumulator: Sendable {
        public private(set) var samples = 0
        private var spearmanSum = 0.0
        private var recallSums = [Double](repeating: 0, count: PredictorQuality.sparsities.count)
        private var localRecallSums: [Double]?

        public init() {}

        /// `predicted` and `truth`: flattened scores of layers 1…L−1, in layer-major order; with
        /// `layerSize` (units per layer) the local policy's recall is counted too.
        public mutating func add(predicted: [Float], truth: [Float], layerSize: Int? = nil) {
            precondition(predicted.count == truth.count && !truth.isEmpty)
            // Descending by score, ascending by position among equals: Masks.keep's order.
            let byPrediction = Masks.descendingOrder(predicted[...]), byTruth = Masks.descendingOrder(truth[...])
            let rankP = PredictorQuality.ranks(predicted, ascending: byPrediction.reversed())
            let rankT = PredictorQuality.ranks(truth, ascending: byTruth.reversed())
            spearmanSum += PredictorQuality.pearson(rankP, rankT)
            let n = truth.count
            var inPrediction = [Bool](repeating: false, count: n)
            for (s, sparsity) in PredictorQuality.sparsities.enumerated() {
                let budget = Masks.keptCount(units: n, sparsity: sparsity)
                guard budget > 0 else { recallSums[s] += 1; continue }
                for i in 0..<n { inPrediction[i] = false }
                for i in byPrediction.prefix(budget) { inPrediction[i] = true }
                var hit = 0
                for i in byTruth.prefix(budget) where inPrediction[i] { hit += 1 }
                recallSums[s] += Double(hit) / Double(budget)
            }
            if let layerSize {
                precondition(layerSize > 0 && n % layerSize == 0)
                let recalls = Self.localRecalls(predicted: predicted, truth: truth, layerSize: layerSize)
                localRecallSums = zip(localRecallSums ?? recalls.map { _ in 0 }, recalls).map(+)
            }
            samples += 1
        }

        /// Per sparsity, each layer's top k of the truth found in its top k of the prediction, over
        /// all layers (each layer sorted once, in Masks.keep's order, for every sparsity).
        static func localRecalls(predicted: [Float], truth: [Float], layerSize: Int) -> [Double] {
            let budgets = PredictorQuality.sparsities.map { Masks.keptCount(units: layerSize, sparsity: $0) }
            var hits = budgets.map { _ in 0 }
            var inPrediction = [Bool](repeating: false, count: layerSize)
            for start in stride(from: 0, to: truth.count, by: layerSize) {
                func order(_ scores: [Float]) -> [Int] { Masks.descendingOrder(scores[start..<start + layerSize]) }
                let byPrediction = order(predicted), byTruth = order(truth)
                for (s, budget) in budgets.enumerated() {
                    for i in 0..<layerSize { inPrediction[i] = false }
                    for i in byPrediction.prefix(budget) { inPrediction[i] = true }
                    hits[s] += byTruth.prefix(budget).filter { inPrediction[$0] }.count
                }
            }
            let layers = truth.count / layerSize
            return zip(hits, budgets).map { hit, budget in budget == 0 ? 1 : Double(hit) / Double(budget * layers) }
        }

        public var result: UnitQuality {
            let n = Double(max(samples, 1))
            var recall: [String: Double] = [:]
            for (s, sparsity) in PredictorQuality.sparsities.enumerated() { recall[PredictorQuality.key(sparsity)] = recallSums[s] / n }
            let local = localRecallSums.map { sums in
                Dictionary(uniqueKeysWithValues: PredictorQuality.sparsities.enumerated().map { (PredictorQuality.key($1), sums[$0] / n) })
            }
            // A sum of ρ that cancels out leaves rounding (−2.2e-17), shown as 0.
            let spearman = spearmanSum / n
            return UnitQuality(spearman: abs(spearman) < 1e-12 ? 0 : spearman, recall: recall, localRecall: local)
        }
    }

    /// The quality of `predictor` on `samples` of `data` (the held-out split).
    public static func measure(_ predictor: Predictor, data: PredictorDataset, samples: [Int]) -> PredictorQualityReport {
        var heads = Accumulator(), neurons = Accumulator()
        let s = data.shape
        let batch = 64
        var start = 0
        while start < samples.count {
            let chunk = Array(samples[start..<min(start + batch, samples.count)])
            let predicted = predictor.predictBatch(data: data, samples: chunk)
            for (k, sample) in chunk.enumerated() {
                let truthHeads = data.perLayerScaled(sample: sample, part: .heads)
                heads.add(predicted: Array(predicted.heads[k][s.heads...]), truth: Array(truthHeads[s.heads...]), layerSize: s.heads)
                if predictor.predictsNeurons {
                    let truthNeurons = data.perLayerScaled(sample: sample, part: .neurons)
                    neurons.add(predicted: Array(predicted.neurons[k][s.ffnSize...]), truth: Array(truthNeurons[s.ffnSize...]),
                                layerSize: s.ffnSize)
                }
            }
            start += batch
        }
        return PredictorQualityReport(heldOutSamples: samples.count, heads: heads.result,
                                      neurons: predictor.predictsNeurons ? neurons.result : nil)
    }
}
