import Foundation
import ShadowKernels

/// Causal multi-head attention with grouped KV heads over a KV cache. Shared by every
/// architecture: they differ only in how q, k and v are produced (RoPE or not, biases).
public enum CausalAttention {
    /// Stores the new keys and values of one layer at positions `past ..< past + tokens`.
    /// k, v: (T, n·d_h) for the listed KV groups (all G when `groups` is nil), in that order.
    public static func store(cache: KVCache, layer: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                             past: Int, tokens: Int, groups: [Int]? = nil) {
        let width = cache.shape.kvWidth
        guard let groups else {
            (cache.keys[layer].row(past)).update(from: k, count: tokens * width)
            (cache.values[layer].row(past)).update(from: v, count: tokens * width)
            return
        }
        let headDim = cache.shape.headDim, stride = groups.count * headDim
        for t in 0..<tokens {
            let keyRow = cache.keys[layer].row(past + t), valueRow = cache.values[layer].row(past + t)
            for (i, g) in groups.enumerated() {
                (keyRow + g * headDim).update(from: k + t * stride + i * headDim, count: headDim)
                (valueRow + g * headDim).update(from: v + t * stride + i * headDim, count: headDim)
            }
        }
    }

    /// out[t, h, :] = Σ_j softmax_j(q[t,h]·K[j,g] · scale) V[j,g] for j ≤ past + t, g = h / groupSize.
    /// The cache must already hold positions up to past + T. `heads` lists the query heads to
    /// compute (nil: all H); q and out hold just those heads, in that order: (T, n·d_h).
    public static func attend(_ out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
                              cache: KVCache, layer: Int, past: Int, tokens: Int, scale: Float,
                              heads: [Int]? = nil) {
        if tokens > gemvTokenLimit {
            attendWithGEMM(out, q: q, cache: cache, layer: layer, past: past, tokens: tokens, scale: scale, heads: heads)
            return
        }
        let shape = cache.shape
        let headCount = heads?.count ?? shape.heads
        let headDim = shape.headDim, kvWidth = shape.kvWidth
        let group = shape.groupSize
        let keys = UnsafePointer(cache.keys[layer].pointer)
        let values = UnsafePointer(cache.values[layer].pointer)
        let qWidth = headCount * headDim
        let maxSpan = past + tokens
        let scores = cache.buffer("attention.scores", rows: headCount * tokens, cols: maxSpan)
        parallelChunks(headCount * tokens) { range in
            for item in range {
                let t = item / headCount, i = item % headCount
                let g = (heads?[i] ?? i) / group
                let span = past + t + 1
                let qh = q + t * qWidth + i * headDim
                let p = scores + item * maxSpan
                for j in 0..<span {
                    p[j] = GEMV.dot(qh, keys + j * kvWidth + g * headDim, headDim) * scale
                }
                Ops.softmax(p, span)
                let o = out + t * qWidth + i * headDim
                o.update(repeating: 0, count: headDim)
                for j in 0..<span {
                    Ops.axpy(o, values + j * kvWidth + g * headDim, p[j], count: headDim)
                }
            }
        }
    }

    /// Prefill: per head, S = Q_h K_gᵀ and O_h = softmax(S) V_g as GEMMs over the whole span,
    /// with the causal mask applied row by row before the softmax.
    static func attendWithGEMM(_ out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, cache: KVCache,
                               layer: Int, past: Int, tokens T: Int, scale: Float, heads: [Int]?) {
        let shape = cache.shape
        let list = heads ?? Array(0..<shape.heads)
        let headDim = shape.headDim, kvWidth = shape.kvWidth, qWidth = list.count * headDim
        let span = past + T
        let keys = UnsafePointer(cache.keys[layer].pointer)
        let values = UnsafePointer(cache.values[layer].pointer)
        let scores = cache.buffer("attention.scores", rows: T, cols: span)
        for (i, h) in list.enumerated() {
            let g = h / shape.groupSize
            // S (T, span) = Q_h (T, d_h; row stride qWidth) · K_g (span, d_h; row stride kvWidth)ᵀ
            BLAS.gemmABt(scores, q + i * headDim, keys + g * headDim, m: T, n: span, k: headDim,
                         lda: qWidth, ldb: kvWidth, ldc: span)
            parallelChunks(T, minimumPerThread: 16) { rows in
                for t in rows {
                    let row = scores + t * span
                    let visible = past + t + 1
                    for j in 0..<visible { row[j] *= scale }
                    Ops.softmax(row, visible)
                    (row + visible).update(repeating: 0, count: span - visible)
                }
            }
            // O_h (T, d_h; row stride qWidth) = P (T, span) · V_g (span, d_h; row stride kvWidth)
            BLAS.gemmAB(out + i * headDim, scores, values + g * headDim, m: T, n: headDim, k: span,
                        lda: span, ldb: kvWidth, ldc: qWidth)
        }
    }
}
