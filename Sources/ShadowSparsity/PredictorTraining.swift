import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels

/// The samples of a trace directory that one predictor trains on, in memory: the inputs already
/// min–max scaled (A⁰ at the predictor token for shadow, every layer's residual input for the
/// dejavu kinds) and the raw scores of one criterion.
public struct PredictorDataset: Sendable {
    public enum Part: Sendable { case heads, neurons }

    public let model: ModelFingerprint
    public let criterion: String
    public let kind: PredictorKind
    /// Where the samples came from (recorded in the predictor file).
    public let source: String
    /// Which token's activations the traces hold (the engine should predict from the same).
    public let predictorToken: String?
    public let count: Int
    /// Scaled input rows per sample: 1 (shadow, width H·d_h) or L (dejavu kinds, width d).
    let inputs: [Float]        // (N, rows, width)
    let heads: [Float]         // (N, L, H), raw
    let neurons: [Float]?      // (N, L, F), raw; nil for heads-only criteria

    public var shape: TransformerShape { model.shape }
    public var predictsNeurons: Bool { neurons != nil }

    /// FNV-1a over the bits of every scaled input and raw score: a checkpoint continues training
    /// only on the very samples it started on (re-calibrating into the same directory changes it).
    var digest: String {
        var digest = FNV1a()
        for part in [inputs, heads, neurons ?? []] {
            part.withUnsafeBufferPointer { values in
                for value in values { digest.mix(word: UInt64(value.bitPattern)) }
            }
        }
        return digest.hex
    }
    var inputWidth: Int { kind == .shadow ? shape.attentionWidth : shape.hiddenSize }
    var inputRows: Int { kind == .shadow ? 1 : shape.layers }

    /// The samples whose digests are not in `digests` (a predictor's training samples), in order.
    public func samples(excluding digests: Set<String>) -> [Int] {
        (0..<count).filter { !digests.contains(sampleDigest($0)) }
    }

    /// FNV-1a over the bits of sample `i`'s scaled inputs and raw head scores: the same sample
    /// in another trace directory (merged, extended, copied) has the same digest.
    func sampleDigest(_ i: Int) -> String {
        var digest = FNV1a()
        let rowsWidth = inputRows * inputWidth, layerHeads = shape.layers * shape.heads
        for (part, size) in [(inputs, rowsWidth), (heads, layerHeads)] {
            part.withUnsafeBufferPointer { values in
                for value in values[i * size..<(i + 1) * size] { digest.mix(word: UInt64(value.bitPattern)) }
            }
        }
        return digest.hex
    }

    /// Builds a data set from records (tests and callers that already hold them).
    public init(records: [TraceRecord], model: ModelFingerprint, criterion: String, kind: PredictorKind,
                source: String = "memory", predictorToken: String? = nil) throws {
        var builder = Builder(model: model, criterion: criterion, kind: kind, source: source, capacity: records.count)
        for record in records { try builder.append(record) }
        self.init(builder, predictorToken: predictorToken)
    }

    private init(_ builder: Builder, predictorToken: String?) {
        model = builder.model
        criterion = builder.criterion
        kind = builder.kind
        source = builder.source
        self.predictorToken = predictorToken
        count = builder.count
        inputs = builder.inputs
        heads = builder.heads
        neurons = builder.hasNeurons == true ? builder.neurons : nil
    }

    /// Accumulates records one at a time, keeping only what the predictor reads, so a trace
    /// directory is never in memory twice.
    struct Builder {
        let model: ModelFingerprint
        let criterion: String
        let kind: PredictorKind
        let source: String
        var count = 0
        var inputs: [Float] = []
        var heads: [Float] = []
        var neurons: [Float] = []
        var hasNeurons: Bool?

        init(model: ModelFingerprint, criterion: String, kind: PredictorKind, source: String, capacity: Int) {
            self.model = model
            self.criterion = criterion
            self.kind = kind
            self.source = source
            let s = model.shape
            inputs.reserveCapacity(capacity * (kind == .shadow ? s.attentionWidth : s.layers * s.hiddenSize))
            heads.reserveCapacity(capacity * s.layers * s.heads)
        }

