import Foundation
import ShadowFormats

/// A small argument parser with swift-argument-parser's conventions: subcommands, kebab-case
/// long options, `--help` generated from the declarations (with defaults and allowed values),
/// one-line errors.
public struct Option: Sendable {
    public let name: String            // long name without dashes, kebab-case
    public let short: Character?
    public let valueName: String?      // nil: a flag
    public let help: String
    /// A default the parser supplies when the option is absent.
    public let defaultValue: String?
    /// How help describes the default when the command computes it (e.g. "the model's context").
    public let defaultDescription: String?
    public let allowed: [String]?
    /// With `allowed`: the value is a comma-separated list of allowed names (`--criteria a,b`);
    /// otherwise it must be one of them whole.
    public let isList: Bool
    /// Values the command knows but refuses, with why (`bench --method oracle`): the parser says so
    /// for the value and for an option spelled like it (`bench --oracle`), in one step.
    public let refusals: [String: String]

    public static func flag(_ name: String, short: Character? = nil, help: String) -> Option {
        Option(name: name, short: short, valueName: nil, help: help, defaultValue: nil, defaultDescription: nil, allowed: nil, isList: false,
               refusals: [:])
    }

    public static func value(_ name: String, short: Character? = nil, _ valueName: String, help: String,
                             default defaultValue: String? = nil, defaultDescription: String? = nil,
                             allowed: [String]? = nil, list: Bool = false, refusals: [String: String] = [:]) -> Option {
        Option(name: name, short: short, valueName: valueName, help: help, defaultValue: defaultValue,
               defaultDescription: defaultDescription, allowed: allowed, isList: list, refusals: refusals)
    }

    var isFlag: Bool { valueName == nil }

    /// How errors name the option: `--text`, or `-b` for bench's llama-bench-style one-letter options.
    var displayName: String { Self.display(name) }

    /// `--text`, or `-b` for bench's llama-bench-style one-letter options (their only spelling in help).
    static func display(_ name: String) -> String { name.count == 1 ? "-\(name)" : "--\(name)" }
}

/// A subcommand: its name, what it does, its options and the function that runs it.
public struct Command: Sendable {
    public let name: String
    public let abstract: String
    public let discussion: String
    public let options: [Option]
    /// One positional argument (e.g. `traces info DIR`), parsed into the option of that name.
    public let positional: Option?
    public let run: @Sendable (ParsedArguments, Console) throws -> Void
    /// Stops cleanly on SIGINT: the command polls `Interruption` and saves finished work (exit 130).
    public let interruptible: Bool

