import Foundation
import ShadowKernels

// The Llama gradient pass: a forward over the whole sequence that keeps what the backward reads,
// the loss on the predicted tokens, then the backward from the loss down to layer 0's attention
// output. Per block (residual stream x, DESIGN §2 notation):
//
//   mid = x + A W_O,        A = attention(RoPE(rms₁(x) W_qᵀ), RoPE(rms₁(x) W_kᵀ), rms₁(x) W_vᵀ)
//   out = mid + N W_down,   N = silu(Z) ⊙ (rms₂(mid) W_upᵀ),  Z = rms₂(mid) W_gateᵀ
//
// Qwen3 puts a per-head RMSNorm between each projection and RoPE: RoPE(rms_q(rms₁(x) W_qᵀ)).
// Gemma also normalises both outputs before the adds (mid = x + rms_a(A W_O), out = mid +
// rms_m(N W_down)), and gates with GELU's tanh approximation instead of SiLU.
//
// W_O and W_down are stored transposed, (H·d_h, d) and (F, d), and their gradients come out the
// same way.

/// What the backward of one Llama block reads from its forward.
private final class LlamaSaved: SavedBlock {
    let input: Matrix    // (T, d) residual stream entering the block
    let rstd1: Matrix    // (T)
    let q: Matrix        // (T, H·d_h) after RoPE
    let k: Matrix        // (T, G·d_h) after RoPE
    let v: Matrix        // (T, G·d_h)
    let a: Matrix        // (T, H·d_h) A
    let mid: Matrix      // (T, d) residual stream after attention
    let rstd2: Matrix    // (T)
    let xn2: Matrix      // (T, d) rms₂(mid), read by the gate/up weight gradients (else shared scratch)
    let z: Matrix        // (T, F) gate pre-activation Z
    let u: Matrix        // (T, F) up projection
    let n: Matrix        // (T, F) N
    /// Qwen3: q and k before their per-head norms, and the norms' 1/rms per (token, head).
    let qIn: Matrix?, kIn: Matrix?      // (T, H·d_h), (T, G·d_h)
    let qRstd: Matrix?, kRstd: Matrix?  // (T·H), (T·G)
    /// Gemma: A W_O and N W_down before their norms, and the norms' 1/rms per token.
    let attentionOut: Matrix?, mlpOut: Matrix?        // (T, d)
    let attentionOutRstd: Matrix?, mlpOutRstd: Matrix?  // (T)

    init(tokens T: Int, shape s: TransformerShape, normedMLPInput: Matrix?, headNorms: Bool, outputNorms: Bool) {
        input = Matrix(rows: T, cols: s.hiddenSize)
        rstd1 = Matrix(rows: T, cols: 1)
        q = Matrix(rows: T, cols: s.attentionWidth)
        k = Matrix(rows: T, cols: s.kvWidth)
        v = Matrix(rows: T, cols: s.kvWidth)
        a = Matrix(rows: T, cols: s.attentionWidth)
        mid = Matrix(rows: T, cols: s.hiddenSize)
        rstd2 = Matrix(rows: T, cols: 1)
        xn2 = normedMLPInput ?? Matrix(rows: T, cols: s.hiddenSize)
        z = Matrix(rows: T, cols: s.ffnSize)
        u = Matrix(rows: T, cols: s.ffnSize)
        n = Matrix(rows: T, cols: s.ffnSize)
        qIn = headNorms ? Matrix(rows: T, cols: s.attentionWidth) : nil
        kIn = headNorms ? Matrix(rows: T, cols: s.kvWidth) : nil
        qRstd = headNorms ? Matrix(rows: T * s.heads, cols: 1) : nil
        kRstd = headNorms ? Matrix(rows: T * s.kvHeads, cols: 1) : nil
        attentionOut = outputNorms ? Matrix(rows: T, cols: s.hiddenSize) : nil
        mlpOut = outputNorms ? Matrix(rows: T, cols: s.hiddenSize) : nil
        attentionOutRstd = outputNorms ? Matrix(rows: T, cols: 1) : nil
        mlpOutRstd = outputNorms ? Matrix(rows: T, cols: 1) : nil
    }

    /// The floats per token `init` allocates.
    static func size(shape s: TransformerShape, ownsNormedMLPInput: Bool, headNorms: Bool, outputNorms: Bool) -> Int {
        let d = s.hiddenSize
        return (ownsNormedMLPInput ? 3 : 2) * d + 2 * s.attentionWidth + 2 * s.kvWidth + 3 * s.ffnSize + 2
            + (headNorms ? s.attentionWidth + s.kvWidth + s.heads + s.kvHeads : 0) + (outputNorms ? 2 * d + 2 : 0)
    }
}

