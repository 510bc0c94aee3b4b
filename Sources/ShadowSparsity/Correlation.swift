import Foundation
import ShadowFormats

/// jacov and epenas (DESIGN §3): statistics of the correlations between the per-token gradient
/// vectors G_{t,h,·} of one head. Following JacoV (Mellor et al. 2020, the first version of
/// "Neural Architecture Search without Training") and EPE-NAS (Lopes et al. 2021), each vector
/// plays the part of one input's Jacobian and the correlation matrix is taken BETWEEN vectors —
/// tokens × tokens, as numpy's corrcoef of the stacked vectors — not between their d_h coordinates:
/// the criteria ask how differently a head's gradient responds to different tokens.
enum GradientCorrelation {
    /// The regulariser both papers add inside the logarithm (and, for jacov, the reciprocal).
    static let k = 1e-5
    /// jacov uses at most this many vectors, a fixed-seed random subset when there are more.
    static let maxVectors = 200
    static let subsetSeed: UInt64 = 0x5EED_0000_0000_0200
    /// Static jacov pools vectors over samples (DESIGN §3): each sample keeps this many of its
    /// per-token vectors per head (positions drawn with a seed from its tokens) ...
    public static let pooledPerSample = 4
    /// ... and the static score averages jacov over this many random subsets of `maxVectors`.
    public static let pooledSubsets = 5

    /// Up to `count` distinct positions in `0 ..< tokens.count − 1` (the last position's gradient
    /// is zero), in order, drawn with a seed derived from the tokens so every run picks the same.
    static func pooledPositions(tokens: [Int], count: Int) -> [Int] {
        let candidates = Array(0..<max(tokens.count - 1, 0))
        guard candidates.count > count else { return candidates }
        var seed: UInt64 = 0xCBF2_9CE4_8422_2325   // FNV-1a over the tokens
        for token in tokens { seed = (seed ^ UInt64(bitPattern: Int64(token))) &* 0x100_0000_01B3 }
        return randomSubset(candidates, count: count, seed: seed)
    }

    /// The vectors centred and scaled to unit length (so that their dot products are Pearson
    /// correlations), with their indices. Vectors with zero variance — above all the last
    /// position's, which no loss reads, so its gradient is exactly zero — have no defined
    /// correlation and are left out.
    static func correlationRows(_ vectors: [[Double]]) -> [(index: Int, row: [Double])] {
        vectors.enumerated().compactMap { index, v in
            guard !v.isEmpty else { return nil }
            let mean = v.reduce(0, +) / Double(v.count)
            let centred = v.map { $0 - mean }
            let norm = centred.reduce(0) { $0 + $1 * $1 }.squareRoot()
            guard norm > 0, norm.isFinite else { return nil }
            return (index, centred.map { $0 / norm })
        }
    }

    /// −Σ_k [log(λ_k + k) + 1/(λ_k + k)] over the eigenvalues λ of the n × n correlation matrix
    /// C = R Rᵀ of the (at most 200) rows R. When n exceeds the vector width m, the eigenvalues are
    /// those of the m × m matrix Rᵀ R (the same non-zero spectrum) plus n − m exact zeros, which
    /// keeps the eigenproblem at most d_h × d_h. Eigenvalues are clamped at 0 (rounding can make
    /// the zero ones slightly negative). No usable vector gives 0.
    static func jacov(_ vectors: [[Double]]) -> Double {
        var rows = correlationRows(vectors).map(\.row)
        if rows.count > maxVectors { rows = randomSubset(rows, count: maxVectors, seed: subsetSeed) }
        let n = rows.count
        guard n > 0 else { return 0 }
        let m = rows[0].count
        var eigenvalues: [Double]
        if n <= m {
            var gram = [Double](repeating: 0, count: n * n)
            for i in 0..<n {
                for j in i..<n {
                    let c = dot(rows[i], rows[j])
                    gram[i * n + j] = c
                    gram[j * n + i] = c
                }
            }
            eigenvalues = symmetricEigenvalues(gram, n: n)
        } else {
            var gram = [Double](repeating: 0, count: m * m)
            for r in rows {
                for i in 0..<m where r[i] != 0 {
                    for j in i..<m { gram[i * m + j] += r[i] * r[j] }
                }
            }
            for i in 0..<m { for j in 0..<i { gram[i * m + j] = gram[j * m + i] } }
            eigenvalues = symmetricEigenvalues(gram, n: m) + Array(repeating: 0, count: n - m)
        }
        return -eigenvalues.reduce(0) { sum, lambda in
            let x = max(lambda, 0) + k
            return sum + log(x) + 1 / x
        }
    }

    /// Groups the vectors by `labels` (the target token of each position); per group c,
    /// e_c = Σ_{i,j} log(|C_ij| + k) over the group's correlation matrix (diagonal included);
    /// the score is Σ over unordered pairs of groups |e_c − e_c'|. Vectors without a defined
    /// correlation are left out, and so are groups left empty.
    static func epenas(_ vectors: [[Double]], labels: [Int]) -> Double {
        precondition(vectors.count == labels.count)
        var groups: [Int: [[Double]]] = [:]
        for (index, row) in correlationRows(vectors) { groups[labels[index], default: []].append(row) }
        let e = groups.keys.sorted().map { label -> Double in
            let rows = groups[label]!
            var sum = 0.0
            for i in rows.indices {
                for j in rows.indices { sum += log(abs(dot(rows[i], rows[j])) + k) }
            }
            return sum
        }
        var score = 0.0
        for a in e.indices { for b in (a + 1)..<e.count { score += abs(e[a] - e[b]) } }
        return score
    }

