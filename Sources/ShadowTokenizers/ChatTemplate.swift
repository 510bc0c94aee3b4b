import Foundation
import ShadowFormats

/// The turn template of an instruct model, built as token ids: ChatML (SmolLM2, Qwen2), Llama 3,
/// Phi-3 (Phi-3, Phi-3.5, Phi-4-mini) or Gemma (Gemma 2 and 3).
/// The markers are placed as their ids and the text between them (role, separators, message) is
/// encoded with special tokens not recognised, so a message that spells "<|im_end|>" or
/// "<|eot_id|>" reaches the model as those characters and cannot end or forge a turn. For text
/// that spells no marker the ids are those of the template's text encoded whole (markers that
/// strip no white space, as SmolLM2's and Llama 3's).
///
/// The family and its details (default system message, Llama 3.1's date preamble, Qwen3's and
/// SmolLM3's thinking switch) are read from the tokenizer's chat template by its literals and
/// known shapes, not by running Jinja. `chat` and `generate --chat` build their prompts here.
public struct ChatTemplate: Sendable {
    /// The template families `chat` and `generate --chat` build.
    public enum Family: String, Sendable {
        /// `<|im_start|>role\ncontent<|im_end|>\n`, the reply after `<|im_start|>assistant\n`.
        case chatML = "ChatML"
        /// BOS, then `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` with the
        /// content trimmed, the reply after `<|start_header_id|>assistant<|end_header_id|>\n\n`.
        case llama3 = "Llama 3"
        /// A token per role, `<|user|>` `<|assistant|>` `<|system|>`, then
        /// `\ncontent<|end|>\n` (Phi-3, Phi-3.5) or `content<|end|>` (Phi-4-mini), the reply
        /// after `<|assistant|>\n` or `<|assistant|>`.
        case phi3 = "Phi-3"
        /// BOS, then `<start_of_turn>role\ncontent<end_of_turn>\n` with the content trimmed and
        /// the assistant's role written "model", the reply after `<start_of_turn>model\n`. A
        /// system message opens the first user message, followed by a blank line (Gemma 3; Gemma
        /// 2's template refuses one).
        case gemma = "Gemma"

        /// The token that opens a turn (Phi-3: a user turn), the one that ends it, and Llama 3's
        /// header end or Phi-3's assistant token. (Phi-3's system turns open with `<|system|>`.)
        var markers: [String] {
            switch self {
            case .chatML: ["<|im_start|>", "<|im_end|>"]
            case .llama3: ["<|start_header_id|>", "<|eot_id|>", "<|end_header_id|>"]
            case .phi3: ["<|user|>", "<|end|>", "<|assistant|>"]
            case .gemma: ["<start_of_turn>", "<end_of_turn>"]
            }
        }

        /// Whether a chat template's source (comments left out) names the family: by its
        /// opening marker, or for Phi-3 by `<|end|>` with `<|user|>` or with role tokens spelled
        /// `'<|' + message['role'] + '|>'` (Phi-4-mini).
        func isNamed(in source: String) -> Bool {
            guard self == .phi3 else { return source.contains(markers[0]) }
            return source.contains("<|end|>") && (source.contains("<|user|>") || ChatTemplate.spellsRoleTokens(source))
        }

        /// A whole system turn as a template's string literal spells it, around the message.
        var systemTurn: (prefix: String, suffix: String) {
            switch self {
            case .chatML: ("<|im_start|>system\n", "<|im_end|>")
            case .llama3: ("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>")
            case .phi3: ("<|system|>\n", "<|end|>")
            case .gemma: ("<start_of_turn>system\n", "<end_of_turn>")   // none: Gemma has no system turn
            }
        }
    }

