import Foundation
import ShadowFormats

/// Reads the task files of DESIGN §6 in the forms their releases and lm-evaluation-harness use,
/// and turns each item into lm-eval's prompt: same context strings, same continuations, same gold.
/// Every problem with a file is a one-line `ShadowError` naming the file, the line and the key.
public enum TaskFile {
    /// Reads `path` into items. The form is told from the content: a first `{` means JSON Lines,
    /// `<` COPA's XML; otherwise HellaSwag's llama.cpp text or RTE's GLUE TSV. `labels` is a file
    /// of one gold label per line, for PIQA (0/1) and Winogrande (1/2) whose releases keep the
    /// answers apart (without one, the release's `NAME-labels.lst` beside `NAME.jsonl` when it is
    /// there: `labelsBeside`); labels inside the file must agree with it. `asStored` (HellaSwag
    /// only) keeps ctx_b as the file writes it instead of capitalising it as lm-eval does.
    public static func multipleChoice(task: TaskName, path: String, labels: String? = nil,
                                      asStored: Bool = false) throws -> [MultipleChoiceItem] {
        if labels != nil, let refusal = task.labelsFileRefusal {
            throw ShadowError.invalidArgument(name: "--labels", reason: refusal)
        }
        let labels = try labels ?? labelsBeside(data: path, task: task)
        switch task {
        case .piqa: return try PIQA.read(path: path, labels: labels)
        case .hellaswag: return try HellaSwag.read(path: path, asStored: asStored)
        case .copa: return try COPA.read(path: path)
        case .arcEasy, .arcChallenge, .openbookqa: return try AI2.read(path: path, task: task)
        case .winogrande: return try Winogrande.read(path: path, labels: labels)
        case .rte: return try RTE.read(path: path)
        case .boolq: return try BoolQ.read(path: path)
        case .lambada, .wikitext:
            throw ShadowError.invalidArgument(
                name: task.rawValue, reason: "is not multiple choice; read it with TaskFile.\(task.rawValue)(path:)")
        }
    }

    /// The labels file the releases put beside PIQA's and Winogrande's data, `NAME-labels.lst` for
    /// `NAME.jsonl` (`valid-labels.lst`, `dev-labels.lst`), when it is there; nil for other tasks.
    /// `calibrate`, `eval` and `sweep` use it when no labels file is given.
    /// One that is there but cannot be looked at (a symbolic link loop, no permission) is an
    /// error, not taken as absent.
    public static func labelsBeside(data path: String, task: TaskName) throws -> String? {
        guard task.acceptsLabelsFile else { return nil }
        let candidate = (path as NSString).deletingPathExtension + "-labels.lst"
        return try fileKind(atPath: candidate) == nil ? nil : candidate
    }

    /// LAMBADA (`{"text": …}` per line) as lm-eval's `lambada_openai` splits it: the context is
    /// the text up to its last space, the target a space and the last word.
    public static func lambada(path: String) throws -> [(context: String, target: String)] {
        try Lambada.read(path: path)
    }

    /// The whole text of a WikiText file exactly as stored (articles, headings, blank lines and
    /// line breaks untouched); `wikitextPages` splits it into the articles lm-eval scores.
    public static func wikitext(path: String) throws -> String {
        try WikiText.read(path: path)
    }

    /// lm-eval's WikiText detokenizer (" @-@ " → "-", " , " → ", ", spaces inside brackets and
    /// quotes dropped, …): lm-eval scores the detokenized text but counts words and bytes on the
    /// text as stored.
    public static func wikitextDetokenized(_ text: String) -> String {
        WikiText.detokenize(text)
    }

    /// The articles of a WikiText text as lm-eval scores them, one by one: a level-1 heading line
    /// (" = Title = ") starts a new one; a text without one is a single article.
    public static func wikitextPages(_ text: String) -> [String] {
        WikiText.pages(text)
    }

    /// lm-eval's word count for word perplexity, `len(re.split(r"\s+", text))`.
    public static func wikitextWordCount(_ text: String) -> Int {
        WikiText.wordCount(text)
    }
}

/// A file of one label per line (PIQA's `valid-labels.lst`, Winogrande's `dev-labels.lst`).
enum LabelsFile {
    /// The gold of item `id`: the labels file's when there is one, else the record's own `key`.
    /// A record label that says otherwise than the labels file is an error: the file is of
    /// another split or stale, and either way one of them would silently be wrong.
    static func gold(_ record: JSONRecord, id: Int, key: String, allowed: [(spelling: String, index: Int)],
                     golds: [Int]?, labelsPath: String?) throws -> Int {
        guard let golds, let labelsPath else {
            guard record.has(key) else {
                throw record.error(key, "missing (and no labels file: give --labels, or put NAME-labels.lst beside NAME.jsonl)")
            }
            return try record.label(key, allowed)
        }
        // A test split's placeholder ("", -1) is no label to disagree with.
        if let own = try? record.label(key, allowed), own != golds[id] {
            let spelling = { (index: Int) in allowed.first { $0.index == index }?.spelling ?? String(index) }
            throw record.error(key, "is \"\(spelling(own))\", but \(labelsPath) gives \"\(spelling(golds[id]))\" for item \(id): labels of another split?")
        }
        return golds[id]
    }

    /// The gold index of each of `itemCount` items read from `itemsPath`; the counts must match.
    static func read(_ path: String, allowed: [(spelling: String, index: Int)], itemCount: Int,
                     itemsPath: String) throws -> [Int] {
        let lines = try SourceLines(path: path)
        var golds: [Int] = []
        var lastLine = 0
        for index in 0..<lines.count where !lines.isBlank(index) {
            let text = try lines.text(index).pythonStripped
            if golds.count == itemCount {
                throw ShadowError.corruptFile(
                    path: lines.location(index),
                    reason: "label for item \(itemCount), but \(itemsPath) has only \(itemCount) items")
            }
            guard let match = allowed.first(where: { $0.spelling == text }) else {
                let list = allowed.map { "\"\($0.spelling)\"" }.joined(separator: ", ")
                // A data file given as --labels has lines of hundreds of characters: quote the start.
                let shown = text.count > 40 ? text.prefix(40) + "…" : Substring(text)
                let guess = text.hasPrefix("{") ? " (a JSON line: is this the data file rather than its labels?)" : ""
                throw ShadowError.corruptFile(path: lines.location(index), reason: "label \(quoted(String(shown), escapingQuotes: false)) is not one of \(list)\(guess)")
            }
            golds.append(match.index)
            lastLine = lines.number(index)
        }
        if golds.count < itemCount {
            throw ShadowError.corruptFile(
                path: "\(path):\(lastLine + 1)",
                reason: "no label for item \(golds.count): \(golds.count) labels for \(itemCount) items in \(itemsPath)")
        }
        return golds
    }
}
