import Foundation
import ShadowModels
import ShadowSparsity
import Testing
@testable import ShadowCLI

/// A sparsity above 0 whose count of pruned units rounds to 0 runs the dense model under a sparse
/// label; the commands say so on stderr rather than let the label stand, and as much for one that
/// prunes every unit or that a hybrid floor cannot reach.
@Suite("Command line: a sparsity that prunes nothing, everything or less than it says is warned about")
struct UnprunedSparsityTests {
    /// SmolLM2-135M's shape: 30 layers of 9 heads and 1,536 neurons.
    let smolLM2 = TransformerShape(layers: 30, hiddenSize: 576, heads: 9, kvHeads: 3, headDim: 64, ffnSize: 1536,
                                   vocabularySize: 49152, maxContext: 8192)

    func warnings(_ method: String, _ sparsity: Double, _ policy: MaskPolicy) throws -> [String] {
        try SparsityOptions.sparsityWarnings(method: method, settings: SparsitySettings(headSparsity: sparsity, neuronSparsity: sparsity, policy: policy),
                                         shape: smolLM2)
    }

    @Test("per-layer selection warns when a layer's count rounds to 0; global counts the whole model")
    func counts() throws {
        // 0.05 × 9 heads = 0.45 rounds to 0; 0.05 × 1,536 neurons does not.
        let local = try warnings("random", 0.05, .local)
        #expect(local.count == 1 && local[0].hasPrefix("warning: head sparsity 0.05 prunes no head"), "\(local)")
        // DejaVu-style selects per layer whatever the policy.
        #expect(try warnings("dejavu", 0.05, .global).count == 1)
        // Globally 0.05 of the 261 heads of layers 1–29 is 13.
        #expect(try warnings("shadow", 0.05, .global).isEmpty)
        // 0.001 of 261 heads rounds to 0, of 44,544 neurons to 45; 1e-5 prunes neither.
        let small = try warnings("static", 0.001, .global)
        #expect(small.count == 1 && small[0].contains("of the 261 heads of layers 1–29 rounds to 0"), "\(small)")
        let tiny = try warnings("static", 1e-5, .global)
        #expect(tiny.count == 2 && tiny[1].contains("prunes no neuron"), "\(tiny)")
        #expect(try warnings("random", 0.06, .local).isEmpty)
        // One layer: layer 0 is never pruned, so nothing is.
        var oneLayer = smolLM2
        oneLayer.layers = 1
        let single = try SparsityOptions.sparsityWarnings(method: "random", settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5, policy: .global), shape: oneLayer)
        #expect(single == ["warning: random prunes nothing on a model of one layer: layer 0 always runs dense"])
        // A hybrid floor of 0.9 keeps ⌈8.1⌉ = 9 of 9 heads per layer: nothing is left to prune.
        let floored = try SparsityOptions.sparsityWarnings(method: "random", settings: SparsitySettings(headSparsity: 0.5, neuronSparsity: 0.5, policy: .hybrid,
                                                                                                   hybridFloor: 0.9), shape: smolLM2)
        // It keeps ⌈1,382.4⌉ = 1,383 of 1,536 neurons: 0.5 is more than the 0.1 left to prune.
        #expect(floored.count == 2 && floored[0].contains("--hybrid-floor 0.9 keeps all 9 heads of every layer")
                && floored[1].contains("is more than --hybrid-floor 0.9 leaves: it keeps 1383 of each layer's 1536 neurons, so at most 0.100"), "\(floored)")
        #expect(try warnings("dense", 0.05, .local).isEmpty)
        #expect(try SparsityOptions.sparsityWarnings(method: "random", settings: SparsitySettings(headSparsity: 0, neuronSparsity: 0.5),
                                                 shape: smolLM2).isEmpty)
    }

    @Test("a sparsity that prunes every unit of layers 1… or more than a hybrid floor leaves is warned about")
    func everythingOrCapped() throws {
        // 0.95 × 9 heads rounds to 9 per layer; 0.95 of 1,536 neurons does not.
        let local = try warnings("random", 0.95, .local)
        #expect(local == ["warning: head sparsity 0.95 prunes every head of layers 1–29: 0.95 of each layer's 9 heads (selected per layer) rounds to 9"], "\(local)")
        #expect(try warnings("dejavu", 0.95, .global).count == 1)
        // Globally 0.95 of 261 heads leaves 13; 0.999 leaves none.
        #expect(try warnings("random", 0.95, .global).isEmpty)
        let all = try warnings("random", 0.999, .global)
        #expect(all.count == 1 && all[0].contains("prunes every head of layers 1–29: 0.999 of their 261 heads rounds to 261"), "\(all)")
        // A floor of 0.5 keeps ⌈4.5⌉ = 5 of 9 heads and 768 of 1,536 neurons: at most 116/261 and 0.5 can go.
        let capped = try SparsityOptions.sparsityWarnings(method: "random", settings: SparsitySettings(headSparsity: 0.7, neuronSparsity: 0.5, policy: .hybrid,
                                                                                                  hybridFloor: 0.5), shape: smolLM2)
        #expect(capped == ["warning: head sparsity 0.7 is more than --hybrid-floor 0.5 leaves: it keeps 5 of each layer's 9 heads, so at most 0.444 of the heads of layers 1–29 are pruned"],
                "\(capped)")
        // The default floor of 0.1 leaves 0.889 of heads and 0.899 of neurons prunable.
        #expect(try warnings("random", 0.85, .hybrid).isEmpty)
        #expect(try warnings("random", 0.95, .hybrid).count == 2)
        // A sparsity that would prune every unit is capped by the floor, not "every head" (0.999 of
        // 261 heads rounds to 261, but the floor keeps 1 of 9 per layer; a floor of 1 keeps all).
        let everyCapped = try warnings("random", 0.999, .hybrid)
        #expect(everyCapped.count == 2 && everyCapped[0].contains("is more than --hybrid-floor 0.1 leaves: it keeps 1 of each layer's 9 heads")
                && !everyCapped.joined().contains("prunes every"), "\(everyCapped)")
        let allKept = try SparsityOptions.sparsityWarnings(method: "random", settings: SparsitySettings(headSparsity: 0.999, neuronSparsity: 0, policy: .hybrid,
                                                                                                   hybridFloor: 1), shape: smolLM2)
        #expect(allKept == ["warning: head sparsity 0.999 prunes no head: --hybrid-floor 1.0 keeps all 9 heads of every layer, so random runs them all"], "\(allKept)")
        // A floor that rounds to no unit leaves "every" standing.
        let noFloor = try SparsityOptions.sparsityWarnings(method: "random", settings: SparsitySettings(headSparsity: 0.999, neuronSparsity: 0, policy: .hybrid,
                                                                                                   hybridFloor: 0), shape: smolLM2)
        #expect(noFloor.count == 1 && noFloor[0].contains("prunes every head of layers 1–29"), "\(noFloor)")
    }

    @Test("perplexity warns on stderr, runs, and reports the realised sparsity of 0")
    func perplexityWarns() throws {
        // The tiny model's layer 1 has 4 heads and 128 neurons: 0.1 prunes 13 neurons and no head.
        let base = ["perplexity", "--model", fixture("tiny-llama"), "--text", "one two three four five six seven", "--json",
                    "--method", "random"]
        let small = CLIRun(base + ["--sparsity", "0.1"])
        #expect(small.status == 0, "\(small.err)")
        #expect(small.err.contains("warning: head sparsity 0.1 prunes no head") && !small.err.contains("no neuron"), "\(small.err)")
        let report = try small.json()
        #expect(report["realised_head_sparsity"] as? Double == 0)
        #expect((report["realised_neuron_sparsity"] as? Double ?? 0) > 0)
        let half = CLIRun(base + ["--sparsity", "0.5"])
        #expect(half.status == 0 && !half.err.contains("warning"), "\(half.err)")
        // A mask source without any sparsity prunes nothing: said, unless --sparsity 0 says it was meant.
        let none = CLIRun(base)
        #expect(none.status == 0 && none.err == "warning: --method random without --sparsity prunes nothing (the default sparsity is 0); give --sparsity P, or --sparsity 0 to say so\n", "\(none.err)")
        #expect(CLIRun(base + ["--sparsity", "0"]).err.isEmpty)
        // Two layers leave one to prune, named as one.
        let all = CLIRun(base + ["--sparsity", "0.99"])
        #expect(all.status == 0 && all.err.contains("warning: head sparsity 0.99 prunes every head of layer 1: 0.99 of their 4 heads rounds to 4"), "\(all.err)")
    }
}