    public let family: Family
    public let tokenizer: any Tokenizer
    /// The tokens that open and end a turn (`<|im_start|>`, `<|im_end|>`; `<|start_header_id|>`,
    /// `<|eot_id|>`).
    let start: Int, end: Int
    /// Llama 3's `<|end_header_id|>`, Phi-3's `<|assistant|>`.
    let headerEnd: Int?
    /// Phi-3's `<|system|>`, if the tokenizer has it (needed only for a system turn).
    let systemToken: Int?
    /// Phi-3: what follows each role token and `<|end|>`: "\n" (Phi-3, Phi-3.5, and without a
    /// template), "" (Phi-4-mini).
    let separator: String
    /// Phi-3: whether the template writes a system turn at all (Phi-3-mini-4k's first one drops
    /// system messages; Gemma 2's refuses them), and whether it leaves an empty one out (Phi-3.5's
    /// `message['role'] == 'system' and message['content']`).
    let writesSystemTurn: Bool, dropsEmptySystem: Bool
    /// Llama 3 and Phi-3: whether the prompt opens with BOS, as the template writes `bos_token`
    /// (always without a template).
    let writesBOS: Bool
    /// ChatML templates that write an earlier reply without its reasoning (Qwen3's: only the text
    /// after its last `</think>`, newlines at its start dropped).
    let dropsReasoning: Bool
    /// The template has a thinking switch (Qwen3's `enable_thinking`).
    public let hasThinkingSwitch: Bool
    /// What a ChatML template's generation prompt writes after `<|im_start|>assistant\n`: "" for
    /// most, "<think>\n" for templates that make the model reason (QwQ, Qwen3-Thinking).
    let replyOpening: String
    /// The empty think block a template writes with thinking off (Qwen3's "<think>\n\n</think>\n\n",
    /// SmolLM3's "<think>\n\n</think>\n").
    let emptyThinking: String
    /// SmolLM3's system turn, when the template writes one.
    let metadataSystem: MetadataSystem?
    /// False with `--no-think`: the reply starts after an empty think block, as the template
    /// writes it with `enable_thinking=False`.
    public internal(set) var thinking = true
    /// The tokens that end a reply: the turn's end, and Llama 3's `<|eom_id|>` if the tokenizer has it.
    public let stopTokens: Set<Int>
    /// The first marker the tokenizer holds as an ordinary added token rather than a special one:
    /// text that spells it is read as the marker even when special tokens are not recognised
    /// (as in Hugging Face's tokenizers), so a message could end or forge a turn. Such tokenizers
    /// exist (markers added with `add_tokens`, or user-defined tokens in a GGUF); the commands
    /// warn and go on.
    let ordinaryMarker: String?
    /// The system message the model's own template puts in front of a conversation that has
    /// none (SmolLM2's "You are a helpful AI assistant named SmolLM, …"; "" for Llama 3.1's
    /// templates, whose system turn is always there), as `apply_chat_template` and llama.cpp with
    /// --jinja render it; nil when its template has none or the tokenizer no template.
    public let defaultSystem: String?
    /// What Llama 3.1 and later templates write in every system turn before the message:
    /// "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" (today's date where
    /// the template asks for it with `strftime_now`, as transformers renders it).
    let systemPreamble: String?

    /// Without its markers as single tokens the template would reach the model as plain text.
    /// `now` dates the system preamble of templates that write today's date.
    /// `option` names the setting in errors (the command line's `--chat`).
    public init(tokenizer: any Tokenizer, option: String = "chat template", now: Date = Date()) throws {
        let family = try Self.family(of: tokenizer, option: option)
        var ids: [Int] = []
        var ordinary: String? = nil
        for marker in family.markers {
            let encoded = tokenizer.encode(marker)
            guard encoded.count == 1 else {
                throw ShadowError.invalidArgument(name: option, reason: "the tokenizer has no \(family.rawValue) token \(marker), which its chat template uses")
            }
            if ordinary == nil, tokenizer.encode(marker, splitSpecialTokens: true) == encoded { ordinary = marker }
            ids += encoded
        }
        self.family = family
        self.tokenizer = tokenizer
        (start, end) = (ids[0], ids[1])
        headerEnd = ids.count > 2 ? ids[2] : nil
        let source = tokenizer.chatTemplate.map(Self.withoutComments)
        let system = family == .phi3 ? tokenizer.encode("<|system|>") : []
        systemToken = system.count == 1 ? system[0] : nil
        if ordinary == nil, systemToken != nil, tokenizer.encode("<|system|>", splitSpecialTokens: true) == system { ordinary = "<|system|>" }
        separator = family == .phi3 && source.map({ !Self.newline(after: "<|end|>", in: $0) }) == true ? "" : "\n"
        // Phi-4-mini spells every role token as '<|' + message['role'] + '|>'.
        switch family {
        case .phi3: writesSystemTurn = source.map { $0.contains("<|system|>") || Self.spellsRoleTokens($0) } ?? true
        case .gemma: writesSystemTurn = source.map { !$0.contains("System role not supported") } ?? true
        default: writesSystemTurn = true
        }
        dropsEmptySystem = family == .phi3 && source.map { source in
            ["message['role'] == 'system' and message['content']", "message[\"role\"] == \"system\" and message[\"content\"]",
             "message.role == 'system' and message.content", "message.role == \"system\" and message.content"].contains { source.contains($0) }
        } == true
        writesBOS = source?.contains("bos_token") ?? true
        // Qwen3's template cuts an earlier reply at its last </think>.
        dropsReasoning = family == .chatML && source.map { $0.contains("split('</think>')") || $0.contains("split(\"</think>\")") } == true
        hasThinkingSwitch = family == .chatML && source?.contains("enable_thinking") == true
        replyOpening = family == .chatML ? source.map(Self.generationPromptTail) ?? "" : ""
        emptyThinking = source.flatMap { Self.literals(holding: "<think>", in: $0).first { $0.hasPrefix("<think>\n\n</think>") } }
            ?? "<think>\n\n</think>\n\n"
        metadataSystem = family == .chatML ? source.flatMap { MetadataSystem(template: $0, now: now) } : nil
        let endOfMessage = family == .llama3 ? tokenizer.encode("<|eom_id|>") : []
        stopTokens = Set([end] + (endOfMessage.count == 1 ? endOfMessage : []))
        ordinaryMarker = ordinary
        systemPreamble = family == .llama3 ? source.flatMap { Self.llama3Preamble(in: $0, now: now) } : nil
        defaultSystem = source.flatMap { Self.defaultSystemMessage(in: $0, family: family) }
            ?? (systemPreamble == nil && metadataSystem == nil ? nil : "")
    }

