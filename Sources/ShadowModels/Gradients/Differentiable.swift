import ShadowKernels

// What the importance criteria (DESIGN §3) need from a model: one forward and one hand-written
// backward pass that return, per layer, the activations of the units (A, N, Z) and the gradients
// of the loss with respect to them, plus — on request — the gradients of the weights that read
// or write those units.

/// Additive fp32 deltas to the output and down projections, applied after the weights are
/// widened to fp32 (so they work for any storage dtype). GRASP's finite-difference
/// Hessian–vector product runs the gradient pass at W + ε·g through these.
public struct WeightOffsets: Sendable {
    /// Per layer, nil for "no delta": (H·d_h, d), laid out like our transposed W_O.
    public var outputProjection: [[Float]?]
    /// Per layer, nil for "no delta": (F, d), laid out like our transposed W_down (fc2 for OPT).
    public var downProjection: [[Float]?]

    public init(outputProjection: [[Float]?], downProjection: [[Float]?]) {
        self.outputProjection = outputProjection
        self.downProjection = downProjection
    }
}

/// A choice among the projections whose weight gradients a pass returns.
public struct ProjectionSet: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// W_O, the attention output projection.
    public static let output = ProjectionSet(rawValue: 1)
    /// W_down (Llama) or fc2 (OPT).
    public static let down = ProjectionSet(rawValue: 2)
    /// gate (Llama) or fc1 (OPT).
    public static let first = ProjectionSet(rawValue: 4)
    /// up (Llama only).
    public static let up = ProjectionSet(rawValue: 8)
    public static let all: ProjectionSet = [.output, .down, .first, .up]
}

public struct GradientOptions: Sendable {
    /// The projections whose dL/dW the pass also returns, among W_O, W_down and the first FFN
    /// projection(s): gate and up (Llama) or fc1 (OPT). None by default: each is as large as its
    /// matrix, so asking only for what a criterion reads saves most of their cost.
    public var weightGradients: ProjectionSet = []
    /// Deltas added to W_O and W_down for this pass (forward and backward both see W + δ).
    public var weightOffsets: WeightOffsets? = nil
    /// Run the forward only: each layer shows its activations, and every gradient array is empty
    /// (the magnitude criteria `l2_norm` and `nwot` need no backward).
    public var activationsOnly: Bool = false
    /// How many of the first layers the backward recomputes from their inputs, just before their
    /// backward, instead of keeping their activations from the forward (the same numbers; each
    /// costs its forward again and saves all but its input). nil chooses: none while every
    /// layer's activations fit `GradientPass.keptActivationBudget`, else as few as make the rest fit.
    public var recomputedLayers: Int? = nil
    /// A test hook: adds `delta` to one entry of A or N during the forward, so finite differences
    /// can probe dL/dA and dL/dN of a whole model.
    var shift: ActivationShift? = nil

    public init(weightGradients: ProjectionSet = [], weightOffsets: WeightOffsets? = nil, activationsOnly: Bool = false) {
        self.weightGradients = weightGradients
        self.weightOffsets = weightOffsets
        self.activationsOnly = activationsOnly
    }
}

/// One entry of A^l (`attention`) or N^l (`hidden`) moved by `delta` in the forward pass.
struct ActivationShift: Sendable {
    enum Target: Sendable { case attention, hidden }
    var target: Target
    var layer: Int
    var index: Int
    var delta: Float
}

public struct LayerGradients: Sendable, Equatable {
    public var layerInput: [Float]        // (T, d) residual stream entering layer l
    public var attention: [Float]         // A^l (T, H·d_h): per-head attention outputs before the output projection
    public var attentionGrad: [Float]     // G = dL/dA (T, H·d_h)
    public var hidden: [Float]            // N^l (T, F): Llama SiLU(gate x)⊙(up x), OPT ReLU(fc1 x + b)
    public var hiddenGrad: [Float]        // GN = dL/dN (T, F)
    public var preActivation: [Float]     // Z^l (T, F): Llama gate x, OPT fc1 x + b
    public var outputProjectionGrad: [Float]?  // dL/dW_O stored like our transposed W_O: (H·d_h, d)
    public var downProjectionGrad: [Float]?    // dL/dW_down transposed: (F, d)
    public var firstProjectionGrad: [Float]?   // (F, d): OPT fc1; Llama gate
    public var upProjectionGrad: [Float]?      // (F, d): Llama up only

