import Foundation

/// Rotary position settings: θ, an optional frequency scaling (`rope_scaling` /
/// `rope_parameters` in config.json) and how many of a head's dimensions rotate.
public struct RopeConfig: Sendable, Equatable {
    public enum Scaling: Sendable, Equatable {
        case none
        /// Positions divided by `factor` (all frequencies scaled).
        case linear(factor: Double)
        /// Llama 3's wavelength-dependent scaling.
        case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalContext: Double)
        /// Each frequency divided by its own factor (one per rotating pair): how llama.cpp's converter
        /// stores Llama 3's scaling in a GGUF (the tensor rope_freqs.weight).
        case frequencyFactors([Float])
        /// LongRoPE (Phi-3): each frequency divided by its short or long factor, and cos and sin
        /// multiplied by `attentionFactor` (so q·k by its square).
        case longRope(LongRope)
    }

    /// LongRoPE's two sets of factors. The short ones rotate every position up to
    /// `originalContext`, where the context then ends (see LlamaConfig); with `usesLongFactors`
    /// the long ones rotate every position and the context reaches `declaredContext`, as
    /// llama.cpp runs a context set past the original one (transformers switches per forward
    /// pass: the long factors for a pass whose positions go past the original context).
    public struct LongRope: Sendable, Equatable {
        public var shortFactors: [Float]
        public var longFactors: [Float]
        public var attentionFactor: Double
        public var originalContext: Int
        /// max_position_embeddings (a GGUF's context_length) as written.
        public var declaredContext: Int
        public var usesLongFactors = false

        public init(shortFactors: [Float], longFactors: [Float], attentionFactor: Double, originalContext: Int,
                    declaredContext: Int, usesLongFactors: Bool = false) {
            self.shortFactors = shortFactors
            self.longFactors = longFactors
            self.attentionFactor = attentionFactor
            self.originalContext = originalContext
            self.declaredContext = declaredContext
            self.usesLongFactors = usesLongFactors
        }

        /// The factors that rotate: one divisor per rotating pair.
        public var factors: [Float] { usesLongFactors ? longFactors : shortFactors }
        /// Whether the long factors would reach further than the short ones.
        public var extendsContext: Bool { declaredContext > originalContext }
    }

    public var theta: Double
    public var scaling: Scaling
    /// How many of a head's leading dimensions rotate, in pairs (i, i + r/2); the rest pass
    /// through unchanged (Phi-4-mini's `partial_rotary_factor`). nil: all of them.
    public var rotaryDimensions: Int?

    public init(theta: Double, scaling: Scaling = .none, rotaryDimensions: Int? = nil) {
        self.theta = theta
        self.scaling = scaling
        self.rotaryDimensions = rotaryDimensions
    }

    /// What cos and sin are multiplied by: LongRoPE's attention factor, else 1.
    public var magnitude: Float {
        if case .longRope(let longRope) = scaling { return Float(longRope.attentionFactor) }
        return 1
    }

    /// What makes a rotary frequency 0 or infinite in single precision (every logit NaN) though
    /// positive in double: θ itself, or the factors of its scaling.
    public enum FrequencyProblem: Sendable {
        case theta, scaling
        public func reason(_ config: RopeConfig) -> String {
            switch self {
            case .theta: "\(config.theta) gives rotary frequencies beyond single precision"
            case .scaling: "its factors give rotary frequencies beyond single precision (0 or infinite)"
            }
        }
    }

    /// The setting whose frequencies leave single precision, if any: θ alone, then the scaling
    /// (LongRoPE's short and long factors both, since --long-context switches to the long ones).
    public func singlePrecisionProblem(headDim: Int) -> FrequencyProblem? {
        let usable: ([Float]) -> Bool = { $0.allSatisfy { $0 > 0 && $0.isFinite } }
        var plain = self
        plain.scaling = .none
        guard usable(plain.inverseFrequencies(headDim: headDim)) else { return .theta }
        var scalings = [scaling]
        if case .longRope(var longRope) = scaling {
            longRope.usesLongFactors.toggle()
            scalings.append(.longRope(longRope))
        }
        for scaling in scalings {
            var scaled = self
            scaled.scaling = scaling
            guard usable(scaled.inverseFrequencies(headDim: headDim)) else { return .scaling }
        }
        return nil
    }

    /// θ^(−2i/r) for i < r/2, after scaling, where r is the rotating width of a head of
    /// `headDim` dimensions (`rotaryDimensions`, else all of them).
    public func inverseFrequencies(headDim: Int) -> [Float] {
        let width = rotaryDimensions ?? headDim
        return (0..<width / 2).map { i in
            let base = 1 / pow(theta, Double(2 * i) / Double(width))
            switch scaling {
            case .none:
                return Float(base)
            case .linear(let factor):
                return Float(base / factor)
            case .llama3(let factor, let low, let high, let original):
                let wavelength = 2 * Double.pi / base
                let lowWavelength = original / low, highWavelength = original / high
                if wavelength < highWavelength { return Float(base) }
                if wavelength > lowWavelength { return Float(base / factor) }
                let smooth = (original / wavelength - low) / (high - low)
                return Float((1 - smooth) * base / factor + smooth * base)
            case .frequencyFactors(let factors):
                return Float(base / Double(factors[i]))
            case .longRope(let longRope):
                return Float(base / Double(longRope.factors[i]))
            }
        }
    }
}

