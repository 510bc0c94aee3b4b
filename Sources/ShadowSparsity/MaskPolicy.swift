import Foundation
import ShadowFormats
import ShadowModels

/// How predicted (or static) importance scores become per-layer plans (DESIGN §5).
public enum MaskPolicy: String, Sendable, CaseIterable, Codable {
    /// Rank the scores of layers 1…L−1 together and prune the lowest fraction; per-layer counts
    /// then vary with the input.
    case global
    /// Prune the lowest fraction within each layer.
    case local
    /// Global, but every layer keeps at least `floor` of its units.
    case hybrid
}

/// Sparsity targets: the fraction of heads and of neurons to prune, and how to choose them.
public struct SparsitySettings: Sendable, Equatable, Codable {
    public var headSparsity: Double
    public var neuronSparsity: Double
    public var policy: MaskPolicy
    /// hybrid: the smallest fraction of a layer's units that is always kept.
    public var hybridFloor: Double

    public init(headSparsity: Double, neuronSparsity: Double, policy: MaskPolicy = .global, hybridFloor: Double = 0.1) {
        self.headSparsity = headSparsity
        self.neuronSparsity = neuronSparsity
        self.policy = policy
        self.hybridFloor = hybridFloor
    }

    /// Checks the values, naming the option that is out of range.
    public func validate() throws {
        for (name, value) in [("--head-sparsity", headSparsity), ("--neuron-sparsity", neuronSparsity)] {
            guard value >= 0, value < 1 else {
                throw ShadowError.invalidArgument(name: name, reason: "must be in [0, 1), got \(value)\(Self.percentageHint(value))")
            }
        }
        guard hybridFloor >= 0, hybridFloor <= 1 else {
            throw ShadowError.invalidArgument(name: "--hybrid-floor", reason: "must be in [0, 1], got \(hybridFloor)\(Self.percentageHint(hybridFloor))")
        }
    }

    /// Said after a fraction given above 1 (most often a percentage: 50 meant as 0.5).
    public static func percentageHint(_ value: Double) -> String {
        value > 1 ? " (a fraction of the units, e.g. 0.5 for half)" : ""
    }
}

public enum Masks {
    /// Per-layer plans from head scores (L × H) and neuron scores (L × F); higher is more important.
    /// Layer 0 always stays dense (its output feeds the predictor). A unit type at sparsity 0 (or,
    /// for neurons, without scores: a heads-only criterion) stays dense rather than listing every
    /// unit, so it runs the dense kernels.
    public static func plans(headScores: [[Float]], neuronScores: [[Float]]?, settings: SparsitySettings,
                             shape: TransformerShape) -> [LayerPlan] {
        // The engine's own callers pass scores of the model's shape; `fixedSparsity` checks others'.
        if let problem = scoreProblem(headScores, units: shape.heads, layers: shape.layers)
            ?? neuronScores.flatMap({ scoreProblem($0, units: shape.ffnSize, layers: shape.layers) }) {
            fatalError("Masks.plans: scores \(problem), for a model of \(shape.describedSizes) (Masks.fixedSparsity checks them and throws)")
        }
        let heads = settings.headSparsity > 0
            ? keep(scores: headScores, sparsity: settings.headSparsity, policy: settings.policy, floor: settings.hybridFloor) : nil
        let neurons = settings.neuronSparsity > 0
            ? neuronScores.map { keep(scores: $0, sparsity: settings.neuronSparsity, policy: settings.policy, floor: settings.hybridFloor) } : nil
        return (0..<shape.layers).map { l in
            l == 0 ? .dense : LayerPlan(heads: heads?[l], neurons: neurons?[l].map(Int32.init), shape: shape)
        }
    }

    /// A fixed-mask controller (static importance, random scores) from one set of scores, with
    /// what a caller outside the engine needs checked: the settings in range, and one row of
    /// scores per layer with one score per unit (throws naming the mismatch). The controller
    /// knows `shape`: generation and perplexity on a model of another shape throw.
    public static func fixedSparsity(headScores: [[Float]], neuronScores: [[Float]]?, settings: SparsitySettings,
                                     shape: TransformerShape) throws -> FixedSparsity {
        try settings.validate()
        var checks = [("head scores", headScores, shape.heads)]
        if let neuronScores { checks.append(("neuron scores", neuronScores, shape.ffnSize)) }
        for (name, scores, units) in checks {
            if let problem = scoreProblem(scores, units: units, layers: shape.layers) {
                throw ShadowError.invalidArgument(name: name, reason: problem + " (the model: \(shape.describedSizes))")
            }
        }
        return FixedSparsity(layers: plans(headScores: headScores, neuronScores: neuronScores, settings: settings, shape: shape),
                             modelShape: shape)
    }

