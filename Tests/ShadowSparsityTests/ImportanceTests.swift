import Foundation
import Testing
@testable import ShadowModels
@testable import ShadowSparsity
import ShadowModelTestSupport
import ShadowTestSupport

/// The formulas of DESIGN §3 written out entry by entry from a GradientRecord, as plainly as
/// possible and without the module's helpers (except the eigenvalue solver, tested on its own).
enum Naive {
    struct Layer {
        let record: LayerGradients
        let shape: TransformerShape
        let T: Int
        func a(_ t: Int, _ h: Int, _ i: Int) -> Double { Double(record.attention[t * shape.attentionWidth + h * shape.headDim + i]) }
        func g(_ t: Int, _ h: Int, _ i: Int) -> Double { Double(record.attentionGrad[t * shape.attentionWidth + h * shape.headDim + i]) }
        func n(_ t: Int, _ j: Int) -> Double { Double(record.hidden[t * shape.ffnSize + j]) }
        func gn(_ t: Int, _ j: Int) -> Double { Double(record.hiddenGrad[t * shape.ffnSize + j]) }
        func z(_ t: Int, _ j: Int) -> Double { Double(record.preActivation[t * shape.ffnSize + j]) }
        var heads: Range<Int> { 0..<shape.heads }
        var neurons: Range<Int> { 0..<shape.ffnSize }
        var dims: Range<Int> { 0..<shape.headDim }
        var positions: Range<Int> { 0..<T }
    }

    static func sum(_ r: Range<Int>, _ f: (Int) -> Double) -> Double { r.reduce(0.0) { $0 + f($1) } }

    /// Head h's rows of a transposed (H·d_h, d) matrix, or neuron j's row of an (F, d) one, multiplied entry by entry.
    static func rows(_ w: [Float], _ y: [Float], _ rows: Range<Int>, d: Int, _ f: (Double) -> Double) -> Double {
        sum(rows) { r in sum(0..<d) { c in f(Double(w[r * d + c]) * Double(y[r * d + c])) } }
    }

    /// Pearson correlation matrix between the vectors (numpy's corrcoef of the stacked rows).
    static func corrcoef(_ v: [[Double]]) -> [[Double]] {
        let means = v.map { $0.reduce(0, +) / Double($0.count) }
        func cov(_ a: Int, _ b: Int) -> Double { sum(0..<v[a].count) { (v[a][$0] - means[a]) * (v[b][$0] - means[b]) } }
        return v.indices.map { a in v.indices.map { b in cov(a, b) / (cov(a, a) * cov(b, b)).squareRoot() } }
    }

    static func nonConstant(_ v: [[Double]]) -> [[Double]] { v.filter { Set($0).count > 1 } }

    static func jacov(_ vectors: [[Double]]) -> Double {
        let v = nonConstant(vectors)
        if v.isEmpty { return 0 }
        let c = corrcoef(v)
        let lambdas = GradientCorrelation.symmetricEigenvalues(c.flatMap { $0 }, n: v.count)
        return -lambdas.reduce(0.0) { $0 + log(max($1, 0) + 1e-5) + 1 / (max($1, 0) + 1e-5) }
    }

    static func epenas(_ vectors: [[Double]], labels: [Int]) -> Double {
        var e: [Double] = []
        for label in Set(labels) {
            let group = nonConstant(zip(vectors, labels).filter { $0.1 == label }.map(\.0))
            if group.isEmpty { continue }
            e.append(corrcoef(group).joined().reduce(0.0) { $0 + log(abs($1) + 1e-5) })
        }
        // Every ordered pair counts each unordered pair twice.
        return e.reduce(0.0) { total, x in total + e.reduce(0.0) { $0 + abs(x - $1) } } / 2
    }

