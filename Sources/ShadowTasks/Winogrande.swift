import ShadowFormats

/// Winogrande (Sakaguchi et al. 2020): `{"sentence", "option1", "option2", "answer"}` per line,
/// `answer` "1" or "2" (or from a labels file of 1/2 lines, as the release ships dev labels).
/// lm-eval's `winogrande/preprocess_winogrande.py` scores the rest of the sentence given each
/// filled-in beginning ("partial evaluation", Trinh & Le 2018): with `idx = sentence.index("_")`,
/// context i is `sentence[:idx] + option_i` and the shared continuation is
/// `" " + sentence[idx+1:].strip()`.
enum Winogrande {
    static func read(path: String, labels: String?) throws -> [MultipleChoiceItem] {
        let records = try SourceLines(path: path).jsonRecords()
        // The items' own keys first: another task's file is named as that, not blamed on the labels.
        let fields = try records.map { (sentence: try $0.string("sentence"), options: [try $0.string("option1"), try $0.string("option2")]) }
        let answers: [(spelling: String, index: Int)] = [("1", 0), ("2", 1)]
        let golds = try labels.map {
            try LabelsFile.read($0, allowed: answers, itemCount: records.count, itemsPath: path)
        }
        return try records.enumerated().map { id, record in
            let (sentence, options) = fields[id]
            guard let blank = sentence.unicodeScalars.firstIndex(of: "_") else {
                throw record.error("sentence", "has no \"_\" blank to fill")
            }
            let gold = try LabelsFile.gold(record, id: id, key: "answer", allowed: answers, golds: golds, labelsPath: labels)
            let before = String(sentence.unicodeScalars[..<blank])
            let after = String(sentence.unicodeScalars[sentence.unicodeScalars.index(after: blank)...])
            let continuation = " " + after.pythonStripped
            return try MultipleChoiceItem(id: id, contexts: options.map { before + $0 },
                                      continuations: [continuation, continuation], gold: gold)
        }
    }
}
