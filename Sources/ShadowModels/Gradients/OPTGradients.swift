import Foundation
import ShadowKernels

// The OPT gradient pass. Per block, with LN₁ = self_attn_layer_norm and LN₂ = final_layer_norm:
//
//   pre-LN  (most sizes):  mid = x + A W_O + b_O,        A from LN₁(x)
//                          out = mid + N W_fc2 + b_fc2,  N = ReLU(Z), Z = LN₂(mid) W_fc1ᵀ + b_fc1
//   post-LN (OPT-350m):    mid = LN₁(x + A W_O + b_O),   A from x
//                          out = LN₂(mid + N W_fc2 + b_fc2), Z = mid W_fc1ᵀ + b_fc1
//
// Models whose embedding is narrower than the stream add project_in after the embedding and
// project_out before the LM head; pre-LN models have a final LayerNorm before project_out.

/// What the backward of one OPT block reads from its forward.
private final class OPTSaved: SavedBlock {
    let input: Matrix    // (T, d) residual stream entering the block
    let mean1: Matrix    // (T) LN₁ statistics (of x for pre-LN, of the attention sum for post-LN)
    let rstd1: Matrix    // (T)
    let sum1: Matrix?    // (T, d) post-LN only: x + A W_O + b_O, the input of LN₁
    let q: Matrix        // (T, H·d_h)
    let k: Matrix        // (T, H·d_h)
    let v: Matrix        // (T, H·d_h)
    let a: Matrix        // (T, H·d_h) A
    let mid: Matrix      // (T, d) stream between attention and MLP
    let mean2: Matrix    // (T) LN₂ statistics
    let rstd2: Matrix    // (T)
    let mlpInput: Matrix // (T, d) input of fc1: LN₂(mid) for pre-LN, mid itself for post-LN
    let sum2: Matrix?    // (T, d) post-LN only: mid + N W_fc2 + b_fc2, the input of LN₂
    let z: Matrix        // (T, F) Z
    let n: Matrix        // (T, F) N

    init(tokens T: Int, shape s: TransformerShape, postLN: Bool) {
        let d = s.hiddenSize
        input = Matrix(rows: T, cols: d)
        mean1 = Matrix(rows: T, cols: 1)
        rstd1 = Matrix(rows: T, cols: 1)
        sum1 = postLN ? Matrix(rows: T, cols: d) : nil
        q = Matrix(rows: T, cols: s.attentionWidth)
        k = Matrix(rows: T, cols: s.kvWidth)
        v = Matrix(rows: T, cols: s.kvWidth)
        a = Matrix(rows: T, cols: s.attentionWidth)
        mid = Matrix(rows: T, cols: d)
        mean2 = Matrix(rows: T, cols: 1)
        rstd2 = Matrix(rows: T, cols: 1)
        mlpInput = postLN ? mid : Matrix(rows: T, cols: d)
        sum2 = postLN ? Matrix(rows: T, cols: d) : nil
        z = Matrix(rows: T, cols: s.ffnSize)
        n = Matrix(rows: T, cols: s.ffnSize)
    }

    /// The floats per token `init` allocates.
    static func size(shape s: TransformerShape, postLN: Bool) -> Int {
        (postLN ? 4 : 3) * s.hiddenSize + 2 * s.attentionWidth + 2 * s.kvWidth + 2 * s.ffnSize + 4
    }
}

extension OPTModel: DifferentiableLanguageModel {
    /// Its MLP's ReLU.
    public var hasKinks: Bool { true }