    /// One criterion's (heads, neurons) for one layer.
    static func scores(_ c: Criterion, _ L: Layer, weights w: ProjectionWeights, hessianGradient: (o: [Float], d: [Float])?,
                       tokens: [Int]) -> (heads: [Double], neurons: [Double]?) {
        let dh = L.shape.headDim, d = L.shape.hiddenSize, T = Double(L.T)
        let r = L.record
        let plainactHeads = L.heads.map { h in sum(L.positions) { t in abs(sum(L.dims) { i in L.a(t, h, i) * L.g(t, h, i) }) } }
        switch c {
        case .plainact:
            return (plainactHeads, L.neurons.map { j in sum(L.positions) { t in abs(L.n(t, j) * L.gn(t, j)) } })
        case .plainactW:
            return (plainactHeads, L.neurons.map { j in
                rows(w.firstProjection, r.firstProjectionGrad!, j..<j + 1, d: d, abs)
                    + (w.upProjection.map { rows($0, r.upProjectionGrad!, j..<j + 1, d: d, abs) } ?? 0)
            })
        case .fisher:
            return (L.heads.map { h in sum(L.dims) { i in sum(L.positions) { t in pow(L.a(t, h, i) * L.g(t, h, i), 2) } / T } },
                    L.neurons.map { j in sum(L.positions) { t in pow(L.n(t, j) * L.gn(t, j), 2) } / T })
        case .gradNorm:
            return (L.heads.map { h in sum(L.positions) { t in sum(L.dims) { i in pow(L.g(t, h, i), 2) } }.squareRoot() },
                    L.neurons.map { j in sum(L.positions) { t in pow(L.gn(t, j), 2) }.squareRoot() })
        case .l2Norm:
            return (L.heads.map { h in sum(L.positions) { t in sum(L.dims) { i in pow(L.a(t, h, i), 2) } }.squareRoot() },
                    L.neurons.map { j in sum(L.positions) { t in pow(L.n(t, j), 2) }.squareRoot() })
        case .snip:
            return (L.heads.map { h in rows(w.outputProjection, r.outputProjectionGrad!, h * dh..<(h + 1) * dh, d: d, abs) },
                    L.neurons.map { j in rows(w.downProjection, r.downProjectionGrad!, j..<j + 1, d: d, abs) })
        case .grasp:
            let hg = hessianGradient!
            return (L.heads.map { h in -rows(w.outputProjection, hg.o, h * dh..<(h + 1) * dh, d: d, { $0 }) },
                    L.neurons.map { j in -rows(w.downProjection, hg.d, j..<j + 1, d: d, { $0 }) })
        case .nwot:
            return (L.heads.map { h in log(1 + sum(L.positions) { t in sum(L.dims) { i in L.a(t, h, i) > 0 ? 1 : 0 } }) },
                    L.neurons.map { j in log(1 + sum(L.positions) { t in L.z(t, j) > 0 ? 1 : 0 }) })
        case .jacov:
            return (L.heads.map { h in jacov(L.positions.map { t in L.dims.map { i in L.g(t, h, i) } }) }, nil)
        case .epenas:
            return (L.heads.map { h in
                epenas((0..<L.T - 1).map { t in L.dims.map { i in L.g(t, h, i) } }, labels: Array(tokens.dropFirst()))
            }, nil)
        }
    }
}

@Suite("Importance criteria")
struct ImportanceTests {
    static let models = ["code-llama", "tiny-opt", "tiny-opt-postln", "tiny-qwen2"]
    static let tokens = [3, 14, 15, 9, 26, 5, 35, 8, 14, 2, 9, 14]

    static func model(_ name: String) throws -> any DifferentiableLanguageModel {
        name == "code-llama" ? TinyModels.criteriaLlama() : try ModelFixtures.differentiableModel(name)
    }

