import Foundation
import ShadowKernels

// Shared by every architecture (Llama family and OPT): the last step of a forward pass.

/// The final norm and the vocabulary projection, for the rows the caller asked for.
enum LMHead {
    /// x: (T, width), the residual stream after the last block.
    static func logits(x: UnsafeMutablePointer<Float>, tokens T: Int, width: Int,
                       norm: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void,
                       head: WeightMatrix, normed: UnsafeMutablePointer<Float>, scratch: Scratch,
                       request: LogitsRequest, blockRows: Int? = nil, sliceRows: Int? = nil, softcap: Float? = nil) -> [Float] {
        let vocab = head.rows
        switch request {
        case .none:
            return []
        case .last:
            norm(normed, x + (T - 1) * width, 1)
            var out = [Float](repeating: 0, count: vocab)
            out.withUnsafeMutableBufferPointer {
                Linear(weight: head).apply($0.baseAddress!, normed, tokens: 1, scratch: scratch)
                if let softcap { Ops.softcap($0.baseAddress!, count: vocab, cap: softcap) }
            }
            return out
        case .all, .from:
            let first = if case .from(let row) = request { row } else { 0 }
            guard first >= 0 && first < T else { fatalError("logits from a row of this pass") }
            let rows = T - first
            norm(normed, x + first * width, rows)
            var out = [Float](repeating: 0, count: rows * vocab)
            out.withUnsafeMutableBufferPointer {
                Linear(weight: head).apply($0.baseAddress!, normed, tokens: rows, scratch: scratch)
                if let softcap { Ops.softcap($0.baseAddress!, count: rows * vocab, cap: softcap) }
            }
            return out
        case .targetLogProbabilities(let targets):
            // Checked here for every path: the last target is never embedded, so nothing else would.
            guard targets.count == T, targets.allSatisfy({ (0..<vocab).contains($0) }) else {
                fatalError("one target per token, each inside the vocabulary")
            }
            norm(normed, x, T)
            let inputs = head.cols   // the normed rows' width: OPT's project_out may narrow them
            let blockRows = min(T, blockRows ?? Self.logProbabilityBlockRows(vocabulary: vocab))
            // 16-bit heads on the BLAS path are widened a slice at a time; short inputs and bf16
            // product kernels take Linear's own path.
            let path = ProductPath(tokens: T, head)
            if path == .blas && head.dtype != .f32 {
                return slicedTargetLogProbabilities(path.input(normed, count: T * inputs, head, scratch: scratch), tokens: T,
                                                    targets: targets, head: head, scratch: scratch, sliceRows: sliceRows, softcap: softcap)
            }
            let rows = scratch.buffer("logits.block", rows: blockRows, cols: vocab)
            var out = [Float](repeating: 0, count: T)
            out.withUnsafeMutableBufferPointer { out in
                for first in stride(from: 0, to: T, by: blockRows) {
                    let n = min(blockRows, T - first)
                    Linear(weight: head).apply(rows, normed + first * inputs, tokens: n, scratch: scratch)
                    parallelChunks(n) { range in
                        for r in range {
                            let row = rows + r * vocab
                            if let softcap { Ops.softcap(row, count: vocab, cap: softcap) }
                            out[first + r] = Float(Double(row[targets[first + r]]) - Ops.logSumExp(row, vocab))
                        }
                    }
                }
            }
            return out
        }
    }

    /// Target log-probabilities of a 16-bit head on the BLAS path: the head is widened a slice of
    /// `sliceRows` vocabulary rows at a time (about 64 MB of fp32; all of it at once would be
    /// Gemma 3 4B's 2.7 GB), each slice multiplied with the rows, and every row's log-sum-exp
    /// gathered across slices (running maximum and rescaled sum, in Double). The targets are
    /// checked by `logits`, the one caller outside the tests.
    static func slicedTargetLogProbabilities(_ x: UnsafePointer<Float>, tokens T: Int, targets: [Int], head: WeightMatrix,
                                             scratch: Scratch, sliceRows: Int?, tokenRows: Int? = nil, softcap: Float?) -> [Float] {
        let vocab = head.rows, inputs = head.cols
        guard T > 0, vocab > 0 else { return [Float](repeating: 0, count: T) }
        let slice = min(vocab, max(1, sliceRows ?? max(256, WeightMatrix.widenedSliceValues / max(inputs, 1))))
        let tokenRows = min(T, max(1, tokenRows ?? max(16, WeightMatrix.widenedSliceValues / slice)))   // a logits block of at most ~64 MB
        let logits = scratch.buffer("logits.slice", rows: tokenRows, cols: slice)
        var maxima = [Double](repeating: -.infinity, count: T), sums = [Double](repeating: 0, count: T)
        var picked = [Float](repeating: 0, count: T)
        maxima.withUnsafeMutableBufferPointer { maxima in
            sums.withUnsafeMutableBufferPointer { sums in
                picked.withUnsafeMutableBufferPointer { picked in
                    head.forEachFloatSlice(sliceRows: slice, scratch: { scratch.buffer("widened", count: $0) }) { vocabRows, widened in
                        let first = vocabRows.lowerBound, n = vocabRows.count
                        for start in stride(from: 0, to: T, by: tokenRows) {
                            let m = min(tokenRows, T - start)
                            BLAS.gemmABt(logits, x + start * inputs, widened, m: m, n: n, k: inputs)
                            parallelChunks(m) { range in
                                for r in range {
                                    let row = logits + r * n, t = start + r
                                    if let softcap { Ops.softcap(row, count: n, cap: softcap) }
                                    let sliceMax = VectorExp.maximum(row, n)
                                    let joint = max(maxima[t], Double(sliceMax))
                                    sums[t] = sums[t] * exp(maxima[t] - joint)
                                        + VectorExp.sumExp(row, n, shift: sliceMax) * exp(Double(sliceMax) - joint)
                                    maxima[t] = joint
                                    if (first ..< first + n).contains(targets[t]) { picked[t] = row[targets[t] - first] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (0..<T).map { Float(Double(picked[$0]) - (maxima[$0] + log(sums[$0]))) }
    }

    /// Rows of logits `targetLogProbabilities` holds at once: 256, fewer for vocabularies past
    /// 49,152 so the block stays near 50 MB (Gemma's 262,144: 48 rows).
    static func logProbabilityBlockRows(vocabulary: Int) -> Int {
        min(256, max(16, (256 * 49_152) / max(vocabulary, 1)))
    }
}
