import Foundation
import ShadowFormats
import ShadowModels

/// Per-sample importance of every head and neuron (DESIGN §3), and the static importance of a
/// calibration set (the element-wise sum of its per-sample scores).
public enum Importance {
    /// Per-sample scores of one sample (context + continuation already tokenized: predictFrom = number of context tokens).
    /// One forward and backward pass serves every requested criterion; `grasp` adds two more
    /// (its Hessian-gradient product by central differences).
    public static func scores(model: any DifferentiableLanguageModel, tokens: [Int], predictFrom: Int,
                              criteria: [Criterion]) throws -> [Criterion: ImportanceScores] {
        guard !criteria.isEmpty else { return [:] }
        return try scores(model: model, tokens: tokens, predictFrom: predictFrom, criteria: criteria) { _, _ in }
    }

    /// `scores`, showing each layer of the gradient pass (its activations at every position) to
    /// `visit` as it goes by. Every criterion's scores of a layer are taken as soon as the pass has
    /// it, so no more than one layer's activations and gradients are held at a time.
    static func scores(model: any DifferentiableLanguageModel, tokens: [Int], predictFrom: Int, criteria: [Criterion],
                       visit: (_ layer: Int, LayerGradients) -> Void) throws -> [Criterion: ImportanceScores] {
        let s = model.shape, L = s.layers
        let projections = criteria.reduce(ProjectionSet()) { $0.union($1.weightProjections) }
        let options = GradientOptions(weightGradients: projections, activationsOnly: !criteria.contains { $0.needsBackward })
        let direct = Set(criteria).subtracting([.grasp])
        var perCriterion: [Criterion: (heads: [[Float]], neurons: [[Float]]?)] = [:]
        for criterion in Set(criteria) {
            perCriterion[criterion] = (Array(repeating: [], count: L), criterion.headsOnly ? nil : Array(repeating: [], count: L))
        }
        var pooled = criteria.contains(.jacov) ? PooledGradients(tokens: tokens, shape: s) : nil
        // GRASP's scores wait for two more passes; it keeps each layer's W_O and W_down and their gradients.
        let grasp = criteria.contains(.grasp)
        var graspLayers = [(weights: ProjectionWeights, gradients: LayerGradients)?](repeating: nil, count: grasp ? L : 0)
        let pass = try model.lossAndGradients(tokens: tokens, predictFrom: predictFrom, options: options) { l, layer in
            let weights = projections.isEmpty ? nil : model.projectionWeights(layer: l, projections: projections)
            for criterion in direct {
                let unit = layerScores(criterion, layer: layer, weights: weights, hessianGradient: nil, tokens: tokens, shape: s)
                perCriterion[criterion]!.heads[l] = unit.heads
                if let n = unit.neurons { perCriterion[criterion]!.neurons?[l] = n }
            }
            pooled?.add(layer.attentionGrad, layer: l)
            if grasp, let weights {
                let kept = ProjectionWeights(outputProjection: weights.outputProjection, downProjection: weights.downProjection,
                                             firstProjection: [], upProjection: nil)
                graspLayers[l] = (kept, LayerGradients(layerInput: [], attention: [], attentionGrad: [], hidden: [], hiddenGrad: [],
                                                          preActivation: [], outputProjectionGrad: layer.outputProjectionGrad,
                                                          downProjectionGrad: layer.downProjectionGrad))
            }
            visit(l, layer)
        }
        if grasp {
            let kept = graspLayers.map { $0! }
            let products = try hessianGradientProducts(model: model, tokens: tokens, predictFrom: predictFrom,
                                                       layers: kept.map(\.gradients), weights: kept.map(\.weights))
            for (l, layer) in kept.enumerated() {
                let unit = layerScores(.grasp, layer: layer.gradients, weights: layer.weights, hessianGradient: products[l],
                                       tokens: tokens, shape: s)
                perCriterion[.grasp]!.heads[l] = unit.heads
                perCriterion[.grasp]!.neurons?[l] = unit.neurons!
            }
        }
        return perCriterion.reduce(into: [:]) { result, entry in
            result[entry.key] = ImportanceScores(loss: pass.loss, heads: entry.value.heads, neurons: entry.value.neurons,
                                                 pooledVectors: entry.key == .jacov ? pooled?.vectors : nil)
        }
    }

    /// G_{t,h,·} at `GradientCorrelation.pooledPositions` for every layer and head:
    /// (L·H, pooledPerSample, d_h), zero rows when the sample has fewer positions.
    struct PooledGradients {
        let positions: [Int]
        let shape: TransformerShape
        private(set) var vectors: [Float]

