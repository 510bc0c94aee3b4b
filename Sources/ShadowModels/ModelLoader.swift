import Foundation
import ShadowFormats
import ShadowKernels
import ShadowTokenizers

/// A model ready to run: the network, its tokenizer and where it came from.
public struct LoadedModel: @unchecked Sendable {
    public enum Format: String, Sendable, Codable { case gguf, huggingFace = "huggingface" }

    public let model: any CausalLanguageModel
    public let tokenizer: (any Tokenizer)?
    public let path: String
    public let format: Format
    /// Tokens that end a generation (EOS and, for chat models, end-of-turn tokens).
    public let stopTokens: Set<Int>
    /// The checkpoint's own model_type when only its text model runs (a multimodal `gemma3`).
    public var textModelOf: String? = nil

    /// The model rotated with LongRoPE's long factors, its context reaching
    /// max_position_embeddings (`LlamaModel.withLongRopeFactors`); nil for a model without them.
    public func withLongRopeFactors() -> LoadedModel? {
        guard let long = (model as? LlamaModel)?.withLongRopeFactors() else { return nil }
        return LoadedModel(model: long, tokenizer: tokenizer, path: path, format: format, stopTokens: stopTokens, textModelOf: textModelOf)
    }

    /// The tokenizer, or an error naming the checkpoint when it has none.
    public func requireTokenizer() throws -> any Tokenizer {
        guard let tokenizer else { throw ModelLoader.noTokenizer(path) }
        return tokenizer
    }

    /// The model with its backward pass, or an error naming the checkpoint and what needed it
    /// (`what`: "calibrate", "--method oracle", …) when its architecture has none.
    public func requireDifferentiable(for what: String) throws -> any DifferentiableLanguageModel {
        guard let differentiable = model as? any DifferentiableLanguageModel else {
            throw ShadowError.failed("\(path): \(what) needs a backward pass, which the \(model.architecture) architecture does not have")
        }
        return differentiable
    }
}

/// The table of contents of supported architectures: a name in the checkpoint → the file that
/// builds it. Adding an architecture is one file and one line here.
public enum ArchitectureRegistry {
    typealias HFLoader = @Sendable (_ configData: Data, _ configPath: String, _ table: TensorTable) throws -> any CausalLanguageModel

    static let huggingFace: [String: HFLoader] = [
        "llama": loadLlama, "mistral": loadLlama, "qwen2": loadLlama, "qwen3": loadLlama, "smollm": loadLlama, "smollm3": loadLlama,
        "phi3": loadLlama, "gemma2": loadLlama, "gemma3_text": loadLlama, "gemma3": loadGemma3Multimodal,
        "opt": loadOPT,
    ]

    /// GGUF `general.architecture` values, and whether llama.cpp permuted their Q/K rows.
    static let gguf: [String: (modelType: String, permutedQK: Bool)] = [
        "llama": ("llama", true),
        "qwen2": ("qwen2", false),
        "qwen3": ("qwen3", false),
        "smollm3": ("smollm3", true),
        "phi3": ("phi3", false),
        "gemma2": ("gemma2", false),
        "gemma3": ("gemma3_text", false),
    ]

    public static var huggingFaceNames: [String] { huggingFace.keys.sorted() }
    public static var ggufNames: [String] { gguf.keys.sorted() }

    private static func loadLlama(_ data: Data, _ path: String, _ table: TensorTable) throws -> any CausalLanguageModel {
        let config = try ConfigDecoding.decode(LlamaConfig.self, from: data, path: path)
        try config.validate(path: path)
        return try LlamaModel.load(huggingFace: table, config: config)
    }

    private static func loadGemma3Multimodal(_ data: Data, _ path: String, _ table: TensorTable) throws -> any CausalLanguageModel {
        let config = try Gemma3MultimodalConfig.read(data, path: path)
        try Gemma3MultimodalConfig.readTextModel(from: table)
        return try LlamaModel.load(huggingFace: table, config: config)
    }

    private static func loadOPT(_ data: Data, _ path: String, _ table: TensorTable) throws -> any CausalLanguageModel {
        let config = try ConfigDecoding.decode(OPTConfig.self, from: data, path: path)
        try config.validate(path: path)
        return try OPTModel.load(huggingFace: table, config: config)
    }
}

