import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels

/// Records, during one dense forward pass, every layer's residual input and per-head attention
/// output at one token position.
final class ActivationCapture: SparsityController {
    let execution = SparseExecution.skip
    let keepsAllKeysAndValues = false
    let shape: TransformerShape
    let position: Int
    private(set) var inputs: [Float]        // (L, d)
    private(set) var attention: [Float]     // (L, H·d_h)

    init(shape: TransformerShape, position: Int) {
        self.shape = shape
        self.position = position
        inputs = [Float](repeating: 0, count: shape.layers * shape.hiddenSize)
        attention = [Float](repeating: 0, count: shape.layers * shape.attentionWidth)
    }

    func observe(layer: Int, input: UnsafePointer<Float>, attention a: UnsafePointer<Float>, tokens: Int, position start: Int) {
        let t = position - start
        guard t >= 0, t < tokens else { return }
        let d = shape.hiddenSize, w = shape.attentionWidth
        for i in 0..<d { inputs[layer * d + i] = input[t * d + i] }
        for i in 0..<w { attention[layer * w + i] = a[t * w + i] }
    }

    func plan(layer: Int, input: UnsafePointer<Float>, tokens: Int, position: Int) -> LayerPlan { .dense }
}

/// Calibration: per sample, the importance of every head and neuron under each criterion plus the
/// predictor inputs, streamed to a trace directory (DESIGN §3).
public struct Calibrator {
    public var model: any DifferentiableLanguageModel
    public var criteria: [Criterion]
    public var predictorToken: PredictorToken

    public init(model: any DifferentiableLanguageModel, criteria: [Criterion], predictorToken: PredictorToken) {
        self.model = model
        self.criteria = criteria
        self.predictorToken = predictorToken
    }

    /// The trace record of one sample.
    public func record(_ sample: CalibrationSample) throws -> TraceRecord {
        guard !criteria.isEmpty else {
            throw ShadowError.invalidArgument(name: "--criteria", reason: "none given: a trace holds at least one criterion's scores")
        }
        let shape = model.shape
        let position = predictorToken.position(in: sample)
        // With fp32 weights the gradient pass holds the predictor's inputs already (the same
        // products, summed in another order); 16-bit weights round activations in inference (an
        // fp16 KV cache, bf16 inputs for bf16-dot) and not in gradients, so there a dense forward
        // pass over the tokens up to the predictor token records them (a third more work).
        let fromPass = model.weightDType == .f32
        let (d, w) = (shape.hiddenSize, shape.attentionWidth)
        var passInputs = [Float](repeating: 0, count: fromPass ? shape.layers * d : 0)
        var passAttention = [Float](repeating: 0, count: fromPass ? shape.layers * w : 0)
        let scores = try Importance.scores(model: model, tokens: sample.tokens, predictFrom: sample.predictFrom,
                                           criteria: criteria) { l, layer in
            guard fromPass else { return }
            passInputs.replaceSubrange(l * d..<(l + 1) * d, with: layer.layerInput[position * d..<(position + 1) * d])
            passAttention.replaceSubrange(l * w..<(l + 1) * w, with: layer.attention[position * w..<(position + 1) * w])
        }
        let (layerInputs, attention) = fromPass ? (passInputs, passAttention)
                                                : predictorInputs(position: position, tokens: sample.tokens)
        var heads: [String: [Float]] = [:], neurons: [String: [Float]] = [:]
        var loss: Float = 0
        for criterion in criteria {
            guard let s = scores[criterion] else { continue }
            heads[criterion.rawValue] = s.heads.flatMap { $0 }
            if let n = s.neurons { neurons[criterion.rawValue] = n.flatMap { $0 } }
            loss = Float(s.loss)
        }
        return TraceRecord(index: sample.index, loss: loss, x: Array(attention[0..<shape.attentionWidth]),
                           attention: attention, layerInputs: layerInputs, heads: heads, neurons: neurons,
                           pooledVectors: scores[.jacov]?.pooledVectors ?? [])
    }

    /// Throws unless `manifest` describes this calibration: traces of another model's sizes, other
    /// criteria, predictor token or weights would be written under its labels.
    func check(_ manifest: TraceManifest) throws {
        var differences: [String] = []
        if manifest.model.shape != model.shape {
            differences.append("a model of \(manifest.model.shape.describedSizes), not \(model.shape.describedSizes)")
        }
        let names = criteria.map(\.rawValue)
        if manifest.criteria != names {
            differences.append("criteria \(manifest.criteria.joined(separator: ",")), not \(names.joined(separator: ","))")
        }
        if manifest.predictorToken != predictorToken {
            differences.append("predictor token \(manifest.predictorToken.rawValue), not \(predictorToken.rawValue)")
        }
        if let weights = manifest.weights, weights != model.weightDType.rawValue {
            differences.append("weights \(weights), not \(model.weightDType.rawValue)")
        }
        guard differences.isEmpty else {
            throw ShadowError.invalidArgument(name: "writer", reason: "its traces are of another calibration than this calibrator's: " + differences.joined(separator: "; "))
        }
    }

    /// Every layer's input (L, d) and attention output (L, H·d_h) at the predictor token, as the
    /// engine computes them when it runs the predictor: a dense forward pass over the tokens up to it.
    func predictorInputs(position: Int, tokens: [Int]) -> (layerInputs: [Float], attention: [Float]) {
        let capture = ActivationCapture(shape: model.shape, position: position)
        // Only the tokens up to the predictor token matter for its activations (causal model).
        _ = model.forward(Array(tokens[...position]), cache: model.makeCache(capacity: position + 1),
                          logits: .none, sparsity: capture)
        return (capture.inputs, capture.attention)
    }

    /// Computes every sample of this shard that the writer does not hold yet, in index order.
    /// `progress(done, total)` is called after each sample.
    public func run(samples: [CalibrationSample], writer: TraceWriter,
                    progress: (Int, Int) -> Void = { _, _ in }) throws {
        try check(writer.manifest)
        let shard = writer.manifest
        let mine = samples.filter { $0.index % shard.shardCount == shard.shardIndex }
        let done = writer.completedIndices
        let todo = mine.filter { !done.contains($0.index) }
        var finished = mine.count - todo.count
        progress(finished, mine.count)
        for sample in todo {
            if Interruption.requested {
                // Keep the finished samples: a short chunk is as valid as a full one.
                try writer.flush()
                let of = shard.shardCount > 1 ? "shard \(shard.shardIndex)/\(shard.shardCount)'s \(mine.count)" : "\(mine.count)"
                throw ShadowError.interrupted("\(writer.manifest.sampleCount) of \(of) samples saved in \(writer.directory); continue with --resume")
            }
            try writer.append(try record(sample))
            finished += 1
            progress(finished, mine.count)
        }
        try writer.finish()
    }
}