    /// The family the model's chat template names by its markers (outside comments), the first
    /// whose markers the tokenizer holds if it names both; without a template, the first whose
    /// markers the tokenizer holds. A template that names neither is refused: its turns are
    /// built some other way.
    static func family(of tokenizer: any Tokenizer, option: String) throws -> Family {
        let families: [Family] = [.chatML, .llama3, .phi3, .gemma]
        func held(_ family: Family) -> Bool { family.markers.allSatisfy { tokenizer.encode($0).count == 1 } }
        let described = families.map { "\($0.rawValue) (\($0.markers.joined(separator: ", ")))" }
        let names = described.joined(separator: " or ")
        if let template = tokenizer.chatTemplate {
            let source = withoutComments(template)
            let named = families.filter { $0.isNamed(in: source) }
            guard let first = named.first else {
                throw ShadowError.invalidArgument(name: option, reason: "the model's chat template builds its turns with the markers of no template ShadowLLM builds: \(names)")
            }
            return named.first(where: held) ?? first   // the first named one's missing token is the error
        }
        if let family = families.first(where: held) { return family }
        throw ShadowError.invalidArgument(name: option, reason: "the tokenizer has the tokens of no chat template ShadowLLM builds: \(names) (not an instruct model?)")
    }

    /// Whether the template spells role tokens as `'<|' + message['role'] + '|>'` (either quotes).
    static func spellsRoleTokens(_ source: String) -> Bool {
        source.contains("'|>'") || source.contains("\"|>\"")
    }

    /// Whether the template writes a newline right after `marker`: in the same string literal
    /// (`'<|end|>\n'`) or as the next one added to it (`'<|end|>' + '\n'`).
    static func newline(after marker: String, in source: String) -> Bool {
        var from = source.startIndex
        while let match = source.range(of: marker, range: from..<source.endIndex) {
            from = match.upperBound
            var rest = source[match.upperBound...]
            if rest.hasPrefix("\\n") || rest.hasPrefix("\n") { return true }
            // The literal closes: is the next thing `+` and a literal that opens with a newline?
            guard let quote = rest.first, quote == "'" || quote == "\"" else { continue }
            rest = rest.dropFirst().drop(while: \.isWhitespace)
            guard rest.first == "+" else { continue }
            rest = rest.dropFirst().drop(while: \.isWhitespace)
            guard let open = rest.first, open == "'" || open == "\"" else { continue }
            rest = rest.dropFirst()
            if rest.hasPrefix("\\n") || rest.hasPrefix("\n") { return true }
        }
        return false
    }

    /// Jinja source without its comments (`{# … #}`), which are not output. One pass, as Jinja's
    /// lexer reads them: removing each from the whole text in turn took time quadratic in their count.
    static func withoutComments(_ template: String) -> String {
        var source = "", rest = template[...]
        while let open = rest.range(of: "{#"), let close = rest.range(of: "#}", range: open.upperBound..<rest.endIndex) {
            source += rest[..<open.lowerBound]
            rest = rest[close.upperBound...]
        }
        return source + rest
    }

