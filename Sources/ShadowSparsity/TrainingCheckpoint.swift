import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels

/// Where a predictor's training stands, saved so that an interrupted run continues and ends with
/// the predictor an uninterrupted run gives: every network's parameters, the optimiser's moments
/// and the batch order of the network in training, and the position in its epochs.
///
/// The file is safetensors (one flat f32 tensor per network, `optimiser.m`, `optimiser.v`) with
/// the position as JSON in its metadata; it is written atomically, so a kill never leaves half a
/// checkpoint.
public struct TrainingCheckpoint: Sendable {
    public static let format = "shadowllm-training-checkpoint"
    public static let version = 1

    public let path: String
    /// Seconds between saves while training runs; Ctrl-C saves at once.
    public var interval: TimeInterval
    /// Continue from `path` when it holds a checkpoint of the same run.
    public var resume: Bool
    /// Asked at every step whether to save and stop (Ctrl-C; tests stop after a number of steps).
    var stopRequested: @Sendable () -> Bool = { Interruption.requested }

    public init(path: String, interval: TimeInterval = 120, resume: Bool) {
        self.path = path
        self.interval = interval
        self.resume = resume
    }

    /// What makes two runs the same run: a checkpoint continues only the run that wrote it.
    struct Run: Codable, Equatable {
        var traces: String
        var samples: Int
        var criterion: String
        var kind: String
        var configuration: PredictorConfiguration
        var options: TrainingOptions
        var dtype: String
        var model: ModelFingerprint
        var predictorToken: String?
        /// `PredictorDataset.digest` of the samples.
        var data: String
    }

    /// The position inside one network's training, at the start of a step.
    struct Position: Codable, Equatable {
        /// 1-based epoch, and the batch of it that runs next.
        var epoch: Int
        var batch: Int
        /// The batch order's generator after this epoch's shuffle, and this epoch's order.
        var generator: UInt64
        var order: [Int]
        /// Sum of the epoch's batch losses so far (weighted by batch rows).
        var lossSum: Double
    }

    struct State: Codable {
        var version: Int
        var run: Run
        /// Index of the network in training among `Predictor.networks` (heads first).
        var network: Int
        var position: Position
        /// Final losses of the networks of the current part already trained, and the heads' mean
        /// when the neuron part is in training.
        var partLosses: [Float]
        var headLoss: Float?
        /// Training time before this checkpoint.
        var seconds: Double
    }

    // MARK: Writing and reading