    public init(name: String, abstract: String, discussion: String = "", positional: Option? = nil, options: [Option],
                interruptible: Bool = false, run: @escaping @Sendable (ParsedArguments, Console) throws -> Void) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.positional = positional
        self.options = options + [.flag("verbose", help: Self.verboseHelp),
                                  .flag("help", short: "h", help: "Show this help.")]
        self.interruptible = interruptible
        self.run = run
    }

    /// Placeholders of options whose value is one file or directory.
    static let pathValueNames: Set<String> = ["path", "dir", "file"]
    static let verboseHelp = "On errors, also print the error's type and details (file size, underlying error); more progress detail."

    public func help(tool: String) -> String {
        var lines = ["OVERVIEW: \(abstract)", ""]
        if !discussion.isEmpty { lines += [discussion, ""] }
        lines.append("USAGE: \(tool) \(name)" + (positional.map { " <\($0.valueName ?? $0.name)>" } ?? "") + " [options]")
        lines.append("")
        if let positional {
            lines.append("ARGUMENTS:")
            lines.append("  " + "<\(positional.valueName ?? positional.name)>".padding(toLength: 26, withPad: " ", startingAt: 0) + positional.help)
            lines.append("")
        }
        if interruptible {
            lines += ["Ctrl-C (SIGINT) or SIGTERM (kill, Slurm, Kubernetes) stops at the next safe point, keeps what can be resumed (see the overview)",
                      "and exits with status 130; a second one stops at once.", ""]
        }
        lines.append("OPTIONS:")
        for option in options {
            var left = "  "
            // bench's llama-bench letters (-p, -n, …) have no longer name: "-p", not "-p, --p".
            if let short = option.short, option.name != String(short) {
                left += "-\(short), --\(option.name)"
            } else {
                left += option.displayName
            }
            if let valueName = option.valueName { left += " <\(valueName)>" }
            var right = option.help
            if let allowed = option.allowed { right += " (values: \(allowed.joined(separator: ", ")))" }
            if let value = option.defaultDescription ?? option.defaultValue { right += " (default: \(value))" }
            if left.count < 28 {
                lines.append(left.padding(toLength: 28, withPad: " ", startingAt: 0) + right)
            } else {
                lines.append(left)
                lines.append(String(repeating: " ", count: 28) + right)
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Whether `arguments` hold `--help` or `-h` as an option, not as the value of one
    /// (`generate --prompt -h` generates from "-h").
    func asksForHelp(_ arguments: [String]) -> Bool {
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            if argument == "--help" || argument == "-h" { return true }
            // An option that takes a value, written without "=", takes the next argument with it.
            let name = argument.hasPrefix("--") ? String(argument.dropFirst(2)) : argument.hasPrefix("-") ? String(argument.dropFirst()) : nil
            if let name, !name.contains("="),
               let option = options.first(where: { $0.name == name || (name.count == 1 && $0.short == name.first) }), !option.isFlag {
                i += 2
            } else {
                i += 1
            }
        }
        return false
    }

    /// Whether `argument` spells one of this command's options, or help, exactly.
    func spellsOption(_ argument: String) -> Bool {
        if argument == "--help" || argument == "-h" { return true }
        if argument.hasPrefix("--") { return options.contains { $0.name == argument.dropFirst(2) } }
        if argument.count == 2, argument.hasPrefix("-"), let letter = argument.last {
            return options.contains { $0.short == letter || $0.name == String(letter) }
        }
        return false
    }

    /// Parses `arguments` (after the subcommand name).
    public func parse(_ arguments: [String]) throws -> ParsedArguments {
        var warnings: [String] = []
        return try parse(arguments, warnings: &warnings)
    }

    /// The same, gathering in `warnings` what the command line should say even if parsing then
    /// fails (a value that spells an option).
    func parse(_ arguments: [String], warnings: inout [String]) throws -> ParsedArguments {
        var values: [String: String] = [:]
        var flags: Set<String> = []
        var i = 0
        func option(named name: String) throws -> Option {
            // One-letter options (bench's llama-bench ones) are spelled with one dash only.
            guard name.count > 1, let found = options.first(where: { $0.name == name }) else {
                let hint: String
                if name.count == 1 && options.contains(where: { $0.name == name || $0.short == name.first }) {
                    hint = " (one-letter options take one dash: -\(name))"
                } else if let owner = options.first(where: { $0.allowed?.contains(name) == true }) {
                    // `bench --json`: a value of another option (bench's -o json), not an option here.
                    hint = " (did you mean \(owner.displayName) \(name)? see --help)"
                } else if let owner = options.first(where: { $0.refusals[name] != nil }), let refusal = owner.refusals[name] {
                    // `bench --oracle`: the value is refused too, and why, in one step.
                    hint = ", and \(owner.displayName) \(name) \(refusal)"
                } else if let near = Suggestion.nearest(to: name, among: options.map(\.name)) {
                    hint = " (did you mean \(Option.display(near))? see --help)"
                } else {
                    hint = " (see --help)"
                }
                throw ShadowError.invalidArgument(name: "--\(name)", reason: "unknown option for '\(self.name)'\(hint)")
            }
            return found
        }
        while i < arguments.count {
            let argument = arguments[i]
            var spec: Option
            var inlineValue: String?
            if argument.hasPrefix("--") {
                var name = String(argument.dropFirst(2))
                if let eq = name.firstIndex(of: "=") {
                    inlineValue = String(name[name.index(after: eq)...])
                    name = String(name[..<eq])
                }
                spec = try option(named: name)
            } else if argument.hasPrefix("-"), argument.count >= 2 {
                var key = String(argument.dropFirst())
                // "-n=8" as "--max-tokens=8".
                if key.count > 2, key.dropFirst().first == "=" {
                    inlineValue = String(key.dropFirst(2))
                    key = String(key.prefix(1))
                }
                if key.count == 1, let found = options.first(where: { $0.short == key.first || $0.name == key }) {
                    spec = found
                } else if let letter = key.first, key.dropFirst().first?.isNumber == true,
                          let found = options.first(where: { !$0.isFlag && ($0.short == letter || $0.name == String(letter)) }) {
                    // "-t1": a value glued to its letter is not read (it could as well be a long
                    // option with one dash); say how to write it.
                    throw ShadowError.invalidArgument(name: argument, reason: "unknown option for '\(name)' (a value goes apart from its option: \(found.short.map { "-\($0)" } ?? found.displayName) \(key.dropFirst()))")
                } else {
                    // Long options take two dashes: "-task" is refused, not read as --task.
                    let hint = options.contains(where: { $0.name == key }) ? " (long options take two dashes: --\(key))" : " (see --help)"
                    throw ShadowError.invalidArgument(name: argument, reason: "unknown option for '\(name)'\(hint)")
                }
            } else if let positional, values[positional.name] == nil {
                if argument.isEmpty, Self.pathValueNames.contains(positional.valueName ?? "") {
                    throw ShadowError.invalidArgument(name: "<\(positional.valueName!)>", reason: "the path is empty")
                }
                values[positional.name] = argument
                i += 1
                continue
            } else {
                throw ShadowError.invalidArgument(name: argument, reason: "unexpected argument for '\(name)' (see --help)")
            }
            // Every option is read once (none is documented as repeatable): a second value would
            // silently replace the first.
            if values[spec.name] != nil || flags.contains(spec.name) {
                throw ShadowError.invalidArgument(name: spec.displayName, reason: "is given twice; give it once")
            }
            if spec.isFlag {
                if inlineValue != nil {
                    throw ShadowError.invalidArgument(name: spec.displayName, reason: "is a flag and takes no value")
                }
                flags.insert(spec.name)
                i += 1
                continue
            }
            let value: String
            if let inlineValue {
                value = inlineValue
                i += 1
            } else {
                guard i + 1 < arguments.count else {
                    throw ShadowError.invalidArgument(name: spec.displayName, reason: "needs a value <\(spec.valueName!)>")
                }
                value = arguments[i + 1]
                i += 2
                // `perplexity --text --json`: taken as the value, as written, but most likely a
                // value left out; the unambiguous spelling says the value is meant.
                if spellsOption(value) {
                    warnings.append("\(spec.displayName) takes \"\(value)\" as its value, though it is also an option of '\(name)' (\(spec.displayName)=\(value) says the value is meant)")
                } else if value.hasPrefix("--"),
                          let near = Suggestion.nearest(to: String(value.dropFirst(2)), among: options.filter { $0.name.count > 1 }.map(\.name) + ["help"]) {
                    // A typo of an option (`--text --jsn`) is as likely a value left out.
                    warnings.append("\(spec.displayName) takes \"\(value)\" as its value, though it is close to the option --\(near) of '\(name)' (\(spec.displayName)=\(value) says the value is meant)")
                }
            }
            // An empty path (an unset shell variable) is named here, not later as a file "".
            if value.isEmpty, Self.pathValueNames.contains(spec.valueName ?? "") {
                throw ShadowError.invalidArgument(name: spec.displayName, reason: "the path is empty")
            }
            if let allowed = spec.allowed {
                // Commands turn these values into enums with `rawValue:`: nothing else may pass.
                let parts = spec.isList ? value.split(separator: ",", omittingEmptySubsequences: false).map(String.init) : [value]
                let names = allowed.joined(separator: ", ")
                for part in parts where !allowed.contains(part) {
                    if let refusal = spec.refusals[part] {
                        throw ShadowError.invalidArgument(name: spec.displayName, reason: "\(part) \(refusal)")
                    }
                    let reason = part.isEmpty
                        ? (spec.isList ? "has an empty item; expected names from \(names)" : "is empty; expected one of \(names)")
                        : "\"\(part)\" is not one of \(names)"
                            // Values are lower case: "PIQA" or "Shadow" are near misses, as typos are; a
                            // near miss of a refused value says why it is refused.
                            + (Suggestion.nearest(to: part.lowercased(), among: allowed + spec.refusals.keys.sorted()).map { near in
                                spec.refusals[near].map { " (\(near) \($0))" } ?? " (did you mean \(near)?)"
                            } ?? "")
                    throw ShadowError.invalidArgument(name: spec.displayName, reason: reason)
                }
            }
            values[spec.name] = value
        }
        var defaults: [String: String] = [:]
        for option in options { if let d = option.defaultValue { defaults[option.name] = d } }
        // A missing positional argument is named as help shows it: `<dir>`, not an option.
        let usage = positional.map { [$0.name: (argument: "<\($0.valueName ?? $0.name)>", usage: "\(CLI.toolName) \(name) <\($0.valueName ?? $0.name)>")] } ?? [:]
        return ParsedArguments(values: values, flags: flags, defaults: defaults, positionals: usage)
    }
}

/// `word` as a POSIX shell reads it back: as it is when it holds only safe characters, else in
/// single quotes (a quote inside closed, escaped and reopened), so a recorded command can be pasted.
func shellQuoted(_ word: String) -> String {
    let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@+%")
    if !word.isEmpty && word.allSatisfy(safe.contains) { return word }
    return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// Parsed option values with typed accessors whose errors name the option.
public struct ParsedArguments: Sendable {
    /// Options given with a value, and the flags given (kept apart, so a value that reads "true"
    /// stays a value).
    let values: [String: String]
    let flags: Set<String>
    let defaults: [String: String]
    /// The positional argument's name → how help writes it (`<dir>`) and its usage line.
    var positionals: [String: (argument: String, usage: String)] = [:]

    public func flag(_ name: String) -> Bool { flags.contains(name) }

    /// The options as given, sorted by name, e.g. `["--limit", "200", "--quick"]` (for reports
    /// that record the command that made them). A value starting with a dash is joined to its
    /// option (`--out=-h`), so that the command reads back as it ran.
    public var given: [String] {
        (Array(values.keys) + flags).sorted().flatMap { name in
            values[name].map { $0.hasPrefix("-") ? ["\(Option.display(name))=\($0)"] : [Option.display(name), $0] } ?? [Option.display(name)]
        }
    }

    public func string(_ name: String) -> String? { values[name] ?? defaults[name] }

    /// Whether the option was given on the command line (with a value or as a flag).
    public func has(_ name: String) -> Bool { values[name] != nil || flags.contains(name) }

    public func required(_ name: String) throws -> String {
        guard let value = string(name) else {
            if let positional = positionals[name] {
                throw ShadowError.invalidArgument(name: positional.argument, reason: "is required (\(positional.usage))")
            }
            throw ShadowError.invalidArgument(name: Option.display(name), reason: "is required")
        }
        return value
    }

    public func int(_ name: String, range: ClosedRange<Int>? = nil) throws -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text) else {
            // A whole number past Int's range is still a number: say which values are allowed.
            let digits = text.first == "-" || text.first == "+" ? text.dropFirst() : Substring(text)
            let isWhole = !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
            let bound = text.first == "-" ? "must be at least \(range?.lowerBound ?? Int.min)" : "must be at most \(range?.upperBound ?? Int.max)"
            throw ShadowError.invalidArgument(name: Option.display(name), reason: isWhole ? "\(bound), got \(text)" : "expected an integer, got \"\(text)\"")
        }
        if let range, !range.contains(value) {
            throw ShadowError.invalidArgument(name: Option.display(name), reason: "\(Self.describe(range, value: value)), got \(value)")
        }
        return value
    }

    /// "must be in 1...8", or "must be at least 1" when the upper end only stands for no limit
    /// (and "must be at most" it for a `value` past it: `--top-k` stops at Int32's).
    static func describe(_ range: ClosedRange<Int>, value: Int, must: String = "must be") -> String {
        guard range.upperBound >= Int(Int32.max) else { return "\(must) in \(range.lowerBound)...\(range.upperBound)" }
        return value > range.upperBound ? "\(must) at most \(range.upperBound)" : "\(must) at least \(range.lowerBound)"
    }

    public func double(_ name: String, range: ClosedRange<Double>? = nil) throws -> Double? {
        guard let text = string(name) else { return nil }
        guard let value = Double(text), value.isFinite else {
            throw ShadowError.invalidArgument(name: Option.display(name), reason: "expected a number, got \"\(text)\"")
        }
        if let range, !range.contains(value) {
            throw ShadowError.invalidArgument(name: Option.display(name), reason: "must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
        }
        return value
    }

    /// A comma-separated list of integers (`-t 1,2`).
    public func intList(_ name: String, range: ClosedRange<Int>? = nil) throws -> [Int]? {
        guard let text = string(name) else { return nil }
        // Empty items are refused ("8," or "1,,2" are typing slips, not lists of two).
        return try text.split(separator: ",", omittingEmptySubsequences: false).map { part in
            guard let value = Int(part.trimmingCharacters(in: .whitespaces)) else {
                throw ShadowError.invalidArgument(name: Option.display(name), reason: "expected integers separated by commas, got \"\(text)\"")
            }
            if let range, !range.contains(value) {
                throw ShadowError.invalidArgument(name: Option.display(name), reason: "\(Self.describe(range, value: value, must: "values must be")), got \(value)")
            }
            return value
        }
    }

    /// A comma-separated list of names or numbers; an empty value is an empty list (for the
    /// command to judge), an empty item in a longer one ("a,", "a,,b") a typing slip refused here.
    public func list(_ name: String) throws -> [String]? {
        guard let text = string(name) else { return nil }
        if text.trimmingCharacters(in: .whitespaces).isEmpty { return [] }
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingCharacters(in: .whitespaces) }
        if items.contains("") {
            throw ShadowError.invalidArgument(name: Option.display(name), reason: "has an empty item in \"\(text)\"")
        }
        return items
    }
}

