/// Several continuations of the cached context run side by side in one forward pass, such as
/// the answers of a multiple-choice question: each branch attends to the context and to its own
/// earlier tokens only, and its positions start where the context ends. One pass streams the
/// weights once for all the answers (a forward of a few dozen tokens is bound by reading them)
/// and gives the projections all the answers' tokens at once. The context can run in the same
/// pass, ahead of the branches (`prefix`): a sparsity controller then predicts from the context's
/// last token, as it would from a pass of the context alone. Keys and values are appended to the
/// cache in the order of the rows; a caller truncates the cache back to the context afterwards.
public struct Branches: Sendable, Equatable {
    /// Rows 0 ..< prefix are the context itself, run causally ahead of the branches in the same
    /// pass (0: the context is already in the cache).
    public let prefix: Int
    /// Each branch's rows of the forward's tokens: adjacent, in order, from `prefix`.
    public let segments: [Range<Int>]
    /// Per token row, how far its position falls behind `past + row`.
    let positionShift: [Int]

    /// A context of `prefix` tokens followed by branches of these lengths (each ≥ 1), in the
    /// order their tokens are passed.
    public init(prefix: Int = 0, lengths: [Int]) {
        precondition(prefix >= 0 && lengths.allSatisfy { $0 > 0 }, "every branch has a token")
        var segments: [Range<Int>] = []
        var shifts = [Int](repeating: 0, count: prefix)
        var first = prefix
        for length in lengths {
            segments.append(first ..< first + length)
            shifts += repeatElement(first - prefix, count: length)
            first += length
        }
        self.prefix = prefix
        self.segments = segments
        positionShift = shifts
    }

    /// Tokens of the context and all branches together.
    public var tokenCount: Int { positionShift.count }

    /// The rows a sparsity controller predicts from (it reads the last one): the context's, when
    /// it runs in this pass.
    public func promptRows(tokens: Int) -> Int { prefix > 0 ? prefix : tokens }

    /// The position of token row `t` when the cache held `past` tokens before this pass.
    @inline(__always)
    func position(of t: Int, past: Int) -> Int { past + t - positionShift[t] }

    /// The causal runs of rows attention works through, each with the number of cached keys
    /// (from 0) that every row of the run sees before the run's own: the context, then each
    /// branch after the whole context.
    func runs(past: Int) -> [(rows: Range<Int>, context: Int)] {
        (prefix > 0 ? [(0 ..< prefix, past)] : []) + segments.map { ($0, past + prefix) }
    }
}

extension Optional where Wrapped == Branches {
    /// The position of token row `t`: after the context in its branch, or simply `past + t`.
    @inline(__always)
    func position(of t: Int, past: Int) -> Int { self?.position(of: t, past: past) ?? past + t }
}
