import Foundation
import ShadowEval
import ShadowFormats
import ShadowModels
import ShadowSparsity
import ShadowTokenizers

/// `shadowllm generate`: prompt → streamed continuation.
enum GenerateCommand {
    /// The generation's report (or a chat turn's), then `weights` and where a sparse run's masks
    /// come from (`predictor`, `scores`, `oracle_criterion`, `mask_seed`, `policy`,
    /// `hybrid_floor`), as eval and perplexity record them.
    struct Report<Fields: Encodable>: Encodable {
        let generation: GenerationReport<Fields>
        let weights: String
        let maskSource: [String: String]

        func encode(to encoder: any Encoder) throws {
            try generation.encode(to: encoder)
            var c = encoder.container(keyedBy: EvalCommand.Report.Key.self)
            try c.encode(weights, forKey: .init("weights"))
            try EvalCommand.Report.encode(maskSource: maskSource, into: &c)
        }
    }

    struct Fields: Encodable {
        let prompt: String
        /// With --chat: the text of the system turn the prompt opened with (Llama 3.1's date
        /// preamble included; absent without --chat or without one).
        let system: String?
        /// Ends before --stop when the text spelled it; `tokens` include the ones that spelled it.
        let text: String
        let promptTokens: [Int]
        let tokens: [Int]

        enum CodingKeys: String, CodingKey {
            case prompt, system, text, tokens, promptTokens = "prompt_tokens"
        }
    }

