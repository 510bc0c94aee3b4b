import Foundation
import Testing

/// Finite-difference checks: compares analytic derivatives with central differences
/// (f(x + ε) − f(x − ε)) / 2ε of a scalar computed in Double.
enum FiniteDifferences {
    /// Indices worth probing: the `largest` entries of largest |gradient| (the best signal for
    /// float32 differences) and `spread` entries evenly spaced through the array.
    static func probes(_ analytic: [Float], largest: Int = 3, spread: Int = 3) -> [Int] {
        let top = analytic.indices.sorted { abs(analytic[$0]) > abs(analytic[$1]) }.prefix(largest)
        let step = max(1, analytic.count / max(spread, 1))
        let even = stride(from: step / 2, to: analytic.count, by: step).prefix(spread)
        return Array(Set(top).union(even)).sorted()
    }

    /// Checks `analytic[i]` against central differences of `loss` at the probed indices of
    /// `values`. An entry passes when |fd − analytic| ≤ tolerance · max(|analytic|, floor · max|analytic|):
    /// the floor keeps entries that are nearly zero from demanding digits float32 cannot give.
    /// Returns the worst relative error seen (for the record).
    @discardableResult
    static func check(_ label: String, values: [Float], analytic: [Float], epsilon: Float, tolerance: Double,
                      floor: Double = 0.02, indices: [Int]? = nil,
                      sourceLocation: SourceLocation = #_sourceLocation,
                      loss: ([Float]) -> Double) -> Double {
        #expect(values.count == analytic.count, "\(label): \(analytic.count) gradients for \(values.count) values",
                sourceLocation: sourceLocation)
        let scale = Double(analytic.map { abs($0) }.max() ?? 0)
        var worst = 0.0
        var failures: [String] = []
        for i in indices ?? probes(analytic) {
            var plus = values, minus = values
            plus[i] += epsilon
            minus[i] -= epsilon
            let fd = (loss(plus) - loss(minus)) / (Double(plus[i]) - Double(minus[i]))
            let a = Double(analytic[i])
            let reference = max(abs(a), floor * scale, 1e-12)
            let error = abs(fd - a) / reference
            worst = max(worst, error)
            if !(error <= tolerance) { failures.append("[\(i)] analytic \(a) vs finite difference \(fd)") }
        }
        #expect(failures.isEmpty, "\(label): worst relative error \(worst); \(failures.joined(separator: "; "))",
                sourceLocation: sourceLocation)
        return worst
    }
}

/// Σ_i r_i · out_i in Double: a scalar whose gradient with respect to `out` is r.
func projection(_ out: [Float], _ r: [Float]) -> Double {
    zip(out, r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
}