    public func lossAndGradients(tokens: [Int], predictFrom: Int, options: GradientOptions,
                                 visit: (_ layer: Int, LayerGradients) throws -> Void) throws -> GradientLoss {
        let s = shape
        try GradientPass.validate(tokens: tokens, predictFrom: predictFrom, shape: s)
        try GradientPass.validate(options.weightOffsets, shape: s)
        let T = tokens.count, d = s.hiddenSize, e = config.wordEmbedProjectionDim
        let eps = config.layerNormEps
        let pass = OPTGradientPass(model: self, tokens: T, options: options)
        let weights = pass.weights

        // Forward.
        let x = Matrix(rows: T, cols: d)     // (T, d) residual stream
        if let projectIn {
            let embedded = Matrix(rows: T, cols: e)   // (T, e)
            for (t, token) in tokens.enumerated() { embedding.widenRows(token..<token + 1, into: embedded.row(t)) }
            linearForward(x.pointer, embedded.pointer, weights(projectIn.weight, "project_in"), nil, rows: T, inputs: e, outputs: d)
        } else {
            for (t, token) in tokens.enumerated() { embedding.widenRows(token..<token + 1, into: x.row(t)) }
        }
        for t in 0..<T { Ops.add(x.row(t), positions.row(t + Self.positionOffset), count: d) }
        let xn = Matrix(rows: T, cols: d)    // (T, d) LN₁(x), input of q/k/v (pre-LN)
        var saved = try SavedLayers<OPTSaved>(options: options, shape: s, tokens: T,
                                              stateSize: OPTSaved.size(shape: s, postLN: !config.doLayerNormBefore),
                                              forward: { pass.forward(layer: $0, x: x, xn: xn) }, visit: visit)

        // Loss: the predicted rows through the final LayerNorm (pre-LN models) and project_out.
        let first = predictFrom - 1, predicted = T - predictFrom
        let normed = Matrix(rows: predicted, cols: d)     // (R, d)
        let meanFinal = Matrix(rows: predicted, cols: 1), rstdFinal = Matrix(rows: predicted, cols: 1)  // (R)
        if let w = finalNormWeight, let b = finalNormBias {
            layerNormForward(normed.pointer, meanFinal.pointer, rstdFinal.pointer, x.row(first), w, b,
                             rows: predicted, n: d, eps: eps)
        } else {
            normed.pointer.update(from: x.row(first), count: predicted * d)
        }
        var final = normed                                  // (R, e)
        if let projectOut {
            final = Matrix(rows: predicted, cols: e)
            linearForward(final.pointer, normed.pointer, weights(projectOut.weight, "project_out"), nil,
                          rows: predicted, inputs: d, outputs: e)
        }
        let dfinal = Matrix.zeros(predicted, e, if: !options.activationsOnly)
        let loss = GradientPass.lossHead(dfinal?.pointer, final.pointer, head: lmHead,
                                         targets: Array(tokens[predictFrom...]), weights: weights)
        let result = GradientLoss(loss: loss, predictedTokens: predicted, tokens: T)
        guard let dfinal else { return result }

        // Backward.
        var dnormed = dfinal                                // (R, d)
        if let projectOut {
            dnormed = Matrix(rows: predicted, cols: d)
            linearBackward(dnormed.pointer, nil, nil, dfinal.pointer, nil, weights(projectOut.weight, "project_out"),
                           rows: predicted, inputs: d, outputs: e)
        }
        let dx = Matrix(rows: T, cols: d)                   // (T, d) dL/d(residual stream)
        if let w = finalNormWeight {
            layerNormBackward(dx.row(first), nil, nil, dnormed.pointer, x.row(first), w, meanFinal.pointer,
                              rstdFinal.pointer, rows: predicted, n: d)
        } else {
            Ops.add(dx.row(first), dnormed.pointer, count: predicted * d)
        }
        let scratch = OPTBackwardScratch(tokens: T, shape: s)
        for l in stride(from: s.layers - 1, through: 0, by: -1) {
            let st = saved.take(layer: l) { pass.forward(layer: l, x: $0, xn: xn) }
            try visit(l, pass.backward(layer: l, saved: st, dx: dx, scratch: scratch))
        }
        return result
    }

    public func projectionWeights(layer: Int, projections: ProjectionSet) -> ProjectionWeights {
        let block = blocks[layer]
        return ProjectionWeights(outputProjection: block.output.weightT.floatArray(if: projections.contains(.output)),
                                 downProjection: block.fc2.weightT.floatArray(if: projections.contains(.down)),
                                 firstProjection: block.fc1.weight.floatArray(if: projections.contains(.first)),
                                 upProjection: nil)
    }
}

/// One gradient pass over T tokens: what every block's forward and backward share.
private struct OPTGradientPass {
    let model: OPTModel
    let tokens: Int
    let options: GradientOptions
    /// The projections whose weight gradients are computed (none for activations only).
    let wanted: ProjectionSet
    let weights = WeightViews()
    /// (T, T): one head's attention probabilities at a time, forward and backward (recomputed there).
    let probs: Matrix

    init(model: OPTModel, tokens T: Int, options: GradientOptions) {
        self.model = model
        self.tokens = T
        self.options = options
        wanted = options.activationsOnly ? [] : options.weightGradients
        probs = Matrix(rows: T, cols: T)
    }