        mutating func append(_ record: TraceRecord) throws {
            let s = model.shape, source = source, criterion = criterion
            let width = kind == .shadow ? s.attentionWidth : s.hiddenSize
            let rows = kind == .shadow ? 1 : s.layers
            func bad(_ what: String, _ got: Int, _ expected: Int) -> ShadowError {
                .failed("\(source): sample \(record.index) has \(got) \(what) values, expected \(expected)")
            }
            let raw = kind == .shadow ? record.x : record.layerInputs
            guard raw.count == rows * width else { throw bad(kind == .shadow ? "x" : "layer_input", raw.count, rows * width) }
            guard let h = record.heads[criterion] else { throw ShadowError.failed("\(source): sample \(record.index) has no \(criterion) head scores") }
            guard h.count == s.layers * s.heads else { throw bad("\(criterion).heads", h.count, s.layers * s.heads) }
            guard h.allSatisfy(\.isFinite) else { throw ShadowError.failed("\(source): sample \(record.index) has non-finite \(criterion) head scores") }
            let n = record.neurons[criterion]
            if hasNeurons == nil {
                hasNeurons = n != nil
                if n != nil { neurons.reserveCapacity(heads.capacity / s.heads * s.ffnSize) }
            }
            guard (n != nil) == hasNeurons else {
                throw ShadowError.failed("\(source): sample \(record.index) \(n == nil ? "lacks" : "has") \(criterion) neuron scores unlike the first sample")
            }
            if let n {
                guard n.count == s.layers * s.ffnSize else { throw bad("\(criterion).neurons", n.count, s.layers * s.ffnSize) }
                guard n.allSatisfy(\.isFinite) else { throw ShadowError.failed("\(source): sample \(record.index) has non-finite \(criterion) neuron scores") }
                neurons += n
            }
            heads += h
            let start = inputs.count
            inputs += repeatElement(0, count: rows * width)
            raw.withUnsafeBufferPointer { src in
                inputs.withUnsafeMutableBufferPointer { dst in
                    for r in 0..<rows {
                        MinMax.scale(dst.baseAddress! + start + r * width, src.baseAddress! + r * width, count: width)
                    }
                }
            }
            count += 1
        }
    }

    /// Reads the samples of a trace directory (one chunk in memory at a time while reading).
    /// `criterion` nil takes the traces' first criterion; `forTraining` false (measuring a trained
    /// predictor) accepts a single sample.
    public static func load(directory: String, criterion: String?, kind: PredictorKind, forTraining: Bool = true) throws -> PredictorDataset {
        let manifestPath = (directory as NSString).appendingPathComponent(TraceManifest.fileName)
        let manifest = try TraceStore.open(directory: directory)
        guard let name = criterion ?? manifest.criteria.first else {
            throw ShadowError.failed("\(manifestPath): lists no criteria")
        }
        guard manifest.criteria.contains(name) else {
            throw ShadowError.invalidArgument(name: "--criterion", reason: "the traces in \(directory) have no \"\(name)\" scores (they have \(manifest.criteria.joined(separator: ", ")))")
        }
        let source = URL(fileURLWithPath: directory).standardizedFileURL.path
        var builder = Builder(model: manifest.model, criterion: name, kind: kind, source: source, capacity: manifest.sampleCount)
        try TraceStore.forEach(directory: directory) { try builder.append($0) }
        guard builder.count >= (forTraining ? 2 : 1) else {
            throw ShadowError.invalidArgument(name: "--traces", reason: forTraining
                ? "\(directory) holds \(builder.count) sample(s); training needs at least 2 (a train and a held-out split)"
                : "\(directory) holds no samples")
        }
        return PredictorDataset(builder, predictorToken: manifest.predictorToken.rawValue)
    }

    // MARK: Rows

