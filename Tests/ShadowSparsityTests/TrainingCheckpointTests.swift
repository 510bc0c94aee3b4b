import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels
@testable import ShadowSparsity
import ShadowTestSupport

@Suite("Training checkpoints")
struct TrainingCheckpointTests {
    /// Every parameter of every network, flattened in `Predictor.networks` order.
    static func parameters(_ predictor: Predictor) -> [Float] {
        predictor.networks.flatMap { Array(UnsafeBufferPointer(start: $0.network.parameters.pointer, count: $0.network.parameterCount)) }
    }

    /// A checkpoint that stops training at its `stopAt`-th step (as Ctrl-C would there).
    static func stopping(at stopAt: Int, path: String, resume: Bool = false) -> TrainingCheckpoint {
        var checkpoint = TrainingCheckpoint(path: path, interval: 3600, resume: resume)
        final class Counter: @unchecked Sendable { var steps = 0 }
        let counter = Counter()
        checkpoint.stopRequested = { counter.steps += 1; return counter.steps == stopAt }
        return checkpoint
    }

    /// 60 samples: 48 train in 3 batches of 16, so shadow takes 18 head steps then 12 neuron
    /// steps (step 19 is the neuron network's first), and dejavu 18 per head network, then 12 per
    /// neuron network (step 40 is layer 1's neurons).
    @Test("training stopped part-way and resumed from its checkpoint ends with the uninterrupted predictor, bit for bit",
          arguments: [(PredictorKind.shadow, 7), (.shadow, 19), (.shadow, 25), (.dejavu, 20), (.dejavu, 40)])
    func resumesExactly(kind: PredictorKind, stopAt: Int) throws {
        let data = try syntheticData(kind: kind, count: 60)
        var configuration = smallConfiguration
        configuration.kind = kind
        let options = TrainingOptions(headEpochs: 6, neuronEpochs: 4, headBatch: 16, neuronBatch: 16, learningRate: 3e-3)
        let reference = try PredictorTrainer.train(data: data, configuration: configuration, options: options)

        let path = temporaryDirectory("checkpoint-\(kind.rawValue)-\(stopAt)") + ".checkpoint"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var stoppedAt: String?
        do {
            _ = try PredictorTrainer.train(data: data, configuration: configuration, options: options,
                                           checkpoint: Self.stopping(at: stopAt, path: path))
        } catch ShadowError.interrupted(let message) {
            stoppedAt = message
        }
        let message = try #require(stoppedAt, "training ran to the end instead of stopping")
        #expect(message.contains(path) && message.contains("--resume"), "\(message)")
        #expect(FileManager.default.fileExists(atPath: path))

        var progress: [TrainingProgress] = []
        let resumed = try PredictorTrainer.train(data: data, configuration: configuration, options: options,
                                                 checkpoint: TrainingCheckpoint(path: path, resume: true)) { progress.append($0) }
        #expect(Self.parameters(resumed) == Self.parameters(reference))
        #expect(resumed.quality == reference.quality)
        #expect(resumed.training?.finalHeadLoss == reference.training?.finalHeadLoss)
        #expect(resumed.training?.finalNeuronLoss == reference.training?.finalNeuronLoss)
        // The progress count goes on from where the stopped run was.
        #expect(progress.last?.completedEpochs == progress.last?.totalEpochs)
        #expect(progress.count < progress.last!.totalEpochs)
    }

    /// Rewrites the checkpoint at `path` with its state JSON and tensors changed.
    static func tamper(_ path: String, state change: (inout [String: Any]) -> Void = { _ in },
                       tensor: (String, [Float]) -> [Float] = { $1 }) throws {
        let file = try SafetensorsFile(path: path)
        var state = try JSONSerialization.jsonObject(with: Data(file.metadata["state"]!.utf8)) as! [String: Any]
        change(&state)
        let json = String(decoding: try JSONSerialization.data(withJSONObject: state), as: UTF8.self)
        var writer = SafetensorsWriter(metadata: ["format": TrainingCheckpoint.format, "state": json])
        for name in file.tensorNames {
            let info = file.tensorInfos[name]!
            var values = [Float](repeating: 0, count: info.shape.reduce(1, *))
            try values.withUnsafeMutableBufferPointer { try file.floats(name, into: $0) }
            writer.add(name, shape: info.shape, values: tensor(name, values))
        }
        let data = try writer.encoded()
        try data.write(to: URL(fileURLWithPath: path))
    }

