import Foundation
import ShadowFormats
import Testing
@testable import ShadowTokenizers

/// The Swift side of scripts/reference/tokenizer_differential.py, which compares this tokenizer with
/// the Hugging Face `tokenizers` library on thousands of generated texts. It runs only when
/// SHADOW_TOKENIZER_DIFF names a jobs file, so ordinary test runs skip it; the script sets it.
///
/// Jobs file: `[{"tokenizer": path, "input": path, "output": path}]`, where `tokenizer` is a
/// tokenizer.json or a .gguf (read with the same metadata keys as ModelLoader), `input` holds
/// `{"texts": [String], "decode_ids": [[Int]]}` and `output` receives `ids`, `ids_with_special`
/// and `ids_split_special` (special tokens in the text not recognised; one list per text each), `decoded` and `decoded_with_special` (the decoding of each `decode_ids`
/// entry with and without skipping special tokens).
@Suite("Differential harness")
struct DifferentialHarness {
    static let jobsPath = ProcessInfo.processInfo.environment["SHADOW_TOKENIZER_DIFF"]

    struct Job: Decodable {
        let tokenizer: String
        let input: String
        let output: String
    }

    struct Input: Decodable {
        let texts: [String]
        let decodeIds: [[Int]]
    }

    struct Output: Encodable {
        let ids: [[Int]]
        let idsWithSpecial: [[Int]]
        let idsSplitSpecial: [[Int]]
        let decoded: [String]
        let decodedWithSpecial: [String]
    }

    @Test("writes our ids and decodings for the texts of every job",
          .enabled(if: jobsPath != nil, "set SHADOW_TOKENIZER_DIFF to a jobs file"))
    func run() throws {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let jobs = try decoder.decode([Job].self, from: Data(contentsOf: URL(fileURLWithPath: Self.jobsPath!)))
        for job in jobs {
            let tokenizer = try Self.load(job.tokenizer)
            let input = try decoder.decode(Input.self, from: Data(contentsOf: URL(fileURLWithPath: job.input)))
            let output = Output(
                ids: input.texts.map(tokenizer.encode),
                idsWithSpecial: input.texts.map(tokenizer.encodeWithSpecialTokens),
                idsSplitSpecial: input.texts.map { tokenizer.encode($0, splitSpecialTokens: true) },
                decoded: input.decodeIds.map { tokenizer.decode($0, skipSpecialTokens: true) },
                decodedWithSpecial: input.decodeIds.map { tokenizer.decode($0, skipSpecialTokens: false) })
            try encoder.encode(output).write(to: URL(fileURLWithPath: job.output))
        }
    }

    static func load(_ path: String) throws -> any Tokenizer {
        guard path.hasSuffix(".gguf") else { return try TokenizerLoader.load(tokenizerJSON: URL(fileURLWithPath: path)) }
        guard let tokenizer = try TokenizerLoader.fromGGUF(try GGUFFile(path: path)) else {
            throw ShadowError.corruptFile(path: path, reason: "has no tokenizer.ggml.tokens")
        }
        return tokenizer
    }
}
