import Testing
@testable import ShadowTokenizers
import ShadowFormats

@Suite("Pipeline stages")
struct PipelineStageTests {
    func pieces(_ text: String, _ preTokenizers: [PreTokenizer]) -> [String] {
        var pieces = [Array(text.utf8)[...]]
        for preTokenizer in preTokenizers {
            var next: [ArraySlice<UInt8>] = []
            for (index, piece) in pieces.enumerated() { preTokenizer.split(piece, atTextStart: index == 0, into: &next) }
            pieces = next
        }
        return pieces.map { String(decoding: $0, as: UTF8.self) }
    }

    let gpt2: [PreTokenizer] = [.byteLevel(addPrefixSpace: false, useRegex: true)]

    @Test("GPT-2 split: words keep their leading space, whitespace runs leave one space to the next word")
    func gpt2Split() {
        #expect(pieces("Hello world", gpt2) == ["Hello", " world"])
        #expect(pieces("a   b\n\n\tc  ", gpt2) == ["a", "  ", " b", "\n\n", "\t", "c", "  "])
        #expect(pieces("don't we'll I'M", gpt2) == ["don", "'t", " we", "'ll", " I", "'", "M"])
        #expect(pieces("x1y22 3.5!!", gpt2) == ["x", "1", "y", "22", " 3", ".", "5", "!!"])
        #expect(pieces("café 東京🚀", gpt2) == ["café", " 東京", "🚀"])
        #expect(pieces("", gpt2) == [])
    }

    @Test("a text longer than one matching stretch splits exactly as when matched whole, for both patterns")
    func longTextsSplitByStretches() {
        // Words, runs of spaces and newlines, digits, punctuation, contractions and non-ASCII
        // letters, drawn with a fixed seed until the text spans several stretches.
        let parts = ["word", " ", "  ", "\n", "\n\n ", "'s", "'LL", "2024", "3.5", "!!", "(", "café", "東京", "🚀", " x", "\t", "Ωmega"]
        var generator = SplitMix64(seed: 7)
        var text = ""
        while text.utf8.count < 3 * SplitPattern.stretchLength + 1000 { text += parts[generator.next(below: parts.count)] }
        let bytes = Array(text.utf8)[...]
        for pattern in [SplitPattern.gpt2, .llama3(maxDigits: 3), .llama3(maxDigits: 1)] {
            var byStretches: [ArraySlice<UInt8>] = [], whole: [ArraySlice<UInt8>] = []
            pattern.split(bytes, into: &byStretches)
            pattern.splitStretch(bytes, into: &whole)
            #expect(byStretches.count == whole.count && byStretches.map(\.startIndex) == whole.map(\.startIndex), "\(pattern)")
        }
    }

    @Test("Llama-3 split: a non-letter leads a word, digits go in threes, newlines join what precedes them")
    func llama3Split() {
        let llama3: [PreTokenizer] = [.split(.llama3(maxDigits: 3))]
        #expect(pieces("(yes) 1234567 I'M", llama3) == ["(yes", ")", " ", "123", "456", "7", " I", "'M"])
        #expect(pieces("a.\n\n  b", llama3) == ["a", ".\n\n", " ", " b"])
        #expect(pieces("x  \n y", llama3) == ["x", "  \n", " y"])
    }

    @Test("Digits isolates every digit, and ByteLevel's prefix space applies to each piece")
    func digits() {
        #expect(pieces("In 2024,", [.digits(individual: true)]) == ["In ", "2", "0", "2", "4", ","])
        #expect(pieces("ab12 cd", [.digits(individual: false)]) == ["ab", "12", " cd"])
        #expect(pieces("ab12 cd", [.digits(individual: true), .byteLevel(addPrefixSpace: true, useRegex: true)])
                == [" ab", " 1", " 2", " cd"])
    }

    @Test("Metaspace marks spaces and cuts before each mark")
    func metaspace() {
        let metaspace = PreTokenizer.metaspace(replacement: Array("▁".utf8), prependScheme: .always, split: true)
        #expect(pieces("a  b c▁d ", [metaspace]) == ["▁a", "▁", "▁b", "▁c", "▁d", "▁"])
    }

    @Test("the byte map covers all 256 bytes with distinct printable characters")
    func byteMap() {
        #expect(Set(ByteLevel.scalarForByte).count == 256)
        #expect(ByteLevel.scalarForByte[0x20] == 0x120)  // Ġ
        #expect(ByteLevel.scalarForByte[0x0A] == 0x10A)  // Ċ
        #expect(ByteLevel.scalarForByte[Int(UInt8(ascii: "A"))] == 0x41)
        let all = (0...255).map { UInt8($0) }
        #expect(ByteLevel.bytes(ofToken: ByteLevel.encode(all[...])) == all)
    }

    @Test("the priority-queue merge loop agrees with the rescanning one", arguments: ["gpt2", "llama2"])
    func mergeLoopsAgree(fixture: String) throws {
        let tokenizer = try #require(try Fixture.tokenizer(fixture) as? BPETokenizer)
        var generator = SplitMix64(seed: 42)
        let alphabet = Array("the quick brown fox tokenizer ▁▁aaab東京🚀".unicodeScalars)
        for _ in 0..<300 {
            let length = Int(generator.next() % 40) + 1
            var text = String.UnicodeScalarView()
            for _ in 0..<length { text.append(alphabet[Int(generator.next() % UInt64(alphabet.count))]) }
            let symbols = tokenizer.model.initialSymbols(Array(String(text).utf8)[...])
            var rescanned = symbols
            var queued = symbols
            tokenizer.model.mergeByRescanning(&rescanned)
            tokenizer.model.mergeWithQueue(&queued)
            #expect(rescanned == queued, "\(shown(String(text)))")
        }
    }
}
