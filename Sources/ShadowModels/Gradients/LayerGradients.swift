import Foundation
import ShadowKernels

// Forward/backward pairs of the layers a decoder block is made of, as free functions over raw
// fp32 buffers (llm.c's convention): outputs first, then inputs, then sizes. A forward saves what
// its backward needs (rstd, means, attention probabilities); a backward ADDS into its gradient
// buffers, so a tensor read by several layers (the residual stream) sums their contributions.
// Every gradient buffer has the shape of the value it differentiates.
//
// These run once per calibration sample, not per decoded token: matrix products go through
// BLAS, the element-wise loops stay plain.

typealias FloatBuffer = UnsafeMutablePointer<Float>
typealias FloatInput = UnsafePointer<Float>

// MARK: - RMSNorm

/// out = x · rstd · w with rstd = 1 / sqrt(mean(x²) + eps), row by row.
func rmsNormForward(_ out: FloatBuffer,     // (T, n)
                    _ rstd: FloatBuffer,    // (T) saved for the backward
                    _ x: FloatInput,        // (T, n)
                    _ weight: FloatInput,   // (n)
                    rows: Int, n: Int, eps: Float) {
    for t in 0..<rows {
        let xr = x + t * n, o = out + t * n
        let r = 1 / (GEMV.dot(xr, xr, n) / Float(n) + eps).squareRoot()
        rstd[t] = r
        for i in 0..<n { o[i] = xr[i] * r * weight[i] }
    }
}

/// With g = dout ⊙ w: dx += rstd · g − rstd³ · (g · x) / n · x; dweight += dout ⊙ x · rstd.
func rmsNormBackward(_ dx: FloatBuffer,        // (T, n)
                     _ dweight: FloatBuffer?,  // (n)
                     _ dout: FloatInput,       // (T, n)
                     _ x: FloatInput,          // (T, n)
                     _ weight: FloatInput,     // (n)
                     _ rstd: FloatInput,       // (T)
                     rows: Int, n: Int) {
    for t in 0..<rows {
        let xr = x + t * n, dor = dout + t * n, dxr = dx + t * n
        let r = rstd[t]
        var gx: Float = 0
        for i in 0..<n { gx += dor[i] * weight[i] * xr[i] }
        let c = r * r * r * gx / Float(n)
        for i in 0..<n { dxr[i] += r * dor[i] * weight[i] - c * xr[i] }
        if let dweight { for i in 0..<n { dweight[i] += dor[i] * xr[i] * r } }
    }
}

// MARK: - LayerNorm

/// out = (x − mean) · rstd · w + b with the biased variance (as PyTorch), row by row.
func layerNormForward(_ out: FloatBuffer,    // (T, n)
                      _ mean: FloatBuffer,   // (T) saved
                      _ rstd: FloatBuffer,   // (T) saved
                      _ x: FloatInput,       // (T, n)
                      _ weight: FloatInput,  // (n)
                      _ bias: FloatInput,    // (n)
                      rows: Int, n: Int, eps: Float) {
    for t in 0..<rows {
        let xr = x + t * n, o = out + t * n
        var sum: Float = 0
        for i in 0..<n { sum += xr[i] }
        let mu = sum / Float(n)
        var sq: Float = 0
        for i in 0..<n { let c = xr[i] - mu; sq += c * c }
        let r = 1 / (sq / Float(n) + eps).squareRoot()
        mean[t] = mu
        rstd[t] = r
        for i in 0..<n { o[i] = (xr[i] - mu) * r * weight[i] + bias[i] }
    }
}

