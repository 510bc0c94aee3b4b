import Foundation
import ShadowKernels

/// Causal multi-head attention with grouped KV heads over a KV cache. Shared by every
/// architecture: they differ only in how q, k and v are produced (RoPE or not, biases).
public enum CausalAttention {
    /// Stores the new keys and values of one layer at positions `past ..< past + tokens`.
    /// k, v: (T, G·d_h).
    public static func store(cache: KVCache, layer: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                             past: Int, tokens: Int) {
        let width = cache.shape.kvWidth
        (cache.keys[layer].row(past)).update(from: k, count: tokens * width)
        (cache.values[layer].row(past)).update(from: v, count: tokens * width)
    }

    /// out[t, h, :] = Σ_j softmax_j(q[t,h]·K[j,g] · scale) V[j,g] for j ≤ past + t, g = h / groupSize.
    /// out: (T, H·d_h); q: (T, H·d_h). The cache must already hold positions up to past + T.
    public static func attend(_ out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
                              cache: KVCache, layer: Int, past: Int, tokens: Int, scale: Float) {
        let shape = cache.shape
        let heads = shape.heads, headDim = shape.headDim, kvWidth = shape.kvWidth
        let group = shape.groupSize
        let keys = UnsafePointer(cache.keys[layer].pointer)
        let values = UnsafePointer(cache.values[layer].pointer)
        let qWidth = heads * headDim
        let maxSpan = past + tokens
        parallelChunks(heads * tokens) { range in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: maxSpan)
            defer { scores.deallocate() }
            for item in range {
                let t = item / heads, h = item % heads
                let g = h / group
                let span = past + t + 1
                let qh = q + t * qWidth + h * headDim
                for j in 0..<span {
                    scores[j] = GEMV.dot(qh, keys + j * kvWidth + g * headDim, headDim) * scale
                }
                Ops.softmax(scores, span)
                let o = out + t * qWidth + h * headDim
                o.update(repeating: 0, count: headDim)
                for j in 0..<span {
                    let p = scores[j]
                    let vj = values + j * kvWidth + g * headDim
                    for i in 0..<headDim { o[i] += p * vj[i] }
                }
            }
        }
    }
}
