import Foundation
import Testing
@testable import ShadowTokenizers

/// Agreement with the Hugging Face `tokenizers` library on fixtures it trained and encoded.
@Suite("Tokenizers agree with the Hugging Face reference")
struct ReferenceTests {
    @Test("encodes every test text to the reference ids", arguments: Fixture.names)
    func encodes(fixture: String) throws {
        let tokenizer = try Fixture.tokenizer(fixture)
        for testCase in try Fixture.expected(fixture).cases {
            #expect(tokenizer.encode(testCase.text) == testCase.ids, "\(fixture): \(shown(testCase.text))")
        }
    }

    @Test("adds the same special tokens as the reference", arguments: Fixture.names)
    func encodesWithSpecialTokens(fixture: String) throws {
        let tokenizer = try Fixture.tokenizer(fixture)
        for testCase in try Fixture.expected(fixture).cases {
            #expect(tokenizer.encodeWithSpecialTokens(testCase.text) == testCase.idsWithSpecial,
                    "\(fixture): \(shown(testCase.text))")
        }
    }

    @Test("decodes the reference ids to the reference text, with and without special tokens",
          arguments: Fixture.names)
    func decodes(fixture: String) throws {
        let tokenizer = try Fixture.tokenizer(fixture)
        for testCase in try Fixture.expected(fixture).cases {
            let ids = testCase.idsWithSpecial
            #expect(tokenizer.decode(ids, skipSpecialTokens: true) == testCase.decoded,
                    "\(fixture): \(shown(testCase.text))")
            #expect(tokenizer.decode(ids, skipSpecialTokens: false) == testCase.decodedWithSpecial,
                    "\(fixture): \(shown(testCase.text))")
        }
    }

    @Test("byte-level tokenizers decode every text back to itself",
          arguments: ["gpt2", "smollm", "opt", "llama3"])
    func roundTrips(fixture: String) throws {
        let tokenizer = try Fixture.tokenizer(fixture)
        for testCase in try Fixture.expected(fixture).cases {
            #expect(tokenizer.decode(tokenizer.encode(testCase.text), skipSpecialTokens: false) == testCase.text,
                    "\(fixture): \(shown(testCase.text))")
        }
    }

    @Test("counts the vocabulary as the reference does, added tokens included", arguments: Fixture.names)
    func vocabularySize(fixture: String) throws {
        #expect(try Fixture.tokenizer(fixture).vocabularySize == Fixture.expected(fixture).vocabSize)
    }

    @Test("encodes empty text to no ids", arguments: Fixture.names)
    func emptyText(fixture: String) throws {
        #expect(try Fixture.tokenizer(fixture).encode("") == [])
    }
}

@Suite("BOS, EOS and token strings")
struct SpecialTokenTests {
    @Test("OPT prepends </s> (id 2) as BOS")
    func opt() throws {
        let tokenizer = try Fixture.tokenizer("opt")
        #expect(tokenizer.addsBOS)
        #expect(tokenizer.bosTokenID == 2)
        #expect(tokenizer.eosTokenID == 2)
        #expect(tokenizer.encodeWithSpecialTokens("Hello").first == 2)
    }

    @Test("the SmolLM2 form adds no BOS and keeps chat tokens whole")
    func smollm() throws {
        let tokenizer = try Fixture.tokenizer("smollm")
        #expect(!tokenizer.addsBOS)
        #expect(tokenizer.encode("<|im_start|>") == [1])
        #expect(tokenizer.encodeWithSpecialTokens("hi") == tokenizer.encode("hi"))
        #expect(tokenizer.tokenString(1) == "<|im_start|>")
    }

    @Test("Llama-2 adds <s> and ends with </s>")
    func llama2() throws {
        let tokenizer = try Fixture.tokenizer("llama2")
        #expect(tokenizer.addsBOS)
        #expect(tokenizer.bosTokenID == 1)
        #expect(tokenizer.eosTokenID == 2)
        #expect(tokenizer.tokenString(3) == "<0x00>")
        #expect(tokenizer.tokenString(-1) == nil)
        #expect(tokenizer.tokenString(tokenizer.vocabularySize) == nil)
    }

    @Test("RoBERTa's processor wraps text in <s> … </s>")
    func roberta() throws {
        let tokenizer = try Fixture.tokenizer("roberta")
        let ids = tokenizer.encodeWithSpecialTokens("Hello")
        #expect(ids.first == tokenizer.bosTokenID)
        #expect(ids.last == tokenizer.eosTokenID)
        #expect(tokenizer.tokenString(ids.first!) == "<s>")
    }

    @Test("tokenizer_config.json names BOS and EOS when present")
    func config() throws {
        let data = try Data(contentsOf: Fixture.url("smollm", "tokenizer"))
        let config = Data(#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"}}"#.utf8)
        let tokenizer = try TokenizerLoader.load(tokenizerJSON: data, path: "smollm.json", config: config)
        #expect(tokenizer.bosTokenID == 1)
        #expect(tokenizer.eosTokenID == 2)
        #expect(!tokenizer.addsBOS)
    }

    @Test("decodes one token as it reads mid-stream, leading space kept")
    func decodeToken() throws {
        let llama = try Fixture.tokenizer("llama2")
        let word = try #require(llama.encode("Hello world").last { llama.tokenString($0)?.hasPrefix("▁") == true })
        #expect(llama.decodeToken(word).hasPrefix(" "))
        let gpt2 = try Fixture.tokenizer("gpt2")
        let space = try #require(gpt2.encode(" the").first)
        #expect(gpt2.decodeToken(space).hasPrefix(" "))
        #expect(gpt2.decodeToken(-5) == "")
    }
}
