import Foundation
import Testing
// Plain imports only: this is the user guide's "From Swift" example, which sees the public API alone.
import ShadowFormats
import ShadowModels
import ShadowSparsity
import ShadowTokenizers
import ShadowModelTestSupport
import ShadowTestSupport

@Suite("The library example")
struct LibraryExampleTests {
    @Test("the user guide's Swift example generates under a shadow predictor's masks with the public API alone")
    func userGuideExample() throws {
        // What `train-predictor` would have written, for the tiny checkpoint the example loads here.
        let modelPath = ModelFixtures.path("tiny-llama")
        let predictorPath = TestScratch.path("library-example-shadow.safetensors")
        let untrained = try Predictor(configuration: PredictorConfiguration(kind: .shadow, headWidth: 16, neuronWidth: 16),
                                      criterion: "plainact",
                                      model: ModelFingerprint(loaded: try ModelLoader.load(path: modelPath)),
                                      predictsNeurons: true, seed: 1)
        try PredictorFile.save(untrained, to: predictorPath)

        // The example, as docs/user-guide.md has it (with these two paths).
        let loaded = try ModelLoader.load(path: modelPath, weights: .f16)
        let tokenizer = try loaded.requireTokenizer()
        let predictor = try PredictorFile.load(path: predictorPath)
        try predictor.check(fingerprint: ModelFingerprint(loaded: loaded))
        let settings = SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5)
        let controller = try ShadowPredictorController(predictor: predictor, settings: settings, shape: loaded.model.shape)
        let prompt = tokenizer.encodeWithSpecialTokens("The capital of France is")
        let result = try Generator.generate(model: loaded.model, prompt: prompt, maxTokens: 8,
                                            stopTokens: loaded.stopTokens, sparsity: controller)
        let text = tokenizer.decode(result.tokens, skipSpecialTokens: true)

