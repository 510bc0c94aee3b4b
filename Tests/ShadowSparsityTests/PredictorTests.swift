import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels
@testable import ShadowSparsity
import ShadowTestSupport

/// Small networks and few epochs: enough to learn the synthetic scores in a debug build.
let smallConfiguration = PredictorConfiguration(kind: .shadow, headWidth: 64, neuronWidth: 64)
let quickOptions = TrainingOptions(headEpochs: 40, neuronEpochs: 40, headBatch: 16, neuronBatch: 16, learningRate: 3e-3)

func syntheticData(kind: PredictorKind, count: Int = 240) throws -> PredictorDataset {
    try PredictorDataset(records: SyntheticTraces.records(count: count), model: SyntheticTraces.fingerprint,
                         criterion: "plainact", kind: kind)
}

@Suite("Predictors")
struct PredictorTests {
    @Test("the split is seeded, 80/20 and disjoint")
    func split() {
        let (train, heldOut) = PredictorTrainer.split(count: 100, seed: 1234)
        #expect(train.count == 80 && heldOut.count == 20)
        #expect(Set(train).isDisjoint(with: heldOut) && Set(train + heldOut) == Set(0..<100))
        #expect(PredictorTrainer.split(count: 100, seed: 1234).heldOut == heldOut)
        #expect(PredictorTrainer.split(count: 100, seed: 1).heldOut != heldOut)
    }

    @Test("training the shadow predictor lowers the loss and ranks held-out heads and neurons well",
          arguments: [PredictorLoss.mse, .rank])
    func trainsShadow(loss: PredictorLoss) throws {
        let data = try syntheticData(kind: .shadow)
        var configuration = smallConfiguration
        configuration.loss = loss
        var reports: [TrainingProgress] = []
        let predictor = try PredictorTrainer.train(data: data, configuration: configuration, options: quickOptions) { reports.append($0) }
        let heads = reports.filter { $0.network == "heads" }, neurons = reports.filter { $0.network == "neurons" }
        #expect(heads.count == 40 && neurons.count == 40)
        #expect(reports.last!.completedEpochs == 80 && reports.last!.totalEpochs == 80)
        #expect(heads.last!.loss < heads.first!.loss && neurons.last!.loss < neurons.first!.loss)
        let quality = try #require(predictor.quality)
        #expect(quality.heldOutSamples == 48)
        // The listwise loss leaves the offset between layers free, which ranking all layers
        // together needs: its cross-layer ρ may be lower.
        let floor = loss == .mse ? 0.85 : 0.7
        #expect(quality.heads.spearman > floor, "heads ρ \(quality.heads.spearman)")
        #expect(try #require(quality.neurons).spearman > floor, "neurons ρ \(quality.neurons!.spearman)")
        #expect(heads.last!.spearman > heads.first!.spearman)
        #expect(quality.heads.recall["0.5"]! > 0.7)
        #expect(predictor.training?.trainSamples == 192)
    }

    @Test("a learning rate that blows the loss up stops training with an error naming the network and the epoch",
          arguments: [PredictorKind.shadow, .dejavu])
    func divergence(kind: PredictorKind) throws {
        let data = try syntheticData(kind: kind, count: 40)
        let configuration = PredictorConfiguration(kind: kind, headWidth: 16, neuronWidth: 16)
        let options = TrainingOptions(headEpochs: 5, neuronEpochs: 5, headBatch: 8, neuronBatch: 8, learningRate: 1e10)
        var losses: [Float] = []
        do {
            _ = try PredictorTrainer.train(data: data, configuration: configuration, options: options) { losses.append($0.loss) }
            Issue.record("training at --lr 1e10 returned a predictor")
        } catch ShadowError.failed(let message) {
            let network = kind == .shadow ? "heads" : "layer 1 heads"
            #expect(message.hasPrefix("training diverged: the \(network) network's loss became "), "\(message)")
            #expect(message.contains(" at epoch ") && message.contains("/5 (--lr 1e+10)") && message.hasSuffix("give a lower --lr"), "\(message)")
        }
        // Every epoch reported before the error had a finite loss.
        #expect(losses.allSatisfy { $0.isFinite }, "\(losses)")
    }

