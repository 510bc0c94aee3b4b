/// Steele, Lea & Flood's SplitMix64: tiny, fast, and the same sequence on every platform and Swift
/// version (the standard library promises no stable algorithm for `random(in:using:)`). The one
/// seeded generator of the package: few-shot draws, subsets, sampling, and the tests' random data.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The whole state: `SplitMix64(seed: g.state)` continues g's sequence (checkpoints).
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public static let golden: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// The output mix: a bijection on 64 bits that spreads every input bit over the result.
    public static func finalize(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= Self.golden
        return Self.finalize(state)
    }

    /// Uniform in 0..<bound, without modulo bias (Lemire's multiply-and-reject).
    public mutating func next(below bound: Int) -> Int {
        precondition(bound > 0)
        let range = UInt64(bound)
        var product = next().multipliedFullWidth(by: range)
        if product.low < range {
            let threshold = (0 &- range) % range
            while product.low < threshold { product = next().multipliedFullWidth(by: range) }
        }
        return Int(product.high)
    }
}
