import Foundation
import ShadowEval
import ShadowFormats
import ShadowModels
import ShadowSparsity
import ShadowTokenizers

/// `shadowllm chat`: a conversation with an instruct model, one user message per input line.
enum ChatCommand {
    /// One turn of `--json` output (a JSON Lines record), before its GenerationOutcome and masks
    /// (realised over the conversation up to this turn).
    struct Turn: Encodable {
        let turn: Int
        let user: String
        let reply: String
        let promptTokenCount: Int
        /// Prompt tokens whose keys and values the previous turn left in the cache (the dense
        /// model and fixed masks only; 0 for the others).
        let reusedTokenCount: Int
        let tokens: [Int]
        let droppedTurns: Int

        enum CodingKeys: String, CodingKey {
            case turn, user, reply, tokens
            case promptTokenCount = "prompt_token_count", reusedTokenCount = "reused_token_count", droppedTurns = "dropped_turns"
        }
    }

    /// The JSON line of a message that was not sent (too long for --context).
    struct NotSent: Encodable {
        let user: String
        let notSent: String
        enum CodingKeys: String, CodingKey { case user, notSent = "not_sent" }
    }

    /// `--context` when not given: the model's, up to this many tokens (the cache is reserved for
    /// all of it at the start; a 128k-token model would reserve gigabytes).
    static let defaultContext = 8192

