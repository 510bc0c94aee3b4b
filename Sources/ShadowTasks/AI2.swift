import ShadowFormats

/// ARC (Clark et al. 2018) and OpenBookQA (Mihaylov et al. 2018), both from AI2 and sharing a
/// layout. Accepted per line:
/// - AI2's release: `{"question": {"stem", "choices": [{"text", "label"}]}, "answerKey"}`, or
///   with `choices` beside `question` rather than inside it;
/// - Hugging Face's: `{"question": stem, "choices": {"text": [...], "label": [...]}, "answerKey"}`
///   (ARC) or `{"question_stem", "choices": {...}, "answerKey"}` (OpenBookQA);
/// - the older lm-eval form `{"query", "choices": [text, ...], "gold"}` (for ARC its `query` may
///   already be the templated "Question: …\nAnswer:", which is then used as is).
/// Labels may be letters or digits (some ARC items use 1–4); the gold index is the position of
/// `answerKey` (leading/trailing spaces removed, as OpenBookQA's `answerKey.lstrip()`) among them.
/// Templates: ARC `"Question: {{question}}\nAnswer:"`, OpenBookQA `"{{question_stem}}"`; each
/// choice is " " + its text.
enum AI2 {
    static func read(path: String, task: TaskName) throws -> [MultipleChoiceItem] {
        try SourceLines(path: path).jsonRecords().enumerated().map { id, record in
            let (stem, texts, gold) = try question(record)
            let context = task == .openbookqa || isARCQuery(record, stem) ? stem : "Question: \(stem)\nAnswer:"
            return try MultipleChoiceItem(id: id, context: context, continuations: texts.map { " " + $0 }, gold: gold)
        }
    }

    /// The older lm-eval's ARC docs already hold the template in `query` ("Question: …\nAnswer:");
    /// wrapping it again would ask "Question: Question: …". A bare `query` is still wrapped.
    static func isARCQuery(_ record: JSONRecord, _ stem: String) -> Bool {
        record.has("query") && stem.hasPrefix("Question: ") && stem.hasSuffix("\nAnswer:")
    }

    static func question(_ record: JSONRecord) throws -> (stem: String, texts: [String], gold: Int) {
        if record.has("query") {
            let texts = try record.strings("choices")
            if texts.isEmpty { throw record.error("choices", "is empty") }
            return (try record.string("query"), texts, try record.label("gold", indexLabels(texts.count)))
        }
        let stem: String
        let choicesKey: String
        if case .object? = record.optional("question") {
            stem = try record.string("question.stem")
            // Choices beside the question rather than inside it (DESIGN §6's OpenBookQA layout).
            choicesKey = !record.has("question.choices") && record.has("choices") ? "choices" : "question.choices"
        } else if record.has("question_stem") {
            stem = try record.string("question_stem")
            choicesKey = "choices"
        } else {
            stem = try record.string("question")
            choicesKey = "choices"
        }
        let (texts, labels) = try choices(record, choicesKey)
        let answer = try record.labelString("answerKey").pythonStripped
        guard let gold = labels.firstIndex(of: answer) else {
            throw record.error("answerKey", "\(quoted(answer, escapingQuotes: false)) is not one of the choice labels \(labels.joined(separator: ", "))")
        }
        return (stem, texts, gold)
    }

    /// Choices either as `[{"text", "label"}]` (AI2) or as `{"text": [...], "label": [...]}` (HF).
    static func choices(_ record: JSONRecord, _ key: String) throws -> (texts: [String], labels: [String]) {
        let found = try record.required(key)
        var texts: [String] = [], labels: [String] = []
        switch found {
        case .array(let elements):
            for index in elements.indices {
                texts.append(try record.string("\(key).\(index).text", display: "\(key)[\(index)].text"))
                labels.append(try record.labelString("\(key).\(index).label", display: "\(key)[\(index)].label"))
            }
        case .object:
            texts = try record.strings("\(key).text")
            labels = try record.array("\(key).label").indices.map { try record.labelString("\(key).label.\($0)", display: "\(key).label[\($0)]") }
            if texts.count != labels.count {
                throw record.error(key, "\(texts.count) texts but \(labels.count) labels")
            }
        default:
            throw record.error(key, "expected an array or an object, found \(found.kindName)")
        }
        if texts.isEmpty { throw record.error(key, "is empty") }
        return (texts, labels.map { $0.pythonStripped })
    }
}
