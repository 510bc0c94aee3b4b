import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels
import ShadowSparsity

/// How a sparse evaluation chooses masks for the requests of one question (DESIGN §6).
public enum MaskMode: String, Sendable, CaseIterable, Codable {
    /// One mask per question, predicted from the last context token and shared by its choices:
    /// what an engine can do before it has seen any answer.
    case causal
    /// The paper's harness: every choice is its own request, and its mask is predicted from the
    /// prefill of context + continuation (the last continuation token included, as calibration's
    /// `last-input`).
    case perChoice = "per-choice"
}

/// A controller whose mask belongs to one request: `reset()` forgets it so the next call
/// predicts, `frozen` keeps it for later calls (here: while the choices of a question run).
public protocol RequestScopedMasks: SparsityController {
    var frozen: Bool { get set }
    func reset()
}

extension ShadowPredictorController: RequestScopedMasks {}
extension DejaVuController: RequestScopedMasks {}

/// How far the sparse model's next-token distributions stray from the dense model's at the
/// positions that predict continuation tokens: mean KL(dense ‖ sparse) and top-1 agreement.
public struct Agreement: Sendable, Equatable, Codable {
    public var klSum = 0.0
    public var positions = 0
    public var matches = 0

    public init() {}

    /// Adds another tally's positions.
    public mutating func add(_ other: Agreement) {
        klSum += other.klSum
        positions += other.positions
        matches += other.matches
    }

    public var meanKL: Double { positions > 0 ? klSum / Double(positions) : .nan }
    public var top1: Double { positions > 0 ? Double(matches) / Double(positions) : .nan }

    /// Adds the positions of (·, vocab) logits rows, dense and sparse for the same inputs.
    mutating func add(dense: ScoredRows, sparse: ScoredRows) {
        precondition(dense.logits.count == sparse.logits.count && dense.vocab == sparse.vocab)
        let vocab = dense.vocab
        dense.logits.withUnsafeBufferPointer { d in
            sparse.logits.withUnsafeBufferPointer { s in
                for r in 0..<dense.rows {
                    let p = d.baseAddress! + r * vocab, q = s.baseAddress! + r * vocab
                    let lseP = dense.logNormalizers[r], lseQ = sparse.logNormalizers[r]
                    // KL(P‖Q) = Σ p·(log p − log q) = Σ p·(d − s) − lse d + lse s, as Σ p = 1.
                    let kl = Self.expectedDifference(p, q, vocab) - lseP + lseQ
                    // Float rounding can leave a tiny negative sum for equal distributions.
                    klSum += Self.onKLGrid(max(0, kl))
                    positions += 1
                    if dense.topTokens[r] == sparse.topTokens[r] { matches += 1 }
                }
            }
        }
    }

    /// `kl` on `OrderFreeSum`'s grid: a sweep resumed or extended in other chunks reports the
    /// same mean KL as one run.
    static func onKLGrid(_ kl: Double) -> Double { OrderFreeSum.onGrid(kl) }

    /// E_p[d − s] = Σ_v p_v·(d_v − s_v) with p = softmax(d). The weights are normalised by
    /// their own sum rather than by a separately rounded log-normaliser, so they sum to 1 to
    /// rounding. Lanes sum in fp32 over blocks of 128 values, the blocks in fp64.
    static func expectedDifference(_ d: UnsafePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int) -> Double {
        typealias V = VectorExp.V
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        let shift = VectorExp.maximum(d, n), shiftV = V(repeating: shift)
        var weighted = 0.0, total = 0.0
        var i = 0
        while i + 8 <= n {
            var weightedLanes = V(), totalLanes = V()
            let blockEnd = min(n & ~7, i + 128)
            while i < blockEnd {
                let dv = load(d + i)
                let e = VectorExp.exp(dv - shiftV)
                weightedLanes += e * (dv - load(s + i))
                totalLanes += e
                i += 8
            }
            weighted += Double(weightedLanes.sum())
            total += Double(totalLanes.sum())
        }
        while i < n {
            let e = expf(d[i] - shift)
            weighted += Double(e * (d[i] - s[i]))
            total += Double(e)
            i += 1
        }
        return weighted / total
    }