        init(tokens: [Int], shape s: TransformerShape) {
            let k = GradientCorrelation.pooledPerSample
            positions = GradientCorrelation.pooledPositions(tokens: tokens, count: k)
            shape = s
            vectors = [Float](repeating: 0, count: s.layers * s.heads * k * s.headDim)
        }

        /// Layer l's G (T, H·d_h).
        mutating func add(_ grad: [Float], layer l: Int) {
            let s = shape, k = GradientCorrelation.pooledPerSample
            for h in 0..<s.heads {
                for (j, t) in positions.enumerated() {
                    let source = t * s.attentionWidth + h * s.headDim
                    let target = ((l * s.heads + h) * k + j) * s.headDim
                    for i in 0..<s.headDim { vectors[target + i] = grad[source + i] }
                }
            }
        }
    }

    /// The static importance of a calibration set: heads and neurons summed element-wise over the
    /// samples (in Double), the loss averaged; for jacov (samples carrying pooled vectors) the head
    /// scores are the pooled statistic instead. All samples must come from one model and criterion.
    /// (The in-memory form of `AggregateImportance`, which streams a trace directory through the
    /// same `ImportanceSum`.)
    public static func aggregate(_ samples: [ImportanceScores]) -> ImportanceScores {
        precondition(!samples.isEmpty, "aggregate needs at least one sample")
        let (layers, perLayer) = (samples[0].heads.count, samples[0].heads.first?.count ?? 0)
        let neuronsPerLayer = samples[0].neurons?.first?.count ?? 0
        precondition(samples.allSatisfy { $0.heads.count == layers && $0.heads.allSatisfy { $0.count == perLayer }
                                          && ($0.neurons == nil) == (samples[0].neurons == nil) && ($0.neurons?.count ?? layers) == layers
                                          && ($0.neurons ?? []).allSatisfy { $0.count == neuronsPerLayer } },
                     "aggregate needs samples of one shape, all with neuron scores or all without")
        let pooledWidth = samples[0].pooledVectors.map { $0.count / max(layers * perLayer * GradientCorrelation.pooledPerSample, 1) }
        var total = ImportanceSum(headUnits: layers * perLayer, pooledWidth: pooledWidth, samples: samples.count)
        for sample in samples {
            total.add(heads: sample.heads.flatMap { $0 }, neurons: sample.neurons?.flatMap { $0 }, pooledVectors: sample.pooledVectors ?? [])
        }
        func rows(_ values: [Float], _ width: Int) -> [[Float]] { (0..<layers).map { Array(values[$0 * width..<($0 + 1) * width]) } }
        return ImportanceScores(loss: samples.map(\.loss).reduce(0, +) / Double(samples.count),
                                heads: rows(total.headScores, perLayer), neurons: total.neuronSums.map { rows($0.map(Float.init), neuronsPerLayer) })
    }

    // MARK: - One layer

    /// H g of one layer: (H·d_h, d) for W_O, (F, d) for W_down, in our transposed layouts.
    struct HessianGradient {
        var outputProjection: [Float]
        var downProjection: [Float]
    }

