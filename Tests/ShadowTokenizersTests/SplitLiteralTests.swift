import Testing
@testable import ShadowTokenizers
import ShadowFormats

/// tokenizers' `Split` pre-tokenizer on a literal `{"String": …}` pattern, in every behaviour, and
/// Gemma's tokenizer.json, whose pre-tokenizer it is.
@Suite("Split on a literal string")
struct SplitLiteralTests {
    /// What tokenizers 0.23 makes of each text: `pre_tokenizers.Split(pattern, behavior=…)
    /// .pre_tokenize_str(text)`, the pieces without their offsets. "aa" in "aaaaab aa" shows that
    /// occurrences do not overlap; "日本" is a pattern of several multi-byte characters.
    static let reference: [SplitBehavior: [(pattern: String, text: String, pieces: [String])]] = [
        .removed: [
            ("-", "the-final--countdown", ["the", "final", "countdown"]),
            (" ", "  Hello  world ", ["Hello", "world"]),
            ("aa", "aaaaab aa", ["ab "]),
            ("日本", "日本語と日本日本", ["語と"]),
            ("-", "---", []),
            ("ab", "xaby", ["x", "y"]),
            ("-", "", []),
        ],
        .isolated: [
            ("-", "the-final--countdown", ["the", "-", "final", "-", "-", "countdown"]),
            (" ", "  Hello  world ", [" ", " ", "Hello", " ", " ", "world", " "]),
            ("aa", "aaaaab aa", ["aa", "aa", "ab ", "aa"]),
            ("日本", "日本語と日本日本", ["日本", "語と", "日本", "日本"]),
            ("-", "---", ["-", "-", "-"]),
            ("ab", "xaby", ["x", "ab", "y"]),
            ("-", "", []),
        ],
        .mergedWithPrevious: [
            ("-", "the-final--countdown", ["the-", "final-", "-", "countdown"]),
            (" ", "  Hello  world ", [" ", " ", "Hello ", " ", "world "]),
            ("aa", "aaaaab aa", ["aa", "aa", "ab aa"]),
            ("日本", "日本語と日本日本", ["日本", "語と日本", "日本"]),
            ("-", "---", ["-", "-", "-"]),
            ("ab", "xaby", ["xab", "y"]),
            ("-", "", []),
        ],
        .mergedWithNext: [
            ("-", "the-final--countdown", ["the", "-final", "-", "-countdown"]),
            (" ", "  Hello  world ", [" ", " Hello", " ", " world", " "]),
            ("aa", "aaaaab aa", ["aa", "aaab ", "aa"]),
            ("日本", "日本語と日本日本", ["日本語と", "日本", "日本"]),
            ("-", "---", ["-", "-", "-"]),
            ("ab", "xaby", ["x", "aby"]),
            ("-", "", []),
        ],
        .contiguous: [
            ("-", "the-final--countdown", ["the", "-", "final", "--", "countdown"]),
            (" ", "  Hello  world ", ["  ", "Hello", "  ", "world", " "]),
            ("aa", "aaaaab aa", ["aaaa", "ab ", "aa"]),
            ("日本", "日本語と日本日本", ["日本", "語と", "日本日本"]),
            ("-", "---", ["---"]),
            ("ab", "xaby", ["x", "ab", "y"]),
            ("-", "", []),
        ],
    ]

    /// The pieces one pre-tokenizer makes of `text`.
    func pieces(_ text: String, _ preTokenizer: PreTokenizer) -> [String] {
        var pieces: [ArraySlice<UInt8>] = []
        preTokenizer.split(Array(text.utf8)[...], atTextStart: true, into: &pieces)
        return pieces.map { String(decoding: $0, as: UTF8.self) }
    }

    /// The pre-tokenizers a tokenizer.json with this one `pre_tokenizer` reads as.
    func preTokenizers(_ preTokenizer: String) throws -> [PreTokenizer] {
        let json = #"{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": \#(preTokenizer)}"#
        return try TokenizerJSONReader(path: "split.json").read(JSONParser.parse(Array(json.utf8))).preTokenizers
    }

