import Foundation
import Testing
@testable import ShadowTokenizers
import ShadowFormats

/// Bad input fails with one line that names the file and the key, and never crashes.
@Suite("Malformed tokenizer files")
struct MalformedTests {
    /// Loads `json` as "bad.json" and returns the error it throws.
    func error(loading json: String) -> ShadowError? {
        do {
            _ = try TokenizerLoader.load(tokenizerJSON: Data(json.utf8), path: "bad.json")
            return nil
        } catch let error as ShadowError {
            return error
        } catch {
            return .failed("not a ShadowError: \(error)")
        }
    }

    func expectError(_ json: String, key: String?, mentioning words: [String] = [],
                     sourceLocation: SourceLocation = #_sourceLocation) {
        guard let error = error(loading: json) else {
            Issue.record("loaded without an error", sourceLocation: sourceLocation)
            return
        }
        guard case .badJSON(let path, let actualKey, let reason) = error else {
            Issue.record("expected badJSON, got \(error)", sourceLocation: sourceLocation)
            return
        }
        #expect(path == "bad.json", sourceLocation: sourceLocation)
        #expect(actualKey == key, "\(error)", sourceLocation: sourceLocation)
        for word in words { #expect(reason.contains(word), "\(error)", sourceLocation: sourceLocation) }
        #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
    }

    static let vocab = #""vocab": {"a": 0, "b": 1, "ab": 2}"#

    @Test("text that is not JSON, or JSON that is not an object, is refused, saying which")
    func notJSON() {
        expectError("this is not json", key: nil, mentioning: ["not valid JSON"])
        expectError(#"{"model": {"type": "BPE", "vocab": {"a": 0"#, key: nil, mentioning: ["end of input"])
        expectError("", key: nil, mentioning: ["not valid JSON"])
        expectError("[1, 2]", key: nil, mentioning: ["object"])
    }

    @Test("a file without a model is refused, naming the key")
    func missingModel() {
        expectError("{}", key: "model", mentioning: ["missing"])
        expectError(#"{"model": null}"#, key: "model", mentioning: ["missing"])
        expectError(#"{"model": 3}"#, key: "model")
    }

    @Test("models other than BPE are refused by name", arguments: ["Unigram", "WordPiece", "WordLevel"])
    func unknownModel(type: String) {
        expectError(#"{"model": {"type": "\#(type)", "vocab": []}}"#, key: "model.type", mentioning: [type, "BPE"])
    }

    @Test("merges that name tokens missing from the vocabulary are refused, naming the merge")
    func mergesOutsideVocabulary() {
        expectError(#"{"model": {"type": "BPE", \#(Self.vocab), "merges": ["a b", "a c"]}}"#,
                    key: "model.merges[1]", mentioning: ["\"c\""])
        // The merged token must exist too.
        expectError(#"{"model": {"type": "BPE", \#(Self.vocab), "merges": [["b", "a"]]}}"#,
                    key: "model.merges[0]", mentioning: ["\"ba\""])
        expectError(#"{"model": {"type": "BPE", \#(Self.vocab), "merges": ["a  b"]}}"#, key: "model.merges[0]")
        expectError(#"{"model": {"type": "BPE", \#(Self.vocab), "merges": [7]}}"#, key: "model.merges[0]")
    }

    @Test("a vocabulary of the wrong shape is refused, naming the key")
    func badVocabulary() {
        expectError(#"{"model": {"type": "BPE", "vocab": ["a"]}}"#, key: "model.vocab")
        expectError(#"{"model": {"type": "BPE", "vocab": {"a": "zero"}}}"#, key: "model.vocab", mentioning: ["\"a\""])
        expectError(#"{"model": {"type": "BPE", "vocab": {"a": -1}}}"#, key: "model.vocab")
        expectError(#"{"model": {"type": "BPE", "vocab": {"a": 1e12}}}"#, key: "model.vocab")
        expectError(#"{"model": {"type": "BPE", \#(Self.vocab), "unk_token": "<unk>"}}"#, key: "model.unk_token")
    }

    @Test("stages we do not implement are named by their key")
    func unsupportedStages() {
        let model = #""model": {"type": "BPE", \#(Self.vocab), "merges": ["a b"]}"#
        expectError(#"{\#(model), "normalizer": {"type": "Precompiled", "precompiled_charsmap": ""}}"#,
                    key: "normalizer.type", mentioning: ["Precompiled"])
        expectError(#"{\#(model), "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "#
                    + #""pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false}]}}"#,
                    key: "pre_tokenizer.pretokenizers[0].pattern", mentioning: ["regex"])
        expectError(#"{\#(model), "pre_tokenizer": {"type": "BertPreTokenizer"}}"#, key: "pre_tokenizer.type")
        expectError(#"{\#(model), "decoder": {"type": "WordPiece"}}"#, key: "decoder.type")
        expectError(#"{\#(model), "post_processor": {"type": "TemplateProcessing", "single": "#
                    + #"[{"SpecialToken": {"id": "<s>"}}], "special_tokens": {}}}"#, key: "post_processor.special_tokens")
        expectError(#"{\#(model), "added_tokens": [{"content": "<s>"}]}"#, key: "added_tokens[0].id")
        expectError(#"{\#(model), "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": "yes"}}"#,
                    key: "pre_tokenizer.add_prefix_space")
    }

    @Test("a Split with an unknown behavior, an empty or unknown pattern, or invert is refused by its key")
    func unsupportedSplits() {
        let model = #""model": {"type": "BPE", \#(Self.vocab), "merges": ["a b"]}"#
        func split(_ members: String) -> String { #"{\#(model), "pre_tokenizer": {"type": "Split", \#(members)}}"# }
        // tokenizer.json spells behaviours in CamelCase; the Python API's snake_case is not a behaviour there.
        expectError(split(#""pattern": {"String": " "}, "behavior": "merged_with_previous""#),
                    key: "pre_tokenizer.behavior", mentioning: ["merged_with_previous", "MergedWithPrevious"])
        expectError(split(#""pattern": {"String": " "}, "behavior": "Merged""#), key: "pre_tokenizer.behavior",
                    mentioning: ["\"Merged\""])
        expectError(split(#""pattern": {"String": " "}, "behavior": 3"#), key: "pre_tokenizer.behavior")
        expectError(split(#""pattern": {"String": ""}, "behavior": "Isolated""#), key: "pre_tokenizer.pattern",
                    mentioning: ["empty"])
        expectError(split(#""pattern": {"Literal": "x"}, "behavior": "Isolated""#), key: "pre_tokenizer.pattern",
                    mentioning: ["Literal"])
        expectError(split(#""behavior": "Isolated""#), key: "pre_tokenizer.pattern", mentioning: ["missing"])
        expectError(split(#""pattern": {"String": " "}, "behavior": "Removed", "invert": true"#),
                    key: "pre_tokenizer.invert", mentioning: ["inverted"])
        // A known regex is split Isolated only.
        let gpt2 = SplitPattern.gpt2Regex.replacingOccurrences(of: "\\", with: "\\\\")  // escaped for JSON
        #expect(error(loading: split(#""pattern": {"Regex": "\#(gpt2)"}, "behavior": "Isolated""#)) == nil)
        expectError(split(#""pattern": {"Regex": "\#(gpt2)"}, "behavior": "MergedWithPrevious""#),
                    key: "pre_tokenizer.behavior", mentioning: ["MergedWithPrevious", "Regex"])
    }

    @Test("a missing file is named in one line")
    func missingFile() {
        #expect(throws: ShadowError.fileNotFound(path: "/nonexistent/tokenizer.json")) {
            try TokenizerLoader.load(tokenizerJSON: URL(fileURLWithPath: "/nonexistent/tokenizer.json"))
        }
    }

    @Test("a minimal valid file loads, with no decoder joining tokens by spaces")
    func minimal() throws {
        let tokenizer = try TokenizerLoader.load(
            tokenizerJSON: Data(#"{"model": {"type": "BPE", \#(Self.vocab), "merges": ["a b"]}}"#.utf8), path: "ok.json")
        #expect(tokenizer.encode("abba") == [2, 1, 0])
        #expect(tokenizer.encode("") == [])
        #expect(tokenizer.encode("xyz") == [])  // no unknown token: unknown characters are dropped
        #expect(tokenizer.decode([2, 1, 0], skipSpecialTokens: true) == "ab b a")
    }

    @Test("GGUF metadata that cannot make a tokenizer is refused, naming the key")
    func badGGUF() {
        func message(model: String, tokens: [String] = ["a", "b", "ab"], types: [Int]? = nil,
                     merges: [String]? = nil, scores: [Float]? = nil, bos: Int? = nil) -> String {
            do {
                _ = try TokenizerLoader.fromGGUF(model: model, pre: nil, tokens: tokens, tokenTypes: types,
                                                 merges: merges, scores: scores, bosID: bos, eosID: nil,
                                                 addBOS: nil, path: "m.gguf")
                return "loaded"
            } catch {
                return "\(error)"
            }
        }
        #expect(message(model: "bert").contains("tokenizer.ggml.model"))
        #expect(message(model: "gpt2").contains("tokenizer.ggml.merges"))
        #expect(message(model: "gpt2", merges: ["a c"]).contains("tokenizer.ggml.merges[0]"))
        #expect(message(model: "llama").contains("tokenizer.ggml.scores"))
        #expect(message(model: "llama", scores: [0]).contains("tokenizer.ggml.scores"))
        #expect(message(model: "llama", types: [1], scores: [0, 0, 0]).contains("tokenizer.ggml.token_type"))
        #expect(message(model: "llama", scores: [0, 0, 0], bos: 9).contains("tokenizer.ggml.bos_token_id"))
        #expect(message(model: "gpt2", tokens: []).contains("tokenizer.ggml.tokens"))
        #expect(message(model: "llama", scores: [0, 0, .nan]) == "loaded")
        #expect(message(model: "gpt2", merges: ["a b"]).hasPrefix("loaded"))
    }

    @Test("a SentencePiece vocabulary merges pieces cut at every character, and huge pieces load without looking up every cut")
    func sentencePieceCuts() throws {
        // No token types: every piece is normal. "▁aé" (6 bytes) is made two ways, "▁" + "aé"
        // and "▁a" + "é", each cut beside a character of more than one byte.
        let tokens = ["<unk>", "▁", "a", "é", "b", "aé", "▁aé", "ab", "▁a"]
        let scores: [Float] = [0, -1, -2, -3, -4, -5, -6, -7, -8]
        func load(_ tokens: [String], _ scores: [Float]) throws -> any Tokenizer {
            try TokenizerLoader.fromGGUF(model: "llama", pre: nil, tokens: tokens, tokenTypes: nil, merges: nil,
                                         scores: scores, bosID: nil, eosID: nil, addBOS: false, path: "spm.gguf")
        }
        let tokenizer = try load(tokens, scores)
        #expect(tokenizer.encode("aé ab") == [6, 1, 7])
        // Pieces of 300,000 and 299,999 bytes (the old lookup of every cut took minutes) change
        // nothing else; the longer is made of the shorter and "a".
        let long = try load(tokens + [String(repeating: "a", count: 300_000), String(repeating: "a", count: 299_999)], scores + [-9, -10])
        #expect(long.encode("aé ab") == [6, 1, 7])
        #expect(long.encode("aaa") == [8, 2, 2])
    }
}

@Suite("Robustness")
struct RobustnessTests {
    @Test("every truncation of a tokenizer.json fails cleanly")
    func truncations() throws {
        let data = try Data(contentsOf: Fixture.url("smollm", "tokenizer"))
        for cut in stride(from: 0, to: data.count, by: max(1, data.count / 60)) {
            #expect(throws: ShadowError.self) {
                try TokenizerLoader.load(tokenizerJSON: data.prefix(cut), path: "cut.json")
            }
        }
    }

    @Test("random byte damage either fails with a ShadowError or loads a working tokenizer")
    func damage() throws {
        let original = [UInt8](try Data(contentsOf: Fixture.url("llama2-added", "tokenizer")))
        var generator = SplitMix64(seed: 7)
        let replacements = Array(#"0123456789-"{}[],: ab\"#.utf8)
        for _ in 0..<60 {
            var bytes = original
            for _ in 0..<3 {
                let index = Int(generator.next() % UInt64(bytes.count))
                bytes[index] = replacements[Int(generator.next() % UInt64(replacements.count))]
            }
            do {
                let tokenizer = try TokenizerLoader.load(tokenizerJSON: Data(bytes), path: "damaged.json")
                let ids = tokenizer.encodeWithSpecialTokens("Hello <s> wörld 🚀 123")
                _ = tokenizer.decode(ids + [-1, 1 << 40], skipSpecialTokens: false)
            } catch is ShadowError {
                continue
            }
        }
    }

    @Test("one tokenizer encodes from many tasks at once, with the same ids")
    func concurrentEncoding() async throws {
        let tokenizer = try Fixture.tokenizer("smollm")
        let texts = try Fixture.expected("smollm").cases.map(\.text)
        let expected = texts.map(tokenizer.encode)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for task in 0..<8 {
                group.addTask {
                    (0..<texts.count).allSatisfy { i in
                        let index = (i + task) % texts.count
                        return tokenizer.encode(texts[index]) == expected[index]
                    }
                }
            }
            for try await agreed in group { #expect(agreed) }
        }
    }
}
