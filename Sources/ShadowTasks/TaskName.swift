/// The tasks of DESIGN §6, named as lm-evaluation-harness names them (`arc_easy`, not `arcEasy`),
/// so a name on the command line or in a report reads the same as in lm-eval's tables.
public enum TaskName: String, CaseIterable, Sendable {
    case piqa
    case hellaswag
    case copa
    case arcEasy = "arc_easy"
    case arcChallenge = "arc_challenge"
    case openbookqa
    case winogrande
    case rte
    case boolq
    case lambada
    case wikitext

    /// lm-eval's names for tasks whose files these readers take: `lambada_openai` and
    /// `lambada_standard` differ only in the file they read; `sglue_rte` is lm-eval's SuperGLUE
    /// RTE, whose template is the GLUE task's (`rte`) with `premise`/`hypothesis` for
    /// `sentence1`/`sentence2`.
    public static let aliases: [String: TaskName] =
        ["lambada_openai": .lambada, "lambada_standard": .lambada, "sglue_rte": .rte]

    /// A task from a name on the command line: ours, or one of lm-eval's `aliases`.
    public init?(name: String) {
        guard let task = TaskName(rawValue: name) ?? Self.aliases[name] else { return nil }
        self = task
    }

    /// Every task but LAMBADA (greedy last word) and WikiText (perplexity) scores choices.
    public var isMultipleChoice: Bool {
        switch self {
        case .lambada, .wikitext: return false
        default: return true
        }
    }

    /// Whether the gold answers may come from a separate labels file (one per line), the way the
    /// PIQA and Winogrande releases ship them (`valid-labels.lst`, `dev-labels.lst`).
    public var acceptsLabelsFile: Bool {
        self == .piqa || self == .winogrande
    }

    /// Why a labels file given for this task is refused, as `--labels` says it; nil when it reads one.
    public var labelsFileRefusal: String? {
        guard !acceptsLabelsFile else { return nil }
        let why = self == .wikitext || self == .lambada ? "\(rawValue) has no labels" : "\(rawValue) keeps its labels in the task file"
        return "applies to piqa and winogrande only (\(why))"
    }
}
