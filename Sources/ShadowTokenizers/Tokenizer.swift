import Foundation
import ShadowFormats

/// A piece of a prompt that a template builds: the template's own tokens by id, and text.
public enum PromptPart: Sendable, Equatable {
    /// A token placed as it is, such as a chat template's `<|im_start|>`.
    case token(Int)
    /// Text in which special tokens are not recognised: "<|im_end|>" written in it is tokenized as
    /// the characters that spell it (see `Tokenizer.encode(_:splitSpecialTokens:)`).
    case text(String)
}

/// Text ↔ token ids for one model.
public protocol Tokenizer: Sendable {
    /// Raw text → ids, without BOS or any other template token. Special tokens written in the text
    /// ("<|im_start|>") are still recognised as single ids. Empty text gives [].
    func encode(_ text: String) -> [Int]
    /// A templated prompt → ids, without BOS: `.token` parts as they are, each `.text` part encoded
    /// on its own with special tokens not recognised. Text begins the input (for pre-tokenizers
    /// that treat its start apart, as Metaspace's "first") only when no id comes before it, so a
    /// template's markers and the text between them give the ids that encoding the template's text
    /// would, when that text spells no special token. A marker that strips the white space beside
    /// it (`lstrip` / `rstrip`) strips it from the text parts next to it, as in the template's text.
    func encode(_ parts: [PromptPart]) -> [Int]
    /// `ids` wrapped in the model's template: BOS in front iff `addsBOS` (and, for the few
    /// tokenizers whose post-processor says so, an end token behind: RoBERTa's `</s>`).
    func addingSpecialTokens(_ ids: [Int]) -> [Int]
    /// Ids → text. Ids outside the vocabulary are ignored.
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String
    /// What `decode` spells, as bytes before invalid UTF-8 becomes U+FFFD: a token holding part
    /// of a character counts the bytes it holds (perplexity's bytes per token).
    func decodeBytes(_ ids: [Int], skipSpecialTokens: Bool) -> [UInt8]
    /// One token's text as it reads in the middle of a stream: no start-of-text clean-up, and
    /// bytes of an incomplete UTF-8 sequence become U+FFFD. Use `StreamingDecoder` to print
    /// generated text without breaking characters.
    func decodeToken(_ id: Int) -> String
    /// One more than the largest id (model vocabulary and added tokens).
    var vocabularySize: Int { get }
    var bosTokenID: Int? { get }
    var eosTokenID: Int? { get }
    /// Whether `addingSpecialTokens` puts a BOS token in front (OPT: `</s>`; SmolLM2: none).
    var addsBOS: Bool { get }
    /// The vocabulary entry for `id` as the file spells it ("Ġthe", "▁the", "<0x0A>").
    func tokenString(_ id: Int) -> String?
    /// Choices made while loading that may make tokenization differ from the reference, such
    /// as an unknown GGUF pre-tokenizer replaced by the GPT-2 split, each naming its file. Empty
    /// when there are none.
    var warnings: [String] { get }
    /// The model's chat template as its files give it (Jinja source: GGUF
    /// `tokenizer.chat_template`, tokenizer_config.json `chat_template`); nil when they have none.
    var chatTemplate: String? { get }
}

extension Tokenizer {
    public var warnings: [String] { [] }
    public var chatTemplate: String? { nil }

    /// `encode`, wrapped in the model's template (`addingSpecialTokens`).
    public func encodeWithSpecialTokens(_ text: String) -> [Int] {
        addingSpecialTokens(encode(text))
    }

    /// `encode`, or with `splitSpecialTokens` the text's special tokens not recognised: they are
    /// tokenized as the text they spell, by the normalizer, pre-tokenizer and model as usual.
    /// Added tokens that are not special (GGUF user-defined ones) are still matched whole, and a
    /// special token's spelling hides any added token overlapping it. This is Hugging Face
    /// tokenizers' `encode_special_tokens = True` (transformers' `split_special_tokens=True`);
    /// llama.cpp's `parse_special = false` likewise leaves control tokens unmatched. Meant for
    /// text a user wrote, which should not be able to forge a template's markers.
    public func encode(_ text: String, splitSpecialTokens: Bool) -> [Int] {
        splitSpecialTokens ? encode([.text(text)]) : encode(text)
    }
}

/// Builds tokenizers from Hugging Face tokenizer.json files and from GGUF metadata.
///
/// Supported: BPE models — byte-level (GPT-2, OPT, RoBERTa, SmolLM2, Llama-3, Qwen2 split
/// patterns) and SentencePiece-style with byte fallback (Llama-2). Not supported, with an error
/// naming the key: Unigram, WordPiece and WordLevel models; regex patterns other than the GPT-2,
/// Llama-3 and Qwen2 splits; normalizers, pre-tokenizers and decoders outside the common set.
public enum TokenizerLoader {
    /// From a Hugging Face tokenizer.json file (path is used in error messages). A
    /// tokenizer_config.json beside it, if present, names the BOS and EOS tokens; a
    /// chat_template.jinja beside it (where transformers 5 saves the template) is the chat template,
    /// else tokenizer_config.json's (the order of transformers' AutoTokenizer), else a processor's
    /// chat_template.json (multimodal checkpoints; AutoProcessor's file).
    public static func load(tokenizerJSON url: URL) throws -> any Tokenizer {
        let path = url.path
        let data = try readWholeFile(path)
        // Absent is fine; present but unreadable is an error, not a silently different tokenizer.
        func beside(_ name: String) throws -> (data: Data?, path: String) {
            let path = url.deletingLastPathComponent().appendingPathComponent(name).path
            return (try fileKind(atPath: path) != nil ? try readWholeFile(path) : nil, path)
        }
        let config = try beside("tokenizer_config.json")
        let template = try beside("chat_template.jinja").data.map { String(decoding: $0, as: UTF8.self) }
        let processorTemplate = url.deletingLastPathComponent().appendingPathComponent("chat_template.json").path
        return try load(tokenizerJSON: data, path: path, config: config.data, configPath: config.path, chatTemplate: template,
                        processorTemplatePath: processorTemplate)
    }