    static let command = Command(
        name: "chat", abstract: "Talk with an instruct model: each input line is a message, each reply streams back.",
        discussion: """
            Reads messages from standard input, one per line, until its end or /quit (/exit); /reset starts a new \
            conversation (turns keep counting across it, so a --seed draws each turn afresh); white space around a line is dropped. Every reply sees the whole conversation in the \
            model's turn template — ChatML (<|im_start|>role …<|im_end|>: SmolLM2, Qwen2), Llama 3 \
            (<|start_header_id|>role<|end_header_id|> …<|eot_id|>, messages trimmed), Phi-3 (<|user|> … <|end|>: \
            Phi-3, Phi-3.5, Phi-4-mini) or Gemma (<start_of_turn>role …<end_of_turn>, messages trimmed, a system \
            message in front of the first user message), as its chat template names — opened by --system or else by the system \
            message the model's own chat template adds by default (SmolLM2's "You are a helpful AI assistant named \
            SmolLM, …"; Llama 3.1's "Cutting Knowledge Date: …" preamble with today's date where the template asks \
            for it; SmolLM3's "## Metadata" turn with today's date and its reasoning mode), as transformers renders the template; --no-system for no system turn. The dense model and the \
            fixed masks of --method random and static keep the conversation's keys and values from turn to turn \
            and prefill only what the cache does not hold (the new message, and the last reply's end): one mask \
            for every turn computes them alike. shadow, dejavu, dejavu-lookahead and oracle, even at sparsity 0, \
            prefill the whole conversation every turn and choose their masks from it (shadow from its last token; \
            the oracle runs a backward pass over all of it). When the conversation and room for a reply (a quarter of \
            --context, or --max-tokens if fewer) outgrow --context, the oldest turns are dropped until it fills \
            half (said on stderr), so that the next turns reuse the cache again. The conversation is kept as token \
            ids, each reply as it was generated, so a turn prefilled whole feeds the ids the cache would hold \
            (Qwen3's template writes earlier replies without their <think> part, and so does chat). The \
            template's markers are placed as their tokens, while messages and --system are tokenized with special \
            tokens not recognised (Hugging Face's split_special_tokens): a message that spells <|im_end|> or \
            <|eot_id|> reaches the model as those characters and cannot end or forge a turn. Ctrl-C stops the reply being written \
            (during the prefill, before its first token, the message is dropped); at the prompt it ends the \
            program. When sampling, turn n uses --seed + n − 1.
            """,
        options: ModelOptions.options + SparsityOptions.options(decoding: true) + [
            .value("max-tokens", short: "n", "n", help: "Most tokens of each reply.", default: "256"),
            .value("context", short: "c", "n", help: "Most tokens of conversation (template and reply included); older turns are dropped to stay within it.",
                   defaultDescription: "the model's context, at most \(defaultContext)"),
        ] + ChatTemplate.systemOptions() + [ChatTemplate.thinkingOption()] + GenerateCommand.samplingOptionList + [
            .value("stop", "text", help: "End each reply where it first spells this string, which is not printed; the conversation keeps the reply's tokens before it."),
            .flag("json", help: "Print one JSON object per message instead of streaming (JSON Lines: the reply, token ids, speeds, the weights kept and where sparse masks come from, as generate; {\"user\", \"not_sent\"} for a message too long to send or stopped by Ctrl-C before its reply's first token)."),
            SparsityOptions.packingOption,
        ]
    ) { arguments, console in
        let maxTokens = try arguments.int("max-tokens", range: 1...1_000_000) ?? 256
        let stop = arguments.string("stop")
        if stop == "" { throw ShadowError.invalidArgument(name: "--stop", reason: "is empty") }
        let sampling = try GenerateCommand.samplingOptions(arguments)
        let loaded = try ModelOptions.load(arguments, console: console)
        let sparsity = try SparsityOptions.controller(arguments, loaded: loaded, console: console)
        let packing = try SparsityOptions.packingRule(arguments, controller: sparsity, model: loaded.model,
                                                      console: console, command: "chat")
        let tokenizer = try loaded.requireTokenizer()
        var template = try ChatTemplate(tokenizer: tokenizer, option: "chat")
        try template.readThinking(arguments)
        if let warning = template.warning { console.printError(warning) }
        let system = try template.system(arguments)
        let model = loaded.model
        let maskSource = try SparsityOptions.source(arguments)
        let json = arguments.flag("json")
        // The end of a turn ends a reply, whatever the model's own end-of-sequence token is.
        let stopTokens = loaded.stopTokens.union(template.stopTokens)
        let limit = try arguments.int("context", range: 2...1_000_000) ?? min(model.shape.maxContext, defaultContext)
        guard limit <= model.shape.maxContext else {
            throw ShadowError.invalidArgument(name: "--context", reason: "\(limit) exceeds \(model.contextDescription)")
        }
        if let system, try template.prompt(system: system, user: "").count >= limit {
            throw arguments.has("system")
                ? ShadowError.invalidArgument(name: "--system", reason: "leaves no room in a context of \(limit) tokens")
                : ShadowError.invalidArgument(name: "--context", reason: "\(limit) tokens leave no room beside the default system message of the model's chat template (--no-system leaves it out)")
        }
        let reserve = min(maxTokens, limit / 4)

        // The conversation, one entry per turn: each reply as the ids it was generated as, so that
        // a reply spelling a marker stays text, and a re-prefilled turn feeds what the cache would hold.
        var turns: [ChatTurn] = []
        var count = 0
        // The cache lives across turns when every turn computes keys and values alike: the dense
        // model, or one fixed mask (random, static). `cached` lists the tokens it holds.
        let fixedSparsity = sparsity as? FixedSparsity
        let cache = sparsity == nil || fixedSparsity != nil ? model.makeCache(capacity: limit) : nil
        cache?.scratch.packing = packing
        var cached: [Int] = []
        while true {
            if console.interactive { console.out("> ") }
            let read: String?
            do { read = try console.readLine() } catch let skipped as any LineReader.SkippedLine {
                // Skipped whole (too long, not UTF-8): the conversation goes on with the next line.
                let reason = skipped.reason + "; it was not sent"
                console.printError("chat: " + reason)
                if json { console.print(try JSONOutput.string(NotSent(user: skipped.start, notSent: reason), pretty: false)) }
                continue
            }
            guard let line = read else {
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
            let (prompt, dropped) = try template.fittedPrompt(system: system, turns: turns, user: message, reserve: reserve, limit: limit)
            guard prompt.count < limit else {
                let reason = "this message does not fit a context of \(limit) tokens (\(prompt.count) with the template); it was not sent"
                console.printError("chat: " + reason)
                // Still one JSON line per message, so that a reader pairing them stays in step.
                if json { console.print(try JSONOutput.string(NotSent(user: message, notSent: reason), pretty: false)) }
                continue
            }
            if dropped > 0 {
                turns.removeFirst(dropped)
                console.printError("chat: the conversation outgrew a context of \(limit) tokens; dropped the oldest \(dropped) turn\(dropped == 1 ? "" : "s")")
            }
            count += 1
            var stream = TextStream(tokenizer: tokenizer)
            var cut = StopText(stop: stop)
            let replyLimit = min(maxTokens, limit - prompt.count)
            // Turn n samples with --seed + n − 1: a repeatable conversation whose turns do not share one random stream.
            var turnSampling = sampling
            turnSampling.seed = sampling.seed &+ UInt64(count - 1)
            func onToken(_ token: Int) -> Bool {
                let piece = cut.append(stream.append(token))
                if !json { console.out(piece) }
                return !cut.stopped
            }
            // Ctrl-C while a reply is prefilled or streams ends that reply (kept as far as it got);
            // at the prompt it ends the program, as usual.
            let result = try Interruption.handling([SIGINT]) {
                if arguments.flag("verbose") { console.printError("chat: turn \(count): a prompt of \(prompt.count) tokens") }
                let shouldStop = { Interruption.requested }
                if let cache {
                    return try Generator.generate(model: model, prompt: prompt, continuing: cache, cached: &cached, maxTokens: replyLimit,
                                                  sampling: turnSampling, stopTokens: stopTokens, sparsity: fixedSparsity,
                                                  onToken: onToken, shouldStop: shouldStop)
                }
                return try Generator.generate(model: model, prompt: prompt, maxTokens: replyLimit, sampling: turnSampling, stopTokens: stopTokens,
                                              sparsity: sparsity, packing: packing, onToken: onToken, shouldStop: shouldStop)
            }
            // Ended neither by a stop token, nor by --stop, nor by its length: Ctrl-C stopped it.
            let interrupted = !result.stoppedAtEOS && !cut.stopped && result.tokens.count < replyLimit
            let stoppedAtContext = !result.stoppedAtEOS && result.tokens.count == replyLimit && replyLimit < maxTokens
            if interrupted && result.tokens.isEmpty {
                // Stopped before its first token: as if the message had not been sent (its turn
                // number too, as for a message too long to send).
                console.printError("chat: reply stopped (Ctrl-C) before its first token; the message is not kept")
                if json {
                    console.print(try JSONOutput.string(NotSent(user: message, notSent: "stopped (Ctrl-C) before the reply's first token"), pretty: false))
                } else {
                    console.out("\n")
                }
                count -= 1
                continue
            }
            if interrupted { console.printError("chat: reply stopped (Ctrl-C)") }
            if stoppedAtContext {
                console.printError("chat: the reply stopped after \(counted(replyLimit, "token")) at the end of a context of \(limit) (--max-tokens \(maxTokens))")
            }
            let reply = cut.stopped ? cut.kept : tokenizer.decode(result.tokens, skipSpecialTokens: true)
            // Cut at --stop, the conversation keeps the tokens whose text ends before it.
            turns.append(ChatTurn(user: message, reply: cut.stopped ? tokensBefore(reply, in: result.tokens, tokenizer: tokenizer) : result.tokens))
            let masks = try SparsitySummary(arguments, controller: sparsity, shape: model.shape, packedBytes: result.packedBytes)
            if json {
                let turn = GenerationReport(
                    fields: Turn(turn: count, user: message, reply: reply, promptTokenCount: prompt.count, reusedTokenCount: result.reusedTokens,
                                 tokens: result.tokens, droppedTurns: dropped),
                    outcome: GenerationOutcome(stoppedAtEOS: result.stoppedAtEOS, stoppedAtStop: cut.stopped, stoppedAtContext: stoppedAtContext,
                                               interrupted: interrupted, prefillTokensPerSecond: result.stats.promptTokensPerSecond,
                                               decodeTokensPerSecond: result.stats.generatedTokensPerSecond),
                    masks: masks)
                console.print(try JSONOutput.string(GenerateCommand.Report(generation: turn, weights: model.weightDType.rawValue, maskSource: maskSource),
                                                    pretty: false))
            } else {
                console.out((cut.stopped ? "" : cut.finish(stream.finish())) + "\n")
                if arguments.flag("verbose") {
                    console.printError(String(format: "chat: prompt %ld tokens (%ld kept from the last turn), %.1f t/s; reply %ld tokens, ",
                                              prompt.count, result.reusedTokens, result.stats.promptTokensPerSecond, result.tokens.count)
                                       + decodeSpeedText(result.stats) + masks.text)
                }
            }
        }
    }

    /// The longest start of `tokens` whose text is no longer than `text` in bytes (a reply cut at --stop).
    static func tokensBefore(_ text: String, in tokens: [Int], tokenizer: any Tokenizer) -> [Int] {
        var kept = tokens
        let bytes = text.utf8.count
        while !kept.isEmpty, tokenizer.decode(kept, skipSpecialTokens: true).utf8.count > bytes { kept.removeLast() }
        return kept
    }
}