    /// Why `scores` are not one row per layer of `units` scores each, or nil when they are.
    static func scoreProblem(_ scores: [[Float]], units: Int, layers: Int) -> String? {
        guard scores.count == layers else { return "have \(scores.count) rows, one per layer of \(layers)" }
        if let l = scores.firstIndex(where: { $0.count != units }) { return "layer \(l) has \(scores[l].count), not \(units)" }
        return nil
    }

    /// How many of `units` a per-layer selection keeps at `sparsity`. (Settings are checked by
    /// `SparsitySettings.validate()`; here a fraction outside [0, 1] counts as its nearer end and
    /// NaN as 0, so a count is never made from a value no integer holds.)
    public static func keptCount(units: Int, sparsity: Double) -> Int {
        units - Int((Double(units) * unitFraction(sparsity)).rounded())
    }

    /// How many of a layer's `units` the hybrid policy keeps whatever their rank.
    public static func floorCount(units: Int, floor: Double) -> Int {
        min(units, Int((Double(units) * unitFraction(floor)).rounded(.up)))
    }

    static func unitFraction(_ value: Double) -> Double { value.isNaN ? 0 : min(max(value, 0), 1) }

    /// The kept unit indices (ascending) of every layer; layer 0 keeps all.
    public static func keep(scores: [[Float]], sparsity: Double, policy: MaskPolicy, floor: Double) -> [[Int]] {
        let layers = scores.count
        guard layers > 0 else { return [] }
        let units = scores[0].count
        var kept = [[Int]](repeating: [], count: layers)
        kept[0] = Array(0..<units)
        guard layers > 1 else { return kept }
        switch policy {
        case .local:
            let keepCount = keptCount(units: units, sparsity: sparsity)
            for l in 1..<layers { kept[l] = topIndices(scores[l], count: keepCount) }
        case .global, .hybrid:
            let total = (layers - 1) * units
            let pruneCount = total - keptCount(units: total, sparsity: sparsity)
            let minimum = policy == .hybrid ? floorCount(units: units, floor: floor) : 0
            // Floors first: each layer's best `minimum` units are kept whatever their rank.
            var isKept = [[Bool]](repeating: [Bool](repeating: false, count: units), count: layers)
            var keptSoFar = 0
            if minimum > 0 {
                for l in 1..<layers { for i in topIndices(scores[l], count: minimum) { isKept[l][i] = true; keptSoFar += 1 } }
            }
            let budget = total - pruneCount
            var order: [(score: Float, layer: Int, unit: Int)] = []
            order.reserveCapacity(total)
            for l in 1..<layers { for i in 0..<units where !isKept[l][i] { order.append((scores[l][i], l, i)) } }
            // Highest first; ties broken by position so the result is deterministic.
            order.sort { $0.score != $1.score ? $0.score > $1.score : ($0.layer, $0.unit) < ($1.layer, $1.unit) }
            for entry in order where keptSoFar < budget {
                isKept[entry.layer][entry.unit] = true
                keptSoFar += 1
            }
            for l in 1..<layers { kept[l] = (0..<units).filter { isKept[l][$0] } }
        }
        return kept
    }

    /// Indices of the `count` highest scores, ascending (ties: lower index first).
    static func topIndices(_ scores: [Float], count: Int) -> [Int] {
        guard count > 0 else { return [] }
        return descendingOrder(scores[...]).prefix(count).sorted()
    }

    /// Positions in `scores` (0 for its first element) from the highest score to the lowest,
    /// the earlier position first among equals: the order masks keep units in, and so the order
    /// the quality report's recall ranks by.
    static func descendingOrder(_ scores: ArraySlice<Float>) -> [Int] {
        let base = scores.startIndex
        return (0..<scores.count).sorted { scores[base + $0] != scores[base + $1] ? scores[base + $0] > scores[base + $1] : $0 < $1 }
    }

    /// Realised sparsity of the whole model (layer 0 included in the denominator): the fraction of
    /// all heads and of all neurons that the plans prune.
    public static func realisedSparsity(_ plans: [LayerPlan], shape: TransformerShape) -> (heads: Double, neurons: Double) {
        let pruned = prunedUnits(plans, shape: shape)
        return (Double(pruned.heads) / Double(shape.layers * shape.heads),
                Double(pruned.neurons) / Double(shape.layers * shape.ffnSize))
    }