    /// The first index of the largest value (numpy's tie rule).
    static func argmax(_ row: UnsafePointer<Float>, _ count: Int) -> Int {
        var best = 0
        for i in 1..<count where row[i] > row[best] { best = i }
        return best
    }
}

/// Logits rows (rows, vocab) with what scoring and the agreement tally need of each row, computed
/// once: the log-softmax normaliser and the most likely token.
struct ScoredRows {
    let logits: [Float]
    let vocab: Int
    let logNormalizers: [Double]
    let topTokens: [Int]

    init(_ logits: [Float], vocab: Int) {
        self.logits = logits
        self.vocab = vocab
        let rows = logits.count / vocab
        var normalizers = [Double](repeating: 0, count: rows)
        var top = [Int](repeating: 0, count: rows)
        logits.withUnsafeBufferPointer { all in
            for r in 0..<rows {
                let row = all.baseAddress! + r * vocab
                normalizers[r] = Ops.logSumExp(row, vocab)
                top[r] = Agreement.argmax(row, vocab)
            }
        }
        logNormalizers = normalizers
        topTokens = top
    }

    var rows: Int { logNormalizers.count }
}

/// Scores the requests of one question with the dense model and, when given controllers, with
/// each sparse model on the same inputs (the dense rows are computed once and shared, which is
/// what lets `sweep` compare many mask sources for the price of one dense pass). Requests sharing
/// their context tokens run as one forward: the context once, then the choices after it
/// together, as its branches (`Branches`).
public final class LoglikelihoodScorer {
    public let model: any CausalLanguageModel
    public let controllers: [any SparsityController]
    public let maskMode: MaskMode
    /// Per controller, how far its distributions strayed from the dense model's.
    public private(set) var agreements: [Agreement]
    /// Seconds spent on the dense passes and, per controller, on its own passes and scoring
    /// (what `sweep` reports per row; the work both share, building the requests, is not here).
    public private(set) var denseSeconds = 0.0
    public private(set) var controllerSeconds: [Double]
    // Sized by the longest request seen so far, not the model's context: a checkpoint that
    // claims a huge context must not make every evaluation allocate for it.
    private var denseCache: KVCache
    private var sparseCache: KVCache
    private var vocab: Int { model.shape.vocabularySize }

    public init(model: any CausalLanguageModel, controllers: [any SparsityController], maskMode: MaskMode = .causal) {
        self.model = model
        self.controllers = controllers
        self.maskMode = maskMode
        agreements = controllers.map { _ in Agreement() }
        controllerSeconds = controllers.map { _ in 0 }
        let capacity = min(model.shape.maxContext, 64)
        denseCache = model.makeCache(capacity: capacity)
        sparseCache = model.makeCache(capacity: capacity)
    }

    /// Grows both caches (to the next power of two, at most the model's context) to hold `tokens`.
    private func reserve(_ tokens: Int) {
        guard tokens > denseCache.capacity else { return }
        var capacity = denseCache.capacity
        while capacity < tokens { capacity *= 2 }
        capacity = min(capacity, model.shape.maxContext)
        denseCache = model.makeCache(capacity: capacity)
        sparseCache = model.makeCache(capacity: capacity)
    }

    public convenience init(model: any CausalLanguageModel, sparsity: (any SparsityController)? = nil, maskMode: MaskMode = .causal) {
        self.init(model: model, controllers: sparsity.map { [$0] } ?? [], maskMode: maskMode)
    }

    /// The single controller of a one-controller scorer.
    public var sparsity: (any SparsityController)? { controllers.first }
    public var agreement: Agreement { agreements.first ?? Agreement() }

    /// Starts every controller's agreement, and every time, from zero.
    public func resetTallies() {
        agreements = controllers.map { _ in Agreement() }
        denseSeconds = 0
        controllerSeconds = controllers.map { _ in 0 }
    }