    static let command = Command(
        name: "generate", abstract: "Continue a prompt, streaming the text as it is generated.",
        discussion: "Greedy by default; --temperature > 0 samples (with --top-k, --top-p and --min-p, and a --seed that makes it repeatable). --repeat-penalty applies to greedy decoding too. --stop ends the text where it spells a string. Ctrl-C (or SIGTERM) ends it where it got to: printed (under --json, reported with interrupted: true), then the command exits with status 130.",
        options: ModelOptions.options + SparsityOptions.options(decoding: true) + [
            .value("prompt", short: "p", "text", help: "The prompt. Special tokens it spells (\"<|im_start|>\") are read as those tokens, as Hugging Face tokenizers do by default; with --chat they are text."),
            .value("prompt-file", "path", help: "Read the prompt from a UTF-8 file instead (kept byte for byte, a final newline too; - reads standard input)."),
            .value("max-tokens", short: "n", "n", help: "Most tokens to generate.", default: "128"),
        ] + samplingOptionList + [
            .flag("chat", help: "Wrap the prompt in the turn template of instruct models, ChatML (<|im_start|>user …), Llama 3 (<|start_header_id|>user …), Phi-3 (<|user|> …) or Gemma (<start_of_turn>user …) as the model's chat template says, as a message tokenized with special tokens not recognised (a <|im_end|> in it is text); the reply starts on the line after the echoed prompt."),
        ] + ChatTemplate.systemOptions(helpPrefix: "With --chat, ") + [ChatTemplate.thinkingOption(helpPrefix: "With --chat, ")] + [
            .value("stop", "text", help: "End the text where it first spells this string, which is not printed (in bash, $'\\n\\n' stops at a blank line)."),
            .flag("json", help: "Print JSON with the text, token ids, speeds, the weights dtype kept and where sparse masks come from (as eval) instead of streaming."),
            SparsityOptions.packingOption,
        ]
    ) { arguments, console in
        let prompt = try ModelOptions.text(arguments, console: console, textOption: "prompt", fileOption: "prompt-file")
        let maxTokens = try arguments.int("max-tokens", range: 0...1_000_000) ?? 128
        let sampling = try samplingOptions(arguments)
        let stop = arguments.string("stop")
        if stop == "" { throw ShadowError.invalidArgument(name: "--stop", reason: "is empty") }
        let promptSource = ModelOptions.textSource(arguments, textOption: "prompt", fileOption: "prompt-file")
        guard !prompt.isEmpty else { throw ShadowError.invalidArgument(name: promptSource, reason: "is empty") }
        for option in ["system", "no-system", "no-think"] where arguments.has(option) && !arguments.flag("chat") {
            throw ShadowError.invalidArgument(name: "--\(option)", reason: "applies to --chat only")
        }
        let loaded = try ModelOptions.load(arguments, console: console)
        let sparsity = try SparsityOptions.controller(arguments, loaded: loaded, console: console)
        let packing = try SparsityOptions.packingRule(arguments, controller: sparsity, model: loaded.model,
                                                      console: console, command: "generate")
        let tokenizer = try loaded.requireTokenizer()
        // In the chat template the prompt is a user's message: special tokens it spells are text.
        // The end of the turn ends the reply, as in `chat`, whatever the model's own EOS is.
        var template = arguments.flag("chat") ? try ChatTemplate(tokenizer: tokenizer, option: "--chat") : nil
        try template?.readThinking(arguments)
        if let warning = template?.warning { console.printError(warning) }
        let system = try template?.system(arguments)
        let promptOption = arguments.has("prompt-file") ? "--prompt-file" : "--prompt"
        try refuseFarTooLong(prompt, tokenizer: tokenizer, model: loaded.model, option: promptOption)
        let promptIDs = try template.map { try $0.prompt(system: system, user: prompt) } ?? tokenizer.encodeWithSpecialTokens(prompt)
        let stopTokens = loaded.stopTokens.union(template?.stopTokens ?? [])
        // A system turn that fills the context is not the prompt's fault.
        if let template, let system, try template.prompt(system: system, user: "").count >= loaded.model.shape.maxContext {
            throw arguments.has("system")
                ? ShadowError.invalidArgument(name: "--system", reason: "leaves no room in \(loaded.model.contextDescription)")
                : ShadowError.invalidArgument(name: "--chat", reason: "the default system message of the model's chat template leaves no room in \(loaded.model.contextDescription) (--no-system leaves it out)")
        }
        if promptIDs.isEmpty {
            throw ShadowError.invalidArgument(name: promptSource, reason: "gives no tokens: the tokenizer has none for any of its characters (control characters?)")
        }
        try Generator.check(prompt: promptIDs, model: loaded.model, option: promptOption)   // before the prompt is echoed
        // One token predicts nothing: the oracle would have no criterion and run dense.
        if sparsity is OracleController, promptIDs.count < 2 {
            throw ShadowError.invalidArgument(name: "--method", reason: "oracle needs a prompt of at least 2 tokens to take its criterion from; this one is \(promptIDs.count)")
        }
        let json = arguments.flag("json")
        var stream = TextStream(tokenizer: tokenizer)
        var reply = StopText(stop: stop)
        // A chat reply is a new turn, not a continuation of the prompt's text.
        if !json { console.out(arguments.flag("chat") ? prompt + "\n" : prompt) }
        // Ctrl-C (or SIGTERM) while the prompt is prefilled or the text streams ends the text where it got to:
        // it is printed (or reported) as far as it goes, then the command exits with status 130.
        let result: GenerationResult
        do {
            result = try Interruption.handling {
                if arguments.flag("verbose") { console.printError("generate: a prompt of \(promptIDs.count) tokens") }
                return try Generator.generate(
                    model: loaded.model, prompt: promptIDs, maxTokens: maxTokens, sampling: sampling,
                    stopTokens: stopTokens, sparsity: sparsity, packing: packing,
                    onToken: { token in
                        let piece = reply.append(stream.append(token))
                        if !json { console.out(piece) }
                        return !reply.stopped
                    },
                    shouldStop: { Interruption.requested })
            }
        } catch {
            // The text streamed so far ends its line, so the error is not glued to it on a terminal.
            if !json { console.out("\n") }
            throw error
        }
        // Ended by no stop token, no --stop, no length and no full context: a signal stopped it.
        let interrupted = !result.stoppedAtEOS && !reply.stopped && !result.stoppedAtContext && result.tokens.count < maxTokens
        let rest = reply.stopped ? "" : reply.finish(stream.finish())
        let masks = try SparsitySummary(arguments, controller: sparsity, shape: loaded.model.shape, packedBytes: result.packedBytes)
        if json {
            let generation = GenerationReport(
                fields: Fields(prompt: prompt, system: template?.systemContent(system),
                               text: reply.stopped ? reply.kept : tokenizer.decode(result.tokens, skipSpecialTokens: true),
                               promptTokens: promptIDs, tokens: result.tokens),
                outcome: GenerationOutcome(stoppedAtEOS: result.stoppedAtEOS, stoppedAtStop: reply.stopped, stoppedAtContext: result.stoppedAtContext,
                                           interrupted: interrupted, prefillTokensPerSecond: result.stats.promptTokensPerSecond,
                                           decodeTokensPerSecond: result.stats.generatedTokensPerSecond),
                masks: masks)
            console.print(try JSONOutput.string(Report(generation: generation, weights: loaded.model.weightDType.rawValue,
                                                       maskSource: try SparsityOptions.source(arguments))))
        } else {
            console.out(rest + "\n")
            if arguments.flag("verbose") {
                console.printError(String(format: "prompt: %ld tokens, %.1f t/s; generated: %ld tokens, ",
                                          result.stats.promptTokens, result.stats.promptTokensPerSecond, result.stats.generatedTokens)
                                   + decodeSpeedText(result.stats) + masks.text)
            }
        }
        if result.stoppedAtContext {
            console.printError("generate: stopped after \(result.tokens.count) of \(maxTokens) tokens: \(loaded.model.contextDescription) is full")
        }
        if interrupted { throw ShadowError.interrupted("generate stopped after \(result.tokens.count) of \(maxTokens) tokens") }
    }
}

