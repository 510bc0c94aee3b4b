import Foundation
import Testing
@testable import ShadowTokenizers
import ShadowFormats
import ShadowTestSupport

// A fixed-seed cousin of the libFuzzer targets `tokenizer_json` and `tokenize` in fuzz/: CI
// cannot fuzz for long, so each run damages the committed seeds a few hundred times.

/// Characters that matter to tokenizer.json: JSON's structure and the letters of its literals.
let jsonCharacters = "{}[]\":,\\ nultrefas0123456789-.eE"

/// Encodes and decodes `text`; false when an id falls outside the vocabulary.
func idsStayInVocabulary(_ tokenizer: any Tokenizer, _ text: String) -> Bool {
    let ids = tokenizer.encodeWithSpecialTokens(text)
    _ = tokenizer.decode(ids, skipSpecialTokens: true)
    var stream = StreamingDecoder(tokenizer: tokenizer)
    for id in ids { _ = stream.append(id) }
    _ = stream.flush()
    return ids.allSatisfy { (0..<tokenizer.vocabularySize).contains($0) }
}

@Suite("Tokenizers under random input")
struct TokenizerFuzzTests {
    @Test("mutated tokenizer.json files throw ShadowError or load a tokenizer whose ids stay in range")
    func mutatedTokenizerJSON() throws {
        var generator = SplitMix64(seed: 0x70CE)
        let seeds = try fuzzSeeds("tokenizer_json")
        #expect(!seeds.isEmpty)
        for round in 0..<240 {
            let bytes = mutate(seeds[round % seeds.count], interesting: jsonCharacters, using: &generator)
            // After a NUL comes a tokenizer_config.json, as in fuzz/Targets.swift.
            let nul = bytes.firstIndex(of: 0)
            let json = Data(bytes[..<(nul ?? bytes.count)])
            let config = nul.map { Data(bytes[($0 + 1)...]) }
            do {
                let tokenizer = try TokenizerLoader.load(tokenizerJSON: json, path: "fuzz.json", config: config)
                #expect(idsStayInVocabulary(tokenizer, "Hello world 123 <s> naïve\n\t  x"))
            } catch is ShadowError {
            } catch {
                Issue.record("not a ShadowError: \(error)")
            }
        }
    }

    @Test("every fixture tokenizer encodes random bytes to ids inside its vocabulary")
    func randomBytes() throws {
        var generator = SplitMix64(seed: 0xB17E5)
        let seeds = try fuzzSeeds("tokenize")
        for name in Fixture.names {
            let tokenizer = try Fixture.tokenizer(name)
            for round in 0..<25 {
                // Half mutated seed texts, half raw random bytes (lossily decoded, as a file would be).
                let bytes = round % 2 == 0
                    ? Array(mutate(seeds[round % seeds.count], interesting: jsonCharacters, using: &generator).dropFirst())
                    : (0..<generator.next(below: 64)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
                #expect(idsStayInVocabulary(tokenizer, String(decoding: bytes, as: UTF8.self)), "\(name): \(bytes)")
            }
        }
    }

    @Test("random GGUF vocabulary metadata throws ShadowError or gives a working tokenizer")
    func randomGGUFVocabularies() {
        var generator = SplitMix64(seed: 0x6609)
        let pieces = ["a", "b", "ab", "▁", "▁a", "<0x41>", "<s>", "</s>", "<unk>", "", "Ġ", "Ġa", "aaa", "é", "\u{0301}"]
        for _ in 0..<200 {
            let count = 1 + generator.next(below: 8)
            let tokens = (0..<count).map { _ in pieces[generator.next(below: pieces.count)] }
            func maybe<T>(_ make: () -> T) -> T? { generator.next(below: 3) == 0 ? nil : make() }
            let countNoise = generator.next(below: 4) == 0 ? 1 : 0  // sometimes one entry too many
            let types = maybe { (0..<(count + countNoise)).map { _ in generator.next(below: 8) - 1 } }
            let scores = maybe { (0..<(count + countNoise)).map { _ in [Float.nan, -Float.infinity, 0, -0.0, 1, -2][generator.next(below: 6)] } }
            let merges = maybe { (0..<generator.next(below: 5)).map { _ in
                [tokens[generator.next(below: count)], tokens[generator.next(below: count)]].joined(separator: " ")
            } }
            let bos = maybe { generator.next(below: count + 2) - 1 }
            let model = generator.next(below: 2) == 0 ? "gpt2" : "llama"
            do {
                let tokenizer = try TokenizerLoader.fromGGUF(
                    model: model, pre: maybe { ["smollm", "llama3", "qwen2", "nonsense"][generator.next(below: 4)] },
                    tokens: tokens, tokenTypes: types, merges: merges, scores: scores, bosID: bos, eosID: bos,
                    addBOS: maybe { generator.next(below: 2) == 0 }, path: "fuzz.gguf")
                #expect(idsStayInVocabulary(tokenizer, "aab▁a é\u{0301} A<s>"), "\(model) \(tokens)")
            } catch is ShadowError {
            } catch {
                Issue.record("not a ShadowError: \(error)")
            }
        }
    }
}
