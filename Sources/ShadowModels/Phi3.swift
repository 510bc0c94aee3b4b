import ShadowFormats
import ShadowKernels

// Phi-3 (`phi3` in config.json and in GGUF files): a Llama block (RMSNorm, rotate-half RoPE,
// grouped-query attention, SwiGLU, no biases) whose projections are stored fused: q, k and v
// in one matrix (qkv_proj / attn_qkv: the rows of q, then of k, then of v) and gate and up in
// another (gate_up_proj / ffn_up: gate rows first; transformers chunks it in two, llama.cpp's
// SwiGLU splits it the same way). They are cut apart at load, so every Llama path — sparse
// skipping, branches, packed rows, gradients — runs Phi-3 unchanged. Its RoPE may rotate part of
// each head (Phi-4-mini) and use LongRoPE (Phi-3-128k, Phi-3.5): see RopeConfig.

extension TensorTable {
    /// Reads the `[Σ rows, cols]` tensor `name` and cuts it into consecutive row blocks of the
    /// given heights, each stored in `weightDType`.
    func rowBlocks(_ name: String, rows: [Int], cols: Int) throws -> [WeightMatrix] {
        let whole = try matrix(name, rows: rows.reduce(0, +), cols: cols)
        var start = 0
        return rows.map { height in
            let part = Matrix(rows: height, cols: cols)
            part.pointer.update(from: whole.row(start), count: height * cols)
            start += height
            return WeightMatrix(part, dtype: weightDType)
        }
    }

    /// q, k and v cut from a fused `[H·d_h + 2·G·d_h, d]` tensor.
    func fusedAttention(_ name: String, shape s: TransformerShape) throws -> (WeightMatrix, WeightMatrix, WeightMatrix) {
        let parts = try rowBlocks(name, rows: [s.attentionWidth, s.kvWidth, s.kvWidth], cols: s.hiddenSize)
        return (parts[0], parts[1], parts[2])
    }

    /// gate and up cut from a fused `[2·F, d]` tensor, gate rows first.
    func fusedGateUp(_ name: String, shape s: TransformerShape) throws -> (WeightMatrix, WeightMatrix) {
        let parts = try rowBlocks(name, rows: [s.ffnSize, s.ffnSize], cols: s.hiddenSize)
        return (parts[0], parts[1])
    }
}

extension LlamaConfig {
    /// Phi-3 stores q/k/v and gate/up fused.
    var fusedProjections: Bool { modelType == "phi3" }
}
