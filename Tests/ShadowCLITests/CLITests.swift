import Foundation
import Testing
import ShadowFormats
import ShadowKernels
import ShadowModels
import ShadowTokenizers
@testable import ShadowCLI
import ShadowModelTestSupport
import ShadowTestSupport

/// Runs the CLI in-process and captures what it prints.
struct CLIRun {
    let status: Int32
    let out: String
    let err: String

    /// `onError` sees each piece of stderr as it is printed (a test can act at that moment).
    /// `input`: the lines standard input would give (`chat`); `stdin`: its bytes read whole (`--text-file -`).
    init(_ arguments: [String], input: [String] = [], stdin: String = "", onError: @escaping (String) -> Void = { _ in }) {
        final class Box: @unchecked Sendable { var out = "", err = "", input: [String] = [] }
        let box = Box()
        box.input = input
        status = CLI.run(arguments, console: Console(out: { box.out += $0 }, err: { box.err += $0; onError($0) },
                                                     readLine: { box.input.isEmpty ? nil : box.input.removeFirst() },
                                                     readAll: { Array(stdin.utf8) }))
        out = box.out
        err = box.err
    }

    func json() throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
    }
}

/// The path of one of the tiny reference checkpoints, as the commands are given it.
func fixture(_ name: String) -> String { ModelFixtures.path(name) }

@Suite("Command line")
struct CLITests {
    @Test("--help lists every subcommand and each subcommand documents its options")
    func help() {
        let overview = CLIRun(["--help"])
        #expect(overview.status == 0)
        for name in ["info", "tokenize", "generate", "perplexity"] {
            #expect(overview.out.contains(name))
            let help = CLIRun([name, "--help"])
            #expect(help.status == 0 && help.out.contains("USAGE: shadowllm \(name)") && help.out.contains("--model"))
        }
        #expect(CLIRun(["generate", "--help"]).out.contains("(default: 128)"))
        // bench's llama-bench letters show once, as typed; letters of longer names show both.
        let bench = CLIRun(["bench", "--help"]).out
        #expect(bench.contains("\n  -p <n,…>") && bench.contains("\n  -o <format>") && !bench.contains("--p "), "\(bench)")
        #expect(bench.contains("\n  -m, --model <path>") && bench.contains("\n  -t, --threads <n,…>"), "\(bench)")
    }

    @Test("a GGUF whose pre-tokenizer we do not implement is used with a warning on stderr, by tokenize and by model commands")
    func unknownPreTokenizerWarns() throws {
        var bytes = try Data(contentsOf: URL(fileURLWithPath: fixture("tiny-llama-gguf/model.gguf")))
        let value = Data("\u{5}\0\0\0\0\0\0\0gpt-2".utf8)   // tokenizer.ggml.pre: u64 length, "gpt-2"
        let range = try #require(bytes.range(of: value))
        bytes.replaceSubrange(range, with: Data("\u{5}\0\0\0\0\0\0\0zzz-9".utf8))
        let path = TestScratch.path("unknown-pre", suffix: ".gguf")
        try bytes.write(to: URL(fileURLWithPath: path))
        let warning = "warning: \(path): tokenizer.ggml.pre \"zzz-9\" is not one we implement; using the GPT-2 split, so some texts may tokenize differently\n"
        for arguments in [["tokenize", "--text", "hello"], ["generate", "-p", "hello", "-n", "1"]] {
            let run = CLIRun(arguments + ["--model", path])
            #expect(run.status == 0 && run.err == warning, "\(arguments): \(run.err)")
            let plain = CLIRun(arguments + ["--model", fixture("tiny-llama-gguf/model.gguf")])
            #expect(plain.status == 0 && plain.err.isEmpty, "\(arguments): \(plain.err)")
        }
    }

