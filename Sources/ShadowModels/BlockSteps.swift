import ShadowKernels

/// The steps of a decoder block that every architecture shares, with the layer's sparsity plan
/// applied: the same code runs dense (no plan), skipping pruned units, or zeroing them.
enum BlockSteps {
    /// Attention half: projections of the kept heads (and the KV groups they read), RoPE when
    /// given (per token: its query heads, then its key heads; it may normalise them first), the
    /// cache update, attention, and x += A W_O (+ b). `xn` is the block's normalised input,
    /// (T, d); `sparsity` observes the full A (T, H·d_h) of a dense layer, its first
    /// `promptRows` rows being the prompt's. With `branches`, each branch's positions start at the
    /// context's end and it attends to the context and to itself. `window`: sliding-window
    /// attention's (see `CausalAttention.attend`). `outputNorm` (Gemma) normalises A W_O (+ b) in
    /// place, (T, d) rows, before it is added to x; `softcap` (Gemma 2) caps the scores.
    static func attention(x: UnsafeMutablePointer<Float>, xn: UnsafePointer<Float>,
                          q: Linear, k: Linear, v: Linear, output: TransposedLinear,
                          plan: LayerPlan?, execution: SparseExecution, sparsity: (any SparsityController)?, promptRows: Int,
                          cache: KVCache, layer: Int, past: Int, tokens T: Int, branches: Branches? = nil, scale: Float,
                          window: Int? = nil, rope: ((UnsafeMutablePointer<Float>, _ heads: Int, _ position: Int, _ keys: Bool) -> Void)?,
                          outputNorm: ((UnsafeMutablePointer<Float>, _ rows: Int) -> Void)? = nil, softcap: Float? = nil) {
        let s = cache.shape, scratch = cache.scratch
        let keepAllKV = sparsity?.keepsAllKeysAndValues ?? false
        var plan = plan ?? .dense
        plan.prepare(for: s)
        let skipping = execution == .skip && plan.heads != nil
        let heads = skipping ? plan.heads : nil
        let groups = skipping && !keepAllKV ? plan.kvGroups : nil
        let nq = heads?.count ?? s.heads, ng = groups?.count ?? s.kvHeads
        let qb = cache.buffer("q", rows: T, cols: nq * s.headDim)
        let kb = cache.buffer("k", rows: T, cols: ng * s.headDim)
        let vb = cache.buffer("v", rows: T, cols: ng * s.headDim)
        let a = cache.buffer("a", rows: T, cols: max(nq, 1) * s.headDim)
        if let rows = heads == nil ? nil : plan.attentionRows {
            q.apply(qb, xn, tokens: T, rows: rows, scratch: scratch)
        } else {
            q.apply(qb, xn, tokens: T, scratch: scratch)
        }
        if let rows = groups == nil ? nil : plan.kvRows {
            k.apply(kb, xn, tokens: T, rows: rows, scratch: scratch)
            v.apply(vb, xn, tokens: T, rows: rows, scratch: scratch)
        } else {
            k.apply(kb, xn, tokens: T, scratch: scratch)
            v.apply(vb, xn, tokens: T, scratch: scratch)
        }
        if let rope {
            for t in 0..<T {
                let position = branches.position(of: t, past: past)
                rope(qb + t * nq * s.headDim, nq, position, false)
                rope(kb + t * ng * s.headDim, ng, position, true)
            }
        }
        CausalAttention.store(cache: cache, layer: layer, k: kb, v: vb, past: past, tokens: T, groups: groups)
        CausalAttention.attend(a, q: qb, cache: cache, layer: layer, past: past, tokens: T, branches: branches, scale: scale,
                               heads: heads, window: window, softcap: softcap)
        if execution == .zero, let kept = plan.heads {
            zeroUnits(a, kept: kept.map(Int32.init), units: s.heads, width: s.headDim, tokens: T)
        }
        sparsity?.observe(layer: layer, input: x, attention: a, tokens: promptRows, position: past)
        let projected = outputNorm == nil ? x : cache.buffer("attention.out", rows: T, cols: s.hiddenSize)
        if let rows = heads == nil ? nil : plan.attentionRows {
            output.apply(projected, a, tokens: T, rows: rows, accumulate: outputNorm == nil, scratch: scratch)
        } else {
            output.apply(projected, a, tokens: T, accumulate: outputNorm == nil, scratch: scratch)
        }
        if let outputNorm {
            outputNorm(projected, T)
            Ops.add(x, projected, count: T * s.hiddenSize)
        }
    }

    /// Weight bytes one decoded token reads in a block's attention and MLP under `plan`.
    static func decodeBytes(q: WeightMatrix, k: WeightMatrix, v: WeightMatrix, output: WeightMatrix,
                            mlpRows: [WeightMatrix], plan: LayerPlan?, keepingAllKeysAndValues: Bool, shape s: TransformerShape) -> Int {
        func rowBytes(_ w: WeightMatrix) -> Int { w.rowBytes }
        var plan = plan ?? .dense
        plan.prepare(for: s)
        let qRows = plan.attentionRows?.count ?? q.rows
        let kvRows = keepingAllKeysAndValues ? k.rows : plan.kvRows?.count ?? k.rows
        let neurons = plan.neurons?.count ?? s.ffnSize
        // A matrix read at all reads its q8 column factors whole.
        func factors(_ matrices: [WeightMatrix], rows: Int) -> Int { rows > 0 ? matrices.reduce(0) { $0 + $1.factorBytes } : 0 }
        return qRows * (rowBytes(q) + rowBytes(output)) + kvRows * (rowBytes(k) + rowBytes(v))
            + mlpRows.reduce(0) { $0 + neurons * rowBytes($1) }
            + factors([q, output], rows: qRows) + factors([k, v], rows: kvRows) + factors(mlpRows, rows: neurons)
    }

    /// Zeroes, in a (T, units·width) buffer, the units not listed in `kept` (ascending).
    static func zeroUnits(_ buffer: UnsafeMutablePointer<Float>, kept: [Int32], units: Int, width: Int, tokens: Int) {
        var keep = [Bool](repeating: false, count: units)
        for u in kept { keep[Int(u)] = true }
        for t in 0..<tokens {
            let row = buffer + t * units * width
            for u in 0..<units where !keep[u] { (row + u * width).update(repeating: 0, count: width) }
        }
    }
}