extension LlamaModel: DifferentiableLanguageModel {
    /// SiLU (Llama, Qwen, Phi) and GELU (Gemma) gates are smooth.
    public var hasKinks: Bool { false }

    public func lossAndGradients(tokens: [Int], predictFrom: Int, options: GradientOptions,
                                 visit: (_ layer: Int, LayerGradients) throws -> Void) throws -> GradientLoss {
        let s = shape
        try GradientPass.validate(tokens: tokens, predictFrom: predictFrom, shape: s)
        try GradientPass.validate(options.weightOffsets, shape: s)
        let T = tokens.count, d = s.hiddenSize
        let pass = LlamaGradientPass(model: self, tokens: T, options: options)

        // Forward.
        let x = Matrix(rows: T, cols: d)            // (T, d) residual stream
        for (t, token) in tokens.enumerated() { embedding.widenRows(token..<token + 1, into: x.row(t)) }
        if let factor = config.embeddingScale { Ops.scale(x.pointer, by: factor, count: T * d) }
        let xn = Matrix(rows: T, cols: d)           // (T, d) rms₁(x), input of q/k/v
        let wanted = pass.wanted
        let sharedXn2 = wanted.contains(.first) || wanted.contains(.up) ? nil : Matrix(rows: T, cols: d)
        let stateSize = LlamaSaved.size(shape: s, ownsNormedMLPInput: sharedXn2 == nil, headNorms: blocks.first?.queryNorm != nil,
                                        outputNorms: blocks.first?.postAttentionNorm != nil)
        var saved = try SavedLayers<LlamaSaved>(options: options, shape: s, tokens: T, stateSize: stateSize,
                                                forward: { pass.forward(layer: $0, x: x, xn: xn, sharedXn2: sharedXn2) }, visit: visit)

        // Loss: row t of the final states predicts tokens[t + 1], for t = predictFrom − 1 ..< T − 1.
        let first = predictFrom - 1, predicted = T - predictFrom
        let final = Matrix(rows: predicted, cols: d)     // (R, d)
        let rstdFinal = Matrix(rows: predicted, cols: 1) // (R)
        rmsNormForward(final.pointer, rstdFinal.pointer, x.row(first), finalNorm, rows: predicted, n: d, eps: config.rmsNormEps)
        let dfinal = Matrix.zeros(predicted, d, if: !options.activationsOnly)
        let loss = GradientPass.lossHead(dfinal?.pointer, final.pointer, head: lmHead,
                                         targets: Array(tokens[predictFrom...]), weights: pass.weights, softcap: config.logitSoftcap)
        let result = GradientLoss(loss: loss, predictedTokens: predicted, tokens: T)
        guard let dfinal else { return result }

        // Backward.
        let dx = Matrix(rows: T, cols: d)        // (T, d) dL/d(residual stream)
        rmsNormBackward(dx.row(first), nil, dfinal.pointer, x.row(first), finalNorm, rstdFinal.pointer, rows: predicted, n: d)
        let scratch = LlamaBackwardScratch(tokens: T, shape: s)
        for l in stride(from: s.layers - 1, through: 0, by: -1) {
            let st = saved.take(layer: l) { pass.forward(layer: l, x: $0, xn: xn, sharedXn2: sharedXn2) }
            try visit(l, pass.backward(layer: l, saved: st, dx: dx, scratch: scratch))
        }
        return result
    }

    public func projectionWeights(layer: Int, projections: ProjectionSet) -> ProjectionWeights {
        let block = blocks[layer]
        return ProjectionWeights(outputProjection: block.output.weightT.floatArray(if: projections.contains(.output)),
                                 downProjection: block.down.weightT.floatArray(if: projections.contains(.down)),
                                 firstProjection: block.gate.weight.floatArray(if: projections.contains(.first)),
                                 upProjection: block.up.weight.floatArray(if: projections.contains(.up)))
    }
}

/// One gradient pass over T tokens: what every block's forward and backward share.
private struct LlamaGradientPass {
    let model: LlamaModel
    let tokens: Int
    let options: GradientOptions
    /// The projections whose weight gradients are computed (none for activations only).
    let wanted: ProjectionSet
    let weights = WeightViews()
    /// (T, T): one head's attention probabilities at a time, forward and backward (recomputed there).
    let probs: Matrix
    let rotary: RotaryTable
    let localRotary: RotaryTable?

