import Foundation
import Testing
@testable import ShadowKernels
@testable import ShadowModels
import ShadowTestSupport

/// Each layer's backward against central differences of Σ r ⊙ forward(·) (float32 forward, the
/// sum in Double, ε = 1e-2 on inputs of order 1).
@Suite("Layer backward passes match finite differences")
struct LayerGradientTests {
    static let epsilon: Float = 1e-2
    static let tolerance = 2e-3

    @Test("RMSNorm: dx and dweight")
    func rmsNorm() {
        let T = 3, n = 10
        let x = randomFloats(T * n, seed: 1), w = randomFloats(n, seed: 2).map { 1 + 0.3 * $0 }
        let r = randomFloats(T * n, seed: 3)
        func loss(_ x: [Float], _ w: [Float]) -> Double {
            var out = [Float](repeating: 0, count: T * n), rstd = [Float](repeating: 0, count: T)
            rmsNormForward(&out, &rstd, x, w, rows: T, n: n, eps: 1e-5)
            return projection(out, r)
        }
        var out = [Float](repeating: 0, count: T * n), rstd = [Float](repeating: 0, count: T)
        rmsNormForward(&out, &rstd, x, w, rows: T, n: n, eps: 1e-5)
        var dx = [Float](repeating: 0, count: T * n), dw = [Float](repeating: 0, count: n)
        rmsNormBackward(&dx, &dw, r, x, w, rstd, rows: T, n: n)
        FiniteDifferences.check("dx", values: x, analytic: dx, epsilon: Self.epsilon, tolerance: Self.tolerance) { loss($0, w) }
        FiniteDifferences.check("dweight", values: w, analytic: dw, epsilon: Self.epsilon, tolerance: Self.tolerance) { loss(x, $0) }
        // The forward agrees with the inference kernel.
        var reference = [Float](repeating: 0, count: T * n)
        Ops.rmsNorm(&reference, x, w, rows: T, n: n, eps: 1e-5)
        expectClose(out, reference, tolerance: 1e-6)
    }

    @Test("LayerNorm: dx, dweight and dbias")
    func layerNorm() {
        let T = 3, n = 10
        let x = randomFloats(T * n, seed: 4), w = randomFloats(n, seed: 5).map { 1 + 0.3 * $0 }
        let b = randomFloats(n, seed: 6).map { 0.1 * $0 }, r = randomFloats(T * n, seed: 7)
        func forward(_ x: [Float], _ w: [Float], _ b: [Float]) -> (out: [Float], mean: [Float], rstd: [Float]) {
            var out = [Float](repeating: 0, count: T * n), mean = [Float](repeating: 0, count: T), rstd = mean
            layerNormForward(&out, &mean, &rstd, x, w, b, rows: T, n: n, eps: 1e-5)
            return (out, mean, rstd)
        }
        let saved = forward(x, w, b)
        var dx = [Float](repeating: 0, count: T * n), dw = [Float](repeating: 0, count: n), db = dw
        layerNormBackward(&dx, &dw, &db, r, x, w, saved.mean, saved.rstd, rows: T, n: n)
        FiniteDifferences.check("dx", values: x, analytic: dx, epsilon: Self.epsilon, tolerance: Self.tolerance) {
            projection(forward($0, w, b).out, r)
        }
        FiniteDifferences.check("dweight", values: w, analytic: dw, epsilon: Self.epsilon, tolerance: Self.tolerance) {
            projection(forward(x, $0, b).out, r)
        }
        FiniteDifferences.check("dbias", values: b, analytic: db, epsilon: Self.epsilon, tolerance: Self.tolerance) {
            projection(forward(x, w, $0).out, r)
        }
        var reference = [Float](repeating: 0, count: T * n)
        Ops.layerNorm(&reference, x, w, b, rows: T, n: n, eps: 1e-5)
        expectClose(saved.out, reference, tolerance: 1e-6)
    }

