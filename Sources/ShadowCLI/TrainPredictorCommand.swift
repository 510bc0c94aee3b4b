import Foundation
import ShadowFormats
import ShadowKernels
import ShadowSparsity

/// `shadowllm train-predictor`: trains a ShadowLLM or DejaVu-style predictor on a trace
/// directory and writes it as one safetensors file (DESIGN §4).
enum TrainPredictorCommand {
    static let command = Command(
        name: "train-predictor", abstract: "Train a predictor of head and neuron importance on calibration traces.",
        discussion: """
            shadow: one network reads A0 at the predictor token and scores every layer (heads d → width → L·H, \
            neurons d → width [→ rank] → L·F). dejavu: one network per layer l ≥ 1 reads the residual entering \
            layer l; dejavu-lookahead reads the one entering layer l − 1. Inputs are min-max scaled per sample. \
            80% of the samples train (AdamW, cosine decay to 0), 20% (a fixed split) measure held-out Spearman ρ \
            and top-k recall. Progress goes to stderr, the summary to stdout. While it trains, the state is saved to a \
            checkpoint beside --out every --checkpoint-every seconds (2 minutes) and on Ctrl-C; the same command with --resume continues it and \
            ends with the same predictor as an uninterrupted run. The checkpoint is removed once the predictor is written.
            """,
        options: [
            .value("traces", "dir", help: "A trace directory written by calibration (manifest.json + chunk files)."),
            .value("kind", "name", help: "Which predictor to train.", default: PredictorKind.shadow.rawValue,
                   allowed: PredictorKind.allCases.map(\.rawValue)),
            .value("criterion", "name", help: "The importance criterion whose per-sample scores are the targets.",
                   defaultDescription: "the traces' first criterion", allowed: Criterion.allCases.map(\.rawValue)),
            .value("out", short: "o", "file", help: "Where to write the predictor (.safetensors; written atomically)."),
            .value("loss", "name", help: "MSE against the scaled scores, or per-layer listwise softmax cross-entropy.",
                   default: PredictorLoss.mse.rawValue, allowed: PredictorLoss.allCases.map(\.rawValue)),
            .value("rank", "r", help: "Factor the neuron networks' output layer through r units (fewer parameters and FLOPs); r·(W + N) weights instead of W·N for a W-wide network predicting N units, so r must be below W·N / (W + N)."),
            .value("rank-temperature", "t", help: "rank loss: target distribution softmax(t × scaled scores).", default: "10"),
            .value("target-scaling", "name", help: "Min-max scale each layer's scores, or the whole vector at once.",
                   default: TargetScaling.perLayer.rawValue, allowed: TargetScaling.allCases.map(\.rawValue)),
            .value("head-width", "n", help: "Hidden width of the head network(s).", default: "2048"),
            .value("neuron-width", "n", help: "Hidden width of the neuron network(s).", default: "1024"),
            .value("head-epochs", "n", help: "Epochs of the head network(s).", default: "100"),
            .value("neuron-epochs", "n", help: "Epochs of the neuron network(s).", default: "20"),
            .value("batch", "n", help: "Batch size of both networks.", defaultDescription: "32 for heads, 16 for neurons"),
            .value("lr", "x", help: "Peak learning rate of AdamW (cosine decay to 0).", default: "0.001"),
            .value("weight-decay", "x", help: "AdamW's decoupled weight decay.", default: "0.01"),
            .value("dtype", "name", help: "How the file stores the weights: f16 halves it (a DejaVu-style predictor of SmolLM2: 390 → 195 MB); the held-out quality is then measured with the rounded weights.",
                   default: "f32", allowed: ["f32", "f16"]),
            .value("seed", "n", help: "Seed of the initialisation and the batch order (the split's seed is fixed).", default: "0"),
            .value("threads", short: "t", "n", help: "Threads for BLAS and the kernels.", default: String(Threads.defaultCount)),
            .flag("resume", help: "Continue from the checkpoint of an interrupted run of the same command (start afresh when there is none)."),
            .value("checkpoint", "file", help: "Where training saves its state.", defaultDescription: "--out + \".checkpoint\""),
            .value("checkpoint-every", "s", help: "Seconds between checkpoints while training (Ctrl-C also saves one).", default: "120"),
            .flag("json", help: "Print the predictor's metadata as JSON instead of the summary."),
            .flag("no-progress", help: "Hide progress on stderr."),
        ],
        interruptible: true
    ) { arguments, console in
        let traces = try arguments.required("traces")
        let out = try arguments.required("out")
        try AtomicFile.checkWritable(out, option: "--out")
        // A predictor is a file later commands map; a pipe would hold training's result hostage to
        // a reader that may never come (its open blocks past Ctrl-C).
        if Self.isNamedPipe(out) {
            throw ShadowError.invalidArgument(name: "--out", reason: "\(out) is a pipe; a predictor must be a file (later commands map it)")
        }
        try AtomicFile.refuseOverwriting(out, option: "--out", inputs: AggregateCommand.traceInputs(traces))
        var isDirectory: ObjCBool = false
        let kind = PredictorKind(rawValue: try arguments.required("kind"))!
        let loss = PredictorLoss(rawValue: try arguments.required("loss"))!
        if arguments.has("rank-temperature"), loss != .rank {
            throw ShadowError.invalidArgument(name: "--rank-temperature", reason: "is only read with --loss rank")
        }
        let configuration = PredictorConfiguration(
            kind: kind,
            headWidth: try arguments.int("head-width", range: 1...1 << 20)!,
            neuronWidth: try arguments.int("neuron-width", range: 1...1 << 20)!,
            rank: try arguments.int("rank", range: 1...1 << 20),
            targetScaling: TargetScaling(rawValue: try arguments.required("target-scaling"))!,
            loss: loss,
            rankTemperature: try Self.singlePrecision(arguments, "rank-temperature"))
        try configuration.validate()
        let batch = try arguments.int("batch", range: 1...1 << 20)
        let options = TrainingOptions(
            headEpochs: try arguments.int("head-epochs", range: 1...1_000_000)!,
            neuronEpochs: try arguments.int("neuron-epochs", range: 1...1_000_000)!,
            headBatch: batch ?? 32, neuronBatch: batch ?? 16,
            learningRate: try Self.singlePrecision(arguments, "lr"),
            weightDecay: Float(try arguments.double("weight-decay", range: 0...1)!),
            seed: UInt64(try arguments.int("seed", range: 0...Int.max)!))
        try options.validate()
        Threads.set(try arguments.int("threads", range: 1...256) ?? Threads.defaultCount)

        // What is wrong with --traces comes first (its manifest is quick to read).
        let manifest = try TraceManifest.load(directory: traces)
        let checkpointPath = arguments.string("checkpoint") ?? out + ".checkpoint"
        if FileManager.default.fileExists(atPath: checkpointPath, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ShadowError.invalidArgument(name: "--checkpoint", reason: "\(checkpointPath) is a directory; give a file name")
        }
        // Checked before the traces are read: the first checkpoint comes minutes into training.
        try AtomicFile.checkWritable(checkpointPath, option: "--checkpoint")
        // Training reads it back, replaces it and removes it: only a regular file can be one.
        if try fileKind(atPath: checkpointPath) == .other {
            throw ShadowError.invalidArgument(name: "--checkpoint", reason: "\(checkpointPath) is not a regular file (a checkpoint is replaced as training saves and removed at its end)")
        }
        // Removed once the predictor is written: it must not be the predictor, or the traces.
        let checkpointFile = AtomicFile.canonical(checkpointPath)
        if checkpointFile == AtomicFile.canonical(out) || checkpointFile.hasPrefix(AtomicFile.canonical(traces) + "/") {
            guard arguments.has("checkpoint") else {
                throw ShadowError.invalidArgument(name: "--out", reason: "\(out) is inside --traces, where its checkpoint \(checkpointPath) would go too; write the predictor elsewhere or give --checkpoint")
            }
            throw ShadowError.invalidArgument(name: "--checkpoint", reason: "\(checkpointPath) is --out or inside --traces; give a file of its own")
        }
        let resume = arguments.flag("resume")
        // Training replaces the checkpoint as it saves and removes it at the end: a file there that
        // is not one (a typo naming the model, say) is not ours to delete.
        if try fileKind(atPath: checkpointPath) != nil, !TrainingCheckpoint.isCheckpoint(atPath: checkpointPath) {
            throw ShadowError.invalidArgument(name: "--checkpoint", reason: "\(checkpointPath) exists and is not a training checkpoint; give another file, or remove it")
        }

        let data = try PredictorDataset.load(directory: traces, criterion: arguments.string("criterion"), kind: kind)
        // As --rank: options for a network that a heads-only criterion does not have are refused.
        if !data.predictsNeurons, let option = ["neuron-width", "neuron-epochs"].first(where: arguments.has) {
            throw ShadowError.invalidArgument(name: "--\(option)", reason: "criterion \(data.criterion) has no neuron scores, so there is no neuron network to train")
        }
        // As aggregate says it: an interrupted calibration trains on what it saved.
        if !manifest.complete {
            console.printError("warning: \(traces) is not complete (\(counted(manifest.sampleCount, "sample")) so far; finish it with calibrate --resume)")
        }
        if let shard = AggregateCommand.shardWarning(manifest, directory: traces) { console.printError("warning: " + shard) }
        if arguments.flag("verbose") {
            console.printError("train-predictor: \(data.count) samples of \(data.criterion) from \(traces)\(data.predictsNeurons ? "" : " (heads only)")")
        }
        if try !resume && fileKind(atPath: checkpointPath) != nil {
            console.printError("train-predictor: starting afresh; \(checkpointPath) (an interrupted run) will be replaced (--resume continues it)")
        }
        let checkpoint = TrainingCheckpoint(path: checkpointPath, interval: try arguments.double("checkpoint-every", range: 0.01...86_400)!,
                                            resume: resume)
        var bar: ProgressBar?
        let showProgress = !arguments.flag("no-progress")
        let weightDType: TensorDType = try arguments.required("dtype") == "f16" ? .f16 : .f32
        let started = Date()
        let predictor = try PredictorTrainer.train(data: data, configuration: configuration, options: options,
                                                   weightDType: weightDType, checkpoint: checkpoint) { progress in
            // A resumed run's first report holds the epochs it found done besides its own first: a
            // baseline, no rate (with --resume and nothing to resume, the first epoch is this run's).
            if bar == nil { bar = ProgressBar(console: console, label: "train", total: progress.totalEpochs, enabled: showProgress,
                                              started: resume && progress.completedEpochs > 1 ? nil : started) }
            bar?.update(progress.completedEpochs, detail: String(format: "%@ epoch %ld/%ld  loss %.4g  ρ %.3f", progress.network,
                                                                 progress.epoch, progress.epochs, progress.loss, progress.spearman))
        }
        try PredictorFile.save(predictor, to: out)
        checkpoint.remove()
        if arguments.flag("json") {
            console.print(try PredictorInfoCommand.json(predictor.metadata, path: out))
        } else {
            console.print(PredictorInfoCommand.summary(predictor.metadata, path: out))
        }
    }

    /// A positive option training keeps in single precision: one that rounds to 0 or to infinity
    /// there is named as such, not as "must be positive, got 0.0".
    static func singlePrecision(_ arguments: ParsedArguments, _ name: String) throws -> Float {
        let value = try arguments.double(name)!, single = Float(value)
        if value > 0 && (single == 0 || !single.isFinite) {
            throw ShadowError.invalidArgument(name: "--\(name)", reason: "\(arguments.string(name)!) is \(single == 0 ? "below" : "beyond") single precision, which training computes in (positive values from \(Float.leastNonzeroMagnitude) to \(Float.greatestFiniteMagnitude))")
        }
        return single
    }

    /// A FIFO, or the pipe a shell gives as /dev/stdout.
    static func isNamedPipe(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFIFO
    }
}