    @Test("each criterion equals a naive computation from the gradient record", arguments: models)
    func matchesNaive(name: String) throws {
        let model = try Self.model(name)
        let tokens = Self.tokens, predictFrom = 5, s = model.shape
        let scores = try Importance.scores(model: model, tokens: tokens, predictFrom: predictFrom, criteria: Criterion.allCases)
        let record = try model.lossAndGradients(tokens: tokens, predictFrom: predictFrom, options: GradientOptions(weightGradients: .all))
        let hessianGradient = try Self.hessianGradient(model, tokens: tokens, predictFrom: predictFrom, record: record)
        for criterion in Criterion.allCases {
            let result = try #require(scores[criterion])
            #expect(result.loss == record.loss)
            #expect(result.heads.count == s.layers && result.heads.allSatisfy { $0.count == s.heads })
            if criterion.headsOnly {
                #expect(result.neurons == nil)
            } else {
                #expect(result.neurons?.count == s.layers && result.neurons!.allSatisfy { $0.count == s.ffnSize })
            }
            let (tolerance, floor) = (1e-4, 1e-6)
            for l in 0..<s.layers {
                let layer = Naive.Layer(record: record.layers[l], shape: s, T: tokens.count)
                let expected = Naive.scores(criterion, layer, weights: model.projectionWeights(layer: l),
                                            hessianGradient: hessianGradient[l], tokens: tokens)
                expectRelativelyClose(result.heads[l], expected.heads.map(Float.init), tolerance: tolerance, floor: floor,
                            "\(name) \(criterion.rawValue) heads, layer \(l)")
                if let neurons = expected.neurons {
                    expectRelativelyClose(result.neurons?[l] ?? [], neurons.map(Float.init), tolerance: tolerance, floor: floor,
                                "\(name) \(criterion.rawValue) neurons, layer \(l)")
                }
            }
        }
    }

    /// H g for W_O and W_down by central differences of the gradient along g,
    /// (g(W + hg) − g(W − hg)) / 2h, with h = `scale` times the module's step.
    static func hessianGradient(_ model: any DifferentiableLanguageModel, tokens: [Int], predictFrom: Int,
                                record: GradientRecord, scale: Float = 1) throws -> [(o: [Float], d: [Float])] {
        let s = model.shape
        func norm(_ arrays: [[Float]]) -> Double { arrays.joined().reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
        let g = norm(record.layers.map { $0.outputProjectionGrad! } + record.layers.map { $0.downProjectionGrad! })
        let weights = (0..<s.layers).map { model.projectionWeights(layer: $0) }
        let w = norm(weights.map(\.outputProjection) + weights.map(\.downProjection))
        let h = scale * Float(Importance.graspStep(gradientNorm: g, weightNorm: w, kinks: model.hasKinks))
        func gradients(_ sign: Float) throws -> GradientRecord {
            let offsets = WeightOffsets(outputProjection: record.layers.map { $0.outputProjectionGrad!.map { $0 * (h * sign) } },
                                        downProjection: record.layers.map { $0.downProjectionGrad!.map { $0 * (h * sign) } })
            return try model.lossAndGradients(tokens: tokens, predictFrom: predictFrom,
                                              options: GradientOptions(weightGradients: .all, weightOffsets: offsets))
        }
        let plus = try gradients(1), minus = try gradients(-1)
        return zip(plus.layers, minus.layers).map { p, m in
            (zip(p.outputProjectionGrad!, m.outputProjectionGrad!).map { ($0 - $1) / (2 * h) },
             zip(p.downProjectionGrad!, m.downProjectionGrad!).map { ($0 - $1) / (2 * h) })
        }
    }

