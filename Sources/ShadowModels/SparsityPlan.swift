/// Which attention heads and FFN neurons one layer keeps. The engine skips the rest for real:
/// a pruned head costs no Q rows, scores, softmax, V mix or output-projection rows; a pruned
/// neuron costs no gate/up (fc1) row and no down (fc2) row (DESIGN §5).
public struct LayerPlan: Sendable, Equatable {
    /// Kept query heads in ascending order; nil keeps all. (Constants: the row lists below are
    /// derived from them once.)
    public let heads: [Int]?
    /// Kept FFN neurons in ascending order; nil keeps all.
    public let neurons: [Int32]?

    /// Derived once so that decode allocates nothing per token: rows of the q/o projections
    /// that the kept heads own, the KV groups they read and those groups' k/v rows.
    public private(set) var attentionRows: [Int32]?
    public private(set) var kvGroups: [Int]?
    public private(set) var kvRows: [Int32]?

    public init(heads: [Int]? = nil, neurons: [Int32]? = nil) {
        self.heads = heads
        self.neurons = neurons
    }

    /// A plan with its row lists precomputed for `shape`.
    public init(heads: [Int]?, neurons: [Int32]?, shape: TransformerShape) {
        self.init(heads: heads, neurons: neurons)
        prepare(for: shape)
    }

    public mutating func prepare(for shape: TransformerShape) {
        guard let heads, attentionRows == nil else { return }
        attentionRows = Self.rows(units: heads, width: shape.headDim)
        var seen = [Bool](repeating: false, count: shape.kvHeads)
        for h in heads { seen[h / shape.groupSize] = true }
        let groups = seen.indices.filter { seen[$0] }
        kvGroups = groups
        kvRows = Self.rows(units: groups, width: shape.headDim)
    }

    public static let dense = LayerPlan()

    /// Traps, naming the layer, when the plan lists a unit `shape` does not have or lists units
    /// out of order: a plan made for another model would read and write past the buffers (the
    /// architectures' -Ounchecked build checks no index). A `guard`, which that build keeps.
    func checkFits(_ shape: TransformerShape, layer: Int) {
        func fits<T: BinaryInteger>(_ units: [T]?, _ count: Int) -> Bool {
            guard let units else { return true }
            var previous = -1
            for unit in units {
                guard Int(unit) > previous, Int(unit) < count else { return false }
                previous = Int(unit)
            }
            return true
        }
        func shown<T>(_ units: [T]) -> String { "\(Array(units.prefix(12)))" + (units.count > 12 ? "…" : "") }
        guard fits(heads, shape.heads) else {
            fatalError("layer \(layer)'s plan keeps heads \(shown(heads!)): a model of \(shape.heads) heads per layer needs distinct ascending heads below \(shape.heads) (a plan made for another model?)")
        }
        guard fits(neurons, shape.ffnSize) else {
            fatalError("layer \(layer)'s plan keeps neurons \(shown(neurons!)): a model of \(shape.ffnSize) neurons per layer needs distinct ascending neurons below \(shape.ffnSize) (a plan made for another model?)")
        }
    }

    /// What a forward pass checks before it runs: the cache and the controller were made for a
    /// model of this shape (traps naming what differs; see `checkFits`).
    static func checkForward(shape: TransformerShape, cache: KVCache, sparsity: (any SparsityController)?) {
        guard cache.shape == shape else {
            fatalError("a KV cache made for another model (\(cache.shape.describedSizes)) given to a model of \(shape.describedSizes)")
        }
        if let made = sparsity?.modelShape, made != shape {
            fatalError("a sparsity controller made for a model of \(made.describedSizes) given to a model of \(shape.describedSizes)")
        }
    }

    /// `plan` as a forward pass uses it, checked against the model's `shape`.
    static func checked(_ plan: LayerPlan?, layer: Int, shape: TransformerShape) -> LayerPlan? {
        plan?.checkFits(shape, layer: layer)
        return plan
    }

    /// Plans are equal when they keep the same units, whether or not their row lists are derived yet.
    public static func == (a: LayerPlan, b: LayerPlan) -> Bool { a.heads == b.heads && a.neurons == b.neurons }
}

