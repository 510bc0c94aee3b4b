import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels
@testable import ShadowSparsity
import ShadowTestSupport

/// Copies the predictor file at `path` with its metadata JSON edited by `edit` (the tensors unchanged).
func predictorFile(from path: String, to copy: String, edit: (inout [String: Any]) -> Void) throws {
    let file = try SafetensorsFile(path: path)
    let json = try #require(file.metadata["predictor"])
    var meta = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    edit(&meta)
    var writer = SafetensorsWriter(metadata: ["format": PredictorFile.format,
                                              "predictor": String(decoding: try JSONSerialization.data(withJSONObject: meta), as: UTF8.self)])
    writer.tensors = try file.tensorNames.map { .init(name: $0, shape: try file.info($0).shape, values: try file.floats($0)) }
    try writer.write(to: copy)
}

@Suite("Sizes in side files")
struct BadSizeTests {
    @Test("huge or overflowing sizes in predictor metadata are one-line errors naming the file and key, not allocations",
          arguments: [PredictorKind.shadow, .dejavu])
    func hugePredictorSizes(kind: PredictorKind) throws {
        var configuration = smallConfiguration
        configuration.kind = kind
        configuration.rank = 4
        let predictor = try Predictor(configuration: configuration, criterion: "plainact", model: SyntheticTraces.fingerprint)
        let directory = temporaryDirectory("huge-sizes")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = directory + "/good.safetensors"
        try PredictorFile.save(predictor, to: good)
        let huge = 1 << 40, overflowing = 1 << 62
        let cases: [([String], Int, String)] = [
            (["model", "shape", "layers"], huge, "model.shape.layers"),
            (["model", "shape", "layers"], overflowing, "model.shape.layers"),
            (["model", "shape", "heads"], huge, "model.shape.heads"),
            (["model", "shape", "ffn_size"], huge, "model.shape.ffn_size"),
            (["head_width"], huge, "head_width"),
            (["neuron_width"], huge, "neuron_width"),
            (["rank"], huge, "rank"),
            (["model", "shape", "layers"], -1, "model.shape.layers"),
        ] + (kind == .shadow ? [(["model", "shape", "head_dim"], overflowing, "model.shape.head")]
                             : [(["model", "shape", "hidden_size"], huge, "model.shape.hidden_size")])
        for (keys, value, mention) in cases {
            let path = directory + "/\(keys.last!)-\(value).safetensors"
            try predictorFile(from: good, to: path) { setJSON(&$0, keys, value) }
            do {
                _ = try PredictorFile.load(path: path)
                Issue.record("\(keys) = \(value) loaded")
            } catch let error as ShadowError {
                #expect(error.description.hasPrefix(path) && error.description.contains(mention), "\(error)")
                #expect(!error.description.contains("\n"))
            }
        }
        #expect(try PredictorFile.load(path: good).parameterCount == predictor.parameterCount)
    }

    @Test("impossible sizes in a predictor's model fingerprint are refused on loading, naming the key, though only a model would use them")
    func impossibleFingerprint() throws {
        let predictor = try Predictor(configuration: smallConfiguration, criterion: "plainact", model: SyntheticTraces.fingerprint)
        let directory = temporaryDirectory("bad-fingerprint")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = directory + "/good.safetensors"
        try PredictorFile.save(predictor, to: good)
        let cases: [(String, Int, String)] = [
            ("vocab_size", -5, "must be positive, got -5"), ("vocab_size", 0, "must be positive, got 0"),
            ("vocab_size", 1 << 50, "is \(1 << 50)"), ("max_context", -1, "must be positive, got -1"),
            ("max_context", 0, "must be positive, got 0"), ("max_context", Int.max, "is \(Int.max)"),
            ("kv_heads", 0, "must be positive, got 0"), ("kv_heads", 3, "3 does not divide"),
        ]
        for (key, value, reason) in cases {
            let path = directory + "/\(key)-\(value).safetensors"
            try predictorFile(from: good, to: path) { setJSON(&$0, ["model", "shape", key], value) }
            for (name, read) in [("load", { _ = try PredictorFile.load(path: path) }),
                                 ("metadata", { _ = try PredictorFile.metadata(path: path) })] as [(String, () throws -> Void)] {
                do {
                    try read()
                    Issue.record("\(name): \(key) = \(value) accepted")
                } catch let error as ShadowError {
                    #expect(error.description.hasPrefix(path) && error.description.contains("key \"model.shape.\(key)\": \(reason)"),
                            "\(name): \(error)")
                    #expect(!error.description.contains("\n"))
                }
            }
        }
    }

    @Test("every shape model loading accepts is one a fingerprint accepts, so traces of a calibrated model load again")
    func loadingAgreesWithFingerprints() throws {
        // Sizes on both sides of each limit; before, vocab 0 and sizes past 2^31 - 1 loaded but their traces were refused.
        let beyond = Int(Int32.max) + 1
        let llamas: [LlamaConfig] = [
            LlamaConfig(hiddenSize: 8, intermediateSize: 16, layers: 2, heads: 2, vocabularySize: 10),
            LlamaConfig(hiddenSize: 8, intermediateSize: 16, layers: 2, heads: 2, vocabularySize: 0),
            LlamaConfig(hiddenSize: 8, intermediateSize: 16, layers: 2, heads: 2, vocabularySize: Int(Int32.max)),
            LlamaConfig(hiddenSize: 8, intermediateSize: 16, layers: 2, heads: 2, vocabularySize: beyond),
            LlamaConfig(hiddenSize: 8, intermediateSize: 16, layers: 2, heads: 2, vocabularySize: 10, maxContext: Int(Int32.max)),
            LlamaConfig(hiddenSize: 8, intermediateSize: 16, layers: 2, heads: 2, vocabularySize: 10, maxContext: beyond),
            LlamaConfig(hiddenSize: 8, intermediateSize: beyond, layers: 2, heads: 2, vocabularySize: 10),
            LlamaConfig(hiddenSize: 8, intermediateSize: 16, layers: 2, heads: 2, headDim: beyond, vocabularySize: 10),
        ]
        let opts: [OPTConfig] = [
            OPTConfig(hiddenSize: 8, ffnSize: 16, layers: 2, heads: 2, vocabularySize: 10),
            OPTConfig(hiddenSize: 8, ffnSize: 16, layers: 2, heads: 2, vocabularySize: 0),
            OPTConfig(hiddenSize: 8, ffnSize: 16, layers: 2, heads: 2, vocabularySize: 10, maxContext: beyond),
            OPTConfig(hiddenSize: 8, ffnSize: beyond, layers: 2, heads: 2, vocabularySize: 10),
        ]
        let cases = llamas.map { config in ({ try config.validate(path: "config.json") }, config.shape) }
                  + opts.map { config in ({ try config.validate(path: "config.json") }, config.shape) }
        var accepted = 0
        for (validate, shape) in cases as [(() throws -> Void, TransformerShape)] {
            let loads = (try? validate()) != nil
            let fingerprint = ModelFingerprint(name: "m", architecture: "llama", shape: shape, contentHash: "0")
            let fingerprints = (try? fingerprint.validate(path: "traces")) != nil
            #expect(loads == fingerprints, "\(shape): loading \(loads ? "accepts" : "refuses"), the fingerprint \(fingerprints ? "accepts" : "refuses")")
            if loads { accepted += 1 }
        }
        #expect(accepted == 4)  // the two ordinary shapes and the two at the limit
    }
}
