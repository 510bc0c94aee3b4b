import Foundation
import Testing
@testable import ShadowTokenizers
import ShadowFormats
import ShadowTestSupport

/// The GGUF path, fed with what a GGUF file would hold for each fixture: its tokens in id order,
/// token types, merges as "left right" strings, and for SentencePiece a score per token.
@Suite("Tokenizers built from GGUF metadata")
struct GGUFTests {
    struct Metadata {
        var tokens: [String]
        var types: [Int]
        var merges: [String]
    }

    /// Tokens and types from the fixture's vocabulary and added tokens (3 = control for special
    /// ones, 4 = user-defined for the rest, 6 = byte for "<0xNN>").
    static func metadata(_ fixture: String) throws -> Metadata {
        let json = try Fixture.json(fixture)
        var byID: [Int: String] = [:]
        guard case .object(let vocab)? = json["model"]?["vocab"] else { throw ShadowError.failed("no vocab") }
        for (token, id) in vocab {
            guard case .number(let id) = id else { continue }
            byID[Int(id)] = token
        }
        var types = [Int](repeating: 1, count: byID.count)
        var specialIDs: [Int: Int] = [:]
        if case .array(let added)? = json["added_tokens"] {
            for token in added {
                guard case .number(let id)? = token["id"], case .string(let content)? = token["content"],
                      case .bool(let special)? = token["special"] else { continue }
                byID[Int(id)] = content
                specialIDs[Int(id)] = special ? 3 : 4
            }
        }
        let tokens = (0..<byID.count).map { byID[$0]! }
        types = tokens.indices.map { id in
            specialIDs[id] ?? (TokenDecoder.byteValue(of: Array(tokens[id].utf8)) != nil ? 6 : 1)
        }
        var merges: [String] = []
        if case .array(let rules)? = json["model"]?["merges"] {
            for rule in rules {
                switch rule {
                case .string(let line): merges.append(line)
                case .array(let pair):
                    if case .string(let left) = pair[0], case .string(let right) = pair[1] { merges.append("\(left) \(right)") }
                default: break
                }
            }
        }
        return Metadata(tokens: tokens, types: types, merges: merges)
    }