    @Test("GRASP's Hessian–vector product barely changes when its step doubles", arguments: models)
    func graspStep(name: String) throws {
        let model = try Self.model(name)
        let s = model.shape
        let grasp = try #require(try Importance.scores(model: model, tokens: Self.tokens, predictFrom: 5, criteria: [.grasp])[.grasp])
        let record = try model.lossAndGradients(tokens: Self.tokens, predictFrom: 5, options: GradientOptions(weightGradients: .all))
        let central = try Self.hessianGradient(model, tokens: Self.tokens, predictFrom: 5, record: record, scale: 2)
        for l in 0..<s.layers {
            let layer = Naive.Layer(record: record.layers[l], shape: s, T: Self.tokens.count)
            let expected = Naive.scores(.grasp, layer, weights: model.projectionWeights(layer: l), hessianGradient: central[l],
                                        tokens: Self.tokens)
            // Float32 rounding of the gradient differences limits the agreement (measured: 2% of a
            // layer's largest head score, 4.2% of its largest neuron score).
            expectRelativelyClose(grasp.heads[l], expected.heads.map(Float.init), tolerance: 4e-2, floor: 4e-2, "\(name) heads, layer \(l)")
            expectRelativelyClose(grasp.neurons![l], expected.neurons!.map(Float.init), tolerance: 7e-2, floor: 7e-2,
                        "\(name) neurons, layer \(l)")
        }
    }

    @Test("a head whose A is zero and a neuron whose N is zero score 0 under plainact, fisher, snip and l2_norm (nwot: the head), and every other head scores above 0")
    func silencedUnits() throws {
        let model = TinyModels.criteriaLlama(heads: 4, kvHeads: 4, silencedHead: 1, silencedNeuron: 5)
        let scores = try Importance.scores(model: model, tokens: Self.tokens, predictFrom: 3,
                                           criteria: [.plainact, .fisher, .snip, .l2Norm, .nwot])
        for criterion in [Criterion.plainact, .fisher, .snip, .l2Norm, .nwot] {
            let result = try #require(scores[criterion])
            for l in 0..<model.shape.layers {
                #expect(result.heads[l][1] == 0, "\(criterion) head 1 of layer \(l): \(result.heads[l][1])")
                #expect(result.heads[l].enumerated().allSatisfy { $0.offset == 1 || $0.element > 0 })
                if criterion != .nwot {   // nwot counts Z = gate x > 0, which the zero up row does not touch
                    #expect(result.neurons![l][5] == 0, "\(criterion) neuron 5 of layer \(l): \(result.neurons![l][5])")
                }
            }
        }
    }

    @Test("l2_norm and nwot need no backward and give the same scores as with one")
    func forwardOnly() throws {
        let model = TinyModels.criteriaLlama()
        let alone = try Importance.scores(model: model, tokens: Self.tokens, predictFrom: 4, criteria: [.l2Norm, .nwot])
        let together = try Importance.scores(model: model, tokens: Self.tokens, predictFrom: 4, criteria: [.l2Norm, .nwot, .plainact])
        #expect(alone[.l2Norm] == together[.l2Norm] && alone[.nwot] == together[.nwot])
        #expect(alone.count == 2 && together.count == 3)
        #expect(try Importance.scores(model: model, tokens: Self.tokens, predictFrom: 4, criteria: []).isEmpty)
        let repeated = try Importance.scores(model: model, tokens: Self.tokens, predictFrom: 4, criteria: [.fisher, .fisher])
        #expect(repeated.count == 1)
    }