    /// How reading a string literal from a quote ended.
    enum LiteralScan {
        /// Closed: its text and the index just past the closing quote.
        case closed(text: String, end: String.Index)
        /// Not closed, or a malformed escape: where reading stopped.
        case unclosed(stop: String.Index)
    }

    /// The Jinja (Python) string literal that opens with the quote at `quote`, its escapes read
    /// (\n \t \r, \xHH, \uHHHH, and a backslash before any other character keeps that
    /// character). Read through a `LiteralReader`, which reads each stretch of a source once.
    static func scanLiteral(in source: String, at quote: String.Index) -> LiteralScan {
        let delimiter = source[quote]
        var text = "", index = source.index(after: quote)
        while index < source.endIndex {
            var character = source[index]
            index = source.index(after: index)
            if character == delimiter { return .closed(text: text, end: index) }
            if character == "\\", index < source.endIndex {
                let escaped = source[index]
                index = source.index(after: index)
                switch escaped {
                case "n": character = "\n"
                case "t": character = "\t"
                case "r": character = "\r"
                case "x", "u":
                    let digits = escaped == "x" ? 2 : 4
                    guard let end = source.index(index, offsetBy: digits, limitedBy: source.endIndex),
                          let value = UInt32(source[index..<end], radix: 16), let scalar = Unicode.Scalar(value) else { return .unclosed(stop: index) }
                    character = Character(scalar)
                    index = end
                default: character = escaped
                }
            }
            text.append(character)
        }
        return .unclosed(stop: index)
    }

    /// Reads the string literals of one source at quotes further and further on, each quote once.
    ///
    /// A quote inside the last literal read from a quote of its kind (closed or not) is escaped
    /// there, so no literal opens at it: reading from it would go over the same characters to the
    /// same end. Skipping it keeps a template of many such quotes (`'a\'a\'a\'…`) linear in its
    /// length, where reading each took time quadratic in it.
    struct LiteralReader {
        let source: String
        private var lastRead: [Character: Range<String.Index>] = [:]

        init(source: String) { self.source = source }

        /// The literal opening at `quote`; nil when it is not closed, or lies inside one read before.
        mutating func literal(at quote: String.Index) -> (text: String, end: String.Index)? {
            let delimiter = source[quote]
            if let read = lastRead[delimiter], read.lowerBound < quote, quote < read.upperBound { return nil }
            switch ChatTemplate.scanLiteral(in: source, at: quote) {
            case .closed(let text, let end):
                // Up to the closing quote, not past it: a read from a quote that opened nothing
                // (an apostrophe, a closing quote) closes on the next literal's opening quote.
                lastRead[delimiter] = quote..<source.index(before: end)
                return (text, end)
            case .unclosed(let stop):
                lastRead[delimiter] = quote..<stop
                return nil
            }
        }
    }

    /// The last quote in `start..<end` that can open a literal: one after a backslash is escaped
    /// (outside a literal Jinja has no backslashes).
    static func lastOpeningQuote(in source: String, from start: String.Index, to end: String.Index) -> String.Index? {
        var index = end
        while index > start {
            index = source.index(before: index)
            guard source[index] == "'" || source[index] == "\"" else { continue }
            if index == source.startIndex || source[source.index(before: index)] != "\\" { return index }
        }
        return nil
    }

    /// The string literals of `source` that hold `text`, each read from the quote nearest before it.
    /// Each quote is looked for once and each literal read once, so a template with many
    /// matches costs time in proportion to its length.
    static func literals(holding text: String, in source: String) -> [String] {
        var found: [String] = []
        var reader = LiteralReader(source: source)
        var from = source.startIndex
        var scanned = source.startIndex, lastQuote: String.Index? = nil, readQuote: String.Index? = nil
        while let match = source.range(of: text, range: from..<source.endIndex) {
            from = match.upperBound
            if let quote = lastOpeningQuote(in: source, from: scanned, to: match.lowerBound) { lastQuote = quote }
            scanned = match.lowerBound
            guard let quote = lastQuote, quote != readQuote else { continue }
            readQuote = quote
            guard let literal = reader.literal(at: quote)?.text, literal.contains(text) else { continue }
            found.append(literal)
        }
        return found
    }