    @Test("DejaVu-style predictors learn every layer from its residual input", arguments: [PredictorKind.dejavu, .dejavuLookahead])
    func trainsDejaVu(kind: PredictorKind) throws {
        let data = try syntheticData(kind: kind)
        var configuration = smallConfiguration
        configuration.kind = kind
        var networks = Set<String>()
        let predictor = try PredictorTrainer.train(data: data, configuration: configuration, options: quickOptions) { networks.insert($0.network) }
        #expect(networks == ["layer 1 heads", "layer 2 heads", "layer 1 neurons", "layer 2 neurons"])
        let quality = try #require(predictor.quality)
        // Every layer's residual determines the synthetic scores, so the look-ahead learns too.
        #expect(quality.heads.spearman > 0.85, "heads ρ \(quality.heads.spearman)")
        #expect(try #require(quality.neurons).spearman > 0.85)
        // One vector through GEMV gives what the batch path measured.
        let record = SyntheticTraces.records(count: 1)[0]
        let d = SyntheticTraces.shape.hiddenSize
        let l = 2, source = kind.sourceLayer(for: l)
        let single = record.layerInputs.withUnsafeBufferPointer { predictor.predictLayer(l, input: $0.baseAddress! + source * d) }
        let batch = predictor.predictBatch(data: try PredictorDataset(records: [record], model: SyntheticTraces.fingerprint,
                                                                      criterion: "plainact", kind: kind), samples: [0])
        expectClose(single.heads, Array(batch.heads[0][l * 4..<(l + 1) * 4]), tolerance: 1e-4)
        expectClose(single.neurons, Array(batch.neurons[0][l * 12..<(l + 1) * 12]), tolerance: 1e-4)
    }

    @Test("global target scaling trains too and is recorded")
    func globalScaling() throws {
        var configuration = smallConfiguration
        configuration.targetScaling = .global
        let options = TrainingOptions(headEpochs: 20, neuronEpochs: 5, headBatch: 16, neuronBatch: 16, learningRate: 3e-3)
        let predictor = try PredictorTrainer.train(data: try syntheticData(kind: .shadow), configuration: configuration, options: options)
        #expect(predictor.metadata.targetScaling == .global)
        #expect(predictor.quality!.heads.spearman > 0.5)
    }

    @Test("a low-rank neuron output has fewer parameters and FLOPs")
    func lowRank() throws {
        let full = try Predictor(configuration: smallConfiguration, criterion: "plainact", model: SyntheticTraces.fingerprint)
        var configuration = smallConfiguration
        configuration.rank = 4
        let low = try Predictor(configuration: configuration, criterion: "plainact", model: SyntheticTraces.fingerprint)
        #expect(low.neuronParameters < full.neuronParameters)
        #expect(low.headParameters == full.headParameters)
        #expect(low.flopsPerPrediction < full.flopsPerPrediction)
        // d → 64 → 4 → L·F, with biases.
        #expect(low.neuronParameters == 16 * 64 + 64 + 64 * 4 + 4 + 4 * 36 + 36)
    }