    public init(layerInput: [Float], attention: [Float], attentionGrad: [Float], hidden: [Float], hiddenGrad: [Float],
                preActivation: [Float], outputProjectionGrad: [Float]? = nil, downProjectionGrad: [Float]? = nil,
                firstProjectionGrad: [Float]? = nil, upProjectionGrad: [Float]? = nil) {
        self.layerInput = layerInput
        self.attention = attention
        self.attentionGrad = attentionGrad
        self.hidden = hidden
        self.hiddenGrad = hiddenGrad
        self.preActivation = preActivation
        self.outputProjectionGrad = outputProjectionGrad
        self.downProjectionGrad = downProjectionGrad
        self.firstProjectionGrad = firstProjectionGrad
        self.upProjectionGrad = upProjectionGrad
    }
}

/// The loss of one gradient pass, whose layers went to its visitor.
public struct GradientLoss: Sendable {
    /// Mean cross-entropy (natural log) over the predicted tokens.
    public var loss: Double
    public var predictedTokens: Int
    public var tokens: Int
}

/// A gradient pass with every layer's activations and gradients kept.
public struct GradientRecord: Sendable {
    /// Mean cross-entropy (natural log) over the predicted tokens.
    public var loss: Double
    public var predictedTokens: Int
    public var tokens: Int
    public var layers: [LayerGradients]

    public init(loss: Double, predictedTokens: Int, tokens: Int, layers: [LayerGradients]) {
        self.loss = loss
        self.predictedTokens = predictedTokens
        self.tokens = tokens
        self.layers = layers
    }
}

/// fp32 values of the weights whose gradients `GradientOptions.weightGradients` returns, in the
/// same layouts as those gradients. Projections that were not asked for are empty.
public struct ProjectionWeights: Sendable {
    public var outputProjection: [Float]    // W_O transposed: (H·d_h, d)
    public var downProjection: [Float]      // W_down transposed: (F, d)
    public var firstProjection: [Float]     // (F, d): OPT fc1; Llama gate
    public var upProjection: [Float]?       // (F, d): Llama up only

    public init(outputProjection: [Float], downProjection: [Float], firstProjection: [Float], upProjection: [Float]?) {
        self.outputProjection = outputProjection
        self.downProjection = downProjection
        self.firstProjection = firstProjection
        self.upProjection = upProjection
    }
}

public protocol DifferentiableLanguageModel: CausalLanguageModel {
    /// Loss = mean cross-entropy of tokens[predictFrom...] given everything before them (predictFrom ≥ 1).
    /// Each layer's activations and gradients go to `visit` as soon as they are complete — last
    /// layer first, or in layer order when `options.activationsOnly` —, so a caller that folds
    /// them into scores holds one layer's at a time (about 30 k floats per token for a 1B Llama).
    func lossAndGradients(tokens: [Int], predictFrom: Int, options: GradientOptions,
                          visit: (_ layer: Int, LayerGradients) throws -> Void) throws -> GradientLoss
    /// The weights of layer `layer` that the weight-based criteria (snip, grasp, plainact_w) read,
    /// widened to fp32; those not in `projections` are left empty.
    func projectionWeights(layer: Int, projections: ProjectionSet) -> ProjectionWeights
    /// Whether the loss has kinks in the weights (ReLU MLPs: OPT): finite differences of the
    /// gradient then need small steps, which a smooth loss (SiLU, GELU) does not.
    var hasKinks: Bool { get }
}

extension DifferentiableLanguageModel {
    public func projectionWeights(layer: Int) -> ProjectionWeights { projectionWeights(layer: layer, projections: .all) }

    public func lossAndGradients(tokens: [Int], predictFrom: Int) throws -> GradientRecord {
        try lossAndGradients(tokens: tokens, predictFrom: predictFrom, options: GradientOptions())
    }

    /// The pass with every layer kept in one record.
    public func lossAndGradients(tokens: [Int], predictFrom: Int, options: GradientOptions) throws -> GradientRecord {
        var layers = [LayerGradients?](repeating: nil, count: shape.layers)
        let result = try lossAndGradients(tokens: tokens, predictFrom: predictFrom, options: options) { layers[$0] = $1 }
        return GradientRecord(loss: result.loss, predictedTokens: result.predictedTokens, tokens: result.tokens,
                              layers: layers.map { $0! })
    }
}