    /// Copies the scaled input row `row` of `sample` to `out` (inputWidth values).
    func copyInput(sample: Int, row: Int, to out: UnsafeMutablePointer<Float>) {
        inputs.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + (sample * inputRows + row) * inputWidth, count: inputWidth) }
    }

    func units(_ part: Part) -> Int { part == .heads ? shape.heads : shape.ffnSize }

    /// The targets of `sample` for layers `layers`, scaled as `scaling` says, into `out`
    /// (layers.count × units).
    func target(sample: Int, part: Part, layers: Range<Int>, scaling: TargetScaling, into out: UnsafeMutablePointer<Float>) {
        let units = units(part), L = shape.layers
        let values = part == .heads ? heads : neurons!
        values.withUnsafeBufferPointer { all in
            let base = all.baseAddress! + sample * L * units
            switch scaling {
            case .perLayer:
                for (k, l) in layers.enumerated() { MinMax.scale(out + k * units, base + l * units, count: units) }
            case .global:
                let range = MinMax.range(base, count: L * units)
                MinMax.scale(out, base + layers.lowerBound * units, count: layers.count * units, range: range)
            }
        }
    }

    /// All L × units scores of `sample`, each layer min–max scaled (the truth quality compares to).
    func perLayerScaled(sample: Int, part: Part) -> [Float] {
        let n = shape.layers * units(part)
        return [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            target(sample: sample, part: part, layers: 0..<shape.layers, scaling: .perLayer, into: buffer.baseAddress!)
            initialized = n
        }
    }
}

/// How predictors are trained (DESIGN §4 defaults).
public struct TrainingOptions: Sendable, Equatable, Codable {
    public var headEpochs: Int
    public var neuronEpochs: Int
    public var headBatch: Int
    public var neuronBatch: Int
    public var learningRate: Float
    public var weightDecay: Float
    /// Seeds the networks' initialisation and the order of batches.
    public var seed: UInt64
    /// Seeds the train / held-out split, kept apart from `seed` so predictors trained with
    /// different seeds are compared on the same held-out samples.
    public var splitSeed: UInt64
    public var heldOutFraction: Double
    /// Per-epoch progress measures ρ on at most this many held-out samples (the final quality
    /// uses all of them).
    public var progressSamples: Int

    enum CodingKeys: String, CodingKey {
        case seed
        case headEpochs = "head_epochs", neuronEpochs = "neuron_epochs", headBatch = "head_batch"
        case neuronBatch = "neuron_batch", learningRate = "learning_rate", weightDecay = "weight_decay"
        case splitSeed = "split_seed", heldOutFraction = "held_out_fraction", progressSamples = "progress_samples"
    }

    public init(headEpochs: Int = 100, neuronEpochs: Int = 20, headBatch: Int = 32, neuronBatch: Int = 16,
                learningRate: Float = 1e-3, weightDecay: Float = 0.01, seed: UInt64 = 0, splitSeed: UInt64 = 1234,
                heldOutFraction: Double = 0.2, progressSamples: Int = 64) {
        self.headEpochs = headEpochs
        self.neuronEpochs = neuronEpochs
        self.headBatch = headBatch
        self.neuronBatch = neuronBatch
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.seed = seed
        self.splitSeed = splitSeed
        self.heldOutFraction = heldOutFraction
        self.progressSamples = progressSamples
    }

    public func validate() throws {
        // No epochs would write networks as initialised, scoring at random.
        guard headEpochs >= 1 else { throw ShadowError.invalidArgument(name: "--head-epochs", reason: "must be at least 1, got \(headEpochs)") }
        guard neuronEpochs >= 1 else { throw ShadowError.invalidArgument(name: "--neuron-epochs", reason: "must be at least 1, got \(neuronEpochs)") }
        guard headBatch > 0, neuronBatch > 0 else { throw ShadowError.invalidArgument(name: "--batch", reason: "must be positive") }
        guard learningRate > 0, learningRate.isFinite else { throw ShadowError.invalidArgument(name: "--lr", reason: "must be positive, got \(learningRate)") }
        guard progressSamples >= 0 else { throw ShadowError.invalidArgument(name: "progress_samples", reason: "must not be negative, got \(progressSamples)") }
        guard heldOutFraction > 0, heldOutFraction < 1 else {
            throw ShadowError.invalidArgument(name: "held-out fraction", reason: "must be in (0, 1), got \(heldOutFraction)")
        }
    }
}