/// Where a command writes: results to `out` (stdout), progress and diagnostics to `err`.
public final class Console: @unchecked Sendable {
    public let out: (String) -> Void
    public let err: (String) -> Void
    /// The next line of input without its newline, nil at its end (`chat` reads its turns here).
    public let readLine: () throws -> String?
    /// Everything left on standard input, byte for byte (`--text-file -`).
    public let readAll: () throws -> [UInt8]
    /// Whether a person is typing at a terminal (input and output both terminals): `chat` then
    /// shows a prompt mark.
    public let interactive: Bool
    /// Whether `err` is a terminal: progress bars redraw one line there, and elsewhere (a log
    /// file, a pipe) print a plain line now and then instead.
    public let errIsTerminal: Bool

    public init(out: @escaping (String) -> Void, err: @escaping (String) -> Void,
                readLine: @escaping () throws -> String? = { nil }, readAll: @escaping () throws -> [UInt8] = { [] },
                interactive: Bool = false, errIsTerminal: Bool = false) {
        self.out = out
        self.err = err
        self.readLine = readLine
        self.readAll = readAll
        self.interactive = interactive
        self.errIsTerminal = errIsTerminal
    }

    /// Results that cannot be written (a full disk, a closed pipe with SIGPIPE ignored) end the
    /// run with one line and status 1; a diagnostic that cannot be written is dropped.
    public static let standard = Console(
        out: { text in
            if let failure = writeAll(text, to: STDOUT_FILENO) {
                _ = writeAll("error: cannot write standard output: \(failure)\n", to: STDERR_FILENO)
                exit(1)
            }
        },
        err: { _ = writeAll($0, to: STDERR_FILENO) },
        readLine: { try standardInput.next() },
        readAll: { try standardInput.rest() },
        interactive: isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1,
        errIsTerminal: isatty(STDERR_FILENO) == 1)