    @Test("linear x Wᵀ + b, the weight stored either way: dx, dW and db", arguments: [WeightLayout.standard, .transposed])
    func linear(layout: WeightLayout) {
        let T = 6, inputs = 5, outputs = 4
        let seed: UInt64 = layout == .standard ? 8 : 12
        let x = randomFloats(T * inputs, seed: seed), w = randomFloats(outputs * inputs, seed: seed + 1)
        let b = randomFloats(outputs, seed: seed + 2), r = randomFloats(T * outputs, seed: seed + 3)
        func loss(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            var out = [Float](repeating: 0, count: T * outputs)
            linearForward(&out, x, w, b, rows: T, inputs: inputs, outputs: outputs, layout: layout)
            return projection(out, r)
        }
        var dx = [Float](repeating: 0, count: T * inputs), dw = [Float](repeating: 0, count: outputs * inputs)
        var db = [Float](repeating: 0, count: outputs)
        linearBackward(&dx, &dw, &db, r, x, w, rows: T, inputs: inputs, outputs: outputs, layout: layout)
        FiniteDifferences.check("dx", values: x, analytic: dx, epsilon: Self.epsilon, tolerance: Self.tolerance) { loss($0, w, b) }
        FiniteDifferences.check("dW", values: w, analytic: dw, epsilon: Self.epsilon, tolerance: Self.tolerance) { loss(x, $0, b) }
        FiniteDifferences.check("db", values: b, analytic: db, epsilon: Self.epsilon, tolerance: Self.tolerance) { loss(x, w, $0) }
    }

