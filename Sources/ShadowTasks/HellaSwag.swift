import ShadowFormats

/// HellaSwag (Zellers et al. 2019), in two forms:
/// - JSON Lines as released (`activity_label, ctx_a, ctx_b, endings, label`). lm-eval's
///   `hellaswag/utils.py` builds `query = preprocess(activity_label + ": " + ctx_a + " " +
///   ctx_b.capitalize())` and `choices = [preprocess(e) for e in endings]`; Python's `capitalize`
///   also lower-cases the rest of `ctx_b`.
/// - llama.cpp's text (`hellaswag_val_full.txt`): six lines per item — the full context, the gold
///   index, four endings. Its context line is lm-eval's query before `capitalize`: `activity_label:
///   ctx_a ctx_b` with ctx_b as written, so an ActivityNet item reads "… on a roof. he" where
///   lm-eval's reads "… on a roof. He". The line does not mark where ctx_b starts, but ctx_b is
///   the opening of the sentence the endings complete: `restoringCapitalizedCtxB` takes the text
///   after the line's last sentence end, when it starts lower-case and is not itself a whole
///   sentence, to be ctx_b and capitalises it as lm-eval does (`asStored` keeps the line as
///   written, as llama.cpp's `perplexity --hellaswag` reads it). We apply the same `preprocess`
///   to every line, which leaves clean text unchanged and removes the few bracketed leftovers the
///   file still holds.
/// `asStored` reads ctx_b as written in both forms (the JSON Lines' `ctx_b` field, llama.cpp's
/// line). A JSON line with only the joined `ctx` (no `ctx_a`/`ctx_b`) is read as llama.cpp's line is.
/// In both forms a choice is " " + the preprocessed ending (preprocess strips, so an ending
/// that already starts with a space still gets exactly one).
enum HellaSwag {
    static func read(path: String, asStored: Bool = false) throws -> [MultipleChoiceItem] {
        let lines = try SourceLines(path: path)
        // A .jsonl file is JSON Lines whatever its first line holds, so a bad line is named as one.
        if lines.firstSignificantByte == UInt8(ascii: "{") || [".jsonl", ".json"].contains(where: path.lowercased().hasSuffix) {
            return try readJSONLines(lines, asStored: asStored)
        }
        return try readText(lines, asStored: asStored)
    }

    /// lm-eval's `preprocess`: WikiHow items carry markup such as "[header]" and "[title]".
    static func preprocess(_ text: String) -> String {
        guard needsPreprocessing(text) else { return text }
        return text.pythonStripped
            .pythonReplacing(" [title]", with: ". ")
            .removingBracketedText
            .pythonReplacing("  ", with: " ")
    }