    @Test("training's memory is counted before any network is allocated: the parameters of all, moments of the largest")
    func trainingMemory() throws {
        for kind in PredictorKind.allCases {
            var configuration = smallConfiguration
            configuration.kind = kind
            let predictor = try Predictor(configuration: configuration, criterion: "plainact", model: SyntheticTraces.fingerprint)
            let needed = Predictor.trainingBytes(configuration: configuration, shape: SyntheticTraces.shape, predictsNeurons: true, batch: 1)
            // Four floats per parameter of the largest network, one per other parameter, and activations.
            #expect(needed.bytes >= Double(4 * predictor.parameterCount) && needed.bytes <= Double(16 * predictor.parameterCount + 4096), "\(kind)")
        }
        // SmolLM2's shadow predictor: 49.6 M parameters, well under a gigabyte; a neuron width of
        // 100,000 (4.7 G parameters) needs about 75 GB and is refused before anything is allocated.
        let smolLM2 = TransformerShape(layers: 30, hiddenSize: 576, heads: 9, kvHeads: 3, headDim: 64, ffnSize: 1536,
                                       vocabularySize: 49152, maxContext: 8192)
        let defaults = Predictor.trainingBytes(configuration: PredictorConfiguration(), shape: smolLM2, predictsNeurons: true, batch: 32)
        #expect(defaults.bytes > 0.7e9 && defaults.bytes < 1e9 && defaults.largestIsNeurons)
        var wide = PredictorConfiguration()
        wide.neuronWidth = 100_000
        #expect(Predictor.trainingBytes(configuration: wide, shape: smolLM2, predictsNeurons: true, batch: 32).bytes > 70e9)
    }

    @Test("saving and loading gives identical predictions and metadata", arguments: PredictorKind.allCases)
    func roundTrip(kind: PredictorKind) throws {
        var configuration = smallConfiguration
        configuration.kind = kind
        configuration.rank = 3
        let options = TrainingOptions(headEpochs: 2, neuronEpochs: 2, headBatch: 16, neuronBatch: 16)
        let predictor = try PredictorTrainer.train(data: try syntheticData(kind: kind, count: 40), configuration: configuration, options: options)
        let path = temporaryDirectory("predictor") + ".safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try PredictorFile.save(predictor, to: path)
        let loaded = try PredictorFile.load(path: path)
        #expect(loaded.metadata == predictor.metadata)
        #expect(loaded.path == path)
        let x = randomFloats(16, seed: 5)
        x.withUnsafeBufferPointer { p in
            if kind == .shadow {
                let a = predictor.predict(x: p.baseAddress!), b = loaded.predict(x: p.baseAddress!)
                #expect(a.heads == b.heads && a.neurons == b.neurons)
                #expect(a.heads.count == 3 && a.heads[0].count == 4 && a.neurons.count == 3 && a.neurons[0].count == 12)
            } else {
                for l in 1..<3 {
                    let a = predictor.predictLayer(l, input: p.baseAddress!), b = loaded.predictLayer(l, input: p.baseAddress!)
                    #expect(a.heads == b.heads && a.neurons == b.neurons)
                }
            }
        }
        #expect(try PredictorFile.metadata(path: path).quality == predictor.quality)
    }

