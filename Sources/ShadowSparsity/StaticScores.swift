import Foundation
import ShadowFormats
import ShadowModels

/// Aggregate importance scores read from JSON (`{"heads": [[…]], "neurons": [[…]], "model": {…}}`,
/// as `shadowllm aggregate` writes them), checked against the model they will mask.
public enum StaticScores {
    struct File: Decodable {
        let heads: [[Float]]
        let neurons: [[Float]]?
        /// The fingerprint `aggregate` and `scores --json` write; files made by hand (or before
        /// it was written) leave it out and are checked by their sizes only.
        let model: ModelFingerprint?
    }

    /// `needsNeurons` false (neurons stay dense): a heads-only file (jacov, epenas) is enough.
    /// `model`, when given, must match the file's fingerprint if it has one.
    public static func load(path: String, shape: TransformerShape, needsNeurons: Bool = true,
                            model: ModelFingerprint? = nil) throws -> (heads: [[Float]], neurons: [[Float]]?) {
        let file = try ConfigDecoding.decode(File.self, path: path, acceptingStreams: true)
        if let recorded = file.model {
            try recorded.validate(path: path)
            try model?.check(matches: recorded, what: path)
        }
        guard file.heads.count == shape.layers, file.heads.allSatisfy({ $0.count == shape.heads }) else {
            throw ShadowError.badJSON(path: path, key: "heads", reason: "expected \(shape.layers) rows of \(shape.heads) scores")
        }
        guard let neurons = file.neurons else {
            guard !needsNeurons else {
                throw ShadowError.badJSON(path: path, key: "neurons", reason: "missing (a heads-only criterion cannot mask neurons; give --neuron-sparsity 0)")
            }
            return (file.heads, nil)
        }
        guard neurons.count == shape.layers, neurons.allSatisfy({ $0.count == shape.ffnSize }) else {
            throw ShadowError.badJSON(path: path, key: "neurons", reason: "expected \(shape.layers) rows of \(shape.ffnSize) scores")
        }
        return (file.heads, neurons)
    }
}
