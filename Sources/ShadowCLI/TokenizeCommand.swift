import Foundation
import ShadowModels

/// `shadowllm tokenize`: text → token ids.
enum TokenizeCommand {
    struct Report: Encodable {
        let ids: [Int]
        let tokens: [String]?
    }

    static let command = Command(
        name: "tokenize", abstract: "Turn text into token ids with the model's tokenizer.",
        options: [ModelOptions.modelOption] + [
            .value("text", "string", help: "The text to tokenize."),
            .value("text-file", "path", help: "Read the text from a UTF-8 file instead (- reads standard input)."),
            .flag("special", help: "Add the model's special tokens (BOS) as the model would."),
            .flag("split-special-tokens", help: "Do not read special tokens written in the text (\"<|im_end|>\"): tokenize them as the characters they spell, as Hugging Face's split_special_tokens does. Added tokens that are not special are still read whole."),
            .flag("show-tokens", help: "Also show each token's string."),
            .flag("json", help: "Print JSON {\"ids\": [...]} (with --show-tokens also \"tokens\": [...], each id's string)."),
        ]
    ) { arguments, console in
        let text = try ModelOptions.text(arguments, console: console)
        // The tokenizer alone: no weights are loaded.
        let path = try ModelOptions.modelPath(arguments)
        let tokenizer = try ModelLoader.loadTokenizer(path: path)
        ModelOptions.warn(about: tokenizer, console: console)
        let encoded = tokenizer.encode(text, splitSpecialTokens: arguments.flag("split-special-tokens"))
        let ids = arguments.flag("special") ? tokenizer.addingSpecialTokens(encoded) : encoded
        let strings = arguments.flag("show-tokens") ? ids.map { tokenizer.tokenString($0) ?? "?" } : nil
        if arguments.flag("json") {
            console.print(try JSONOutput.string(Report(ids: ids, tokens: strings)))
        } else if let strings {
            for (id, token) in zip(ids, strings) { console.print("\(id)\t\(token)") }
        } else {
            console.print(ids.map(String.init).joined(separator: " "))
        }
    }
}