    private static let standardInput = LineReader(descriptor: STDIN_FILENO, name: "standard input")

    /// Writes every byte of `text` to `descriptor`, or returns why it could not. Plain write(2):
    /// Foundation's `FileHandle.write(_:)` traps on a failed write.
    static func writeAll(_ text: String, to descriptor: Int32) -> String? {
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                return String(cString: strerror(errno))
            }
            written += result
        }
        return nil
    }

    public func print(_ line: String) { out(line + "\n") }
    public func printError(_ line: String) { err(line + "\n") }

    /// `--verbose`'s line naming the labels file a PIQA or Winogrande file is read with, in the
    /// same words in every command: given with `--labels`, or found beside the data.
    func printLabels(_ command: String, task: String, labels: String, data: String, given: Bool) {
        printError("\(command): \(task) labels from \(labels) (" + (given ? "--labels" : "found beside \(data)") + ")")
    }
}

/// Lines of a descriptor, each at most `limit` bytes: Swift's `readLine` would grow without end
/// on input that has no newline (`chat < /dev/zero`). Invalid UTF-8 is repaired, not refused.
/// A longer line is skipped through its newline and reported as `LineTooLong`, so the reader
/// stays in step with the lines after it; one with no newline within `skipLimit` bytes ends reading.
final class LineReader: @unchecked Sendable {
    let descriptor: Int32
    let name: String
    let limit: Int
    let skipLimit: Int
    private var buffer: [UInt8] = []
    private var atEnd = false

