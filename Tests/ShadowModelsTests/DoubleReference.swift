import Foundation
@testable import ShadowKernels
@testable import ShadowModels

/// A plain float64 forward of Llama and OPT, written straight from the formulas (naive loops, no
/// BLAS, no shared code with the engine), used as the oracle for finite differences: in Double a
/// step of 1e-4 gives derivatives good to ~1e-8, so the float32 analytic gradients can be held to
/// ~1e-3 instead of the ~1e-2 that float32 differences allow (and OPT's ReLU kinks are crossed
/// far less often by so small a step).
struct DoubleReference {
    enum Role: String, CaseIterable, Sendable { case output, down, first, up }

    /// What one evaluation moves: an entry of A or N of a layer, or an entry of one weight.
    enum Perturbation {
        case attention(layer: Int, index: Int, delta: Double)
        case hidden(layer: Int, index: Int, delta: Double)
        case weight(Role, layer: Int, index: Int, delta: Double)
    }

    struct Block {
        var norm1: [Double], norm1Bias: [Double]?            // (d)
        var q: [Double], k: [Double], v: [Double]            // (out, d)
        var qBias: [Double]?, kBias: [Double]?, vBias: [Double]?
        var outputT: [Double], outputBias: [Double]?         // (H·d_h, d), (d)
        var norm2: [Double], norm2Bias: [Double]?            // (d)
        var first: [Double], firstBias: [Double]?            // (F, d) gate or fc1
        var up: [Double]?, upBias: [Double]? = nil           // (F, d), (F) Llama only
        var downT: [Double], downBias: [Double]?             // (F, d), (d)
        var queryNorm: [Double]? = nil, keyNorm: [Double]? = nil  // (d_h) Qwen3's per-head norms
        var postNorm1: [Double]? = nil, postNorm2: [Double]? = nil  // (d) Gemma 3's output norms

        subscript(role: Role) -> [Double] {
            get {
                switch role {
                case .output: return outputT
                case .down: return downT
                case .first: return first
                case .up: return up!
                }
            }
            set {
                switch role {
                case .output: outputT = newValue
                case .down: downT = newValue
                case .first: first = newValue
                case .up: up = newValue
                }
            }
        }
    }

    let isLlama: Bool
    let shape: TransformerShape
    let embeddingWidth: Int
    let eps: Double
    let embedding: [Double]                 // (V, e)
    let positions: [Double]?                // OPT: (maxContext + 2, d)
    let projectIn: [Double]?                // (d, e)
    let projectOut: [Double]?               // (e, d)
    let blocks: [Block]
    let finalNorm: [Double]?, finalNormBias: [Double]?
    let lmHead: [Double]                    // (V, e)
    let inverseFrequencies: [Float]
    let ropeMagnitude: Double
    /// Gemma 3: the sliding layers' frequencies, which layers use them, the embedding and score
    /// scales, and GELU (tanh form) in place of SiLU.
    let localInverseFrequencies: [Float]?
    let localRopeLayers: [Bool]?
    let embeddingScale: Double
    let attentionScale: Double
    let geluGate: Bool
    /// Gemma 2's soft-caps of the attention scores and of the logits.
    let attentionSoftcap: Double?, logitSoftcap: Double?
    /// Per layer, its sliding window (nil: the whole context).
    let windows: [Int?]
    let ropeLayers: [Bool]?
    let preLN: Bool