    /// The default system message of a template's Jinja source (comments left out): a string
    /// literal that is a whole system turn, `'<|im_start|>system\n…<|im_end|>\n'` or
    /// `'<|start_header_id|>system<|end_header_id|>\n\n…<|eot_id|>'` (a literal that goes on with
    /// `+ messages[0]['content']` is the user's own system message, not a default). Only the
    /// literal is read, not the logic around it, which emits it when the first message is not a
    /// system message.
    static func defaultSystemMessage(in template: String, family: Family = .chatML) -> String? {
        let source = withoutComments(template)
        let (prefix, suffix) = family.systemTurn
        // The source may spell the newlines as escapes: the literals are found by what comes before.
        let needle = String(prefix.prefix { $0 != "\n" })
        for literal in literals(holding: needle, in: source) where literal.hasPrefix(prefix) {
            var body = literal.dropFirst(prefix.count)
            if family != .llama3, body.hasSuffix("\n") { body = body.dropLast() }   // ChatML's and Phi-3's separator
            guard body.hasSuffix(suffix) else { continue }
            body = body.dropLast(suffix.count)
            guard !family.markers.contains(where: body.contains) else { continue }
            return String(body)
        }
        return nil
    }

    /// Llama 3.1 and later: the literals that spell "Cutting Knowledge Date: …\n" and "Today
    /// Date: " (one literal or two), the date — `strftime_now(format)` of `now` when the template
    /// calls it (as transformers and llama.cpp --jinja define it), else the literal it assigns to
    /// `date_string`, else today's "%d %b %Y" — and the literal added after `date_string` (a blank
    /// line). Nil for templates without the preamble (Llama 3).
    static func llama3Preamble(in template: String, now: Date) -> String? {
        let source = withoutComments(template)
        guard let knowledge = literals(holding: "Cutting Knowledge Date:", in: source).first else { return nil }
        let head = knowledge.contains("Today Date") ? knowledge : knowledge + (literals(holding: "Today Date", in: source).first ?? "Today Date: ")
        let date = firstLiteral(after: ["strftime_now", "("], in: source).map { strftime($0, now) }
            ?? firstLiteral(after: ["date_string", "="], in: source)
            ?? strftime("%d %b %Y", now)
        return head + date + (firstLiteral(after: ["date_string", "+"], in: source) ?? "\n\n")
    }

    /// The string literal right after the first run of `words` (white space around each), if
    /// there is one: `["date_string", "="]` matches `date_string = "26 Jul 2024"` and
    /// `date_string="26 Jul 2024"`, not `date_string == "x"`.
    static func firstLiteral(after words: [String], in source: String) -> String? {
        var reader = LiteralReader(source: source)
        var from = source.startIndex
        search: while let match = source.range(of: words[0], range: from..<source.endIndex) {
            from = match.upperBound
            var index = match.upperBound
            for word in words.dropFirst() + [""] {
                while index < source.endIndex, source[index].isWhitespace { index = source.index(after: index) }
                guard source[index...].hasPrefix(word) else { continue search }
                index = source.index(index, offsetBy: word.count)
            }
            guard index < source.endIndex, source[index] == "'" || source[index] == "\"" else { continue }
            if let literal = reader.literal(at: index) { return literal.text }
        }
        return nil
    }