    @Test("byte-level GGUF vocabularies give the reference ids",
          arguments: [("gpt2", "gpt-2", nil), ("smollm", "smollm", nil), ("opt", "default", 2), ("llama3", "llama-bpe", 0)]
              as [(String, String, Int?)])
    func byteLevel(fixture: String, pre: String, bos: Int?) throws {
        let metadata = try Self.metadata(fixture)
        let tokenizer = try TokenizerLoader.fromGGUF(
            model: "gpt2", pre: pre, tokens: metadata.tokens, tokenTypes: metadata.types, merges: metadata.merges,
            scores: nil, bosID: bos, eosID: nil, addBOS: bos != nil, path: "\(fixture).gguf")
        #expect(tokenizer.warnings.isEmpty)
        for testCase in try Fixture.expected(fixture).cases {
            #expect(tokenizer.encode(testCase.text) == testCase.ids, "\(fixture): \(shown(testCase.text))")
            #expect(tokenizer.encodeWithSpecialTokens(testCase.text) == testCase.idsWithSpecial,
                    "\(fixture): \(shown(testCase.text))")
            // Control tokens are the special ones, user-defined ones are still matched.
            #expect(tokenizer.encode(testCase.text, splitSpecialTokens: true) == testCase.idsSplittingSpecial,
                    "\(fixture): \(shown(testCase.text))")
            #expect(tokenizer.decode(testCase.idsWithSpecial, skipSpecialTokens: true) == testCase.decoded)
        }
    }

    /// SentencePiece keeps scores, not merges: score = −id makes later pieces merge later, which is
    /// the order the fixture's merge list was written in.
    @Test("a SentencePiece GGUF vocabulary (scores, byte tokens) gives the Llama-2 reference ids")
    func sentencePiece() throws {
        var metadata = try Self.metadata("llama2")
        metadata.types[0] = 2  // <unk>
        let tokenizer = try TokenizerLoader.fromGGUF(
            model: "llama", pre: nil, tokens: metadata.tokens, tokenTypes: metadata.types, merges: nil,
            scores: metadata.tokens.indices.map { -Float($0) }, bosID: 1, eosID: 2, addBOS: nil, path: "llama2.gguf")
        #expect(tokenizer.addsBOS)
        #expect(tokenizer.bosTokenID == 1)
        #expect(tokenizer.eosTokenID == 2)
        for testCase in try Fixture.expected("llama2").cases {
            #expect(tokenizer.encode(testCase.text) == testCase.ids, "llama2: \(shown(testCase.text))")
            #expect(tokenizer.encodeWithSpecialTokens(testCase.text) == testCase.idsWithSpecial,
                    "llama2: \(shown(testCase.text))")
            #expect(tokenizer.decode(testCase.idsWithSpecial, skipSpecialTokens: true) == testCase.decoded)
            #expect(tokenizer.decode(testCase.idsWithSpecial, skipSpecialTokens: false) == testCase.decodedWithSpecial)
        }
    }

    @Test("as llama.cpp, a GGUF named Phi-3 makes its control tokens but <unk>, <s> and <|endoftext|> swallow the white space after them")
    func phi3RightStrip() throws {
        let tokens = ["<unk>", "<s>", "</s>", "<|endoftext|>", "<|user|>", "<|end|>", "▁", "H", "i", "▁H", "▁Hi", "<0x0A>"]
        let types = [2, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 6]
        func tokenizer(name: String?) throws -> any Tokenizer {
            try TokenizerLoader.fromGGUF(model: "llama", pre: nil, tokens: tokens, tokenTypes: types, merges: nil,
                                         scores: tokens.indices.map { Float($0) }, bosID: 1, eosID: 3, addBOS: false,
                                         path: "phi3.gguf", modelName: name)
        }
        let text = "<|user|>\nHi<|end|>\n<|endoftext|>\n"
        for name in ["Phi-3-mini-4k-instruct", "Phi-3.5-mini-instruct", "phi3"] {
            #expect(try tokenizer(name: name).encode(text) == [4, 10, 5, 3, 6, 11], "\(name)")
        }
        // Other names keep the white space (SentencePiece's space prefix after each marker, then the
        // newline); llama.cpp matches "phi-3" and "phi3" only.
        for name in ["Llama 2", "Phi 3 Mini"] {
            let ids = try tokenizer(name: name).encode(text)
            #expect(ids == [4, 6, 11, 7, 8, 5, 6, 11, 3, 6, 11], "\(name)")
        }
    }

    @Test("an unknown pre-tokenizer falls back to the GPT-2 split and says so")
    func unknownPre() throws {
        let metadata = try Self.metadata("gpt2")
        let tokenizer = try TokenizerLoader.fromGGUF(
            model: "gpt2", pre: "some-new-model", tokens: metadata.tokens, tokenTypes: metadata.types,
            merges: metadata.merges, scores: nil, bosID: nil, eosID: nil, addBOS: nil, path: "x.gguf")
        #expect(tokenizer.warnings.count == 1)
        #expect(tokenizer.warnings.first?.contains("some-new-model") == true)
        #expect(tokenizer.encode("Hello world") == (try Fixture.tokenizer("gpt2").encode("Hello world")))
        #expect(TokenizerLoader.ggufPreTokenizers.contains("smollm"))
    }

    @Test("a SentencePiece GGUF reads tokenizer.ggml.add_space_prefix from the file: Gemma's false adds no ▁ in front")
    func addSpacePrefixFromFile() throws {
        func tokenizer(addSpacePrefix: Bool?) throws -> any Tokenizer {
            var builder = GGUFBuilder()
            builder.add("tokenizer.ggml.model", .string("llama"))
            builder.add("tokenizer.ggml.tokens", .array(.string(["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a"])))
            builder.add("tokenizer.ggml.scores", .array(.float32([0, 0, 0, -1, -2, -3, -4])))
            builder.add("tokenizer.ggml.token_type", .array(.int32([2, 3, 3, 1, 1, 1, 1])))
            builder.add("tokenizer.ggml.bos_token_id", .uint32(1))
            if let addSpacePrefix { builder.add("tokenizer.ggml.add_space_prefix", .bool(addSpacePrefix)) }
            let path = TestScratch.path("spm-prefix-\(String(describing: addSpacePrefix))", suffix: ".gguf")
            try Data(builder.bytes()).write(to: URL(fileURLWithPath: path))
            return try #require(try TokenizerLoader.fromGGUF(try GGUFFile(path: path)))
        }
        for absentOrTrue in [nil, true] as [Bool?] {
            let spm = try tokenizer(addSpacePrefix: absentOrTrue)
            #expect(spm.encode("a b") == [6, 3, 5] && spm.decode([6, 3, 5], skipSpecialTokens: true) == "a b")
        }
        let gemma = try tokenizer(addSpacePrefix: false)
        #expect(gemma.encode("a b") == [4, 3, 5] && gemma.decode([4, 3, 5], skipSpecialTokens: true) == "a b")
    }
}
