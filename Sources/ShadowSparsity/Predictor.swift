import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels

/// Which predictor (DESIGN §4).
public enum PredictorKind: String, Sendable, Codable, CaseIterable {
    /// ShadowLLM: one network reads A⁰ at the predictor token and scores every later layer.
    case shadow
    /// DejaVu-style: one network per layer l ≥ 1 reads the residual stream entering layer l (the
    /// layer input DESIGN §3 allows in place of A^l: DejaVu's own predictors read it, and it
    /// exists before layer l runs, so the layer's masks can be chosen before its attention).
    case dejavu
    /// DejaVu-style with look-ahead: layer l's network reads the residual entering layer l − 1,
    /// so its work can overlap with layer l − 1.
    case dejavuLookahead = "dejavu-lookahead"

    public var isPerLayer: Bool { self != .shadow }

    /// dejavu kinds: the layer whose residual input the predictor of layer `layer` reads.
    public func sourceLayer(for layer: Int) -> Int { self == .dejavuLookahead ? layer - 1 : layer }
}

/// How a sample's scores become training targets.
public enum TargetScaling: String, Sendable, Codable, CaseIterable {
    /// Each layer's row min–max scaled to [0, 1] (the paper's "predictorL"; what makes one
    /// global ranking across layers meaningful).
    case perLayer = "per-layer"
    /// The whole L × units vector scaled with one minimum and maximum.
    case global
}

public enum PredictorLoss: String, Sendable, Codable, CaseIterable {
    /// Mean squared error against the scaled targets.
    case mse
    /// Per-layer listwise softmax cross-entropy. It fixes each layer's ranking but not the
    /// offset between layers, so its scores suit the local mask policy best.
    case rank
}

/// The architecture and target of a predictor; `TrainingOptions` holds how it is trained.
public struct PredictorConfiguration: Sendable, Equatable, Codable {
    public var kind: PredictorKind
    /// Hidden width of the head network(s).
    public var headWidth: Int
    /// Hidden width of the neuron network(s).
    public var neuronWidth: Int
    /// Rank of the neuron networks' factored output layer; nil for a full output layer.
    public var rank: Int?
    public var targetScaling: TargetScaling
    public var loss: PredictorLoss
    /// rank loss: the target distribution per layer is softmax(temperature × scaled scores).
    public var rankTemperature: Float

    public init(kind: PredictorKind = .shadow, headWidth: Int = 2048, neuronWidth: Int = 1024, rank: Int? = nil,
                targetScaling: TargetScaling = .perLayer, loss: PredictorLoss = .mse, rankTemperature: Float = 10) {
        self.kind = kind
        self.headWidth = headWidth
        self.neuronWidth = neuronWidth
        self.rank = rank
        self.targetScaling = targetScaling
        self.loss = loss
        self.rankTemperature = rankTemperature
    }

    public func validate() throws {
        guard headWidth > 0 else { throw ShadowError.invalidArgument(name: "--head-width", reason: "must be positive, got \(headWidth)") }
        guard neuronWidth > 0 else { throw ShadowError.invalidArgument(name: "--neuron-width", reason: "must be positive, got \(neuronWidth)") }
        if let rank, rank <= 0 { throw ShadowError.invalidArgument(name: "--rank", reason: "must be positive, got \(rank)") }
        guard rankTemperature > 0, rankTemperature.isFinite else {
            throw ShadowError.invalidArgument(name: "--rank-temperature", reason: "must be positive, got \(rankTemperature)")
        }
    }
}

