import Foundation

/// exp over eight lanes at once, for the passes over a whole vocabulary row (log-softmax
/// normalisers, KL divergence) that evaluation makes for every scored token and every sparse
/// model: libm's scalar `expf` made those passes a tenth of a sweep.
public enum VectorExp {
    public typealias V = SIMD8<Float>

    /// eˣ lane by lane, within 2 ulp of `expf` for x in [−87, 88]; below −87 (−∞ included) it is
    /// 0, above 88 it is e⁸⁸ (the float range ends just past it).
    @inline(__always)
    public static func exp(_ x: V) -> V {
        // Masked replacement rather than `clamped`/`pointwiseMin`, which the optimiser left as calls.
        let underflow = x .< -87
        var x = x
        x.replace(with: -87, where: x .< -87)
        x.replace(with: 88, where: x .> 88)
        // x = n·ln 2 + r with |r| ≤ ln 2 / 2. Adding 1.5·2²³ rounds x·log₂e to the nearest
        // integer n and leaves n in the low bits of the sum's representation.
        let shifter = V(repeating: 12_582_912)
        let t = x * 1.442_695_04 + shifter
        let n = t - shifter
        let r = x - n * 0.693_359_375 - n * -2.121_944_4e-4
        // Cephes' minimax polynomial for eʳ − 1 − r on that interval.
        var p = V(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_12e-1
        let e = p * (r * r) + r + 1
        // 2ⁿ built from its exponent bits: the shifted sum's bits are 0x4B40_0000 + n.
        let bits = unsafeBitCast(t, to: SIMD8<Int32>.self) &- (0x4B40_0000 - 127)
        var result = e * unsafeBitCast(bits &<< 23, to: V.self)
        result.replace(with: 0, where: underflow)
        return result
    }

    /// The largest of `n` values (−∞ for none).
    @inline(__always)
    public static func maximum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var best = V(repeating: -.infinity)
        var i = 0
        while i + 8 <= n {
            let v = load(x + i)
            best.replace(with: v, where: v .> best)
            i += 8
        }
        var m = best.max()
        while i < n { m = Swift.max(m, x[i]); i += 1 }
        return m
    }

    /// Σ exp(x[i] − shift), lanes summed in fp32 over blocks of 128 values and the blocks in fp64.
    @inline(__always)
    public static func sumExp(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Double {
        let s = V(repeating: shift)
        var total = 0.0
        var i = 0
        while i + 8 <= n {
            var lanes = V()
            let blockEnd = Swift.min(n & ~7, i + 128)
            while i < blockEnd {
                lanes += exp(load(x + i) - s)
                i += 8
            }
            total += Double(lanes.sum())
        }
        while i < n { total += Double(expf(x[i] - shift)); i += 1 }
        return total
    }

    /// x[i] ← exp(scale·x[i] − shift) in place; returns their sum (fp32 lanes: softmax rows are
    /// at most a context long). The attention softmax of a long prefill runs through here.
    @inline(__always)
    public static func exponentiate(_ x: UnsafeMutablePointer<Float>, _ n: Int, scale: Float, shift: Float) -> Float {
        let a = V(repeating: scale), s = V(repeating: shift)
        var lanes = V()
        var i = 0
        while i + 8 <= n {
            let e = exp(load(x + i) * a - s)
            UnsafeMutableRawPointer(x + i).storeBytes(of: e, as: V.self)
            lanes += e
            i += 8
        }
        var total = lanes.sum()
        while i < n { x[i] = expf(x[i] * scale - shift); total += x[i]; i += 1 }
        return total
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
}
