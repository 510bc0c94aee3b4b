import Foundation
import ShadowModels

/// The importance criteria of DESIGN §3: how much one unit — an attention head (l, h) or an FFN
/// neuron (l, j) — matters for one sample. `plainact` is the ShadowLLM paper's choice.
public enum Criterion: String, CaseIterable, Sendable, Codable {
    case plainact
    case plainactW = "plainact_w"
    case fisher
    case gradNorm = "grad_norm"
    case l2Norm = "l2_norm"
    case snip
    case grasp
    case nwot
    case jacov
    case epenas

    /// jacov and epenas score heads only: their per-token vectors are a head's gradient slices.
    public var headsOnly: Bool { self == .jacov || self == .epenas }

    /// Everything but the activation statistics (l2_norm, nwot) reads gradients.
    public var needsBackward: Bool { self != .l2Norm && self != .nwot }

    /// Criteria that read weights and their gradients (GRASP also runs two more passes).
    public var needsWeightGradients: Bool { !weightProjections.isEmpty }

    /// The projections whose weights and weight gradients the criterion reads.
    public var weightProjections: ProjectionSet {
        switch self {
        case .plainactW: return [.first, .up]
        case .snip, .grasp: return [.output, .down]
        default: return []
        }
    }

    /// One line for help texts (`scores --help` lists them).
    public var summary: String {
        switch self {
        case .plainact: return "Σ_t |⟨A, dL/dA⟩| per head, Σ_t |N · dL/dN| per neuron (the paper's choice)"
        case .plainactW: return "plainact heads; neurons Σ |W1 ⊙ dL/dW1| over the neuron's fc1 (gate and up) row"
        case .fisher: return "Σ_i mean_t (A · dL/dA)² per head, mean_t (N · dL/dN)² per neuron"
        case .gradNorm: return "‖dL/dA‖₂ per head, ‖dL/dN‖₂ per neuron"
        case .l2Norm: return "‖A‖₂ per head, ‖N‖₂ per neuron (no backward)"
        case .snip: return "Σ |W ⊙ dL/dW| over the head's W_O rows / the neuron's W_down row"
        case .grasp: return "−Σ W ⊙ (H g) over the same rows, H g by finite differences of the gradient"
        case .nwot: return "log(1 + number of positive activations) (no backward)"
        case .jacov: return "heads only: −Σ_k [log(λ_k + 1e-5) + 1/(λ_k + 1e-5)] over the eigenvalues of the per-token gradient correlations"
        case .epenas: return "heads only: per target-token group Σ log(|corr| + 1e-5), summed pairwise differences"
        }
    }
}

/// One sample's scores (or, after `Importance.aggregate`, a calibration set's).
public struct ImportanceScores: Sendable, Codable, Equatable {
    /// The sample's loss (mean cross-entropy of its continuation); the mean over samples after aggregation.
    public var loss: Double
    /// (L, H) head scores.
    public var heads: [[Float]]
    /// (L, F) neuron scores; nil for heads-only criteria.
    public var neurons: [[Float]]?
    /// jacov only: (L·H, `GradientCorrelation.pooledPerSample`, d_h) of the sample's per-token
    /// gradient vectors, which the static score pools over samples (`PooledJacov`).
    public var pooledVectors: [Float]?

    public init(loss: Double, heads: [[Float]], neurons: [[Float]]?, pooledVectors: [Float]? = nil) {
        self.loss = loss
        self.heads = heads
        self.neurons = neurons
        self.pooledVectors = pooledVectors
    }
}