    func save(_ state: State, predictor: Predictor, optimiser: AdamW) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(state), as: UTF8.self)
        var writer = SafetensorsWriter(metadata: ["format": Self.format, "state": json])
        // Borrowed, not copied: the writer streams each buffer to the file, and the predictor and
        // optimiser outlive the write (a copy was 1.2 GB for a large predictor).
        for (name, network) in predictor.networks {
            writer.add("\(name).parameters", shape: [network.parameterCount],
                       borrowing: UnsafeBufferPointer(start: network.parameters.pointer, count: network.parameterCount))
        }
        writer.add("optimiser.m", shape: [optimiser.m.count], borrowing: UnsafeBufferPointer(start: optimiser.m.pointer, count: optimiser.m.count))
        writer.add("optimiser.v", shape: [optimiser.v.count], borrowing: UnsafeBufferPointer(start: optimiser.v.pointer, count: optimiser.v.count))
        try withExtendedLifetime((predictor, optimiser)) { try writer.write(to: path) }
    }

    /// Reads the checkpoint of `run` into `predictor` (every network's parameters) and returns
    /// where training stands with the moments of the network in training and the epochs finished
    /// over all networks (which the position gives). Anything that does not
    /// fit this run, this predictor or this training split is an error naming the file.
    /// `headNetworks[i]` tells whether network i (in `Predictor.networks`' order) is a head network.
    func load(run: Run, predictor: Predictor, train: [Int], headNetworks: [Bool], stepsPerEpoch: (Int) -> Int, epochs: (Int) -> Int)
        throws -> (state: State, completedEpochs: Int, m: [Float], v: [Float]) {
        let file = try SafetensorsFile(path: path)
        func corrupt(_ reason: String) -> ShadowError { .corruptFile(path: path, reason: reason) }
        guard file.metadata["format"] == Self.format, let json = file.metadata["state"] else {
            throw corrupt("not a training checkpoint (its safetensors metadata has no \"format\": \"\(Self.format)\" and \"state\")")
        }
        let state = try ConfigDecoding.decode(State.self, from: Data(json.utf8), path: path + " (state)")
        guard state.version == Self.version else {
            throw corrupt("checkpoint version \(state.version); this build reads version \(Self.version)")
        }
        if state.run != run {
            throw ShadowError.invalidArgument(name: "--resume", reason: "\(path) was written by another run (it differs in \(Self.differences(state.run, run).joined(separator: ", "))); "
                                              + "run without --resume, or remove it, to start again")
        }
        let networks = predictor.networks
        guard networks.indices.contains(state.network) else {
            throw ShadowError.badJSON(path: path + " (state)", key: "network", reason: "\(state.network) is not one of the \(networks.count) networks")
        }
        let p = state.position, steps = stepsPerEpoch(state.network), total = epochs(state.network)
        guard (1...max(total, 1)).contains(p.epoch), (0..<steps).contains(p.batch) else {
            throw ShadowError.badJSON(path: path + " (state)", key: "position",
                                      reason: "epoch \(p.epoch) batch \(p.batch) is not a point of \(total) epochs of \(steps) batches")
        }
        guard p.order.count == train.count, p.order.sorted() == train else {
            throw ShadowError.badJSON(path: path + " (state)", key: "position.order", reason: "is not an order of this run's training samples")
        }
        // Everything else the state holds is checked against the position.
        let isHead = headNetworks[state.network]
        let partStart = isHead ? 0 : headNetworks.filter { $0 }.count
        guard state.partLosses.count == state.network - partStart, state.partLosses.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw ShadowError.badJSON(path: path + " (state)", key: "partLosses",
                                      reason: "needs \(state.network - partStart) finite, non-negative losses (the networks of this part already trained)")
        }
        guard (state.headLoss == nil) == isHead, state.headLoss.map({ $0.isFinite && $0 >= 0 }) ?? true else {
            throw ShadowError.badJSON(path: path + " (state)", key: "headLoss", reason: isHead ? "is given while heads train" : "must be a finite, non-negative loss once neurons train")
        }
        // The epoch's mean loss is recorded in single precision.
        guard p.lossSum >= 0, p.lossSum <= Double(Float.greatestFiniteMagnitude) * Double(train.count) else {
            throw ShadowError.badJSON(path: path + " (state)", key: "position.lossSum",
                                      reason: "must be a non-negative sum of losses whose mean fits single precision")
        }
        guard state.seconds >= 0, state.seconds.isFinite else {
            throw ShadowError.badJSON(path: path + " (state)", key: "seconds", reason: "must be a finite, non-negative time")
        }
        func values(_ name: String, count: Int) throws -> [Float] {
            guard let info = file.tensorInfos[name] else { throw ShadowError.badTensor(path: path, tensor: name, reason: "missing") }
            guard info.shape == [count] else {
                throw ShadowError.badTensor(path: path, tensor: name, reason: "has shape \(info.shape), expected [\(count)]")
            }
            var result = [Float](repeating: 0, count: count)
            try result.withUnsafeMutableBufferPointer { try file.floats(name, into: $0) }
            guard result.allSatisfy(\.isFinite) else { throw ShadowError.badTensor(path: path, tensor: name, reason: "holds non-finite values") }
            return result
        }
        for (name, network) in networks {
            let saved = try values("\(name).parameters", count: network.parameterCount)
            saved.withUnsafeBufferPointer { network.parameters.pointer.update(from: $0.baseAddress!, count: network.parameterCount) }
            // As a predictor file's loader checks: else training would end writing one it refuses.
            guard network.outputsFitSinglePrecision else {
                throw ShadowError.badTensor(path: path, tensor: "\(name).parameters", reason: "so large that the network's scores can overflow single precision")
            }
        }
        let count = networks[state.network].network.parameterCount
        let v = try values("optimiser.v", count: count)
        // A negative second moment would make every later update NaN.
        guard v.allSatisfy({ $0 >= 0 }) else { throw ShadowError.badTensor(path: path, tensor: "optimiser.v", reason: "holds negative values") }
        let completed = (0..<state.network).reduce(0) { $0 + epochs($1) } + p.epoch - 1
        return (state, completed, try values("optimiser.m", count: count), v)
    }

    /// The fields in which two runs differ, as dotted JSON keys.
    static func differences(_ a: Run, _ b: Run) -> [String] {
        func flat(_ run: Run) -> [String: String] {
            guard let data = try? JSONEncoder().encode(run),
                  let object = try? JSONSerialization.jsonObject(with: data) else { return [:] }
            var result: [String: String] = [:]
            func walk(_ value: Any, _ key: String) {
                if let dictionary = value as? [String: Any] {
                    for (k, v) in dictionary { walk(v, key.isEmpty ? k : "\(key).\(k)") }
                } else {
                    result[key] = "\(value)"
                }
            }
            walk(object, "")
            return result
        }
        let x = flat(a), y = flat(b)
        let keys = Set(x.keys).union(y.keys).filter { x[$0] != y[$0] }.sorted()
        return keys.isEmpty ? ["its settings"] : keys
    }

    /// Whether `path` holds a training checkpoint (of any run): a file that is something else must
    /// not be replaced by a save, nor removed when training ends.
    public static func isCheckpoint(atPath path: String) -> Bool {
        if let file = try? SafetensorsFile(path: path) { return file.metadata["format"] == format && file.metadata["state"] != nil }
        // One whose data was cut short (a full disk, an interrupted copy) is still a checkpoint,
        // ours to replace, if its header says so.
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let prefix = try? handle.read(upToCount: 8), prefix.count == 8 else { return false }
        let length = prefix.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard length <= 1 << 24, let header = try? handle.read(upToCount: Int(length)), header.count == Int(length),
              let value = try? JSONParser.parse([UInt8](header)),
              case .string(let written)? = value["__metadata__"]?["format"] else { return false }
        return written == format
    }

    /// Removes the checkpoint once the predictor it leads to is written.
    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