    /// Longest request scored. lm-eval keeps max_length + 1 tokens and feeds all but the last
    /// (only a target), so the model reads at most its context, whatever the mask mode: the dense
    /// scores do not depend on it.
    public var maxTokens: Int { model.shape.maxContext + 1 }

    /// Throws unless `request` can be scored by this model: at most `maxTokens` tokens, each in
    /// the vocabulary, with context (predictFrom ≥ 1) and a continuation of at least one token
    /// (lm-eval asserts both), `characters` ≥ 0. A request built by
    /// `ScoringRequest(context:continuation:tokenizer:maxTokens:)` with the scorer's `maxTokens`
    /// passes unless its continuation gives no tokens (every task's starts with a space or a
    /// word); hand-made ones are checked here.
    public func check(_ request: ScoringRequest, index: Int) throws {
        let count = request.tokens.count
        let problem: String?
        if count > maxTokens {
            problem = "\(count) tokens, more than the model's context and one target (\(maxTokens))"
        } else if request.predictFrom < 1 {
            problem = "predictFrom \(request.predictFrom): the continuation needs at least one token of context before it"
        } else if request.predictFrom > count {
            problem = "predictFrom \(request.predictFrom) is past the request's \(count) tokens"
        } else if request.predictFrom == count {
            problem = "the continuation has no tokens (predictFrom \(request.predictFrom) of \(count) tokens)"
        } else if request.characters < 0 {
            problem = "characters \(request.characters): acc_norm divides by the choice's length, which is at least 0"
        } else {
            problem = nil
        }
        if let problem { throw ShadowError.invalidArgument(name: "request \(index)", reason: problem) }
        try model.shape.checkTokens(request.tokens, option: "request \(index)")
    }

    /// Per request, the dense score and (with a controller) the sparse one. Throws, before any
    /// pass, for a request `check(_:index:)` refuses or a controller made for another model.
    public func score(_ requests: [ScoringRequest]) throws -> (dense: [ChoiceScore], sparse: [ChoiceScore]?) {
        let all = try scoreAll(requests, only: nil)
        return (all.dense, all.sparse.first)
    }