public enum ModelLoader {
    /// Loads a `.gguf` file or a Hugging Face model directory.
    /// `weights` is how matrices are kept in memory (fp32, or bf16/fp16 widened in registers).
    public static func load(path: String, weights: WeightDType = .f32) throws -> LoadedModel {
        let loaded = try isDirectory(path) ? try loadHuggingFace(directory: path, weights: weights)
                                           : try loadGGUF(path: path, weights: weights)
        ProcessMemory.releaseFreeHeap()
        return loaded
    }

    /// Whether `path` is a directory (a Hugging Face checkpoint) rather than a file; throws when
    /// nothing is there or stat(2) fails (a symbolic link loop), naming the reason.
    static func isDirectory(_ path: String) throws -> Bool {
        try existingFileKind(atPath: path) == .directory
    }

    // MARK: Hugging Face directories

    static func loadHuggingFace(directory: String, weights: WeightDType) throws -> LoadedModel {
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        let configData = try readWholeFile(configPath)
        struct Header: Decodable {
            let modelType: String
            enum CodingKeys: String, CodingKey { case modelType = "model_type" }
        }
        let header = try ConfigDecoding.decode(Header.self, from: configData, path: configPath)
        guard let loader = ArchitectureRegistry.huggingFace[header.modelType] else {
            throw ShadowError.unknownArchitecture(path: configPath, name: header.modelType, known: ArchitectureRegistry.huggingFaceNames)
        }
        let table = TensorTable(try SafetensorsCollection(directory: directory), weightDType: weights)
        let model = try loader(configData, configPath, table)

        let tokenizer = try huggingFaceTokenizer(directory: directory)
        // Every id the tokenizer can produce (vocabulary, added and template tokens, BOS/EOS)
        // indexes the embedding: one past its rows would read beyond it.
        if let tokenizer, tokenizer.vocabularySize > model.shape.vocabularySize {
            let id = tokenizer.vocabularySize - 1
            throw ShadowError.badJSON(
                path: (directory as NSString).appendingPathComponent("tokenizer.json"), key: nil,
                reason: "token id \(id)\(tokenizer.tokenString(id).map { " (\"\($0)\")" } ?? "") is outside the model's vocabulary of \(model.shape.vocabularySize) (config.json \(header.modelType == "gemma3" ? "text_config." : "")vocab_size)")
        }
        var stops = Set<Int>()
        if let llama = model as? LlamaModel { stops.formUnion(llama.config.eosTokenIDs) }
        if let opt = model as? OPTModel { stops.insert(opt.config.eosTokenID) }
        if let eos = tokenizer?.eosTokenID { stops.insert(eos) }
        return LoadedModel(model: model, tokenizer: tokenizer, path: directory, format: .huggingFace, stopTokens: stops,
                           textModelOf: header.modelType == "gemma3" ? header.modelType : nil)
    }

    // MARK: GGUF