    init(descriptor: Int32, name: String, limit: Int = 1 << 20, skipLimit: Int = 64 << 20) {
        self.descriptor = descriptor
        self.name = name
        self.limit = limit
        self.skipLimit = skipLimit
    }

    /// A line read past and not returned; reading can go on with the next one.
    protocol SkippedLine: Error {
        /// The line's first characters, for a report.
        var start: String { get }
        var reason: String { get }
    }

    /// A line past the limit, skipped; `start` holds its first characters, to name it.
    struct LineTooLong: SkippedLine, Equatable, CustomStringConvertible {
        let name: String
        let limit: Int
        let start: String
        var size: String { limit % (1 << 20) == 0 ? "\(limit >> 20) MiB" : "\(limit) bytes" }
        var reason: String { "a line is longer than \(size) (one message per line is expected)" }
        var description: String { "\(name): \(reason)" }
    }

    struct LineNotUTF8: SkippedLine, Equatable, CustomStringConvertible {
        let name: String
        let start: String
        var reason: String { "a line is not valid UTF-8 text" }
        var description: String { "\(name): \(reason)" }
    }

    /// `bytes` as text, or the error that skips them.
    private func text(_ bytes: ArraySlice<UInt8>) throws -> String {
        guard let line = String(validating: bytes, as: UTF8.self) else {
            throw LineNotUTF8(name: name, start: String(decoding: bytes.prefix(60), as: UTF8.self) + (bytes.count > 60 ? "…" : ""))
        }
        return line
    }