/// A trained (or freshly initialised) predictor of per-input head and neuron importance.
///
/// shadow: `predict(x:)` maps A⁰ of one token (H·d_h values) to L × H head scores and L × F
/// neuron scores. dejavu kinds: `predictLayer(_:input:)` maps one residual vector (d values) to
/// layer l's H head and F neuron scores. Inputs are min–max scaled inside, as in training.
public final class Predictor: @unchecked Sendable {
    public let configuration: PredictorConfiguration
    public let criterion: String
    /// The model the predictor was trained for (from the traces' manifest).
    public let model: ModelFingerprint
    /// False for heads-only criteria (jacov, epenas): the neuron scores are then empty.
    public let predictsNeurons: Bool
    /// shadow: one network at index 0. dejavu kinds: the network of layer l at index l (l ≥ 1).
    let headNetworks: [MLP?]
    let neuronNetworks: [MLP?]
    /// Where the predictor was loaded from or saved to (names it in errors).
    public internal(set) var path: String?
    public internal(set) var training: TrainingSummary?
    public internal(set) var quality: PredictorQualityReport?
    /// `PredictorDataset.sampleDigest` of each sample it trained on, so its quality measured on
    /// other traces leaves those out (nil for files written before 2026-12-07).
    public internal(set) var trainingSampleDigests: Set<String>?
    /// How its file stores the weights: `.f32`, or `.f16` (half the size; the weights in memory
    /// are then the rounded ones, so a saved and reloaded predictor predicts exactly the same).
    public internal(set) var weightDType: TensorDType = .f32

    public var kind: PredictorKind { configuration.kind }
    public var shape: TransformerShape { model.shape }
    /// Values one prediction reads: H·d_h for shadow, d for the dejavu kinds.
    public var inputWidth: Int { kind == .shadow ? shape.attentionWidth : shape.hiddenSize }

    /// Fresh networks initialised from `seed` (training starts here), or unset with nil (loading
    /// writes every parameter).
    public init(configuration: PredictorConfiguration, criterion: String, model: ModelFingerprint,
                predictsNeurons: Bool = true, seed: UInt64? = 0) throws {
        try configuration.validate()
        let s = model.shape
        guard s.layers >= 2 else {
            throw ShadowError.invalidArgument(name: "--traces", reason: "a predictor needs a model of at least 2 layers (layer 0 always runs dense)")
        }
        self.configuration = configuration
        self.criterion = criterion
        self.model = model
        self.predictsNeurons = predictsNeurons
        func seedFor(_ index: Int) -> UInt64? { seed.map { $0 &* 0x9E37_79B9 &+ UInt64(index) &* 0x1000_0001 } }
        let layers = Self.networkLayers(configuration: configuration, shape: s, predictsNeurons: predictsNeurons)
        // Seeds by position: shadow's networks (index 0) 0 and 1, layer l's 2l and 2l + 1.
        headNetworks = layers.heads.enumerated().map { l, layers in layers.map { MLP(layers: $0, seed: seedFor(2 * l)) } }
        neuronNetworks = layers.neurons.enumerated().map { l, layers in layers.map { MLP(layers: $0, seed: seedFor(2 * l + 1)) } }
    }

    /// The layers of every network a predictor of `configuration` has, in `headNetworks` /
    /// `neuronNetworks` order (nil where there is none), before any is allocated.
    static func networkLayers(configuration: PredictorConfiguration, shape s: TransformerShape,
                              predictsNeurons: Bool) -> (heads: [[DenseLayerShape]?], neurons: [[DenseLayerShape]?]) {
        if configuration.kind == .shadow {
            return ([MLP.layers(inputs: s.attentionWidth, hidden: [configuration.headWidth], outputs: s.layers * s.heads)],
                    [predictsNeurons ? MLP.layers(inputs: s.attentionWidth, hidden: [configuration.neuronWidth],
                                                  rank: configuration.rank, outputs: s.layers * s.ffnSize) : nil])
        }
        return ((0..<s.layers).map { l in
                    l == 0 ? nil : MLP.layers(inputs: s.hiddenSize, hidden: [configuration.headWidth], outputs: s.heads)
                },
                (0..<s.layers).map { l in
                    l == 0 || !predictsNeurons ? nil
                        : MLP.layers(inputs: s.hiddenSize, hidden: [configuration.neuronWidth], rank: configuration.rank, outputs: s.ffnSize)
                })
    }

