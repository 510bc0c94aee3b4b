import Foundation

/// The per-layer formulas of DESIGN §3, over one layer's activations and gradients. A head's
/// values are the d_h consecutive columns h·d_h ..< (h+1)·d_h of a (T, H·d_h) buffer; a neuron's
/// the column j of a (T, F) buffer. Sums run in Double over all T positions of the sample.
enum UnitScores {
    /// Per unit (a block of `unitWidth` consecutive columns of a (T, width) buffer): Σ_t |Σ_i x·y|.
    /// Heads: plainact's Σ_t |⟨A_{t,h}, G_{t,h}⟩|; neurons (unitWidth 1): Σ_t |N_{t,j} GN_{t,j}|.
    static func absoluteInnerProducts(_ x: [Float], _ y: [Float], tokens: Int, width: Int, unitWidth: Int) -> [Float] {
        precondition(x.count == tokens * width && y.count == x.count)
        var out = [Double](repeating: 0, count: width / unitWidth)
        for t in 0..<tokens {
            for u in out.indices {
                var dot = 0.0
                for i in u * unitWidth..<(u + 1) * unitWidth { dot += Double(x[t * width + i]) * Double(y[t * width + i]) }
                out[u] += abs(dot)
            }
        }
        return out.map(Float.init)
    }

    /// Per unit: Σ_i mean_t (x_{t,i} y_{t,i})² over the unit's columns (fisher).
    static func meanSquaredProducts(_ x: [Float], _ y: [Float], tokens: Int, width: Int, unitWidth: Int) -> [Float] {
        precondition(x.count == tokens * width && y.count == x.count)
        var out = [Double](repeating: 0, count: width / unitWidth)
        for t in 0..<tokens {
            for i in 0..<width {
                let p = Double(x[t * width + i]) * Double(y[t * width + i])
                out[i / unitWidth] += p * p
            }
        }
        return out.map { Float($0 / Double(tokens)) }
    }

    /// Per unit: the L2 norm of its columns over all positions (grad_norm, l2_norm).
    static func norms(_ x: [Float], tokens: Int, width: Int, unitWidth: Int) -> [Float] {
        precondition(x.count == tokens * width)
        var out = [Double](repeating: 0, count: width / unitWidth)
        for t in 0..<tokens {
            for i in 0..<width { let v = Double(x[t * width + i]); out[i / unitWidth] += v * v }
        }
        return out.map { Float($0.squareRoot()) }
    }

    /// Per unit: log(1 + the number of positive entries in its columns) (nwot).
    static func logPositiveCounts(_ x: [Float], tokens: Int, width: Int, unitWidth: Int) -> [Float] {
        precondition(x.count == tokens * width)
        var counts = [Int](repeating: 0, count: width / unitWidth)
        for t in 0..<tokens {
            for i in 0..<width where x[t * width + i] > 0 { counts[i / unitWidth] += 1 }
        }
        return counts.map { Float(log(1 + Double($0))) }
    }

    /// Per unit (a block of `rowsPerUnit` consecutive rows of a (rows, cols) matrix): Σ |w ⊙ y|,
    /// or Σ w ⊙ y when `absolute` is false. Our W_O and W_down are stored transposed, so a head
    /// owns d_h rows of W_O and a neuron one row of W_down (snip, grasp, plainact_w).
    static func rowProducts(_ w: [Float], _ y: [Float], cols: Int, rowsPerUnit: Int, absolute: Bool) -> [Float] {
        precondition(w.count == y.count && w.count % (cols * rowsPerUnit) == 0)
        let units = w.count / (cols * rowsPerUnit)
        return (0..<units).map { u in
            var sum = 0.0
            for k in u * rowsPerUnit * cols..<(u + 1) * rowsPerUnit * cols {
                let p = Double(w[k]) * Double(y[k])
                sum += absolute ? abs(p) : p
            }
            return Float(sum)
        }
    }
}
