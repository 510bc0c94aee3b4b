import Foundation
import ShadowFormats
import ShadowModels

extension TransformerShape {
    /// The sizes a fingerprint compares, by their config names.
    var namedSizes: [(String, Int)] {
        [("hidden_size", hiddenSize), ("heads", heads), ("kv_heads", kvHeads), ("head_dim", headDim),
         ("ffn_size", ffnSize), ("vocab_size", vocabularySize), ("max_context", maxContext)]
    }
}

/// Identifies the model that traces and predictors were made with, so that loading them for a
/// different model is a clear error rather than silent nonsense.
public struct ModelFingerprint: Codable, Equatable, Sendable, CustomStringConvertible {
    public var name: String
    public var architecture: String
    public var shape: TransformerShape
    /// FNV-1a over the checkpoint's size and its first and last megabyte (config.json and every
    /// safetensors file for a Hugging Face directory): cheap, and different for different weights.
    public var contentHash: String

    enum CodingKeys: String, CodingKey {
        case name, architecture, shape, contentHash = "content_hash"
    }

    public var description: String { "\(name) (\(architecture), \(shape.layers) layers, hash \(contentHash))" }

    /// The same model whatever its file or directory is called (a copy, a symbolic link): the name
    /// is for people, the hash and sizes for the comparison.
    public static func == (a: ModelFingerprint, b: ModelFingerprint) -> Bool {
        a.architecture == b.architecture && a.shape == b.shape && a.contentHash == b.contentHash
    }

    public init(name: String, architecture: String, shape: TransformerShape, contentHash: String) {
        self.name = name
        self.architecture = architecture
        self.shape = shape
        self.contentHash = contentHash
    }

    public init(loaded: LoadedModel) throws {
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: loaded.path, isDirectory: &isDirectory)
        var files: [String] = [loaded.path]
        if isDirectory.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: loaded.path)) ?? []
            files = names.filter { $0 == "config.json" || $0.hasSuffix(".safetensors") }.sorted()
                .map { (loaded.path as NSString).appendingPathComponent($0) }
        }
        var digest = FNV1a()
        for file in files {
            let mapped = try MappedFile(path: file)
            var size = UInt64(mapped.byteCount)
            withUnsafeBytes(of: &size) { digest.mix($0) }
            // The bytes are valid only while the mapping lives (Swift may end `mapped` at its last use).
            withExtendedLifetime(mapped) {
                let bytes = mapped.bytes
                let window = 1 << 20
                digest.mix(UnsafeRawBufferPointer(rebasing: bytes[0..<min(window, bytes.count)]))
                if bytes.count > window { digest.mix(UnsafeRawBufferPointer(rebasing: bytes[max(window, bytes.count - window)...])) }
            }
        }
        self.init(name: URL(fileURLWithPath: loaded.path).lastPathComponent, architecture: loaded.model.architecture,
                  shape: loaded.model.shape, contentHash: digest.hex)
    }

    /// The largest size a fingerprint may hold; model loading refuses larger ones as well.
    public static let largestSize = TransformerShape.largestSize

    /// Throws unless every size could be a model's: positive, at most `largestSize`, and KV heads
    /// that divide the query heads. Checked when a file carrying the fingerprint is loaded, since
    /// commands that never compare it with a model (`predictor info`) would show it as read.
    /// `path` and `key` (the fingerprint's key in the file) name the value in the error.
    public func validate(path: String, key: String = "model") throws {
        func bad(_ name: String, _ reason: String) -> ShadowError { .badJSON(path: path, key: "\(key).shape.\(name)", reason: reason) }
        let s = shape
        let sizes = [("layers", s.layers), ("hidden_size", s.hiddenSize), ("heads", s.heads), ("kv_heads", s.kvHeads),
                     ("head_dim", s.headDim), ("ffn_size", s.ffnSize), ("vocab_size", s.vocabularySize), ("max_context", s.maxContext)]
        for (name, value) in sizes {
            if let problem = TransformerShape.sizeProblem(value) { throw bad(name, problem) }
        }
        guard s.heads % s.kvHeads == 0 else { throw bad("kv_heads", "\(s.kvHeads) does not divide heads \(s.heads)") }
    }

    /// Throws unless `other` is the same model; `what` names the file being checked.
    public func check(matches other: ModelFingerprint, what: String) throws {
        guard self == other else {
            throw ShadowError.failed("\(what): made for \(other), not for the loaded model \(self)\(shapeDifference(other))")
        }
    }

    /// What tells `other` from this fingerprint in words: the descriptions, or where they read the
    /// same the sizes that differ ("max_context 128 → 32", --long-context among the causes).
    public func difference(to other: ModelFingerprint) -> String {
        guard description == other.description else { return "\(self) → \(other)" }
        let mine = shape, theirs = other.shape
        let sizes = zip(mine.namedSizes, theirs.namedSizes).filter { $0.1 != $1.1 }.map { "\($0.0.0) \($0.0.1) → \($0.1.1)" }
        let context = mine.maxContext != theirs.maxContext ? " (--long-context, for LongRoPE models, changes it)" : ""
        return sizes.isEmpty ? "\(self), made differently" : sizes.joined(separator: ", ") + context
    }

    /// The sizes that differ (": its vocab_size is 500, the model's 384"): the descriptions show
    /// the layer count only, and can read the same for two different models. Where only the
    /// hashes differ, says so: the same model converted to GGUF, or quantised, is another file.
    private func shapeDifference(_ other: ModelFingerprint) -> String {
        let differing = zip(shape.namedSizes, other.shape.namedSizes).filter { $0.1 != $1.1 }
            .map { model, file in "its \(model.0) is \(file.1), the model's \(model.1)" }
        if differing.isEmpty && architecture == other.architecture && shape.layers == other.shape.layers {
            return ": the same architecture and sizes, other weights or another file of them (a conversion to GGUF or another quantisation counts as another model, and so does an edited config.json of a directory: calibrate for this one)"
        }
        let context = shape.maxContext != other.shape.maxContext ? " (--long-context, for LongRoPE models, changes it)" : ""
        return differing.isEmpty ? "" : ": " + differing.joined(separator: "; ") + context
    }
}