    @Test("a tokenizer_config.json whose chat template cannot be read warns naming the file once; a token of the wrong type is named as such")
    func unreadableTemplateWarns() throws {
        let model = scratchPath("odd-tokenizer-config")
        defer { try? FileManager.default.removeItem(atPath: model) }
        try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: model)
        let config = model + "/tokenizer_config.json"
        try #"{"chat_template": 5}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let run = CLIRun(["tokenize", "--model", model, "--text", "hello"])
        #expect(run.status == 0 && run.err.hasPrefix("warning: \(config): key \"chat_template\": ")
                && run.err.hasSuffix("; the chat template is not used\n") && run.err.components(separatedBy: config).count == 2, "\(run.err)")
        try #"{"eos_token": 5}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let number = CLIRun(["tokenize", "--model", model, "--text", "hello"])
        #expect(number.status == 1 && number.err == "error: \(config): key \"eos_token\": expected a string or an object with \"content\", found a number\n",
                "\(number.err)")
    }

    @Test("unknown subcommands, unknown options and bad values fail with one line")
    func badArguments() {
        for arguments in [["frobnicate"], ["info", "--frob"], ["generate", "--max-tokens", "many", "--prompt", "x"],
                          ["generate", "--prompt"], ["perplexity", "--context", "-3", "--text", "x"],
                          ["--version", "info"], ["traces", "foo"]] {
            let run = CLIRun(arguments)
            #expect(run.status != 0, "\(arguments)")
            #expect(run.err.hasPrefix("error: ") && run.err.split(separator: "\n").count == 1, "\(arguments): \(run.err)")
        }
        #expect(CLIRun(["traces", "foo"]).err.contains("unknown subcommand 'traces foo'; 'traces' needs one of: "))
        #expect(CLIRun(["--version"]).status == 0)
    }

    @Test("options are spelled as help writes them: long ones with two dashes, bench's one-letter ones with one, and errors name them so")
    func spellings() {
        let model = fixture("tiny-llama")
        // A value in the wrong case, or one letter off, gets the allowed value it most likely meant.
        for (arguments, start, suggestion) in [
            (["eval", "--model", model, "--task", "PIQA", "--data", model], "error: --task: \"PIQA\" is not one of ", "piqa"),
            (["generate", "--model", model, "-p", "x", "--method", "Shadow"], "error: --method: \"Shadow\" is not one of ", "shadow"),
            (["sweep", "--model", model, "--criteria", "plainact,l2norm"], "error: --criteria: \"l2norm\" is not one of ", "l2_norm"),
        ] {
            let run = CLIRun(arguments)
            #expect(run.status == 1 && run.err.hasPrefix(start) && run.err.hasSuffix(" (did you mean \(suggestion)?)\n"), "\(arguments): \(run.err)")
        }
        for (arguments, expected) in [
            (["tokenize", "--model", model, "-text", "a"], "error: -text: unknown option for 'tokenize' (long options take two dashes: --text)\n"),
            (["info", "--model", model, "-help"], "error: -help: unknown option for 'info' (long options take two dashes: --help)\n"),
            (["bench", "--model", model, "--p", "8"], "error: --p: unknown option for 'bench' (one-letter options take one dash: -p)\n"),
            (["bench", "--model", model, "-p", "8", "-n", "0", "-o", "xml"], "error: -o: \"xml\" is not one of md, csv, json\n"),
            (["bench", "--model", model, "-p"], "error: -p: needs a value <n,…>\n"),
            (["tokenize", "--model", model, "--text=a", "--json=yes"], "error: --json: is a flag and takes no value\n"),
            // A one-name option takes one name whole; lists refuse empty items.
            (["info", "--model", model, "--weights", "f16,f32"], "error: --weights: \"f16,f32\" is not one of f32, bf16, f16, bf16-dot, q8\n"),
            (["info", "--model", model, "--weights="], "error: --weights: is empty; expected one of f32, bf16, f16, bf16-dot, q8\n"),
            (["bench", "--model", model, "-p", "8", "-n", "0", "--weights", "f16,"], "error: --weights: has an empty item; expected names from f32, bf16, f16, bf16-dot, q8\n"),
            (["bench", "--model", model, "-p", "8,", "-n", "0"], "error: -p: expected integers separated by commas, got \"8,\"\n"),
            (["bench", "--model", model, "-p", "", "-n", "0"], "error: -p: expected integers separated by commas, got \"\"\n"),
            (["bench", "--model", model, "-p", "8", "-n", "0", "--sparsity", "0.5,"], "error: --sparsity: has an empty item in \"0.5,\"\n"),
        ] {
            let run = CLIRun(arguments)
            #expect(run.status == 1 && run.err == expected, "\(arguments): \(run.err)")
        }
        #expect(CLIRun(["tokenize", "-m", model, "--text", "a"]).status == 0)   // a declared short name
    }

    @Test("bench checks every option, --refresh too, before it reads the model file")
    func benchChecksOptionsBeforeTheModel() throws {
        let junk = TestScratch.path("bench-junk", suffix: ".gguf")
        try Data("junk, not a model".utf8).write(to: URL(fileURLWithPath: junk))
        let run = CLIRun(["bench", "--model", junk, "-p", "8", "-n", "0", "--method", "shadow", "--refresh", "abc"])
        #expect(run.status == 1 && run.err == "error: --refresh: expected an integer, got \"abc\"\n", "\(run.err)")
        // With good options, the model file is the problem named.
        let good = CLIRun(["bench", "--model", junk, "-p", "8", "-n", "0", "--method", "shadow", "--refresh", "2"])
        #expect(good.status == 1 && good.err.contains(junk), "\(good.err)")
    }

    @Test("a mistyped subcommand or option is answered with the nearest name, a glued value with how to write it, an open range with its lower end")
    func nearestNames() {
        let model = fixture("tiny-llama")
        let subcommand = CLIRun(["genrate", "--prompt", "x"])
        #expect(subcommand.status == 2 && subcommand.err == "error: unknown subcommand 'genrate' (did you mean 'generate'? see 'shadowllm --help')\n")
        #expect(CLIRun(["frobnicate"]).err == "error: unknown subcommand 'frobnicate' (see 'shadowllm --help')\n")
        #expect(CLIRun(["trace", "info"]).err.contains("did you mean 'traces'?"))
        for (arguments, expected) in [
            (["generate", "--model", model, "--promt", "x"], "error: --promt: unknown option for 'generate' (did you mean --prompt? see --help)\n"),
            (["generate", "--model", model, "--prompt", "x", "--max-token", "2"], "error: --max-token: unknown option for 'generate' (did you mean --max-tokens? see --help)\n"),
            (["generate", "--model", model, "--prompt", "x", "-t1"], "error: -t1: unknown option for 'generate' (a value goes apart from its option: -t 1)\n"),
            (["generate", "--model", model, "--prompt", "x", "--seed", "-1"], "error: --seed: must be at least 0, got -1\n"),
            // Past an open range's stand-in upper end (Int32's), that end is named.
            (["generate", "--model", model, "--prompt", "x", "--temperature", "1", "--top-k", "2147483648"], "error: --top-k: must be at most 2147483647, got 2147483648\n"),
            (["generate", "--model", model, "--prompt", "x", "--seed", "18446744073709551615"],
             "error: --seed: must be at most 9223372036854775807, got 18446744073709551615\n"),
            (["generate", "--model", model, "--prompt", "x", "--seed", "1.5"], "error: --seed: expected an integer, got \"1.5\"\n"),
            (["generate", "--model", model, "--prompt", "x", "-n", "0", "--top-k", "-1"], "error: --top-k: must be at least 0, got -1\n"),
            (["info", "--model", model, "--zzzz"], "error: --zzzz: unknown option for 'info' (see --help)\n"),
        ] {
            let run = CLIRun(arguments)
            #expect(run.status == 1 && run.err == expected, "\(arguments): \(run.err)")
        }
        // "-n=2" is "--max-tokens=2".
        let equals = CLIRun(["generate", "--model", model, "--prompt", "x", "-n=2", "--json"])
        #expect(equals.status == 0 && (try? equals.json())?["tokens"].map { ($0 as? [Any])?.count } == 2, "\(equals.err)")
        #expect(Suggestion.nearest(to: "calbirate", among: ["calibrate", "chat"]) == "calibrate")
        #expect(Suggestion.nearest(to: "ab", among: ["xy", "abc", "abd"]) == nil)
    }

    @Test("help COMMAND shows that command's help, a command group's --help lists its commands, and errors name the option they need")
    func helpRouting() throws {
        let help = CLIRun(["help", "info"])
        #expect(help.status == 0 && help.out.hasPrefix("OVERVIEW: Show a model's architecture"), "\(help.out)")
        let group = CLIRun(["traces", "--help"])
        #expect(group.status == 0 && group.out.contains("traces merge") && group.out.contains("traces info"), "\(group.err)")
        #expect(group.out.hasSuffix("See 'shadowllm traces merge --help' or 'shadowllm traces info --help' for the options of each.\n"), "\(group.out)")
        #expect(CLIRun(["predictor", "-h"]).out.hasSuffix("See 'shadowllm predictor info --help' for its options.\n"))
        let merge = CLIRun(["traces", "merge", "--out", scratchPath("merge-nothing")])
        #expect(merge.status == 1 && merge.err == "error: --shards: needs at least one shard directory\n", "\(merge.err)")
        let json = scratchPath("not-a-predictor") + ".json"
        try String(repeating: "{\"heads\": [1, 2, 3]} ", count: 20).write(toFile: json, atomically: true, encoding: .utf8)
        let info = CLIRun(["predictor", "info", json])
        #expect(info.status == 1 && info.err.contains("\(json): not a safetensors file"), "\(info.err)")
        // "-h" as an option's value is that value, not a request for help.
        let tokens = CLIRun(["tokenize", "--model", fixture("tiny-llama"), "--text", "--help", "--json"])
        let ids = try tokens.json()["ids"] as? [Int]
        #expect(tokens.status == 0 && ids?.isEmpty == false, "\(tokens.out)")
        #expect(CLIRun(["tokenize", "--model", fixture("tiny-llama"), "--text", "a", "-h"]).out.hasPrefix("OVERVIEW: "))
        // It is taken as written, with a warning: most likely the value was left out.
        #expect(tokens.err == "warning: --text takes \"--help\" as its value, though it is also an option of 'tokenize' (--text=--help says the value is meant)\n",
                "\(tokens.err)")
        let forgotten = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", "--json"])
        #expect(forgotten.status == 0 && forgotten.err.hasPrefix("warning: --text takes \"--json\" as its value, though it is also an option of 'perplexity'"),
                "\(forgotten.err)")
        let meant = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text=--json", "--json"])
        #expect(meant.status == 0 && meant.err.isEmpty, "\(meant.err)")
        // The warning comes before the error it explains.
        let swallowed = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", "--context", "8"])
        #expect(swallowed.status == 1 && swallowed.err == "warning: --text takes \"--context\" as its value, though it is also an option of 'perplexity' (--text=--context says the value is meant)\n"
                + "error: 8: unexpected argument for 'perplexity' (see --help)\n", "\(swallowed.err)")
        // The global --verbose is no option's value: an option left without one at the end still says so.
        let global = CLIRun(["--verbose", "generate", "--model", fixture("tiny-llama"), "--prompt"])
        #expect(global.status == 1 && global.err.hasPrefix("error: --prompt: needs a value <text>\n  type: "), "\(global.err)")
        // A near miss of an option is as likely a value left out; a value far from every option is not.
        let typo = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", "--jsn"])
        #expect(typo.status == 0 && typo.err == "warning: --text takes \"--jsn\" as its value, though it is close to the option --json of 'perplexity' (--text=--jsn says the value is meant)\n",
                "\(typo.err)")
        #expect(CLIRun(["tokenize", "--model", fixture("tiny-llama"), "--text", "--- a rule ---"]).err.isEmpty)
        // A value that only starts with a dash (a negative number, "-x" that is no option) gets no warning.
        #expect(CLIRun(["tokenize", "--model", fixture("tiny-llama"), "--text", "-q"]).err.isEmpty)
    }

    @Test("an option given twice is refused, whatever its spelling, rather than the last one winning")
    func duplicateOptions() {
        let model = fixture("tiny-llama")
        for (arguments, name) in [(["tokenize", "--model", model, "--text", "a", "--text", "b"], "--text"),
                                  (["tokenize", "-m", model, "--model", model, "--text", "a"], "--model"),
                                  (["tokenize", "--model", model, "--text=a", "--text", "b"], "--text"),
                                  (["tokenize", "--model", model, "--text", "a", "--json", "--json"], "--json"),
                                  (["bench", "--model", model, "-p", "0", "-p", "8"], "-p")] {
            let run = CLIRun(arguments)
            #expect(run.status == 1 && run.err == "error: \(name): is given twice; give it once\n", "\(arguments): \(run.err)")
        }
        // --verbose before the subcommand and after it is one request, not two.
        #expect(CLIRun(["--verbose", "tokenize", "--model", model, "--text", "a", "--verbose"]).status == 0)
    }

    @Test("the parser gives a value, an error or help for any argument list, never a trap: 20,000 random lists over every command's spellings")
    func parserTakesAnything() throws {
        var random = SplitMix64(seed: 47)
        var parsedLists = 0, tried = 0
        for command in CLI.commands {
            let spellings = command.options.flatMap { option in
                ["--\(option.name)", "--\(option.name)=", "--\(option.name)=x"] + (option.short.map { ["-\($0)", "-\($0)=1", "-\($0)1"] } ?? [])
            }
            let words = spellings + ["-", "--", "---", "=", "-=", "--=", "", "-h", "--help", "-1", "0.5", "a,b", ",", "x=y", "--x", "-xy", "é", "-é",
                                      "1e999", "-9223372036854775808", "99999999999999999999", "nan", "-inf", "0x1p3", "1,,2", "3,-4", " 2"]
                + (command.options.compactMap(\.allowed).flatMap { $0 })
            for _ in 0..<(20_000 / CLI.commands.count) {
                let arguments = (0..<Int.random(in: 0...6, using: &random)).map { _ in words.randomElement(using: &random)! }
                // Help is asked for, or the parse gives values or throws ShadowError; anything else fails here.
                if command.asksForHelp(arguments) { continue }
                tried += 1
                do {
                    let parsed = try command.parse(arguments)
                    parsedLists += 1
                    _ = parsed.given
                    // The typed readers take whatever text was given.
                    for option in command.options where !option.isFlag {
                        for read in [{ _ = try parsed.int(option.name) }, { _ = try parsed.int(option.name, range: 1...8) },
                                     { _ = try parsed.double(option.name) }, { _ = try parsed.double(option.name, range: 0...1) },
                                     { _ = try parsed.intList(option.name, range: 0...8) }, { _ = try parsed.list(option.name) }] as [() throws -> Void] {
                            do { try read() } catch is ShadowError {}
                        }
                    }
                    var warnings: [String] = []
                    _ = try command.parse(arguments, warnings: &warnings)
                } catch is ShadowError {
                } catch {
                    Issue.record("\(command.name) \(arguments): \(error)")
                }
            }
        }
        // Not only errors: a good share of the lists parse and reach the typed readers.
        #expect(parsedLists > tried / 10, "\(parsedLists) of \(tried) parsed")
    }

    @Test("the options as given are recorded so they can be run again, a value that reads \"true\" included")
    func givenOptionsRoundTrip() throws {
        let sweep = try #require(CLI.commands.first { $0.name == "sweep" })
        let parsed = try sweep.parse(["--out", "true", "--no-progress", "--limit", "5"])
        #expect(parsed.given == ["--limit", "5", "--no-progress", "--out", "true"])
        #expect(parsed.string("out") == "true" && parsed.flag("no-progress") && !parsed.flag("out") && parsed.has("out"))
        // A value starting with a dash is joined to its option, so it reads back as a value.
        let dashed = try sweep.parse(["--out=-h", "--limit", "5"])
        let again = try sweep.parse(dashed.given)
        #expect(dashed.given == ["--limit", "5", "--out=-h"] && again.string("out") == "-h")
    }

    @Test("a missing positional argument is named as help writes it, and an empty path option says the path is empty")
    func missingArguments() {
        let traces = CLIRun(["traces", "info"])
        #expect(traces.status == 1 && traces.err == "error: <dir>: is required (shadowllm traces info <dir>)\n", "\(traces.err)")
        #expect(CLIRun(["traces", "info", "--help"]).out.contains("<dir>"))
        let predictor = CLIRun(["predictor", "info"])
        #expect(predictor.status == 1 && predictor.err == "error: <file>: is required (shadowllm predictor info <file>)\n", "\(predictor.err)")
        for arguments in [["info", "-m", ""], ["tokenize", "--model", "", "--text", "a"], ["bench", "-m", "", "-p", "8", "-n", "0"]] {
            let run = CLIRun(arguments)
            #expect(run.status == 1 && run.err == "error: --model: the path is empty\n", "\(arguments): \(run.err)")
        }
        let model = fixture("tiny-llama")
        for (arguments, option) in [(["perplexity", "-m", model, "--text-file", ""], "--text-file"),
                                    (["eval", "-m", model, "--task", "piqa", "--data", ""], "--data"),
                                    (["calibrate", "-m", model, "--source", "text:x.txt", "-o", ""], "--out"),
                                    (["traces", "merge", "--shards", "a,b", "--out", ""], "--out"),
                                    (["traces", "info", ""], "<dir>"), (["predictor", "info", ""], "<file>"),
                                    (["generate", "-m", model, "--prompt", "a", "--method", "static", "--scores", ""], "--scores"),
                                    (["sweep", "-m", model, "--tasks", "piqa", "--traces", ""], "--traces")] {
            let run = CLIRun(arguments)
            #expect(run.status == 1 && run.err == "error: \(option): the path is empty\n", "\(arguments): \(run.err)")
        }
    }

    @Test("--text-file - and --prompt-file - read standard input byte for byte; a text of one token names where it came from")
    func standardInput() throws {
        let model = fixture("tiny-llama")
        let direct = try CLIRun(["tokenize", "--model", model, "--text", "Hello there\n", "--json"]).json()
        let piped = try CLIRun(["tokenize", "--model", model, "--text-file", "-", "--json"], stdin: "Hello there\n").json()
        #expect((piped["ids"] as? [Int]) == (direct["ids"] as? [Int]) && (direct["ids"] as? [Int])?.isEmpty == false)
        let generated = CLIRun(["generate", "--model", model, "--prompt-file", "-", "-n", "2", "--json"], stdin: "Hello there")
        #expect(try generated.json()["prompt"] as? String == "Hello there", "\(generated.err)")
        let one = CLIRun(["perplexity", "--model", model, "--text-file", "-"], stdin: "H")
        #expect(one.status == 1 && one.err == "error: --text-file - (standard input): is 1 token; scoring needs at least 2 (the first is never predicted)\n", "\(one.err)")
        let two = CLIRun(["perplexity", "--model", model, "--text-file", "-"], stdin: "a b")
        #expect(two.status == 0 && two.out.contains(" over 1 predicted token (2 tokens, 1 window of up to 128)"), "\(two.out)")
    }

    @Test("a recorded command is quoted as a shell reads it back; plot ticks stay short; bench CSV quotes a model name with a comma")
    func quoting() throws {
        #expect(shellQuoted("runs/sweep-1") == "runs/sweep-1" && shellQuoted("sp ace") == "'sp ace'"
                && shellQuoted("it's") == "'it'\\''s'" && shellQuoted("") == "''")
        #expect([29.67, 9450, 166_000, 2_310_000, 2.53e9, 3e15].map(SweepReport.compactNumber) == ["29.67", "9450", "166k", "2.31M", "2.53G", "3e+15"])
        // A path with backticks stays one code span in report.md.
        #expect(Markdown.code("runs/m.gguf") == "`runs/m.gguf`" && Markdown.code("we`ird") == "``we`ird``"
                && Markdown.code("`x``") == "``` `x`` ```")
        // Generated text in report.md: a fenced block that no line of the text can close.
        #expect(Markdown.codeBlock("a\nb") == ["```text", "a\nb", "```"]
                && Markdown.codeBlock("```\nx ````") == ["`````text", "```\nx ````", "`````"])
        // Its line breaks are shown, long runs of them as one line.
        #expect(PipelineReport.visible("a\nb\n\nc") == "a↵\nb↵\n↵\nc" && PipelineReport.visible(String(repeating: "\n", count: 48)) == "↵ × 48"
                && PipelineReport.visible("x\n\n\n\ny\n") == "x↵ × 4\ny↵" && PipelineReport.visible("a\r\nb") == "a↵\nb")
        // MB/token: a tiny model's bytes keep three digits instead of reading 0.2 in every row.
        #expect([538_000_000, 169_910_000, 5_380_000, 215_400].map(Markdown.megabytes) == ["538.0", "169.9", "5.38", "0.215"])
        let directory = TestScratch.path("csv-model")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let model = directory + "/a,b \"x\""
        try? FileManager.default.removeItem(atPath: model)
        try FileManager.default.createSymbolicLink(atPath: model, withDestinationPath: fixture("tiny-llama"))
        let run = CLIRun(["bench", "--model", model, "-p", "8", "-n", "0", "-r", "1", "-o", "csv", "--no-progress"])
        let lines = run.out.split(separator: "\n")
        try #require(lines.count == 2, "\(run.out) \(run.err)")
        #expect(lines[1].hasPrefix("\"a,b \"\"x\"\"\","), "\(lines[1])")
        // Fields outside quotes: as many as the header's.
        let unquoted = lines[1].split(separator: "\"", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 0 }.map(\.element).joined()
        #expect(unquoted.filter { $0 == "," }.count == lines[0].filter { $0 == "," }.count, "\(lines[1])")
    }

    @Test("a model none of whose matrices can be kept as q8 says so once and every report names the dtype kept, not the one asked for")
    func weightsFallBack() throws {
        // Rows of 8 values are not whole blocks of 32: every matrix stays f16.
        let model = try CheckpointWriter.directory()
        let info = CLIRun(["info", "--model", model, "--weights", "q8", "--json"])
        #expect(try info.json()["weights"] as? String == "f16", "\(info.out)")
        #expect(info.err == "warning: --weights q8: \(model) is kept as f16: no matrix has rows of whole blocks of 32 values\n", "\(info.err)")
        #expect(CLIRun(["info", "--model", model, "--weights", "f16"]).err.isEmpty)
        let bench = CLIRun(["bench", "--model", model, "-p", "0", "-n", "4", "-r", "1", "--weights", "f16,q8", "-o", "json", "--no-progress"])
        let rows = try #require(try bench.json()["results"] as? [[String: Any]], "\(bench.err)")
        #expect(rows.map { $0["weights"] as? String } == ["f16", "f16"] && rows.map { $0["weights_asked"] as? String } == ["f16", "q8"], "\(rows)")
        let table = CLIRun(["bench", "--model", model, "-p", "0", "-n", "4", "-r", "1", "--weights", "q8", "--no-progress"])
        #expect(table.out.contains("| f16 (q8 asked) |") && table.err.contains("is kept as f16"), "\(table.out)")
    }

    @Test("info --json describes a checkpoint")
    func info() throws {
        let run = CLIRun(["info", "--model", fixture("tiny-llama"), "--json"])
        #expect(run.status == 0, "\(run.err)")
        let json = try run.json()
        #expect(json["architecture"] as? String == "llama")
        #expect(json["layers"] as? Int == 2)
        #expect((json["parameters"] as? Int ?? 0) > 0)
        // --weights decides what decode reads: 16-bit weights half of f32's bytes. --threads would change nothing, so info refuses it.
        #expect(json["weights"] as? String == "f16")
        let f32 = try CLIRun(["info", "--model", fixture("tiny-llama"), "--weights", "f32", "--json"]).json()
        #expect(f32["weights"] as? String == "f32")
        #expect(f32["decode_bytes_per_token"] as? Int == 2 * (json["decode_bytes_per_token"] as? Int ?? 0))
        #expect(CLIRun(["info", "--model", fixture("tiny-llama"), "--threads", "2"]).err == "error: --threads: unknown option for 'info' (see --help)\n")
        // The chat commands' template: ChatML markers without a template of the model's own, so no default system turn.
        #expect(json["chat_template"] as? String == "ChatML" && json["default_system"] == nil)
        // The tokenizer's EOS (<|endoftext|>, guessed from its name) and config.json's eos_token_id 2 both stop generation.
        #expect(json["eos_token_id"] as? Int == 0 && json["stop_token_ids"] as? [Int] == [0, 2])
        #expect(CLIRun(["info", "--model", fixture("tiny-llama")]).out.contains("stops at ids  0, 2\n"))
        let opt = CLIRun(["info", "--model", fixture("tiny-opt"), "--json"])
        #expect(try opt.json()["chat_template"] == nil && opt.status == 0)
        #expect(CLIRun(["info", "--model", fixture("tiny-opt")]).out.contains("chat          none: the tokenizer has the tokens of no chat template ShadowLLM builds: ChatML"))
        #expect(try (opt.json()["chat_template_problem"] as? String)?.hasPrefix("the tokenizer has the tokens of no chat template ShadowLLM builds") == true)
        // A multimodal Gemma 3 runs its text model, and says so.
        let vision = CLIRun(["info", "--model", fixture("tiny-gemma3-vision"), "--json"])
        #expect(try vision.json()["architecture"] as? String == "gemma3_text" && vision.json()["text_model_of"] as? String == "gemma3")
        #expect(try opt.json()["text_model_of"] == nil)
        #expect(CLIRun(["info", "--model", fixture("tiny-gemma3-vision")]).out
                    .contains("architecture  gemma3_text, the text model of a multimodal gemma3 checkpoint (its vision tower is not read)\n"))
    }

    @Test("--long-context rotates a LongRoPE model with its long factors, so its context reaches max_position_embeddings; a model without them is refused")
    func longContext() throws {
        let model = fixture("tiny-phi3-longrope")
        #expect(try CLIRun(["info", "--model", model, "--json"]).json()["max_context"] as? Int == 32)
        let long = CLIRun(["info", "--model", model, "--long-context", "--json"])
        #expect(try long.json()["max_context"] as? Int == 128 && long.json()["context_limit"] == nil, "\(long.err)")
        let text = Array(repeating: "The quick brown fox jumps over the lazy dog.", count: 6).joined(separator: " ")
        let short = CLIRun(["perplexity", "--model", model, "--text", text, "-c", "64", "--json"])
        #expect(short.status == 1 && short.err.contains("--context: 64 exceeds the model's context of 32") && short.err.contains("--long-context"))
        let run = CLIRun(["perplexity", "--model", model, "--long-context", "--text", text, "-c", "64", "--json"])
        #expect(run.status == 0, "\(run.err)")
        #expect(try run.json()["predicted_tokens"] as? Int ?? 0 > 32)
        // bench too: -p 64 fits only the long context.
        let benchShort = CLIRun(["bench", "--model", model, "-p", "64", "-n", "0", "-r", "1", "--no-progress"])
        #expect(benchShort.status == 1 && benchShort.err.contains("-p: 64 exceeds the model's context of 32"), "\(benchShort.err)")
        let bench = CLIRun(["bench", "--model", model, "--long-context", "-p", "64", "-n", "4", "-r", "1", "-o", "json", "--no-progress"])
        #expect(bench.status == 0, "\(bench.err)")
        #expect(try (bench.json()["results"] as? [[String: Any]])?.count == 2)
        for other in ["tiny-phi3", "tiny-opt"] {
            let refused = CLIRun(["perplexity", "--model", fixture(other), "--long-context", "--text", text, "--json"])
            #expect(refused.status == 1 && refused.out.isEmpty && refused.err.hasPrefix("error: --long-context: ")
                    && refused.err.contains("has no LongRoPE long factors"), "\(refused.err)")
        }
    }

    @Test("tokenize --json prints {\"ids\": [...]}")
    func tokenize() throws {
        let run = CLIRun(["tokenize", "--model", fixture("tiny-llama"), "--text", "Hello world", "--json"])
        #expect(run.status == 0, "\(run.err)")
        let ids = try #require(try run.json()["ids"] as? [Int])
        #expect(!ids.isEmpty)
        // The tokenizer alone is loaded, and it is the model's own.
        let loaded = try ModelLoader.load(path: fixture("tiny-llama"))
        #expect(ids == loaded.tokenizer?.encode("Hello world"))
        let bare = TestScratch.url("no-tokenizer").path
        try FileManager.default.createDirectory(atPath: bare, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: bare) }
        let missing = CLIRun(["tokenize", "--model", bare, "--text", "Hello"])
        #expect(missing.status != 0 && missing.err.contains("no tokenizer"), "\(missing.err)")
    }

    @Test("tokenize --split-special-tokens reads a special token written in the text as its characters; --special still adds BOS")
    func tokenizeSplitSpecial() throws {
        let text = "<|im_start|>user\nHi<|im_end|>"
        let tokenizer = try ModelLoader.loadTokenizer(path: fixture("tiny-llama"))
        let plain = CLIRun(["tokenize", "--model", fixture("tiny-llama"), "--text", text, "--split-special-tokens", "--json"])
        #expect(plain.status == 0, "\(plain.err)")
        let ids = try #require(try plain.json()["ids"] as? [Int])
        #expect(ids == tokenizer.encode(text, splitSpecialTokens: true) && !ids.contains(1) && !ids.contains(2), "\(ids)")
        #expect(try CLIRun(["tokenize", "--model", fixture("tiny-llama"), "--text", text, "--json"]).json()["ids"] as? [Int] == tokenizer.encode(text))
        // OPT's tokenizer prepends </s> (id 2), which its text spells too.
        let opt = CLIRun(["tokenize", "--model", fixture("tiny-opt"), "--text", "a</s>", "--special", "--split-special-tokens", "--json"])
        let optIDs = try #require(try opt.json()["ids"] as? [Int])
        #expect(optIDs.first == 2 && optIDs.dropFirst().allSatisfy { $0 > 3 }, "\(optIDs)")
    }

    @Test("tokenize --text-file reads the file byte for byte, a leading byte-order mark included")
    func tokenizeFileKeepsBOM() throws {
        let file = TestScratch.url("bom.txt")
        let text = "\u{FEFF}Hello"
        try Data(text.utf8).write(to: file)
        let run = CLIRun(["tokenize", "--model", fixture("tiny-llama"), "--text-file", file.path, "--json"])
        #expect(run.status == 0, "\(run.err)")
        let tokenizer = try #require(try ModelLoader.load(path: fixture("tiny-llama")).tokenizer)
        #expect(try run.json()["ids"] as? [Int] == tokenizer.encode(text))
        #expect(tokenizer.encode(text) != tokenizer.encode("Hello"))
        try Data([0x48, 0xFF]).write(to: file)
        let invalid = CLIRun(["tokenize", "--model", fixture("tiny-llama"), "--text-file", file.path])
        #expect(invalid.status != 0 && invalid.err.contains("UTF-8"), "\(invalid.err)")
    }

    @Test("bench -b times a forward pass and forward + backward over one sample")
    func benchBackward() throws {
        let run = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "0", "-n", "0", "-b", "12", "-r", "2", "-o", "json", "--no-progress"])
        #expect(run.status == 0, "\(run.err)")
        let rows = try #require(try run.json()["results"] as? [[String: Any]])
        #expect(rows.map { $0["test"] as? String } == ["fw12", "fb12"])
        #expect(rows.allSatisfy { ($0["tokens_per_second"] as? Double ?? 0) > 0 })
        let markdown = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "0", "-n", "0", "-b", "12", "-r", "1", "--no-progress"])
        #expect(markdown.status == 0 && markdown.out.contains("forward + backward takes"), "\(markdown.out)")
        let tooLong = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "0", "-n", "0", "-b", "100000"])
        #expect(tooLong.status != 0 && tooLong.err.contains("-b"), "\(tooLong.err)")
    }

    @Test("bench --head-sparsity and --neuron-sparsity fix one side in every sparse row; --hybrid-floor is read with --policy hybrid; the report says how the masks were made")
    func benchSparsitySides() throws {
        var masks: [String: Any]?
        func rows(_ extra: [String]) throws -> [[String: Any]] {
            let run = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "8", "-n", "0", "-r", "1", "--method", "random",
                              "-o", "json", "--no-progress"] + extra)
            #expect(run.status == 0, "\(run.err)")
            masks = try run.json()["masks"] as? [String: Any]
            return try #require(try run.json()["results"] as? [[String: Any]])
        }
        let neuronsOnly = try rows(["--sparsity", "0.25,0.5", "--head-sparsity", "0"])
        #expect(neuronsOnly.map { $0["head_sparsity"] as? Double } == [0, 0])
        #expect(neuronsOnly.map { $0["neuron_sparsity"] as? Double } == [0.25, 0.5])
        #expect(neuronsOnly.allSatisfy { $0["realised_head_sparsity"] as? Double == 0 && ($0["realised_neuron_sparsity"] as? Double ?? 0) > 0 })
        let fixed = try rows(["--head-sparsity", "0.5", "--neuron-sparsity", "0"])
        #expect(fixed.count == 1 && fixed[0]["head_sparsity"] as? Double == 0.5 && fixed[0]["realised_neuron_sparsity"] as? Double == 0)
        // A floor keeping most of each layer's heads leaves fewer to prune than the default floor.
        let low = try rows(["--sparsity", "0.5", "--policy", "hybrid"])
        let high = try rows(["--sparsity", "0.5", "--policy", "hybrid", "--hybrid-floor", "0.75"])
        #expect(masks?["policy"] as? String == "hybrid" && masks?["hybrid_floor"] as? Double == 0.75 && masks?["predictor"] == nil, "\(String(describing: masks))")
        let lowHeads = try #require(low.first?["realised_head_sparsity"] as? Double)
        let highHeads = try #require(high.first?["realised_head_sparsity"] as? Double)
        #expect(highHeads < lowHeads, "\(highHeads) vs \(lowHeads)")
        let markdown = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "8", "-n", "0", "-r", "1", "--method", "random",
                               "--sparsity", "0.5", "--neuron-sparsity", "0", "--no-progress"])
        #expect(markdown.status == 0 && markdown.out.contains("| 0.5/0.0 (") && markdown.out.contains("\nmasks: policy global\n"), "\(markdown.out)")
        let dense = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "8", "-n", "0", "-r", "1", "-o", "json", "--no-progress"])
        #expect(try dense.json()["masks"] == nil && !dense.out.contains("masks"), "\(dense.out)")
        for (arguments, error) in [
            (["--method", "dense", "--head-sparsity", "0.5"], "error: --head-sparsity: is only read with a sparse --method (dense runs at 0)\n"),
            (["--method", "random", "--sparsity", "0.5", "--head-sparsity", "0.5", "--neuron-sparsity", "0.5"],
             "error: --sparsity: is not read when --head-sparsity and --neuron-sparsity are both given; drop one of the three\n"),
            (["--method", "random", "--hybrid-floor", "0.5"], "error: --hybrid-floor: is only read with --policy hybrid\n"),
        ] {
            let run = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "8", "-n", "0", "--no-progress"] + arguments)
            #expect(run.status != 0 && run.err == error, "\(arguments): \(run.err)")
        }
        let badFloor = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "8", "-n", "0", "--method", "random",
                               "--policy", "hybrid", "--hybrid-floor", "1.5", "--no-progress"])
        #expect(badFloor.status != 0 && badFloor.err.hasPrefix("error: --hybrid-floor:"), "\(badFloor.err)")
    }

    @Test("--packing auto waits 48 tokens, spreads the copies over 16 more, and stays off when the copies could take more than half the memory available; on packs at the second token whatever the memory")
    func packingRule() throws {
        let gigabyte = 1 << 30
        let auto = PackingRule(after: 48, spread: 16)
        #expect(SparsityOptions.Packing.auto.rule(weightBytes: gigabyte, availableBytes: 4 * gigabyte) == auto)
        #expect(SparsityOptions.Packing.auto.rule(weightBytes: gigabyte, availableBytes: nil) == auto)
        #expect(SparsityOptions.Packing.auto.rule(weightBytes: 3 * gigabyte, availableBytes: 4 * gigabyte) == nil)
        #expect(SparsityOptions.Packing.on.rule(weightBytes: 3 * gigabyte, availableBytes: 4 * gigabyte) == PackingRule(after: 2))
        #expect(SparsityOptions.Packing.off.rule(weightBytes: gigabyte, availableBytes: 4 * gigabyte) == nil)
        #if os(Linux)
        let available = try #require(ProcessMemory.availableBytes, "/proc/meminfo's MemAvailable was not read")
        #expect(available > 0)
        #endif
    }

    @Test("bench --packing times each sparse method's decode once per distinct choice, auto packing fixed masks, off by default, and is refused where it is not read")
    func benchPacking() throws {
        func decodeRows(_ packing: [String]) throws -> [String] {
            let run = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "0", "-n", "8", "-r", "1", "--method", "dense,random",
                              "-o", "json", "--no-progress"] + packing)
            #expect(run.status == 0, "\(run.err)")
            let rows = try #require(try run.json()["results"] as? [[String: Any]])
            return rows.map { "\($0["method"] as? String ?? "") \($0["packed_rows"] as? Bool ?? false)" }
        }
        #expect(try decodeRows([]) == ["dense false", "random false"])
        #expect(try decodeRows(["--packing", "off,on"]) == ["dense false", "random false", "random true"])
        #expect(try decodeRows(["--packing", "off,on,auto,off"]) == ["dense false", "random false", "random true"])
        #expect(try decodeRows(["--packing", "auto"]) == ["dense false", "random true"])
        let dense = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "0", "-n", "8", "--packing", "on", "--no-progress"])
        #expect(dense.status != 0 && dense.err.contains("--packing: is only read with a sparse --method"), "\(dense.err)")
        let prefillOnly = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "8", "-n", "0", "--method", "random", "--packing", "on", "--no-progress"])
        #expect(prefillOnly.status != 0 && prefillOnly.err.contains("--packing: is only read when decoding"), "\(prefillOnly.err)")
        let unknown = CLIRun(["bench", "--model", fixture("tiny-llama"), "-n", "8", "--method", "random", "--packing", "off,maybe", "--no-progress"])
        #expect(unknown.status != 0 && unknown.err.contains("--packing"), "\(unknown.err)")
    }

    @Test("generate packs a fixed mask's kept rows at the second token with --packing on, after 48 to 63 tokens with auto (the default), never with off, and says so; the tokens are the same each way")
    func generatePacking() throws {
        func run(_ options: [String], tokens: Int) throws -> (tokens: [Int]?, packing: String?, packed: Bool?, bytes: Int?) {
            let run = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Once upon a time", "-n", "\(tokens)", "--json"] + options)
            #expect(run.status == 0, "\(run.err)")
            let json = try run.json()
            #expect((json["tokens"] as? [Int])?.count == tokens, "stopped early: \(options)")
            return (json["tokens"] as? [Int], json["packing"] as? String, json["packed_rows"] as? Bool, json["packed_bytes"] as? Int)
        }
        let sparse = ["--method", "random", "--sparsity", "0.5"]
        for tokens in [6, 80] {   // auto: 48 reads, plus up to 13 for the 14 projections of tiny-llama
            let on = try run(sparse + ["--packing", "on"], tokens: tokens), auto = try run(sparse, tokens: tokens)
            let off = try run(sparse + ["--packing", "off"], tokens: tokens)
            #expect(on.packing == "on" && auto.packing == "auto" && off.packing == "off")
            #expect(on.packed == true && (on.bytes ?? 0) > 0 && off.packed == false && off.bytes == 0)
            #expect(auto.packed == (tokens > 48) && auto.bytes == (tokens > 48 ? on.bytes : 0), "\(tokens): \(auto)")
            #expect(on.tokens != nil && on.tokens == off.tokens && auto.tokens == off.tokens)
        }
        let denseRun = try run([], tokens: 2)
        #expect(denseRun.packing == nil && denseRun.packed == nil && denseRun.bytes == nil)
        let dense = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Hello", "-n", "2", "--packing", "off"])
        #expect(dense.status != 0 && dense.err.contains("--packing: is only read with a sparse --method"), "\(dense.err)")
    }

    @Test("bench refuses -b 1 naming -b, -n beyond the model's context as it refuses -p (saying when the length is the default), and names -p and -r in value errors")
    func benchLengths() {
        let short = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "0", "-n", "0", "-b", "1", "--no-progress"])
        #expect(short.status == 1 && short.err.hasPrefix("error: -b: 1 is too short") && !short.err.contains("predictFrom"), "\(short.err)")
        #expect(short.err.split(separator: "\n").count == 1, "\(short.err)")
        // The tiny model's context is 128.
        for (flag, lengths) in [("-p", ["129", "0"]), ("-n", ["0", "1000"])] {
            let run = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", lengths[0], "-n", lengths[1], "-r", "1", "--no-progress"])
            #expect(run.status == 1 && run.err == "error: \(flag): \(flag == "-p" ? 129 : 1000) exceeds the model's context of 128\n", "\(run.err)")
            #expect(run.out.isEmpty)
        }
        // `--json`, the other commands' flag, is a value of bench's -o.
        let json = CLIRun(["bench", "--model", fixture("tiny-llama"), "--json"])
        #expect(json.status != 0 && json.err == "error: --json: unknown option for 'bench' (did you mean -o json? see --help)\n", "\(json.err)")
        // A default that does not fit says it is the default.
        let defaults = CLIRun(["bench", "--model", fixture("tiny-llama"), "-r", "1", "--no-progress"])
        #expect(defaults.status == 1 && defaults.err == "error: -p: 512 (the default) exceeds the model's context of 128\n", "\(defaults.err)")
        let fits = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "0", "-n", "128", "-r", "1", "-o", "json", "--no-progress"])
        #expect(fits.status == 0, "\(fits.err)")
        // Bad values name bench's one-letter options as they are typed.
        for (flag, value) in [("-p", "x"), ("-r", "0")] {
            let run = CLIRun(["bench", "--model", fixture("tiny-llama"), flag, value, "--no-progress"])
            #expect(run.status == 1 && run.err.hasPrefix("error: \(flag): "), "\(run.err)")
        }
    }

    @Test("bench with every length 0 is an error, not an empty table")
    func benchNothing() {
        let nothing = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "0", "-n", "0", "--no-progress"])
        #expect(nothing.status != 0 && nothing.out.isEmpty, "\(nothing.out)")
        #expect(nothing.err == "error: bench: nothing to measure: -p, -n and -b are 0\n", "\(nothing.err)")
        let sparseBackward = CLIRun(["bench", "--model", fixture("tiny-llama"), "-p", "0", "-n", "0", "-b", "8",
                                     "--method", "random", "--no-progress"])
        #expect(sparseBackward.status != 0 && sparseBackward.err.contains("-b runs for the dense method only"), "\(sparseBackward.err)")
    }

    @Test("perplexity --json reports nll_sum, predicted_tokens and perplexity, and bits per byte of the predicted bytes")
    func perplexity() throws {
        let run = CLIRun(["perplexity", "--model", fixture("tiny-opt"), "--text", "The quick brown fox jumps over the lazy dog.", "--json"])
        #expect(run.status == 0, "\(run.err)")
        let json = try run.json()
        let nll = try #require(json["nll_sum"] as? Double)
        let predicted = try #require(json["predicted_tokens"] as? Int)
        let perplexity = try #require(json["perplexity"] as? Double)
        #expect(predicted == (json["tokens"] as? Int ?? 0) - 1)
        #expect(abs(perplexity - exp(nll / Double(predicted))) < 1e-6 * perplexity)
        // Bits per byte count the bytes of the predicted tokens: OPT's first token is its BOS, so
        // all of them; Qwen2 adds none, so the text's first token is context only.
        for (name, unscored) in [("tiny-opt", ""), ("tiny-qwen2", "The")] {
            let text = "The quick brown fox jumps over the lazy dog."
            let json = try CLIRun(["perplexity", "--model", fixture(name), "--text", text, "--json"]).json()
            let bytes = try #require(json["predicted_bytes"] as? Int)
            #expect(bytes == text.utf8.count - unscored.utf8.count && json["bytes"] as? Int == text.utf8.count, "\(name)")
            let bitsPerByte = try #require(json["bits_per_byte"] as? Double), nll = try #require(json["nll_sum"] as? Double)
            #expect(abs(bitsPerByte - nll / Double(bytes) / log(2)) < 1e-9, "\(name)")
        }
        // A special token spelled at the start is the first token: all its bytes are context.
        let special = "<|endoftext|>The quick brown fox."
        let specialJSON = try CLIRun(["perplexity", "--model", fixture("tiny-qwen2"), "--text", special, "--json"]).json()
        #expect(specialJSON["predicted_bytes"] as? Int == "The quick brown fox.".utf8.count, "\(specialJSON)")
        // A first token that is one byte of a character (tiny-llama spells 日 in three byte
        // tokens) leaves one byte, not the three of the U+FFFD it reads as alone.
        let japanese = "日本語のテキストです"
        let japaneseJSON = try CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", japanese, "--json"]).json()
        #expect(japaneseJSON["tokens"] as? Int == japanese.utf8.count && japaneseJSON["predicted_bytes"] as? Int == japanese.utf8.count - 1, "\(japaneseJSON)")
        // The settings that change the numbers are recorded, as eval records them (tiny-opt is stored in f16).
        #expect(json["weights"] as? String == "f16" && json["method"] as? String == "dense" && json["policy"] == nil, "\(json)")
        let random = try CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", "The quick brown fox.", "--method", "random",
                                 "--sparsity", "0.5", "--mask-seed", "7", "--weights", "bf16", "--json"]).json()
        #expect(random["weights"] as? String == "bf16" && random["mask_seed"] as? Int == 7 && random["policy"] as? String == "global", "\(random)")
    }

    @Test("generate and chat report their method with the nominal and realised sparsity, in JSON and with --verbose")
    func sparsityReported() throws {
        let model = fixture("tiny-llama")
        let sparse = CLIRun(["generate", "--model", model, "--prompt", "a b c", "--max-tokens", "3", "--method", "random", "--sparsity", "0.5", "--json"])
        let json = try sparse.json()
        #expect(json["method"] as? String == "random" && json["head_sparsity"] as? Double == 0.5 && json["neuron_sparsity"] as? Double == 0.5)
        #expect((json["realised_head_sparsity"] as? Double ?? 0) > 0 && (json["realised_neuron_sparsity"] as? Double ?? 0) > 0, "\(json)")
        // As eval and perplexity: the weights and the mask source (generate defaults to f16).
        #expect(json["weights"] as? String == "f16" && json["mask_seed"] as? Int == 0 && json["policy"] as? String == "global", "\(json)")
        let dense = try CLIRun(["generate", "--model", model, "--prompt", "a b c", "--max-tokens", "3", "--json"]).json()
        #expect(dense["weights"] as? String == "f16" && dense["policy"] == nil && dense["prompt"] as? String == "a b c", "\(dense)")
        #expect(dense["method"] as? String == "dense" && dense["head_sparsity"] as? Double == 0 && dense["realised_head_sparsity"] as? Double == 0)
        let verbose = CLIRun(["generate", "--model", model, "--prompt", "a b c", "--max-tokens", "3", "--method", "random", "--sparsity", "0.5", "--verbose"])
        #expect(verbose.err.contains("; random masks, heads 0.50 / neurons 0.50, realised "), "\(verbose.err)")
        let chat = CLIRun(["chat", "--model", model, "--max-tokens", "2", "--method", "random", "--sparsity", "0.5", "--mask-seed", "3", "--json"], input: ["hello"])
        let turn = try #require(try JSONSerialization.jsonObject(with: Data(chat.out.utf8)) as? [String: Any], "\(chat.err)")
        #expect(turn["method"] as? String == "random" && (turn["realised_neuron_sparsity"] as? Double ?? 0) > 0, "\(turn)")
        // Each turn names the weights and its masks' source, as generate does.
        #expect(turn["weights"] as? String == "f16" && turn["mask_seed"] as? Int == 3 && turn["policy"] as? String == "global", "\(turn)")
    }

    @Test("generate --json returns the requested number of tokens")
    func generate() throws {
        let run = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Once upon", "--max-tokens", "5", "--json"])
        #expect(run.status == 0, "\(run.err)")
        let tokens = try #require(try run.json()["tokens"] as? [Int])
        #expect(tokens.count <= 5)
    }

    @Test("generate --prompt-file reads the prompt byte for byte; an empty one and both options at once are refused")
    func promptFile() throws {
        let file = TestScratch.path("prompt", suffix: ".txt")
        try "Once upon".write(toFile: file, atomically: false, encoding: .utf8)
        let inline = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Once upon", "-n", "5", "--json"])
        let fromFile = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt-file", file, "-n", "5", "--json"])
        #expect(fromFile.status == 0, "\(fromFile.err)")
        #expect(try fromFile.json()["tokens"] as? [Int] == (try inline.json()["tokens"] as? [Int]))
        #expect(try fromFile.json()["prompt_tokens"] as? [Int] == (try inline.json()["prompt_tokens"] as? [Int]))
        let both = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt-file", file, "--prompt", "x"])
        #expect(both.status == 1 && both.err.hasPrefix("error: --prompt: give only one of --prompt and --prompt-file"), "\(both.err)")
        try "".write(toFile: file, atomically: false, encoding: .utf8)
        let empty = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt-file", file])
        #expect(empty.status == 1 && empty.err == "error: --prompt-file \(file): is empty\n", "\(empty.err)")
    }

    @Test("text files and arguments that are no UTF-8 text are refused naming what they are: gzip, UTF-16 without a mark, bytes outside UTF-8 in an argument")
    func textThatIsNotText() throws {
        let gzip = TestScratch.path("text", suffix: ".gz"), utf16 = TestScratch.path("utf16be", suffix: ".txt")
        try Data([0x1F, 0x8B, 0x08, 0x00, 0x00, 0x00]).write(to: URL(fileURLWithPath: gzip))
        try Data("Hello there, world".utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }).write(to: URL(fileURLWithPath: utf16))
        for (file, reason) in [(gzip, "is gzip-compressed; decompress it first (gunzip)"),
                               (utf16, "holds NUL bytes (a binary file, or UTF-16 without a byte-order mark?); text must be UTF-8")] {
            let run = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text-file", file])
            #expect(run.status == 1 && run.err == "error: \(file): \(reason)\n", "\(run.err)")
        }
        final class Box: @unchecked Sendable { var err = "" }
        let box = Box()
        let console = Console(out: { _ in }, err: { box.err += $0 }, readLine: { nil }, readAll: { [] })
        let status = CLI.run(argumentBytes: [Array("tokenize".utf8), Array("--text".utf8), [0x6F, 0x6B, 0xFF, 0x21]], console: console)
        #expect(status == 1 && box.err == "error: argument 3 (after --text), \"ok\\xFF!\", is not valid UTF-8: arguments, paths included, are read as UTF-8 (give a text in a UTF-8 file; rename a file, or link it under a UTF-8 name)\n", "\(box.err)")
        #expect(CLI.run(argumentBytes: [Array("tokenize".utf8), Array("--help".utf8)], console: console) == 0)
    }

    @Test("generate refuses a prompt whose first MiB is far past the context without tokenizing the rest; a shorter one is counted whole")
    func farTooLongPrompt() throws {
        let file = TestScratch.path("long-prompt", suffix: ".txt")
        // Two-byte letters, so that the cut at 1 MiB falls inside one and must step back to its start.
        let sample = GenerateCommand.sampleBytes(maxContext: 128)
        #expect(sample == 1 << 20)
        let unit = "éé "   // 5 bytes: 2^20 = 5 · 209,715 + 1 cuts the next é after its first byte
        let long = String(repeating: unit, count: sample / 5 + 100)
        #expect(String(long.utf8.prefix(sample)) == nil)   // the cut splits a letter
        try long.write(toFile: file, atomically: false, encoding: .utf8)
        let run = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt-file", file, "-n", "1"])
        #expect(run.status == 1, "\(run.err)")
        #expect(run.err.hasPrefix("error: --prompt-file: its first \(sample - 1) of \(long.utf8.count) bytes are already ")
                && run.err.hasSuffix(" tokens, far more than the model's context of 128\n"), "\(run.err)")
        #expect(run.out.isEmpty)
        // Under the sample size, the whole prompt is counted.
        let shorter = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", String(repeating: "hello world ", count: 100), "-n", "1"])
        #expect(shorter.status == 1 && shorter.err.contains("tokens leave no room for a generated token in the model's context of 128"), "\(shorter.err)")
    }

    @Test("generate with a tiny positive temperature decodes as greedy does; one that rounds to 0 in Float is refused")
    func tinyTemperature() throws {
        let base = ["generate", "--model", fixture("tiny-llama"), "--prompt", "Once upon", "-n", "6", "--json"]
        let greedy = CLIRun(base)
        #expect(greedy.status == 0, "\(greedy.err)")
        for temperature in ["1e-30", "1e-40", "1.4e-45"] {
            let tiny = CLIRun(base + ["--temperature", temperature, "--seed", "5"])
            #expect(tiny.status == 0, "\(tiny.err)")
            #expect(try tiny.json()["tokens"] as? [Int] == (try greedy.json()["tokens"] as? [Int]), "--temperature \(temperature)")
        }
        let zero = CLIRun(base + ["--temperature", "1e-46", "--seed", "5"])
        #expect(zero.status == 1 && zero.err.hasPrefix("error: --temperature: 1e-46 rounds to 0 in single precision"), "\(zero.err)")
        #expect(zero.err.split(separator: "\n").count == 1)
    }

    @Test("generate reads --top-k, --min-p and --repeat-penalty: top-k 1 samples as greedy decodes, a penalty below 1 repeats the prompt, settings never read are refused")
    func samplingOptions() throws {
        let base = ["generate", "--model", fixture("tiny-llama"), "--prompt", "Once upon", "-n", "8", "--json"]
        let greedy = try CLIRun(base).json()["tokens"] as? [Int]
        #expect(greedy?.count == 8)
        let topK = CLIRun(base + ["--temperature", "1.5", "--top-k", "1", "--seed", "9"])
        #expect(topK.status == 0, "\(topK.err)")
        #expect(try topK.json()["tokens"] as? [Int] == greedy)
        // Greedy text from the tiny model never repeats a token; a penalty below 1 favours repeats,
        // so every token it picks is one of the prompt's.
        let favoured = CLIRun(base + ["--repeat-penalty", "0.01", "--repeat-last-n", "16"])
        #expect(favoured.status == 0, "\(favoured.err)")
        let json = try favoured.json()
        let tokens = try #require(json["tokens"] as? [Int]), promptTokens = try #require(json["prompt_tokens"] as? [Int])
        #expect(tokens != greedy && Set(tokens).isSubset(of: Set(promptTokens)), "\(tokens)")
        for (extra, expected) in [(["--top-k", "5"], "--top-k: is only read when sampling"),
                                  (["--min-p", "0.1"], "--min-p: is only read when sampling"),
                                  (["--repeat-last-n", "8"], "--repeat-last-n: is only read with a --repeat-penalty other than 1"),
                                  (["--repeat-penalty", "1.3", "--repeat-last-n", "0"], "--repeat-penalty: is not applied with --repeat-last-n 0"),
                                  (["--repeat-penalty", "0"], "--repeat-penalty: must be in"),
                                  (["--temperature", "1", "--min-p", "2"], "--min-p: must be in")] {
            let run = CLIRun(base + extra)
            #expect(run.status == 1 && run.err.hasPrefix("error: \(expected)") && run.err.split(separator: "\n").count == 1, "\(run.err)")
        }
    }

    @Test("generate --stop ends the text before the first place it spells the string, streamed and in JSON")
    func stopString() throws {
        let base = ["generate", "--model", fixture("tiny-llama"), "--prompt", "Once upon", "-n", "24"]
        let whole = try CLIRun(base + ["--json"]).json()
        let text = try #require(whole["text"] as? String), tokens = try #require(whole["tokens"] as? [Int])
        #expect(whole["stopped_at_stop"] as? Bool == false)
        // A stop string from the middle of the greedy text: three characters after a third of it.
        let characters = Array(text)
        try #require(characters.count >= 12, "\(text)")
        let stop = String(characters[(characters.count / 3)..<(characters.count / 3 + 3)])
        let before = String(text[..<text.range(of: stop)!.lowerBound])
        let cut = try CLIRun(base + ["--json", "--stop", stop]).json()
        #expect(cut["text"] as? String == before && cut["stopped_at_stop"] as? Bool == true)
        let cutTokens = try #require(cut["tokens"] as? [Int])
        #expect(cutTokens.count < tokens.count && Array(tokens.prefix(cutTokens.count)) == cutTokens)
        let streamed = CLIRun(base + ["--stop", stop])
        #expect(streamed.status == 0 && streamed.out == "Once upon" + before + "\n", "\(streamed.out)")
        // A string the text never spells changes nothing, held-back endings included.
        let never = CLIRun(base + ["--stop", String(characters.suffix(2)) + "\u{1}"])
        #expect(never.out == "Once upon" + text + "\n", "\(never.out)")
        let empty = CLIRun(base + ["--stop", ""])
        #expect(empty.status == 1 && empty.err == "error: --stop: is empty\n", "\(empty.err)")
    }

    @Test("streamed pieces add up to the decoded text when a token's first code point joins the character before it (❤ + U+FE0F, Devanagari vowel signs, \\r + \\n) or a character's first bytes follow a prepended mark (U+0600)")
    func streamedCombiningCharacters() throws {
        let tokenizer = try ModelLoader.loadTokenizer(path: fixture("tiny-llama"))
        for text in ["I love you ❤️❤️❤️ ok", "भारत की राजधानी नई दिल्ली है।", "a\r\nb 🇺🇸🇬🇧", "สวัสดีครับ", "\u{0600}龘\u{0600}龘"] {
            let ids = tokenizer.encode(text)
            var stream = TextStream(tokenizer: tokenizer)
            var pieces = ids.map { stream.append($0) }.joined()
            pieces += stream.finish()
            #expect(pieces == tokenizer.decode(ids, skipSpecialTokens: true), "\(text): \(pieces.unicodeScalars.map { String($0.value, radix: 16) })")
            // --stop reads the same pieces: a stop string made of a combining sequence is found.
            var fresh = TextStream(tokenizer: tokenizer), cut = StopText(stop: "❤️")
            for id in ids { _ = cut.append(fresh.append(id)) }
            if tokenizer.decode(ids, skipSpecialTokens: true).contains("❤️") { #expect(cut.stopped, "\(text)") }
        }
    }

    @Test("StopText holds back a possible start of the stop string and finds one spelled across pieces")
    func stopTextPieces() {
        var text = StopText(stop: "END")
        #expect(text.append("abcE") == "abc")       // "E" might start "END"
        #expect(text.append("Nx") == "ENx")         // it did not
        #expect(text.append("yE") == "y")
        #expect(text.append("N") == "")
        #expect(text.append("Dzz") == "" && text.stopped && text.kept == "abcENxy")
        var unfinished = StopText(stop: "END")
        #expect(unfinished.append("wait EN") == "wait ")
        #expect(unfinished.finish("") == "EN" && !unfinished.stopped)
        var none = StopText(stop: nil)
        #expect(none.append("ENDING") == "ENDING" && !none.stopped)
    }

    @Test("an empty prompt, empty text or missing model is a clear error")
    func emptyInputs() {
        let emptyPrompt = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", ""])
        #expect(emptyPrompt.status != 0 && emptyPrompt.err.contains("--prompt"))
        let emptyText = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", ""])
        #expect(emptyText.status != 0 && emptyText.err.contains("--text: is empty"), "\(emptyText.err)")
        let emptyFile = TestScratch.path("empty", suffix: ".txt")
        #expect(FileManager.default.createFile(atPath: emptyFile, contents: Data()))
        let emptyTextFile = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text-file", emptyFile])
        #expect(emptyTextFile.status != 0 && emptyTextFile.err.contains("--text-file \(emptyFile): is empty"), "\(emptyTextFile.err)")
        // A one-token window is allowed, as a model whose context is one token runs by default.
        let oneTokenWindows = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", "hello world", "-c", "1", "--json"])
        #expect(oneTokenWindows.status == 0 && oneTokenWindows.out.contains("\"context\" : 1,"), "\(oneTokenWindows.err)")
        let zeroTokenWindows = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", "hello world", "-c", "0"])
        #expect(zeroTokenWindows.status == 1 && zeroTokenWindows.err.contains("--context"), "\(zeroTokenWindows.err)")
        let missing = CLIRun(["info", "--model", "/nonexistent/model.gguf"])
        #expect(missing.status != 0 && missing.err.contains("/nonexistent/model.gguf"))
        let missingFile = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text-file", "/nonexistent.txt"])
        #expect(missingFile.status != 0 && missingFile.err.contains("/nonexistent.txt"))
    }

    @Test("a prompt longer than the context is refused before any of it is printed")
    func longPrompt() {
        let prompt = String(repeating: "the quick brown fox ", count: 100)   // far more than 128 tokens
        let run = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", prompt, "-n", "4"])
        #expect(run.status != 0 && run.err.hasPrefix("error: --prompt: ") && run.err.contains("context of 128"), "\(run.err)")
        #expect(run.out.isEmpty, "printed before the error: \(run.out.prefix(40))")
    }

    @Test("generate says on stderr when the context ends it before --max-tokens, and only then")
    func contextLimit() throws {
        let long = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Hello", "-n", "1000000", "--json"])
        #expect(long.status == 0, "\(long.err)")
        let tokens = try #require(try long.json()["tokens"] as? [Int])
        let prompt = try #require(try long.json()["prompt_tokens"] as? [Int])
        #expect(prompt.count + tokens.count == 128)   // prompt and generated tokens together fill the context, no more
        #expect(try long.json()["stopped_at_context"] as? Bool == true)
        #expect(long.err == "generate: stopped after \(tokens.count) of 1000000 tokens: the model's context of 128 is full\n", "\(long.err)")
        let short = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Hello", "-n", "3"])
        #expect(short.status == 0 && short.err.isEmpty, "\(short.err)")
        #expect(try CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Hello", "-n", "3", "--json"]).json()["stopped_at_context"] as? Bool == false)
    }

    @Test("--chat puts the reply on a line after the echoed prompt; a plain prompt is continued where it ends")
    func chatEcho() throws {
        for chat in [true, false] {
            let arguments = ["generate", "--model", fixture("tiny-llama"), "--prompt", "Name three colours.", "-n", "6"] + (chat ? ["--chat"] : [])
            let streamed = CLIRun(arguments)
            let json = CLIRun(arguments + ["--json"])
            #expect(streamed.status == 0 && json.status == 0, "\(streamed.err)")
            let text = try #require(try json.json()["text"] as? String)
            #expect(streamed.out == "Name three colours." + (chat ? "\n" : "") + text + "\n", "chat \(chat): \(streamed.out)")
        }
    }

    @Test("--chat reads a ChatML marker in the prompt as text: the template's markers are the only marker ids")
    func chatPromptAsText() throws {
        let run = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Hi<|im_end|>\n<|im_start|>assistant\nSure", "-n", "2", "--chat", "--json"])
        #expect(run.status == 0, "\(run.err)")
        let prompt = try #require(try run.json()["prompt_tokens"] as? [Int])
        // <|im_start|>user\n … <|im_end|>\n<|im_start|>assistant\n, markers 1 and 2.
        #expect(prompt.filter { $0 == 1 || $0 == 2 } == [1, 2, 1], "\(prompt)")
        let tokenizer = try ModelLoader.loadTokenizer(path: fixture("tiny-llama"))
        #expect(tokenizer.decode(prompt, skipSpecialTokens: false) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nSure<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test("--chat needs a tokenizer with the ChatML, Llama 3, Phi-3 or Gemma tokens")
    func chatTemplate() {
        let chat = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Hi", "-n", "2", "--chat"])
        #expect(chat.status == 0, "\(chat.err)")
        let plain = CLIRun(["generate", "--model", fixture("tiny-opt"), "--prompt", "Hi", "-n", "2", "--chat"])
        #expect(plain.status != 0 && plain.out.isEmpty, "\(plain.out)")
        #expect(plain.err == "error: --chat: the tokenizer has the tokens of no chat template ShadowLLM builds: ChatML (<|im_start|>, <|im_end|>) "
                + "or Llama 3 (<|start_header_id|>, <|eot_id|>, <|end_header_id|>) or Phi-3 (<|user|>, <|end|>, <|assistant|>) or Gemma (<start_of_turn>, <end_of_turn>) (not an instruct model?)\n", "\(plain.err)")
    }

    @Test("a directory given where a file belongs is called a directory, not a missing file")
    func directoryForFile() throws {
        let directory = TestScratch.path("dir")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = TestScratch.path("labels", suffix: ".lbl")
        try Data("0\n".utf8).write(to: URL(fileURLWithPath: file))
        for (option, arguments) in [
            ("--text-file", ["tokenize", "--model", fixture("tiny-llama"), "--text-file", directory]),
            ("--text-file", ["perplexity", "--model", fixture("tiny-llama"), "--text-file", directory]),
            ("--data", ["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", directory, "--labels", file]),
            ("--labels", ["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", file, "--labels", directory]),
        ] {
            let run = CLIRun(arguments)
            #expect(run.status != 0 && run.err == "error: \(option): \(directory) is a directory, not a file\n", "\(arguments): \(run.err)")
        }
    }

    @Test("a sliding-window model keeps its whole context: a prompt past the window runs, and attends differently there")
    func slidingWindowContext() throws {
        // The tiny Llama as a Mistral with a 48-token window in its 128-token context.
        let model = TestScratch.path("sliding-window-model")
        try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: model)
        let configPath = model + "/config.json"
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as? [String: Any])
        config["model_type"] = "mistral"
        config["architectures"] = ["MistralForCausalLM"]
        config["sliding_window"] = 48
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        let info = CLIRun(["info", "--model", model, "--json"])
        #expect(try info.json()["sliding_window"] as? Int == 48 && info.json()["max_context"] as? Int == 128, "\(info.out)")
        #expect(try info.json()["sliding_layers"] as? Int == 2 && info.json()["attention_softcap"] == nil, "\(info.out)")
        // Gemma 2: every other layer slides; its soft-caps are shown.
        let gemma = CLIRun(["info", "--model", fixture("tiny-gemma2")])
        #expect(gemma.out.contains("sliding-window attention over 5 tokens in 2 of 4 layers\nsoft-capping  scores 2, logits 3\n"), "\(gemma.out)")
        let gemmaJSON = try CLIRun(["info", "--model", fixture("tiny-gemma2"), "--json"]).json()
        #expect(gemmaJSON["sliding_layers"] as? Int == 2 && gemmaJSON["attention_softcap"] as? Double == 2 && gemmaJSON["logit_softcap"] as? Double == 3)
        let text = String(repeating: "ab cd ", count: 15)
        func nll(_ path: String, context: Int) throws -> Double {
            let run = CLIRun(["perplexity", "--model", path, "--text", text, "-c", "\(context)", "--json", "--no-progress"])
            #expect(run.status == 0, "\(run.err)")
            return try #require(run.json()["nll_sum"] as? Double)
        }
        // Within the window it is the tiny Llama; past it, not.
        #expect(try nll(model, context: 40) == nll(fixture("tiny-llama"), context: 40))
        #expect(try nll(model, context: 100) != nll(fixture("tiny-llama"), context: 100))
        #expect(CLIRun(["bench", "--model", model, "-p", "100", "-n", "4", "-r", "1", "--no-progress"]).status == 0)
    }

    // /proc/self/mem opens but fails to read at offset 0 (EIO), also for root, who reads chmod 000 files.
    @Test("a file that is there but cannot be read is not called missing: the error names it and the cause",
          .enabled(if: FileManager.default.fileExists(atPath: "/proc/self/mem"), "needs /proc/self/mem (Linux)"))
    func unreadableFiles() throws {
        let unreadable = "/proc/self/mem"
        let piqa = try EvalCommandTests.piqaFiles()
        let ioError = "cannot read \(unreadable): Input/output error"
        // A model directory whose config.json, tokenizer.json or shard index is a directory: there, but unreadable.
        func brokenModel(_ file: String) throws -> String {
            let copy = TestScratch.path("unreadable-\(file)")
            try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: copy)
            try FileManager.default.removeItem(atPath: copy + "/" + file)
            try FileManager.default.createDirectory(atPath: copy + "/" + file, withIntermediateDirectories: false)
            return copy
        }
        let config = try brokenModel("config.json"), tokenizer = try brokenModel("tokenizer.json")
        let index = try brokenModel("model.safetensors.index.json")
        let cases: [([String], String)] = [
            (["tokenize", "--model", fixture("tiny-llama"), "--text-file", unreadable], ioError),
            (["perplexity", "--model", fixture("tiny-llama"), "--text-file", unreadable], ioError),
            (["eval", "--model", fixture("tiny-llama"), "--task", "piqa", "--data", unreadable, "--labels", piqa.labels], ioError),
            (["calibrate", "--model", fixture("tiny-llama"), "--source", "text:\(unreadable)", "--out", TestScratch.path("unread")], ioError),
            (["info", "--model", config], "cannot read \(config)/config.json: Is a directory"),
            (["tokenize", "--model", tokenizer, "--text", "Hi"], "cannot read \(tokenizer)/tokenizer.json: Is a directory"),
            (["info", "--model", index], "cannot read \(index)/model.safetensors.index.json: Is a directory"),
        ]
        for (arguments, message) in cases {
            let run = CLIRun(arguments)
            #expect(run.status == 1 && run.err == "error: \(message)\n", "\(arguments): \(run.err)")
        }
    }
}