    /// Eigenvalues of a symmetric n × n matrix (row-major) by cyclic Jacobi rotations: each
    /// rotation zeroes one off-diagonal pair; sweeps repeat until the off-diagonal mass is below
    /// 1e-24 of the whole (convergence is quadratic: a handful of sweeps).
    static func symmetricEigenvalues(_ matrix: [Double], n: Int) -> [Double] {
        precondition(matrix.count == n * n)
        var a = matrix
        for _ in 0..<100 {
            var off = 0.0, total = 0.0
            for p in 0..<n {
                total += a[p * n + p] * a[p * n + p]
                for q in (p + 1)..<n { off += 2 * a[p * n + q] * a[p * n + q] }
            }
            total += off
            if off <= 1e-24 * total || total == 0 { break }
            for p in 0..<n {
                for q in (p + 1)..<n {
                    let apq = a[p * n + q]
                    if apq == 0 { continue }
                    let theta = (a[q * n + q] - a[p * n + p]) / (2 * apq)
                    let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                    let c = 1 / (t * t + 1).squareRoot(), s = t * c
                    for r in 0..<n {   // columns p and q: A ← A J
                        let arp = a[r * n + p], arq = a[r * n + q]
                        a[r * n + p] = c * arp - s * arq
                        a[r * n + q] = s * arp + c * arq
                    }
                    for r in 0..<n {   // rows p and q: A ← Jᵀ A
                        let apr = a[p * n + r], aqr = a[q * n + r]
                        a[p * n + r] = c * apr - s * aqr
                        a[q * n + r] = s * apr + c * aqr
                    }
                }
            }
        }
        return (0..<n).map { a[$0 * n + $0] }
    }

    /// `count` of the rows chosen by a partial Fisher–Yates shuffle with a fixed seed, in their original order.
    static func randomSubset<T>(_ rows: [T], count: Int, seed: UInt64) -> [T] {
        var generator = SplitMix64(seed: seed)
        var indices = Array(rows.indices)
        for i in 0..<count {
            let j = i + Int(generator.next() % UInt64(indices.count - i))
            indices.swapAt(i, j)
        }
        return indices.prefix(count).sorted().map { rows[$0] }
    }

    static func dot(_ x: [Double], _ y: [Double]) -> Double {
        var s = 0.0
        for i in x.indices { s += x[i] * y[i] }
        return s
    }
}

/// Static jacov (DESIGN §3): the per-token gradient vectors of every head pooled over a
/// calibration set, and jacov averaged over random subsets of `maxVectors` of the pool. Samples
/// arrive one at a time (from trace chunks), each with `pooledPerSample` vectors per head, and only
/// the vectors some subset uses are kept: memory is bounded by the subsets, not the set's size.
public struct PooledJacov: Sendable {
    public let units: Int
    public let width: Int
    /// Pool indices (sample ordinal × pooledPerSample + slot) of each subset, in order.
    let subsets: [[Int]]
    /// Pool index → the (subset, position in it) places that use it.
    private let places: [Int: [(subset: Int, slot: Int)]]
    /// Per unit and subset, the subset's vectors as they arrive (an empty vector: not usable).
    private var stored: [[[[Double]]]]
    private var added = 0

    /// `poolSize`: samples × pooledPerSample, known before streaming (the trace manifest's count).
    public init(units: Int, width: Int, poolSize: Int) {
        self.units = units
        self.width = width
        let all = Array(0..<poolSize)
        subsets = poolSize <= GradientCorrelation.maxVectors ? [all]
            : (0..<GradientCorrelation.pooledSubsets).map { r in
                GradientCorrelation.randomSubset(all, count: GradientCorrelation.maxVectors,
                                                 seed: GradientCorrelation.subsetSeed &+ UInt64(r + 1))
            }
        var places: [Int: [(subset: Int, slot: Int)]] = [:]
        for (s, subset) in subsets.enumerated() { for (slot, i) in subset.enumerated() { places[i, default: []].append((s, slot)) } }
        self.places = places
        stored = Array(repeating: subsets.map { Array(repeating: [], count: $0.count) }, count: units)
    }

    /// One sample's vectors: (units, pooledPerSample, width), zero rows where it had fewer positions.
    public mutating func add(_ vectors: [Float]) {
        let k = GradientCorrelation.pooledPerSample
        precondition(vectors.count == units * k * width, "pooled jacov expects (units, \(k), width) vectors")
        for j in 0..<k {
            defer { added += 1 }
            guard let uses = places[added] else { continue }
            for unit in 0..<units {
                let start = (unit * k + j) * width
                let v = vectors[start..<start + width].map(Double.init)
                for use in uses { stored[unit][use.subset][use.slot] = v }
            }
        }
    }

    /// Per unit: jacov averaged over the subsets.
    public func scores() -> [Float] {
        (0..<units).map { unit in
            let values = stored[unit].map { GradientCorrelation.jacov($0.filter { !$0.isEmpty }) }
            return Float(values.reduce(0, +) / Double(max(values.count, 1)))
        }
    }
}