    init(_ model: any DifferentiableLanguageModel) {
        func d(_ w: WeightMatrix) -> [Double] { w.toMatrix().array.map(Double.init) }
        func d(_ v: [Float]?) -> [Double]? { v.map { $0.map(Double.init) } }
        shape = model.shape
        if let m = model as? LlamaModel {
            isLlama = true
            embeddingWidth = shape.hiddenSize
            eps = Double(m.config.rmsNormEps)
            embedding = d(m.embedding)
            positions = nil; projectIn = nil; projectOut = nil
            blocks = m.blocks.map { b in
                Block(norm1: d(b.attentionNorm)!, norm1Bias: nil, q: d(b.q.weight), k: d(b.k.weight), v: d(b.v.weight),
                      qBias: d(b.q.bias), kBias: d(b.k.bias), vBias: d(b.v.bias), outputT: d(b.output.weightT), outputBias: d(b.output.bias),
                      norm2: d(b.mlpNorm)!, norm2Bias: nil, first: d(b.gate.weight), firstBias: d(b.gate.bias), up: d(b.up.weight),
                      upBias: d(b.up.bias), downT: d(b.down.weightT), downBias: d(b.down.bias), queryNorm: d(b.queryNorm), keyNorm: d(b.keyNorm),
                      postNorm1: d(b.postAttentionNorm), postNorm2: d(b.postMLPNorm))
            }
            finalNorm = d(m.finalNorm); finalNormBias = nil
            lmHead = d(m.lmHead)
            inverseFrequencies = m.inverseFrequencies
            ropeMagnitude = Double(m.config.rope.magnitude)
            windows = (0..<m.config.layers).map { m.config.window(layer: $0) }
            ropeLayers = m.config.ropeLayers
            preLN = true
            localInverseFrequencies = m.localInverseFrequencies
            localRopeLayers = m.config.localRopeLayers
            embeddingScale = Double(m.config.embeddingScale ?? 1)
            attentionScale = Double(m.config.attentionScale)
            geluGate = m.config.activation == .geluTanh
            attentionSoftcap = m.config.attentionSoftcap.map(Double.init)
            logitSoftcap = m.config.logitSoftcap.map(Double.init)
        } else {
            let m = model as! OPTModel
            isLlama = false
            embeddingWidth = m.config.wordEmbedProjectionDim
            eps = Double(m.config.layerNormEps)
            embedding = d(m.embedding)
            positions = m.positions.array.map(Double.init)
            projectIn = m.projectIn.map { d($0.weight) }
            projectOut = m.projectOut.map { d($0.weight) }
            blocks = m.blocks.map { b in
                Block(norm1: d(b.attentionNormWeight)!, norm1Bias: d(b.attentionNormBias), q: d(b.q.weight), k: d(b.k.weight),
                      v: d(b.v.weight), qBias: d(b.q.bias), kBias: d(b.k.bias), vBias: d(b.v.bias),
                      outputT: d(b.output.weightT), outputBias: d(b.output.bias), norm2: d(b.mlpNormWeight)!,
                      norm2Bias: d(b.mlpNormBias), first: d(b.fc1.weight), firstBias: d(b.fc1.bias), up: nil,
                      downT: d(b.fc2.weightT), downBias: d(b.fc2.bias))
            }
            finalNorm = d(m.finalNormWeight); finalNormBias = d(m.finalNormBias)
            lmHead = d(m.lmHead)
            inverseFrequencies = []
            ropeMagnitude = 1
            windows = Array(repeating: nil, count: m.config.layers)
            ropeLayers = nil
            preLN = m.config.doLayerNormBefore
            localInverseFrequencies = nil
            localRopeLayers = nil
            embeddingScale = 1
            attentionScale = 1 / Double(shape.headDim).squareRoot()
            geluGate = false
            attentionSoftcap = nil
            logitSoftcap = nil
        }
    }

    // MARK: Building blocks

    /// (T, out) = x (T, in) · W (out, in)ᵀ + b.
    static func timesTransposed(_ x: [Double], _ w: [Double], _ b: [Double]?, rows: Int, inputs: Int, outputs: Int) -> [Double] {
        var y = [Double](repeating: 0, count: rows * outputs)
        x.withUnsafeBufferPointer { x in
            w.withUnsafeBufferPointer { w in
                y.withUnsafeMutableBufferPointer { y in
                    for t in 0..<rows {
                        for o in 0..<outputs {
                            var s = b?[o] ?? 0
                            for i in 0..<inputs { s += x[t * inputs + i] * w[o * inputs + i] }
                            y[t * outputs + o] = s
                        }
                    }
                }
            }
        }
        return y
    }

    /// (T, out) = x (T, in) · Wt (in, out) + b.
    static func times(_ x: [Double], _ wt: [Double], _ b: [Double]?, rows: Int, inputs: Int, outputs: Int) -> [Double] {
        var y = [Double](repeating: 0, count: rows * outputs)
        x.withUnsafeBufferPointer { x in
            wt.withUnsafeBufferPointer { wt in
                y.withUnsafeMutableBufferPointer { y in
                    for t in 0..<rows {
                        for o in 0..<outputs { y[t * outputs + o] = b?[o] ?? 0 }
                        for i in 0..<inputs {
                            let xi = x[t * inputs + i]
                            for o in 0..<outputs { y[t * outputs + o] += xi * wt[i * outputs + o] }
                        }
                    }
                }
            }
        }
        return y
    }