    static func loadGGUF(path: String, weights: WeightDType) throws -> LoadedModel {
        let file = try GGUFFile(path: path)
        let arch = try file.string("general.architecture")
        guard let entry = ArchitectureRegistry.gguf[arch] else {
            throw ShadowError.unknownArchitecture(path: path, name: arch, known: ArchitectureRegistry.ggufNames)
        }
        let tokens = try file.stringArrayIfPresent("tokenizer.ggml.tokens")
        let embeddingShape = file.tensorInfos["token_embd.weight"]?.shape
        // Sizes must be positive integers: a zero head_count_kv once reached `heads % kvHeads`
        // (found by fuzzing). The Hugging Face path checks the same in ConfigDecoding.
        func size(_ key: String) throws -> Int? {
            guard let n = try file.intIfPresent(key) else { return nil }
            guard n > 0 else { throw ShadowError.corruptFile(path: path, reason: "key \"\(key)\": must be positive, found \(n)") }
            return n
        }
        func requiredSize(_ key: String) throws -> Int {
            guard let n = try size(key) else { throw ShadowError.corruptFile(path: path, reason: "key \"\(key)\": missing") }
            return n
        }
        let hidden = try requiredSize("\(arch).embedding_length")
        let heads = try requiredSize("\(arch).attention.head_count")
        let layers = try requiredSize("\(arch).block_count")
        let keyLength = try size("\(arch).attention.key_length")
        let vocabSize = try size("\(arch).vocab_size")
        let table = TensorTable(file, weightDType: weights)
        // Before the per-layer lists below are built for it.
        try table.checkLayerCount(layers, key: "\(arch).block_count")
        // llama.cpp's converter writes key_length whenever heads are not hidden / heads wide.
        if keyLength == nil, hidden % heads != 0 {
            throw ShadowError.corruptFile(path: path, reason: "key \"\(arch).attention.head_count\": \(heads) does not divide \(arch).embedding_length \(hidden), and no \(arch).attention.key_length gives the head width")
        }
        let headDim = keyLength ?? hidden / heads
        let context = try size("\(arch).context_length") ?? 2048
        // A sliding window applies to every layer (gemma2: every other one, gemma3: five of every six). llama.cpp reads a
        // window of 0 as none, and ignores phi3's (its sliding-window attention is turned off for Phi-3).
        let window = arch == "phi3" ? nil : try file.intIfPresent("\(arch).attention.sliding_window").flatMap { $0 > 0 ? $0 : nil }
        let rope = try ggufRope(file, table, arch: arch, headDim: headDim, context: context, permutedQK: entry.permutedQK)
        // LongRoPE's context ends where its long factors would take over (see LlamaConfig).
        var longRopeContext: Int? = nil
        if case .longRope(let longRope) = rope.scaling, longRope.extendsContext { longRopeContext = longRope.originalContext }
        guard let vocab = vocabSize ?? tokens?.count ?? embeddingShape?.first else {
            throw ShadowError.corruptFile(path: path, reason: "key \"\(arch).vocab_size\": missing, and no tokenizer.ggml.tokens or token_embd.weight to count")
        }
        var config = LlamaConfig(
            modelType: entry.modelType,
            hiddenSize: hidden,
            intermediateSize: try requiredSize("\(arch).feed_forward_length"),
            layers: layers,
            heads: heads,
            kvHeads: try size("\(arch).attention.head_count_kv") ?? heads,
            headDim: headDim,
            vocabularySize: vocab,
            maxContext: longRopeContext ?? context,
            slidingWindow: window.flatMap { $0 < context ? $0 : nil },   // in every layer
            rmsNormEps: Float(try file.floatIfPresent("\(arch).attention.layer_norm_rms_epsilon") ?? 1e-5),
            rope: rope,
            tieWordEmbeddings: file.tensorInfos["output.weight"] == nil,
            attentionBias: file.tensorInfos["blk.0.attn_q.bias"] != nil,
            outputBias: file.tensorInfos["blk.0.attn_output.bias"] != nil,
            mlpBias: file.tensorInfos["blk.0.ffn_gate.bias"] != nil,
            queryKeyNorm: arch == "qwen3",
            // llama.cpp's SmolLM3 leaves RoPE out of every 4th layer.
            ropeLayers: arch == "smollm3" ? (0..<layers).map { ($0 + 1) % 4 != 0 } : nil,
            bosTokenID: try file.intIfPresent("tokenizer.ggml.bos_token_id"),
            eosTokenIDs: (try file.intIfPresent("tokenizer.ggml.eos_token_id")).map { [$0] } ?? [])
        if arch == "gemma2" || arch == "gemma3" { try config.readGemmaGGUF(file, arch: arch) }
        // Errors name the GGUF keys the values came from, not config.json's.
        try config.validate(path: path, keys: [
            "hidden_size": "\(arch).embedding_length", "intermediate_size": "\(arch).feed_forward_length",
            "num_hidden_layers": "\(arch).block_count", "num_attention_heads": "\(arch).attention.head_count",
            "num_key_value_heads": "\(arch).attention.head_count_kv",
            "head_dim": keyLength == nil ? "\(arch).embedding_length" : "\(arch).attention.key_length",
            "vocab_size": vocabSize != nil ? "\(arch).vocab_size" : tokens != nil ? "tokenizer.ggml.tokens" : "token_embd.weight (tensor rows)",
            "max_position_embeddings": "\(arch).context_length",
            "bos_token_id": "tokenizer.ggml.bos_token_id", "eos_token_id": "tokenizer.ggml.eos_token_id",
            "rms_norm_eps": "\(arch).attention.layer_norm_rms_epsilon", "rope_theta": "\(arch).rope.freq_base",
        ])
        let model = try LlamaModel.load(gguf: table, config: config, permutedQK: entry.permutedQK)

        let tokenizer = try TokenizerLoader.fromGGUF(file, tokens: tokens)
        // As for Hugging Face directories: no token may lie past the embedding's rows.
        if let tokenizer, tokenizer.vocabularySize > config.vocabularySize {
            throw ShadowError.corruptFile(path: path, reason: "key \"tokenizer.ggml.tokens\": token id \(tokenizer.vocabularySize - 1) is outside the model's vocabulary of \(config.vocabularySize) (token_embd.weight rows)")
        }
        var stops = Set(config.eosTokenIDs)
        if let eot = try file.intIfPresent("tokenizer.ggml.eot_token_id") {
            // As the BOS and EOS ids are: a stop id no token has would never stop anything.
            guard (0..<config.vocabularySize).contains(eot) else {
                throw ShadowError.corruptFile(path: path, reason: "key \"tokenizer.ggml.eot_token_id\": \(eot) is outside the model's vocabulary of \(config.vocabularySize) tokens")
            }
            stops.insert(eot)
        }
        return LoadedModel(model: model, tokenizer: tokenizer, path: path, format: .gguf, stopTokens: stops)
    }