    static func layerScores(_ criterion: Criterion, layer: LayerGradients, weights: ProjectionWeights?,
                            hessianGradient: HessianGradient?, tokens: [Int], shape s: TransformerShape)
        -> (heads: [Float], neurons: [Float]?) {
        let T = tokens.count, aw = s.attentionWidth, dh = s.headDim, F = s.ffnSize, d = s.hiddenSize
        let A = layer.attention, G = layer.attentionGrad, N = layer.hidden, GN = layer.hiddenGrad
        switch criterion {
        case .plainact, .plainactW:
            let heads = UnitScores.absoluteInnerProducts(A, G, tokens: T, width: aw, unitWidth: dh)
            if criterion == .plainact {
                return (heads, UnitScores.absoluteInnerProducts(N, GN, tokens: T, width: F, unitWidth: 1))
            }
            let w = weights!
            var neurons = UnitScores.rowProducts(w.firstProjection, layer.firstProjectionGrad!, cols: d, rowsPerUnit: 1, absolute: true)
            if let up = w.upProjection {
                let upScores = UnitScores.rowProducts(up, layer.upProjectionGrad!, cols: d, rowsPerUnit: 1, absolute: true)
                neurons = zip(neurons, upScores).map { $0 + $1 }
            }
            return (heads, neurons)
        case .fisher:
            return (UnitScores.meanSquaredProducts(A, G, tokens: T, width: aw, unitWidth: dh),
                    UnitScores.meanSquaredProducts(N, GN, tokens: T, width: F, unitWidth: 1))
        case .gradNorm:
            return (UnitScores.norms(G, tokens: T, width: aw, unitWidth: dh), UnitScores.norms(GN, tokens: T, width: F, unitWidth: 1))
        case .l2Norm:
            return (UnitScores.norms(A, tokens: T, width: aw, unitWidth: dh), UnitScores.norms(N, tokens: T, width: F, unitWidth: 1))
        case .snip:
            let w = weights!
            return (UnitScores.rowProducts(w.outputProjection, layer.outputProjectionGrad!, cols: d, rowsPerUnit: dh, absolute: true),
                    UnitScores.rowProducts(w.downProjection, layer.downProjectionGrad!, cols: d, rowsPerUnit: 1, absolute: true))
        case .grasp:
            let w = weights!, hg = hessianGradient!
            return (UnitScores.rowProducts(w.outputProjection, hg.outputProjection, cols: d, rowsPerUnit: dh, absolute: false).map { -$0 },
                    UnitScores.rowProducts(w.downProjection, hg.downProjection, cols: d, rowsPerUnit: 1, absolute: false).map { -$0 })
        case .nwot:
            return (UnitScores.logPositiveCounts(A, tokens: T, width: aw, unitWidth: dh),
                    UnitScores.logPositiveCounts(layer.preActivation, tokens: T, width: F, unitWidth: 1))
        case .jacov:
            return ((0..<s.heads).map { h in Float(GradientCorrelation.jacov(headVectors(G, head: h, tokens: 0..<T, shape: s))) }, nil)
        case .epenas:
            // Position t's target is tokens[t + 1]; the last position has none.
            let labels = Array(tokens.dropFirst())
            return ((0..<s.heads).map { h in
                Float(GradientCorrelation.epenas(headVectors(G, head: h, tokens: 0..<T - 1, shape: s), labels: labels))
            }, nil)
        }
    }

    /// G_{t,h,·} for t in `tokens`, in Double.
    static func headVectors(_ g: [Float], head h: Int, tokens: Range<Int>, shape s: TransformerShape) -> [[Double]] {
        tokens.map { t in
            let start = t * s.attentionWidth + h * s.headDim
            return g[start..<start + s.headDim].map(Double.init)
        }
    }

    // MARK: - GRASP

    /// GRASP's Hessian–vector product by central differences of the gradient along g,
    /// H g ≈ (g(W + εg) − g(W − εg)) / 2ε, with ε = δL / ‖g‖₂², the step that changes the loss by
    /// δL nats to first order (norms over the W_O and W_down of all layers), capped so that
    /// ‖ε·g‖ ≤ 1e-3 · (1 + ‖W‖₂) when the gradient is tiny. Float32 rounding of the gradient
    /// difference bounds the step from below, the loss's curvature and kinks from above:
    /// - smooth models (SiLU, GELU): δL = 1e-2. On SmolLM2-135M, against an exact float64
    ///   Hessian product, 1e-3 was off by up to 3.8% (heads) and 11% (neurons) of a layer's
    ///   largest score, 1e-2 by 0.05–0.14%, its truncation error 1e-4 to 3e-4.
    /// - ReLU models (OPT): δL = 1e-3. Above ≈ 3e-3 the step crosses kinks on the tiny test
    ///   models and H g changes by 50% or its sign (the textbook √ε_fp32 · (1 + ‖W‖) / ‖g‖ step
    ///   changed the loss by 0.1 nats there); at 1e-3 the scores agree with those at twice the
    ///   step to 2% (heads) and 4% (neurons) of a layer's largest score.
    /// The forward difference (g(W + εg) − g(W)) / ε would save a pass but was off by up to 9%.
    static func graspLossStep(kinks: Bool) -> Double { kinks ? 1e-3 : 1e-2 }
    static let graspMaximumRelativeStep = 1e-3

    static func graspStep(gradientNorm: Double, weightNorm: Double, kinks: Bool) -> Double {
        min(graspLossStep(kinks: kinks) / (gradientNorm * gradientNorm), graspMaximumRelativeStep * (1 + weightNorm) / gradientNorm)
    }