    /// Per request, the dense score and one score per controller (those of `only`, when given;
    /// the others are left empty).
    public func scoreAll(_ requests: [ScoringRequest], only: Set<Int>? = nil) throws -> (dense: [ChoiceScore], sparse: [[ChoiceScore]]) {
        for controller in controllers { try model.shape.checkController(controller) }
        for (index, request) in requests.enumerated() { try check(request, index: index) }
        let empty = ChoiceScore(logLikelihood: 0, tokens: 0, isGreedy: true)
        var dense = [ChoiceScore](repeating: empty, count: requests.count)
        var sparse = controllers.indices.map { only == nil || only!.contains($0) ? dense : [] }
        let active = controllers.indices.filter { only == nil || only!.contains($0) }
        for question in Self.groupsByContext(requests) {
            // A request equal to an earlier one (HellaSwag has items with an ending twice) is
            // scored once and copied, so the two tie exactly, as lm-eval's argmax expects, and
            // not by rounding in different rows of one batched pass.
            var group: [Int] = [], copies: [Int: [Int]] = [:]
            for index in question {
                if let original = group.first(where: { requests[$0].tokens == requests[index].tokens }) {
                    copies[original, default: []].append(index)
                } else {
                    group.append(index)
                }
            }
            let context = Array(requests[group[0]].context)
            let members = group.map { requests[$0] }
            // The context and the group's answers run as one forward, the answers as branches,
            // when the cache can hold them all; else the context once and each answer after it.
            let branchedLength = Self.branchedLength(members)
            let batched = branchedLength <= model.shape.maxContext
            reserve(max(members.map(\.tokens.count).max() ?? 0, batched ? branchedLength : 0))
            var denseRows: [ScoredRows] = []
            var started = DispatchTime.now().uptimeNanoseconds
            let denseLogits: [[Float]]
            if batched {
                denseLogits = questionRows(members, cache: denseCache, sparsity: nil)
            } else {
                let last = prefill(context, cache: denseCache, sparsity: nil)
                denseLogits = members.map { continuationRows($0, cache: denseCache, last: last, sparsity: nil) }
            }
            for (g, index) in group.enumerated() {
                let rows = ScoredRows(denseLogits[g], vocab: vocab)
                dense[index] = try score(rows: rows, request: requests[index], index: index, sparse: false)
                for copy in copies[index] ?? [] { dense[copy] = dense[index] }
                denseRows.append(rows)
            }
            denseSeconds += Self.seconds(since: &started)
            for c in active {
                let controller = controllers[c]
                let scoped = controller as? RequestScopedMasks
                // Also when a score throws: a scorer (and its controller) may be used again.
                defer { scoped?.frozen = false }
                var causalLogits: [[Float]] = []
                if maskMode == .causal {
                    // A new question: predict from its last context token, then keep that mask
                    // for the answers (within the one pass, the controller reads the context's rows).
                    (controller as? PromptAwareController)?.prepare(prompt: context)
                    scoped?.reset()
                    if batched {
                        causalLogits = questionRows(members, cache: sparseCache, sparsity: controller)
                    } else {
                        let last = prefill(context, cache: sparseCache, sparsity: controller)
                        scoped?.frozen = true
                        causalLogits = members.map { continuationRows($0, cache: sparseCache, last: last, sparsity: controller) }
                    }
                }
                for (g, index) in group.enumerated() {
                    let request = requests[index]
                    let logits: [Float]
                    if maskMode == .causal {
                        logits = causalLogits[g]
                    } else {
                        logits = perChoiceRows(request, controller: controller)
                    }
                    let sparseRows = ScoredRows(logits, vocab: vocab)
                    sparse[c][index] = try score(rows: sparseRows, request: request, index: index, sparse: true)
                    agreements[c].add(dense: denseRows[g], sparse: sparseRows)
                    for copy in copies[index] ?? [] {
                        sparse[c][copy] = sparse[c][index]
                        agreements[c].add(dense: denseRows[g], sparse: sparseRows)
                    }
                }
                controllerSeconds[c] += Self.seconds(since: &started)
            }
        }
        return (dense, sparse)
    }

    /// Seconds from `start` (uptime nanoseconds) to now, and now becomes the next start.
    private static func seconds(since start: inout UInt64) -> Double {
        let now = DispatchTime.now().uptimeNanoseconds
        defer { start = now }
        return Double(now - start) / 1e9
    }

    /// Indices of requests with equal context tokens, in order of first appearance. Equal
    /// context strings usually give one group; Winogrande's per-option contexts give one each.
    static func groupsByContext(_ requests: [ScoringRequest]) -> [[Int]] {
        var groups: [[Int]] = []
        for index in requests.indices {
            if let g = groups.firstIndex(where: { requests[$0[0]].context == requests[index].context }) {
                groups[g].append(index)
            } else {
                groups.append([index])
            }
        }
        return groups
    }

    /// Runs `context` from an empty cache; returns its last logits row (it predicts the first
    /// continuation token of every request in the group).
    private func prefill(_ context: [Int], cache: KVCache, sparsity: (any SparsityController)?) -> [Float] {
        cache.reset()
        return model.forward(context, cache: cache, logits: .last, sparsity: sparsity)
    }

    /// Logits rows (n, vocab) predicting the n continuation tokens, continuing from the cached
    /// context. The last continuation token predicts nothing we score, so it is never run.
    private func continuationRows(_ request: ScoringRequest, cache: KVCache, last: [Float],
                                  sparsity: (any SparsityController)?) -> [Float] {
        let n = request.continuationCount
        guard n > 0 else { return [] }
        cache.truncate(to: request.predictFrom)
        guard n > 1 else { return last }
        let inner = Array(request.tokens[request.predictFrom ..< request.tokens.count - 1])
        return last + model.forward(inner, cache: cache, logits: .all, sparsity: sparsity)
    }