    /// C's strftime of `date` in local time, as Python's `datetime.now().strftime(format)`.
    static func strftime(_ format: String, _ date: Date) -> String {
        var time = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        localtime_r(&time, &parts)
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = Foundation.strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The text after `<|im_start|>assistant\n` in the literal that a ChatML template's generation
    /// prompt (after its last `add_generation_prompt`) writes, "" when there is none.
    static func generationPromptTail(in source: String) -> String {
        let prefix = "<|im_start|>assistant\n"
        guard let flag = source.range(of: "add_generation_prompt", options: .backwards),
              let literal = literals(holding: "<|im_start|>assistant", in: String(source[flag.upperBound...])).first,
              literal.hasPrefix(prefix) else { return "" }
        return String(literal.dropFirst(prefix.count))
    }

    /// Thinking off for `noThink` (refused for a template without a thinking switch); SmolLM3's
    /// template also takes "/think" or "/no_think" in the system message as the switch.
    public mutating func chooseThinking(noThink: Bool, system: String?) throws {
        if noThink {
            guard hasThinkingSwitch else {
                throw ShadowError.invalidArgument(name: "--no-think", reason: "the model's chat template has no thinking switch (enable_thinking)")
            }
            thinking = false
        }
        if metadataSystem != nil, let system {
            if system.contains("/no_think") { thinking = false } else if system.contains("/think") { thinking = true }
        }
    }

    /// The system message `prompt(system:)` takes: `requested` as the template writes a message
    /// (Llama 3 trims it; Gemma writes it as it is), else the template's default (a literal,
    /// written as it is); nil for none. Refused when the template writes no system turn, or the
    /// tokenizer has no `<|system|>` token for a Phi-3 one. (nil is passed to `prompt` for a
    /// conversation without a system turn, not even the default one.)
    public func systemMessage(_ requested: String?) throws -> String? {
        try checked(system: requested.map { family == .gemma ? $0 : content($0) } ?? defaultSystem, isDefault: requested == nil)
    }

    /// `system`, or nil where the template leaves an empty one out; throws when the template
    /// cannot write a system turn. (`isDefault`: it is the template's own, for the message.)
    func checked(system: String?, isDefault: Bool = false) throws -> String? {
        var system = system
        if dropsEmptySystem && system == "" { system = nil }   // as the template leaves it out
        if system != nil, !writesSystemTurn {
            throw ShadowError.invalidArgument(name: "--system", reason: "the model's chat template writes no system turn")
        }
        if system != nil, family == .phi3, systemToken == nil {
            let whose = isDefault ? " (the chat template's default system message; --no-system leaves it out)" : ""
            throw ShadowError.invalidArgument(name: "--system", reason: "the tokenizer has no <|system|> token for a Phi-3 system turn" + whose)
        }
        return system
    }

    /// The system turn's text for a system message (`systemMessage(_:)`'s): after the preamble of Llama
    /// 3.1's templates; SmolLM3's metadata around it.
    public func systemContent(_ system: String?) -> String? {
        if let metadataSystem { return system.map { metadataSystem.text(message: $0, thinking: thinking) } }
        return system.map { (systemPreamble ?? "") + $0 }
    }

    /// The system turn: SmolLM3's is left open, as its template writes it without tools (a
    /// "/system_override" one is closed).
    func systemTurn(_ system: String) -> [Int] {
        guard let metadataSystem, !metadataSystem.overrides(system) else { return message("system", systemContent(system)!) }
        return tokenizer.encode(opening("system", then: systemContent(system)!))
    }

    /// A message as the template writes it: trimmed of white space at both ends by Llama 3 and
    /// Gemma (Jinja's `trim`, Python's `str.strip()`), as it is by ChatML.
    func content(_ message: String) -> String {
        family == .llama3 || family == .gemma ? message.pythonStripped : message
    }

    /// The warning for a tokenizer whose markers a message could spell, if this is one.
    public var warning: String? {
        ordinaryMarker.map {
            "warning: the tokenizer's \(family.rawValue) token \($0) is not a special token: a message that spells it is read as the marker (it can end or forge a turn)"
        }
    }

    /// A turn's opening, as parts: `<|im_start|>role\n`, `<|start_header_id|>role<|end_header_id|>\n\n`;
    /// `text` follows in the same text part (the template's text encoded whole).
    private func opening(_ role: String, then text: String) -> [PromptPart] {
        switch family {
        case .chatML: return [.token(start), .text("\(role)\n\(text)")]
        case .llama3: return [.token(start), .text(role), .token(headerEnd!), .text("\n\n\(text)")]
        case .phi3:
            let token = role == "assistant" ? headerEnd! : role == "system" ? systemToken! : start
            return [.token(token)] + Self.nonEmpty(separator + text)
        case .gemma: return [.token(start), .text("\(role == "assistant" ? "model" : role)\n\(text)")]
        }
    }

    /// A text part, none for "".
    private static func nonEmpty(_ text: String) -> [PromptPart] { text.isEmpty ? [] : [.text(text)] }

    /// The end of a turn: `<|im_end|>\n`, `<|eot_id|>`, `<|end|>` and the separator, `<end_of_turn>\n`.
    private var closingParts: [PromptPart] {
        switch family {
        case .chatML, .gemma: [.token(end), .text("\n")]
        case .llama3: [.token(end)]
        case .phi3: [.token(end)] + Self.nonEmpty(separator)
        }
    }

    /// One whole turn with `content` as it is written (see `content(_:)`, `systemContent(_:)`).
    func message(_ role: String, _ content: String) -> [Int] {
        tokenizer.encode(opening(role, then: content) + closingParts)
    }

    /// Where the assistant's reply starts: `<|im_start|>assistant\n` and the template's
    /// `replyOpening` (with `--no-think`, the template's `emptyThinking` instead),
    /// `<|start_header_id|>assistant<|end_header_id|>\n\n`, `<|assistant|>` and the separator.
    var replyStart: [Int] { tokenizer.encode(opening("assistant", then: thinking ? replyOpening : emptyThinking)) }

    /// A reply's ids as they were generated (its stop token left out), closed as the template
    /// closes a message.
    func closing(reply: [Int]) -> [Int] {
        reply + tokenizer.encode(closingParts)
    }

    /// The reply without the end a transcript may give it: stop tokens and the tokenizer's
    /// end-of-sequence token, each with the white space written after it (the template's close,
    /// `<|im_end|>\n`, or `\n\n`), in any order (`<|im_end|>\n<|endoftext|>`). `Generator` leaves
    /// them out, but ids taken from elsewhere (a tokenized transcript) may hold them, and the
    /// close would then be written twice. White space at the end with no stop token before it is
    /// the reply's own.
    func withoutStopToken(_ reply: [Int]) -> [Int] {
        var reply = reply[...]
        func ends(_ id: Int) -> Bool { stopTokens.contains(id) || id == tokenizer.eosTokenID }
        func isWhiteSpace(_ id: Int) -> Bool {
            let text = tokenizer.decode([id], skipSpecialTokens: false)
            return !text.isEmpty && text.allSatisfy(\.isWhitespace)
        }
        while true {
            var end = reply.endIndex
            while end > reply.startIndex, !ends(reply[end - 1]), isWhiteSpace(reply[end - 1]) { end -= 1 }
            guard end > reply.startIndex, ends(reply[end - 1]) else { return Array(reply) }
            reply = reply[..<(end - 1)]
        }
    }

    /// One exchange of a conversation: the user's message, the reply as generated, the close —
    /// or, as Qwen3's template writes an earlier reply, its text after its last `</think>`, and
    /// without the empty think block `--no-think` put before it. `opening`: Gemma's system
    /// message, in front of the first user message.
    func turn(user: String, reply: [Int], opening userOpening: String = "") -> [Int] {
        let reply = withoutStopToken(reply)
        let asked = message("user", userOpening + content(user))
        if dropsReasoning {
            let text = tokenizer.decode(reply, skipSpecialTokens: false)
            if let close = text.range(of: "</think>", options: .backwards) {
                return asked + message("assistant", String(text[close.upperBound...].drop { $0 == "\n" }))
            }
        }
        // SmolLM3's template writes every earlier reply of a conversation without thinking after
        // the empty think block.
        let opened = metadataSystem != nil && !thinking ? emptyThinking : ""
        return asked + tokenizer.encode(opening("assistant", then: opened)) + closing(reply: reply)
    }

    /// The model's input: the system turn, the earlier turns and the new user message, ending
    /// where the assistant's reply starts. ChatML gets BOS in front if the model adds one; the
    /// other templates write BOS themselves. Gemma's system message opens the first user message
    /// (an earlier turn's, or this one's), a blank line after it. `system` is written as given,
    /// nil for none: `systemMessage(_:)` gives the template's default, or a message as the
    /// template writes one (Llama 3 trims it). Throws when the template cannot write a system turn.
    public func prompt(system: String?, turns: [ChatTurn] = [], user: String) throws -> [Int] {
        let system = try checked(system: system)
        let userOpening = family == .gemma ? system.map { $0 + "\n\n" } : nil
        var body = family == .gemma ? [] : system.map(systemTurn) ?? []
        for (index, earlier) in turns.enumerated() {
            body += turn(user: earlier.user, reply: earlier.reply, opening: index == 0 ? userOpening ?? "" : "")
        }
        body += message("user", (turns.isEmpty ? userOpening ?? "" : "") + content(user)) + replyStart
        switch family {
        case .chatML: return tokenizer.addingSpecialTokens(body)
        case .llama3, .phi3, .gemma: return (writesBOS ? tokenizer.bosTokenID.map { [$0] } ?? [] : []) + body
        }
    }

    /// The prompt of `user` after `turns`, the oldest turns dropped when it and `reserve` reply
    /// tokens would not fit `limit` (the model's context): down to half of it, so that the next
    /// turns fit again and reuse the cache. It may still not fit (a message too long on its own).
    public func fittedPrompt(system: String?, turns: [ChatTurn], user: String,
                             reserve: Int, limit: Int) throws -> (prompt: [Int], dropped: Int) {
        var prompt = try self.prompt(system: system, turns: turns, user: user)
        var dropped = 0
        if prompt.count + reserve > limit {
            while dropped < turns.count, prompt.count + reserve > limit || prompt.count > limit / 2 {
                dropped += 1
                prompt = try self.prompt(system: system, turns: Array(turns.dropFirst(dropped)), user: user)
            }
        }
        return (prompt, dropped)
    }
}

/// An earlier exchange of a conversation: the user's message as typed and the reply's ids as
/// they were generated (its stop token left out; a close, stop tokens or the end-of-sequence token
/// at its end are dropped when the turn is written).
public struct ChatTurn: Sendable {
    public let user: String
    public let reply: [Int]

