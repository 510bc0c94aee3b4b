import Foundation
import ShadowFormats

/// The generator sampling draws from: SplitMix64, so sampled generations repeat exactly.
public typealias SeededGenerator = SplitMix64

/// How the next token is chosen from the logits.
public struct SamplingOptions: Sendable, Equatable {
    /// 0 means greedy (argmax).
    public var temperature: Float
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `topP`.
    public var topP: Float
    public var seed: UInt64

    public init(temperature: Float = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingOptions()
}

public struct Sampler: Sendable {
    public let options: SamplingOptions
    private var generator: SeededGenerator

    public init(_ options: SamplingOptions) {
        self.options = options
        generator = SeededGenerator(seed: options.seed)
    }

    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return best
    }

    public mutating func sample(_ logits: [Float]) -> Int {
        if options.temperature <= 0 { return Self.argmax(logits) }
        // Shifted by the largest logit and divided (not multiplied by 1/T, which overflows to
        // infinity below T ≈ 3e-39 and makes 0 × ∞ = NaN): the largest logit gets exp(0) = 1
        // and every other one at most 1, so any positive T is stable and a tiny one is greedy.
        let maxLogit = logits.max() ?? 0
        var probabilities = logits.map { expf(($0 - maxLogit) / options.temperature) }
        let total = probabilities.reduce(0, +)
        for i in probabilities.indices { probabilities[i] /= total }
        var candidates = Array(probabilities.indices)
        if options.topP < 1 {
            candidates.sort { probabilities[$0] > probabilities[$1] }
            var cumulative: Float = 0
            var keep = 0
            for id in candidates {
                cumulative += probabilities[id]
                keep += 1
                if cumulative >= options.topP { break }
            }
            candidates = Array(candidates.prefix(keep))
        }
        let mass = candidates.reduce(Float(0)) { $0 + probabilities[$1] }
        var r = Float(Double(generator.next() >> 11) / Double(1 << 53)) * mass
        for id in candidates {
            r -= probabilities[id]
            if r <= 0 { return id }
        }
        return candidates.last!
    }
}