    /// Tokens the cache holds when a group runs as one forward: the shared context and every
    /// answer's tokens but its last (which predicts nothing scored).
    static func branchedLength(_ members: [ScoringRequest]) -> Int {
        (members.first?.predictFrom ?? 0) + members.reduce(0) { $0 + max(0, $1.continuationCount - 1) }
    }

    /// Every request of a group from an empty cache in one forward: the shared context, then
    /// the answers as branches after it (`Branches`), which reads the weights once for the
    /// whole question. Per request, the (n, vocab) rows predicting its n continuation tokens;
    /// the context's last row predicts every answer's first token.
    private func questionRows(_ members: [ScoringRequest], cache: KVCache,
                              sparsity: (any SparsityController)?) -> [[Float]] {
        let contextLength = members[0].predictFrom
        var tokens = Array(members[0].tokens[..<contextLength])
        var lengths: [Int] = []
        for request in members where request.continuationCount > 1 {
            tokens += request.tokens[request.predictFrom ..< request.tokens.count - 1]
            lengths.append(request.continuationCount - 1)
        }
        cache.reset()
        let rows = model.forward(tokens, cache: cache, logits: .from(contextLength - 1), sparsity: sparsity,
                                 branches: Branches(prefix: contextLength, lengths: lengths))
        let last = Array(rows[..<vocab])
        var offset = 1
        return members.map { request in
            let n = request.continuationCount
            guard n > 0 else { return [] }
            defer { offset += n - 1 }
            return last + rows[offset * vocab ..< (offset + n - 1) * vocab]
        }
    }

    /// Per-choice masks: the whole request is one prefill (its last token included, so the mask
    /// sees the full answer), and the rows come from that single pass. A request of lm-eval's
    /// longest window (the model's context + 1 tokens, the last only a target) does not fit one
    /// pass: its mask is chosen from its last `context` tokens, then kept for a pass over all its
    /// tokens but the last, so it is scored on the same inputs as the dense model.
    private func perChoiceRows(_ request: ScoringRequest, controller: any SparsityController) -> [Float] {
        let scoped = controller as? RequestScopedMasks
        let fits = request.tokens.count <= model.shape.maxContext
        let maskInput = fits ? request.tokens : Array(request.tokens.dropFirst())
        (controller as? PromptAwareController)?.prepare(prompt: maskInput)
        scoped?.reset()
        sparseCache.reset()
        let n = request.continuationCount
        guard !fits else {
            let all = model.forward(request.tokens, cache: sparseCache, logits: .all, sparsity: controller)
            return n > 0 ? Array(all[(request.predictFrom - 1) * vocab ..< (request.tokens.count - 1) * vocab]) : []
        }
        if let scoped {
            _ = model.forward(maskInput, cache: sparseCache, logits: .none, sparsity: controller)
            scoped.frozen = true
            sparseCache.reset()
        }
        defer { scoped?.frozen = false }
        let rows = model.forward(Array(request.tokens.dropLast()), cache: sparseCache,
                                 logits: .from(request.predictFrom - 1), sparsity: controller)
        return n > 0 ? rows : []
    }

    /// Throws when the log-likelihood is NaN or infinite: an accuracy over such scores means nothing.
    private func score(rows: ScoredRows, request: ScoringRequest, index: Int, sparse: Bool) throws -> ChoiceScore {
        let targets = request.continuation
        var total = 0.0
        var greedy = true
        for (r, target) in targets.enumerated() {
            total += Double(rows.logits[r * vocab + target]) - rows.logNormalizers[r]
            if rows.topTokens[r] != target { greedy = false }
        }
        guard total.isFinite else {
            throw ShadowError.notFinite("request \(index)'s log-likelihood\(sparse ? " under sparse masks" : "") is")
        }
        return ChoiceScore(logLikelihood: total, tokens: targets.count, isGreedy: greedy)
    }
}
