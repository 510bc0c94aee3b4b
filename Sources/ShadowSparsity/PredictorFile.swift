import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels

// A predictor file is one safetensors file. Its tensors are the networks' parameters, all F32
// or all F16 (`train-predictor --dtype f16`):
//
//   shadow:                heads.{i}.weight (out, in), heads.{i}.bias (out),
//                          neurons.{i}.weight, neurons.{i}.bias
//   dejavu, -lookahead:    layers.{l}.heads.{i}.weight, …, layers.{l}.neurons.{i}.bias  (l = 1…L−1)
//
// where i counts the network's dense layers from its input (ReLU after each hidden layer, none
// between a low-rank factor and the output). The header's `__metadata__` holds
// {"format": "shadowllm-predictor", "predictor": "<JSON of PredictorMetadata>"}: safetensors
// metadata values must be strings, so the JSON is nested as text. One file, no sidecar.

/// Everything a predictor file says about itself besides its weights.
public struct PredictorMetadata: Sendable, Equatable, Codable {
    public struct Parameters: Sendable, Equatable, Codable {
        public var heads: Int
        public var neurons: Int
        public var total: Int
    }

    public var format: String
    public var version: Int
    public var kind: PredictorKind
    public var criterion: String
    public var headWidth: Int
    public var neuronWidth: Int
    public var rank: Int?
    public var targetScaling: TargetScaling
    public var loss: PredictorLoss
    public var rankTemperature: Float
    public var predictsNeurons: Bool
    /// What the networks read: "A0 at the predictor token (H·d_h), min-max scaled" or the residual.
    public var input: String
    public var inputWidth: Int
    public var model: ModelFingerprint
    public var training: TrainingSummary?
    public var quality: PredictorQualityReport?
    public var parameters: Parameters
    /// FLOPs to score every layer once (a multiply–add is two).
    public var flopsPerPrediction: Parameters
    /// How the file stores the weights, "f32" or "f16"; absent in files written before f16 existed.
    public var weightsDType: String?

    enum CodingKeys: String, CodingKey {
        case format, version, kind, criterion, rank, loss, input, model, training, quality, parameters
        case headWidth = "head_width", neuronWidth = "neuron_width", targetScaling = "target_scaling"
        case rankTemperature = "rank_temperature", predictsNeurons = "predicts_neurons", inputWidth = "input_width"
        case flopsPerPrediction = "flops_per_prediction", weightsDType = "weights_dtype"
    }

    public var configuration: PredictorConfiguration {
        PredictorConfiguration(kind: kind, headWidth: headWidth, neuronWidth: neuronWidth, rank: rank,
                               targetScaling: targetScaling, loss: loss, rankTemperature: rankTemperature)
    }
}

extension Predictor {
    public var metadata: PredictorMetadata {
        let c = configuration
        return PredictorMetadata(
            format: PredictorFile.format, version: PredictorFile.version, kind: c.kind, criterion: criterion,
            headWidth: c.headWidth, neuronWidth: c.neuronWidth, rank: c.rank, targetScaling: c.targetScaling,
            loss: c.loss, rankTemperature: c.rankTemperature, predictsNeurons: predictsNeurons,
            input: kind == .shadow ? "A0 at the predictor token (H*d_h), min-max scaled per sample"
                : kind == .dejavu ? "residual entering layer l (d), min-max scaled" : "residual entering layer l-1 (d), min-max scaled",
            inputWidth: inputWidth, model: model, training: training, quality: quality,
            parameters: .init(heads: headParameters, neurons: neuronParameters, total: parameterCount),
            flopsPerPrediction: .init(heads: headFLOPs, neurons: neuronFLOPs, total: flopsPerPrediction),
            weightsDType: weightDType.rawValue)
    }

    /// Throws unless the predictor was made for `fingerprint`'s model; the error names the file.
    public func check(fingerprint: ModelFingerprint) throws {
        try fingerprint.check(matches: model, what: path ?? "predictor")
    }
}

public enum PredictorFile {
    public static let format = "shadowllm-predictor"
    public static let version = 1

    /// The safetensors metadata key of the training samples' digests.
    static let trainingDigestsKey = "training_sample_digests"

