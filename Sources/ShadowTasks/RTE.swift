import Foundation
import ShadowFormats

/// RTE (recognising textual entailment), as SuperGLUE JSON Lines (`premise, hypothesis, label`,
/// label "entailment"/"not_entailment" or 0/1 with 0 = entailment; GLUE's `sentence1`/`sentence2`
/// names also accepted) or GLUE's TSV (header `index sentence1 sentence2 label`, tab-separated,
/// no quoting; also as exported by pandas or `datasets`, with 0/1 labels and CSV quoting, see
/// `csvQuoted`). lm-eval's `super_glue/rte`: `"{{premise}}\nQuestion: {{hypothesis}} True or
/// False?\nAnswer:"`, choices ["True", "False"], so gold 0 means entailment.
enum RTE {
    static let labels: [(spelling: String, index: Int)] =
        [("entailment", 0), ("not_entailment", 1), ("0", 0), ("1", 1)]

    static func context(premise: String, hypothesis: String) -> String {
        "\(premise)\nQuestion: \(hypothesis) True or False?\nAnswer:"
    }

    static let continuations = [" True", " False"]

    static func read(path: String) throws -> [MultipleChoiceItem] {
        let lines = try SourceLines(path: path)
        if lines.firstSignificantByte == UInt8(ascii: "{") {
            return try lines.jsonRecords().enumerated().map { id, record in
                let glue = !record.has("premise") && record.has("sentence1")
                let premise = try record.string(glue ? "sentence1" : "premise")
                let hypothesis = try record.string(glue ? "sentence2" : "hypothesis")
                return try MultipleChoiceItem(id: id, context: context(premise: premise, hypothesis: hypothesis),
                                          continuations: continuations, gold: try record.label("label", labels))
            }
        }
        return try readTSV(lines)
    }

    static func readTSV(_ lines: SourceLines) throws -> [MultipleChoiceItem] {
        try lines.refuseJSONArray()
        guard let headerIndex = (0..<lines.count).first(where: { !lines.isBlank($0) }) else {
            throw ShadowError.corruptFile(path: lines.path, reason: "no items (the file is empty)")
        }
        let header = try lines.text(headerIndex).split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        func column(_ name: String) throws -> Int {
            guard let index = header.firstIndex(of: name) else {
                // A CSV export (pandas' to_csv) has one field with commas in it.
                let separator = header.count == 1 && header[0].contains(",") ? " (it has no tab: GLUE's RTE is tab-separated, not comma-separated)" : ""
                throw ShadowError.corruptFile(path: lines.location(headerIndex),
                                              reason: "column \"\(name)\": missing from the header\(separator)")
            }
            return index
        }
        let premiseColumn = try column("sentence1"), hypothesisColumn = try column("sentence2")
        let labelColumn = try column("label")
        var rows: [(line: Int, fields: [String])] = []
        for index in headerIndex + 1..<lines.count where !lines.isBlank(index) {
            let fields = try lines.text(index).split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == header.count else {
                throw ShadowError.corruptFile(path: lines.location(index),
                                              reason: "\(fields.count) tab-separated fields; the header has \(header.count)")
            }
            rows.append((index, fields))
        }
        if csvQuoted(rows.flatMap(\.fields)) {
            rows = rows.map { ($0.line, $0.fields.map(unquoted)) }
        }
        var items: [MultipleChoiceItem] = []
        for (index, fields) in rows {
            let label = fields[labelColumn].pythonStripped
            guard let gold = labels.first(where: { $0.spelling == label })?.index else {
                throw ShadowError.corruptFile(path: lines.location(index),
                                              reason: "column \"label\": \"\(label)\" is not \"entailment\" or \"not_entailment\"")
            }
            items.append(try MultipleChoiceItem(
                id: items.count, context: context(premise: fields[premiseColumn], hypothesis: fields[hypothesisColumn]),
                continuations: continuations, gold: gold))
        }
        if items.isEmpty { throw ShadowError.corruptFile(path: lines.path, reason: "no items after the header") }
        return items
    }

    /// Whether a file's fields carry CSV quoting (pandas' and `datasets`' exports: a field holding
    /// a quote is wrapped in quotes, each quote inside doubled) rather than GLUE's verbatim text,
    /// where quotes stand alone ("\"Fairytale of New York\" does not contain…"). Quoted when every
    /// field holding a quote is wrapped with its quotes doubled, and there is such a field.
    static func csvQuoted(_ fields: [String]) -> Bool {
        var wrapped = false
        for field in fields where field.contains("\"") {
            guard field.count >= 2, field.first == "\"", field.last == "\"" else { return false }
            let inside = field.dropFirst().dropLast()
            guard inside.replacingOccurrences(of: "\"\"", with: "").contains("\"") == false else { return false }
            // A wrapped field always holds a doubled quote: only a quote makes the writer wrap
            // (a tab or line break would break the line-per-row reading first).
            guard inside.contains("\"\"") else { return false }
            wrapped = true
        }
        return wrapped
    }

    /// A CSV-quoted field's text: the wrapping quotes dropped, doubled quotes made single.
    static func unquoted(_ field: String) -> String {
        guard field.count >= 2, field.first == "\"", field.last == "\"" else { return field }
        return String(field.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"")
    }
}
