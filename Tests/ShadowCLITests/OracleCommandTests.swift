import Foundation
import Testing
@testable import ShadowCLI
import ShadowTestSupport

/// `--method oracle` needs a real prompt to take its criterion from: a run must never claim a
/// sparsity its masks did not have.
@Suite("Command line: the oracle outside eval and sweep")
struct OracleCommandTests {
    @Test("bench refuses the oracle rather than timing the dense model under a sparse label")
    func benchRefusesOracle() {
        let run = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "16", "-n", "4", "-r", "1",
                          "--method", "oracle", "--sparsity", "0.5", "--no-progress"])
        #expect(run.status == 1 && run.out.isEmpty, "\(run.out)")
        #expect(run.err.hasPrefix("error: --method: oracle cannot be timed: ") && run.err.split(separator: "\n").count == 1, "\(run.err)")
        // Spelled as an option, it is refused with the same reason, not sent to --method oracle first.
        let option = CLIRun(["bench", "--model", fixture("tiny-llama"), "--oracle"])
        #expect(option.status == 1 && option.err.hasPrefix("error: --oracle: unknown option for 'bench', and --method oracle cannot be timed: ")
                && option.err.split(separator: "\n").count == 1, "\(option.err)")
        // A near miss of the refused value says why it is refused rather than suggesting it.
        let nearMiss = CLIRun(["bench", "--model", fixture("tiny-llama"), "--method", "dense,Oracle"])
        #expect(nearMiss.status == 1 && nearMiss.err.hasPrefix("error: --method: \"Oracle\" is not one of dense, random, static, shadow, dejavu, dejavu-lookahead (oracle cannot be timed: "),
                "\(nearMiss.err)")
    }

    @Test("bench rows of sparse methods report the sparsity their masks realised")
    func benchSparseRowsAreSparse() throws {
        let run = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "16", "-n", "4", "-r", "1", "--method", "dense,random",
                          "--sparsity", "0.5", "-o", "json", "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        let rows = try #require(try run.json()["results"] as? [[String: Any]])
        let random = rows.filter { $0["method"] as? String == "random" }
        #expect(random.count == 2)
        for row in random {
            #expect((row["realised_head_sparsity"] as? Double ?? 0) > 0.2 && (row["realised_neuron_sparsity"] as? Double ?? 0) > 0.2, "\(row)")
        }
    }

    @Test("generate with the oracle masks from the prompt's criterion, and refuses a prompt of one token")
    func generateOracle() throws {
        let model = fixture("tiny-llama")
        let oracle = ["--method", "oracle", "--sparsity", "0.5", "-n", "4", "--json"]
        let dense = CLIRun(["generate", "--model", model, "--prompt", "Once upon a time there was", "-n", "4", "--json"])
        let sparse = CLIRun(["generate", "--model", model, "--prompt", "Once upon a time there was"] + oracle)
        #expect(dense.status == 0 && sparse.status == 0, "\(sparse.err)")
        let oneToken = CLIRun(["generate", "--model", model, "--prompt", "a"] + oracle)
        #expect(oneToken.status == 1 && oneToken.out.isEmpty, "\(oneToken.out)")
        #expect(oneToken.err.hasPrefix("error: --method: oracle needs a prompt of at least 2 tokens"), "\(oneToken.err)")
    }

    @Test("perplexity with the oracle differs from dense: each window's criterion masks it")
    func perplexityOracle() throws {
        let text = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."
        let dense = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", text, "--json"])
        let oracle = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", text, "--json",
                             "--method", "oracle", "--sparsity", "0.5"])
        #expect(dense.status == 0 && oracle.status == 0, "\(oracle.err)")
        #expect(try dense.json()["nll_sum"] as? Double != (try oracle.json()["nll_sum"] as? Double))
    }
}
