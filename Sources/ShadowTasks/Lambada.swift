import ShadowFormats

/// LAMBADA (Paperno et al. 2016) as OpenAI's JSON Lines (`{"text"}` per passage). lm-eval's
/// `lambada_openai`: `doc_to_text: "{{text.split(' ')[:-1]|join(' ')}}"`, `doc_to_target:
/// "{{' '+text.split(' ')[-1]}}"` — a split on the space character only, so the context is the
/// text up to its last space (empty for a passage of one word) and the target is a space and
/// everything after it.
/// A file that does not start with "{" is read as the release's plain text
/// (`lambada_test_plain_text.txt`): one passage per non-blank line, white space at its end
/// dropped (a line's trailing blanks are the file's, not the passage's last "word").
enum Lambada {
    static func read(path: String) throws -> [(context: String, target: String)] {
        let lines = try SourceLines(path: path)
        if let first = lines.firstSignificantByte, first != UInt8(ascii: "{"), first != UInt8(ascii: "[") {
            // Any text reads as passages: the files of other tasks that start unlike prose are refused.
            if let index = lines.ranges.indices.first(where: { !lines.isBlank($0) }) {
                let line = try lines.text(index).pythonStripped
                // A passage may start with "<" ("<3 she said"): only XML's own openings count.
                let markup = ["<?xml", "<!--", "<copa-corpus"].contains { line.hasPrefix($0) }
                let other = markup ? "markup (an XML file, COPA's release?)"
                    : line.hasPrefix("= ") && line.hasSuffix(" =") ? "a WikiText heading (\(quoted(line)))" : nil
                if let other {
                    throw ShadowError.corruptFile(path: lines.location(index), reason: "starts with \(other), not a LAMBADA passage (a passage per line, or JSON Lines)")
                }
            }
            return try lines.ranges.indices.filter { !lines.isBlank($0) }.map { index in
                try split(lines.text(index).pythonRightStripped) { ShadowError.corruptFile(path: lines.location(index), reason: "the passage \($0)") }
            }
        }
        return try lines.jsonRecords().map { record in
            try split(record.string("text")) { record.error("text", $0) }
        }
    }

    static func split(_ text: String, fail: (String) -> ShadowError) throws -> (context: String, target: String) {
        if text.isEmpty { throw fail("is empty, so no last word to predict") }
        // One word: lm-eval's split leaves an empty context (scored after BOS, else EOS).
        guard let space = text.unicodeScalars.lastIndex(of: " ") else { return ("", " " + text) }
        // A passage ending in a space has an empty last word: lm-eval then scores the lone " ".
        let word = String(text.unicodeScalars[text.unicodeScalars.index(after: space)...])
        return (String(text.unicodeScalars[..<space]), " " + word)
    }
}