    @Test("criteria describe what they need")
    func properties() {
        #expect(Criterion.allCases.filter(\.headsOnly) == [.jacov, .epenas])
        #expect(Criterion.allCases.filter { !$0.needsBackward } == [.l2Norm, .nwot])
        #expect(Criterion.allCases.filter(\.needsWeightGradients) == [.plainactW, .snip, .grasp])
        #expect(Criterion.allCases.map(\.rawValue) == ["plainact", "plainact_w", "fisher", "grad_norm", "l2_norm", "snip",
                                                       "grasp", "nwot", "jacov", "epenas"])
        #expect(Criterion(rawValue: "grad_norm") == .gradNorm)
    }

    @Test("aggregate sums heads and neurons element-wise and averages the loss")
    func aggregate() throws {
        let model = TinyModels.criteriaLlama()
        let samples = try [[1, 2, 3, 4, 5], [9, 8, 7, 6], [11, 12, 13, 14, 15, 16]].map {
            try Importance.scores(model: model, tokens: $0, predictFrom: 2, criteria: [.plainact, .jacov])
        }
        let total = Importance.aggregate(samples.map { $0[.plainact]! })
        for l in 0..<2 {
            for h in 0..<4 {
                let expected = samples.reduce(Float(0)) { $0 + $1[.plainact]!.heads[l][h] }
                #expect(abs(total.heads[l][h] - expected) <= 1e-6 * abs(expected))
            }
            for j in 0..<48 {
                let expected = samples.reduce(Float(0)) { $0 + $1[.plainact]!.neurons![l][j] }
                #expect(abs(total.neurons![l][j] - expected) <= 1e-6 * abs(expected))
            }
        }
        #expect(abs(total.loss - samples.map { $0[.plainact]!.loss }.reduce(0, +) / 3) < 1e-12)
        let headsOnly = Importance.aggregate(samples.map { $0[.jacov]! })
        #expect(headsOnly.neurons == nil && headsOnly.heads.count == 2)
        // One sample aggregates to itself; scores round-trip through JSON.
        #expect(Importance.aggregate([samples[0][.plainact]!]) == samples[0][.plainact]!)
        let data = try JSONEncoder().encode(total)
        #expect(try JSONDecoder().decode(ImportanceScores.self, from: data) == total)
    }
}

@Suite("Correlation criteria: jacov, epenas and the eigenvalue solver")
struct CorrelationTests {
    @Test("Jacobi eigenvalues of a rotated diagonal matrix are its diagonal", arguments: [1, 2, 5, 12])
    func eigenvalues(n: Int) {
        let spectrum = (0..<n).map { Double($0) * 0.7 - 1.5 }
        // Q = a product of Givens rotations by fixed angles; A = Q diag Qᵀ.
        var q = (0..<n * n).map { $0 % (n + 1) == 0 ? 1.0 : 0.0 }
        for (k, (p, r)) in (0..<n).flatMap({ p in (p + 1..<n).map { (p, $0) } }).enumerated() {
            let angle = 0.3 + 0.17 * Double(k), c = cos(angle), s = sin(angle)
            for row in 0..<n {
                let a = q[row * n + p], b = q[row * n + r]
                q[row * n + p] = c * a - s * b
                q[row * n + r] = s * a + c * b
            }
        }
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { for k in 0..<n { a[i * n + j] += q[i * n + k] * spectrum[k] * q[j * n + k] } } }
        let found = GradientCorrelation.symmetricEigenvalues(a, n: n).sorted()
        for (x, y) in zip(found, spectrum) { #expect(abs(x - y) < 1e-10, "\(found) vs \(spectrum)") }
    }

