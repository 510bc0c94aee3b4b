import Foundation
import ShadowFormats
import ShadowKernels

/// The `shadowllm` tool: a table of subcommands and the dispatcher that runs one.
public enum CLI {
    public static let toolName = "shadowllm"
    public static let version = "0.1.0"

    public static var commands: [Command] {
        [InfoCommand.command, TokenizeCommand.command, GenerateCommand.command, ChatCommand.command, PerplexityCommand.command,
         BenchCommand.command, ScoresCommand.command, CalibrateCommand.command, MergeTracesCommand.command,
         TraceInfoCommand.command, AggregateCommand.command, TrainPredictorCommand.command, PredictorInfoCommand.command,
         EvalCommand.command, SweepCommand.command, PipelineCommand.command]
    }

    public static func overview() -> String {
        var lines = [
            "OVERVIEW: ShadowLLM — contextual sparsity for LLM inference on CPUs.",
            "",
            "USAGE: \(toolName) [--verbose] <subcommand> [options]",
            "",
            "SUBCOMMANDS:",
        ]
        for command in commands {
            lines.append("  " + command.name.padding(toLength: 18, withPad: " ", startingAt: 0) + command.abstract)
        }
        lines += ["",
                  "OPTIONS (every subcommand):",
                  "  --verbose         " + Command.verboseHelp,
                  "  -h, --help        Show help (of a subcommand when it follows one).",
                  "",
                  "OPTIONS (without a subcommand):",
                  "  --version         Print the version.",
                  "",
                  "Errors print one line, `error: ...`, and exit with status 1, or 2 for an unknown subcommand or an",
                  "option before it; warnings print `warning: ...` and the command goes on. Without a subcommand this",
                  "overview is printed (status 0).",
                  "Ctrl-C or SIGTERM stops calibrate, train-predictor and sweep at a safe point (resumable), pipeline",
                  "so in those steps and its replies (at once in the others), and generate where its text got to",
                  "(exit status 130); in chat, Ctrl-C stops the reply being written.",
                  "",
                  "See '\(toolName) <subcommand> --help' for the options of each."]
        return lines.joined(separator: "\n")
    }

    /// The exit status after SIGINT, as shells report a process stopped by it (128 + 2).
    public static let interruptedStatus: Int32 = 130

    /// Runs the tool with the bytes of its arguments (without the program name), as the system
    /// passed them. Swift's `CommandLine.arguments` turns bytes that are not UTF-8 into U+FFFD;
    /// an argument with such bytes is refused instead (status 1), as a --text-file with them is. A
    /// path that is not UTF-8 could not be opened from the repaired string either.
    @discardableResult
    public static func run(argumentBytes: [[UInt8]], console: Console = .standard) -> Int32 {
        var arguments: [String] = []
        for (index, bytes) in argumentBytes.enumerated() {
            guard let argument = String(validating: bytes, as: UTF8.self) else {
                let previous = index > 0 ? String(decoding: argumentBytes[index - 1], as: UTF8.self) : ""
                let after = previous.hasPrefix("-") ? " (after \(previous))" : ""
                // Bytes outside printable ASCII as \xNN, the way shells print them.
                let shown = bytes.map { (0x20..<0x7F).contains($0) ? String(UnicodeScalar($0)) : "\\x" + String(format: "%02X", $0) }.joined()
                console.printError("error: argument \(index + 1)\(after), \"\(shown)\", is not valid UTF-8: arguments, paths included, are read as UTF-8 (give a text in a UTF-8 file; rename a file, or link it under a UTF-8 name)")
                return 1
            }
            arguments.append(argument)
        }
        return run(arguments, console: console)
    }