    /// Everything not read yet, up to 1 GiB (as readWholeFile reads files: `-` for /dev/zero must end).
    func rest() throws -> [UInt8] {
        while !atEnd {
            try fill()
            guard buffer.count <= 1 << 30 else { throw ShadowError.invalidArgument(name: name, reason: "is longer than 1 GiB") }
        }
        defer { buffer.removeAll() }
        return buffer
    }

    /// Reads one more chunk into the buffer (or notes the end).
    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ShadowError.failed("cannot read \(name): \(String(cString: strerror(errno)))")
            }
            if count == 0 { atEnd = true } else { buffer += chunk[..<count] }
            return
        }
    }

    /// The next line without its "\n", nil once the input is used up.
    func next() throws -> String? {
        var searched = 0
        while true {
            if let newline = buffer[searched...].firstIndex(of: UInt8(ascii: "\n")) {
                guard newline <= limit else { throw try skipLine() }
                let bytes = buffer[..<newline]
                defer { buffer.removeSubrange(...newline) }
                return try text(bytes)
            }
            searched = buffer.count
            guard buffer.count <= limit else { throw try skipLine() }
            if atEnd {
                guard !buffer.isEmpty else { return nil }
                defer { buffer.removeAll() }
                return try text(buffer[...])
            }
            try fill()
        }
    }

    /// Drops the over-long line at the buffer's start, through its newline, and returns what
    /// to throw; a line without a newline within `skipLimit` bytes ends reading instead.
    private func skipLine() throws -> LineTooLong {
        let end = min(buffer.firstIndex(of: UInt8(ascii: "\n")) ?? buffer.count, 60)
        let tooLong = LineTooLong(name: name, limit: limit, start: String(decoding: buffer[..<end], as: UTF8.self) + "…")
        var skipped = 0
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                buffer.removeSubrange(...newline)
                return tooLong
            }
            skipped += buffer.count
            buffer.removeAll()
            guard skipped <= skipLimit else {
                throw ShadowError.invalidArgument(name: name, reason: "a line is longer than \(skipLimit >> 20) MiB without a newline")
            }
            if atEnd { return tooLong }
            try fill()
        }
    }
}

/// The name a mistyped one most likely meant: a unique name it begins, else the closest by edit
/// distance, if that is near enough (at most 2 edits, and fewer than half the name's letters).
enum Suggestion {
    static func nearest(to typed: String, among candidates: [String]) -> String? {
        guard !typed.isEmpty else { return nil }
        let names = candidates.droppingRepeats()
        let starting = names.filter { $0.hasPrefix(typed) }
        if starting.count == 1 { return starting[0] }
        let scored = names.map { (name: $0, distance: distance(Array(typed), Array($0))) }
        guard let best = scored.min(by: { $0.distance < $1.distance }),
              best.distance <= 2, 2 * best.distance < typed.count,
              scored.filter({ $0.distance == best.distance }).count == 1 else { return nil }
        return best.name
    }

    /// Levenshtein distance, a swap of two neighbours counting as one edit.
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1) }
            }
        }
        return table[a.count][b.count]
    }
}

extension Array where Element: Hashable {
    /// The elements in their order, each kept at its first place only (a list option naming a
    /// value twice means it once).
    func droppingRepeats() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
