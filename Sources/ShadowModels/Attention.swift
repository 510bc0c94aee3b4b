import Foundation
import ShadowKernels

/// Causal multi-head attention with grouped KV heads over a KV cache. Shared by every
/// architecture: they differ only in how q, k and v are produced (RoPE or not, biases).
public enum CausalAttention {
    /// Stores the new keys and values of one layer at positions `past ..< past + tokens`.
    /// k, v: (T, n·d_h) for the listed KV groups (all G when `groups` is nil), in that order.
    public static func store(cache: KVCache, layer: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                             past: Int, tokens: Int, groups: [Int]? = nil) {
        let headDim = cache.shape.headDim
        let count = groups?.count ?? cache.shape.kvHeads   // no array: decode allocates nothing
        let stride = count * headDim
        for i in 0..<count {
            let g = groups?[i] ?? i
            let keyBlock = cache.keys(layer: layer, group: g), valueBlock = cache.values(layer: layer, group: g)
            for t in 0..<tokens {
                cache.write(keyBlock, position: past + t, from: k + t * stride + i * headDim)
                cache.write(valueBlock, position: past + t, from: v + t * stride + i * headDim)
            }
        }
    }

    /// out[t, h, :] = Σ_j softmax_j(q[t,h]·K[j,g] · scale) V[j,g] for j ≤ past + t, g = h / groupSize.
    /// The cache must already hold positions up to past + T. `heads` lists the query heads to
    /// compute (nil: all H); q and out hold just those heads, in that order: (T, n·d_h). With
    /// `branches`, a token of a branch starting at row b sees keys 0 ..< past + prefix and
    /// past + b … past + t. With a `window` (sliding-window attention), a token at position p
    /// sees only the keys at positions p − window + 1 … p. With a `softcap` c (Gemma 2) the scaled
    /// scores s become c · tanh(s / c) before the softmax.
    public static func attend(_ out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
                              cache: KVCache, layer: Int, past: Int, tokens: Int, branches: Branches? = nil,
                              scale: Float, heads: [Int]? = nil, window: Int? = nil, softcap: Float? = nil) {
        if tokens > gemvTokenLimit || branches != nil {
            attendWithGEMM(out, q: q, cache: cache, layer: layer, past: past, tokens: tokens, branches: branches,
                           scale: scale, heads: heads, window: window, softcap: softcap)
            return
        }
        let shape = cache.shape
        let headCount = heads?.count ?? shape.heads
        let headDim = shape.headDim
        let group = shape.groupSize
        let half = cache.dtype == .f16
        let qWidth = headCount * headDim
        let maxSpan = past + tokens
        let scores = cache.buffer("attention.scores", rows: headCount * tokens, cols: maxSpan)
        parallelChunks(headCount * tokens) { range in
            for item in range {
                let t = item / headCount, i = item % headCount
                let g = (heads?[i] ?? i) / group
                // Keys first ..< first + span: all up to the token's own, or the window's.
                let end = past + t + 1, first = window.map { max(0, end - $0) } ?? 0, span = end - first
                let qh = q + t * qWidth + i * headDim
                let p = scores + item * maxSpan
                let o = out + t * qWidth + i * headDim
                let keyBlock = cache.keys(layer: layer, group: g), valueBlock = cache.values(layer: layer, group: g)
                if half {
                    HalfVectors.dotRows(p, keyBlock.assumingMemoryBound(to: UInt16.self) + first * headDim, qh, rows: span, cols: headDim)
                    for j in 0..<span { p[j] *= scale }
                } else {
                    let keys = UnsafePointer(keyBlock.assumingMemoryBound(to: Float.self)) + first * headDim
                    for j in 0..<span { p[j] = GEMV.dot(qh, keys + j * headDim, headDim) * scale }
                }
                if let softcap { Ops.softcap(p, count: span, cap: softcap) }
                Ops.softmax(p, span)
                o.update(repeating: 0, count: headDim)
                if half {
                    HalfVectors.accumulateRows(o, valueBlock.assumingMemoryBound(to: UInt16.self) + first * headDim, p, rows: span, cols: headDim)
                } else {
                    let values = UnsafePointer(valueBlock.assumingMemoryBound(to: Float.self)) + first * headDim
                    for j in 0..<span { Ops.axpy(o, values + j * headDim, p[j], count: headDim) }
                }
            }
        }
    }

