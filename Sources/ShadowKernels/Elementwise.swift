import Foundation
import CHalf

/// Row-wise normalisations, activations and small vector operations. Every function works on
/// raw buffers: outputs first, then inputs, then sizes (llm.c's convention).
public enum Ops {
    public typealias V = SIMD16<Float>

    /// The index of the first NaN or ±inf among `count` floats, or nil. Compares exponent bits as
    /// integers, 16 lanes at a time, so that checking every weight at load stays cheap.
    public static func firstNonFinite(_ x: UnsafePointer<Float>, count: Int) -> Int? {
        let exponent = SIMD16<UInt32>(repeating: 0x7F80_0000)
        let bits = UnsafeRawPointer(x)
        var i = 0
        while i + 16 <= count {
            let v = bits.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<UInt32>.self)
            if any((v & exponent) .== exponent) { break }
            i += 16
        }
        while i < count {
            if !x[i].isFinite { return i }
            i += 1
        }
        return nil
    }

    /// Whether every |x[i]| ≤ `limit` (a NaN is not): compared as bits, the sign cleared, since
    /// magnitudes of IEEE floats order as their bit patterns do (infinity and NaN above all).
    public static func allWithin(_ x: UnsafePointer<Float>, count: Int, magnitude limit: Float) -> Bool {
        let sign = SIMD16<UInt32>(repeating: 0x7FFF_FFFF), bound = SIMD16<UInt32>(repeating: limit.bitPattern)
        let bits = UnsafeRawPointer(x)
        var over = SIMDMask<SIMD16<Int32>>(repeating: false)
        var i = 0
        while i + 16 <= count {
            over .|= (bits.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<UInt32>.self) & sign) .> bound
            i += 16
        }
        if any(over) { return false }
        while i < count {
            if !(abs(x[i]) <= limit) { return false }
            i += 1
        }
        return true
    }

    /// out[t, :] = x[t, :] / rms(x[t, :]) * weight, for `rows` rows of width `n`.
    public static func rmsNorm(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                               _ weight: UnsafePointer<Float>, rows: Int, n: Int, eps: Float) {
        for t in 0..<rows {
            let xr = x + t * n, o = out + t * n
            let meanSquare = GEMV.dot(xr, xr, n) / Float(n)
            let scale = 1 / (meanSquare + eps).squareRoot()
            for i in 0..<n { o[i] = xr[i] * scale * weight[i] }
        }
    }

    /// out[t, :] = (x[t, :] − mean) / sqrt(var + eps) * weight + bias (biased variance, as PyTorch).
    public static func layerNorm(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                 _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>,
                                 rows: Int, n: Int, eps: Float) {
        for t in 0..<rows {
            let xr = x + t * n, o = out + t * n
            var sum: Float = 0
            for i in 0..<n { sum += xr[i] }
            let mean = sum / Float(n)
            var sq: Float = 0
            for i in 0..<n { let d = xr[i] - mean; sq += d * d }
            let inv = 1 / (sq / Float(n) + eps).squareRoot()
            for i in 0..<n { o[i] = (xr[i] - mean) * inv * weight[i] + bias[i] }
        }
    }

    /// In-place softmax of `scale`·x over `n` values (scale > 0); leaves probabilities.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, _ n: Int, scale: Float = 1) {
        guard n > 0 else { return }
        let shift = VectorExp.maximum(x, n) * scale
        let inv = 1 / VectorExp.exponentiate(x, n, scale: scale, shift: shift)
        for i in 0..<n { x[i] *= inv }
    }

    /// log Σ exp(x) of `n` values, computed stably.
    public static func logSumExp(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
        let maxValue = VectorExp.maximum(x, n)
        return Double(maxValue) + log(VectorExp.sumExp(x, n, shift: maxValue))
    }

    /// SwiGLU: out[i] = silu(gate[i]) · up[i].
    /// Eight lanes at a time with the vector exp (a PIQA evaluation 7% faster than with libm's
    /// `expf`). `out` may be `gate`.
    public static func siluMul(_ out: UnsafeMutablePointer<Float>, _ gate: UnsafePointer<Float>,
                               _ up: UnsafePointer<Float>, count: Int) {
        typealias W = VectorExp.V
        var i = 0
        while i + 8 <= count {
            let g = UnsafeRawPointer(gate + i).loadUnaligned(as: W.self)
            let u = UnsafeRawPointer(up + i).loadUnaligned(as: W.self)
            UnsafeMutableRawPointer(out + i).storeBytes(of: g / (1 + VectorExp.exp(-g)) * u, as: W.self)
            i += 8
        }
        for i in i..<count {
            let g = gate[i]
            out[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    /// GeGLU with GELU's tanh approximation (Gemma): out[i] = gelu(gate[i]) · up[i], where
    /// gelu(z) = ½z(1 + tanh u), u = √(2/π)(z + 0.044715z³), computed as z·σ(2u) — the same
    /// identity — so it shares SiLU's vector exp. `out` may be `gate`.
    public static func geluTanhMul(_ out: UnsafeMutablePointer<Float>, _ gate: UnsafePointer<Float>,
                                   _ up: UnsafePointer<Float>, count: Int) {
        typealias W = VectorExp.V
        let c = W(repeating: geluTanhScale), cubic = W(repeating: geluTanhCubic)
        var i = 0
        while i + 8 <= count {
            let g = UnsafeRawPointer(gate + i).loadUnaligned(as: W.self)
            let u = UnsafeRawPointer(up + i).loadUnaligned(as: W.self)
            let twiceU = c * (g + cubic * g * g * g)
            UnsafeMutableRawPointer(out + i).storeBytes(of: g / (1 + VectorExp.exp(-twiceU)) * u, as: W.self)
            i += 8
        }
        for i in i..<count {
            let g = gate[i]
            out[i] = g / (1 + expf(-geluTanhScale * (g + geluTanhCubic * g * g * g))) * up[i]
        }
    }

    /// 2√(2/π) and the cubic term's coefficient of GELU's tanh approximation (2u = these · z).
    public static let geluTanhScale: Float = 2 * (2 / Float.pi).squareRoot()
    public static let geluTanhCubic: Float = 0.044715

    public static func relu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count where x[i] < 0 { x[i] = 0 }
    }

    /// x[t, :] += bias for `rows` rows.
    public static func addBias(_ x: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, n: Int) {
        for t in 0..<rows {
            let xr = x + t * n
            for i in 0..<n { xr[i] += bias[i] }
        }
    }

    /// y += a · x.
    @inline(__always)
    public static func axpy(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ a: Float, count: Int) {
        let av = V(repeating: a)
        var i = 0
        while i + 16 <= count {
            var acc = GEMV.load(y + i)
            acc.addProduct(GEMV.load(x + i), av)
            GEMV.store(acc, y + i)
            i += 16
        }
        while i < count { y[i] += a * x[i]; i += 1 }
    }

    /// Gemma 2's soft-capping: x = cap · tanh(factor · x / cap), which keeps |x| below cap.
    public static func softcap(_ x: UnsafeMutablePointer<Float>, count: Int, cap: Float, factor: Float = 1) {
        let inner = factor / cap
        for i in 0..<count { x[i] = cap * tanhf(inner * x[i]) }
    }

    /// x *= factor.
    public static func scale(_ x: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
        for i in 0..<count { x[i] *= factor }
    }

    /// y *= x, element by element.
    public static func multiply(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        multiply(y, UnsafePointer(y), x, count: count)
    }

    /// out = a * b, element by element (`out` may be `a`).
    public static func multiply(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                count: Int) {
        var i = 0
        while i + 16 <= count {
            GEMV.store(GEMV.load(a + i) * GEMV.load(b + i), out + i)
            i += 16
        }
        while i < count { out[i] = a[i] * b[i]; i += 1 }
    }

    /// m[c] = max(m[c], |x[r, c]|) over the rows of a row-major (rows, cols) x (finite): column
    /// maxima, accumulated across calls.
    public static func columnMaxMagnitudes(_ m: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows { chalf_max_magnitudes(m, x + r * cols, cols) }
    }

    /// y += x.
    public static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        var i = 0
        while i + 16 <= count {
            GEMV.store(GEMV.load(y + i) + GEMV.load(x + i), y + i)
            i += 16
        }
        while i < count { y[i] += x[i]; i += 1 }
    }

    /// Rotary embedding in Hugging Face's rotate-half form, in place on `heads` heads of width
    /// `headDim` for one token at `position`. `inverseFrequencies` holds one frequency per pair:
    /// with r/2 of them the pairs are (i, i + r/2) for i < r/2 and dimensions from r on pass
    /// through (partial rotary embeddings). cos and sin are multiplied by `magnitude`.
    public static func rope(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, position: Int,
                            inverseFrequencies: UnsafeBufferPointer<Float>, magnitude: Float = 1) {
        let half = inverseFrequencies.count
        for i in 0..<half {
            let angle = Double(position) * Double(inverseFrequencies[i])
            let c = Float(cos(angle)) * magnitude, s = Float(sin(angle)) * magnitude
            for h in 0..<heads {
                let p = x + h * headDim
                let a = p[i], b = p[i + half]
                p[i] = a * c - b * s
                p[i + half] = b * c + a * s
            }
        }
    }
}