/// With x̂ = (x − mean) · rstd and g = dout ⊙ w: dx += rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂));
/// dweight += dout ⊙ x̂; dbias += dout.
func layerNormBackward(_ dx: FloatBuffer,        // (T, n)
                       _ dweight: FloatBuffer?,  // (n)
                       _ dbias: FloatBuffer?,    // (n)
                       _ dout: FloatInput,       // (T, n)
                       _ x: FloatInput,          // (T, n)
                       _ weight: FloatInput,     // (n)
                       _ mean: FloatInput,       // (T)
                       _ rstd: FloatInput,       // (T)
                       rows: Int, n: Int) {
    for t in 0..<rows {
        let xr = x + t * n, dor = dout + t * n, dxr = dx + t * n
        let mu = mean[t], r = rstd[t]
        var gSum: Float = 0, gxSum: Float = 0
        for i in 0..<n {
            let g = dor[i] * weight[i]
            gSum += g
            gxSum += g * (xr[i] - mu) * r
        }
        let gMean = gSum / Float(n), gxMean = gxSum / Float(n)
        for i in 0..<n {
            let xhat = (xr[i] - mu) * r
            dxr[i] += r * (dor[i] * weight[i] - gMean - xhat * gxMean)
            dweight?[i] += dor[i] * xhat
            dbias?[i] += dor[i]
        }
    }
}

// MARK: - Linear, y = x Wᵀ + b

/// How a linear layer's weight is stored. The output and down projections are kept transposed
/// (one row per head dimension / neuron, DESIGN §5), so their gradients come out in that layout too.
enum WeightLayout: Sendable {
    case standard     // W (outputs, inputs), PyTorch's layout
    case transposed   // Wt = Wᵀ (inputs, outputs)
}

/// out (+)= x Wᵀ + b (x Wt + b when transposed).
func linearForward(_ out: FloatBuffer,     // (T, outputs)
                   _ x: FloatInput,        // (T, inputs)
                   _ weight: FloatInput,   // (outputs, inputs), or (inputs, outputs) when transposed
                   _ bias: FloatInput?,    // (outputs)
                   rows: Int, inputs: Int, outputs: Int, layout: WeightLayout = .standard, accumulate: Bool = false) {
    guard rows > 0, outputs > 0 else { return }
    if inputs > 0 {
        switch layout {
        case .standard: BLAS.gemmABt(out, x, weight, m: rows, n: outputs, k: inputs, accumulate: accumulate)
        case .transposed: BLAS.gemmAB(out, x, weight, m: rows, n: outputs, k: inputs, accumulate: accumulate)
        }
    } else if !accumulate {
        out.update(repeating: 0, count: rows * outputs)
    }
    if let bias { Ops.addBias(out, bias, rows: rows, n: outputs) }
}

/// dx += dout W; dweight += doutᵀ x (transposed: dx += dout Wtᵀ, dweightT += xᵀ dout); x is needed
/// only for dweight; dbias += Σ_t dout.
func linearBackward(_ dx: FloatBuffer?,       // (T, inputs)
                    _ dweight: FloatBuffer?,  // the weight's shape
                    _ dbias: FloatBuffer?,    // (outputs)
                    _ dout: FloatInput,       // (T, outputs)
                    _ x: FloatInput?,         // (T, inputs)
                    _ weight: FloatInput,     // (outputs, inputs), or (inputs, outputs) when transposed
                    rows: Int, inputs: Int, outputs: Int, layout: WeightLayout = .standard) {
    guard rows > 0, inputs > 0, outputs > 0 else { return }
    if let dx {
        switch layout {
        case .standard: BLAS.gemmAB(dx, dout, weight, m: rows, n: inputs, k: outputs, accumulate: true)
        case .transposed: BLAS.gemmABt(dx, dout, weight, m: rows, n: inputs, k: outputs, accumulate: true)
        }
    }
    if let dweight {
        precondition(x != nil, "the weight gradient needs the layer input")
        switch layout {
        case .standard: BLAS.gemmAtB(dweight, dout, x!, m: outputs, n: inputs, k: rows, accumulate: true)
        case .transposed: BLAS.gemmAtB(dweight, x!, dout, m: inputs, n: outputs, k: rows, accumulate: true)
        }
    }
    if let dbias { for t in 0..<rows { Ops.add(dbias, dout + t * outputs, count: outputs) } }
}