    /// Writes `predictor` to `path` atomically and records the path in it.
    public static func save(_ predictor: Predictor, to path: String) throws {
        guard !predictor.weightsReleased else {
            throw ShadowError.invalidArgument(name: predictor.path ?? "predictor", reason: "gave back its fp32 weights for prediction only (loaded forPredictionOnly, or prepareForPrediction(releasingFullPrecision: true)) and cannot be saved; load it again without forPredictionOnly")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let json = String(decoding: try encoder.encode(predictor.metadata), as: UTF8.self)
        var metadata = ["format": format, "predictor": json]
        // Beside the JSON, which `predictor info --json` prints whole: 16 hex digits per sample.
        if let digests = predictor.trainingSampleDigests { metadata[trainingDigestsKey] = digests.sorted().joined() }
        var writer = SafetensorsWriter(metadata: metadata)
        for (prefix, network) in predictor.networks {
            for (i, layer) in network.layers.enumerated() {
                let values = network.values(layer: i)
                writer.add("\(prefix).\(i).weight", shape: [layer.outputs, layer.inputs], values: values.weight,
                           dtype: predictor.weightDType)
                writer.add("\(prefix).\(i).bias", shape: [layer.outputs], values: values.bias, dtype: predictor.weightDType)
            }
        }
        try writer.write(to: path)
        predictor.path = path
    }

    /// A predictor of `kind` for `fingerprint`'s model, from a file or from a directory
    /// (`path(of:inDirectory:)`). One of another kind or made for another model is refused, the
    /// error naming the file (or the directory, when none in it is chosen). `forPredictionOnly`
    /// as in `load(path:forPredictionOnly:)` (the commands, which only predict, pass true).
    public static func load(path: String, kind: PredictorKind, for fingerprint: ModelFingerprint,
                            forPredictionOnly: Bool = false) throws -> Predictor {
        let file = try fileKind(atPath: path) == .directory ? try self.path(of: kind, inDirectory: path) : path
        let predictor = try load(path: file, forPredictionOnly: forPredictionOnly)
        guard predictor.kind == kind else {
            throw ShadowError.invalidArgument(name: file, reason: "is a \(predictor.kind.rawValue) predictor, not \(kind.rawValue)")
        }
        try predictor.check(fingerprint: fingerprint)
        return predictor
    }

    /// The predictor file of `kind` in `directory` (as `shadowllm pipeline` names them):
    /// KIND.safetensors, else the only KIND-NAME.safetensors (`shadow-plainact.safetensors`; not
    /// one of a longer kind: dejavu-lookahead's are not dejavu's). Errors name `directory`.
    public static func path(of kind: PredictorKind, inDirectory directory: String) throws -> String {
        let method = kind.rawValue
        let exact = (directory as NSString).appendingPathComponent("\(method).safetensors")
        // Whatever holds the exact name is the choice (a dangling link or a directory there is then
        // refused by name when read, not passed over for a sibling). `try?`: a directory that
        // cannot be entered is said below, naming it rather than this file.
        if (try? fileKind(atPath: exact)) != nil || (try? FileManager.default.destinationOfSymbolicLink(atPath: exact)) != nil {
            return exact
        }
        let longer = PredictorKind.allCases.map(\.rawValue).filter { $0 != method && $0.hasPrefix(method + "-") }
        func named(_ kind: String, _ stem: String) -> Bool { stem == kind || stem.hasPrefix(kind + "-") }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            switch try fileKind(atPath: directory) {
            case nil: throw ShadowError.fileNotFound(path: directory)
            case .directory?: throw ShadowError.unreadableFile(path: directory, reason: "its entries cannot be listed (\(AtomicFile.describe(error)))")
            default: throw ShadowError.invalidArgument(name: directory, reason: "is not a directory")
            }
        }
        // Every entry with a predictor's name counts, whatever it is: one that is not a file is
        // refused when read, and two names are a choice for the user, never made quietly.
        let candidates = names.filter { $0.hasSuffix(".safetensors") }.sorted().filter { name in
            let stem = String(name.dropLast(".safetensors".count))
            return named(method, stem) && !longer.contains { named($0, stem) }
        }
        guard candidates.count == 1 else {
            throw ShadowError.invalidArgument(name: directory, reason: candidates.isEmpty
                ? "holds no \(method).safetensors or \(method)-*.safetensors; name the predictor file"
                : "holds several \(method) predictors (\(candidates.joined(separator: ", "))); name one")
        }
        return (directory as NSString).appendingPathComponent(candidates[0])
    }

