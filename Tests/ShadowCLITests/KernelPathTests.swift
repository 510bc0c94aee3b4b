import Foundation
import Testing
import ShadowTestSupport

@Suite("Command line: the kernel paths agree")
struct KernelPathTests {
    /// `perplexity --json`'s nll_sum from the built tool in a child process with `environment` added.
    static func nll(_ arguments: [String], environment: [String: String]) throws -> Double {
        let output = TestScratch.path("kernel-path", suffix: ".json")
        #expect(FileManager.default.createFile(atPath: output, contents: nil))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltTool.path!)
        process.arguments = ["perplexity", "--json", "--no-progress"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as? [String: Any])
        return try #require(json["nll_sum"] as? Double)
    }

    // Without AVX-512 a prefill of more than 96 tokens runs its kept rows through BLAS; with it,
    // through the small-GEMM kernels. SHADOWLLM_NO_AVX512 picks the first on any machine.
    @Test("a sparse prefill past 96 tokens with biases gives the same NLL through BLAS (no AVX-512) as through the small-GEMM kernels",
          .enabled(if: BuiltTool.path != nil, BuiltTool.missing), arguments: ["tiny-llama-bias", "tiny-qwen2", "tiny-opt"])
    func sparseBLASPath(checkpoint: String) throws {
        let text = String(repeating: "The little engine reads a prompt and skips the rest. ", count: 12)
        for method in [["--method", "dense"], ["--method", "random", "--sparsity", "0.5"]] {
            let arguments = ["--model", fixture(checkpoint), "--text", text, "-c", "120", "--weights", "f32"] + method
            let blas = try Self.nll(arguments, environment: ["SHADOWLLM_NO_AVX512": "1"])
            let kernels = try Self.nll(arguments, environment: [:])
            #expect(blas.isFinite && abs(blas - kernels) <= 1e-4 * abs(kernels), "\(checkpoint) \(method): \(blas) vs \(kernels)")
        }
    }

    @Test("16-bit weights past 96 tokens score the same through BLAS (no AVX-512; the head widened a vocabulary slice at a time) as through the small-GEMM kernels",
          .enabled(if: BuiltTool.path != nil, BuiltTool.missing), arguments: ["tiny-llama", "tiny-gemma2"])
    func halfPrecisionBLASPath(checkpoint: String) throws {
        let text = String(repeating: "The little engine reads a prompt and skips the rest. ", count: 12)
        for weights in ["bf16", "f16"] {
            let arguments = ["--model", fixture(checkpoint), "--text", text, "-c", "120", "--weights", weights]
            let blas = try Self.nll(arguments, environment: ["SHADOWLLM_NO_AVX512": "1"])
            let kernels = try Self.nll(arguments, environment: [:])
            #expect(blas.isFinite && abs(blas - kernels) <= 1e-4 * abs(kernels), "\(checkpoint) \(weights): \(blas) vs \(kernels)")
        }
    }
}