// MARK: - Rotary embedding (Hugging Face's rotate-half form)

/// cos and sin of position · θ_i (times `magnitude`) for the positions of one sequence, computed
/// as `Ops.rope` does (angle in Double, then rounded) so the gradient pass rotates exactly like
/// the inference pass. One column per rotating pair: `half` may be less than d_h/2 (partial
/// rotary embeddings), the dimensions past 2·half passing through.
struct RotaryTable {
    let half: Int
    let cos: [Float]   // (T, half)
    let sin: [Float]   // (T, half)

    init(positions: Range<Int>, inverseFrequencies: [Float], magnitude: Float = 1) {
        half = inverseFrequencies.count
        var c = [Float](), s = [Float]()
        c.reserveCapacity(positions.count * half)
        s.reserveCapacity(positions.count * half)
        for p in positions {
            for f in inverseFrequencies {
                let angle = Double(p) * Double(f)
                c.append(Float(Foundation.cos(angle)) * magnitude)
                s.append(Float(Foundation.sin(angle)) * magnitude)
            }
        }
        cos = c
        sin = s
    }
}

/// Rotates pairs (i, i + half) of every head: (a, b) → (a·c − b·s, b·c + a·s). `out` may be `x`;
/// the dimensions that do not rotate are copied.
func ropeForward(_ out: FloatBuffer,   // (T, heads·d_h)
                 _ x: FloatInput,      // (T, heads·d_h)
                 _ rotary: RotaryTable,
                 rows: Int, heads: Int, headDim: Int) {
    let half = rotary.half, width = heads * headDim
    for t in 0..<rows {
        for h in 0..<heads {
            let xi = x + t * width + h * headDim, o = out + t * width + h * headDim
            for i in 0..<half {
                let c = rotary.cos[t * half + i], s = rotary.sin[t * half + i]
                let a = xi[i], b = xi[i + half]
                o[i] = a * c - b * s
                o[i + half] = b * c + a * s
            }
            if UnsafePointer(o) != xi { for i in 2 * half..<headDim { o[i] = xi[i] } }
        }
    }
}

/// The rotation is linear, so its backward applies its transpose: dx += Rᵀ dout (the
/// dimensions that do not rotate pass their gradient through).
func ropeBackward(_ dx: FloatBuffer,     // (T, heads·d_h)
                  _ dout: FloatInput,    // (T, heads·d_h)
                  _ rotary: RotaryTable,
                  rows: Int, heads: Int, headDim: Int) {
    let half = rotary.half, width = heads * headDim
    for t in 0..<rows {
        for h in 0..<heads {
            let g = dout + t * width + h * headDim, o = dx + t * width + h * headDim
            for i in 0..<half {
                let c = rotary.cos[t * half + i], s = rotary.sin[t * half + i]
                let ga = g[i], gb = g[i + half]
                o[i] += ga * c + gb * s
                o[i + half] += gb * c - ga * s
            }
            for i in 2 * half..<headDim { o[i] += g[i] }
        }
    }
}

// MARK: - Causal grouped-query attention

