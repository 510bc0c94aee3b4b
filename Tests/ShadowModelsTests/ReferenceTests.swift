import Foundation
import Testing
@testable import ShadowModels
import ShadowTestSupport

/// The expectations the reference script (scripts/reference/make_fixtures.py) wrote with PyTorch.
struct ReferenceExpectation: Decodable {
    struct TokenizerCase: Decodable {
        let texts: [String]
        let ids: [[Int]]
    }
    let inputIDs: [[Int]]
    let logits: [[[Float]]]
    let nllSum: [Double]?
    let tokenizer: TokenizerCase?

    enum CodingKeys: String, CodingKey {
        case inputIDs = "input_ids", logits, nllSum = "nll_sum", tokenizer
    }

    static func load(_ directory: String) throws -> ReferenceExpectation {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(directory + "/expected.json")))
        return try JSONDecoder().decode(ReferenceExpectation.self, from: data)
    }
}

@Suite("Agreement with the PyTorch reference")
struct ReferenceTests {
    static let checkpoints = ["tiny-llama", "tiny-llama-tied", "tiny-llama-bias", "tiny-qwen2", "tiny-qwen3", "tiny-opt", "tiny-opt-postln", "tiny-llama-gguf", "tiny-qwen3-gguf", "tiny-llama-bias-gguf", "tiny-smollm3", "tiny-smollm3-gguf", "tiny-phi3", "tiny-phi3-longrope", "tiny-phi3-longrope-gguf", "tiny-mistral-window", "tiny-qwen2-window", "tiny-gemma3", "tiny-gemma3-gguf", "tiny-gemma3-vision", "tiny-gemma2", "tiny-gemma2-gguf"]

    static func modelPath(_ name: String) -> String {
        name.hasSuffix("gguf") ? Fixtures.path(name + "/model.gguf") : Fixtures.path(name)
    }

    @Test("logits match transformers within 1e-4 relative", arguments: checkpoints)
    func logitsMatch(checkpoint: String) throws {
        let loaded = try ModelLoader.load(path: Self.modelPath(checkpoint))
        let expected = try ReferenceExpectation.load(checkpoint)
        for (ids, logits) in zip(expected.inputIDs, expected.logits) {
            let actual = loaded.model.forward(ids, cache: loaded.model.makeCache(), logits: .all)
            expectClose(actual, logits.flatMap { $0 }, tolerance: 1e-4, "\(checkpoint)")
        }
    }

    @Test("summed NLL matches transformers", arguments: checkpoints)
    func nllMatches(checkpoint: String) throws {
        let loaded = try ModelLoader.load(path: Self.modelPath(checkpoint))
        let expected = try ReferenceExpectation.load(checkpoint)
        guard let sums = expected.nllSum else { return }
        for (ids, sum) in zip(expected.inputIDs, sums) {
            let nll = Scoring.tokenNLL(model: loaded.model, tokens: ids).reduce(0, +)
            #expect(abs(nll - sum) <= 1e-4 * max(1, abs(sum)), "\(checkpoint): \(nll) vs \(sum)")
        }
    }

    @Test("the checkpoint's tokenizer gives the reference ids", arguments: checkpoints)
    func tokenizerMatches(checkpoint: String) throws {
        let loaded = try ModelLoader.load(path: Self.modelPath(checkpoint))
        let expected = try ReferenceExpectation.load(checkpoint)
        guard let cases = expected.tokenizer else { return }
        let tokenizer = try loaded.requireTokenizer()
        for (text, ids) in zip(cases.texts, cases.ids) {
            #expect(tokenizer.encodeWithSpecialTokens(text) == ids, "\(checkpoint): \(text.debugDescription)")
        }
    }

    @Test("KV-cached decode of a real checkpoint equals its prefill (sliding windows included)",
          arguments: ["tiny-llama", "tiny-opt", "tiny-opt-postln", "tiny-mistral-window", "tiny-qwen2-window", "tiny-gemma3", "tiny-gemma2"])
    func decodeEqualsPrefill(checkpoint: String) throws {
        let model = try ModelLoader.load(path: Self.modelPath(checkpoint)).model
        let ids = try ReferenceExpectation.load(checkpoint).inputIDs[0]
        let full = model.forward(ids, cache: model.makeCache(), logits: .all)
        let cache = model.makeCache()
        var stepwise = model.forward([ids[0]], cache: cache, logits: .all)
        for id in ids.dropFirst() { stepwise += model.forward([id], cache: cache, logits: .last) }
        expectClose(stepwise, full, tolerance: 1e-4, checkpoint)
    }
}