    func norm(_ x: [Double], _ w: [Double], _ b: [Double]?, rows: Int, n: Int) -> [Double] {
        var y = x
        for t in 0..<rows {
            let base = t * n
            if isLlama {
                var sq = 0.0
                for i in 0..<n { sq += x[base + i] * x[base + i] }
                let r = 1 / (sq / Double(n) + eps).squareRoot()
                for i in 0..<n { y[base + i] = x[base + i] * r * w[i] }
            } else {
                var sum = 0.0
                for i in 0..<n { sum += x[base + i] }
                let mean = sum / Double(n)
                var sq = 0.0
                for i in 0..<n { sq += (x[base + i] - mean) * (x[base + i] - mean) }
                let r = 1 / (sq / Double(n) + eps).squareRoot()
                for i in 0..<n { y[base + i] = (x[base + i] - mean) * r * w[i] + b![i] }
            }
        }
        return y
    }

    /// Rotate-half RoPE at positions 0..<T, on the first 2·half dimensions of each head.
    func rope(_ x: inout [Double], rows: Int, heads: Int, layer: Int) {
        let local = localRopeLayers?[layer] == true
        let inverseFrequencies = local ? localInverseFrequencies! : inverseFrequencies
        let dh = shape.headDim, half = inverseFrequencies.count, m = local ? 1 : ropeMagnitude
        for t in 0..<rows {
            for h in 0..<heads {
                for i in 0..<half {
                    let angle = Double(t) * Double(inverseFrequencies[i])
                    let base = t * heads * dh + h * dh
                    let a = x[base + i], b = x[base + i + half]
                    x[base + i] = m * (a * cos(angle) - b * sin(angle))
                    x[base + i + half] = m * (b * cos(angle) + a * sin(angle))
                }
            }
        }
    }