    init(model: LlamaModel, tokens T: Int, options: GradientOptions) {
        self.model = model
        self.tokens = T
        self.options = options
        wanted = options.activationsOnly ? [] : options.weightGradients
        probs = Matrix(rows: T, cols: T)
        let config = model.config
        rotary = RotaryTable(positions: 0..<T, inverseFrequencies: model.inverseFrequencies, magnitude: config.rope.magnitude)
        localRotary = model.localInverseFrequencies.map {
            RotaryTable(positions: 0..<T, inverseFrequencies: $0, magnitude: config.localRope?.magnitude ?? 1)
        }
    }

    func rotaryTable(layer l: Int) -> RotaryTable { model.config.localRopeLayers?[l] == true ? localRotary ?? rotary : rotary }

    /// Block l's forward: x (T, d) becomes the block's output, and what the backward reads is
    /// returned. `xn` is scratch; `sharedXn2`, when given, holds rms₂(mid) for every block (no
    /// gate/up weight gradient reads it later).
    func forward(layer l: Int, x: Matrix, xn: Matrix, sharedXn2: Matrix?) -> LlamaSaved {
        let s = model.shape, config = model.config, block = model.blocks[l]
        let T = tokens, d = s.hiddenSize, F = s.ffnSize
        let H = s.heads, G = s.kvHeads, dh = s.headDim, aw = s.attentionWidth, kw = s.kvWidth
        let eps = config.rmsNormEps
        let offsets = options.weightOffsets
        let st = LlamaSaved(tokens: T, shape: s, normedMLPInput: sharedXn2, headNorms: block.queryNorm != nil,
                            outputNorms: block.postAttentionNorm != nil)
        // Adds a block's output to x, through Gemma's norm when it has one.
        func addOutput(_ out: Matrix?, _ rstd: Matrix?, norm: [Float]?) {
            guard let out, let rstd, let norm else { return }
            let normed = Matrix(rows: T, cols: d)
            rmsNormForward(normed.pointer, rstd.pointer, out.pointer, norm, rows: T, n: d, eps: eps)
            Ops.add(x.pointer, normed.pointer, count: T * d)
        }
        st.input.pointer.update(from: x.pointer, count: T * d)
        rmsNormForward(xn.pointer, st.rstd1.pointer, x.pointer, block.attentionNorm, rows: T, n: d, eps: eps)
        withOptional(block.q.bias) {
            linearForward(st.q.pointer, xn.pointer, weights(block.q.weight, "q"), $0, rows: T, inputs: d, outputs: aw)
        }
        withOptional(block.k.bias) {
            linearForward(st.k.pointer, xn.pointer, weights(block.k.weight, "k"), $0, rows: T, inputs: d, outputs: kw)
        }
        withOptional(block.v.bias) {
            linearForward(st.v.pointer, xn.pointer, weights(block.v.weight, "v"), $0, rows: T, inputs: d, outputs: kw)
        }
        if let qNorm = block.queryNorm, let kNorm = block.keyNorm, let qIn = st.qIn, let kIn = st.kIn {
            qIn.pointer.update(from: st.q.pointer, count: T * aw)
            kIn.pointer.update(from: st.k.pointer, count: T * kw)
            rmsNormForward(st.q.pointer, st.qRstd!.pointer, qIn.pointer, qNorm, rows: T * H, n: dh, eps: eps)
            rmsNormForward(st.k.pointer, st.kRstd!.pointer, kIn.pointer, kNorm, rows: T * G, n: dh, eps: eps)
        }
        if config.rotates(layer: l) {
            ropeForward(st.q.pointer, st.q.pointer, rotaryTable(layer: l), rows: T, heads: H, headDim: dh)
            ropeForward(st.k.pointer, st.k.pointer, rotaryTable(layer: l), rows: T, heads: G, headDim: dh)
        }
        attentionForward(st.a.pointer, probs.pointer, st.q.pointer, st.k.pointer, st.v.pointer,
                         rows: T, heads: H, kvHeads: G, headDim: dh, scale: config.attentionScale, window: config.window(layer: l),
                         softcap: config.attentionSoftcap)
        GradientPass.applyShift(options.shift, .attention, layer: l, st.a.pointer, count: T * aw)
        withOptional(block.output.bias) {
            linearForward(st.attentionOut?.pointer ?? x.pointer, st.a.pointer,
                          weights(block.output.weightT, "o", offset: offsets?.outputProjection[l]), $0,
                          rows: T, inputs: aw, outputs: d, layout: .transposed, accumulate: st.attentionOut == nil)
        }
        addOutput(st.attentionOut, st.attentionOutRstd, norm: block.postAttentionNorm)
        st.mid.pointer.update(from: x.pointer, count: T * d)
        rmsNormForward(st.xn2.pointer, st.rstd2.pointer, x.pointer, block.mlpNorm, rows: T, n: d, eps: eps)
        withOptional(block.gate.bias) {
            linearForward(st.z.pointer, st.xn2.pointer, weights(block.gate.weight, "gate"), $0, rows: T, inputs: d, outputs: F)
        }
        withOptional(block.up.bias) {
            linearForward(st.u.pointer, st.xn2.pointer, weights(block.up.weight, "up"), $0, rows: T, inputs: d, outputs: F)
        }
        switch config.activation {
        case .silu: swigluForward(st.n.pointer, st.z.pointer, st.u.pointer, count: T * F)
        case .geluTanh: gegluForward(st.n.pointer, st.z.pointer, st.u.pointer, count: T * F)
        }
        GradientPass.applyShift(options.shift, .hidden, layer: l, st.n.pointer, count: T * F)
        withOptional(block.down.bias) {
            linearForward(st.mlpOut?.pointer ?? x.pointer, st.n.pointer,
                          weights(block.down.weightT, "down", offset: offsets?.downProjection[l]), $0,
                          rows: T, inputs: F, outputs: d, layout: .transposed, accumulate: st.mlpOut == nil)
        }
        addOutput(st.mlpOut, st.mlpOutRstd, norm: block.postMLPNorm)
        return st
    }

