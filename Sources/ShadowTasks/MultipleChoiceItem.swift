import ShadowFormats

/// One multiple-choice item, already in prompt form: choice i is scored as the log-likelihood of
/// `continuations[i]` after `contexts[i]` (lm-eval's `loglikelihood(context, continuation)`
/// request). The contexts are all equal except for Winogrande, where each option completes the
/// sentence up to its blank and the rest of the sentence is the shared continuation.
public struct MultipleChoiceItem: Sendable, Equatable, Codable {
    /// The item's position among the items of its file, counting from 0, so that slices such as
    /// "PIQA items 1000–1837" name the same items in calibration and evaluation.
    public let id: Int
    public let contexts: [String]
    /// Each starts with lm-eval's target delimiter " " (` yes`, ` {sol1}`).
    public let continuations: [String]
    /// Index of the correct choice.
    public let gold: Int

    /// Counts must agree and `gold` must index a choice (the readers check both before building,
    /// naming the file and line; a caller building items in code gets this error).
    public init(id: Int, contexts: [String], continuations: [String], gold: Int) throws {
        guard !continuations.isEmpty else { throw ShadowError.invalidArgument(name: "item \(id)", reason: "has no choices") }
        guard contexts.count == continuations.count else {
            throw ShadowError.invalidArgument(name: "item \(id)", reason: "has \(counted(contexts.count, "context")) for \(counted(continuations.count, "continuation")); it needs one context per continuation")
        }
        guard continuations.indices.contains(gold) else {
            throw ShadowError.invalidArgument(name: "item \(id)", reason: "gold index \(gold) is not one of its \(continuations.count) choices")
        }
        self.id = id
        self.contexts = contexts
        self.continuations = continuations
        self.gold = gold
    }

    /// An item whose choices all follow the same context (every task but Winogrande).
    public init(id: Int, context: String, continuations: [String], gold: Int) throws {
        try self.init(id: id, contexts: Array(repeating: context, count: continuations.count),
                      continuations: continuations, gold: gold)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let contexts = try container.decode([String].self, forKey: .contexts)
        let continuations = try container.decode([String].self, forKey: .continuations)
        let gold = try container.decode(Int.self, forKey: .gold)
        guard !continuations.isEmpty, contexts.count == continuations.count else {
            throw DecodingError.dataCorruptedError(forKey: .contexts, in: container,
                                                   debugDescription: "needs one context per continuation")
        }
        guard continuations.indices.contains(gold) else {
            throw DecodingError.dataCorruptedError(forKey: .gold, in: container,
                                                   debugDescription: "gold \(gold) is not a choice index")
        }
        try self.init(id: try container.decode(Int.self, forKey: .id), contexts: contexts,
                      continuations: continuations, gold: gold)
    }

    /// The one context all choices share, or nil when they differ (Winogrande). (The scorer groups
    /// requests by their tokens instead; readers' tests check the layout with it.)
    public var sharedContext: String? {
        contexts.dropFirst().allSatisfy { $0 == contexts[0] } ? contexts[0] : nil
    }

    public var choiceCount: Int { continuations.count }

    /// What a few-shot prompt shows for this item as an example: its gold context and continuation.
    public var goldText: String { contexts[gold] + continuations[gold] }
}
