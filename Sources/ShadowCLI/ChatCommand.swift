import Foundation
import ShadowFormats
import ShadowModels
import ShadowSparsity
import ShadowTokenizers

/// The ChatML turn template of instruct models such as SmolLM2-Instruct, built as token ids: the
/// markers are placed as their ids and the text between them (role, newline, message) is encoded
/// with special tokens not recognised, so a message that spells "<|im_end|>" reaches the model as
/// those characters and cannot end or forge a turn. For text that spells no marker the ids are
/// those of the template's text encoded whole (markers that strip no white space, as SmolLM2's).
struct ChatTemplate: Sendable {
    static let markers = ["<|im_start|>", "<|im_end|>"]

    let tokenizer: any Tokenizer
    /// `<|im_start|>` and `<|im_end|>`.
    let start: Int, end: Int
    /// The first marker the tokenizer holds as an ordinary added token rather than a special one:
    /// text that spells it is read as the marker even when special tokens are not recognised
    /// (as in Hugging Face's tokenizers), so a message could end or forge a turn. Such tokenizers
    /// exist (markers added with `add_tokens`, or user-defined tokens in a GGUF); the commands
    /// warn and go on.
    let ordinaryMarker: String?
    /// The system message the model's own template puts in front of a conversation that has
    /// none (SmolLM2's "You are a helpful AI assistant named SmolLM, …"), as `apply_chat_template`
    /// and llama.cpp with --jinja render it; nil when its template has none or the tokenizer no template.
    let defaultSystem: String?

    /// Without its markers as single tokens the template would reach the model as plain text.
    init(tokenizer: any Tokenizer, option: String) throws {
        var ids: [Int] = []
        var ordinary: String? = nil
        for marker in Self.markers {
            let encoded = tokenizer.encode(marker)
            guard encoded.count == 1 else {
                throw ShadowError.invalidArgument(name: option, reason: "the tokenizer has no ChatML token \(marker) (not an instruct model with the ChatML template?)")
            }
            if ordinary == nil, tokenizer.encode(marker, splitSpecialTokens: true) == encoded { ordinary = marker }
            ids += encoded
        }
        self.tokenizer = tokenizer
        (start, end) = (ids[0], ids[1])
        ordinaryMarker = ordinary
        defaultSystem = tokenizer.chatTemplate.flatMap(Self.defaultSystemMessage)
    }

    /// The default system message of a ChatML template's Jinja source: a string literal that is
    /// a whole system turn, `'<|im_start|>system\n…<|im_end|>\n'` (a literal that goes on with
    /// `+ messages[0]['content']` is the user's own system message, not a default). Only the
    /// literal is read, not the logic around it, which in ChatML templates emits it when the
    /// first message is not a system message.
    static func defaultSystemMessage(in template: String) -> String? {
        // Jinja comments ({# … #}) are not output.
        var source = template
        while let open = source.range(of: "{#"), let close = source.range(of: "#}", range: open.upperBound..<source.endIndex) {
            source.removeSubrange(open.lowerBound..<close.upperBound)
        }
        let opener = markers[0] + "system"
        var from = source.startIndex
        search: while let found = source.range(of: opener, range: from..<source.endIndex) {
            from = found.upperBound
            guard found.lowerBound > source.startIndex else { continue }
            let quote = source[source.index(before: found.lowerBound)]
            guard quote == "'" || quote == "\"" else { continue }
            // The rest of the literal, with Jinja's (Python's) escapes read.
            var text = "", index = found.upperBound, closed = false
            while index < source.endIndex {
                var character = source[index]
                index = source.index(after: index)
                if character == quote { closed = true; break }
                if character == "\\", index < source.endIndex {
                    let escaped = source[index]
                    index = source.index(after: index)
                    switch escaped {
                    case "n": character = "\n"
                    case "t": character = "\t"
                    case "r": character = "\r"
                    case "x", "u":
                        // \xHH, \uHHHH: a code point in hex.
                        let digits = escaped == "x" ? 2 : 4
                        guard let end = source.index(index, offsetBy: digits, limitedBy: source.endIndex),
                              let value = UInt32(source[index..<end], radix: 16), let scalar = Unicode.Scalar(value) else { continue search }
                        character = Character(scalar)
                        index = end
                    default: character = escaped
                    }
                }
                text.append(character)
            }
            let close = markers[1]
            guard closed, text.hasPrefix("\n") else { continue }
            var body = text.dropFirst()
            if body.hasSuffix("\n") { body = body.dropLast() }
            guard body.hasSuffix(close) else { continue }
            body = body.dropLast(close.count)
            guard !markers.contains(where: body.contains) else { continue }
            return String(body)
        }
        return nil
    }