/// What a predictor file records about its training.
public struct TrainingSummary: Sendable, Equatable, Codable {
    public var traces: String
    /// The traces' predictor token (`last-context` or `last-input`); nil for in-memory data.
    public var predictorToken: String?
    public var samples: Int
    public var trainSamples: Int
    public var heldOutSamples: Int
    public var options: TrainingOptions
    public var seconds: Double
    /// Mean training loss of the last epoch.
    public var finalHeadLoss: Float
    public var finalNeuronLoss: Float?

    enum CodingKeys: String, CodingKey {
        case traces, samples, options, seconds, predictorToken = "predictor_token"
        case trainSamples = "train_samples", heldOutSamples = "held_out_samples"
        case finalHeadLoss = "final_head_loss", finalNeuronLoss = "final_neuron_loss"
    }
}

/// One epoch of one network, reported as training runs.
public struct TrainingProgress: Sendable {
    /// "heads", "neurons", or "layer 3 heads" for the dejavu kinds.
    public var network: String
    public var epoch: Int
    public var epochs: Int
    /// Mean training loss of the epoch.
    public var loss: Float
    /// Held-out Spearman ρ after the epoch (over layers 1…L−1 for shadow, within the layer for
    /// the dejavu kinds).
    public var spearman: Double
    /// Epochs finished over all networks, and their total.
    public var completedEpochs: Int
    public var totalEpochs: Int
}

