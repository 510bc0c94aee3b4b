import Testing
@testable import ShadowTokenizers

@Suite("Streaming decoder")
struct StreamingDecoderTests {
    @Test("yields text that adds up to the full decode, never a broken character", arguments: Fixture.names)
    func addsUp(fixture: String) throws {
        let tokenizer = try Fixture.tokenizer(fixture)
        for testCase in try Fixture.expected(fixture).cases {
            var stream = StreamingDecoder(tokenizer: tokenizer)
            var chunks: [String] = []
            for id in testCase.idsWithSpecial { chunks.append(stream.append(id)) }
            chunks.append(stream.flush())
            #expect(chunks.joined() == testCase.decoded, "\(fixture): \(shown(testCase.text))")
            if !testCase.decoded.contains("\u{FFFD}") {
                #expect(!chunks.contains { $0.contains("\u{FFFD}") }, "\(fixture): \(shown(testCase.text))")
            }
        }
    }

    @Test("decodeBytes keeps the raw bytes of a partial character: a byte-fallback and a byte-level vocabulary", arguments: ["llama2", "gpt2"])
    func rawBytes(fixture: String) throws {
        let tokenizer = try Fixture.tokenizer(fixture)
        let text = "☃ snow", utf8 = Array(text.utf8)
        let ids = tokenizer.encode(text)
        var cutMidCharacter = false
        for k in 1...ids.count {
            let prefix = Array(ids[..<k])
            let bytes = tokenizer.decodeBytes(prefix, skipSpecialTokens: true)
            // Every prefix spells the text's first bytes, never the U+FFFD decode writes for a broken character.
            #expect(utf8.starts(with: bytes), "\(fixture) \(prefix): \(bytes)")
            if let valid = String(validating: bytes, as: UTF8.self) {
                #expect(valid == tokenizer.decode(prefix, skipSpecialTokens: true))
            } else {
                cutMidCharacter = true   // (decode writes U+FFFD here: one per byte after byte fallback)
            }
        }
        #expect(cutMidCharacter, "\(fixture): no prefix ends inside ☃, so the raw path went untested")
        #expect(tokenizer.decodeBytes(ids, skipSpecialTokens: true) == utf8)
    }

    @Test("holds back the bytes of a character until its last byte arrives")
    func holdsBackPartialCharacters() throws {
        let tokenizer = try Fixture.tokenizer("llama2")
        // "☃" was never seen in training: three byte-fallback tokens.
        let ids = tokenizer.encode("☃")
        #expect(ids.count == 4)  // "▁" and <0xE2> <0x98> <0x83>
        var stream = StreamingDecoder(tokenizer: tokenizer)
        let chunks = ids.map { stream.append($0) }
        #expect(chunks.dropLast().allSatisfy { !$0.contains("\u{FFFD}") })
        #expect(chunks.joined() + stream.flush() == "☃")
        #expect(stream.tokenIDs == ids)
    }

    @Test("flushes an unfinished character as a replacement character")
    func flushesIncomplete() throws {
        let tokenizer = try Fixture.tokenizer("gpt2")
        let ids = tokenizer.encode("東")
        #expect(ids.count > 1)
        var stream = StreamingDecoder(tokenizer: tokenizer)
        #expect(stream.append(ids[0]) == "")
        #expect(stream.flush() == "\u{FFFD}")
        #expect(stream.flush() == "")
    }

    @Test("long runs of invalid bytes and skipped special tokens stream in linear time and add up to the full decode",
          arguments: ["llama2", "gpt2"])
    func longRunsWithoutText(fixture: String) throws {
        let tokenizer = try Fixture.tokenizer(fixture)
        // A lone continuation byte never completes a character; EOS decodes to nothing when skipped.
        let junk = try #require((0..<tokenizer.vocabularySize).first {
            tokenizer.decode([$0], skipSpecialTokens: true) == "\u{FFFD}"
        })
        let eos = try #require(tokenizer.eosTokenID)
        let ids = tokenizer.encode("Hello") + Array(repeating: junk, count: 5_000) + Array(repeating: eos, count: 5_000)
            + tokenizer.encode(" world ☃")
        // Unbounded, each call re-decoded every id since "Hello": some 10^8 token decodes in all.
        var stream = StreamingDecoder(tokenizer: tokenizer)
        var chunks = ids.map { stream.append($0) }
        chunks.append(stream.flush())
        #expect(chunks.joined() == tokenizer.decode(ids, skipSpecialTokens: true))
    }
}