    /// Block l's forward: x (T, d) becomes the block's output, and what the backward reads is
    /// returned. `xn` is scratch (pre-LN: LN₁(x)).
    func forward(layer l: Int, x: Matrix, xn: Matrix) -> OPTSaved {
        let s = model.shape, config = model.config, block = model.blocks[l]
        let T = tokens, d = s.hiddenSize, F = s.ffnSize
        let H = s.heads, dh = s.headDim, aw = s.attentionWidth
        let scale = config.attentionScale, postLN = !config.doLayerNormBefore
        let offsets = options.weightOffsets
        let eps = config.layerNormEps
        let st = OPTSaved(tokens: T, shape: s, postLN: postLN)
        st.input.pointer.update(from: x.pointer, count: T * d)
        let attentionInput: FloatInput
        if postLN {
            attentionInput = UnsafePointer(x.pointer)
        } else {
            layerNormForward(xn.pointer, st.mean1.pointer, st.rstd1.pointer, x.pointer, block.attentionNormWeight,
                             block.attentionNormBias, rows: T, n: d, eps: eps)
            attentionInput = UnsafePointer(xn.pointer)
        }
        withOptional(block.q.bias) {
            linearForward(st.q.pointer, attentionInput, weights(block.q.weight, "q"), $0, rows: T, inputs: d, outputs: aw)
        }
        withOptional(block.k.bias) {
            linearForward(st.k.pointer, attentionInput, weights(block.k.weight, "k"), $0, rows: T, inputs: d, outputs: aw)
        }
        withOptional(block.v.bias) {
            linearForward(st.v.pointer, attentionInput, weights(block.v.weight, "v"), $0, rows: T, inputs: d, outputs: aw)
        }
        attentionForward(st.a.pointer, probs.pointer, st.q.pointer, st.k.pointer, st.v.pointer,
                         rows: T, heads: H, kvHeads: H, headDim: dh, scale: scale)
        GradientPass.applyShift(options.shift, .attention, layer: l, st.a.pointer, count: T * aw)
        withOptional(block.output.bias) {
            linearForward(x.pointer, st.a.pointer,
                          weights(block.output.weightT, "o", offset: offsets?.outputProjection[l]), $0,
                          rows: T, inputs: aw, outputs: d, layout: .transposed, accumulate: true)
        }
        if let sum1 = st.sum1 {
            sum1.pointer.update(from: x.pointer, count: T * d)
            layerNormForward(x.pointer, st.mean1.pointer, st.rstd1.pointer, sum1.pointer, block.attentionNormWeight,
                             block.attentionNormBias, rows: T, n: d, eps: eps)
        }
        st.mid.pointer.update(from: x.pointer, count: T * d)
        if !postLN {
            layerNormForward(st.mlpInput.pointer, st.mean2.pointer, st.rstd2.pointer, x.pointer, block.mlpNormWeight,
                             block.mlpNormBias, rows: T, n: d, eps: eps)
        }
        withOptional(block.fc1.bias) {
            linearForward(st.z.pointer, st.mlpInput.pointer, weights(block.fc1.weight, "fc1"), $0, rows: T, inputs: d, outputs: F)
        }
        reluForward(st.n.pointer, st.z.pointer, count: T * F)
        GradientPass.applyShift(options.shift, .hidden, layer: l, st.n.pointer, count: T * F)
        withOptional(block.fc2.bias) {
            linearForward(x.pointer, st.n.pointer,
                          weights(block.fc2.weightT, "fc2", offset: offsets?.downProjection[l]), $0,
                          rows: T, inputs: F, outputs: d, layout: .transposed, accumulate: true)
        }
        if let sum2 = st.sum2 {
            sum2.pointer.update(from: x.pointer, count: T * d)
            layerNormForward(x.pointer, st.mean2.pointer, st.rstd2.pointer, sum2.pointer, block.mlpNormWeight,
                             block.mlpNormBias, rows: T, n: d, eps: eps)
        }
        return st
    }

