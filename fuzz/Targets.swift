// libFuzzer entry point for every reader of files that come from strangers. Built and run by
// fuzz/run.sh, which sets SHADOW_FUZZ_TARGET to one of the names in `runTarget` below.
//
// A target passes an input when the reader either succeeds or throws `ShadowError`; a trap, any
// other error, a hang or a runaway allocation is a finding. `fatalError` turns "threw something
// else" into a crash so libFuzzer keeps the input.

import Foundation
import ShadowFormats
import ShadowKernels
@testable import ShadowModels
import ShadowSparsity
@testable import ShadowTasks
@testable import ShadowTokenizers

#if canImport(Glibc)
import Glibc
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        try runTarget(Harness.target, bytes)
    } catch let error as ShadowError {
        // Rejected with our own error: the behaviour we want. SHADOW_FUZZ_VERBOSE=1 shows why, to
        // check that the seeds are accepted.
        if Harness.verbose { print("\(Harness.target): \(error)") }
    } catch {
        fatalError("\(Harness.target): threw \(type(of: error)), not ShadowError: \(error)")
    }
    return 0
}

enum Harness {
    static let target: String = {
        guard let name = ProcessInfo.processInfo.environment["SHADOW_FUZZ_TARGET"] else {
            fatalError("set SHADOW_FUZZ_TARGET (fuzz/run.sh does)")
        }
        return name
    }()

    static let verbose = ProcessInfo.processInfo.environment["SHADOW_FUZZ_VERBOSE"] != nil

    /// One scratch directory per process: the readers take paths, so each input is written to a file.
    static let directory: String = {
        // /dev/shm when there is one: writing each input to a disk-backed /tmp costs more than parsing it.
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory()
        let path = base + "shadow-fuzz-\(getpid())"
        mkdir(path, 0o700)
        atexit { try? FileManager.default.removeItem(atPath: Harness.directory) }
        return path
    }()

    /// Writes `bytes` to `name` in the scratch directory with plain POSIX calls (Foundation's
    /// atomic writes would cost more than most readers).
    static func file(_ name: String, _ bytes: some Collection<UInt8>) -> String {
        let path = directory + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0, "cannot write \(path)")
        let written = Array(bytes).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        precondition(written == bytes.count, "short write to \(path)")
        close(fd)
        return path
    }

    /// A directory holding `manifest` as its traces' manifest.json.
    static func traceDirectory(manifest: [UInt8]) -> String {
        let traces = directory + "/traces"
        mkdir(traces, 0o700)
        _ = file("traces/manifest.json", manifest)
        return traces
    }

    /// The shape of Tests/ShadowModelsTests/Fixtures/tiny-llama, whose traces seed trace_chunk.
    static let tinyLlamaShape = TransformerShape(layers: 2, hiddenSize: 64, heads: 4, kvHeads: 2, headDim: 16, ffnSize: 128,
                                                 vocabularySize: 384, maxContext: 128)

    /// Splits an input at its first NUL: a main file and an optional second one (a labels file, a
    /// tokenizer_config.json). Neither format has a use for NUL bytes.
    static func split(_ bytes: [UInt8]) -> ([UInt8], [UInt8]?) {
        guard let nul = bytes.firstIndex(of: 0) else { return (bytes, nil) }
        return (Array(bytes[..<nul]), Array(bytes[(nul + 1)...]))
    }

    /// The tokenizer fixtures of the tests, loaded once: the `tokenize` target encodes arbitrary
    /// text with each of them.
    static let fixtures: [any Tokenizer] = {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Tests/ShadowTokenizersTests/Fixtures").standardized
        return ["gpt2", "smollm", "opt", "roberta", "llama3", "llama2", "metaspace", "llama2-added"].map { name in
            do {
                return try TokenizerLoader.load(tokenizerJSON: directory.appendingPathComponent("\(name).tokenizer.json"))
            } catch {
                fatalError("cannot load tokenizer fixture \(name): \(error)")
            }
        }
    }()
}