    public init(user: String, reply: [Int]) {
        self.user = user
        self.reply = reply
    }
}

/// SmolLM3's system turn, read from its template's literals: "## Metadata\n\n", the knowledge
/// cutoff line, "Today Date: " and today's date in the template's `strftime_now` format, "Reasoning
/// Mode: /think" or "/no_think", then "## Custom Instructions\n\n" and the system message with
/// "/think" and "/no_think" taken out and white space trimmed at its end (the template's default
/// for the mode when that leaves nothing), and a blank line. A system message holding
/// "/system_override" is written alone instead.
struct MetadataSystem: Sendable {
    let metadata: String, cutoff: String, dateFormat: String, instructions: String
    /// The template's default instructions with thinking on and off.
    let thinkingDefault: String, plainDefault: String
    let now: Date

    /// nil unless `template` writes SmolLM3's metadata header.
    init?(template: String, now: Date = Date()) {
        let source = ChatTemplate.withoutComments(template)
        guard source.contains("Reasoning Mode: "),
              let metadata = ChatTemplate.literals(holding: "## Metadata", in: source).first,
              let cutoff = ChatTemplate.literals(holding: "Knowledge Cutoff Date:", in: source).first,
              let header = source.range(of: "## Custom Instructions"),
              let instructions = ChatTemplate.literals(holding: "## Custom Instructions", in: source).first else { return nil }
        // The defaults: the literal an output expression (`{{- "…" -}}`) writes first after the
        // header's first test of the reasoning mode, for that mode, and the one after the `else`
        // that follows it, for the other.
        let rest = source[header.upperBound...]
        func test(_ mode: String) -> String.Index? {
            (rest.range(of: "reasoning_mode == \"\(mode)\"") ?? rest.range(of: "reasoning_mode == '\(mode)'"))?.upperBound
        }
        let tests = [(true, test("/think")), (false, test("/no_think"))].compactMap { mode, at in at.map { (mode, $0) } }
        guard let (firstIsThinking, firstTest) = tests.min(by: { $0.1 < $1.1 }),
              let first = Self.outputLiteral(in: source, from: firstTest),
              let otherwise = source.range(of: "else", range: first.end..<source.endIndex),
              let second = Self.outputLiteral(in: source, from: otherwise.upperBound) else { return nil }
        let (thinking, plain) = firstIsThinking ? (first, second) : (second, first)
        self.metadata = metadata
        self.cutoff = cutoff
        dateFormat = ChatTemplate.firstLiteral(after: ["strftime_now", "("], in: source) ?? "%d %B %Y"
        self.instructions = instructions
        (thinkingDefault, plainDefault) = (thinking.text, plain.text)
        self.now = now
    }