    func attention(_ q: [Double], _ k: [Double], _ v: [Double], rows T: Int, window: Int? = nil) -> [Double] {
        let H = shape.heads, G = shape.kvHeads, dh = shape.headDim, group = H / G
        let scale = attentionScale
        var out = [Double](repeating: 0, count: T * H * dh)
        var scores = [Double](repeating: 0, count: T)
        q.withUnsafeBufferPointer { q in
            k.withUnsafeBufferPointer { k in
                v.withUnsafeBufferPointer { v in
                    for t in 0..<T {
                        for h in 0..<H {
                            let g = h / group
                            var top = -Double.infinity
                            let first = window.map { max(0, t + 1 - $0) } ?? 0
                            for j in first...t {
                                var dot = 0.0
                                for i in 0..<dh { dot += q[t * H * dh + h * dh + i] * k[j * G * dh + g * dh + i] }
                                scores[j] = attentionSoftcap.map { $0 * tanh(dot * scale / $0) } ?? dot * scale
                                top = max(top, scores[j])
                            }
                            var total = 0.0
                            for j in first...t { scores[j] = exp(scores[j] - top); total += scores[j] }
                            for j in first...t {
                                for i in 0..<dh { out[t * H * dh + h * dh + i] += scores[j] / total * v[j * G * dh + g * dh + i] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    // MARK: The loss

    /// Mean cross-entropy of tokens[predictFrom...], with one perturbation applied.
    func loss(tokens: [Int], predictFrom: Int, _ perturbation: Perturbation? = nil) -> Double {
        let s = shape, T = tokens.count, d = s.hiddenSize, e = embeddingWidth, F = s.ffnSize
        let aw = s.attentionWidth, kw = s.kvWidth
        var blocks = self.blocks
        if case .weight(let role, let l, let index, let delta) = perturbation { blocks[l][role][index] += delta }

        var x = [Double](repeating: 0, count: T * d)
        let embedded = tokens.flatMap { embedding[$0 * e..<($0 + 1) * e] }
        if let projectIn {
            x = Self.timesTransposed(embedded, projectIn, nil, rows: T, inputs: e, outputs: d)
        } else {
            x = embedded
        }
        if let positions { for t in 0..<T { for i in 0..<d { x[t * d + i] += positions[(t + 2) * d + i] } } }
        x = x.map { $0 * embeddingScale }

        for (l, b) in blocks.enumerated() {
            let attentionInput = preLN ? norm(x, b.norm1, b.norm1Bias, rows: T, n: d) : x
            var q = Self.timesTransposed(attentionInput, b.q, b.qBias, rows: T, inputs: d, outputs: aw)
            var k = Self.timesTransposed(attentionInput, b.k, b.kBias, rows: T, inputs: d, outputs: kw)
            let v = Self.timesTransposed(attentionInput, b.v, b.vBias, rows: T, inputs: d, outputs: kw)
            if isLlama {
                if let queryNorm = b.queryNorm, let keyNorm = b.keyNorm {
                    q = norm(q, queryNorm, nil, rows: T * s.heads, n: s.headDim)
                    k = norm(k, keyNorm, nil, rows: T * s.kvHeads, n: s.headDim)
                }
                if ropeLayers?[l] ?? true {
                    rope(&q, rows: T, heads: s.heads, layer: l)
                    rope(&k, rows: T, heads: s.kvHeads, layer: l)
                }
            }
            var a = attention(q, k, v, rows: T, window: windows[l])
            if case .attention(l, let index, let delta) = perturbation { a[index] += delta }
            var attended = Self.times(a, b.outputT, b.outputBias, rows: T, inputs: aw, outputs: d)
            if let post = b.postNorm1 { attended = norm(attended, post, nil, rows: T, n: d) }
            x = zip(x, attended).map { $0 + $1 }
            if !preLN { x = norm(x, b.norm1, b.norm1Bias, rows: T, n: d) }

            let mlpInput = preLN ? norm(x, b.norm2, b.norm2Bias, rows: T, n: d) : x
            let z = Self.timesTransposed(mlpInput, b.first, b.firstBias, rows: T, inputs: d, outputs: F)
            var n: [Double]
            if let up = b.up {
                let u = Self.timesTransposed(mlpInput, up, b.upBias, rows: T, inputs: d, outputs: F)
                n = geluGate ? zip(z, u).map { z, u in 0.5 * z * (1 + tanh((2 / Double.pi).squareRoot() * (z + 0.044715 * z * z * z))) * u }
                             : zip(z, u).map { $0 / (1 + exp(-$0)) * $1 }
            } else {
                n = z.map { max($0, 0) }
            }
            if case .hidden(l, let index, let delta) = perturbation { n[index] += delta }
            var projected = Self.times(n, b.downT, b.downBias, rows: T, inputs: F, outputs: d)
            if let post = b.postNorm2 { projected = norm(projected, post, nil, rows: T, n: d) }
            x = zip(x, projected).map { $0 + $1 }
            if !preLN { x = norm(x, b.norm2, b.norm2Bias, rows: T, n: d) }
        }

        let rows = T - predictFrom
        var final = Array(x[(predictFrom - 1) * d..<(T - 1) * d])
        if let finalNorm { final = norm(final, finalNorm, finalNormBias, rows: rows, n: d) }
        if let projectOut { final = Self.timesTransposed(final, projectOut, nil, rows: rows, inputs: d, outputs: e) }
        let vocab = s.vocabularySize
        var logits = Self.timesTransposed(final, lmHead, nil, rows: rows, inputs: e, outputs: vocab)
        if let cap = logitSoftcap { logits = logits.map { cap * tanh($0 / cap) } }
        var total = 0.0
        for r in 0..<rows {
            let row = logits[r * vocab..<(r + 1) * vocab]
            let top = row.max()!
            let lse = top + log(row.reduce(0) { $0 + exp($1 - top) })
            total += lse - logits[r * vocab + tokens[predictFrom + r]]
        }
        return total / Double(rows)
    }

    /// Central difference of the loss along one perturbation of size `step`.
    func derivative(tokens: [Int], predictFrom: Int, step: Double,
                    _ perturbation: (Double) -> Perturbation) -> Double {
        (loss(tokens: tokens, predictFrom: predictFrom, perturbation(step))
         - loss(tokens: tokens, predictFrom: predictFrom, perturbation(-step))) / (2 * step)
    }
}
