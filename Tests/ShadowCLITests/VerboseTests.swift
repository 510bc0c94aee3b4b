import Foundation
import Testing
@testable import ShadowCLI
import ShadowTestSupport

@Suite("Command line: --verbose")
struct VerboseTests {
    @Test("every subcommand accepts --verbose and documents it, as does the overview")
    func everyCommandAcceptsVerbose() throws {
        #expect(CLIRun(["--help"]).out.contains("--verbose"))
        for command in CLI.commands {
            let parsed = try command.parse(["--verbose"])
            #expect(parsed.flag("verbose"), "\(command.name)")
            #expect(command.help(tool: CLI.toolName).contains("--verbose"), "\(command.name)")
        }
    }

    @Test("without --verbose an error is one line; with it the type, the case and the file follow")
    func verboseAddsDetail() throws {
        let missing = "/no/such/model-\(UUID().uuidString)"
        let plain = CLIRun(["info", "--model", missing])
        #expect(plain.status == 1 && plain.err.split(separator: "\n").count == 1 && plain.err.hasPrefix("error: "))
        for arguments in [["info", "--model", missing, "--verbose"], ["--verbose", "info", "--model", missing]] {
            let run = CLIRun(arguments)
            let lines = run.err.split(separator: "\n").map(String.init)
            #expect(run.status == 1 && lines.first == plain.err.trimmingCharacters(in: .newlines), "\(arguments)")
            #expect(lines.contains("  type: ShadowFormats.ShadowError"), "\(run.err)")
            #expect(lines.contains { $0.hasPrefix("  value: .fileNotFound(path: ") }, "\(run.err)")
            #expect(lines.contains("  file: \(missing) (does not exist)"), "\(run.err)")
        }
    }

    @Test("--verbose gives the size of a file that could not be read")
    func fileSize() throws {
        let path = TestScratch.path("verbose", suffix: ".gguf")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(repeating: 7, count: 100).write(to: URL(fileURLWithPath: path))
        let run = CLIRun(["info", "--model", path, "--verbose"])
        #expect(run.status == 1 && run.err.hasPrefix("error: \(path)"))
        #expect(run.err.contains("  file: \(path) (100 bytes)"), "\(run.err)")
        #expect(run.err.contains("  value: .corruptFile(path: "), "\(run.err)")
    }

    @Test("an unknown option before the subcommand is a one-line error")
    func unknownGlobalOption() {
        let run = CLIRun(["--frob", "info"])
        #expect(run.status == 2 && run.err.hasPrefix("error: --frob") && run.err.split(separator: "\n").count == 1)
    }

    @Test("interruptible commands say what Ctrl-C does in their help")
    func interruptHelp() {
        for name in ["calibrate", "train-predictor"] {
            #expect(CLIRun([name, "--help"]).out.contains("Ctrl-C"), "\(name)")
        }
    }
}