    @Test("an f16 predictor file is half the size and predicts exactly what its rounded weights do")
    func halfPrecisionFile() throws {
        let options = TrainingOptions(headEpochs: 2, neuronEpochs: 2, headBatch: 16, neuronBatch: 16)
        let data = try syntheticData(kind: .shadow, count: 40)
        let full = try PredictorTrainer.train(data: data, configuration: smallConfiguration, options: options)
        let half = try PredictorTrainer.train(data: data, configuration: smallConfiguration, options: options, weightDType: .f16)
        let fullPath = temporaryDirectory("predictor-f32") + ".safetensors", halfPath = temporaryDirectory("predictor-f16") + ".safetensors"
        defer { for path in [fullPath, halfPath] { try? FileManager.default.removeItem(atPath: path) } }
        try PredictorFile.save(full, to: fullPath)
        try PredictorFile.save(half, to: halfPath)
        let loaded = try PredictorFile.load(path: halfPath)
        #expect(loaded.weightDType == .f16)
        #expect(try PredictorFile.load(path: fullPath).weightDType == .f32)
        // Bytes after the header: 8 bytes of header length, then the header, then the tensors.
        func dataBytes(_ path: String) throws -> Int {
            let bytes = try #require(FileManager.default.contents(atPath: path))
            let headerLength = bytes.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
            return bytes.count - 8 - headerLength
        }
        #expect(try dataBytes(fullPath) == full.parameterCount * 4)
        #expect(try dataBytes(halfPath) == full.parameterCount * 2)
        // The quality recorded is that of the rounded weights, and the file reproduces them.
        #expect(try PredictorFile.metadata(path: halfPath).quality == half.quality)
        let x = randomFloats(16, seed: 5)
        x.withUnsafeBufferPointer { p in
            let a = half.predict(x: p.baseAddress!), b = loaded.predict(x: p.baseAddress!), c = full.predict(x: p.baseAddress!)
            #expect(a.heads == b.heads && a.neurons == b.neurons)
            // Rounding moves the scores a little, not the predictor.
            for (r, s) in zip(a.heads.joined(), c.heads.joined()) { #expect(abs(r - s) <= 1e-2 * max(1, abs(s))) }
        }
    }

    @Test("prepared for prediction, an f16 predictor reads fp16 copies of its weights and predicts what the fp32 ones do, also once its fp32 weights are released; an f32 one is left as it is",
          arguments: [PredictorKind.shadow, .dejavu])
    func halfWeightsInPrediction(kind: PredictorKind) throws {
        var configuration = smallConfiguration
        configuration.kind = kind
        let options = TrainingOptions(headEpochs: 2, neuronEpochs: 2, headBatch: 16, neuronBatch: 16)
        let data = try syntheticData(kind: kind, count: 40)
        let half = try PredictorTrainer.train(data: data, configuration: configuration, options: options, weightDType: .f16)
        let full = try PredictorTrainer.train(data: data, configuration: configuration, options: options)
        let x = randomFloats(kind == .shadow ? SyntheticTraces.shape.attentionWidth : SyntheticTraces.shape.hiddenSize, seed: 6)
        func scores(_ predictor: Predictor) -> [Float] {
            x.withUnsafeBufferPointer { p in
                if kind == .shadow {
                    let s = predictor.predict(x: p.baseAddress!)
                    return Array(s.heads.joined()) + Array(s.neurons.joined())
                }
                return (1..<SyntheticTraces.shape.layers).flatMap { l in
                    let s = predictor.predictLayer(l, input: p.baseAddress!)
                    return s.heads + s.neurons
                }
            }
        }
        let before = scores(half), fullBefore = scores(full)
        let halfPath = temporaryDirectory("half") + ".safetensors", fullPath = temporaryDirectory("full") + ".safetensors"
        defer { for path in [halfPath, fullPath] { try? FileManager.default.removeItem(atPath: path) } }
        try PredictorFile.save(half, to: halfPath)
        try PredictorFile.save(full, to: fullPath)
        #expect(half.bytesPerPrediction == 4 * half.parameterCount)
        half.prepareForPrediction()
        full.prepareForPrediction()
        #expect(half.readsHalfWeights && !full.readsHalfWeights)
        // fp16 weights, fp32 biases.
        #expect(half.bytesPerPrediction < 4 * half.parameterCount && half.bytesPerPrediction > 2 * half.parameterCount)
        #expect(full.bytesPerPrediction == 4 * full.parameterCount)
        expectClose(scores(half), before, tolerance: 1e-5)
        #expect(scores(full) == fullBefore)
        // Released, the fp16 copies and the biases predict the same bits; the counts stay.
        let prepared = scores(half), parameters = half.parameterCount, bytes = half.bytesPerPrediction
        half.prepareForPrediction(releasingFullPrecision: true)
        full.prepareForPrediction(releasingFullPrecision: true)
        #expect(half.networks.allSatisfy { $0.network.weightsReleased } && !full.networks.contains { $0.network.weightsReleased })
        #expect(scores(half) == prepared && half.parameterCount == parameters && half.bytesPerPrediction == bytes)
        #expect(scores(full) == fullBefore)
        // Loaded for prediction only, each network is prepared and released as it is read.
        let loadedHalf = try PredictorFile.load(path: halfPath, forPredictionOnly: true)
        let loadedFull = try PredictorFile.load(path: fullPath, forPredictionOnly: true)
        #expect(loadedHalf.networks.allSatisfy { $0.network.weightsReleased } && !loadedFull.networks.contains { $0.network.weightsReleased })
        #expect(scores(loadedHalf) == prepared && scores(loadedFull) == fullBefore)
    }

    @Test("a predictor for another model is refused with one line naming the file")
    func wrongModel() throws {
        let predictor = try Predictor(configuration: smallConfiguration, criterion: "plainact", model: SyntheticTraces.fingerprint)
        let path = temporaryDirectory("predictor") + ".safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try PredictorFile.save(predictor, to: path)
        let loaded = try PredictorFile.load(path: path)
        try loaded.check(fingerprint: SyntheticTraces.fingerprint)
        var other = SyntheticTraces.fingerprint
        other.contentHash = "00000000000000bb"
        do {
            try loaded.check(fingerprint: other)
            Issue.record("no error")
        } catch let error as ShadowError {
            #expect(error.description.hasPrefix(path + ":"))
            #expect(!error.description.contains("\n"))
            #expect(error.description.contains("00000000000000aa") && error.description.contains("00000000000000bb"))
        }
        // Same name, architecture, layers and hash: the size that differs is named.
        let made = SyntheticTraces.fingerprint.shape
        var wider = SyntheticTraces.fingerprint, longer = SyntheticTraces.fingerprint, shortContext = SyntheticTraces.fingerprint
        wider.shape.hiddenSize *= 2
        longer.shape.vocabularySize += 1
        shortContext.shape.maxContext = made.maxContext / 2
        for (model, difference) in [(wider, ": its hidden_size is \(made.hiddenSize), the model's \(made.hiddenSize * 2)"),
                                    (longer, ": its vocab_size is \(made.vocabularySize), the model's \(made.vocabularySize + 1)"),
                                    (shortContext, ": its max_context is \(made.maxContext), the model's \(made.maxContext / 2) (--long-context, for LongRoPE models, changes it)")] {
            #expect(model.description == SyntheticTraces.fingerprint.description)
            do {
                try loaded.check(fingerprint: model)
                Issue.record("no error")
            } catch let error as ShadowError {
                #expect(error.description.hasPrefix(path + ":") && error.description.hasSuffix(difference), "\(error)")
                #expect(!error.description.contains("\n"))
            }
        }
        // In words for a refused resume: the descriptions, or where they read the same the sizes.
        var shorter = SyntheticTraces.fingerprint
        shorter.shape.maxContext = made.maxContext / 2
        #expect(SyntheticTraces.fingerprint.difference(to: shorter)
                == "max_context \(made.maxContext) → \(made.maxContext / 2) (--long-context, for LongRoPE models, changes it)")
        #expect(SyntheticTraces.fingerprint.difference(to: other) == "\(SyntheticTraces.fingerprint) → \(other)")
    }