    @Test("each sample keeps G at four seeded positions per head, and static jacov is jacov of the pooled vectors")
    func pooledVectors() throws {
        let model = TinyModels.criteriaLlama()
        let lists = [[1, 2, 3, 4, 5, 6, 7], [9, 8, 7, 6], [11, 12, 13, 14, 15, 16], [20, 21, 22]]
        let samples = try lists.map { try Importance.scores(model: model, tokens: $0, predictFrom: 2, criteria: [.jacov])[.jacov]! }
        let s = model.shape, k = GradientCorrelation.pooledPerSample
        // Seeded by the tokens alone: the same positions in every process (pinned, so a seed that
        // changed between runs, one from Swift's Hasher say, would fail here).
        #expect(GradientCorrelation.pooledPositions(tokens: lists[0], count: k) == [0, 1, 3, 5])
        // A sample with fewer usable positions than four pads with zero vectors.
        #expect(GradientCorrelation.pooledPositions(tokens: lists[3], count: k) == [0, 1])
        var pooled = [[[Double]]](repeating: [], count: s.layers * s.heads)
        for (tokens, sample) in zip(lists, samples) {
            let record = try model.lossAndGradients(tokens: tokens, predictFrom: 2, options: GradientOptions())
            let positions = GradientCorrelation.pooledPositions(tokens: tokens, count: k)
            let vectors = try #require(sample.pooledVectors)
            #expect(vectors.count == s.layers * s.heads * k * s.headDim)
            for l in 0..<s.layers {
                for h in 0..<s.heads {
                    for j in 0..<k {
                        let start = ((l * s.heads + h) * k + j) * s.headDim
                        let stored = Array(vectors[start..<start + s.headDim])
                        if j < positions.count {
                            let from = positions[j] * s.attentionWidth + h * s.headDim
                            #expect(stored == Array(record.layers[l].attentionGrad[from..<from + s.headDim]))
                            pooled[l * s.heads + h].append(stored.map(Double.init))
                        } else {
                            #expect(stored.allSatisfy { $0 == 0 })
                        }
                    }
                }
            }
        }
        // 14 vectors per head (under 200): the static score is jacov of all of them, not a sum.
        let total = Importance.aggregate(samples)
        for l in 0..<s.layers {
            for h in 0..<s.heads {
                let expected = GradientCorrelation.jacov(pooled[l * s.heads + h])
                #expect(abs(Double(total.heads[l][h]) - expected) <= 1e-5 * abs(expected), "layer \(l) head \(h)")
            }
        }
        #expect(total.heads != Importance.aggregate(samples.map { ImportanceScores(loss: $0.loss, heads: $0.heads, neurons: nil) }).heads)
    }

    @Test("a pool larger than 200 vectors averages jacov over five seeded subsets of 200, streamed sample by sample")
    func pooledSubsets() {
        let units = 3, width = 8, k = GradientCorrelation.pooledPerSample, sampleCount = 70
        let samples = (0..<sampleCount).map { randomFloats(units * k * width, seed: UInt64(500 + $0)) }
        var pool = PooledJacov(units: units, width: width, poolSize: sampleCount * k)
        for sample in samples { pool.add(sample) }
        #expect(pool.subsets.count == GradientCorrelation.pooledSubsets)
        #expect(pool.subsets.allSatisfy { Set($0).count == GradientCorrelation.maxVectors && $0.allSatisfy { $0 < sampleCount * k } })
        #expect(Set(pool.subsets).count == pool.subsets.count)
        let scores = pool.scores()
        for unit in 0..<units {
            // Pool index i is vector i % k of sample i / k.
            func vector(_ i: Int) -> [Double] {
                let start = (unit * k + i % k) * width
                return samples[i / k][start..<start + width].map(Double.init)
            }
            let expected = pool.subsets.map { GradientCorrelation.jacov($0.map(vector)) }.reduce(0, +) / Double(pool.subsets.count)
            #expect(abs(Double(scores[unit]) - expected) <= 1e-5 * abs(expected))
        }
    }

    @Test("jacov through the small Gram matrix equals jacov of the full token × token correlation matrix")
    func jacovGramPath() {
        for (count, width) in [(3, 8), (8, 8), (20, 6), (57, 16)] {
            let vectors = (0..<count).map { randomFloats(width, seed: UInt64(1000 + $0)).map(Double.init) }
            let fast = GradientCorrelation.jacov(vectors), naive = Naive.jacov(vectors)
            #expect(abs(fast - naive) <= 1e-6 * abs(naive), "\(count)×\(width): \(fast) vs \(naive)")
        }
    }