    /// Block l's backward: `dx` holds dL/d(the block's output) and becomes dL/d(its input),
    /// except in layer 0, where nothing below reads it (the embeddings get no gradient).
    func backward(layer l: Int, saved st: OPTSaved, dx: Matrix, scratch: OPTBackwardScratch) -> LayerGradients {
        let s = model.shape, config = model.config, block = model.blocks[l]
        let T = tokens, d = s.hiddenSize, F = s.ffnSize
        let H = s.heads, dh = s.headDim, aw = s.attentionWidth
        let scale = config.attentionScale, postLN = !config.doLayerNormBefore
        let offsets = options.weightOffsets
        let dsum = scratch.dsum, dn = scratch.dn, dz = scratch.dz, dxn = scratch.dxn
        let dq = scratch.dq, dk = scratch.dk, dv = scratch.dv

        // MLP. Afterwards dx holds dL/dmid.
        if let sum2 = st.sum2 {
            dsum.zero()
            layerNormBackward(dsum.pointer, nil, nil, dx.pointer, sum2.pointer, block.mlpNormWeight, st.mean2.pointer,
                              st.rstd2.pointer, rows: T, n: d)
            dx.pointer.update(from: dsum.pointer, count: T * d)
        }
        dn.zero()
        let downGrad = projectionBackward(dn.pointer, dx.pointer, input: st.n.pointer,
                                          weight: weights(block.fc2.weightT, "fc2", offset: offsets?.downProjection[l]),
                                          rows: T, inputs: F, outputs: d, layout: .transposed,
                                          weightGradient: wanted.contains(.down))
        dz.zero()
        reluBackward(dz.pointer, dn.pointer, st.z.pointer, count: T * F)
        dxn.zero()
        let firstGrad = projectionBackward(dxn.pointer, dz.pointer, input: st.mlpInput.pointer, weight: weights(block.fc1.weight, "fc1"),
                                           rows: T, inputs: d, outputs: F, weightGradient: wanted.contains(.first))
        if postLN {
            Ops.add(dx.pointer, dxn.pointer, count: T * d)
        } else {
            layerNormBackward(dx.pointer, nil, nil, dxn.pointer, st.mid.pointer, block.mlpNormWeight, st.mean2.pointer,
                              st.rstd2.pointer, rows: T, n: d)
        }

        // Attention. Afterwards dx holds dL/d(block input).
        if let sum1 = st.sum1 {
            dsum.zero()
            layerNormBackward(dsum.pointer, nil, nil, dx.pointer, sum1.pointer, block.attentionNormWeight,
                              st.mean1.pointer, st.rstd1.pointer, rows: T, n: d)
            dx.pointer.update(from: dsum.pointer, count: T * d)
        }
        let ga = Matrix(rows: T, cols: aw)   // (T, H·d_h) G = dL/dA
        let outputGrad = projectionBackward(ga.pointer, dx.pointer, input: st.a.pointer,
                                            weight: weights(block.output.weightT, "o", offset: offsets?.outputProjection[l]),
                                            rows: T, inputs: aw, outputs: d, layout: .transposed,
                                            weightGradient: wanted.contains(.output))
        let gradients = LayerGradients(
            layerInput: st.input.array, attention: st.a.array, attentionGrad: ga.array,
            hidden: st.n.array, hiddenGrad: dn.array, preActivation: st.z.array,
            outputProjectionGrad: outputGrad, downProjectionGrad: downGrad,
            firstProjectionGrad: firstGrad, upProjectionGrad: nil)
        if l == 0 { return gradients }

        dq.zero(); dk.zero(); dv.zero()
        attentionBackward(dq.pointer, dk.pointer, dv.pointer, ga.pointer, probs.pointer, st.q.pointer, st.k.pointer,
                          st.v.pointer, rows: T, heads: H, kvHeads: H, headDim: dh, scale: scale)
        dxn.zero()
        linearBackward(dxn.pointer, nil, nil, dq.pointer, nil, weights(block.q.weight, "q"), rows: T, inputs: d, outputs: aw)
        linearBackward(dxn.pointer, nil, nil, dk.pointer, nil, weights(block.k.weight, "k"), rows: T, inputs: d, outputs: aw)
        linearBackward(dxn.pointer, nil, nil, dv.pointer, nil, weights(block.v.weight, "v"), rows: T, inputs: d, outputs: aw)
        if postLN {
            Ops.add(dx.pointer, dxn.pointer, count: T * d)
        } else {
            layerNormBackward(dx.pointer, nil, nil, dxn.pointer, st.input.pointer, block.attentionNormWeight,
                              st.mean1.pointer, st.rstd1.pointer, rows: T, n: d)
        }
        return gradients
    }
}

/// The backward's scratch, shared by every block (nothing in it outlives a block's backward).
private final class OPTBackwardScratch {
    let dsum: Matrix                         // (T, d) gradient at a post-LN sum
    let dn: Matrix, dz: Matrix               // (T, F)
    let dxn: Matrix                          // (T, d)
    let dq: Matrix, dk: Matrix, dv: Matrix   // (T, H·d_h)

    init(tokens T: Int, shape s: TransformerShape) {
        dsum = Matrix(rows: T, cols: s.hiddenSize)
        dn = Matrix(rows: T, cols: s.ffnSize); dz = Matrix(rows: T, cols: s.ffnSize)
        dxn = Matrix(rows: T, cols: s.hiddenSize)
        dq = Matrix(rows: T, cols: s.attentionWidth); dk = Matrix(rows: T, cols: s.attentionWidth); dv = Matrix(rows: T, cols: s.attentionWidth)
    }
}