/// How a sparse forward treats pruned units.
public enum SparseExecution: Sendable {
    /// Pruned units are not computed at all (the point of the method).
    case skip
    /// Everything is computed densely and pruned units' outputs are zeroed: the reference the
    /// skipping path must equal, and the paper's way of measuring accuracy.
    case zero
}

/// Chooses each layer's plan while a forward pass runs. Layer 0 always runs dense; its per-head
/// attention outputs A⁰ are shown to the controller (the ShadowLLM predictor's input) before any
/// later layer asks for its plan with the residual entering it (DejaVu's input).
/// A controller keeps the state of the prompt it serves (its masks, its statistics): give each
/// thread, or each generation running at the same time, a controller of its own.
public protocol SparsityController: AnyObject {
    /// The shape of the model the controller was made for (its predictor's or its oracle's), or
    /// nil when it does not know one. A forward pass of a model of another shape traps, and
    /// generation and perplexity throw, rather than read its activations with the wrong widths.
    var modelShape: TransformerShape? { get }
    var execution: SparseExecution { get }
    /// Compute K/V of every group even when no kept head reads them, so the cache stays valid if
    /// a later plan keeps other heads (masks refreshed during decode).
    var keepsAllKeysAndValues: Bool { get }
    /// Every layer, after its attention: `input` is the residual entering the layer, (T, d), and
    /// `attention` its per-head outputs A (T, H·d_h) — only the kept heads, in plan order, when the
    /// layer skips heads; `position` is the first token's position. `tokens` counts the prompt's
    /// rows, whose last a predictor reads: all of the pass's, except when the pass also holds
    /// branches after its context (`Branches.promptRows`).
    func observe(layer: Int, input: UnsafePointer<Float>, attention: UnsafePointer<Float>, tokens: Int, position: Int)
    /// The plan of layer `layer` ≥ 1; `input` is the residual stream entering it, (T, d).
    func plan(layer: Int, input: UnsafePointer<Float>, tokens: Int, position: Int) -> LayerPlan
}

extension SparsityController {
    public var modelShape: TransformerShape? { nil }

    /// One mask serves the whole generation: chosen once per prompt and never re-predicted
    /// during decode (a controller that may change its masks keeps every group's K/V for it).
    /// Only such masks read packed copies of their kept rows in steady decode (bench's
    /// `--packing auto`; `Scratch.packing`).
    public var masksStayPut: Bool { !keepsAllKeysAndValues }
}

/// A controller that reads the prompt's tokens before planning (the oracle computes the true
/// criterion on them). Callers that know where a prompt starts call `prepare` first: scoring,
/// perplexity windows and generation.
public protocol PromptAwareController: SparsityController {
    func prepare(prompt: [Int])
}

/// The same plan for every call: a fixed mask (static, oracle or random masks, and tests).
public final class FixedSparsity: SparsityController, @unchecked Sendable {
    public let layers: [LayerPlan]
    public let execution: SparseExecution
    public let keepsAllKeysAndValues: Bool
    /// The shape the plans were made for (`Masks.fixedSparsity` sets it), nil when not given.
    public let modelShape: TransformerShape?

    public init(layers: [LayerPlan], execution: SparseExecution = .skip, keepsAllKeysAndValues: Bool = false,
                modelShape: TransformerShape? = nil) {
        self.layers = layers
        self.execution = execution
        self.keepsAllKeysAndValues = keepsAllKeysAndValues
        self.modelShape = modelShape
    }

    public func observe(layer: Int, input: UnsafePointer<Float>, attention: UnsafePointer<Float>, tokens: Int, position: Int) {}

    public func plan(layer: Int, input: UnsafePointer<Float>, tokens: Int, position: Int) -> LayerPlan {
        layer < layers.count ? layers[layer] : .dense
    }
}

extension LayerPlan {
    /// Row indices of a (units × width) projection for the listed units: unit u covers rows u·width..<(u+1)·width.
    static func rows(units: [Int], width: Int) -> [Int32] {
        var rows: [Int32] = []
        rows.reserveCapacity(units.count * width)
        for u in units { for i in 0..<width { rows.append(Int32(u * width + i)) } }
        return rows
    }
}