    /// Whether `preprocess` could change `text`: white space at either end (or a non-ASCII byte
    /// there, which might be), a "[" or two spaces in a row. Most lines of the llama.cpp file
    /// need nothing, and checking first keeps a debug build's read of all 10042 items short.
    static func needsPreprocessing(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            guard let first = bytes.first, let last = bytes.last else { return false }
            if first <= 0x20 || first >= 0x80 || last <= 0x20 || last >= 0x80 { return true }
            var previous: UInt8 = 0
            for byte in bytes {
                if byte == UInt8(ascii: "[") || (byte == 0x20 && previous == 0x20) { return true }
                previous = byte
            }
            return false
        }
    }

    static func readJSONLines(_ lines: SourceLines, asStored: Bool) throws -> [MultipleChoiceItem] {
        try lines.jsonRecords().enumerated().map { id, record in
            let context: String
            if !record.has("ctx_a"), !record.has("ctx_b"), record.has("ctx") {
                // `ctx` is ctx_a + " " + ctx_b as stored: ctx_b's capital restored as for llama.cpp's line.
                let joined = preprocess(try record.string("activity_label") + ": " + record.string("ctx"))
                context = asStored ? joined : restoringCapitalizedCtxB(joined)
            } else {
                let ctxB = try record.string("ctx_b")
                context = preprocess(try record.string("activity_label") + ": " + record.string("ctx_a") + " "
                    + (asStored ? ctxB : ctxB.pythonCapitalized))
            }
            let endings = try record.strings("endings")
            if endings.isEmpty { throw record.error("endings", "is empty") }
            let gold = try record.label("label", indexLabels(endings.count))
            return try MultipleChoiceItem(id: id, context: context,
                                      continuations: endings.map { " " + preprocess($0) }, gold: gold)
        }
    }

    /// Lines per item in llama.cpp's format: context, gold index, four endings.
    static let textLinesPerItem = 6

    static func readText(_ lines: SourceLines, asStored: Bool) throws -> [MultipleChoiceItem] {
        try lines.refuseJSONArray()
        // Blank lines before the first item and after the last are padding; inside an item a
        // blank line would be an empty ending.
        var count = lines.count
        while count > 0, lines.isBlank(count - 1) { count -= 1 }
        let first = (0..<count).first { !lines.isBlank($0) } ?? count
        if count == first { throw ShadowError.corruptFile(path: lines.path, reason: "no items (the file is empty)") }
        // A blank line between items would shift every later item by one line.
        if let blank = (first..<count).first(where: { lines.isBlank($0) }) {
            throw ShadowError.corruptFile(
                path: lines.location(blank),
                reason: "blank line in item \((blank - first) / textLinesPerItem + 1) (from line \(first + (blank - first) / textLinesPerItem * textLinesPerItem + 1)); items are \(textLinesPerItem) lines each (context, gold index, 4 endings) with no blank lines between them")
        }
        // Every whole item's gold index is checked before the count: a file in another format
        // is named at its second line, not at its end.
        for start in stride(from: first, to: count - textLinesPerItem + 1, by: textLinesPerItem) {
            _ = try goldIndex(lines, line: start + 1)
        }
        if (count - first) % textLinesPerItem != 0 {
            let start = count - (count - first) % textLinesPerItem
            let found = (count - first) % textLinesPerItem
            throw ShadowError.corruptFile(
                path: lines.location(start),
                reason: "item \((start - first) / textLinesPerItem + 1) has \(found) line\(found == 1 ? "" : "s") of \(textLinesPerItem) (context, gold index, 4 endings)")
        }
        var items: [MultipleChoiceItem] = []
        items.reserveCapacity((count - first) / textLinesPerItem)
        for start in stride(from: first, to: count, by: textLinesPerItem) {
            let context = try lines.text(start)
            let gold = try goldIndex(lines, line: start + 1)
            let endings = try (start + 2..<start + textLinesPerItem).map { try lines.text($0) }
            let query = asStored ? preprocess(context) : restoringCapitalizedCtxB(preprocess(context))
            items.append(try MultipleChoiceItem(id: items.count, context: query,
                                            continuations: endings.map { " " + preprocess($0) }, gold: gold))
        }
        return items
    }

    static func goldIndex(_ lines: SourceLines, line: Int) throws -> Int {
        let text = try lines.text(line).pythonStripped
        guard let gold = Int(text), (0..<4).contains(gold) else {
            throw ShadowError.corruptFile(path: lines.location(line), reason: "gold index \"\(text)\" is not 0, 1, 2 or 3")
        }
        return gold
    }

    /// A llama.cpp context line with its ctx_b capitalised as lm-eval's query has it: the text
    /// after the last sentence end (".", "!" or "?", a closing quote allowed, then a space) is
    /// taken to be ctx_b when it starts with a lower-case letter and does not end a sentence
    /// itself; then it gets Python's `capitalize` ("the lady" → "The lady"). Anything else is
    /// returned unchanged: WikiHow items, whose ctx_b is empty and whose line ends with a
    /// sentence, and the few items whose last part opens with a digit or a quote.
    static func restoringCapitalizedCtxB(_ context: String) -> String {
        let scalars = Array(context.unicodeScalars)
        func endsSentence(_ index: Int) -> Bool { ".!?".unicodeScalars.contains(scalars[index]) }
        // ctx_b ends where the line does, so the line must not close a sentence (quotes aside).
        guard var last = scalars.indices.last else { return context }
        if scalars[last] == "\"" || scalars[last] == "'" { last -= 1 }
        if last < 0 || endsSentence(last) { return context }
        var start: Int?
        for index in stride(from: scalars.count - 2, through: 1, by: -1) where scalars[index] == " " {
            var end = index - 1
            if scalars[end] == "\"" || scalars[end] == "'", end > 0 { end -= 1 }
            if endsSentence(end) { start = index + 1; break }
        }
        guard let start, scalars[start].properties.isLowercase else { return context }
        var result = String.UnicodeScalarView(scalars[..<start])
        result.append(contentsOf: String(String.UnicodeScalarView(scalars[start...])).pythonCapitalized.unicodeScalars)
        return String(result)
    }
}