    @Test("jacov drops vectors without variance and caps the set at 200 with a fixed seed")
    func jacovSubset() {
        let vectors = (0..<250).map { randomFloats(8, seed: UInt64(2000 + $0)).map(Double.init) }
        let withZeros = vectors + [Array(repeating: 0, count: 8), Array(repeating: 3, count: 8)]
        let capped = GradientCorrelation.jacov(withZeros)
        #expect(capped == GradientCorrelation.jacov(vectors))
        let rows = GradientCorrelation.correlationRows(vectors).map(\.row)
        let subset = GradientCorrelation.randomSubset(rows, count: 200, seed: GradientCorrelation.subsetSeed)
        #expect(subset.count == 200 && Set(subset.map { $0[0] }).count == 200)
        // jacov of exactly 200 vectors takes them all (the Gram path is checked against the full matrix above).
        let again = GradientCorrelation.jacov(subset.map { row in row.map { $0 * 3 + 1 } })
        #expect(abs(capped - again) <= 1e-9 * abs(capped))
        #expect(capped != GradientCorrelation.jacov(Array(vectors.prefix(200))))
        #expect(GradientCorrelation.jacov([]) == 0 && GradientCorrelation.jacov([[1, 1, 1]]) == 0)
    }

    @Test("epenas sums |e_c − e_c'| over pairs of target groups")
    func epenas() {
        let vectors = (0..<12).map { randomFloats(5, seed: UInt64(3000 + $0)).map(Double.init) }
        let labels = [4, 7, 4, 4, 9, 7, 1, 9, 9, 4, 2, 7]
        let fast = GradientCorrelation.epenas(vectors, labels: labels)
        #expect(abs(fast - Naive.epenas(vectors, labels: labels)) <= 1e-9 * abs(fast))
        // One group has no pair to differ from; singleton groups have e = log(1 + 1e-5).
        #expect(GradientCorrelation.epenas(vectors, labels: Array(repeating: 3, count: 12)) == 0)
        let two = GradientCorrelation.epenas(Array(vectors.prefix(2)), labels: [0, 1])
        #expect(abs(two) < 1e-12)
    }
}

@Suite("Criteria against PyTorch autograd")
struct ReferenceCriteriaTests {
    /// The per-unit scores scripts/reference/make_gradient_fixtures.py computed with PyTorch.
    struct Expectation: Decodable {
        struct Units: Decodable { let heads: [Double]; let neurons: [Double] }
        struct Layer: Decodable { let plainact: Units; let snip: Units }
        let inputIDs: [Int]
        let predictFrom: Int
        let loss: Double
        let layers: [Layer]
        enum CodingKeys: String, CodingKey { case loss, layers, inputIDs = "input_ids", predictFrom = "predict_from" }
    }

    @Test("plainact and snip scores equal PyTorch's within 1e-4",
          arguments: ["tiny-llama", "tiny-llama-tied", "tiny-qwen2", "tiny-qwen3", "tiny-opt", "tiny-opt-postln"])
    func agrees(checkpoint: String) throws {
        let path = ModelFixtures.directory.appendingPathComponent("\(checkpoint)/gradients.json")
        let expected = try JSONDecoder().decode(Expectation.self, from: Data(contentsOf: path))
        let model = try ModelFixtures.differentiableModel(checkpoint)
        let scores = try Importance.scores(model: model, tokens: expected.inputIDs, predictFrom: expected.predictFrom,
                                           criteria: [.plainact, .snip])
        for criterion in [Criterion.plainact, .snip] {
            let result = try #require(scores[criterion])
            #expect(abs(result.loss - expected.loss) <= 1e-5 * expected.loss)
            for (l, layer) in expected.layers.enumerated() {
                let units = criterion == .plainact ? layer.plainact : layer.snip
                expectRelativelyClose(result.heads[l], units.heads.map(Float.init), tolerance: 1e-4, floor: 1e-2,
                            "\(checkpoint) \(criterion.rawValue) heads, layer \(l)")
                expectRelativelyClose(result.neurons![l], units.neurons.map(Float.init), tolerance: 1e-4, floor: 1e-2,
                            "\(checkpoint) \(criterion.rawValue) neurons, layer \(l)")
            }
        }
    }
}
