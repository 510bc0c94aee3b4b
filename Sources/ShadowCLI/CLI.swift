import Foundation
import ShadowFormats
import ShadowKernels

/// The `shadowllm` tool: a table of subcommands and the dispatcher that runs one.
public enum CLI {
    public static let toolName = "shadowllm"
    public static let version = "0.1.0"

    public static var commands: [Command] {
        [InfoCommand.command, TokenizeCommand.command, GenerateCommand.command, PerplexityCommand.command,
         BenchCommand.command, ScoresCommand.command, CalibrateCommand.command, MergeTracesCommand.command,
         TraceInfoCommand.command, AggregateCommand.command, TrainPredictorCommand.command, PredictorInfoCommand.command,
         EvalCommand.command, SweepCommand.command, PipelineCommand.command]
    }

    public static func overview() -> String {
        var lines = [
            "OVERVIEW: ShadowLLM — contextual sparsity for LLM inference on CPUs.",
            "",
            "USAGE: \(toolName) <subcommand> [options]",
            "",
            "SUBCOMMANDS:",
        ]
        for command in commands {
            lines.append("  " + command.name.padding(toLength: 18, withPad: " ", startingAt: 0) + command.abstract)
        }
        lines += ["", "See '\(toolName) <subcommand> --help' for the options of each."]
        return lines.joined(separator: "\n")
    }

    /// Runs the tool with `arguments` (without the program name). Returns the exit code.
    @discardableResult
    public static func run(_ arguments: [String], console: Console = .standard) -> Int32 {
        guard let name = arguments.first, !["-h", "--help", "help"].contains(name) else {
            console.print(overview())
            return 0
        }
        if name == "--version" { console.print(version); return 0 }
        // Two-word subcommands (`traces merge`) first, then one-word ones.
        let twoWords = arguments.count > 1 ? "\(name) \(arguments[1])" : ""
        let nested = commands.first(where: { $0.name == twoWords })
        guard let command = nested ?? commands.first(where: { $0.name == name }) else {
            let group = commands.filter { $0.name.hasPrefix(name + " ") }.map(\.name)
            if !group.isEmpty {
                console.printError("error: '\(name)' needs one of: \(group.joined(separator: ", "))")
            } else {
                console.printError("error: unknown subcommand '\(name)' (see '\(toolName) --help')")
            }
            return 2
        }
        let rest = Array(arguments.dropFirst(nested == nil ? 1 : 2))
        if rest.contains("--help") || rest.contains("-h") {
            console.print(command.help(tool: toolName))
            return 0
        }
        let verbose = rest.contains("--verbose")
        do {
            let parsed = try command.parse(rest)
            try command.run(parsed, console)
            return 0
        } catch let error as ShadowError {
            console.printError("error: \(error.description)")
            return 1
        } catch {
            console.printError("error: \(verbose ? String(reflecting: error) : String(describing: error))")
            return 1
        }
    }
}

/// Serialises command results as stable, human-readable JSON (sorted keys).
enum JSONOutput {
    static func string<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