    /// Runs the tool with `arguments` (without the program name). Returns the exit code.
    @discardableResult
    public static func run(_ arguments: [String], console: Console = .standard) -> Int32 {
        // `--verbose` is global: before the subcommand it applies to the subcommand.
        let leading = arguments.prefix(while: { $0.hasPrefix("-") && $0 != "-h" && $0 != "--help" && $0 != "--version" })
        let globalVerbose = leading.contains("--verbose")
        if let unknown = leading.first(where: { $0 != "--verbose" }) {
            console.printError("error: \(unknown): unknown option before the subcommand (see '\(toolName) --help')")
            return 2
        }
        var arguments = Array(arguments.dropFirst(leading.count))
        // `help COMMAND` is `COMMAND --help`.
        if arguments.first == "help", arguments.count > 1 { arguments = Array(arguments.dropFirst()) + ["--help"] }
        guard let name = arguments.first, !["-h", "--help", "help"].contains(name) else {
            console.print(overview())
            return 0
        }
        if name == "--version" {
            guard arguments.count == 1 else {
                console.printError("error: --version is given alone, found '\(arguments[1])' after it (see '\(toolName) --help')")
                return 2
            }
            console.print(version)
            return 0
        }
        // Two-word subcommands (`traces merge`) first, then one-word ones.
        let twoWords = arguments.count > 1 ? "\(name) \(arguments[1])" : ""
        let nested = commands.first(where: { $0.name == twoWords })
        guard let command = nested ?? commands.first(where: { $0.name == name }) else {
            let group = commands.filter { $0.name.hasPrefix(name + " ") }.map(\.name)
            if !group.isEmpty, arguments.count > 1, ["-h", "--help"].contains(arguments[1]) {
                console.print(commands.filter { group.contains($0.name) }.map { "  \($0.name.padding(toLength: 17, withPad: " ", startingAt: 0)) \($0.abstract)" }
                                .joined(separator: "\n") + "\n\nSee " + group.map { "'\(toolName) \($0) --help'" }.joined(separator: " or ")
                              + (group.count == 1 ? " for its options." : " for the options of each."))
                return 0
            }
            if !group.isEmpty {
                let given = arguments.count > 1 && !arguments[1].hasPrefix("-") ? "unknown subcommand '\(name) \(arguments[1])'; " : ""
                console.printError("error: \(given)'\(name)' needs one of: \(group.joined(separator: ", "))")
            } else {
                let near = Suggestion.nearest(to: name, among: commands.map { String($0.name.prefix { $0 != " " }) })
                console.printError("error: unknown subcommand '\(name)' (\(near.map { "did you mean '\($0)'? " } ?? "")see '\(toolName) --help')")
            }
            return 2
        }
        var rest = Array(arguments.dropFirst(nested == nil ? 1 : 2))
        if command.asksForHelp(rest) {
            console.print(command.help(tool: toolName))
            return 0
        }
        // First, so that an option missing its value at the end does not take it as the value.
        if globalVerbose && !rest.contains("--verbose") { rest.insert("--verbose", at: 0) }
        let verbose = rest.contains("--verbose")
        do {
            // Warnings of the parse come first, also before its error: a value that spelled an
            // option (`--text --context 8`) explains an "unexpected argument" after it.
            var warnings: [String] = []
            let parse = Result { try command.parse(rest, warnings: &warnings) }
            for warning in warnings { console.printError("warning: " + warning) }
            let parsed = try parse.get()
            if command.interruptible {
                try Interruption.handling { try command.run(parsed, console) }
            } else {
                try command.run(parsed, console)
            }
            return 0
        } catch ShadowError.interrupted(let message) {
            console.printError("interrupted: \(message)")
            return interruptedStatus
        } catch {
            console.printError("error: \(String(describing: error))")
            if verbose { for line in details(of: error) { console.printError("  " + line) } }
            return 1
        }
    }

    /// What `--verbose` adds under the one-line error: the error's type and full value, the
    /// size of the file it names, and any underlying system error.
    static func details(of error: any Error) -> [String] {
        var lines = ["type: \(String(reflecting: type(of: error)))", "value: \(structure(of: error))"]
        var path = (error as? ShadowError)?.path
        let nsError = error as NSError
        if path == nil, let file = nsError.userInfo[NSFilePathErrorKey] as? String { path = file }
        if path == nil, let url = nsError.userInfo[NSURLErrorKey] as? URL, url.isFileURL { path = url.path }
        if let path { lines.append("file: " + describeFile(path)) }
        if !(error is ShadowError) {
            lines.append("domain: \(nsError.domain), code \(nsError.code)")
            if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? any Error {
                lines.append("underlying: \(String(reflecting: underlying))")
            }
        }
        return lines
    }

    /// An enum error as `case(label: value, …)`, which its one-line description hides; anything
    /// else as `String(reflecting:)`.
    static func structure(of value: Any) -> String {
        let mirror = Mirror(reflecting: value)
        guard mirror.displayStyle == .enum, let child = mirror.children.first, let name = child.label else {
            return String(reflecting: value)
        }
        let payload = Mirror(reflecting: child.value)
        let fields = payload.displayStyle == .tuple
            ? payload.children.map { ($0.label.map { $0.hasPrefix(".") ? "" : $0 + ": " } ?? "") + String(reflecting: $0.value) }
            : [String(reflecting: child.value)]
        return ".\(name)(\(fields.joined(separator: ", ")))"
    }

    /// "PATH (N bytes)", "PATH (directory)", "PATH (does not exist)" or the reason stat(2) gave.
    static func describeFile(_ path: String) -> String {
        let kind: FileKind?
        do {
            kind = try fileKind(atPath: path)
        } catch ShadowError.unreadableFile(_, let reason) {
            return "\(path) (\(reason))"
        } catch {
            return "\(path) (\(error))"
        }
        guard let kind else { return "\(path) (does not exist)" }
        if kind == .directory { return "\(path) (directory)" }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
        return "\(path) (\(size.map { "\($0) bytes" } ?? "size unknown"))"
    }
}

/// Serialises command results as stable, human-readable JSON (sorted keys). A NaN (a standard
/// error of one item, a mean of nothing) is written as null, a value that is not there; an
/// infinity (a perplexity past the range of doubles) as the string "inf" or "-inf".
enum JSONOutput {
    /// What NaN is encoded as before it becomes null: a string no report holds (control
    /// characters around a UUID drawn at start).
    private static let notANumber = "\u{0}NaN-\(UUID().uuidString)\u{0}"

    /// Pretty-printed, or on one line (JSON Lines) with `pretty` false.
    static func string<T: Encodable>(_ value: T, pretty: Bool = true) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return try nullingNaN(encoder, value)
    }

    /// `value` encoded with NaN as null and infinities as "inf" / "-inf".
    static func nullingNaN<T: Encodable>(_ encoder: JSONEncoder, _ value: T) throws -> String {
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: notANumber)
        let text = String(decoding: try encoder.encode(value), as: UTF8.self)
        // The sentinel as the encoder spells it: quoted, its NULs escaped.
        let spelled = String(decoding: try encoder.encode(notANumber), as: UTF8.self)
        return text.replacingOccurrences(of: spelled, with: "null")
    }
}
