import Foundation
import Testing
@testable import ShadowKernels
@testable import ShadowModels
import ShadowModelTestSupport
import ShadowTestSupport

/// Random plans that keep a fraction of each layer's heads and neurons (layer 0 stays dense).
func randomPlans(shape: TransformerShape, keep: Double, seed: UInt64) -> [LayerPlan] {
    var generator = SeededGenerator(seed: seed)
    return (0..<shape.layers).map { l in
        if l == 0 { return .dense }
        let heads = (0..<shape.heads).filter { _ in Double(generator.next() % 1000) / 1000 < keep }
        let neurons = (0..<shape.ffnSize).filter { _ in Double(generator.next() % 1000) / 1000 < keep }.map(Int32.init)
        return LayerPlan(heads: heads, neurons: neurons, shape: shape)
    }
}

@Suite("Sparse execution equals the dense model with pruned units zeroed")
struct SparseExecutionTests {
    static let models: [String] = ["tiny-llama", "tiny-llama-bias", "tiny-qwen2", "tiny-qwen3", "tiny-smollm3", "tiny-phi3-longrope", "tiny-mistral-window", "tiny-qwen2-window", "tiny-gemma3", "tiny-gemma2", "tiny-opt", "tiny-opt-postln", "code-llama"]

    static func model(_ name: String) throws -> any CausalLanguageModel {
        if name == "code-llama" { return TinyModels.llama(kvHeads: 2) }
        return try ModelLoader.load(path: Fixtures.path(name)).model
    }

    /// Prefill of 9 tokens (GEMM path) then 4 decode steps (GEMV path), all logits concatenated.
    static func run(_ model: any CausalLanguageModel, _ controller: (any SparsityController)?) -> [Float] {
        let tokens = [5, 17, 42, 8, 99, 23, 4, 61, 30, 12, 77, 3, 50].map { $0 % model.shape.vocabularySize }
        let cache = model.makeCache(capacity: 32)
        var out = model.forward(Array(tokens[0..<9]), cache: cache, logits: .all, sparsity: controller)
        for t in tokens[9...] { out += model.forward([t], cache: cache, logits: .last, sparsity: controller) }
        return out
    }

    @Test("skipping equals zeroing for random masks, in prefill and decode", arguments: models)
    func skipEqualsZero(name: String) throws {
        let model = try Self.model(name)
        for (keep, seed) in [(0.5, 1), (0.25, 2), (0.8, 3), (0.0, 4)] as [(Double, UInt64)] {
            let plans = randomPlans(shape: model.shape, keep: keep, seed: seed)
            let skipped = Self.run(model, FixedSparsity(layers: plans, execution: .skip))
            let zeroed = Self.run(model, FixedSparsity(layers: plans, execution: .zero))
            expectClose(skipped, zeroed, tolerance: 1e-4, "\(name) keep \(keep)")
        }
    }

    @Test("keeping every K/V group gives the same result", arguments: ["tiny-llama", "tiny-opt"])
    func keepAllKV(name: String) throws {
        let model = try Self.model(name)
        let plans = randomPlans(shape: model.shape, keep: 0.4, seed: 9)
        let lean = Self.run(model, FixedSparsity(layers: plans))
        let full = Self.run(model, FixedSparsity(layers: plans, keepsAllKeysAndValues: true))
        expectClose(lean, full, tolerance: 1e-5, name)
        // and reads every K/V row, as the bytes a decoded token reads say.
        let s = model.shape
        let onlyHeadZero = (0..<s.layers).map { $0 == 0 ? LayerPlan.dense : LayerPlan(heads: [0], neurons: nil, shape: s) }
        let kvRowBytes = 2 * s.headDim * model.weightDType.rowBytes(cols: s.hiddenSize)
        #expect(model.decodeBytesPerToken(plans: onlyHeadZero, keepingAllKeysAndValues: true)
                - model.decodeBytesPerToken(plans: onlyHeadZero) == (s.layers - 1) * (s.kvHeads - 1) * kvRowBytes)
    }

    @Test("a plan that keeps everything equals the dense model", arguments: models)
    func keepAllIsDense(name: String) throws {
        let model = try Self.model(name)
        let s = model.shape
        let plans = (0..<s.layers).map { _ in
            LayerPlan(heads: Array(0..<s.heads), neurons: (0..<s.ffnSize).map(Int32.init), shape: s)
        }
        expectClose(Self.run(model, FixedSparsity(layers: plans)), Self.run(model, nil), tolerance: 1e-5, name)
    }

    @Test("zeroing really changes the output (the test above is not vacuous)")
    func masksMatter() throws {
        let model = try Self.model("tiny-llama")
        let plans = randomPlans(shape: model.shape, keep: 0.5, seed: 1)
        let sparse = Self.run(model, FixedSparsity(layers: plans))
        let dense = Self.run(model, nil)
        #expect(zip(sparse, dense).map { abs($0 - $1) }.max()! > 1e-2)
    }

    @Test("half-precision and 8-bit weights and bf16 products skip the same units", arguments: [WeightDType.bf16, .f16, .bf16dot, .q8])
    func halfPrecision(dtype: WeightDType) throws {
        let model = try ModelLoader.load(path: Fixtures.path("tiny-llama"), weights: dtype).model
        let plans = randomPlans(shape: model.shape, keep: 0.5, seed: 5)
        expectClose(Self.run(model, FixedSparsity(layers: plans, execution: .skip)),
                    Self.run(model, FixedSparsity(layers: plans, execution: .zero)), tolerance: 1e-3, "\(dtype)")
    }
}