func runTarget(_ target: String, _ bytes: [UInt8]) throws {
    switch target {
    case "gguf": try fuzzGGUF(bytes)
    case "gguf_model": try fuzzGGUFModel(bytes)
    case "safetensors": try readAllTensors(SafetensorsFile(path: Harness.file("input.safetensors", bytes)))
    case "config": try fuzzConfig(bytes)
    case "tokenizer_json": try fuzzTokenizerJSON(bytes)
    case "tokenize": fuzzTokenize(bytes)
    case "piqa":
        let (items, labels) = Harness.split(bytes)
        _ = try TaskFile.multipleChoice(task: .piqa, path: Harness.file("piqa.jsonl", items),
                                        labels: labels.map { Harness.file("piqa-labels.lst", $0) })
    case "hellaswag": _ = try TaskFile.multipleChoice(task: .hellaswag, path: Harness.file("hellaswag.txt", bytes))
    case "copa": _ = try TaskFile.multipleChoice(task: .copa, path: Harness.file("copa.xml", bytes))
    case "ai2":
        // ARC-Easy, ARC-Challenge and OpenBookQA share one reader.
        let path = Harness.file("ai2.jsonl", bytes)
        for task in [TaskName.arcEasy, .arcChallenge, .openbookqa] {
            do { _ = try TaskFile.multipleChoice(task: task, path: path) } catch is ShadowError {}
        }
    case "winogrande":
        let (items, labels) = Harness.split(bytes)
        _ = try TaskFile.multipleChoice(task: .winogrande, path: Harness.file("winogrande.jsonl", items),
                                        labels: labels.map { Harness.file("winogrande-labels.lst", $0) })
    case "rte": _ = try TaskFile.multipleChoice(task: .rte, path: Harness.file("rte.tsv", bytes))
    case "boolq": _ = try TaskFile.multipleChoice(task: .boolq, path: Harness.file("boolq.jsonl", bytes))
    case "lambada": _ = try TaskFile.lambada(path: Harness.file("lambada.jsonl", bytes))
    case "wikitext": _ = try TaskFile.wikitext(path: Harness.file("wikitext.txt", bytes))
    case "python_text": fuzzPythonText(bytes)
    case "predictor": _ = try PredictorFile.load(path: Harness.file("predictor.safetensors", bytes))
    case "trace_manifest": _ = try TraceManifest.load(directory: Harness.traceDirectory(manifest: bytes))
    case "trace_chunk":
        // A chunk of the tiny-llama fixture's traces (the seeds' model): its shape and criteria.
        _ = try TraceChunk.read(path: Harness.file("chunk.safetensors", bytes), criteria: ["plainact", "l2_norm"],
                                shape: Harness.tinyLlamaShape)
    default: fatalError("unknown fuzz target \(target)")
    }
}

/// Converts every tensor a reader lists, as a model loader would.
func readAllTensors(_ source: any TensorSource) throws {
    for name in source.tensorNames {
        do { _ = try source.floats(name) } catch is ShadowError {}
    }
}

/// The GGUF reader, its metadata accessors, and the vocabulary a GGUF checkpoint carries, loaded
/// the way `ModelLoader.loadGGUF` loads it.
func fuzzGGUF(_ bytes: [UInt8]) throws {
    let file = try GGUFFile(path: Harness.file("input.gguf", bytes))
    try readAllTensors(file)
    for key in file.metadataKeys {
        _ = file.metadata[key]?.description
        _ = try? file.int(key)
        _ = try? file.float(key)
        _ = try? file.intArray(key)
        _ = try? file.floatArray(key)
    }
    guard let tokenizer = try TokenizerLoader.fromGGUF(file) else { return }
    exercise(tokenizer, text: "Hello world 123 <s> naïve\n\t  x")
}