    /// `--system` and `--no-system`, shared by chat and generate --chat.
    static func systemOptions(helpPrefix: String = "") -> [Option] {
        [
            .value("system", "text", help: helpPrefix + "A system message that opens the conversation (tokenized as text: a ChatML marker in it is not read as one).",
                   defaultDescription: "the one the model's chat template adds, if any"),
            .flag("no-system", help: helpPrefix + "No system message, not even the default one of the model's chat template."),
        ]
    }

    /// The system message: --system, else none with --no-system, else the template's default.
    func system(_ arguments: ParsedArguments) throws -> String? {
        if arguments.flag("no-system") {
            if arguments.has("system") { throw ShadowError.invalidArgument(name: "--no-system", reason: "contradicts --system") }
            return nil
        }
        return arguments.string("system") ?? defaultSystem
    }

    /// The warning for a tokenizer whose markers a message could spell, if this is one.
    func warning(command: String) -> String? {
        ordinaryMarker.map {
            "\(command): warning: the tokenizer's ChatML token \($0) is not a special token: a message that spells it is read as the marker (it can end or forge a turn)"
        }
    }

    /// `<|im_start|>role\ncontent<|im_end|>\n`.
    func message(_ role: String, _ content: String) -> [Int] {
        tokenizer.encode([.token(start), .text("\(role)\n\(content)"), .token(end), .text("\n")])
    }

    /// `<|im_start|>assistant\n`: where the assistant's reply starts.
    var replyStart: [Int] { tokenizer.encode([.token(start), .text("assistant\n")]) }

    /// A reply's ids as they were generated (its stop token left out), closed as the template
    /// closes a message.
    func closing(reply: [Int]) -> [Int] {
        reply + tokenizer.encode([.token(end), .text("\n")])
    }

    /// One exchange of a conversation: the user's message, the reply as generated, the close.
    func turn(user: String, reply: [Int]) -> [Int] {
        message("user", user) + replyStart + closing(reply: reply)
    }

    /// The model's input: the system message, the earlier turns (from `turn`) and the new user
    /// message, ending where the assistant's reply starts; BOS in front if the model adds one.
    func prompt(system: String?, turns: [[Int]] = [], user: String) -> [Int] {
        tokenizer.addingSpecialTokens((system.map { message("system", $0) } ?? []) + turns.joined() + message("user", user) + replyStart)
    }
}

/// `shadowllm chat`: a conversation with an instruct model, one user message per input line.
enum ChatCommand {
    /// One turn of `--json` output (a JSON Lines record).
    struct TurnReport: Encodable {
        let turn: Int
        let user: String
        let reply: String
        let promptTokenCount: Int
        /// Prompt tokens whose keys and values the previous turn left in the cache (the dense
        /// model and fixed masks only; 0 for the others).
        let reusedTokenCount: Int
        let tokens: [Int]
        let droppedTurns: Int
        let stoppedAtEOS: Bool
        /// The reply reached the end of --context before --max-tokens.
        let stoppedAtContext: Bool
        /// Ctrl-C stopped the reply.
        let interrupted: Bool
        let prefillTokensPerSecond: Double
        let decodeTokensPerSecond: Double

        enum CodingKeys: String, CodingKey {
            case turn, user, reply, tokens, interrupted
            case promptTokenCount = "prompt_token_count", reusedTokenCount = "reused_token_count", droppedTurns = "dropped_turns"
            case stoppedAtEOS = "stopped_at_eos", stoppedAtContext = "stopped_at_context"
            case prefillTokensPerSecond = "prefill_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
        }
    }

    /// `--context` when not given: the model's, up to this many tokens (the cache is reserved for
    /// all of it at the start; a 128k-token model would reserve gigabytes).
    static let defaultContext = 8192