    /// The first string literal from `index` on that an output expression writes whole
    /// (`{{ "…"` or `{{- '…'`), and the index just past it.
    static func outputLiteral(in source: String, from index: String.Index) -> (text: String, end: String.Index)? {
        var reader = ChatTemplate.LiteralReader(source: source)
        var from = index
        while let open = source.range(of: "{{", range: from..<source.endIndex) {
            var start = open.upperBound
            if source[start...].hasPrefix("-") { start = source.index(after: start) }
            start = source[start...].firstIndex { !$0.isWhitespace } ?? source.endIndex
            if start < source.endIndex, source[start] == "\"" || source[start] == "'",
               let literal = reader.literal(at: start) {
                return literal
            }
            from = open.upperBound
        }
        return nil
    }

    func overrides(_ message: String) -> Bool { message.contains("/system_override") }

    /// The turn's text for `message` ("" for none) in the given reasoning mode.
    func text(message: String, thinking: Bool) -> String {
        let custom = message.replacingOccurrences(of: "/no_think", with: "").replacingOccurrences(of: "/think", with: "").pythonRightStripped
        if overrides(message) { return custom.replacingOccurrences(of: "/system_override", with: "").pythonRightStripped }
        return metadata + cutoff + "Today Date: " + ChatTemplate.strftime(dateFormat, now) + "\n"
            + "Reasoning Mode: " + (thinking ? "/think" : "/no_think") + "\n\n" + instructions
            + (custom.isEmpty ? (thinking ? thinkingDefault : plainDefault) : custom + "\n\n")
    }
}
