/// PIQA (Bisk et al. 2020): `{"goal", "sol1", "sol2"}` per line, gold from a labels file of 0/1
/// lines or an inline `label`. lm-eval's `piqa.yaml`: `doc_to_text: "Question: {{goal}}\nAnswer:"`,
/// `doc_to_choice: "{{[sol1, sol2]}}"`, target delimiter " ". Text is used as written (some
/// solutions end in a space; lm-eval keeps it).
enum PIQA {
    static func read(path: String, labels: String?) throws -> [MultipleChoiceItem] {
        let records = try SourceLines(path: path).jsonRecords()
        // The items' own keys first: another task's file is named as that, not blamed on the labels.
        let fields = try records.map { (goal: try $0.string("goal"), solutions: [try $0.string("sol1"), try $0.string("sol2")]) }
        let binary = indexLabels(2)
        let golds = try labels.map {
            try LabelsFile.read($0, allowed: binary, itemCount: records.count, itemsPath: path)
        }
        return try records.enumerated().map { id, record in
            let (goal, solutions) = fields[id]
            let gold = try LabelsFile.gold(record, id: id, key: "label", allowed: binary, golds: golds, labelsPath: labels)
            return try MultipleChoiceItem(id: id, context: "Question: \(goal)\nAnswer:",
                                      continuations: solutions.map { " " + $0 }, gold: gold)
        }
    }
}
