import Foundation
import Testing
@testable import ShadowCLI
import ShadowModels
import ShadowSparsity

@Suite("shadowllm scores")
struct ScoresCommandTests {
    static let context = "The baker opened the shop"
    static let continuation = " and sold 42 loaves."

    func run(_ checkpoint: String, criterion: String, extra: [String] = []) -> CLIRun {
        CLIRun(["scores", "--model", fixture(checkpoint), "--context", Self.context, "--continuation", Self.continuation,
                "--criterion", criterion, "--json"] + extra)
    }

    @Test("--json prints the loss and L×H / L×F scores equal to Importance.scores on the same tokens",
          arguments: [("tiny-llama", "plainact"), ("tiny-opt", "fisher"), ("tiny-opt-postln", "snip")])
    func json(checkpoint: String, criterion: String) throws {
        let result = run(checkpoint, criterion: criterion)
        #expect(result.status == 0, "\(result.err)")
        let json = try result.json()
        let heads = try #require(json["heads"] as? [[Double]])
        let neurons = try #require(json["neurons"] as? [[Double]])
        let loss = try #require(json["loss"] as? Double)
        #expect(Set(json.keys) == ["criterion", "tokens", "predicted_tokens", "seconds", "loss", "heads", "neurons", "model"])
        #expect(json["criterion"] as? String == criterion)
        #expect((json["model"] as? [String: Any])?["name"] as? String == checkpoint)

        // The same sample computed directly: context + continuation tokenized once, the
        // continuation being everything after the context's own tokens.
        let loaded = try ModelLoader.load(path: fixture(checkpoint))
        let tokenizer = try loaded.requireTokenizer()
        let tokens = tokenizer.encodeWithSpecialTokens(Self.context + Self.continuation)
        let predictFrom = tokenizer.encodeWithSpecialTokens(Self.context).count
        let model = try #require(loaded.model as? any DifferentiableLanguageModel)
        let c = try #require(Criterion(rawValue: criterion))
        let expected = try #require(try Importance.scores(model: model, tokens: tokens, predictFrom: predictFrom, criteria: [c])[c])
        #expect(abs(loss - expected.loss) <= 1e-12 * expected.loss)
        #expect(json["tokens"] as? Int == tokens.count && json["predicted_tokens"] as? Int == tokens.count - predictFrom)
        #expect(heads.count == model.shape.layers && heads.allSatisfy { $0.count == model.shape.heads })
        #expect(neurons.count == model.shape.layers && neurons.allSatisfy { $0.count == model.shape.ffnSize })
        #expect(heads.map { $0.map(Float.init) } == expected.heads)
        #expect(neurons.map { $0.map(Float.init) } == expected.neurons)
    }

    @Test("heads-only criteria omit neurons; 16-bit weights are accepted", arguments: ["jacov", "epenas"])
    func headsOnly(criterion: String) throws {
        let result = run("tiny-qwen2", criterion: criterion, extra: ["--weights", "bf16"])
        #expect(result.status == 0, "\(result.err)")
        let json = try result.json()
        #expect(json["neurons"] == nil)
        #expect((json["heads"] as? [[Double]])?.count == 3)
    }

    @Test("white space ending the context moves to the continuation, as eval's requests do")
    func trailingSpace() throws {
        func loss(_ context: String, _ continuation: String) throws -> Double? {
            let result = CLIRun(["scores", "--model", fixture("tiny-llama"), "--context", context, "--continuation", continuation, "--json"])
            #expect(result.status == 0, "\(result.err)")
            return try result.json()["loss"] as? Double
        }
        let moved = try #require(try loss("The river ran past the old ", "mill"))
        #expect(try loss("The river ran past the old", " mill") == moved)
    }

    @Test("the plain-text summary has one line per layer")
    func summary() {
        let result = CLIRun(["scores", "--model", fixture("tiny-opt"), "--context", Self.context,
                             "--continuation", Self.continuation])
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out.contains("plainact scores") && result.out.contains("layer  2  heads"))
    }

    @Test("empty context, a continuation without tokens, too long a text and unknown criteria are one-line errors")
    func errors() {
        let model = fixture("tiny-llama")
        let long = String(repeating: " the river stayed calm", count: 100)
        let cases: [([String], String)] = [
            (["--context", "", "--continuation", " x"], "--context"),
            (["--context", "Hello", "--continuation", ""], "--continuation"),
            (["--context", "Hello", "--continuation", long], "context of 128"),
            (["--context", "Hello", "--continuation", " x", "--criterion", "magnitude"], "--criterion"),
            (["--context", "Hello"], "--continuation"),
        ]
        for (arguments, fragment) in cases {
            let result = CLIRun(["scores", "--model", model] + arguments)
            #expect(result.status != 0, "\(arguments)")
            #expect(result.err.hasPrefix("error: ") && result.err.split(separator: "\n").count == 1 && result.err.contains(fragment),
                    "\(arguments): \(result.err)")
        }
        #expect(CLIRun(["--help"]).out.contains("scores"))
    }
}
