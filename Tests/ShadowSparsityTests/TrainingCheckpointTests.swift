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
}
