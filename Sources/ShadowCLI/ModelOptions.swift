import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels
import ShadowTokenizers

/// Options every command that loads a model shares.
enum ModelOptions {
    /// Decode-bound commands (generate, perplexity, info): f16, which halves the bytes every
    /// decoded token reads.
    static var options: [Option] { options(weights: .f16) }

    /// Prefill-bound commands (eval, sweep: many short calls, where widening 16-bit weights for
    /// BLAS on every call costs more than it saves) and gradient commands (scores, calibrate:
    /// scores should not carry 16-bit rounding) default to f32.
    static var prefillOptions: [Option] { options(weights: .f32) }

    static var modelOption: Option {
        .value("model", short: "m", "path",
               help: "A .gguf file or a Hugging Face model directory (config.json + *.safetensors + tokenizer.json).",
               defaultDescription: DefaultModel.pathIfPresent.map { _ in "the fetched SmolLM2-135M-Instruct" })
    }

    static let bf16Products = "bf16-dot keeps bf16 weights and rounds each projection's input to bf16 too, so projections run as bf16 dot products with fp32 sums: a sweep 1.56× faster on a Zen 4 with AVX512-BF16 (elsewhere the same products at the speed of bf16), results within bf16 rounding of f32. Gradients (scores, calibrate, the oracle's masks) do not round the inputs: there bf16-dot is bf16."

    static let eightBit = "q8 keeps 8-bit weights with a scale per block of 32 values of a row and a factor per column: 1.06 bytes per weight, so decode reads about half of f16's bytes and runs about 1.6× faster on 2 cores of a Zen 3 (prefills and gradients widen them), at about 0.3% more perplexity on SmolLM2; matrices whose rows are not whole blocks of 32 stay f16, and those with values beyond fp16's range bf16 (reports name what was kept)."

    static func options(weights: WeightDType) -> [Option] {
        let why = weights == .f16
            ? "f16 halves the bytes decode reads per token, converts in hardware and keeps NLL within 0.5% of f32 (q8, below, decodes faster at a little more loss); matrices beyond fp16's range fall back to bf16."
            : "f32 is the default here, so results match the fp32 reference; 16-bit weights run prefills about as fast, but are widened for BLAS in gradients and, on CPUs without AVX-512, in prefills over 96 tokens."
        return [
            modelOption,
            .value("threads", short: "t", "n", help: "Threads for the kernels.", default: String(Threads.defaultCount)),
            .value("weights", "dtype", help: "How weights are kept in memory. " + why + " " + bf16Products + " " + eightBit,
                   default: weights.rawValue, allowed: WeightDType.allCases.map(\.rawValue)),
            longContextOption,
        ]
    }

    static let longContextOption = Option.flag("long-context", help: "LongRoPE models (Phi-3-128k, Phi-3.5-mini, Phi-4-mini): rotate every position with the long factors, so the context reaches max_position_embeddings instead of ending at the original one, as llama.cpp runs a context set past it (transformers uses the long factors only for a pass longer than the original context).")

    /// `loaded` with LongRoPE's long factors when --long-context is given (an error for a model
    /// without them), else as it is.
    static func applyingLongContext(_ arguments: ParsedArguments, to loaded: LoadedModel, path: String) throws -> LoadedModel {
        guard arguments.flag("long-context") else { return loaded }
        guard let long = loaded.withLongRopeFactors() else {
            throw ShadowError.invalidArgument(
                name: "--long-context",
                reason: "\(path) has no LongRoPE long factors reaching past its context of \(loaded.model.shape.maxContext)")
        }
        return long
    }

    static func modelPath(_ arguments: ParsedArguments) throws -> String {
        if arguments.has("model") {
            let path = try arguments.required("model")
            // Else the loader's error would name the empty path: ": no such file".
            guard !path.isEmpty else { throw ShadowError.invalidArgument(name: "--model", reason: "the path is empty") }
            return path
        }
        if let path = DefaultModel.pathIfPresent { return path }
        throw ShadowError.invalidArgument(
            name: "--model",
            reason: "is required: no default model at \(DefaultModel.path) (run scripts/setup.sh to fetch SmolLM2-135M-Instruct)")
    }

    static func load(_ arguments: ParsedArguments, console: Console) throws -> LoadedModel {
        Threads.set(try arguments.int("threads", range: 1...256) ?? Threads.defaultCount)
        let path = try modelPath(arguments)
        let start = Date()
        let weights = WeightDType(rawValue: try arguments.required("weights"))!
        let loaded = try applyingLongContext(arguments, to: try ModelLoader.load(path: path, weights: weights), path: path)
        if let tokenizer = loaded.tokenizer { warn(about: tokenizer, console: console) }
        warn(asked: weights, kept: loaded.model.weightDType, path: path, console: console)
        if arguments.flag("verbose") {
            console.printError(String(format: "loaded %@ in %.2f s", path, Date().timeIntervalSince(start)))
        }
        return loaded
    }