    /// Block l's backward: `dx` holds dL/d(the block's output) and becomes dL/d(its input),
    /// except in layer 0, where nothing below reads it (the embeddings get no gradient).
    func backward(layer l: Int, saved st: LlamaSaved, dx: Matrix, scratch: LlamaBackwardScratch) -> LayerGradients {
        let s = model.shape, config = model.config, block = model.blocks[l]
        let T = tokens, d = s.hiddenSize, F = s.ffnSize
        let H = s.heads, G = s.kvHeads, dh = s.headDim, aw = s.attentionWidth, kw = s.kvWidth
        let offsets = options.weightOffsets
        let dn = scratch.dn, dz = scratch.dz, du = scratch.du, dxn = scratch.dxn
        let dq = scratch.dq, dqIn = scratch.dqIn, dk = scratch.dk, dkIn = scratch.dkIn, dv = scratch.dv

        // MLP: out = mid + N W_down (Gemma: mid + rms_m(N W_down)).
        let dMLPOut = outputGradient(dx, st.mlpOut, st.mlpOutRstd, norm: block.postMLPNorm)
        dn.zero()
        let downGrad = projectionBackward(dn.pointer, dMLPOut.pointer, input: st.n.pointer,
                                          weight: weights(block.down.weightT, "down", offset: offsets?.downProjection[l]),
                                          rows: T, inputs: F, outputs: d, layout: .transposed,
                                          weightGradient: wanted.contains(.down))
        dz.zero(); du.zero()
        switch config.activation {
        case .silu: swigluBackward(dz.pointer, du.pointer, dn.pointer, st.z.pointer, st.u.pointer, count: T * F)
        case .geluTanh: gegluBackward(dz.pointer, du.pointer, dn.pointer, st.z.pointer, st.u.pointer, count: T * F)
        }
        dxn.zero()
        let gateGrad = projectionBackward(dxn.pointer, dz.pointer, input: st.xn2.pointer, weight: weights(block.gate.weight, "gate"),
                                          rows: T, inputs: d, outputs: F, weightGradient: wanted.contains(.first))
        let upGrad = projectionBackward(dxn.pointer, du.pointer, input: st.xn2.pointer, weight: weights(block.up.weight, "up"),
                                        rows: T, inputs: d, outputs: F, weightGradient: wanted.contains(.up))
        rmsNormBackward(dx.pointer, nil, dxn.pointer, st.mid.pointer, block.mlpNorm, st.rstd2.pointer, rows: T, n: d)

        // Attention: mid = x + A W_O (Gemma: x + rms_a(A W_O)).
        let dAttentionOut = outputGradient(dx, st.attentionOut, st.attentionOutRstd, norm: block.postAttentionNorm)
        let ga = Matrix(rows: T, cols: aw)   // (T, H·d_h) G = dL/dA
        let outputGrad = projectionBackward(ga.pointer, dAttentionOut.pointer, input: st.a.pointer,
                                            weight: weights(block.output.weightT, "o", offset: offsets?.outputProjection[l]),
                                            rows: T, inputs: aw, outputs: d, layout: .transposed,
                                            weightGradient: wanted.contains(.output))
        let gradients = LayerGradients(
            layerInput: st.input.array, attention: st.a.array, attentionGrad: ga.array,
            hidden: st.n.array, hiddenGrad: dn.array, preActivation: st.z.array,
            outputProjectionGrad: outputGrad, downProjectionGrad: downGrad,
            firstProjectionGrad: gateGrad, upProjectionGrad: upGrad)
        if l == 0 { return gradients }

        dq.zero(); dk.zero(); dv.zero()
        attentionBackward(dq.pointer, dk.pointer, dv.pointer, ga.pointer, probs.pointer, st.q.pointer, st.k.pointer,
                          st.v.pointer, rows: T, heads: H, kvHeads: G, headDim: dh, scale: config.attentionScale,
                          window: config.window(layer: l), softcap: config.attentionSoftcap)
        dqIn.zero(); dkIn.zero()
        if config.rotates(layer: l) {
            ropeBackward(dqIn.pointer, dq.pointer, rotaryTable(layer: l), rows: T, heads: H, headDim: dh)
            ropeBackward(dkIn.pointer, dk.pointer, rotaryTable(layer: l), rows: T, heads: G, headDim: dh)
        } else {
            dqIn.pointer.update(from: dq.pointer, count: T * aw)
            dkIn.pointer.update(from: dk.pointer, count: T * kw)
        }
        if let qNorm = block.queryNorm, let kNorm = block.keyNorm, let qIn = st.qIn, let kIn = st.kIn {
            // Through the per-head norms: dq and dk (free here) take the projections' gradients.
            dq.zero(); dk.zero()
            rmsNormBackward(dq.pointer, nil, dqIn.pointer, qIn.pointer, qNorm, st.qRstd!.pointer, rows: T * H, n: dh)
            rmsNormBackward(dk.pointer, nil, dkIn.pointer, kIn.pointer, kNorm, st.kRstd!.pointer, rows: T * G, n: dh)
            dqIn.pointer.update(from: dq.pointer, count: T * aw)
            dkIn.pointer.update(from: dk.pointer, count: T * kw)
        }
        dxn.zero()
        linearBackward(dxn.pointer, nil, nil, dqIn.pointer, nil, weights(block.q.weight, "q"), rows: T, inputs: d, outputs: aw)
        linearBackward(dxn.pointer, nil, nil, dkIn.pointer, nil, weights(block.k.weight, "k"), rows: T, inputs: d, outputs: kw)
        linearBackward(dxn.pointer, nil, nil, dv.pointer, nil, weights(block.v.weight, "v"), rows: T, inputs: d, outputs: kw)
        rmsNormBackward(dx.pointer, nil, dxn.pointer, st.input.pointer, block.attentionNorm, st.rstd1.pointer, rows: T, n: d)
        return gradients
    }
}

