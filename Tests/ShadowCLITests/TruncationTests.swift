import Foundation
import Testing
import ShadowTestSupport

/// A file that shrinks while mapped raises SIGBUS on the next read of a lost page; the tool's
/// handler turns that into one line naming the file and exit status 1.
#if canImport(Glibc)   // the handler is installed on Linux only
@Suite("Files truncated while mapped")
struct TruncationTests {
    @Test("a model file truncated while mapped ends the tool with one line naming it, not a SIGBUS crash",
          .enabled(if: BuiltTool.path != nil, BuiltTool.missing))
    func truncatedModel() throws {
        let model = TestScratch.path("truncated", suffix: ".gguf")
        try FileManager.default.copyItem(atPath: fixture("tiny-llama-gguf/model.gguf"), toPath: model)
        let intact = try ChildRun(["info", "--model", model])
        #expect(intact.end == .exited(0), "\(intact.err)")
        // The test-only variable truncates the file right after it is mapped, as another process
        // could at any moment; the loader then reads the header from pages that are gone.
        let run = try ChildRun(["info", "--model", model], environment: ["SHADOWLLM_TEST_TRUNCATE_AFTER_MAPPING": model])
        #expect(run.end == .exited(1), "\(run.end): \(run.err)")
        #expect(run.err == "error: \(model): a page of the mapped file could not be read (it shrank while in use, or the disk failed)\n")
        #expect(try FileManager.default.attributesOfItem(atPath: model)[.size] as? Int == 0)
    }
}
#endif

@Suite("Results that cannot be written")
struct UnwritableOutputTests {
    @Test("a full standard output ends the tool with one line and status 1, not a trap",
          .enabled(if: BuiltTool.path != nil, BuiltTool.missing))
    func fullStandardOutput() throws {
        let run = try ChildRun(["info", "--model", fixture("tiny-llama")], output: "/dev/full")
        #expect(run.end == .exited(1), "\(run.end): \(run.err)")
        #expect(run.err == "error: cannot write standard output: No space left on device\n")
    }
}