    /// H g ≈ (g(W + εg) − g(W − εg)) / 2ε for W = all W_O and W_down, g = dL/dW at W (`layers`' weight gradients).
    static func hessianGradientProducts(model: any DifferentiableLanguageModel, tokens: [Int], predictFrom: Int,
                                        layers: [LayerGradients], weights: [ProjectionWeights]) throws -> [HessianGradient] {
        func squaredNorm(_ x: [Float]) -> Double { x.reduce(0.0) { $0 + Double($1) * Double($1) } }
        let gradientNorm = layers.reduce(0.0) {
            $0 + squaredNorm($1.outputProjectionGrad!) + squaredNorm($1.downProjectionGrad!)
        }.squareRoot()
        let weightNorm = weights.reduce(0.0) { $0 + squaredNorm($1.outputProjection) + squaredNorm($1.downProjection) }.squareRoot()
        guard gradientNorm > 0 else {
            return layers.map { HessianGradient(outputProjection: Array(repeating: 0, count: $0.outputProjectionGrad!.count),
                                                downProjection: Array(repeating: 0, count: $0.downProjectionGrad!.count)) }
        }
        let epsilon = Float(graspStep(gradientNorm: gradientNorm, weightNorm: weightNorm, kinks: model.hasKinks))
        /// Shows each layer's dL/dW_O and dL/dW_down at W + step·g to `body`.
        func gradients(at step: Float, _ body: (_ layer: Int, _ output: [Float], _ down: [Float]) -> Void) throws {
            let offsets = WeightOffsets(outputProjection: layers.map { $0.outputProjectionGrad!.map { $0 * step } },
                                        downProjection: layers.map { $0.downProjectionGrad!.map { $0 * step } })
            let options = GradientOptions(weightGradients: [.output, .down], weightOffsets: offsets)
            _ = try model.lossAndGradients(tokens: tokens, predictFrom: predictFrom, options: options) { l, layer in
                body(l, layer.outputProjectionGrad!, layer.downProjectionGrad!)
            }
        }
        // g(W + εg), then each layer's difference as g(W − εg) arrives.
        var products = [HessianGradient](repeating: HessianGradient(outputProjection: [], downProjection: []), count: layers.count)
        try gradients(at: epsilon) { l, output, down in products[l] = HessianGradient(outputProjection: output, downProjection: down) }
        try gradients(at: -epsilon) { l, output, down in
            products[l] = HessianGradient(outputProjection: zip(products[l].outputProjection, output).map { ($0 - $1) / (2 * epsilon) },
                                          downProjection: zip(products[l].downProjection, down).map { ($0 - $1) / (2 * epsilon) })
        }
        return products
    }
}

/// Static importance added up sample by sample, for `Importance.aggregate` (in memory) and
/// `AggregateImportance` (streamed from traces). Scores are summed in Double: thousands of samples
/// whose scores differ by orders of magnitude would lose the small ones to Float rounding. jacov
/// pools its vectors over the samples instead, while every sample carries them.
struct ImportanceSum {
    private(set) var samples = 0
    private(set) var headSums: [Double]
    /// nil until a sample with neuron scores arrives (head-only criteria never have them).
    private(set) var neuronSums: [Double]?
    private var pool: PooledJacov?

    /// `pooledWidth`: the width of the pooled vectors (d_h) when the criterion pools them, else nil;
    /// `samples`: how many will be added (the pool draws its subsets from that count).
    init(headUnits: Int, pooledWidth: Int?, samples: Int) {
        headSums = [Double](repeating: 0, count: headUnits)
        pool = pooledWidth.map { PooledJacov(units: headUnits, width: $0, poolSize: samples * GradientCorrelation.pooledPerSample) }
    }

    /// One sample: flat (layer-major) head and neuron scores, and its pooled vectors (empty: none,
    /// which ends pooling: the heads are then the sums).
    mutating func add(heads: [Float], neurons: [Float]?, pooledVectors: [Float]) {
        samples += 1
        if pool != nil {
            if pooledVectors.isEmpty { pool = nil } else { pool!.add(pooledVectors) }
        }
        for (i, v) in heads.enumerated() { headSums[i] += Double(v) }
        if let neurons {
            if neuronSums == nil { neuronSums = [Double](repeating: 0, count: neurons.count) }
            for (i, v) in neurons.enumerated() { neuronSums![i] += Double(v) }
        }
    }

    var pooled: Bool { pool != nil }

    /// The pooled statistic when pooling, else the sums.
    var headScores: [Float] { pool?.scores() ?? headSums.map(Float.init) }
}
