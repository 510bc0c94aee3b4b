/// BoolQ (Clark et al. 2019): `{"passage", "question", "label"}` per line (SuperGLUE), a boolean
/// or 0/1. Google's original release says `answer` and keeps the article's title apart
/// (`title`); SuperGLUE's passages open with "{title} -- ", so a record with a title gets it put
/// back in front of its passage. lm-eval's `super_glue/boolq`:
/// `"{{passage}}\nQuestion: {{question}}?\nAnswer:"` (BoolQ questions carry no "?"), choices
/// ["no", "yes"], so a true answer is gold 1.
enum BoolQ {
    static func read(path: String) throws -> [MultipleChoiceItem] {
        // Python's str(bool) spells them "False"/"True" (a CSV turned into JSON Lines).
        let answers: [(spelling: String, index: Int)] = [("false", 0), ("true", 1), ("0", 0), ("1", 1), ("False", 0), ("True", 1)]
        return try SourceLines(path: path).jsonRecords().enumerated().map { id, record in
            var passage = try record.string("passage")
            // (A null or empty title, or a passage that already opens with it, adds nothing.)
            if case .string(let title)? = record.optional("title"), !title.isEmpty, !passage.hasPrefix("\(title) -- ") {
                passage = "\(title) -- \(passage)"
            }
            let question = try record.string("question")
            let key = !record.has("label") && record.has("answer") ? "answer" : "label"
            let gold = try record.label(key, answers)
            // A record with both (a merge of the two releases) must not disagree with itself.
            if key == "label", let answer = record.optional("answer"), !answer.isNull, try record.label("answer", answers) != gold {
                throw record.error("answer", "disagrees with key \"label\" (\(gold == 1 ? "true" : "false"))")
            }
            return try MultipleChoiceItem(id: id, context: "\(passage)\nQuestion: \(question)?\nAnswer:",
                                      continuations: [" no", " yes"], gold: gold)
        }
    }
}