/// P[h, t, j] = softmax_j(scale · q[t, h] · k[j, g]) over j ≤ t, 0 above the diagonal (and, with a
/// sliding `window`, before t − window + 1), g = h / (H / G), into `p` (T, T) for the one head `h`.
/// With a `softcap` c (Gemma 2) the scaled scores s become c · tanh(s / c) first. Like inference's
/// prefill, each block of query rows multiplies only the keys it can see (`CausalBlocks`). The
/// forward and the backward both call this, so the backward recomputes the very same P rather
/// than keep L·H·T² floats (32 GB for a 1B Llama at 4,000 tokens).
func attentionProbabilities(_ p: FloatBuffer,  // (T, T)
                            head h: Int,
                            _ q: FloatInput,       // (T, H·d_h)
                            _ k: FloatInput,       // (T, G·d_h)
                            rows T: Int, heads: Int, kvHeads: Int, headDim: Int, scale: Float, window: Int? = nil,
                            softcap: Float? = nil) {
    let qWidth = heads * headDim, kvWidth = kvHeads * headDim, g = h / (heads / kvHeads)
    for block in CausalBlocks(T) {
        let s = p + block.lowerBound * T
        BLAS.gemmABt(s, q + block.lowerBound * qWidth + h * headDim, k + g * headDim,
                     m: block.count, n: block.upperBound, k: headDim, lda: qWidth, ldb: kvWidth, ldc: T)
        parallelChunks(block.count, minimumPerThread: 16) { range in
            for r in range {
                let t = block.lowerBound + r, row = s + r * T
                // A sliding window leaves out keys before t − window + 1: zero probabilities,
                // so the backward pass below needs no mask of its own.
                let first = window.map { max(0, t + 1 - $0) } ?? 0
                row.update(repeating: 0, count: first)
                if let softcap {
                    Ops.softcap(row + first, count: t + 1 - first, cap: softcap, factor: scale)
                    Ops.softmax(row + first, t + 1 - first)
                } else {
                    Ops.softmax(row + first, t + 1 - first, scale: scale)
                }
                (row + t + 1).update(repeating: 0, count: T - t - 1)   // zero to the end
            }
        }
    }
}

/// out[t, h] = Σ_{j ≤ t} P[h, t, j] · v[j, g] (P as `attentionProbabilities` gives it); `probs`
/// (T, T) is scratch, holding each head's P in turn.
func attentionForward(_ out: FloatBuffer,    // (T, H·d_h)
                      _ probs: FloatBuffer,  // (T, T) scratch
                      _ q: FloatInput,       // (T, H·d_h)
                      _ k: FloatInput,       // (T, G·d_h)
                      _ v: FloatInput,       // (T, G·d_h)
                      rows T: Int, heads: Int, kvHeads: Int, headDim: Int, scale: Float, window: Int? = nil,
                      softcap: Float? = nil) {
    let qWidth = heads * headDim, kvWidth = kvHeads * headDim, group = heads / kvHeads
    for h in 0..<heads {
        let g = h / group
        attentionProbabilities(probs, head: h, q, k, rows: T, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale,
                               window: window, softcap: softcap)
        for block in CausalBlocks(T) {
            BLAS.gemmAB(out + block.lowerBound * qWidth + h * headDim, probs + block.lowerBound * T, v + g * headDim,
                        m: block.count, n: headDim, k: block.upperBound, lda: T, ldb: kvWidth, ldc: qWidth)
        }
    }
}

