import Foundation
import ShadowFormats
@testable import ShadowTokenizers

/// The fixtures written by scripts/reference/tokenizer_fixtures.py: a tokenizer.json per name and
/// what the Hugging Face `tokenizers` library made of the test texts.
enum Fixture {
    static let names = ["gpt2", "smollm", "opt", "roberta", "llama3", "llama2", "metaspace", "llama2-added", "smollm-overlap", "gemma"]

    struct Expected: Decodable {
        let fixture: String
        let vocabSize: Int
        let cases: [Case]
    }

    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let idsWithSpecial: [Int]
        /// With `encode_special_tokens = True`; the fixture writes it only where it differs from `ids`.
        private let idsSplitSpecial: [Int]?
        let decoded: String
        let decodedWithSpecial: String

        /// The ids with special tokens in the text not recognised.
        var idsSplittingSpecial: [Int] { idsSplitSpecial ?? ids }
    }

    static func url(_ name: String, _ suffix: String) -> URL {
        Bundle.module.url(forResource: "\(name).\(suffix)", withExtension: "json", subdirectory: "Fixtures")!
    }

    static func tokenizer(_ name: String) throws -> any Tokenizer {
        try TokenizerLoader.load(tokenizerJSON: url(name, "tokenizer"))
    }

    static func expected(_ name: String) throws -> Expected {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Expected.self, from: Data(contentsOf: url(name, "expected")))
    }

    /// The fixture's tokenizer.json as a JSON tree (our own parser keeps vocabulary keys exact).
    static func json(_ name: String) throws -> JSONValue {
        try JSONParser.parse([UInt8](Data(contentsOf: url(name, "tokenizer"))))
    }
}

/// A readable form of a text for test messages.
func shown(_ text: String) -> String {
    text.count > 60 ? quoted(String(text.prefix(57))) + "…" : quoted(text)
}