    /// Reads the metadata only (no weights are converted).
    public static func metadata(path: String) throws -> PredictorMetadata {
        try metadata(of: try open(path))
    }

    /// Loads a predictor: every tensor the metadata implies must be present with its shape,
    /// and the file may hold no others. `forPredictionOnly` prepares it as
    /// `prepareForPrediction(releasingFullPrecision: true)` does, network by network as each is
    /// read, so an f16 predictor's fp32 weights are never all in memory at once.
    public static func load(path: String, forPredictionOnly: Bool = false) throws -> Predictor {
        let file = try open(path)
        let meta = try metadata(of: file)
        try checkSizes(meta, against: file)
        let predictor: Predictor
        do {
            predictor = try Predictor(configuration: meta.configuration, criterion: meta.criterion, model: meta.model,
                                      predictsNeurons: meta.predictsNeurons, seed: nil)
        } catch ShadowError.invalidArgument(let option, let reason) {
            // The checks speak of train-predictor's options; a file's reader names its keys.
            let keys = ["--head-width": "head_width", "--neuron-width": "neuron_width", "--rank": "rank",
                        "--rank-temperature": "rank_temperature", "--traces": "model.shape.layers"]
            throw ShadowError.badJSON(path: path + " (metadata)", key: keys[option] ?? option, reason: reason)
        } catch let error as ShadowError {
            throw ShadowError.corruptFile(path: path, reason: "metadata describes an impossible predictor (\(error.description))")
        }
        guard meta.inputWidth == predictor.inputWidth else {
            throw ShadowError.corruptFile(path: path, reason: "metadata input_width \(meta.inputWidth) does not match the model's \(predictor.inputWidth)")
        }
        var expected = Set<String>()
        let storedHalf = file.tensorInfos.values.allSatisfy { $0.dtype == .f16 }
        for (prefix, network) in predictor.networks {
            for (i, layer) in network.layers.enumerated() {
                let weightName = "\(prefix).\(i).weight", biasName = "\(prefix).\(i).bias"
                expected.insert(weightName)
                expected.insert(biasName)
                for (name, shape) in [(weightName, [layer.outputs, layer.inputs]), (biasName, [layer.outputs])] {
                    guard let info = file.tensorInfos[name] else {
                        throw ShadowError.badTensor(path: path, tensor: name, reason: "missing (expected shape \(shape))")
                    }
                    guard info.shape == shape else {
                        throw ShadowError.badTensor(path: path, tensor: name, reason: "has shape \(info.shape), expected \(shape)")
                    }
                }
                // Straight into the network's storage: a temporary array of the largest tensor
                // (shadow's neuron output, 47 M floats for SmolLM2) would add 189 MB to the peak.
                let weight = UnsafeMutableBufferPointer(start: network.weight(i), count: layer.outputs * layer.inputs)
                let bias = UnsafeMutableBufferPointer(start: network.bias(i), count: layer.outputs)
                try file.floats(weightName, into: weight)
                try file.floats(biasName, into: bias)
                file.dropPages(of: weightName)   // the file's pages would otherwise stay resident beside the copy
                for (name, values) in [(weightName, weight), (biasName, bias)] where Ops.firstNonFinite(values.baseAddress!, count: values.count) != nil {
                    throw ShadowError.badTensor(path: path, tensor: name, reason: "holds non-finite values")
                }
            }
            // Finite weights can still overflow: every score must stay finite whatever the input,
            // or masks would be drawn from NaNs.
            guard network.outputsFitSinglePrecision else {
                throw ShadowError.corruptFile(path: path, reason: "the weights of network \(prefix) (tensors \(prefix).*) are so large that its scores can overflow single precision")
            }
            if forPredictionOnly && storedHalf { network.prepareForPrediction(releasingFullPrecision: true) }
        }
        if let extra = file.tensorNames.first(where: { !expected.contains($0) }) {
            throw ShadowError.badTensor(path: path, tensor: extra, reason: "is not part of a \(meta.kind.rawValue) predictor")
        }
        predictor.path = path
        predictor.weightDType = storedHalf ? .f16 : .f32
        predictor.training = meta.training
        predictor.quality = meta.quality
        if let digests = file.metadata[trainingDigestsKey] {
            let characters = Array(digests.utf8)
            guard characters.count % 16 == 0, characters.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
                throw ShadowError.badJSON(path: path, key: trainingDigestsKey, reason: "is not a run of 16-digit hexadecimal sample digests")
            }
            predictor.trainingSampleDigests = Set(stride(from: 0, to: characters.count, by: 16).map {
                String(decoding: characters[$0..<$0 + 16], as: UTF8.self)
            })
        }
        return predictor
    }

    /// Checks the metadata's sizes against the weight tensors in the file before any network is
    /// allocated: a corrupt size (2^40 layers) would otherwise ask for terabytes, and a product
    /// that overflows would wrap silently. Every weight's shape must be what the sizes give.
    private static func checkSizes(_ meta: PredictorMetadata, against file: SafetensorsFile) throws {
        let path = file.path, s = meta.model.shape
        func bad(_ key: String, _ reason: String) -> ShadowError { .badJSON(path: path + " (metadata)", key: key, reason: reason) }
        /// A size and the metadata keys it comes from.
        typealias Size = (value: Int, key: String)
        let sizes: [Size] = [(s.layers, "model.shape.layers"), (s.heads, "model.shape.heads"), (s.headDim, "model.shape.head_dim"),
                             (s.hiddenSize, "model.shape.hidden_size"), (s.ffnSize, "model.shape.ffn_size"),
                             (meta.headWidth, "head_width"), (meta.neuronWidth, "neuron_width"), (meta.rank ?? 1, "rank")]
        for size in sizes where size.value <= 0 { throw bad(size.key, "must be positive, got \(size.value)") }
        func product(_ a: Size, _ b: Size) throws -> Size {
            let (value, overflow) = a.value.multipliedReportingOverflow(by: b.value)
            guard !overflow else { throw bad(a.key, "\(a.key) \(a.value) × \(b.key) \(b.value) overflows") }
            return (value, "\(a.key) × \(b.key)")
        }
        let layers = sizes[0], heads = sizes[1], headWidth = sizes[5], neuronWidth = sizes[6]
        let perLayerHeads = try product(layers, heads), perLayerNeurons = try product(layers, sizes[4])
        let input = meta.kind == .shadow ? try product(heads, sizes[2]) : sizes[3]
        // One network: inputs → hidden → [rank →] outputs; weight i has shape [width i+1, width i].
        func check(_ prefix: String, _ widths: [Size]) throws {
            for i in 0..<widths.count - 1 {
                let name = "\(prefix).\(i).weight", expected = [widths[i + 1].value, widths[i].value]
                guard let info = file.tensorInfos[name] else {
                    throw ShadowError.badTensor(path: path, tensor: name, reason: "missing (expected shape \(expected))")
                }
                guard info.shape == expected else {
                    let key = info.shape.first == expected[0] ? widths[i].key : widths[i + 1].key
                    throw ShadowError.badTensor(path: path, tensor: name, reason: "has shape \(info.shape), but the metadata's \(key) gives \(expected)")
                }
            }
        }
        let rank: [Size] = meta.rank == nil ? [] : [sizes[7]]
        if meta.kind == .shadow {
            try check("heads", [input, headWidth, perLayerHeads])
            if meta.predictsNeurons { try check("neurons", [input, neuronWidth] + rank + [perLayerNeurons]) }
            return
        }
        // Per-layer kinds: layers 1…L−1 each hold at least a weight and a bias of two dense layers.
        guard layers.value - 1 <= file.tensorInfos.count / 4 else {
            throw bad(layers.key, "\(layers.value) layers need at least \(layers.value - 1) networks, but the file holds \(file.tensorInfos.count) tensors")
        }
        for l in 1..<layers.value {
            try check(Predictor.tensorPrefix(meta.kind, layer: l, part: "heads"), [input, headWidth, heads])
            if meta.predictsNeurons {
                try check(Predictor.tensorPrefix(meta.kind, layer: l, part: "neurons"), [input, neuronWidth] + rank + [sizes[4]])
            }
        }
    }

    private static func open(_ path: String) throws -> SafetensorsFile {
        _ = try existingFileKind(atPath: path)
        return try SafetensorsFile(path: path)
    }

    private static func metadata(of file: SafetensorsFile) throws -> PredictorMetadata {
        guard file.metadata["format"] == format, let json = file.metadata["predictor"] else {
            throw ShadowError.corruptFile(path: file.path, reason: "not a ShadowLLM predictor (its safetensors metadata has no \"format\": \"\(format)\" and \"predictor\")")
        }
        let meta: PredictorMetadata
        do {
            meta = try ConfigDecoding.decode(PredictorMetadata.self, from: Data(json.utf8), path: file.path + " (metadata)")
        } catch ShadowError.badJSON(let path, "kind"?, let reason) {
            // Codable words an unknown kind in Swift's terms ("Cannot initialize PredictorKind from
            // invalid String value foo"); say what the file may hold instead.
            struct Kind: Decodable { let kind: String }
            guard let kind = try? JSONDecoder().decode(Kind.self, from: Data(json.utf8)).kind else {
                throw ShadowError.badJSON(path: path, key: "kind", reason: reason)
            }
            let known = PredictorKind.allCases.map(\.rawValue).joined(separator: ", ")
            throw ShadowError.badJSON(path: path, key: "kind", reason: "unknown predictor kind \"\(kind)\" (expected \(known))")
        }
        guard meta.version == version else {
            throw ShadowError.corruptFile(path: file.path, reason: "predictor format version \(meta.version); this build reads version \(version)")
        }
        guard Criterion(rawValue: meta.criterion) != nil else {
            let known = Criterion.allCases.map(\.rawValue).joined(separator: ", ")
            throw ShadowError.badJSON(path: file.path + " (metadata)", key: "criterion", reason: "unknown criterion \"\(meta.criterion)\" (expected \(known))")
        }
        if Criterion(rawValue: meta.criterion)!.headsOnly && meta.predictsNeurons {
            throw ShadowError.badJSON(path: file.path + " (metadata)", key: "predicts_neurons", reason: "\(meta.criterion) scores heads only")
        }
        guard meta.format == format else {
            throw ShadowError.badJSON(path: file.path + " (metadata)", key: "format", reason: "is \"\(meta.format)\", not \"\(format)\"")
        }
        try meta.model.validate(path: file.path + " (metadata)")
        try validateReport(meta, path: file.path + " (metadata)")
        return meta
    }

    /// The held-out quality and training summary are shown as read (`predictor info`, reports):
    /// values no training can give are refused, naming the key.
    private static func validateReport(_ meta: PredictorMetadata, path: String) throws {
        func bad(_ key: String, _ reason: String) -> ShadowError { .badJSON(path: path, key: key, reason: reason) }
        if let quality = meta.quality {
            guard quality.heldOutSamples >= 0 else { throw bad("quality.held_out_samples", "must not be negative") }
            for (name, unit) in [("heads", quality.heads), ("neurons", quality.neurons)] {
                guard let unit else { continue }
                // (A perfect ranking may round a hair past 1.)
                guard (-1 - 1e-9...1 + 1e-9).contains(unit.spearman) else {
                    throw bad("quality.\(name).spearman", "\(unit.spearman) is not a correlation (−1 to 1)")
                }
                for (recallKey, recall) in [("recall", unit.recall), ("recall_local", unit.localRecall ?? [:])] {
                    if let (key, value) = recall.first(where: { !(0...1).contains($0.value) }) {
                        throw bad("quality.\(name).\(recallKey).\(key)", "\(value) is not a fraction (0 to 1)")
                    }
                }
            }
        }
        if let training = meta.training {
            guard training.samples >= 0, training.trainSamples >= 0, training.heldOutSamples >= 0,
                  training.trainSamples <= training.samples, training.heldOutSamples <= training.samples - training.trainSamples else {
                throw bad("training.samples", "\(training.trainSamples) training and \(training.heldOutSamples) held-out samples do not fit in \(training.samples)")
            }
            guard training.seconds >= 0, training.seconds.isFinite else { throw bad("training.seconds", "must be a time, got \(training.seconds)") }
            guard training.options.headEpochs >= 0, training.options.neuronEpochs >= 0 else {
                throw bad("training.options", "epochs must not be negative")
            }
        }
    }
}