    static let command = Command(
        name: "chat", abstract: "Talk with an instruct model: each input line is a message, each reply streams back.",
        discussion: """
            Reads messages from standard input, one per line, until its end or /quit (/exit); /reset starts a new \
            conversation. Every reply sees the whole conversation in the ChatML template, opened by --system or else \
            by the system message the model's own chat template adds by default (SmolLM2's "You are a helpful AI \
            assistant named SmolLM, …", as transformers renders the template; --no-system for none). The dense model and the \
            fixed masks of --method random and static keep the conversation's keys and values from turn to turn \
            and prefill only what the cache does not hold (the new message, and the last reply's end): one mask \
            for every turn computes them alike. shadow, dejavu, dejavu-lookahead and oracle, even at sparsity 0, \
            prefill the whole conversation every turn and choose their masks from it (shadow from its last token; \
            the oracle runs a backward pass over all of it). When the conversation and room for a reply (a quarter of \
            --context, or --max-tokens if fewer) outgrow --context, the oldest turns are dropped until it fills \
            half (said on stderr), so that the next turns reuse the cache again. The conversation is kept as token \
            ids, each reply as it was generated, so a turn prefilled whole feeds the ids the cache would hold. The \
            template's markers are placed as their tokens, while messages and --system are tokenized with special \
            tokens not recognised (Hugging Face's split_special_tokens): a message that spells <|im_end|> reaches \
            the model as those characters and cannot end or forge a turn. Ctrl-C stops the reply being written \
            (during the prefill, before its first token, the message is dropped); at the prompt it ends the \
            program. When sampling, turn n uses --seed + n − 1.
            """,
        options: ModelOptions.options + SparsityOptions.options(decoding: true) + [
            .value("max-tokens", short: "n", "n", help: "Most tokens of each reply.", default: "256"),
            .value("context", short: "c", "n", help: "Most tokens of conversation (template and reply included); older turns are dropped to stay within it.",
                   defaultDescription: "the model's context, at most \(defaultContext)"),
        ] + ChatTemplate.systemOptions() + GenerateCommand.samplingOptionList + [
            .flag("json", help: "Print one JSON object per turn (JSON Lines: the reply, token ids, speeds) instead of streaming."),
            .flag("pack-rows", help: "Sparse decode reads the kept rows from packed copies once a mask has been used twice."),
        ]
    ) { arguments, console in
        let maxTokens = try arguments.int("max-tokens", range: 1...1_000_000) ?? 256
        let sampling = try GenerateCommand.samplingOptions(arguments)
        let loaded = try ModelOptions.load(arguments, console: console)
        let sparsity = try SparsityOptions.controller(arguments, loaded: loaded, console: console)
        let tokenizer = try loaded.requireTokenizer()
        let template = try ChatTemplate(tokenizer: tokenizer, option: "chat")
        if let warning = template.warning(command: "chat") { console.printError(warning) }
        let system = try template.system(arguments)
        let model = loaded.model
        let json = arguments.flag("json")
        // The end of a turn ends a reply, whatever the model's own end-of-sequence token is.
        let stopTokens = loaded.stopTokens.union([template.end])
        let limit = try arguments.int("context", range: 2...1_000_000) ?? min(model.shape.maxContext, defaultContext)
        guard limit <= model.shape.maxContext else {
            throw ShadowError.invalidArgument(name: "--context", reason: "\(limit) exceeds the model's context of \(model.shape.maxContext)")
        }
        if let system, template.prompt(system: system, user: "").count >= limit {
            throw arguments.has("system")
                ? ShadowError.invalidArgument(name: "--system", reason: "leaves no room in a context of \(limit) tokens")
                : ShadowError.invalidArgument(name: "--context", reason: "\(limit) tokens leave no room beside the default system message of the model's chat template (--no-system leaves it out)")
        }
        let reserve = min(maxTokens, limit / 4)

        // The conversation as token ids, one entry per turn (`ChatTemplate.turn`): each reply as it
        // was generated, so that a reply spelling a marker stays text, and a re-prefilled turn
        // feeds what the cache would hold.
        var turns: [[Int]] = []
        var count = 0
        // The cache lives across turns when every turn computes keys and values alike: the dense
        // model, or one fixed mask (random, static). `cached` lists the tokens it holds.
        let fixedSparsity = sparsity as? FixedSparsity
        let cache = sparsity == nil || fixedSparsity != nil ? model.makeCache(capacity: limit) : nil
        cache?.scratch.packsKeptRows = arguments.flag("pack-rows")
        var cached: [Int] = []
        while true {
            if console.interactive { console.out("> ") }
            guard let line = try console.readLine() else {
                if console.interactive { console.out("\n") }   // Ctrl-D leaves the cursor after "> "
                break
            }
            let message = line.trimmingCharacters(in: .whitespacesAndNewlines)   // a CRLF file leaves "\r"
            if message.isEmpty { continue }
            if message == "/quit" || message == "/exit" { break }
            if message == "/reset" {
                turns.removeAll()
                console.printError("chat: a new conversation")
                continue
            }
            var prompt = template.prompt(system: system, turns: turns, user: message)
            var dropped = 0
            if prompt.count + reserve > limit {
                // Down to half the context, so that the next turns fit again and reuse the cache.
                while dropped < turns.count, prompt.count + reserve > limit || prompt.count > limit / 2 {
                    dropped += 1
                    prompt = template.prompt(system: system, turns: Array(turns.dropFirst(dropped)), user: message)
                }
            }
            guard prompt.count < limit else {
                console.printError("chat: this message does not fit a context of \(limit) tokens (\(prompt.count) with the template); it was not sent")
                continue
            }
            if dropped > 0 {
                turns.removeFirst(dropped)
                console.printError("chat: the conversation outgrew a context of \(limit) tokens; dropped the oldest \(dropped) turn\(dropped == 1 ? "" : "s")")
            }
            count += 1
            var stream = TextStream(tokenizer: tokenizer)
            let replyLimit = min(maxTokens, limit - prompt.count)
            // Turn n samples with --seed + n − 1: a repeatable conversation whose turns do not share one random stream.
            var turnSampling = sampling
            turnSampling.seed = sampling.seed &+ UInt64(count - 1)
            func onToken(_ token: Int) -> Bool {
                if !json { console.out(stream.append(token)) }
                return true
            }
            // Ctrl-C while a reply is prefilled or streams ends that reply (kept as far as it got);
            // at the prompt it ends the program, as usual.
            let result = try Interruption.handlingSIGINT {
                if arguments.flag("verbose") { console.printError("chat: turn \(count): a prompt of \(prompt.count) tokens") }
                let stop = { Interruption.requested }
                if let cache {
                    return try Generator.generate(model: model, prompt: prompt, continuing: cache, cached: &cached, maxTokens: replyLimit,
                                                  sampling: turnSampling, stopTokens: stopTokens, sparsity: fixedSparsity,
                                                  onToken: onToken, shouldStop: stop)
                }
                return try Generator.generate(model: model, prompt: prompt, maxTokens: replyLimit, sampling: turnSampling, stopTokens: stopTokens,
                                              sparsity: sparsity, packKeptRows: arguments.flag("pack-rows"), onToken: onToken, shouldStop: stop)
            }
            // Ended neither by a stop token nor by its length: Ctrl-C stopped it.
            let interrupted = !result.stoppedAtEOS && result.tokens.count < replyLimit
            let stoppedAtContext = !result.stoppedAtEOS && result.tokens.count == replyLimit && replyLimit < maxTokens
            if interrupted && result.tokens.isEmpty {
                // Stopped before its first token: as if the message had not been sent.
                console.printError("chat: reply stopped (Ctrl-C) before its first token; the message is not kept")
                if !json { console.out("\n") }
                continue
            }
            if interrupted { console.printError("chat: reply stopped (Ctrl-C)") }
            if stoppedAtContext {
                console.printError("chat: the reply stopped after \(replyLimit) tokens at the end of a context of \(limit) (--max-tokens \(maxTokens))")
            }
            let reply = tokenizer.decode(result.tokens, skipSpecialTokens: true)
            turns.append(template.turn(user: message, reply: result.tokens))
            if json {
                console.print(try JSONOutput.string(TurnReport(
                    turn: count, user: message, reply: reply, promptTokenCount: prompt.count, reusedTokenCount: result.reusedTokens,
                    tokens: result.tokens, droppedTurns: dropped, stoppedAtEOS: result.stoppedAtEOS, stoppedAtContext: stoppedAtContext,
                    interrupted: interrupted, prefillTokensPerSecond: result.stats.promptTokensPerSecond,
                    decodeTokensPerSecond: result.stats.generatedTokensPerSecond), pretty: false))
            } else {
                console.out(stream.finish() + "\n")
                if arguments.flag("verbose") {
                    console.printError(String(format: "chat: prompt %d tokens (%d kept from the last turn), %.1f t/s; reply %d tokens, %.1f t/s",
                                              prompt.count, result.reusedTokens, result.stats.promptTokensPerSecond,
                                              result.tokens.count, result.stats.generatedTokensPerSecond))
                }
            }
        }
    }
}