extension GenerateCommand {
    /// The sampling options `generate` and `chat` share.
    static let samplingOptionList: [Option] = [
        .value("temperature", "t", help: "Sampling temperature; 0 is greedy. A tiny positive one (down to 1e-45, the smallest in single precision; below it is refused) picks the most likely token, as greedy does.", default: "0"),
        .value("top-p", "p", help: "Nucleus sampling threshold (sampling only: --temperature above 0).", default: "1"),
        .value("top-k", "n", help: "Sample from the n most probable tokens only; 0 keeps all (sampling only).", default: "0"),
        .value("min-p", "p", help: "Sample only from tokens at least p times as probable as the most probable one; 0 keeps all (sampling only).", default: "0"),
        .value("repeat-penalty", "r", help: "Divide the positive logits (multiply the negative ones) of tokens among the last --repeat-last-n of the prompt and the text so far by r, as llama.cpp does (stop tokens such as <|im_end|> are never penalised); 1 is none. Greedy decoding reads it too.", default: "1"),
        .value("repeat-last-n", "n", help: "How many of the latest tokens --repeat-penalty looks back over; 0 turns it off, -1 looks back over the whole context.", default: "64"),
        .value("seed", "n", help: "Random seed for sampling (--temperature above 0).", default: "0"),
    ]

    /// Bytes of a long prompt tokenized to tell that it cannot fit: at least 1 MiB, and 32 bytes
    /// per token of the context.
    static func sampleBytes(maxContext: Int) -> Int { max(1 << 20, maxContext * 32) }

    /// Refuses a prompt whose beginning alone is far past the model's context, without tokenizing
    /// the rest (a 50 MB file took 43 s to count). Only the last piece before the cut can
    /// tokenize differently from the whole text, hence the margin: twice the context and 64.
    static func refuseFarTooLong(_ prompt: String, tokenizer: any Tokenizer, model: any CausalLanguageModel, option: String) throws {
        let sample = sampleBytes(maxContext: model.shape.maxContext)
        let bytes = prompt.utf8.count
        guard bytes > sample else { return }
        var end = prompt.utf8.index(prompt.utf8.startIndex, offsetBy: sample)
        while end > prompt.startIndex, end.samePosition(in: prompt.unicodeScalars) == nil { end = prompt.utf8.index(before: end) }
        let tokens = tokenizer.encodeWithSpecialTokens(String(prompt.unicodeScalars[..<end])).count
        guard tokens > 2 * model.shape.maxContext + 64 else { return }
        throw ShadowError.invalidArgument(name: option, reason: "its first \(prompt.utf8.distance(from: prompt.startIndex, to: end)) of \(bytes) bytes are already \(tokens) tokens, far more than \(model.contextDescription)")
    }

    static func samplingOptions(_ arguments: ParsedArguments) throws -> SamplingOptions {
        let temperature = try arguments.double("temperature", range: 0...100) ?? 0
        // Sampling runs in single precision: a positive temperature that rounds to 0 there would
        // quietly decode greedily.
        if temperature > 0 && Float(temperature) == 0 {
            throw ShadowError.invalidArgument(name: "--temperature", reason: "\(arguments.string("temperature")!) rounds to 0 in single precision (the smallest positive temperature is \(Float.leastNonzeroMagnitude)); give 0 for greedy decoding")
        }
        let sampling = SamplingOptions(
            temperature: Float(temperature),
            topP: Float(try arguments.double("top-p", range: 0.000001...1) ?? 1),
            topK: try arguments.int("top-k", range: 0...Int(Int32.max)) ?? 0,
            minP: Float(try arguments.double("min-p", range: 0...1) ?? 0),
            repeatPenalty: Float(try arguments.double("repeat-penalty", range: 0.001...1000) ?? 1),
            repeatLastN: try arguments.int("repeat-last-n", range: -1...1_000_000) ?? 64,
            seed: UInt64(try arguments.int("seed", range: 0...Int.max) ?? 0))
        // Greedy decoding draws nothing: a seed or a filter given with it would be ignored.
        for option in ["top-p", "top-k", "min-p", "seed"] where arguments.has(option) && sampling.temperature == 0 {
            throw ShadowError.invalidArgument(name: "--\(option)", reason: "is only read when sampling (--temperature above 0; 0 is greedy)")
        }
        if arguments.has("repeat-last-n"), sampling.repeatPenalty == 1 {
            throw ShadowError.invalidArgument(name: "--repeat-last-n", reason: "is only read with a --repeat-penalty other than 1")
        }
        // And the other way round: a penalty that looks back over no tokens would be ignored.
        if sampling.repeatLastN == 0, sampling.repeatPenalty != 1 {
            throw ShadowError.invalidArgument(name: "--repeat-penalty", reason: "is not applied with --repeat-last-n 0, which looks back over no tokens (-1: the whole context)")
        }
        return sampling
    }
}