public enum PredictorTrainer {
    /// A seeded 80/20 (by default) split of `count` sample positions; both halves ascending.
    public static func split(count: Int, seed: UInt64, heldOutFraction: Double = 0.2) -> (train: [Int], heldOut: [Int]) {
        var generator = SeededGenerator(seed: seed)
        var order = Array(0..<count)
        for i in stride(from: count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(generator.next() % UInt64(i + 1)))
        }
        let heldOut = max(0, min(count - 1, max(1, Int((Double(count) * heldOutFraction).rounded()))))
        return (Array(order[heldOut...]).sorted(), Array(order[..<heldOut]).sorted())
    }

    /// Trains a predictor on `data`, then measures its held-out quality. With `weightDType` `.f16`
    /// the weights are rounded to fp16 first, so the quality is that of the file it will be saved as.
    /// With `checkpoint`, training saves its state there every `interval` seconds and on Ctrl-C,
    /// and continues from it when asked to resume; the caller removes it once the predictor is saved
    /// (train-predictor does, after writing the file).
    public static func train(data: PredictorDataset, configuration: PredictorConfiguration, options: TrainingOptions = TrainingOptions(),
                             weightDType: TensorDType = .f32, checkpoint: TrainingCheckpoint? = nil,
                             progress: (TrainingProgress) -> Void = { _ in }) throws -> Predictor {
        guard weightDType == .f32 || weightDType == .f16 else {
            throw ShadowError.invalidArgument(name: "--dtype", reason: "predictors are stored as f32 or f16, not \(weightDType.rawValue)")
        }
        guard configuration.kind == data.kind else {
            throw ShadowError.invalidArgument(name: "--kind", reason: "the data set was read for \(data.kind.rawValue), not \(configuration.kind.rawValue)")
        }
        if configuration.rank != nil && !data.predictsNeurons {
            throw ShadowError.invalidArgument(name: "--rank", reason: "criterion \(data.criterion) has no neuron scores, so there is no neuron network to factor")
        }
        // The output layer is width × units (W·N weights); rank r factors it into r·(W + N), which
        // is only smaller below W·N / (W + N): a larger rank adds parameters instead of cutting them.
        let neuronOutputs = configuration.kind == .shadow ? data.shape.layers * data.shape.ffnSize : data.shape.ffnSize
        let width = configuration.neuronWidth
        let largestRank = (width * neuronOutputs - 1) / (width + neuronOutputs)
        if let rank = configuration.rank, rank > largestRank {
            throw ShadowError.invalidArgument(
                name: "--rank", reason: "\(rank) does not shrink the \(width) × \(neuronOutputs) output layer (rank r has r·(\(width) + \(neuronOutputs)) weights, against \(width * neuronOutputs)): it must be at most \(largestRank)")
        }
        var options = options
        try options.validate()
        guard data.count >= 2 else {
            throw ShadowError.invalidArgument(name: "--traces", reason: "the data set holds \(data.count) sample(s); training needs at least 2 (a train and a held-out split)")
        }
        let (train, heldOut) = split(count: data.count, seed: options.splitSeed, heldOutFraction: options.heldOutFraction)
        // A batch larger than the training set is the whole set, and is recorded so.
        options.headBatch = min(options.headBatch, max(train.count, 1))
        options.neuronBatch = min(options.neuronBatch, max(train.count, 1))
        // Widths up to 2²⁰ are legal, but a network too large for memory would stop the process
        // at its allocation: refused first, naming the width that makes it so.
        let needed = Predictor.trainingBytes(configuration: configuration, shape: data.shape, predictsNeurons: data.predictsNeurons,
                                             batch: max(options.headBatch, options.neuronBatch))
        let memory = Double(ProcessInfo.processInfo.physicalMemory)
        if needed.bytes > memory {
            let option = needed.largestIsNeurons ? "--neuron-width" : "--head-width"
            let width = needed.largestIsNeurons ? configuration.neuronWidth : configuration.headWidth
            throw ShadowError.invalidArgument(name: option, reason: String(format: "%ld: training these networks needs about %.1f GB, more than this machine's %.1f GB of memory",
                                                                           width, needed.bytes / 1e9, memory / 1e9))
        }
        var start = Date()
        let predictor = try Predictor(configuration: configuration, criterion: data.criterion, model: data.model,
                                      predictsNeurons: data.predictsNeurons, seed: options.seed)
        let monitored = Array(heldOut.prefix(options.progressSamples))
        let s = data.shape
        let perLayer = configuration.kind.isPerLayer
        let networksPerPart = perLayer ? s.layers - 1 : 1
        let total = networksPerPart * (options.headEpochs + (data.predictsNeurons ? options.neuronEpochs : 0))
        var completed = 0
        var headLoss: Float = 0, neuronLoss: Float?

        // The networks in training order (`Predictor.networks`' order: heads, then neurons).
        struct Job { let part: PredictorDataset.Part; let layer: Int; let network: MLP }
        var jobs: [Job] = []
        for (part, networks) in [(PredictorDataset.Part.heads, predictor.headNetworks), (.neurons, predictor.neuronNetworks)] {
            for (l, network) in networks.enumerated() { if let network { jobs.append(Job(part: part, layer: l, network: network)) } }
        }
        func epochs(_ job: Int) -> Int { jobs[job].part == .heads ? options.headEpochs : options.neuronEpochs }
        func batchSize(_ job: Int) -> Int { jobs[job].part == .heads ? options.headBatch : options.neuronBatch }
        func stepsPerEpoch(_ job: Int) -> Int { (train.count + batchSize(job) - 1) / batchSize(job) }

        let run = TrainingCheckpoint.Run(traces: data.source, samples: data.count, criterion: data.criterion, kind: configuration.kind.rawValue,
                                         configuration: configuration, options: options, dtype: weightDType.rawValue,
                                         model: data.model, predictorToken: data.predictorToken,
                                         data: checkpoint == nil ? "" : data.digest)
        var firstJob = 0
        var resumed: (position: TrainingCheckpoint.Position, m: [Float], v: [Float])?
        var partLosses: [Float] = []
        if let checkpoint, checkpoint.resume, try fileKind(atPath: checkpoint.path) != nil {
            let parts = jobs.map { $0.part == .heads }
            let saved = try checkpoint.load(run: run, predictor: predictor, train: train, headNetworks: parts,
                                            stepsPerEpoch: stepsPerEpoch, epochs: epochs)
            firstJob = saved.state.network
            resumed = (saved.state.position, saved.m, saved.v)
            partLosses = saved.state.partLosses
            headLoss = saved.state.headLoss ?? 0
            completed = saved.completedEpochs
            start = Date(timeIntervalSinceNow: -saved.state.seconds)
        }
        var lastSave = Date()

        for index in jobs.indices where index >= firstJob {
            let job = jobs[index], part = job.part, l = job.layer
            if index > 0 && jobs[index - 1].part == .heads && part == .neurons && index != firstJob {
                headLoss = partLosses.reduce(0, +) / Float(max(partLosses.count, 1))
                partLosses = []
            }
            let units = data.units(part)
            let name = perLayer ? "layer \(l) \(part == .heads ? "heads" : "neurons")" : (part == .heads ? "heads" : "neurons")
            // What this network reads and predicts.
            let row = perLayer ? configuration.kind.sourceLayer(for: l) : 0
            let layers = perLayer ? l..<(l + 1) : 0..<s.layers
            // ρ is compared over layers 1…L−1 (shadow) or the network's own layer.
            let compared = perLayer ? 0..<units : units..<(s.layers * units)
            let fit = Fit(network: job.network, data: data, part: part, inputRow: row, layers: layers,
                          scaling: configuration.targetScaling, loss: configuration.loss,
                          temperature: configuration.rankTemperature, segment: units, name: name)
            let seed = options.seed &+ UInt64(l) &* 7919 &+ (part == .heads ? 0 : 104_729)
            let resume = index == firstJob ? resumed : nil
            let loss = try fit.run(epochs: epochs(index), batch: batchSize(index), train: train, options: options, seed: seed,
                                   resume: resume) { position, optimiser in
                guard let checkpoint else {
                    // Without a checkpoint, stopping early saves nothing: say so.
                    try Interruption.check("training stopped; nothing was written (run it again to train from the start)")
                    return
                }
                let stop = checkpoint.stopRequested()
                guard stop || Date().timeIntervalSince(lastSave) >= checkpoint.interval else { return }
                let state = TrainingCheckpoint.State(version: TrainingCheckpoint.version, run: run, network: index, position: position,
                                                     partLosses: partLosses, headLoss: part == .neurons ? headLoss : nil,
                                                     seconds: Date().timeIntervalSince(start))
                try checkpoint.save(state, predictor: predictor, optimiser: optimiser)
                lastSave = Date()
                if stop {
                    throw ShadowError.interrupted("training stopped at \(name) epoch \(position.epoch)/\(epochs(index)); its state is saved in "
                                                  + "\(checkpoint.path): run the same command with --resume to continue")
                }
            } epochDone: { epoch, loss in
                completed += 1
                let rho = fit.heldOutSpearman(samples: monitored, compared: compared)
                progress(TrainingProgress(network: name, epoch: epoch, epochs: epochs(index), loss: loss, spearman: rho,
                                          completedEpochs: completed, totalEpochs: total))
            }
            partLosses.append(loss)
        }
        let meanLoss = partLosses.isEmpty ? 0 : partLosses.reduce(0, +) / Float(partLosses.count)
        if jobs.last?.part == .neurons { neuronLoss = meanLoss } else { headLoss = meanLoss }
        if weightDType == .f16 { try predictor.roundWeightsToHalf() }
        predictor.quality = PredictorQuality.measure(predictor, data: data, samples: heldOut)
        predictor.training = TrainingSummary(traces: data.source, predictorToken: data.predictorToken, samples: data.count, trainSamples: train.count,
                                             heldOutSamples: heldOut.count, options: options,
                                             seconds: Date().timeIntervalSince(start),
                                             finalHeadLoss: headLoss, finalNeuronLoss: neuronLoss)
        predictor.trainingSampleDigests = Set(train.map(data.sampleDigest))
        return predictor
    }

    /// Training one network: minibatches in a seeded order, AdamW with cosine decay to 0.
    struct Fit {
        let network: MLP
        let data: PredictorDataset
        let part: PredictorDataset.Part
        let inputRow: Int
        let layers: Range<Int>
        let scaling: TargetScaling
        let loss: PredictorLoss
        let temperature: Float
        let segment: Int
        /// Names the network in errors: "heads", "neurons", "layer 3 heads".
        let name: String

        func fill(samples: ArraySlice<Int>, inputs x: UnsafeMutablePointer<Float>, targets t: UnsafeMutablePointer<Float>?) {
            let width = network.inputs, outputs = network.outputs
            for (k, sample) in samples.enumerated() {
                data.copyInput(sample: sample, row: inputRow, to: x + k * width)
                if let t { data.target(sample: sample, part: part, layers: layers, scaling: scaling, into: t + k * outputs) }
            }
        }

        /// Returns the mean loss of the last epoch; `epochDone(epoch, meanLoss)` after each.
        /// `atStep(position, optimiser)` runs before every step, where a checkpoint may be taken
        /// (the position is the whole state but the parameters and moments); `resume` continues
        /// from such a position.
        func run(epochs: Int, batch: Int, train: [Int], options: TrainingOptions, seed: UInt64,
                 resume: (position: TrainingCheckpoint.Position, m: [Float], v: [Float])? = nil,
                 atStep: (TrainingCheckpoint.Position, AdamW) throws -> Void,
                 epochDone: (Int, Float) -> Void) throws -> Float {
            guard epochs > 0, !train.isEmpty else { return 0 }
            let batch = min(batch, train.count)
            let workspace = MLP.Workspace(network, capacity: batch)
            let gradients = FloatStorage(count: network.parameterCount)
            let x = FloatStorage(count: batch * network.inputs)
            let t = FloatStorage(count: batch * network.outputs)
            var optimiser = AdamW(parameterCount: network.parameterCount, learningRate: options.learningRate,
                                  weightDecay: options.weightDecay)
            let stepsPerEpoch = (train.count + batch - 1) / batch
            let totalSteps = epochs * stepsPerEpoch
            var generator = SeededGenerator(seed: seed)
            var order = train
            var epoch = 1, b = 0, step = 0
            var sum: Double = 0
            var shuffled = false
            if let resume {
                let p = resume.position
                (epoch, b, order, sum) = (p.epoch, p.batch, p.order, p.lossSum)
                step = (epoch - 1) * stepsPerEpoch + b
                generator = SeededGenerator(seed: p.generator)
                optimiser.restore(step: step, m: resume.m, v: resume.v)
                shuffled = true
            }
            var last: Float = 0
            while epoch <= epochs {
                if !shuffled {
                    order.shuffle(using: &generator)
                    (b, sum) = (0, 0)
                }
                shuffled = false
                while b < stepsPerEpoch {
                    let rows = order[(b * batch)..<min((b + 1) * batch, order.count)]
                    fill(samples: rows, inputs: x.pointer, targets: t.pointer)
                    network.forward(batch: rows.count, x: x.pointer, workspace: workspace)
                    let value: Float
                    switch loss {
                    case .mse:
                        value = PredictorLossKernels.mse(grad: workspace.outputGradient, prediction: workspace.output,
                                                         target: t.pointer, batch: rows.count, width: network.outputs)
                    case .rank:
                        value = PredictorLossKernels.listwise(grad: workspace.outputGradient, prediction: workspace.output,
                                                              target: t.pointer, batch: rows.count, width: network.outputs,
                                                              segment: segment, temperature: temperature)
                    }
                    // Once the loss is not finite the weights are (or are about to be) NaN: stop
                    // before a checkpoint or a predictor can hold them. The step is checked before
                    // `atStep`, so a checkpoint only ever holds weights whose loss was finite.
                    guard value.isFinite else {
                        if step == 0 {
                            throw ShadowError.failed("training failed: the \(name) network's loss is \(value) on its first batch, before any update")
                        }
                        throw diverged("loss became \(value)", epoch: epoch, of: epochs, options: options)
                    }
                    try atStep(TrainingCheckpoint.Position(epoch: epoch, batch: b, generator: generator.state,
                                                           order: order, lossSum: sum), optimiser)
                    sum += Double(value) * Double(rows.count)
                    gradients.zero()
                    network.backward(batch: rows.count, x: x.pointer, workspace: workspace, gradients: gradients.pointer)
                    optimiser.update(network.parameters.pointer, gradients: gradients.pointer,
                                     lr: AdamW.cosine(base: options.learningRate, step: step, total: totalSteps))
                    step += 1
                    b += 1
                }
                last = Float(sum / Double(train.count))
                guard last.isFinite else { throw diverged("mean loss overflowed single precision", epoch: epoch, of: epochs, options: options) }
                epochDone(epoch, last)
                epoch += 1
            }
            // The last update is followed by no forward pass that would show its NaNs.
            let parameters = UnsafeBufferPointer(start: network.parameters.pointer, count: network.parameterCount)
            guard parameters.allSatisfy(\.isFinite) else {
                throw diverged("weights became non-finite after its last step", epoch: epochs, of: epochs, options: options)
            }
            // Finite weights can still be refused by the predictor's reader (scores that overflow).
            guard network.outputsFitSinglePrecision else {
                throw diverged("weights grew so large that its scores can overflow single precision", epoch: epochs, of: epochs, options: options)
            }
            return last
        }

        /// "training diverged: the heads network's loss became nan at epoch 2/100 (--lr 1e+10); …"
        func diverged(_ what: String, epoch: Int, of epochs: Int, options: TrainingOptions) -> ShadowError {
            .failed("training diverged: the \(name) network's \(what) at epoch \(epoch)/\(epochs) "
                    + "(--lr \(options.learningRate)); no predictor was written: give a lower --lr")
        }

        /// Mean per-sample Spearman ρ on `samples` between the outputs in `compared` and the
        /// per-layer scaled truth at the same positions.
        func heldOutSpearman(samples: [Int], compared: Range<Int>) -> Double {
            guard !samples.isEmpty else { return 0 }
            let chunk = 64
            let workspace = MLP.Workspace(network, capacity: min(chunk, samples.count))
            let x = FloatStorage(count: workspace.capacity * network.inputs)
            let truth = FloatStorage(count: network.outputs)
            var sum = 0.0
            var start = 0
            while start < samples.count {
                let rows = samples[start..<min(start + chunk, samples.count)]
                fill(samples: rows, inputs: x.pointer, targets: nil)
                network.forward(batch: rows.count, x: x.pointer, workspace: workspace)
                for (k, sample) in rows.enumerated() {
                    data.target(sample: sample, part: part, layers: layers, scaling: .perLayer, into: truth.pointer)
                    let p = workspace.output + k * network.outputs
                    sum += PredictorQuality.spearman(Array(UnsafeBufferPointer(start: p + compared.lowerBound, count: compared.count)),
                                                     Array(UnsafeBufferPointer(start: truth.pointer + compared.lowerBound, count: compared.count)))
                }
                start += chunk
            }
            return sum / Double(samples.count)
        }
    }
}