/// A whole GGUF checkpoint through `ModelLoader`, then one forward pass of two tokens.
func fuzzGGUFModel(_ bytes: [UInt8]) throws {
    let loaded = try ModelLoader.loadGGUF(path: Harness.file("model.gguf", bytes), weights: .f32)
    let vocabulary = loaded.model.shape.vocabularySize
    guard vocabulary > 0 else { return }
    let logits = loaded.model.forward([0, vocabulary - 1], cache: loaded.model.makeCache(capacity: 2), logits: .last)
    guard logits.count == vocabulary else { fatalError("\(logits.count) logits for a vocabulary of \(vocabulary)") }
    if let tokenizer = loaded.tokenizer { exercise(tokenizer, text: "ab a b") }
}

/// config.json for every architecture, checked and turned into the sizes a loader allocates by.
func fuzzConfig(_ bytes: [UInt8]) throws {
    let data = Data(bytes)
    struct Header: Decodable { let model_type: String }
    _ = try? ConfigDecoding.decode(Header.self, from: data, path: "config.json")
    do {
        let config = try ConfigDecoding.decode(LlamaConfig.self, from: data, path: "config.json")
        try config.validate(path: "config.json")
        touch(config.shape)
    } catch is ShadowError {}
    do {
        touch(try Gemma3MultimodalConfig.read(data, path: "config.json").shape)
    } catch is ShadowError {}
    let config = try ConfigDecoding.decode(OPTConfig.self, from: data, path: "config.json")
    try config.validate(path: "config.json")
    touch(config.shape)
}

/// The derived widths that model loading multiplies out.
func touch(_ shape: TransformerShape) {
    _ = shape.attentionWidth
    _ = shape.kvWidth
    _ = shape.groupSize
}

/// tokenizer.json (and after a NUL, tokenizer_config.json), loaded and used.
func fuzzTokenizerJSON(_ bytes: [UInt8]) throws {
    let (json, config) = Harness.split(bytes)
    let tokenizer = try TokenizerLoader.load(tokenizerJSON: Data(json), path: "tokenizer.json",
                                             config: config.map { Data($0) })
    exercise(tokenizer, text: "Hello world 123 <s> naïve\n\t  x")
}

/// Arbitrary bytes (as lossy UTF-8) through one of the test fixtures, chosen by the first byte.
func fuzzTokenize(_ bytes: [UInt8]) {
    guard let first = bytes.first else { return }
    let tokenizer = Harness.fixtures[Int(first) % Harness.fixtures.count]
    exercise(tokenizer, text: String(decoding: bytes.dropFirst(), as: UTF8.self))
}

/// Encodes, decodes and streams `text`; every id must be in the vocabulary.
func exercise(_ tokenizer: any Tokenizer, text: String) {
    let ids = tokenizer.encode(text)
    let withSpecial = tokenizer.encodeWithSpecialTokens(text)
    let split = tokenizer.encode(text, splitSpecialTokens: true)
    for id in ids + withSpecial + split where !(0..<tokenizer.vocabularySize).contains(id) {
        fatalError("encode gave id \(id) outside the vocabulary of \(tokenizer.vocabularySize)")
    }
    _ = tokenizer.decode(withSpecial, skipSpecialTokens: true)
    _ = tokenizer.decode(withSpecial, skipSpecialTokens: false)
    // Streaming decodes a short window twice per id, which under the sanitizers costs more than
    // everything else here; 20 ids still take it past its 16-id bound on pending ids.
    var stream = StreamingDecoder(tokenizer: tokenizer)
    for id in ids.prefix(20) { _ = stream.append(id) }
    _ = stream.flush()
    // Out-of-range ids are ignored by contract.
    _ = tokenizer.decode([-1, tokenizer.vocabularySize, Int.max], skipSpecialTokens: false)
    _ = tokenizer.decodeToken(-1)
    _ = tokenizer.tokenString(tokenizer.vocabularySize)
}

/// The Python string methods lm-eval's prompt templates rely on.
func fuzzPythonText(_ bytes: [UInt8]) {
    let text = String(decoding: bytes, as: UTF8.self)
    _ = text.pythonStripped
    _ = text.pythonCapitalized
    _ = text.lowercasingFirst
    _ = text.pythonReplacing("  ", with: " ")
    _ = text.pythonReplacing(" [title]", with: ". ")
    _ = text.removingBracketedText
}
