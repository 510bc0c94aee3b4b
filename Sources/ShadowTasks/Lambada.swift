import ShadowFormats

/// LAMBADA (Paperno et al. 2016) as OpenAI's JSON Lines (`{"text"}` per passage). lm-eval's
/// `lambada_openai`: `doc_to_text: "{{text.split(' ')[:-1]|join(' ')}}"`, `doc_to_target:
/// "{{' '+text.split(' ')[-1]}}"` — a split on the space character only, so the context is the
/// text up to its last space and the target is a space and everything after it.
enum Lambada {
    static func read(path: String) throws -> [(context: String, target: String)] {
        try SourceLines(path: path).jsonRecords().map { record in
            let text = try record.string("text")
            guard let space = text.unicodeScalars.lastIndex(of: " ") else {
                throw record.error("text", "has no space, so no last word to predict")
            }
            let word = String(text.unicodeScalars[text.unicodeScalars.index(after: space)...])
            if word.isEmpty { throw record.error("text", "ends with a space, so its last word is empty") }
            return (String(text.unicodeScalars[..<space]), " " + word)
        }
    }
}

/// WikiText (Merity et al. 2016): the text itself, no items. Read as stored — the tokenized
/// release's spacing (" @-@ ", " , "), its " = Heading = " lines and blank lines are part of what
/// the perplexity is measured on, and lm-eval's rolling windows run over the whole document.
enum WikiText {
    static func read(path: String) throws -> String {
        let bytes = try readTaskFile(path)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            let lines = try SourceLines(path: path)
            for index in 0..<lines.count { _ = try lines.text(index) }  // names the bad line
            throw ShadowError.corruptFile(path: path, reason: "not valid UTF-8")
        }
        if text.allSatisfy(\.isWhitespace) {
            throw ShadowError.corruptFile(path: path, reason: "no text (the file is empty)")
        }
        return text
    }
}
