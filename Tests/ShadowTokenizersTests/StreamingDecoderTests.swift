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
}