extension Predictor {
    /// Predictions for several samples of `data` at once (BLAS, as in training): per sample the
    /// flattened L × H and L × F scores (layer 0 zero for the dejavu kinds; no neuron scores for
    /// heads-only criteria).
    func predictBatch(data: PredictorDataset, samples: [Int]) -> (heads: [[Float]], neurons: [[Float]]) {
        let s = shape
        func run(_ network: MLP, row: Int) -> [[Float]] {
            let workspace = MLP.Workspace(network, capacity: samples.count)
            let x = FloatStorage(count: samples.count * network.inputs)
            for (k, sample) in samples.enumerated() {
                data.copyInput(sample: sample, row: row, to: x.pointer + k * network.inputs)
            }
            network.forward(batch: samples.count, x: x.pointer, workspace: workspace)
            return (0..<samples.count).map { Array(UnsafeBufferPointer(start: workspace.output + $0 * network.outputs, count: network.outputs)) }
        }
        func part(_ networks: [MLP?], units: Int) -> [[Float]] {
            if kind == .shadow { return networks[0].map { run($0, row: 0) } ?? [] }
            guard networks.contains(where: { $0 != nil }) else { return [] }
            var result = [[Float]](repeating: [Float](repeating: 0, count: s.layers * units), count: samples.count)
            for l in 1..<s.layers {
                let rows = run(networks[l]!, row: kind.sourceLayer(for: l))
                for k in samples.indices { result[k].replaceSubrange(l * units..<(l + 1) * units, with: rows[k]) }
            }
            return result
        }
        return (part(headNetworks, units: s.heads), part(neuronNetworks, units: s.ffnSize))
    }
}