/// The `rope_scaling` / `rope_parameters` object of a Hugging Face config.
struct RopeParametersJSON: Decodable {
    let ropeType: String?
    let type: String?
    let ropeTheta: Double?
    let factor: Double?
    let lowFreqFactor: Double?
    let highFreqFactor: Double?
    let originalMaxPositionEmbeddings: Double?
    let shortFactor: [Double]?
    let longFactor: [Double]?
    let attentionFactor: Double?
    let partialRotaryFactor: Double?

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type", type, ropeTheta = "rope_theta", factor
        case lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case shortFactor = "short_factor", longFactor = "long_factor", attentionFactor = "attention_factor"
        case partialRotaryFactor = "partial_rotary_factor"
    }

    /// What a scaling needs from the rest of config.json.
    struct Context {
        /// max_position_embeddings as written (before LongRoPE's original context ends it).
        let maxContext: Int
        /// Half the rotating width of a head: one frequency per pair.
        let rotaryPairs: Int
        /// The top-level original_max_position_embeddings (Phi-3 writes it there).
        let originalContext: Int?
        /// Phi-3 reads an old "yarn" type as LongRoPE, as transformers does.
        var yarnIsLongRope = false
    }

    /// The scaling this object describes; `key` names it in errors.
    func scaling(key: String, _ context: Context) throws -> RopeConfig.Scaling {
        let kind = ropeType ?? type ?? "default"
        switch kind {
        case "default":
            return .none
        case "linear":
            guard let factor else { throw ConfigValueError(key: key, reason: "linear scaling needs \"factor\"") }
            try checkFactor(factor, key: key)
            return .linear(factor: factor)
        case "llama3":
            guard let factor, let lowFreqFactor, let highFreqFactor, let originalMaxPositionEmbeddings else {
                throw ConfigValueError(key: key, reason: "llama3 scaling needs \"factor\", \"low_freq_factor\", \"high_freq_factor\" and \"original_max_position_embeddings\"")
            }
            try checkFactor(factor, key: key)
            return .llama3(factor: factor, lowFrequencyFactor: lowFreqFactor, highFrequencyFactor: highFreqFactor,
                           originalContext: originalMaxPositionEmbeddings)
        case "longrope", "su":   // "su": Phi-3's first name for it
            return try longRope(key: key, context)
        case "yarn" where context.yarnIsLongRope:
            return try longRope(key: key, context)
        default:
            throw ConfigValueError(key: key, reason: "unsupported rope type \"\(kind)\"")
        }
    }

    /// As transformers computes it: the attention factor, unless given, is √(1 + ln s / ln c₀)
    /// for s = factor (else max_position_embeddings / c₀) above 1, and 1 otherwise.
    private func longRope(key: String, _ context: Context) throws -> RopeConfig.Scaling {
        guard let shortFactor, let longFactor else {
            throw ConfigValueError(key: key, reason: "longrope scaling needs \"short_factor\" and \"long_factor\"")
        }
        for (name, factors) in [("short_factor", shortFactor), ("long_factor", longFactor)] {
            guard factors.count == context.rotaryPairs else {
                throw ConfigValueError(key: key, reason: "\"\(name)\" has \(factors.count) values, expected \(context.rotaryPairs) (one per rotating pair of a head)")
            }
            if let bad = factors.first(where: { !($0 > 0 && $0.isFinite) }) {
                throw ConfigValueError(key: key, reason: "\"\(name)\" values must be positive numbers, found \(bad)")
            }
        }
        // transformers 5 writes original_max_position_embeddings at the top level and here; the top level wins.
        let nested = originalMaxPositionEmbeddings.flatMap { $0 > 0 && $0 < 1e15 ? Int(exactly: $0) : nil }
        guard let original = context.originalContext ?? nested, original > 0 else {
            throw ConfigValueError(key: key, reason: "longrope scaling needs a positive \"original_max_position_embeddings\"")
        }
        let scale = try factor.map { try checkFactor($0, key: key); return $0 } ?? Double(context.maxContext) / Double(original)
        let attention = attentionFactor ?? (scale <= 1 ? 1 : (1 + log(scale) / log(Double(original))).squareRoot())
        guard attention > 0 && attention.isFinite else {
            throw ConfigValueError(key: key, reason: "\"attention_factor\" must be a positive number, got \(attention)")
        }
        return .longRope(RopeConfig.LongRope(shortFactors: shortFactor.map(Float.init), longFactors: longFactor.map(Float.init),
                                             attentionFactor: attention, originalContext: original, declaredContext: context.maxContext))
    }

    /// Frequencies are divided by the factor: zero or a negative one gives infinite or negative ones.
    private func checkFactor(_ factor: Double, key: String) throws {
        guard factor > 0 && factor.isFinite else {
            throw ConfigValueError(key: key, reason: "\"factor\" must be a positive number, got \(factor)")
        }
    }
}