    /// llama.cpp's RoPE settings: θ (`rope.freq_base`); how many of a head's dimensions rotate
    /// (`rope.dimension_count`); linear scaling — positions divided by `rope.scaling.factor`, or
    /// by the older `rope.scale_linear`, whatever `rope.scaling.type` says as long as it is none or
    /// linear (its default), 0 and 1 meaning none, as llama.cpp reads them —; Llama 3's scaling,
    /// which its converter stores as one divisor per frequency in the tensor rope_freqs.weight;
    /// and Phi-3's LongRoPE (rope_factors_short.weight and rope_factors_long.weight, with
    /// `rope.scaling.attn_factor` and `rope.scaling.original_context_length`). Other scalings
    /// (YaRN, …) are refused rather than run as if absent.
    /// Partial rotary embeddings are refused where llama.cpp permuted the Q/K rows (llama,
    /// smollm3): it then rotates the pairs (i, i + d_h/2) of the first r/2, not (i, i + r/2).
    static func ggufRope(_ file: GGUFFile, _ table: TensorTable, arch: String, headDim: Int, context: Int,
                         permutedQK: Bool = false) throws -> RopeConfig {
        let theta = Double(try file.floatIfPresent("\(arch).rope.freq_base") ?? 10000)
        let rotaryKey = "\(arch).rope.dimension_count"
        var rotaryDimensions: Int? = nil
        // (An odd head width is reported by LlamaConfig.validate, naming where it came from.)
        if let rotary = try file.intIfPresent(rotaryKey), rotary != headDim, headDim % 2 == 0 {
            guard rotary >= 2 && rotary < headDim && rotary % 2 == 0 else {
                throw ShadowError.corruptFile(path: file.path, reason: "key \"\(rotaryKey)\": \(rotary) rotary dimensions in heads of \(headDim); expected an even number from 2 to \(headDim)")
            }
            guard !permutedQK else {
                throw ShadowError.corruptFile(path: file.path, reason: "key \"\(rotaryKey)\": \(rotary) rotary dimensions in heads of \(headDim); partial rotary embeddings are not supported in \(arch) files")
            }
            rotaryDimensions = rotary
        }
        let pairs = (rotaryDimensions ?? headDim) / 2
        func positiveFactors(_ name: String) throws -> [Float]? {
            let factors = try table.optionalVector(name, count: pairs)
            if let factors, let bad = factors.first(where: { !($0 > 0 && $0.isFinite) }) {
                throw ShadowError.badTensor(path: file.path, tensor: name, reason: "factors must be positive numbers, found \(bad)")
            }
            return factors
        }
        let short = try positiveFactors("rope_factors_short.weight"), long = try positiveFactors("rope_factors_long.weight")
        if short != nil || long != nil {
            guard let short else {
                throw ShadowError.badTensor(path: file.path, tensor: "rope_factors_short.weight", reason: "missing (rope_factors_long.weight is there)")
            }
            guard let long else {
                throw ShadowError.badTensor(path: file.path, tensor: "rope_factors_long.weight", reason: "missing (rope_factors_short.weight is there)")
            }
            // As llama.cpp reads it: the trained context when the key is absent.
            let originalKey = "\(arch).rope.scaling.original_context_length"
            let original = try file.intIfPresent(originalKey) ?? context
            guard original > 0 else {
                throw ShadowError.corruptFile(path: file.path, reason: "key \"\(originalKey)\": must be positive, got \(original)")
            }
            let attentionKey = "\(arch).rope.scaling.attn_factor"
            let attention = try file.floatIfPresent(attentionKey) ?? 1
            guard attention > 0 && attention.isFinite else {
                throw ShadowError.corruptFile(path: file.path, reason: "key \"\(attentionKey)\": must be a positive number, got \(attention)")
            }
            let longRope = RopeConfig.LongRope(shortFactors: short, longFactors: long, attentionFactor: Double(attention),
                                               originalContext: original, declaredContext: context)
            return RopeConfig(theta: theta, scaling: .longRope(longRope), rotaryDimensions: rotaryDimensions)
        }
        let typeKey = "\(arch).rope.scaling.type"
        let type = try file.stringIfPresent(typeKey) ?? "linear"
        guard type == "none" || type == "linear" else {
            throw ShadowError.corruptFile(path: file.path, reason: "key \"\(typeKey)\": RoPE scaling \"\(type)\" is not supported (none, linear, Llama 3's rope_freqs.weight or Phi-3's LongRoPE factors)")
        }
        var factorKey = "\(arch).rope.scaling.factor"
        if try file.floatIfPresent(factorKey) == nil { factorKey = "\(arch).rope.scale_linear" }
        let factor = try file.floatIfPresent(factorKey) ?? 0
        guard factor >= 0 && factor.isFinite else {
            throw ShadowError.corruptFile(path: file.path, reason: "key \"\(factorKey)\": must be a finite number ≥ 0 (0: no scaling), got \(factor)")
        }
        let factors = try positiveFactors("rope_freqs.weight")
        switch (factor == 0 || factor == 1 ? nil : factor, factors) {
        case (nil, nil): return RopeConfig(theta: theta, rotaryDimensions: rotaryDimensions)
        case (nil, let factors?): return RopeConfig(theta: theta, scaling: .frequencyFactors(factors), rotaryDimensions: rotaryDimensions)
        case (let factor?, nil): return RopeConfig(theta: theta, scaling: .linear(factor: Double(factor)), rotaryDimensions: rotaryDimensions)
        case (let factor?, _?):
            throw ShadowError.corruptFile(path: file.path, reason: "key \"\(factorKey)\": linear scaling (\(factor)) beside rope_freqs.weight is not supported")
        }
    }

    /// A Hugging Face directory's tokenizer.json; nil when it has none.
    static func huggingFaceTokenizer(directory: String) throws -> (any Tokenizer)? {
        let path = (directory as NSString).appendingPathComponent("tokenizer.json")
        guard try fileKind(atPath: path) != nil else { return nil }
        return try TokenizerLoader.load(tokenizerJSON: URL(fileURLWithPath: path))
    }

    /// Only the tokenizer of a `.gguf` file or a Hugging Face directory: no weight is read, so
    /// `tokenize` costs milliseconds and no memory for the model.
    public static func loadTokenizer(path: String) throws -> any Tokenizer {
        let tokenizer = try isDirectory(path) ? try huggingFaceTokenizer(directory: path)
                                              : try TokenizerLoader.fromGGUF(try GGUFFile(path: path))
        guard let tokenizer else { throw noTokenizer(path) }
        return tokenizer
    }

    static func noTokenizer(_ path: String) -> ShadowError {
        .failed("\(path): no tokenizer (no tokenizer.json, no tokenizer.ggml.tokens)")
    }
}