@Suite("Command line: sparse runs")
struct SparseCLITests {
    @Test("perplexity with random masks at 50% differs from dense and reports its sparsity")
    func randomMasks() throws {
        let text = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."
        let dense = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", text, "--json"])
        let sparse = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", text, "--json",
                             "--sparsity", "0.5", "--method", "random", "--policy", "local"])
        #expect(dense.status == 0 && sparse.status == 0, "\(sparse.err)")
        let a = try #require(try dense.json()["nll_sum"] as? Double)
        let b = try #require(try sparse.json()["nll_sum"] as? Double)
        #expect(a != b)
        #expect(try sparse.json()["head_sparsity"] as? Double == 0.5)
        // The realised share counts layer 0, which runs dense, so it sits below the nominal one.
        let realised = try #require(try sparse.json()["realised_neuron_sparsity"] as? Double)
        #expect(realised > 0 && realised < 0.5)
        #expect(try dense.json()["realised_head_sparsity"] as? Double == 0)
    }

    @Test("static masks read aggregate scores from a JSON file and reject the wrong shape")
    func staticMasks() throws {
        let dir = TestScratch.url("scores")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let good = dir.appendingPathComponent("good.json"), bad = dir.appendingPathComponent("bad.json")
        let heads = (0..<2).map { l in (0..<4).map { Double(l * 4 + $0) } }
        let neurons = (0..<2).map { l in (0..<128).map { Double(l * 128 + $0) } }
        try JSONSerialization.data(withJSONObject: ["heads": heads, "neurons": neurons]).write(to: good)
        try JSONSerialization.data(withJSONObject: ["heads": [[1.0]], "neurons": neurons]).write(to: bad)
        let ok = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Once", "--max-tokens", "3", "--json",
                         "--sparsity", "0.5", "--method", "static", "--scores", good.path])
        #expect(ok.status == 0, "\(ok.err)")
        let wrong = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Once", "--max-tokens", "3",
                            "--sparsity", "0.5", "--method", "static", "--scores", bad.path])
        #expect(wrong.status != 0 && wrong.err.contains("bad.json") && wrong.err.contains("heads"))
        // Through a pipe (`--scores <(jq … scores.json)`), as from a file.
        let fifo = dir.appendingPathComponent("scores-pipe").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let bytes = try Data(contentsOf: good)
        DispatchQueue.global().async {
            let writer = open(fifo, O_WRONLY)
            guard writer >= 0 else { return }
            _ = bytes.withUnsafeBytes { write(writer, $0.baseAddress, $0.count) }
            close(writer)
        }
        let piped = CLIRun(["generate", "--model", fixture("tiny-llama"), "--prompt", "Once", "--max-tokens", "3", "--json",
                            "--sparsity", "0.5", "--method", "static", "--scores", fifo])
        #expect(piped.status == 0 && (try? piped.json()["tokens"] as? [Int]) == (try? ok.json()["tokens"] as? [Int]), "\(piped.err)")
    }

    @Test("a file of the other kind where scores or a predictor belong is named as what it is")
    func filesOfTheOtherKind() throws {
        let dir = TestScratch.url("other-kind")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let json = dir.appendingPathComponent("scores.json").path
        try #"{"heads": [[1]]}"#.write(toFile: json, atomically: true, encoding: .utf8)
        let weights = try #require(try FileManager.default.contentsOfDirectory(atPath: fixture("tiny-llama")).first { $0.hasSuffix(".safetensors") })
        let safetensors = fixture("tiny-llama") + "/" + weights
        let generate = ["generate", "--model", fixture("tiny-llama"), "--prompt", "Once", "-n", "1", "--sparsity", "0.5"]
        let cases: [([String], String)] = [
            (["--method", "shadow", "--predictor", json], "error: \(json): not a safetensors file: it is JSON"),
            (["--method", "static", "--scores", safetensors], "error: \(safetensors): is a safetensors file (tensors: model weights or a predictor), not text"),
            (["--method", "static", "--scores", dir.path], "error: --scores: \(dir.path) is a directory, not a file"),
        ]
        for (options, message) in cases {
            let run = CLIRun(generate + options)
            #expect(run.status == 1 && run.err.hasPrefix(message) && run.err.split(separator: "\n").count == 1, "\(options): \(run.err)")
        }
        // A trace directory: the command that turns it into scores.
        let traces = dir.appendingPathComponent("traces").path
        try FileManager.default.createDirectory(atPath: traces, withIntermediateDirectories: true)
        try "{}".write(toFile: traces + "/manifest.json", atomically: true, encoding: .utf8)
        let run = CLIRun(generate + ["--method", "static", "--scores", traces])
        #expect(run.status == 1 && run.err == "error: --scores: \(traces) is a trace directory; --scores reads the JSON that `shadowllm aggregate --traces \(traces) --out scores.json` writes from it\n", "\(run.err)")
    }

    @Test("impossible sparsity values and a sparsity without a mask source are clear errors")
    func badSparsity() {
        for arguments in [["--sparsity", "1.5", "--method", "random"], ["--sparsity", "-0.1", "--method", "random"],
                          ["--sparsity", "0.5"], ["--head-sparsity", "abc", "--method", "random"],
                          ["--sparsity", "0.5", "--method", "static"]] {
            let run = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", "hello world"] + arguments)
            #expect(run.status != 0 && run.err.hasPrefix("error: ") && run.err.split(separator: "\n").count == 1,
                    "\(arguments): \(run.err)")
        }
        // The value came from --sparsity (the neurons' share): named so, not as an option not given.
        let named = CLIRun(["perplexity", "--model", fixture("tiny-llama"), "--text", "hello world", "--method", "random",
                            "--sparsity", "1.5", "--head-sparsity", "0.5"])
        #expect(named.status == 1 && named.err == "error: --sparsity: must be in [0, 1), got 1.5 (a fraction of the units, e.g. 0.5 for half)\n", "\(named.err)")
        // A percentage where a fraction belongs gets the same hint in every command that takes one.
        let percentages: [[String]] = [
            ["bench", "--model", fixture("tiny-llama"), "-p", "4", "-n", "2", "--method", "random", "--sparsity", "50"],
            ["sweep", "--model", fixture("tiny-llama"), "--methods", "random", "--sparsities", "30", "--out", scratchPath("percent")],
            ["pipeline", "--model", fixture("tiny-llama"), "--sparsity", "50", "--out", scratchPath("percent")],
        ]
        for arguments in percentages {
            let run = CLIRun(arguments)
            #expect(run.status == 1 && run.err.hasSuffix("(a fraction of the units, e.g. 0.5 for half)\n")
                    && run.err.split(separator: "\n").count == 1, "\(arguments): \(run.err)")
        }
    }
}
