/// Several continuations of the cached context run side by side in one forward pass, such as
/// the answers of a multiple-choice question: each branch attends to the context and to its own
/// earlier tokens only, and its positions start where the context ends. One pass streams the
/// weights once for all the answers (a forward of a few dozen tokens is bound by reading them)
/// and gives the projections all the answers' tokens at once. The branches' keys and values are
/// appended to the cache one branch after another; a caller truncates the cache back to the
/// context afterwards.
public struct Branches: Sendable, Equatable {
    /// Each branch's rows of the forward's tokens: adjacent, in order, from 0.
    public let segments: [Range<Int>]
    /// Per token row, the first row of its branch.
    let branchStart: [Int]

    /// Branches of these lengths (each ≥ 1), in the order their tokens are passed.
    public init(lengths: [Int]) {
        precondition(lengths.allSatisfy { $0 > 0 }, "every branch has a token")
        var segments: [Range<Int>] = []
        var starts: [Int] = []
        var first = 0
        for length in lengths {
            segments.append(first ..< first + length)
            starts += repeatElement(first, count: length)
            first += length
        }
        self.segments = segments
        branchStart = starts
    }

    /// Tokens of all branches together.
    public var tokenCount: Int { branchStart.count }

    /// The position of token row `t` when the cached context holds `past` tokens.
    @inline(__always)
    func position(of t: Int, past: Int) -> Int { past + t - branchStart[t] }
}

extension Optional where Wrapped == Branches {
    /// The position of token row `t`: after the context in its branch, or simply `past + t`.
    @inline(__always)
    func position(of t: Int, past: Int) -> Int { self?.position(of: t, past: past) ?? past + t }
}