/// dv += Pᵀ dout; with dP = dout vᵀ and dS = P ⊙ (dP − Σ_j P dP) · scale: dq += dS k, dk += dSᵀ q.
/// A `softcap` c multiplies dS by its slope 1 − tanh²(scale · q·k / c), the scores recomputed.
/// Blocks of query rows compute dP and dS up to the keys they see; blocks of keys take their dv and
/// dk from the query rows at or after them (the rows before see none of them). Each head's P is
/// recomputed into `probs` (T, T scratch) from q and k, with the forward's window and cap.
func attentionBackward(_ dq: FloatBuffer,     // (T, H·d_h)
                       _ dk: FloatBuffer,     // (T, G·d_h)
                       _ dv: FloatBuffer,     // (T, G·d_h)
                       _ dout: FloatInput,    // (T, H·d_h)
                       _ probs: FloatBuffer,  // (T, T) scratch
                       _ q: FloatInput,       // (T, H·d_h)
                       _ k: FloatInput,       // (T, G·d_h)
                       _ v: FloatInput,       // (T, G·d_h)
                       rows T: Int, heads: Int, kvHeads: Int, headDim: Int, scale: Float, window: Int? = nil,
                       softcap: Float? = nil) {
    let qWidth = heads * headDim, kvWidth = kvHeads * headDim, group = heads / kvHeads
    // (T, T) dP, then dS; row t is written up to the end of its block's keys, which covers every
    // entry the key blocks below read (they start where the query blocks start).
    let ds = UnsafeMutablePointer<Float>.allocate(capacity: T * T)
    defer { ds.deallocate() }
    // A block's raw scores q·k, for the soft-capping's slope.
    let raw = softcap == nil ? nil : UnsafeMutablePointer<Float>.allocate(capacity: CausalBlocks.rows * T)
    defer { raw?.deallocate() }
    for h in 0..<heads {
        let g = h / group, p = probs
        attentionProbabilities(p, head: h, q, k, rows: T, heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale,
                               window: window, softcap: softcap)
        for block in CausalBlocks(T) {
            let first = block.lowerBound, seen = block.upperBound
            let dsBlock = ds + first * T, pBlock = p + first * T
            BLAS.gemmABt(dsBlock, dout + first * qWidth + h * headDim, v + g * headDim,
                         m: block.count, n: seen, k: headDim, lda: qWidth, ldb: kvWidth, ldc: T)
            if let raw {
                BLAS.gemmABt(raw, q + first * qWidth + h * headDim, k + g * headDim,
                             m: block.count, n: seen, k: headDim, lda: qWidth, ldb: kvWidth, ldc: T)
            }
            parallelChunks(block.count, minimumPerThread: 16) { range in
                for r in range {
                    let t = first + r, pr = pBlock + r * T, dr = dsBlock + r * T
                    var dot: Float = 0
                    for j in 0...t { dot += pr[j] * dr[j] }
                    for j in 0...t { dr[j] = pr[j] * (dr[j] - dot) * scale }
                    if let softcap, let raw {
                        let rr = raw + r * T, inner = scale / softcap
                        for j in 0...t {
                            let capped = tanhf(inner * rr[j])
                            dr[j] *= 1 - capped * capped
                        }
                    }
                    (dr + t + 1).update(repeating: 0, count: seen - t - 1)
                }
            }
            BLAS.gemmAB(dq + first * qWidth + h * headDim, dsBlock, k + g * headDim,
                        m: block.count, n: headDim, k: seen, lda: T, ldb: kvWidth, ldc: qWidth, accumulate: true)
        }
        for keys in CausalBlocks(T) {
            let j0 = keys.lowerBound, later = T - j0   // query rows j0 ..< T see these keys
            BLAS.gemmAtB(dv + j0 * kvWidth + g * headDim, p + j0 * T + j0, dout + j0 * qWidth + h * headDim,
                         m: keys.count, n: headDim, k: later, lda: T, ldb: qWidth, ldc: kvWidth, accumulate: true)
            BLAS.gemmAtB(dk + j0 * kvWidth + g * headDim, ds + j0 * T + j0, q + j0 * qWidth + h * headDim,
                         m: keys.count, n: headDim, k: later, lda: T, ldb: qWidth, ldc: kvWidth, accumulate: true)
        }
    }
}

// MARK: - Activations

/// SwiGLU: out = silu(gate) ⊙ up, silu(z) = z · σ(z).
func swigluForward(_ out: FloatBuffer,   // (T, F)
                   _ gate: FloatInput,   // (T, F)
                   _ up: FloatInput,     // (T, F)
                   count: Int) {
    Ops.siluMul(out, gate, up, count: count)
}

/// dgate += dout ⊙ up ⊙ σ(z)(1 + z(1 − σ(z))); dup += dout ⊙ silu(z).
func swigluBackward(_ dgate: FloatBuffer,  // (T, F)
                    _ dup: FloatBuffer,    // (T, F)
                    _ dout: FloatInput,    // (T, F)
                    _ gate: FloatInput,    // (T, F)
                    _ up: FloatInput,      // (T, F)
                    count: Int) {
    for i in 0..<count {
        let z = gate[i]
        let sigma = 1 / (1 + expf(-z))
        dgate[i] += dout[i] * up[i] * sigma * (1 + z * (1 - sigma))
        dup[i] += dout[i] * z * sigma
    }
}