/// "12.3 t/s", or what stands in for a speed when no decode pass ran.
func decodeSpeedText(_ stats: GenerationStats) -> String {
    stats.generatedTokensPerSecond.map { String(format: "%.1f t/s", $0) } ?? "no decode pass timed"
}

/// Generated text cut where it first spells `stop`: each piece of the stream goes in and what can
/// be printed comes out, holding back an ending that might be the start of `stop`.
struct StopText {
    let stop: [UInt8]?
    private var bytes: [UInt8] = []
    private var printed = 0
    /// Where `stop` begins, once the text has spelled it.
    private var end: Int?

    init(stop: String?) { self.stop = stop.map { Array($0.utf8) } }

    var stopped: Bool { end != nil }
    /// The text up to the stop string (or all of it).
    var kept: String { String(decoding: bytes[..<(end ?? bytes.count)], as: UTF8.self) }

    /// Adds `piece`; returns the part that can be printed now.
    mutating func append(_ piece: String) -> String {
        guard end == nil else { return "" }
        bytes += piece.utf8
        guard let stop else { return emit(upTo: bytes.count) }
        // The stop string can only begin where it would overlap the new piece.
        let from = max(0, bytes.count - piece.utf8.count - stop.count + 1)
        if let start = firstIndex(of: stop, from: from) {
            end = start
            return emit(upTo: start)
        }
        // Hold back the longest ending that the stop string starts with.
        let held = (1..<min(stop.count, bytes.count + 1)).last { bytes.suffix($0).elementsEqual(stop.prefix($0)) } ?? 0
        return emit(upTo: bytes.count - held)
    }

    /// The text's end, once no more pieces come: a held-back ending that never became the stop.
    mutating func finish(_ piece: String) -> String {
        let more = append(piece)
        return stopped ? more : more + emit(upTo: bytes.count)
    }

    private func firstIndex(of needle: [UInt8], from start: Int) -> Int? {
        guard start <= bytes.count - needle.count else { return nil }
        return (start...(bytes.count - needle.count)).first { bytes[$0..<($0 + needle.count)].elementsEqual(needle) }
    }

    private mutating func emit(upTo index: Int) -> String {
        guard index > printed else { return "" }
        defer { printed = index }
        return String(decoding: bytes[printed..<index], as: UTF8.self)
    }
}

/// Turns a stream of token ids into text pieces, holding back bytes until they form whole
/// characters (a byte-level token may end in the middle of a UTF-8 sequence).
struct TextStream {
    let tokenizer: any Tokenizer
    private var ids: [Int] = []
    private var printed = ""

    init(tokenizer: any Tokenizer) { self.tokenizer = tokenizer }

    mutating func append(_ id: Int) -> String {
        ids.append(id)
        let text = tokenizer.decode(ids, skipSpecialTokens: true)
        // Wait for the rest of the character. By scalar: a U+FFFD after a prepended mark (U+0600)
        // joins its character, so `hasSuffix` would not see it.
        if text.unicodeScalars.last == "\u{FFFD}" { return "" }
        return emit(text)
    }

    mutating func finish() -> String { emit(tokenizer.decode(ids, skipSpecialTokens: true)) }

    // Compared and cut by UTF-8 bytes: Swift's String compares whole characters, and a token
    // that starts with a code point joining the last character (U+FE0F after "❤", a vowel sign
    // after a consonant, "\n" after "\r") makes a new character of it, so `hasPrefix` fails.
    private mutating func emit(_ text: String) -> String {
        guard text.utf8.starts(with: printed.utf8) else {
            // The decoder changed earlier text (e.g. a stripped leading space); print nothing twice.
            printed = text
            return ""
        }
        let piece = String(decoding: text.utf8.dropFirst(printed.utf8.count), as: UTF8.self)
        printed = text
        return piece
    }
}