    /// Bytes training a predictor of `configuration` holds at once, roughly: every network's
    /// parameters, plus gradients and AdamW's two moments of the network in training, plus its
    /// activations and their gradients for a batch of `batch`. (The traces are not counted.)
    public static func trainingBytes(configuration: PredictorConfiguration, shape: TransformerShape, predictsNeurons: Bool,
                                     batch: Int) -> (bytes: Double, largestIsNeurons: Bool) {
        let layers = networkLayers(configuration: configuration, shape: shape, predictsNeurons: predictsNeurons)
        func parameters(_ network: [DenseLayerShape]) -> Double { network.reduce(0) { $0 + Double($1.parameterCount) } }
        func activations(_ network: [DenseLayerShape]) -> Double {
            network.reduce(Double(network[0].inputs)) { $0 + 2 * Double($1.outputs) } * Double(batch)
        }
        let networks = (layers.heads.compactMap { $0 }.map { ($0, false) }) + (layers.neurons.compactMap { $0 }.map { ($0, true) })
        let all = networks.reduce(0) { $0 + parameters($1.0) }
        let largest = networks.max { 3 * parameters($0.0) + activations($0.0) < 3 * parameters($1.0) + activations($1.0) }
        let inTraining = largest.map { 3 * parameters($0.0) + activations($0.0) } ?? 0
        return (4 * (all + inTraining), largest?.1 ?? false)
    }

    // MARK: Prediction (one vector, GEMV)

    /// shadow: scores of every layer from A⁰ at one token, x: (H·d_h). Returns L rows of H head
    /// scores and L rows of F neuron scores (no rows for heads-only criteria); higher is more
    /// important. Layer 0's rows are trained like the others but masks never use them.
    public func predict(x: UnsafePointer<Float>) -> (heads: [[Float]], neurons: [[Float]]) {
        precondition(kind == .shadow, "predict(x:) is the shadow predictor's; use predictLayer(_:input:)")
        let s = shape
        let scaled = scaledInput(x)
        let heads = headNetworks[0]!.forward(scaled)
        let neurons = neuronNetworks[0]?.forward(scaled) ?? []
        return ((0..<s.layers).map { Array(heads[$0 * s.heads..<($0 + 1) * s.heads]) },
                neurons.isEmpty ? [] : (0..<s.layers).map { Array(neurons[$0 * s.ffnSize..<($0 + 1) * s.ffnSize]) })
    }

    /// dejavu kinds: layer `layer`'s (≥ 1) H head and F neuron scores (no neuron scores for
    /// heads-only criteria) from one residual vector `input` (d): the residual entering layer
    /// `layer`, or for dejavu-lookahead the one entering layer `layer` − 1.
    public func predictLayer(_ layer: Int, input: UnsafePointer<Float>) -> (heads: [Float], neurons: [Float]) {
        precondition(kind.isPerLayer, "predictLayer is the dejavu predictors'; use predict(x:)")
        precondition(layer >= 1 && layer < shape.layers, "layer \(layer) has no predictor (layers 1…\(shape.layers - 1))")
        let scaled = scaledInput(input)
        return (headNetworks[layer]!.forward(scaled), neuronNetworks[layer]?.forward(scaled) ?? [])
    }

    /// Before predicting in decode: a predictor stored as f16 reads fp16 copies of its weights
    /// (the same values in half the bytes; a DejaVu-style predictor reads them all every token).
    /// Costs the copies' memory beside the fp32 weights, which training, saving and batch
    /// forwards read — unless `releasingFullPrecision`, for a predictor that will only predict
    /// from now on (the CLI's inference commands): each network's fp32 weights then go as soon as
    /// its copies are made, so they are never all held twice (SmolLM2's DejaVu-style predictor:
    /// 390 MB given back), and training, a batch forward or quality measurement afterwards stops
    /// the program (`weightsReleased` tells; saving throws).
    /// A network with a value fp16 cannot hold keeps reading, and holding, its fp32 weights.
    public func prepareForPrediction(releasingFullPrecision: Bool = false) {
        guard weightDType == .f16 else { return }
        for (_, network) in networks { network.prepareForPrediction(releasingFullPrecision: releasingFullPrecision) }
    }