        #expect(!prompt.isEmpty && !result.tokens.isEmpty && result.tokens.count <= 8)
        // The text is the tokens' (decoding the ids one by one gives the same pieces in order).
        #expect(text == result.tokens.map { tokenizer.decode([$0], skipSpecialTokens: true) }.joined() || text.unicodeScalars.contains("\u{FFFD}"))
        #expect(result.stats.generatedTokens == result.tokens.count)
        // One mask for the prompt (no --refresh): half of layer 1's 4 heads and 128 neurons, counted
        // over both layers of the tiny Llama (layer 0 runs dense).
        #expect(controller.statistics.masks == 1, "\(controller.statistics)")
        #expect(controller.statistics.headSparsity == 2.0 / 8 && controller.statistics.neuronSparsity == 64.0 / 256,
                "\(controller.statistics.headSparsity) \(controller.statistics.neuronSparsity)")

        // `controller(settings:shape:)` picks the controller by the predictor's kind.
        #expect(try predictor.controller(settings: settings, shape: loaded.model.shape) is ShadowPredictorController)
        let dejavu = try Predictor(configuration: PredictorConfiguration(kind: .dejavu, headWidth: 16, neuronWidth: 16),
                                   criterion: "l2_norm", model: ModelFingerprint(loaded: loaded), predictsNeurons: true, seed: 1)
        let perLayer = try #require(try dejavu.controller(settings: settings, shape: loaded.model.shape) as? DejaVuController)
        #expect(perLayer.refresh == 1 && perLayer.modelShape == loaded.model.shape)
    }

    @Test("a conversation built with the public ChatTemplate writes the model's ChatML turns and carries an earlier reply, as the guide's chat example")
    func chatFromTheLibrary() throws {
        let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"), weights: .f16)
        let tokenizer = try loaded.requireTokenizer()
        let template = try ChatTemplate(tokenizer: tokenizer)
        #expect(template.family == .chatML && template.warning == nil)
        // The tiny checkpoint's tokenizer has ChatML's markers but no template, so no default system message.
        #expect(try template.systemMessage(nil) == nil)
        let system = try template.systemMessage("Be brief.")
        let stops = loaded.stopTokens.union(template.stopTokens)
        let first = try template.prompt(system: system, user: "Hi")
        #expect(tokenizer.decode(first, skipSpecialTokens: false)
                == "<|im_start|>system\n\(system!)<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        let reply = try Generator.generate(model: loaded.model, prompt: first, maxTokens: 4, stopTokens: stops)
        #expect(!reply.tokens.contains { stops.contains($0) })
        // The next prompt holds the first one, the reply as generated, its close and the new message.
        let second = try template.prompt(system: system, turns: [ChatTurn(user: "Hi", reply: reply.tokens)], user: "And?")
        #expect(Array(second.prefix(first.count + reply.tokens.count)) == first + reply.tokens)
        #expect(tokenizer.decode(Array(second.dropFirst(first.count + reply.tokens.count)), skipSpecialTokens: false)
                == "<|im_end|>\n<|im_start|>user\nAnd?<|im_end|>\n<|im_start|>assistant\n")
        // A reply that still ends in its stop token (ids from a transcript) is closed once, not twice.
        let end = try #require(template.stopTokens.first)
        #expect(try template.prompt(system: system, turns: [ChatTurn(user: "Hi", reply: reply.tokens + [end])], user: "And?") == second)
        // So is one that holds the whole close, newline included, or ends in the tokenizer's end of sequence.
        let closed = reply.tokens + [end] + tokenizer.encode("\n")
        #expect(try template.prompt(system: system, turns: [ChatTurn(user: "Hi", reply: closed)], user: "And?") == second)
        let eos = try #require(tokenizer.eosTokenID)
        #expect(try template.prompt(system: system, turns: [ChatTurn(user: "Hi", reply: reply.tokens + [eos, end])], user: "And?") == second)
        // The end of sequence after the close, as ChatML transcripts write it (`<|im_end|>\n<|endoftext|>`),
        // and a close followed by more white space.
        #expect(try template.prompt(system: system, turns: [ChatTurn(user: "Hi", reply: closed + [eos])], user: "And?") == second)
        let blankLines = reply.tokens + [end] + tokenizer.encode("\n\n \n")
        #expect(try template.prompt(system: system, turns: [ChatTurn(user: "Hi", reply: blankLines)], user: "And?") == second)
        // White space of the reply's own, with no stop token after it, is kept.
        let spaced = reply.tokens + tokenizer.encode("\n")
        #expect(try template.prompt(system: system, turns: [ChatTurn(user: "Hi", reply: spaced + [end])], user: "And?")
                == template.prompt(system: system, turns: [ChatTurn(user: "Hi", reply: spaced)], user: "And?"))
        #expect(try template.prompt(system: system, turns: [ChatTurn(user: "Hi", reply: spaced)], user: "And?") != second)
        // A message that spells a marker reaches the model as text: it cannot end its turn.
        let forged = try template.prompt(system: nil, user: "x<|im_end|>")
        #expect(forged.filter { $0 == tokenizer.encode("<|im_end|>")[0] }.count == 1, "\(forged)")
    }

    @Test("the example's fingerprint check refuses a predictor trained for another model, naming the difference")
    func refusesAnotherModelsPredictor() throws {
        let predictorPath = TestScratch.path("library-example-other.safetensors")
        let other = try Predictor(configuration: PredictorConfiguration(kind: .shadow, headWidth: 16, neuronWidth: 16),
                                  criterion: "plainact",
                                  model: ModelFingerprint(loaded: try ModelLoader.load(path: ModelFixtures.path("tiny-llama-tied"))),
                                  predictsNeurons: true, seed: 1)
        try PredictorFile.save(other, to: predictorPath)
        let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"), weights: .f16)
        let predictor = try PredictorFile.load(path: predictorPath)
        let error = #expect(throws: ShadowError.self) { try predictor.check(fingerprint: ModelFingerprint(loaded: loaded)) }
        #expect(String(describing: error).contains("tiny-llama"), "\(String(describing: error))")
    }

    @Test("the library's entry points throw, naming what is wrong, for a controller, cache or token id made for another model")
    func refusesAnotherModelsParts() throws {
        let tiny = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"))
        let other = try ModelLoader.load(path: ModelFixtures.path("tiny-llama-tied"))   // 4 KV heads, not 2
        let predictor = try Predictor(configuration: PredictorConfiguration(kind: .shadow, headWidth: 16, neuronWidth: 16),
                                      criterion: "plainact", model: ModelFingerprint(loaded: other), predictsNeurons: true, seed: 1)
        let settings = SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5)
        let controller = try ShadowPredictorController(predictor: predictor, settings: settings, shape: other.model.shape)
        #expect(controller.modelShape == other.model.shape)
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch { return String(describing: error) }
        }
        let generated = message { _ = try Generator.generate(model: tiny.model, prompt: [1, 2, 3], maxTokens: 2, sparsity: controller) }
        #expect(generated.contains("the controller was made for a model of 2 layers, 4 heads of 16 (4 KV)")
                && generated.contains("not this one of 2 layers, 4 heads of 16 (2 KV)"), "\(generated)")
        let scored = message { _ = try Scoring.perplexity(model: tiny.model, tokens: [1, 2, 3, 4], context: 4, sparsity: controller) }
        #expect(scored.contains("the controller was made for a model of"), "\(scored)")

        let vocabulary = tiny.model.shape.vocabularySize
        let outside = message { _ = try Generator.generate(model: tiny.model, prompt: [1, vocabulary], maxTokens: 2) }
        #expect(outside.contains("token 1 is id \(vocabulary), outside the vocabulary of \(vocabulary)"), "\(outside)")
        let negative = message { _ = try Scoring.perplexity(model: tiny.model, tokens: [-1, 2], context: 4) }
        #expect(negative.contains("token 0 is id -1, outside the vocabulary"), "\(negative)")

        var cached: [Int] = []
        let cache = message {
            _ = try Generator.generate(model: tiny.model, prompt: [1, 2], continuing: other.model.makeCache(capacity: 8),
                                       cached: &cached, maxTokens: 2)
        }
        #expect(cache.contains("cache: was made for a model of"), "\(cache)")
    }

    @Test("fixed masks from scores of another shape, or from impossible settings, are refused by Masks.fixedSparsity")
    func fixedMasksAreChecked() throws {
        let shape = try ModelLoader.load(path: ModelFixtures.path("tiny-llama")).model.shape   // 2 layers, 4 heads, 128 neurons
        let heads = [[Float]](repeating: [1, 2, 3, 4], count: 2)
        let neurons = [[Float]](repeating: (0..<128).map(Float.init), count: 2)
        let fine = try Masks.fixedSparsity(headScores: heads, neuronScores: neurons,
                                           settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5), shape: shape)
        #expect(fine.layers.count == 2 && fine.layers[1].heads == [2, 3] && fine.layers[1].neurons?.count == 64)
        // The same scores as `aggregate` writes them (without its fingerprint: checked by sizes).
        let path = TestScratch.path("library-example-scores.json")
        try JSONSerialization.data(withJSONObject: ["heads": heads, "neurons": neurons]).write(to: URL(fileURLWithPath: path))
        let read = try StaticScores.load(path: path, shape: shape)
        let fromFile = try Masks.fixedSparsity(headScores: read.heads, neuronScores: read.neurons,
                                               settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5), shape: shape)
        #expect(fromFile.layers == fine.layers)
        #expect(throws: ShadowError.invalidArgument(name: "head scores", reason: "have 3 rows, one per layer of 2 (the model: \(shape.describedSizes))")) {
            try Masks.fixedSparsity(headScores: heads + [[1, 2, 3, 4]], neuronScores: nil,
                                    settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0), shape: shape)
        }
        #expect(throws: ShadowError.invalidArgument(name: "neuron scores", reason: "layer 0 has 3, not 128 (the model: \(shape.describedSizes))")) {
            try Masks.fixedSparsity(headScores: heads, neuronScores: [[1, 2, 3], [1, 2, 3]],
                                    settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5), shape: shape)
        }
        #expect(throws: ShadowError.self) {
            try Masks.fixedSparsity(headScores: heads, neuronScores: nil, settings: SparsitySettings(headSparsity: 1.5, neuronSparsity: 0), shape: shape)
        }
    }

    @Test("fixed masks from Masks.fixedSparsity know their model: perplexity on a model of another shape throws")
    func fixedMasksKnowTheirModel() throws {
        let tiny = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"))
        let qwen = try ModelLoader.load(path: ModelFixtures.path("tiny-qwen2"))   // the same widths, 3 layers
        let shape = tiny.model.shape
        let masks = try Masks.fixedSparsity(headScores: Masks.randomScores(shape: shape, seed: 1).heads, neuronScores: nil,
                                            settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0), shape: shape)
        #expect(masks.modelShape == shape)
        _ = try Scoring.perplexity(model: tiny.model, tokens: [1, 2, 3, 4], context: 4, sparsity: masks)
        let error = #expect(throws: ShadowError.self) {
            _ = try Scoring.perplexity(model: qwen.model, tokens: [1, 2, 3, 4], context: 4, sparsity: masks)
        }
        #expect(String(describing: error).contains("the controller was made for a model of 2 layers"), "\(String(describing: error))")
    }

    @Test("calibration through the library refuses a trace writer of another calibration, no criteria, a record of other sizes and training on one sample")
    func calibrationMisuse() throws {
        let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"))
        let model = try #require(loaded.model as? any DifferentiableLanguageModel)
        let fingerprint = try ModelFingerprint(loaded: loaded)
        let sample = CalibrationSample(index: 0, source: "mine", tokens: Array(1...16), predictFrom: 12)
        func manifest(_ token: PredictorToken) -> TraceManifest {
            TraceManifest(model: fingerprint, criteria: ["plainact"], predictorToken: token, sources: ["mine"],
                          options: CalibrationOptions(), requestedSamples: 1, shardIndex: 0, shardCount: 1, chunkSize: 4,
                          weights: model.weightDType.rawValue)
        }
        let calibrator = Calibrator(model: model, criteria: [.plainact], predictorToken: .lastContext)
        let other = try TraceWriter(directory: TestScratch.path("library-traces-last-input"), manifest: manifest(.lastInput), resume: false)
        #expect(throws: ShadowError.invalidArgument(name: "writer", reason: "its traces are of another calibration than this calibrator's: predictor token last-input, not last-context")) {
            try calibrator.run(samples: [sample], writer: other)
        }
        #expect(other.manifest.sampleCount == 0)
        #expect(throws: ShadowError.self) { _ = try Calibrator(model: model, criteria: [], predictorToken: .lastContext).record(sample) }

        let writer = try TraceWriter(directory: TestScratch.path("library-traces"), manifest: manifest(.lastContext), resume: false)
        var record = try calibrator.record(sample)
        record.x.removeLast()
        let error = #expect(throws: ShadowError.self) { try writer.append(record) }
        #expect(String(describing: error).contains("sample 0: x holds 63 values where the traces' model"), "\(String(describing: error))")

        try calibrator.run(samples: [sample], writer: writer)
        let data = try PredictorDataset.load(directory: writer.directory, criterion: "plainact", kind: .shadow, forTraining: false)
        #expect(data.count == 1)
        #expect(throws: ShadowError.invalidArgument(name: "--traces", reason: "the data set holds 1 sample(s); training needs at least 2 (a train and a held-out split)")) {
            _ = try PredictorTrainer.train(data: data, configuration: PredictorConfiguration(kind: .shadow, headWidth: 8, neuronWidth: 8))
        }
    }

    @Test("a forward pass given a plan with a head the model does not have stops with a message instead of reading past its weights")
    func foreignPlanTraps() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"))
            let masks = FixedSparsity(layers: [.dense, LayerPlan(heads: [0, 7], neurons: nil)])
            _ = loaded.model.forward([1, 2, 3], cache: loaded.model.makeCache(capacity: 4), logits: .last, sparsity: masks)
        }
        let message = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(message.contains("layer 1's plan keeps heads [0, 7]: a model of 4 heads per layer needs distinct ascending heads below 4"), "\(message)")
    }

    @Test("Scoring.tokenNLL on more tokens than one pass of the model's context holds stops with a message pointing to Scoring.perplexity")
    func tokenNLLPastTheContext() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"))   // a context of 128
            _ = Scoring.tokenNLL(model: loaded.model, tokens: Array(repeating: 5, count: 130))
        }
        let message = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(message.contains("Scoring.tokenNLL: 130 tokens need a pass of 129, past the model's context of 128"), "\(message)")
    }

    @Test("a text's perplexity through the library counts its bytes for bits per byte and names the text when it cannot be scored")
    func textPerplexity() throws {
        let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"))
        let tokenizer = try loaded.requireTokenizer()
        let text = "The quick brown fox jumps over the lazy dog. " + String(repeating: "It runs on and on. ", count: 20)
        let scored = try Scoring.perplexity(model: loaded.model, tokenizer: tokenizer, text: text, context: 32)
        let tokens = tokenizer.encodeWithSpecialTokens(text)
        #expect(scored.result == (try Scoring.perplexity(model: loaded.model, tokens: tokens, context: 32)))
        #expect(scored.tokens == tokens.count && scored.bytes == text.utf8.count)
        // tiny-llama adds no BOS: its first token ("The") is only context, and its bytes are not predicted.
        let firstBytes = tokenizer.decodeBytes([tokens[0]], skipSpecialTokens: false).count
        #expect(!tokenizer.addsBOS && firstBytes == 3 && scored.predictedBytes == scored.bytes - firstBytes)
        #expect(abs(scored.bitsPerByte - scored.result.nllSum / Double(scored.bytes - 3) / log(2)) < 1e-12)
        #expect(Scoring.defaultContext(for: loaded.model) == 128)
        let json = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(scored)) as? [String: Any]
        #expect(json?["predicted_bytes"] as? Int == scored.predictedBytes)
        #expect(try JSONDecoder().decode(ScoredText.self, from: try JSONEncoder().encode(scored)) == scored)
        #expect(throws: ShadowError.invalidArgument(name: "text", reason: "is empty")) {
            _ = try Scoring.perplexity(model: loaded.model, tokenizer: tokenizer, text: "")
        }
    }

    @Test("a predictor found in a directory by kind, refused when of another kind, and no file chosen among several")
    func predictorFromADirectory() throws {
        let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"))
        let fingerprint = try ModelFingerprint(loaded: loaded)
        let directory = TestScratch.path("library-predictors")
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func save(_ kind: PredictorKind, as name: String) throws {
            let predictor = try Predictor(configuration: PredictorConfiguration(kind: kind, headWidth: 8, neuronWidth: 8),
                                          criterion: "plainact", model: fingerprint, predictsNeurons: true, seed: 1)
            try PredictorFile.save(predictor, to: directory + "/" + name)
        }
        #expect(throws: ShadowError.invalidArgument(name: directory, reason: "holds no shadow.safetensors or shadow-*.safetensors; name the predictor file")) {
            _ = try PredictorFile.load(path: directory, kind: .shadow, for: fingerprint)
        }
        try save(.shadow, as: "shadow-plainact.safetensors")
        try save(.dejavuLookahead, as: "dejavu-lookahead.safetensors")
        #expect(try PredictorFile.load(path: directory, kind: .shadow, for: fingerprint).kind == .shadow)
        // dejavu-lookahead's file is not dejavu's.
        #expect(throws: ShadowError.invalidArgument(name: directory, reason: "holds no dejavu.safetensors or dejavu-*.safetensors; name the predictor file")) {
            _ = try PredictorFile.load(path: directory, kind: .dejavu, for: fingerprint)
        }
        // Whatever holds a predictor's name is chosen and then refused by name, never passed over
        // for a sibling: a dangling link at the exact name, or the one directory named like one.
        try FileManager.default.createSymbolicLink(atPath: directory + "/shadow.safetensors", withDestinationPath: directory + "/gone")
        #expect(try PredictorFile.path(of: .shadow, inDirectory: directory) == directory + "/shadow.safetensors")
        #expect(throws: ShadowError.self) { _ = try PredictorFile.load(path: directory, kind: .shadow, for: fingerprint) }
        try FileManager.default.removeItem(atPath: directory + "/shadow.safetensors")
        try FileManager.default.createDirectory(atPath: directory + "/dejavu-old.safetensors", withIntermediateDirectories: false)
        #expect(try PredictorFile.path(of: .dejavu, inDirectory: directory) == directory + "/dejavu-old.safetensors")
        #expect(throws: ShadowError.fileNotFound(path: directory + "/none")) { _ = try PredictorFile.path(of: .shadow, inDirectory: directory + "/none") }
        let file = directory + "/shadow-plainact.safetensors"
        #expect(throws: ShadowError.invalidArgument(name: file, reason: "is not a directory")) { _ = try PredictorFile.path(of: .shadow, inDirectory: file) }
        try save(.dejavuLookahead, as: "dejavu.safetensors")
        #expect(throws: ShadowError.invalidArgument(name: directory + "/dejavu.safetensors", reason: "is a dejavu-lookahead predictor, not dejavu")) {
            _ = try PredictorFile.load(path: directory, kind: .dejavu, for: fingerprint)
        }
        try save(.shadow, as: "shadow-fisher.safetensors")
        #expect(throws: ShadowError.invalidArgument(name: directory, reason: "holds several shadow predictors (shadow-fisher.safetensors, shadow-plainact.safetensors); name one")) {
            _ = try PredictorFile.load(path: directory, kind: .shadow, for: fingerprint)
        }
    }

    @Test("a predictor loaded for prediction only predicts, and saving it throws rather than stopping the program")
    func predictionOnlyPredictor() throws {
        let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"))
        let fingerprint = try ModelFingerprint(loaded: loaded)
        let predictor = try Predictor(configuration: PredictorConfiguration(kind: .shadow, headWidth: 8, neuronWidth: 8),
                                      criterion: "plainact", model: fingerprint, predictsNeurons: true, seed: 1)
        try predictor.roundWeightsToHalf()
        let path = TestScratch.path("library-f16-predictor.safetensors")
        try PredictorFile.save(predictor, to: path)
        // The library's default keeps the fp32 weights; the commands' prediction-only load gives them back.
        let full = try PredictorFile.load(path: path, kind: .shadow, for: fingerprint)
        #expect(!full.weightsReleased)
        try PredictorFile.save(full, to: TestScratch.path("library-f16-copy.safetensors"))
        let light = try PredictorFile.load(path: path, kind: .shadow, for: fingerprint, forPredictionOnly: true)
        #expect(light.weightsReleased)
        #expect(throws: ShadowError.self) { try light.roundWeightsToHalf() }
        let inMemory = try PredictorFile.load(path: path)
        inMemory.prepareForPrediction(releasingFullPrecision: true)
        #expect(inMemory.weightsReleased)
        _ = try Scoring.perplexity(model: loaded.model, tokens: [1, 2, 3, 4, 5], context: 8,
                                   sparsity: light.controller(settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5), shape: loaded.model.shape))
        #expect(throws: ShadowError.self) { try PredictorFile.save(light, to: TestScratch.path("library-f16-refused.safetensors")) }
        #expect(!FileManager.default.fileExists(atPath: TestScratch.path("library-f16-refused.safetensors")))
    }

    @Test("settings out of range are errors for the warnings and never crash the mask counts; a tokenizer of another model is named")
    func outOfRangeSettings() throws {
        let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"))
        let shape = loaded.model.shape
        for settings in [SparsitySettings(headSparsity: .infinity, neuronSparsity: 0), SparsitySettings(headSparsity: 1.5, neuronSparsity: 0),
                         SparsitySettings(headSparsity: 0.5, neuronSparsity: 0, policy: .hybrid, hybridFloor: .nan)] {
            #expect(throws: ShadowError.self) { _ = try settings.warnings(method: "shadow", selectsPerLayer: false, shape: shape) }
        }
        #expect(Masks.keptCount(units: 10, sparsity: .nan) == 10 && Masks.keptCount(units: 10, sparsity: .infinity) == 0)
        #expect(Masks.floorCount(units: 10, floor: -.infinity) == 0 && Masks.floorCount(units: 10, floor: 2) == 10)
        // The fixture's tokenizer (384 ids) on a model of 50: the message asks whether it is the model's own.
        let small = TinyModels.llama(vocab: 50)
        let error = #expect(throws: ShadowError.self) {
            _ = try Scoring.perplexity(model: small, tokenizer: try loaded.requireTokenizer(), text: "Hello there, how are you today?")
        }
        #expect(error?.description.contains("outside the model's vocabulary of 50: is it this model's own tokenizer?") == true, "\(String(describing: error))")
    }

    @Test("the library warns of sparsities that prune nothing, as the commands do, and fits calibration's lengths to a short context")
    func warningsAndFittedCalibration() throws {
        let loaded = try ModelLoader.load(path: ModelFixtures.path("tiny-llama"))   // 2 layers of 4 heads
        let shape = loaded.model.shape
        let settings = SparsitySettings(headSparsity: 0.1, neuronSparsity: 0, policy: .local)
        #expect(try settings.warnings(method: "shadow", selectsPerLayer: false, shape: shape)
                == ["head sparsity 0.1 prunes no head: 0.1 of each layer's 4 heads (selected per layer) rounds to 0, so shadow runs them all"])
        let global = SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5)
        #expect(try global.warnings(method: "shadow", selectsPerLayer: false, shape: shape).isEmpty)

        #expect(throws: ShadowError.self) { _ = try CalibrationOptions(fittedTo: 1) }
        let short = try CalibrationOptions(fittedTo: 64)
        #expect(short.maxTokens == 64 && short.textWindow == 64 && short.textContinuation == 16)
        #expect(try CalibrationOptions(fittedTo: 8192) == CalibrationOptions())
        let fitted = try CalibrationOptions(fittedTo: shape.maxContext)
        let path = TestScratch.path("library-calibration.txt")
        try String(repeating: "A sentence of plain text for windows. ", count: 200).write(toFile: path, atomically: true, encoding: .utf8)
        let samples = try CalibrationSet.samples(sources: [try CalibrationSource.parse("text:" + path)], count: 4, options: fitted,
                                                 tokenizer: try loaded.requireTokenizer())
        #expect(samples.count == 4 && samples.allSatisfy { $0.tokens.count <= shape.maxContext })
        // Text windows are checked only when a text source is read: task samples do not use them.
        let piqa = TestScratch.path("library-calibration-piqa.jsonl")
        try (0..<3).map { #"{"goal": "Open jar \#($0)", "sol1": "Twist the lid.", "sol2": "Eat it.", "label": 0}"# }
            .joined(separator: "\n").write(toFile: piqa, atomically: true, encoding: .utf8)
        let odd = CalibrationOptions(shots: 0, textWindow: 8, textContinuation: 32)
        #expect(try CalibrationSet.samples(sources: [try CalibrationSource.parse("piqa:" + piqa)], count: 3, options: odd,
                                           tokenizer: try loaded.requireTokenizer()).count == 3)
        #expect(throws: ShadowError.self) {
            _ = try CalibrationSet.samples(sources: [try CalibrationSource.parse("text:" + path)], count: 1, options: odd,
                                           tokenizer: try loaded.requireTokenizer())
        }
    }
}