    /// How many heads and neurons of the whole model the plans prune.
    public static func prunedUnits(_ plans: [LayerPlan], shape: TransformerShape) -> (heads: Int, neurons: Int) {
        var heads = 0, neurons = 0
        for plan in plans {
            heads += shape.heads - (plan.heads?.count ?? shape.heads)
            neurons += shape.ffnSize - (plan.neurons?.count ?? shape.ffnSize)
        }
        return (heads, neurons)
    }

    /// Uniform random scores (a lower bound for every mask source), seeded.
    public static func randomScores(shape: TransformerShape, seed: UInt64) -> (heads: [[Float]], neurons: [[Float]]) {
        var generator = SeededGenerator(seed: seed)
        func next() -> Float { Float(generator.next() >> 40) / Float(1 << 24) }
        let heads = (0..<shape.layers).map { _ in (0..<shape.heads).map { _ in next() } }
        let neurons = (0..<shape.layers).map { _ in (0..<shape.ffnSize).map { _ in next() } }
        return (heads, neurons)
    }
}

extension SparsitySettings {
    /// Warnings, one line each, for a sparsity that does not do what it says, all legal: above 0
    /// but pruning no unit (its count rounds to 0, e.g. 0.05 of a layer's 9 heads when selecting
    /// per layer, or a hybrid floor keeps every unit: the dense model under a sparse label);
    /// pruning every unit of layers 1… (0.95 of 9 heads per layer rounds to 9); more than a hybrid
    /// floor leaves to prune; or any sparsity on a model of one layer (layer 0 is never pruned). `method` names the mask
    /// source in the messages; `selectsPerLayer`: its masks are chosen per layer whatever the
    /// policy (DejaVu-style predictors, `PredictorKind.isPerLayer`: a layer's scores exist only
    /// once it runs). Settings out of range throw, as `validate()` does.
    public func warnings(method: String, selectsPerLayer: Bool, shape: TransformerShape) throws -> [String] {
        try validate()   // values out of range are errors, not warnings
        guard shape.layers > 1 else {
            let prunes = headSparsity > 0 || neuronSparsity > 0
            return prunes ? ["\(method) prunes nothing on a model of one layer: layer 0 always runs dense"] : []
        }
        let perLayer = policy == .local || selectsPerLayer
        let kinds = [("head", headSparsity, shape.heads), ("neuron", neuronSparsity, shape.ffnSize)]
        let layers = shape.layers == 2 ? "layer 1" : "layers 1–\(shape.layers - 1)"
        return kinds.compactMap { noun, sparsity, units in
            guard sparsity > 0 else { return nil }
            let prefix = "\(noun) sparsity \(sparsity) prunes no \(noun): "
            if perLayer {
                switch Masks.keptCount(units: units, sparsity: sparsity) {
                case units: return prefix + "\(sparsity) of each layer's \(units) \(noun)s (selected per layer) rounds to 0, so \(method) runs them all"
                case 0: return "\(noun) sparsity \(sparsity) prunes every \(noun) of \(layers): \(sparsity) of each layer's \(units) \(noun)s (selected per layer) rounds to \(units)"
                default: return nil
                }
            }
            let later = units * (shape.layers - 1), kept = Masks.keptCount(units: later, sparsity: sparsity)
            if kept == later {
                return prefix + "\(sparsity) of the \(later) \(noun)s of \(layers) rounds to 0, so \(method) runs them all"
            }
            let floor = policy == .hybrid ? Masks.floorCount(units: units, floor: hybridFloor) : 0
            if floor >= units {
                return prefix + "--hybrid-floor \(hybridFloor) keeps all \(units) \(noun)s of every layer, so \(method) runs them all"
            }
            guard floor > 0 else {
                return kept > 0 ? nil : "\(noun) sparsity \(sparsity) prunes every \(noun) of \(layers): \(sparsity) of their \(later) \(noun)s rounds to \(later)"
            }
            // The floor wins over the budget: the realised sparsity stops at what it leaves.
            let prunable = (units - floor) * (shape.layers - 1)
            if later - kept > prunable {
                let most = Double(prunable) / Double(later)
                return "\(noun) sparsity \(sparsity) is more than --hybrid-floor \(hybridFloor) leaves: it keeps \(floor) of each layer's \(units) \(noun)s, so at most \(String(format: "%.3f", most)) of the \(noun)s of \(layers) are pruned"
            }
            return nil
        }
    }
}
