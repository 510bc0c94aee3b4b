import ShadowFormats
import ShadowTokenizers

// The chat template's command-line options, shared by `chat` and `generate --chat`.
extension ChatTemplate {
    /// `--system` and `--no-system`.
    static func systemOptions(helpPrefix: String = "") -> [Option] {
        [
            .value("system", "text", help: prefixed(helpPrefix, "A system message that opens the conversation (tokenized as text: a template marker in it is not read as one)."),
                   defaultDescription: "the one the model's chat template adds, if any"),
            .flag("no-system", help: prefixed(helpPrefix, "No system turn, not even the default one of the model's chat template (Llama 3.1's date preamble included).")),
        ]
    }

    /// `--no-think`.
    static func thinkingOption(helpPrefix: String = "") -> Option {
        .flag("no-think", help: prefixed(helpPrefix, "Start the reply after an empty think block, as the model's chat template does with enable_thinking=False (Qwen3, SmolLM3: whose system turn then says \"Reasoning Mode: /no_think\", as /no_think in --system does): the model answers without reasoning first."))
    }

    /// `help` after `prefix` ("With --chat, "), its first letter then in lower case.
    private static func prefixed(_ prefix: String, _ help: String) -> String {
        prefix.isEmpty ? help : prefix + help.prefix(1).lowercased() + help.dropFirst()
    }

    /// Reads --no-think (and SmolLM3's "/think" or "/no_think" in --system).
    mutating func readThinking(_ arguments: ParsedArguments) throws {
        try chooseThinking(noThink: arguments.flag("no-think"), system: arguments.string("system"))
    }

    /// The system message: none with --no-system, else --system or the template's default
    /// (`systemMessage(_:)`).
    func system(_ arguments: ParsedArguments) throws -> String? {
        if arguments.flag("no-system") {
            if arguments.has("system") { throw ShadowError.invalidArgument(name: "--no-system", reason: "contradicts --system") }
            return nil
        }
        return try systemMessage(arguments.string("system"))
    }
}