    @Test("corrupt predictor files fail with one line naming the file and the tensor")
    func corruptFiles() throws {
        let predictor = try Predictor(configuration: smallConfiguration, criterion: "plainact", model: SyntheticTraces.fingerprint)
        let directory = temporaryDirectory("corrupt")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = directory + "/good.safetensors"
        try PredictorFile.save(predictor, to: good)
        let json = try #require(try SafetensorsFile(path: good).metadata["predictor"])
        func write(_ name: String, metadata: [String: String], edit: (inout [SafetensorsWriter.Tensor]) -> Void) throws -> String {
            let file = try SafetensorsFile(path: good)
            var tensors = try file.tensorNames.map { SafetensorsWriter.Tensor(name: $0, shape: try file.info($0).shape, values: try file.floats($0)) }
            edit(&tensors)
            var writer = SafetensorsWriter(metadata: metadata)
            writer.tensors = tensors
            let path = directory + "/" + name
            try writer.write(to: path)
            return path
        }
        let meta = ["format": PredictorFile.format, "predictor": json]
        let overflowingCounts = String(decoding: try JSONEncoder().encode(
            TrainingSummary(traces: "t", samples: 5, trainSamples: .max, heldOutSamples: 7, options: TrainingOptions(), seconds: 1, finalHeadLoss: 0.1)), as: UTF8.self)
        let cases: [(String, String)] = [
            (try write("missing.safetensors", metadata: meta) { $0.removeAll { $0.name == "neurons.1.bias" } }, "neurons.1.bias"),
            (try write("shape.safetensors", metadata: meta) { t in
                t = t.map { $0.name == "heads.0.bias" ? .init(name: $0.name, shape: [2, 32], values: $0.values) : $0 } }, "heads.0.bias"),
            (try write("extra.safetensors", metadata: meta) { $0.append(.init(name: "heads.9.weight", shape: [1], values: [0])) }, "heads.9.weight"),
            (try write("plain.safetensors", metadata: [:]) { _ in }, "not a ShadowLLM predictor"),
            (try write("json.safetensors", metadata: ["format": PredictorFile.format, "predictor": "{\"kind\": 3}"]) { _ in }, "metadata"),
            (try write("kind.safetensors", metadata: ["format": PredictorFile.format,
                                                      "predictor": json.replacingOccurrences(of: #""kind":"shadow""#, with: #""kind":"foo""#)]) { _ in },
             #"key "kind": unknown predictor kind "foo" (expected shadow, dejavu, dejavu-lookahead)"#),
            (try write("criterion.safetensors", metadata: ["format": PredictorFile.format,
                                                           "predictor": json.replacingOccurrences(of: #""criterion":""#, with: #""criterion":"bogus"#)]) { _ in },
             #"key "criterion": unknown criterion "bogus"#),
            // A NaN in a weight or in a bias, each named.
            (try write("nan-weight.safetensors", metadata: meta) { t in
                t = t.map { $0.name == "heads.0.weight" ? .init(name: $0.name, shape: $0.shape, values: [.nan] + $0.values.dropFirst()) : $0 } },
             #"tensor "heads.0.weight": holds non-finite values"#),
            (try write("nan-bias.safetensors", metadata: meta) { t in
                t = t.map { $0.name == "heads.0.bias" ? .init(name: $0.name, shape: $0.shape, values: $0.values.dropLast() + [.infinity]) : $0 } },
             #"tensor "heads.0.bias": holds non-finite values"#),
            // Finite weights whose scores can still overflow.
            (try write("huge.safetensors", metadata: meta) { t in
                t = t.map { $0.name.hasPrefix("heads.") ? .init(name: $0.name, shape: $0.shape, values: $0.values.map { $0 * 1e30 }) : $0 } },
             "so large that its scores can overflow"),
            // A heads-only criterion with neuron networks, and a quality no training gives.
            (try write("jacov.safetensors", metadata: ["format": PredictorFile.format,
                                                       "predictor": json.replacingOccurrences(of: #""criterion":"plainact""#, with: #""criterion":"jacov""#)]) { _ in },
             #"key "predicts_neurons": jacov scores heads only"#),
            (try write("quality.safetensors", metadata: ["format": PredictorFile.format,
                                                         "predictor": "{\"quality\":{\"held_out_samples\":3,\"heads\":{\"spearman\":7.5,\"recall\":{}}}," + json.dropFirst()]) { _ in },
             #"key "quality.heads.spearman": 7.5 is not a correlation"#),
            (try write("local.safetensors", metadata: ["format": PredictorFile.format,
                                                       "predictor": "{\"quality\":{\"held_out_samples\":3,\"heads\":{\"spearman\":0.5,\"recall\":{},\"recall_local\":{\"0.5\":-3}}}," + json.dropFirst()]) { _ in },
             #"key "quality.heads.recall_local.0.5": -3.0 is not a fraction"#),
            // Impossible settings are named by their metadata keys, not train-predictor's options.
            (try write("temperature.safetensors", metadata: ["format": PredictorFile.format,
                                                             "predictor": json.replacingOccurrences(of: #""rank_temperature":[^,}]*"#, with: #""rank_temperature":-1"#,
                                                                                                    options: .regularExpression)]) { _ in },
             #"key "rank_temperature": must be positive, got -1.0"#),
            // Counts whose sum would overflow.
            (try write("counts.safetensors", metadata: ["format": PredictorFile.format, "predictor": "{\"training\":" + overflowingCounts + "," + json.dropFirst()]) { _ in },
             #"key "training.samples""#),
        ]
        for (path, mention) in cases {
            do {
                _ = try PredictorFile.load(path: path)
                Issue.record("\(path) loaded")
            } catch let error as ShadowError {
                #expect(error.description.contains(path) && error.description.contains(mention), "\(error)")
                #expect(!error.description.contains("\n"))
            }
        }
        #expect(throws: ShadowError.fileNotFound(path: directory + "/none")) { try PredictorFile.load(path: directory + "/none") }
        let truncated = directory + "/truncated.safetensors"
        try Data(try Data(contentsOf: URL(fileURLWithPath: good)).prefix(100)).write(to: URL(fileURLWithPath: truncated))
        #expect(throws: ShadowError.self) { try PredictorFile.load(path: truncated) }
    }

    @Test("trace directories are read for one criterion, and bad ones are one-line errors")
    func loadsTraces() throws {
        let directory = temporaryDirectory("traces")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try SyntheticTraces.write(directory: directory, count: 30, criteria: ["plainact", "jacov"], headsOnly: ["jacov"], chunkSize: 8)
        let data = try PredictorDataset.load(directory: directory, criterion: "plainact", kind: .shadow)
        #expect(data.count == 30 && data.predictsNeurons && data.criterion == "plainact")
        let inMemory = try PredictorDataset(records: SyntheticTraces.records(count: 30, criteria: ["plainact", "jacov"], headsOnly: ["jacov"]),
                                            model: SyntheticTraces.fingerprint, criterion: "plainact", kind: .shadow)
        #expect(data.inputs == inMemory.inputs && data.heads == inMemory.heads && data.neurons == inMemory.neurons)
        #expect(try PredictorDataset.load(directory: directory, criterion: nil, kind: .dejavu).criterion == "plainact")

        let headsOnly = try PredictorDataset.load(directory: directory, criterion: "jacov", kind: .shadow)
        #expect(!headsOnly.predictsNeurons)
        let predictor = try PredictorTrainer.train(data: headsOnly, configuration: smallConfiguration,
                                                   options: TrainingOptions(headEpochs: 1, neuronEpochs: 1))
        #expect(!predictor.predictsNeurons && predictor.neuronParameters == 0 && predictor.quality?.neurons == nil)
        #expect(throws: ShadowError.self) {
            var low = smallConfiguration
            low.rank = 2
            _ = try PredictorTrainer.train(data: headsOnly, configuration: low, options: TrainingOptions(headEpochs: 1, neuronEpochs: 1))
        }

        for (dir, criterion, mention) in [(directory, "fisher", "fisher"), (directory + "-missing", "plainact", "-missing"),
                                          (NSTemporaryDirectory(), "plainact", "no traces")] {
            do {
                _ = try PredictorDataset.load(directory: dir, criterion: criterion, kind: .shadow)
                Issue.record("\(dir) loaded")
            } catch let error as ShadowError {
                #expect(error.description.contains(mention) && !error.description.contains("\n"), "\(error)")
            }
        }
    }
}