/// The backward's scratch, shared by every block (nothing in it outlives a block's backward).
private final class LlamaBackwardScratch {
    let dn: Matrix, dz: Matrix, du: Matrix       // (T, F)
    let dxn: Matrix                              // (T, d)
    let dq: Matrix, dqIn: Matrix                 // (T, H·d_h)
    let dk: Matrix, dkIn: Matrix, dv: Matrix     // (T, G·d_h)

    init(tokens T: Int, shape s: TransformerShape) {
        dn = Matrix(rows: T, cols: s.ffnSize); dz = Matrix(rows: T, cols: s.ffnSize); du = Matrix(rows: T, cols: s.ffnSize)
        dxn = Matrix(rows: T, cols: s.hiddenSize)
        dq = Matrix(rows: T, cols: s.attentionWidth); dqIn = Matrix(rows: T, cols: s.attentionWidth)
        dk = Matrix(rows: T, cols: s.kvWidth); dkIn = Matrix(rows: T, cols: s.kvWidth); dv = Matrix(rows: T, cols: s.kvWidth)
    }
}

/// The gradient of a block output that is added to the residual stream: dx itself, or (Gemma)
/// dx through the output's RMSNorm, given the output before it and its 1/rms.
private func outputGradient(_ dx: Matrix, _ out: Matrix?, _ rstd: Matrix?, norm: [Float]?) -> Matrix {
    guard let out, let rstd, let norm else { return dx }
    let dout = Matrix(rows: out.rows, cols: out.cols)
    rmsNormBackward(dout.pointer, nil, dx.pointer, out.pointer, norm, rstd.pointer, rows: out.rows, n: out.cols)
    return dout
}

/// Runs `body` with a pointer to `values`, or nil.
func withOptional<R>(_ values: [Float]?, _ body: (FloatInput?) -> R) -> R {
    guard let values else { return body(nil) }
    return values.withUnsafeBufferPointer { body($0.baseAddress) }
}

extension Matrix {
    func zero() { pointer.update(repeating: 0, count: count) }
}