    /// From the bytes of a tokenizer.json (and optionally of a tokenizer_config.json); the paths
    /// are used in error messages only. Without a template from either, the processor's
    /// chat_template.json at `processorTemplatePath` is read if there (only chat reads templates:
    /// one that cannot be read is a warning).
    public static func load(tokenizerJSON data: Data, path: String,
                            config: Data? = nil, configPath: String = "tokenizer_config.json",
                            chatTemplate: String? = nil, processorTemplatePath: String? = nil) throws -> any Tokenizer {
        let reader = TokenizerJSONReader(path: path)
        var spec = try reader.read(parseJSON(data, path: path))
        if let config {
            try TokenizerJSONReader(path: configPath).readConfig(parseJSON(config, path: configPath), into: &spec)
        }
        if let chatTemplate { spec.chatTemplate = chatTemplate }
        if spec.chatTemplate == nil, let processorTemplatePath, (try? fileKind(atPath: processorTemplatePath)) != nil {
            do {
                let root = try parseJSON(try readWholeFile(processorTemplatePath), path: processorTemplatePath)
                TokenizerJSONReader(path: processorTemplatePath).readProcessorTemplate(root, into: &spec)
            } catch {
                spec.warnings.append("\(error); the chat template is not used")
            }
        }
        return try BPETokenizer(spec, fail: reader.error)
    }

    /// From GGUF metadata (`tokenizer.ggml.*`) passed as plain values. `model` is "gpt2"
    /// (byte-level BPE; `pre` picks the split, see `ggufPreTokenizers`) or "llama" (SentencePiece BPE from `scores`, with byte fallback).
    /// `addBOS` defaults to false for gpt2 and true for llama, as in llama.cpp; `addSpacePrefix`
    /// (llama only) defaults to true. `modelName` is `general.name`, which llama.cpp reads some
    /// token attributes from (Phi-3's, see `GGUFVocabulary.addedTokens`).
    public static func fromGGUF(model: String, pre: String?, tokens: [String], tokenTypes: [Int]?,
                                merges: [String]?, scores: [Float]?, bosID: Int?, eosID: Int?,
                                addBOS: Bool?, path: String, addSpacePrefix: Bool? = nil,
                                chatTemplate: String? = nil, modelName: String? = nil) throws -> any Tokenizer {
        let vocabulary = GGUFVocabulary(model: model, pre: pre, tokens: tokens, tokenTypes: tokenTypes,
                                        merges: merges, scores: scores, bosID: bosID, eosID: eosID,
                                        addBOS: addBOS, addSpacePrefix: addSpacePrefix, modelName: modelName, path: path)
        var spec = try vocabulary.spec()
        spec.chatTemplate = chatTemplate
        return try BPETokenizer(spec) { key, reason in
            .corruptFile(path: path, reason: "\(key): \(reason)")
        }
    }

    /// The tokenizer a GGUF file's metadata describes; nil when it has none. `tokens` spares a
    /// second decoding of the vocabulary when the caller has read it already.
    public static func fromGGUF(_ file: GGUFFile, tokens: [String]? = nil) throws -> (any Tokenizer)? {
        guard let tokens = try tokens ?? file.stringArrayIfPresent("tokenizer.ggml.tokens") else { return nil }
        return try fromGGUF(
            model: try file.string("tokenizer.ggml.model"),
            pre: try file.stringIfPresent("tokenizer.ggml.pre"),
            tokens: tokens,
            tokenTypes: try file.intArrayIfPresent("tokenizer.ggml.token_type"),
            merges: try file.stringArrayIfPresent("tokenizer.ggml.merges"),
            scores: try file.floatArrayIfPresent("tokenizer.ggml.scores"),
            bosID: try file.intIfPresent("tokenizer.ggml.bos_token_id"),
            eosID: try file.intIfPresent("tokenizer.ggml.eos_token_id"),
            addBOS: try file.boolIfPresent("tokenizer.ggml.add_bos_token"),
            path: file.path,
            // Gemma's SentencePiece vocabularies add no "▁" in front (llama.cpp's converter writes false).
            addSpacePrefix: try file.boolIfPresent("tokenizer.ggml.add_space_prefix"),
            chatTemplate: try file.stringIfPresent("tokenizer.chat_template"),
            modelName: try file.stringIfPresent("general.name"))
    }

    /// The `tokenizer.ggml.pre` values implemented exactly. Any other value loads with the GPT-2
    /// split instead and says so in the tokenizer's `warnings`.
    public static var ggufPreTokenizers: [String] { GGUFVocabulary.preTokenizers.keys.sorted() }

    private static func parseJSON(_ data: Data, path: String) throws -> JSONValue {
        let parsed = data.withUnsafeBytes { raw in
            Result { () throws(JSONParser.Failure) in try JSONParser.parse(raw.bindMemory(to: UInt8.self)) }
        }
        switch parsed {
        case .success(let value): return value
        case .failure(let failure):
            throw ShadowError.badJSON(path: path, key: nil,
                                      reason: "not valid JSON: \(failure.message) at byte \(failure.offset)")
        }
    }
}