    var readsHalfWeights: Bool { networks.allSatisfy { $0.network.readsHalfWeights } }

    /// Some network gave back its fp32 weights (`prepareForPrediction(releasingFullPrecision:
    /// true)`, or loaded `forPredictionOnly`): it can predict one vector at a time, and nothing else.
    public var weightsReleased: Bool { networks.contains { $0.network.weightsReleased } }

    private func scaledInput(_ x: UnsafePointer<Float>) -> [Float] {
        let n = inputWidth
        return [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            MinMax.scale(buffer.baseAddress!, x, count: n)
            initialized = n
        }
    }

    /// Rounds every weight and bias to fp16 (nearest even) in place and stores them so from now on
    /// (`train-predictor --dtype f16`). Throws, changing nothing, when a value would not fit fp16
    /// or the fp32 weights were given back.
    public func roundWeightsToHalf() throws {
        guard !weightsReleased else {
            throw ShadowError.invalidArgument(name: path ?? "predictor", reason: "gave back its fp32 weights for prediction only; load it again without forPredictionOnly to round them")
        }
        // Checked first, so a value past fp16's range leaves every network as it was.
        for (name, network) in networks {
            // 65520 and beyond round to infinity (nearest even past 65504, the largest fp16).
            let fits = UnsafeBufferPointer(start: network.parameters.pointer, count: network.parameterCount).allSatisfy { abs($0) < 65520 }
            guard fits else {
                throw ShadowError.failed("\(name): a parameter is beyond fp16's range (±65504); store the predictor as f32 (--dtype f32)")
            }
        }
        for (_, network) in networks {
            let count = network.parameterCount
            var half = [UInt16](repeating: 0, count: count)
            HalfVectors.narrow(&half, network.parameters.pointer, count: count)
            HalfVectors.widen(network.parameters.pointer, half, count: count)
        }
        weightDType = .f16
    }

    // MARK: Size and cost

    var networks: [(name: String, network: MLP)] {
        var result: [(String, MLP)] = []
        for (l, net) in headNetworks.enumerated() { if let net { result.append((Self.tensorPrefix(kind, layer: l, part: "heads"), net)) } }
        for (l, net) in neuronNetworks.enumerated() { if let net { result.append((Self.tensorPrefix(kind, layer: l, part: "neurons"), net)) } }
        return result
    }

    /// Tensor-name prefix of a network: `heads` / `neurons` for shadow, `layers.L.heads` /
    /// `layers.L.neurons` for the dejavu kinds.
    static func tensorPrefix(_ kind: PredictorKind, layer: Int, part: String) -> String {
        kind == .shadow ? part : "layers.\(layer).\(part)"
    }

    public var headParameters: Int { headNetworks.reduce(0) { $0 + ($1?.parameterCount ?? 0) } }
    public var neuronParameters: Int { neuronNetworks.reduce(0) { $0 + ($1?.parameterCount ?? 0) } }
    public var parameterCount: Int { headParameters + neuronParameters }

    /// FLOPs (a multiply–add is two) to score every layer once: one forward of the shadow
    /// networks, or one forward of every layer's dejavu networks (the per-token cost when
    /// masks are re-predicted every token).
    public var headFLOPs: Int { headNetworks.reduce(0) { $0 + ($1?.flops ?? 0) } }
    public var neuronFLOPs: Int { neuronNetworks.reduce(0) { $0 + ($1?.flops ?? 0) } }
    public var flopsPerPrediction: Int { headFLOPs + neuronFLOPs }
    /// Bytes of weights one prediction reads (fp16 copies count 2 bytes a weight once
    /// `prepareForPrediction` made them; biases stay fp32).
    public var bytesPerPrediction: Int { networks.reduce(0) { $0 + $1.network.bytesReadPerForward } }
}
