import Foundation

/// Rotary position settings: θ and an optional frequency scaling (`rope_scaling` /
/// `rope_parameters` in config.json).
public struct RopeConfig: Sendable, Equatable, Codable {
    public enum Scaling: Sendable, Equatable, Codable {
        case none
        /// Positions divided by `factor` (all frequencies scaled).
        case linear(factor: Double)
        /// Llama 3's wavelength-dependent scaling.
        case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalContext: Double)
        /// Each frequency divided by its own factor (d_h/2 of them): how llama.cpp's converter
        /// stores Llama 3's scaling in a GGUF (the tensor rope_freqs.weight).
        case frequencyFactors([Float])
    }

    public var theta: Double
    public var scaling: Scaling

    public init(theta: Double, scaling: Scaling = .none) {
        self.theta = theta
        self.scaling = scaling
    }

    /// θ^(−2i/d_h) for i < d_h/2, after scaling.
    public func inverseFrequencies(headDim: Int) -> [Float] {
        (0..<headDim / 2).map { i in
            let base = 1 / pow(theta, Double(2 * i) / Double(headDim))
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

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type", type, ropeTheta = "rope_theta", factor
        case lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    /// The scaling this object describes; `key` names it in errors.
    func scaling(key: String) throws -> RopeConfig.Scaling {
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
        default:
            throw ConfigValueError(key: key, reason: "unsupported rope type \"\(kind)\"")
        }
    }

    /// Frequencies are divided by the factor: zero or a negative one gives infinite or negative ones.
    private func checkFactor(_ factor: Double, key: String) throws {
        guard factor > 0 && factor.isFinite else {
            throw ConfigValueError(key: key, reason: "\"factor\" must be a positive number, got \(factor)")
        }
    }
}