    @Test("each behavior cuts every text into the pieces tokenizers makes", arguments: SplitBehavior.allCases)
    func behavior(_ behavior: SplitBehavior) throws {
        let cases = try #require(Self.reference[behavior])
        for (pattern, text, expected) in cases {
            let split = PreTokenizer.splitLiteral(pattern: Array(pattern.utf8), behavior: behavior)
            #expect(pieces(text, split) == expected, "\(quoted(pattern)) in \(quoted(text))")
        }
    }

    @Test("tokenizer.json's behavior names are read, in any letter case, with the pattern as UTF-8 bytes")
    func readsBehaviors() throws {
        for behavior in SplitBehavior.allCases {
            for name in [behavior.rawValue, behavior.rawValue.lowercased()] {
                let read = try preTokenizers(#"{"type": "Split", "pattern": {"String": "日本"}, "behavior": "\#(name)", "invert": false}"#)
                #expect(read == [.splitLiteral(pattern: Array("日本".utf8), behavior: behavior)], "\(name)")
            }
        }
        // Without a behavior, Isolated, as before.
        #expect(try preTokenizers(#"{"type": "Split", "pattern": {"String": " "}}"#)
                == [.splitLiteral(pattern: [0x20], behavior: .isolated)])
        let inSequence = try preTokenizers(#"{"type": "Sequence", "pretokenizers": [{"type": "Split", "#
                                           + #""pattern": {"String": "\n"}, "behavior": "Contiguous"}, {"type": "Digits"}]}"#)
        #expect(inSequence == [.splitLiteral(pattern: [0x0A], behavior: .contiguous), .digits(individual: false)])
    }

    @Test("Gemma's tokenizer.json reads as Replace(\" \", \"▁\"), Split(\" \", MergedWithPrevious) and <bos> in front")
    func gemmaStages() throws {
        let spec = try TokenizerJSONReader(path: "gemma.tokenizer.json").read(Fixture.json("gemma"))
        #expect(spec.normalizers == [.replace(pattern: [0x20], content: Array("▁".utf8))])
        #expect(spec.preTokenizers == [.splitLiteral(pattern: [0x20], behavior: .mergedWithPrevious)])
        #expect(spec.model.byteFallback)
        #expect(spec.prefix == [2] && spec.suffix == [])
        #expect(spec.decoders == [.replace(pattern: Array("▁".utf8), content: [0x20]), .byteFallback, .fuse])
    }

    @Test("Gemma's tokenizer encodes as tokenizers does, falls back to bytes, and decodes every text back to itself")
    func gemmaEncodesAndDecodes() throws {
        let tokenizer = try Fixture.tokenizer("gemma")
        let cases = try Fixture.expected("gemma").cases
        // The fixture's texts (tokenizers 0.23 made its ids): spaces leading, trailing, doubled and alone,
        // newlines, accents and CJK the vocabulary lacks, the empty text, special tokens in the text.
        #expect(cases.map(\.text).contains("  ") && cases.map(\.text).contains("日本") && cases.map(\.text).contains(""))
        for testCase in cases {
            #expect(tokenizer.encode(testCase.text) == testCase.ids, "\(shown(testCase.text))")
            #expect(tokenizer.encodeWithSpecialTokens(testCase.text) == testCase.idsWithSpecial, "\(shown(testCase.text))")
            #expect(tokenizer.decode(testCase.idsWithSpecial, skipSpecialTokens: true) == testCase.decoded,
                    "\(shown(testCase.text))")
            // Nothing is lost on the way: special tokens spelled in the text come back as written.
            #expect(tokenizer.decode(testCase.ids, skipSpecialTokens: false) == testCase.text, "\(shown(testCase.text))")
        }
        // "日本" is not in the vocabulary: six byte tokens <0xE6> <0x97> <0xA5> <0xE6> <0x9C> <0xAC>.
        #expect(tokenizer.encode("日本").map { tokenizer.tokenString($0) }
                == ["<0xE6>", "<0x97>", "<0xA5>", "<0xE6>", "<0x9C>", "<0xAC>"])
        #expect(tokenizer.encodeWithSpecialTokens("") == [2])
    }
}