    @Test("rotate-half RoPE: dx, and the forward equals the inference kernel (whole heads, and 4 of 6 dimensions rotating with a LongRoPE magnitude)",
          arguments: [(nil, 1), (4, 1.25)] as [(Int?, Float)])
    func rope(rotaryDimensions: Int?, magnitude: Float) {
        let T = 4, heads = 2, headDim = 6, width = heads * headDim
        let inverse = RopeConfig(theta: 10000, rotaryDimensions: rotaryDimensions).inverseFrequencies(headDim: headDim)
        #expect(inverse.count == (rotaryDimensions ?? headDim) / 2)
        let table = RotaryTable(positions: 3..<3 + T, inverseFrequencies: inverse, magnitude: magnitude)
        let x = randomFloats(T * width, seed: 16), r = randomFloats(T * width, seed: 17)
        func forward(_ x: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: T * width)
            ropeForward(&out, x, table, rows: T, heads: heads, headDim: headDim)
            return out
        }
        var dx = [Float](repeating: 0, count: T * width)
        ropeBackward(&dx, r, table, rows: T, heads: heads, headDim: headDim)
        FiniteDifferences.check("dx", values: x, analytic: dx, epsilon: Self.epsilon, tolerance: Self.tolerance) {
            projection(forward($0), r)
        }
        var reference = x
        for t in 0..<T {
            reference.withUnsafeMutableBufferPointer { buffer in
                inverse.withUnsafeBufferPointer {
                    Ops.rope(buffer.baseAddress! + t * width, heads: heads, headDim: headDim, position: 3 + t,
                             inverseFrequencies: $0, magnitude: magnitude)
                }
            }
        }
        #expect(forward(x) == reference)
        // In place, as the gradient pass runs it: the dimensions past the rotating ones keep their values.
        var inPlace = x
        inPlace.withUnsafeMutableBufferPointer { ropeForward($0.baseAddress!, $0.baseAddress!, table, rows: T, heads: heads, headDim: headDim) }
        #expect(inPlace == reference)
        if let rotaryDimensions {
            for t in 0..<T { for h in 0..<heads { for i in rotaryDimensions..<headDim {
                let at = t * width + h * headDim + i
                #expect(reference[at] == x[at])
            } } }
        }
    }

    @Test("causal grouped-query attention: dq, dk and dv (with Gemma 2's soft-capped scores too)",
          arguments: [(4, 2, nil), (3, 3, nil), (4, 1, nil), (4, 2, 0.8)] as [(Int, Int, Float?)])
    func attention(heads: Int, kvHeads: Int, softcap: Float?) {
        let T = 5, headDim = 4, scale: Float = 0.5
        // Scores up to about ±3 against a cap of 0.8: tanh far from linear.
        let q = randomFloats(T * heads * headDim, seed: 18).map { $0 * (softcap == nil ? 1 : 3) }, k = randomFloats(T * kvHeads * headDim, seed: 19)
        let v = randomFloats(T * kvHeads * headDim, seed: 20), r = randomFloats(T * heads * headDim, seed: 21)
        func forward(_ q: [Float], _ k: [Float], _ v: [Float]) -> (out: [Float], probs: [Float]) {
            var out = [Float](repeating: 0, count: T * heads * headDim), scratch = [Float](repeating: 0, count: T * T)
            attentionForward(&out, &scratch, q, k, v, rows: T, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale,
                             softcap: softcap)
            // Every head's P, (H, T, T), as the backward recomputes them.
            var probs = [Float](repeating: 0, count: heads * T * T)
            for h in 0..<heads {
                probs.withUnsafeMutableBufferPointer {
                    attentionProbabilities($0.baseAddress! + h * T * T, head: h, q, k, rows: T, heads: heads, kvHeads: kvHeads,
                                           headDim: headDim, scale: scale, softcap: softcap)
                }
            }
            return (out, probs)
        }
        let saved = forward(q, k, v)
        var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count), dv = dk
        var scratch = [Float](repeating: .nan, count: T * T)   // the backward must fill what it reads
        attentionBackward(&dq, &dk, &dv, r, &scratch, q, k, v, rows: T, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale,
                          softcap: softcap)
        FiniteDifferences.check("dq", values: q, analytic: dq, epsilon: Self.epsilon, tolerance: Self.tolerance) {
            projection(forward($0, k, v).out, r)
        }
        FiniteDifferences.check("dk", values: k, analytic: dk, epsilon: Self.epsilon, tolerance: Self.tolerance) {
            projection(forward(q, $0, v).out, r)
        }
        FiniteDifferences.check("dv", values: v, analytic: dv, epsilon: Self.epsilon, tolerance: Self.tolerance) {
            projection(forward(q, k, $0).out, r)
        }
        if let softcap {
            // The probabilities are softmax(cap · tanh(scale · q·k / cap)), and the inference kernel agrees.
            let h = 1, g = h / (heads / kvHeads), t = T - 1
            var capped = (0...t).map { j -> Double in
                let dot = (0..<headDim).reduce(0.0) { $0 + Double(q[t * heads * headDim + h * headDim + $1]) * Double(k[j * kvHeads * headDim + g * headDim + $1]) }
                return Double(softcap) * tanh(Double(scale) * dot / Double(softcap))
            }
            let top = capped.max()!
            capped = capped.map { exp($0 - top) }
            let total = capped.reduce(0, +)
            for j in 0...t { #expect(abs(Double(saved.probs[(h * T + t) * T + j]) - capped[j] / total) < 1e-6) }
            let shape = TransformerShape(layers: 1, hiddenSize: heads * headDim, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                         ffnSize: 4, vocabularySize: 4, maxContext: T)
            let cache = KVCache(shape: shape, capacity: T)
            var inference = [Float](repeating: 0, count: T * heads * headDim)
            CausalAttention.store(cache: cache, layer: 0, k: k, v: v, past: 0, tokens: T)
            CausalAttention.attend(&inference, q: q, cache: cache, layer: 0, past: 0, tokens: T, scale: scale, softcap: softcap)
            expectClose(inference, saved.out, tolerance: 1e-5)
            var last = [Float](repeating: 0, count: heads * headDim)   // decode: one query over the cache
            q.withUnsafeBufferPointer {
                CausalAttention.attend(&last, q: $0.baseAddress! + t * heads * headDim, cache: cache, layer: 0, past: t, tokens: 1,
                                       scale: scale, softcap: softcap)
            }
            expectClose(last, Array(saved.out.suffix(heads * headDim)), tolerance: 1e-5)
        }
        // Row t of each head's probabilities sums to one over j ≤ t and is zero above the diagonal.
        for h in 0..<heads {
            for t in 0..<T {
                let row = saved.probs[(h * T + t) * T..<(h * T + t + 1) * T]
                #expect(abs(row.prefix(t + 1).reduce(0, +) - 1) < 1e-5)
                #expect(row.dropFirst(t + 1).allSatisfy { $0 == 0 })
            }
        }
    }

    @Test("attention over several causal blocks of query rows equals a plain fp64 computation, forward and backward")
    func attentionAcrossBlocks() {
        // 260 tokens: blocks of 128, 128 and 4 rows.
        let T = 260, heads = 4, kvHeads = 2, headDim = 4, group = 2, scale: Float = 0.5
        #expect(T > 2 * CausalBlocks.rows)
        let qWidth = heads * headDim, kvWidth = kvHeads * headDim
        let q = randomFloats(T * qWidth, seed: 40).map { 2 * $0 }, k = randomFloats(T * kvWidth, seed: 41)
        let v = randomFloats(T * kvWidth, seed: 42), r = randomFloats(T * qWidth, seed: 43)
        var out = [Float](repeating: 0, count: q.count), probs = [Float](repeating: .nan, count: T * T)
        attentionForward(&out, &probs, q, k, v, rows: T, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale)
        var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count), dv = dk
        probs = [Float](repeating: .nan, count: T * T)   // the backward recomputes what it reads
        attentionBackward(&dq, &dk, &dv, r, &probs, q, k, v, rows: T, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale)

        var refOut = [Double](repeating: 0, count: q.count), refDq = refOut
        var refDk = [Double](repeating: 0, count: k.count), refDv = refDk
        for h in 0..<heads {
            let g = h / group
            for t in 0..<T {
                let qi = t * qWidth + h * headDim
                let logits = (0...t).map { j in
                    Double(scale) * (0..<headDim).reduce(0.0) { $0 + Double(q[qi + $1]) * Double(k[j * kvWidth + g * headDim + $1]) }
                }
                let top = logits.max()!, weights = logits.map { exp($0 - top) }, total = weights.reduce(0, +)
                let p = weights.map { $0 / total }
                // dP[j] = r_t · v_j; dS = P ⊙ (dP − Σ P dP) · scale
                let dp = (0...t).map { j in (0..<headDim).reduce(0.0) { $0 + Double(r[qi + $1]) * Double(v[j * kvWidth + g * headDim + $1]) } }
                let mean = zip(p, dp).reduce(0.0) { $0 + $1.0 * $1.1 }
                for j in 0...t {
                    let ds = p[j] * (dp[j] - mean) * Double(scale), kj = j * kvWidth + g * headDim
                    for c in 0..<headDim {
                        refOut[qi + c] += p[j] * Double(v[kj + c])
                        refDv[kj + c] += p[j] * Double(r[qi + c])
                        refDq[qi + c] += ds * Double(k[kj + c])
                        refDk[kj + c] += ds * Double(q[qi + c])
                    }
                }
            }
        }
        expectClose(out, refOut.map(Float.init), tolerance: 1e-5, "out")
        expectClose(dq, refDq.map(Float.init), tolerance: 1e-4, "dq")
        expectClose(dk, refDk.map(Float.init), tolerance: 1e-4, "dk")
        expectClose(dv, refDv.map(Float.init), tolerance: 1e-4, "dv")
        for h in [0, heads - 1] {
            attentionProbabilities(&probs, head: h, q, k, rows: T, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale)
            for t in [0, 127, 128, 200, T - 1] {
                let row = probs[t * T..<(t + 1) * T]
                #expect(row.dropFirst(t + 1).allSatisfy { $0 == 0 }, "head \(h), row \(t) is zero above the diagonal")
            }
        }
    }

    @Test("the attention forward equals the inference kernel over an fp32 or fp16 KV cache",
          arguments: [WeightDType.f32, .f16])
    func attentionMatchesInference(dtype: WeightDType) {
        let T = 6, shape = TransformerShape(layers: 1, hiddenSize: 16, heads: 4, kvHeads: 2, headDim: 4, ffnSize: 8,
                                            vocabularySize: 10, maxContext: 8)
        let q = randomFloats(T * shape.attentionWidth, seed: 22), k = randomFloats(T * shape.kvWidth, seed: 23)
        let v = randomFloats(T * shape.kvWidth, seed: 24)
        var out = [Float](repeating: 0, count: q.count), probs = [Float](repeating: 0, count: T * T)
        attentionForward(&out, &probs, q, k, v, rows: T, heads: 4, kvHeads: 2, headDim: 4, scale: 0.5)
        let cache = KVCache(shape: shape, capacity: 8, dtype: dtype)
        var reference = [Float](repeating: 0, count: q.count)
        CausalAttention.store(cache: cache, layer: 0, k: k, v: v, past: 0, tokens: T)
        CausalAttention.attend(&reference, q: q, cache: cache, layer: 0, past: 0, tokens: T, scale: 0.5)
        // fp16 keeps 11 significant bits: about 5e-4 relative per stored value.
        expectClose(out, reference, tolerance: dtype == .f32 ? 1e-5 : 3e-3)
        // The decode kernel (one query at a time) reads the same cache.
        var last = [Float](repeating: 0, count: shape.attentionWidth)
        q.withUnsafeBufferPointer { qp in
            CausalAttention.attend(&last, q: qp.baseAddress! + (T - 1) * shape.attentionWidth, cache: cache, layer: 0,
                                   past: T - 1, tokens: 1, scale: 0.5)
        }
        expectClose(last, Array(out.suffix(shape.attentionWidth)), tolerance: dtype == .f32 ? 1e-5 : 3e-3)
    }

    typealias GatedForward = (FloatBuffer, FloatInput, FloatInput, Int) -> Void
    typealias GatedBackward = (FloatBuffer, FloatBuffer, FloatInput, FloatInput, FloatInput, Int) -> Void

    /// Checks a gated activation's backward (dgate, dup) against finite differences of its forward;
    /// returns the forward's output for `gate`, `up`.
    func checkGated(forward: GatedForward, backward: GatedBackward, gate: [Float], up: [Float], seed: UInt64) -> [Float] {
        let count = gate.count
        let r = randomFloats(count, seed: seed)
        func output(_ gate: [Float], _ up: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: count)
            out.withUnsafeMutableBufferPointer { forward($0.baseAddress!, gate, up, count) }
            return out
        }
        func loss(_ gate: [Float], _ up: [Float]) -> Double { projection(output(gate, up), r) }
        var dgate = [Float](repeating: 0, count: count), dup = dgate
        dgate.withUnsafeMutableBufferPointer { dg in
            dup.withUnsafeMutableBufferPointer { du in backward(dg.baseAddress!, du.baseAddress!, r, gate, up, count) }
        }
        FiniteDifferences.check("dgate", values: gate, analytic: dgate, epsilon: Self.epsilon, tolerance: Self.tolerance,
                                indices: Array(0..<count)) { loss($0, up) }
        FiniteDifferences.check("dup", values: up, analytic: dup, epsilon: Self.epsilon, tolerance: Self.tolerance,
                                indices: Array(0..<count)) { loss(gate, $0) }
        return output(gate, up)
    }

    @Test("SwiGLU: dgate and dup")
    func swiglu() {
        let gate = randomFloats(24, seed: 25).map { 3 * $0 }, up = randomFloats(24, seed: 26)
        _ = checkGated(forward: { swigluForward($0, $1, $2, count: $3) }, backward: { swigluBackward($0, $1, $2, $3, $4, count: $5) },
                       gate: gate, up: up, seed: 27)
    }

    @Test("GeGLU with GELU's tanh approximation (Gemma): dgate and dup, and the forward is ½z(1 + tanh(√(2/π)(z + 0.044715z³)))·up")
    func geglu() {
        // 24: the vector kernel's lanes and its scalar tail.
        let gate = randomFloats(24, seed: 30).map { 4 * $0 }, up = randomFloats(24, seed: 31)
        let out = checkGated(forward: { gegluForward($0, $1, $2, count: $3) }, backward: { gegluBackward($0, $1, $2, $3, $4, count: $5) },
                             gate: gate, up: up, seed: 32)
        let reference = zip(gate, up).map { z, u -> Float in
            let (z, u) = (Double(z), Double(u))
            return Float(0.5 * z * (1 + tanh((2 / Double.pi).squareRoot() * (z + 0.044715 * z * z * z))) * u)
        }
        expectClose(out, reference, tolerance: 1e-6)
    }

    @Test("ReLU: dx away from the kink, and no gradient where x ≤ 0")
    func relu() {
        let count = 20
        // Keep every input at least 0.1 from zero so ±ε never crosses the kink.
        let x = randomFloats(count, seed: 28).map { $0 < 0 ? $0 - 0.1 : $0 + 0.1 }
        let r = randomFloats(count, seed: 29)
        func loss(_ x: [Float]) -> Double {
            var out = [Float](repeating: 0, count: count)
            reluForward(&out, x, count: count)
            return projection(out, r)
        }
        var dx = [Float](repeating: 0, count: count)
        reluBackward(&dx, r, x, count: count)
        FiniteDifferences.check("dx", values: x, analytic: dx, epsilon: Self.epsilon, tolerance: Self.tolerance,
                                indices: Array(0..<count), loss: loss)
        #expect(zip(x, dx).allSatisfy { $0 > 0 || $1 == 0 })
    }

    @Test("softmax cross-entropy: losses and dlogits")
    func crossEntropy() {
        let rows = 3, vocab = 7
        let logits = randomFloats(rows * vocab, seed: 30).map { 3 * $0 }
        let targets = [1, 6, 0], weights: [Float] = [0.5, -1, 2]
        func forward(_ logits: [Float]) -> (losses: [Double], probs: [Float]) {
            var losses = [Double](repeating: 0, count: rows), probs = [Float](repeating: 0, count: rows * vocab)
            crossEntropyForward(&losses, &probs, logits, targets, rows: rows, vocab: vocab)
            return (losses, probs)
        }
        let saved = forward(logits)
        for r in 0..<rows {
            let row = logits[r * vocab..<(r + 1) * vocab].map(Double.init)
            let lse = log(row.map { exp($0) }.reduce(0, +))
            #expect(abs(saved.losses[r] - (lse - row[targets[r]])) < 1e-6)
        }
        var dlogits = [Float](repeating: 0, count: rows * vocab)
        crossEntropyBackward(&dlogits, weights, saved.probs, targets, rows: rows, vocab: vocab)
        FiniteDifferences.check("dlogits", values: logits, analytic: dlogits, epsilon: Self.epsilon, tolerance: Self.tolerance,
                                indices: Array(0..<rows * vocab)) {
            zip(forward($0).losses, weights).reduce(0.0) { $0 + $1.0 * Double($1.1) }
        }
    }

    @Test("backward passes add into their gradient buffers")
    func accumulates() {
        let T = 3, n = 8
        let x = randomFloats(T * n, seed: 31), w = randomFloats(n, seed: 32).map { 1 + 0.2 * $0 }
        let r = randomFloats(T * n, seed: 33), start = randomFloats(T * n, seed: 34)
        var out = [Float](repeating: 0, count: T * n), rstd = [Float](repeating: 0, count: T)
        rmsNormForward(&out, &rstd, x, w, rows: T, n: n, eps: 1e-5)
        var fromZero = [Float](repeating: 0, count: T * n), fromStart = start
        rmsNormBackward(&fromZero, nil, r, x, w, rstd, rows: T, n: n)
        rmsNormBackward(&fromStart, nil, r, x, w, rstd, rows: T, n: n)
        expectClose(zip(fromStart, start).map { $0 - $1 }, fromZero, tolerance: 1e-6, "rmsNorm")

        var dx0 = [Float](repeating: 0, count: T * n), dx1 = start
        let wm = randomFloats(n * n, seed: 35)
        var dw0 = [Float](repeating: 0, count: n * n), dw1 = wm
        linearBackward(&dx0, &dw0, nil, r, x, wm, rows: T, inputs: n, outputs: n)
        linearBackward(&dx1, &dw1, nil, r, x, wm, rows: T, inputs: n, outputs: n)
        expectClose(zip(dx1, start).map { $0 - $1 }, dx0, tolerance: 1e-6, "linear dx")
        expectClose(zip(dw1, wm).map { $0 - $1 }, dw0, tolerance: 1e-6, "linear dW")

        var ga = [Float](repeating: 0, count: T * n), gb = start
        let table = RotaryTable(positions: 0..<T, inverseFrequencies: [1, 0.1])
        ropeBackward(&ga, r, table, rows: T, heads: 2, headDim: 4)
        ropeBackward(&gb, r, table, rows: T, heads: 2, headDim: 4)
        expectClose(zip(gb, start).map { $0 - $1 }, ga, tolerance: 1e-6, "rope")
    }
}