    @Test("a checkpoint whose moments, counts or losses do not fit its position, or of other samples, is refused naming the key")
    func refusesInconsistentState() throws {
        let data = try syntheticData(kind: .shadow, count: 60)
        let options = TrainingOptions(headEpochs: 3, neuronEpochs: 2, headBatch: 16, neuronBatch: 16)
        let path = temporaryDirectory("checkpoint-tampered") + ".checkpoint"
        defer { try? FileManager.default.removeItem(atPath: path) }
        // 48 training samples in 3 batches: steps 1–9 train the heads, 10–15 the neurons.
        func stopAndTamper(at step: Int = 11, state: (inout [String: Any]) -> Void = { _ in },
                           tensor: (String, [Float]) -> [Float] = { $1 }) throws {
            _ = try? PredictorTrainer.train(data: data, configuration: smallConfiguration, options: options,
                                            checkpoint: Self.stopping(at: step, path: path))
            try Self.tamper(path, state: state, tensor: tensor)
        }
        func expectRefused(_ mention: String, data: PredictorDataset? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try PredictorTrainer.train(data: data ?? (try! syntheticData(kind: .shadow, count: 60)), configuration: smallConfiguration,
                                               options: options, checkpoint: TrainingCheckpoint(path: path, resume: true))
                Issue.record("a checkpoint that should be refused (\(mention)) was continued", sourceLocation: sourceLocation)
            } catch let error as ShadowError {
                #expect("\(error)".contains(mention) && "\(error)".contains(path), "\(error)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("\(error)", sourceLocation: sourceLocation)
            }
        }
        // A negative second moment would turn every later update into NaN.
        try stopAndTamper(tensor: { name, values in name == "optimiser.v" ? values.map { _ in -1 } : values })
        expectRefused("optimiser.v")
        try stopAndTamper(state: { state in
            var position = state["position"] as! [String: Any]
            position["epoch"] = Int.max
            state["position"] = position
        })
        expectRefused("position")
        try stopAndTamper(state: { $0["partLosses"] = [0.5, 0.5] })
        expectRefused("partLosses")
        // Finite, but the predictor written at the end would be refused by every reader: scores
        // that can overflow, a mean loss beyond single precision.
        try stopAndTamper(tensor: { name, values in name.hasPrefix("heads") ? values.map { _ in 3e38 } : values })
        expectRefused("so large that the network's scores can overflow single precision")
        try stopAndTamper(state: { state in
            var position = state["position"] as! [String: Any]
            position["lossSum"] = 1.7e308
            state["position"] = position
        })
        expectRefused("position.lossSum")
        try stopAndTamper(at: 5, state: { $0["headLoss"] = 0.5 })
        expectRefused("headLoss")
        try stopAndTamper(state: { $0["headLoss"] = nil })
        expectRefused("headLoss")
        // Same count of samples, other samples (traces calibrated again into the same directory).
        try stopAndTamper()
        let other = try PredictorDataset(records: SyntheticTraces.records(count: 60, seed: 99), model: SyntheticTraces.fingerprint,
                                         criterion: "plainact", kind: .shadow)
        expectRefused("data", data: other)
    }

    @Test("a checkpoint is continued only by the run that wrote it; a corrupt one is a one-line error")
    func refusesAnotherRun() throws {
        let data = try syntheticData(kind: .shadow, count: 60)
        let options = TrainingOptions(headEpochs: 3, neuronEpochs: 2, headBatch: 16, neuronBatch: 16)
        let path = temporaryDirectory("checkpoint-refused") + ".checkpoint"
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: ShadowError.self) {
            try PredictorTrainer.train(data: data, configuration: smallConfiguration, options: options,
                                       checkpoint: Self.stopping(at: 5, path: path))
        }
        var other = options
        other.learningRate = 5e-4
        do {
            _ = try PredictorTrainer.train(data: data, configuration: smallConfiguration, options: other,
                                           checkpoint: TrainingCheckpoint(path: path, resume: true))
            Issue.record("a checkpoint of another learning rate was continued")
        } catch let error as ShadowError {
            #expect("\(error)".contains("options.learning_rate") && "\(error)".contains(path), "\(error)")
            #expect(!"\(error)".contains("\n"))
        }
        // Without --resume the checkpoint is not read: training starts afresh and succeeds.
        _ = try PredictorTrainer.train(data: data, configuration: smallConfiguration, options: other,
                                       checkpoint: TrainingCheckpoint(path: path, resume: false))

        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try PredictorTrainer.train(data: data, configuration: smallConfiguration, options: options,
                                           checkpoint: TrainingCheckpoint(path: path, resume: true))
            Issue.record("a corrupt checkpoint was continued")
        } catch let error as ShadowError {
            #expect("\(error)".contains(path) && !"\(error)".contains("\n"), "\(error)")
        }
    }

    @Test("a diverging run leaves a checkpoint of finite numbers, and resuming it fails with the same error")
    func divergedCheckpoint() throws {
        let data = try syntheticData(kind: .shadow, count: 40)
        let configuration = PredictorConfiguration(kind: .shadow, headWidth: 16, neuronWidth: 16)
        let options = TrainingOptions(headEpochs: 5, neuronEpochs: 5, headBatch: 8, neuronBatch: 8, learningRate: 1e10)
        let path = temporaryDirectory("checkpoint-diverged") + ".checkpoint"
        defer { try? FileManager.default.removeItem(atPath: path) }
        // Interval 0: a checkpoint before every step, so the last one is taken just before the failing step.
        func diverge(resume: Bool) -> String? {
            do {
                _ = try PredictorTrainer.train(data: data, configuration: configuration, options: options,
                                               checkpoint: TrainingCheckpoint(path: path, interval: 0, resume: resume))
                return nil
            } catch {
                return "\(error)"
            }
        }
        let first = try #require(diverge(resume: false), "training at --lr 1e10 returned a predictor")
        #expect(first.contains("training diverged: the heads network's loss became "), "\(first)")
        let file = try SafetensorsFile(path: path)
        #expect(file.tensorNames.contains("optimiser.m"))
        for name in file.tensorNames {
            var values = [Float](repeating: .nan, count: try file.info(name).elementCount)
            try values.withUnsafeMutableBufferPointer { try file.floats(name, into: $0) }
            #expect(values.allSatisfy { $0.isFinite }, "\(name) holds a non-finite value")
        }
        #expect(diverge(resume: true) == first)
    }
}