/// GeGLU (Gemma): out = gelu(gate) ⊙ up with GELU's tanh approximation, gelu(z) = z·σ(2u),
/// u = √(2/π)(z + 0.044715z³).
func gegluForward(_ out: FloatBuffer,   // (T, F)
                  _ gate: FloatInput,   // (T, F)
                  _ up: FloatInput,     // (T, F)
                  count: Int) {
    Ops.geluTanhMul(out, gate, up, count: count)
}

/// dgate += dout ⊙ up ⊙ gelu'(z), gelu'(z) = s + z·s(1 − s)·2u'(z) with s = σ(2u);
/// dup += dout ⊙ gelu(z).
func gegluBackward(_ dgate: FloatBuffer,  // (T, F)
                   _ dup: FloatBuffer,    // (T, F)
                   _ dout: FloatInput,    // (T, F)
                   _ gate: FloatInput,    // (T, F)
                   _ up: FloatInput,      // (T, F)
                   count: Int) {
    let c = Ops.geluTanhScale, cubic = Ops.geluTanhCubic
    for i in 0..<count {
        let z = gate[i]
        let s = 1 / (1 + expf(-c * (z + cubic * z * z * z)))
        let slope = s + z * s * (1 - s) * c * (1 + 3 * cubic * z * z)
        dgate[i] += dout[i] * up[i] * slope
        dup[i] += dout[i] * z * s
    }
}

/// out = max(x, 0).
func reluForward(_ out: FloatBuffer,  // (count)
                 _ x: FloatInput,     // (count)
                 count: Int) {
    for i in 0..<count { out[i] = x[i] > 0 ? x[i] : 0 }
}

/// dx += dout where x > 0 (the derivative at 0 is taken as 0, as PyTorch does).
func reluBackward(_ dx: FloatBuffer,   // (count)
                  _ dout: FloatInput,  // (count)
                  _ x: FloatInput,     // (count)
                  count: Int) {
    for i in 0..<count where x[i] > 0 { dx[i] += dout[i] }
}

// MARK: - Softmax cross-entropy

/// losses[r] = logsumexp(logits[r]) − logits[r, targets[r]] (natural log, summed in Double);
/// probs[r] = softmax(logits[r]). `probs` may be `logits`.
func crossEntropyForward(_ losses: UnsafeMutablePointer<Double>,  // (R)
                         _ probs: FloatBuffer,                    // (R, V)
                         _ logits: FloatInput,                    // (R, V)
                         _ targets: UnsafePointer<Int>,           // (R)
                         rows: Int, vocab: Int) {
    parallelChunks(rows) { range in
        for r in range {
            let row = logits + r * vocab, out = probs + r * vocab
            var maxValue = -Float.infinity
            for i in 0..<vocab where row[i] > maxValue { maxValue = row[i] }
            var sum: Double = 0
            for i in 0..<vocab { sum += Double(expf(row[i] - maxValue)) }
            let lse = Double(maxValue) + Foundation.log(sum)
            losses[r] = lse - Double(row[targets[r]])
            let shift = Float(lse)
            for i in 0..<vocab { out[i] = expf(row[i] - shift) }
        }
    }
}

/// dlogits[r] += dlosses[r] · (probs[r] − onehot(targets[r])).
func crossEntropyBackward(_ dlogits: FloatBuffer,         // (R, V)
                          _ dlosses: FloatInput,          // (R)
                          _ probs: FloatInput,            // (R, V)
                          _ targets: UnsafePointer<Int>,  // (R)
                          rows: Int, vocab: Int) {
    parallelChunks(rows) { range in
        for r in range {
            let scale = dlosses[r], p = probs + r * vocab, d = dlogits + r * vocab
            for i in 0..<vocab { d[i] += scale * p[i] }
            d[targets[r]] -= scale
        }
    }
}
