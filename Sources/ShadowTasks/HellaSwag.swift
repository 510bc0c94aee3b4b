import ShadowFormats

/// HellaSwag (Zellers et al. 2019), in two forms:
/// - JSON Lines as released (`activity_label, ctx_a, ctx_b, endings, label`). lm-eval's
///   `hellaswag/utils.py` builds `query = preprocess(activity_label + ": " + ctx_a + " " +
///   ctx_b.capitalize())` and `choices = [preprocess(e) for e in endings]`; Python's `capitalize`
///   also lower-cases the rest of `ctx_b`.
/// - llama.cpp's text (`hellaswag_val_full.txt`): six lines per item — the full context, the gold
///   index, four endings. Its context line is `activity_label: ctx` with ctx_b left as written, so
///   where ctx_b starts lower-case ("… on a roof. he") it differs from lm-eval's query by that one
///   letter; the boundary between ctx_a and ctx_b is lost, so it cannot be restored. We apply the
///   same `preprocess` to every line, which leaves clean text unchanged and removes the few
///   bracketed leftovers the file still holds.
/// In both forms a choice is " " + the preprocessed ending (preprocess strips, so an ending
/// that already starts with a space still gets exactly one).
enum HellaSwag {
    static func read(path: String) throws -> [MultipleChoiceItem] {
        let lines = try SourceLines(path: path)
        if lines.firstSignificantByte == UInt8(ascii: "{") {
            return try readJSONLines(lines)
        }
        return try readText(lines)
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

    static func readJSONLines(_ lines: SourceLines) throws -> [MultipleChoiceItem] {
        try lines.jsonRecords().enumerated().map { id, record in
            let context = try record.string("activity_label") + ": " + record.string("ctx_a") + " "
                + record.string("ctx_b").pythonCapitalized
            let endings = try record.strings("endings")
            if endings.isEmpty { throw record.error("endings", "is empty") }
            let gold = try record.label("label", indexLabels(endings.count))
            return MultipleChoiceItem(id: id, context: preprocess(context),
                                      continuations: endings.map { " " + preprocess($0) }, gold: gold)
        }
    }

    /// Lines per item in llama.cpp's format: context, gold index, four endings.
    static let textLinesPerItem = 6

    static func readText(_ lines: SourceLines) throws -> [MultipleChoiceItem] {
        // Blank lines at the end are padding; inside an item a blank line would be an empty ending.
        var count = lines.count
        while count > 0, lines.isBlank(count - 1) { count -= 1 }
        if count == 0 { throw ShadowError.corruptFile(path: lines.path, reason: "no items (the file is empty)") }
        if count % textLinesPerItem != 0 {
            let start = count - count % textLinesPerItem
            throw ShadowError.corruptFile(
                path: lines.location(start),
                reason: "item \(start / textLinesPerItem) has \(count % textLinesPerItem) lines; expected 6 (context, gold index, 4 endings)")
        }
        var items: [MultipleChoiceItem] = []
        items.reserveCapacity(count / textLinesPerItem)
        for start in stride(from: 0, to: count, by: textLinesPerItem) {
            let context = try lines.text(start)
            let goldText = try lines.text(start + 1).pythonStripped
            guard let gold = Int(goldText), (0..<4).contains(gold) else {
                throw ShadowError.corruptFile(path: lines.location(start + 1),
                                              reason: "gold index \"\(goldText)\" is not 0, 1, 2 or 3")
            }
            let endings = try (start + 2..<start + 6).map { try lines.text($0) }
            items.append(MultipleChoiceItem(id: start / textLinesPerItem, context: preprocess(context),
                                            continuations: endings.map { " " + preprocess($0) }, gold: gold))
        }
        return items
    }
}