    /// Prefill: per head, S = Q_h K_gᵀ and O_h = softmax(S) V_g as GEMMs, in blocks of query
    /// rows that each multiply only the keys they can see: a long prefill then skips most of
    /// the masked triangle (half the attention arithmetic at 2048 tokens) instead of computing it
    /// and zeroing it. An fp16 cache widens each group's keys and values once, for all the heads
    /// that read them.
    ///
    /// A branch other than the first sees two runs of keys, the context's and its own, so its
    /// scores and outputs take two GEMMs each: scores columns 0 ..< c for the c context keys and
    /// c ..< c + n for the branch's own first n keys. Either way score column j is the key at
    /// position j, so a `window` masks each row's columns below its position − window + 1 (and
    /// a block of contiguous keys skips the columns none of its rows sees).
    static func attendWithGEMM(_ out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, cache: KVCache,
                               layer: Int, past: Int, tokens T: Int, branches: Branches?, scale: Float, heads: [Int]?,
                               window: Int?, softcap: Float?) {
        let shape = cache.shape
        let list = heads ?? Array(0..<shape.heads)
        let headDim = shape.headDim, qWidth = list.count * headDim
        let span = past + T
        // One block's rows at a time: a long prefill never holds a (T, span) score matrix.
        let scores = cache.buffer("attention.scores", rows: min(T, CausalBlocks.rows), cols: span)
        var loadedGroup = -1
        var keys = UnsafePointer<Float>(scores), values = UnsafePointer<Float>(scores)
        for (i, h) in list.enumerated() {
            let g = h / shape.groupSize
            if g != loadedGroup {
                keys = cache.widened(cache.keys(layer: layer, group: g), count: span, name: "attention.keys")
                values = cache.widened(cache.values(layer: layer, group: g), count: span, name: "attention.values")
                loadedGroup = g
            }
            for run in branches?.runs(past: past) ?? [(0 ..< T, past)] {
                // The run's own keys are in the cache from row `own`; every row also sees the
                // `context` keys before them, which directly precede them unless this is a
                // branch after the first.
                let own = past + run.rows.lowerBound, context = run.context
                for local in CausalBlocks(run.rows.count) {
                    let first = run.rows.lowerBound + local.lowerBound, rows = local.count
                    let seen = context + local.upperBound   // keys visible to the block's last row
                    // The first key the block's first row sees in its window (contiguous keys only).
                    let from = own == context ? window.map { max(0, context + local.lowerBound + 1 - $0) } ?? 0 : 0
                    let s = scores, qBlock = q + first * qWidth + i * headDim
                    let o = out + first * qWidth + i * headDim
                    if own == context {
                        // S (rows, seen; row stride span) = Q_h block · K_g[from ..< seen]ᵀ, columns from `from`
                        BLAS.gemmABt(s + from, qBlock, keys + from * headDim, m: rows, n: seen - from, k: headDim,
                                     lda: qWidth, ldb: headDim, ldc: span)
                    } else {
                        if context > 0 {
                            BLAS.gemmABt(s, qBlock, keys, m: rows, n: context, k: headDim, lda: qWidth, ldb: headDim, ldc: span)
                        }
                        BLAS.gemmABt(s + context, qBlock, keys + own * headDim, m: rows, n: local.upperBound, k: headDim,
                                     lda: qWidth, ldb: headDim, ldc: span)
                    }
                    parallelChunks(rows, minimumPerThread: 16) { range in
                        for r in range {
                            let row = s + r * span
                            let visible = context + local.lowerBound + r + 1
                            let lowest = window.map { max(0, visible - $0) } ?? 0   // the row's first key
                            (row + from).update(repeating: 0, count: lowest - from)
                            if let softcap {
                                Ops.softcap(row + lowest, count: visible - lowest, cap: softcap, factor: scale)
                                Ops.softmax(row + lowest, visible - lowest)
                            } else {
                                Ops.softmax(row + lowest, visible - lowest, scale: scale)
                            }
                            (row + visible).update(repeating: 0, count: seen - visible)
                        }
                    }
                    // O_h block (rows, d_h; row stride qWidth) = P (rows, seen) · V_g[visible keys]
                    if own == context {
                        BLAS.gemmAB(o, s + from, values + from * headDim, m: rows, n: headDim, k: seen - from,
                                    lda: span, ldb: headDim, ldc: qWidth)
                    } else {
                        if context > 0 {
                            BLAS.gemmAB(o, s, values, m: rows, n: headDim, k: context, lda: span, ldb: headDim, ldc: qWidth)
                        }
                        BLAS.gemmAB(o, s + context, values + own * headDim, m: rows, n: headDim, k: local.upperBound,
                                    lda: span, ldb: headDim, ldc: qWidth, accumulate: context > 0)
                    }
                }
            }
        }
    }
}

/// The blocks of query rows a causal attention pass works in: each block multiplies only the keys
/// its last row can see. 128 rows are few enough that a block's masked corner is a small part of
/// its work and enough that each GEMM still runs at full speed.
public struct CausalBlocks: Sequence {
    public static let rows = 128
    let tokens: Int

    public init(_ tokens: Int) { self.tokens = tokens }

    public func makeIterator() -> AnyIterator<Range<Int>> {
        var first = 0
        return AnyIterator {
            guard first < tokens else { return nil }
            defer { first += Self.rows }
            return first ..< Swift.min(first + Self.rows, tokens)
        }
    }
}