    /// A model whose every matrix fell back from the dtype asked for (reports name the one kept).
    static func warn(asked: WeightDType, kept: WeightDType, path: String, console: Console) {
        if let why = asked.fallbackReason(stored: kept) {
            console.printError("warning: --weights \(asked.rawValue): \(path) is kept as \(kept.rawValue): \(why)")
        }
    }

    /// What the tokenizer's loading chose that may make its ids differ from the reference's (an
    /// unknown GGUF pre-tokenizer read with the GPT-2 split), on stderr.
    static func warn(about tokenizer: any Tokenizer, console: Console) {
        for warning in tokenizer.warnings { console.printError("warning: \(warning)") }   // each names its file
    }

    /// An input as outputs must not replace it: the path, and when it is a directory (a Hugging
    /// Face model, a directory of predictors) the files of the kinds loading reads there (weights,
    /// JSON configs and tokenizers, templates, vocabularies), not others a user keeps beside them.
    static func filesOf(_ option: String, _ path: String) -> [(option: String, path: String)] {
        guard !path.isEmpty, (try? fileKind(atPath: path)) == .directory,
              let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return [(option, path)] }
        let read = [".json", ".safetensors", ".gguf", ".model", ".jinja", ".txt", ".bin", ".tiktoken"]
        return [(option, path)] + names.sorted().filter { name in read.contains { name.hasSuffix($0) } }
            .map { (option, (path as NSString).appendingPathComponent($0)) }
    }

    /// Throws unless `path` names a file: "no such file" when nothing is there, the system's reason
    /// when it cannot tell (a symbolic link loop), and a directory is said to be one (in words
    /// about the option, before any reading).
    static func requireFile(_ path: String, option: String) throws {
        guard !path.isEmpty else { throw ShadowError.invalidArgument(name: "--\(option)", reason: "the path is empty") }
        if try existingFileKind(atPath: path) == .directory {
            throw ShadowError.invalidArgument(name: "--\(option)", reason: "\(path) is a directory, not a file")
        }
    }

    /// Where `text(_:)` read its text, for messages: "--text-file PATH", "--text-file - (standard
    /// input)" or "--text".
    static func textSource(_ arguments: ParsedArguments, textOption: String = "text", fileOption: String = "text-file") -> String {
        arguments.string(fileOption).map { "--\(fileOption) \($0 == "-" ? "- (standard input)" : $0)" } ?? "--\(textOption)"
    }

    /// Reads `--text` or `--text-file` (exactly one).
    static func text(_ arguments: ParsedArguments, console: Console, textOption: String = "text", fileOption: String = "text-file") throws -> String {
        switch (arguments.string(textOption), arguments.string(fileOption)) {
        case (let text?, nil):
            return text
        case (nil, let file?):
            // "-" is standard input, as for most Unix tools.
            let bytes: [UInt8]
            if file == "-" {
                bytes = try console.readAll()
            } else {
                try requireFile(file, option: fileOption)
                bytes = [UInt8](try readWholeFile(file, acceptingStreams: true))
            }
            // Byte for byte: Foundation's String(data:encoding:) would drop a leading U+FEFF.
            return try utf8Text(bytes, path: file == "-" ? "standard input" : file)
        case (nil, nil):
            throw ShadowError.invalidArgument(name: "--\(textOption)", reason: "give --\(textOption) or --\(fileOption)")
        default:
            throw ShadowError.invalidArgument(name: "--\(textOption)", reason: "give only one of --\(textOption) and --\(fileOption)")
        }
    }
}

/// Output directories of a sweep or a pipeline run (calibrate's trace directories have names of
/// their own, and TraceWriter checks what is there).
enum OutputDirectory {
    /// Refuses an existing directory that holds files and none of this command's (`owns` names
    /// them): a model's or a data directory given as --out by mistake would fill with ours.
    /// Hidden files (".DS_Store", our own partial writes) do not count, nor the command's own
    /// `inputs` kept there (a --text beside the run).
    static func refuseForeign(_ path: String, option: String = "--out", holding what: String, inputs: [String] = [],
                              owns: (String) -> Bool) throws {
        guard (try? fileKind(atPath: path)) == .directory,
              let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return }
        let read = Set(inputs.filter { !$0.isEmpty }.map(AtomicFile.canonical))
        let visible = names.filter { name in
            !name.hasPrefix(".") && !read.contains(AtomicFile.canonical((path as NSString).appendingPathComponent(name)))
        }.sorted()
        guard !visible.isEmpty, !visible.contains(where: owns) else { return }
        let shown = visible.prefix(3).joined(separator: ", ") + (visible.count > 3 ? ", …" : "")
        throw ShadowError.invalidArgument(name: option, reason: "\(path) holds other files (\(shown)) and no \(what); give a new or empty directory")
    }
}
