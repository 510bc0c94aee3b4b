import Foundation
import ShadowFormats
import ShadowModels
import ShadowSparsity
import ShadowTasks
import ShadowTokenizers

/// One configuration of a sweep: a mask source, the criterion its scores come from and the
/// sparsity of heads and of neurons. The dense model is the cell with method "dense".
public struct SweepCell: Codable, Hashable, Sendable, Comparable {
    public var method: String
    /// The criterion of the static scores or of the predictor's targets; nil for dense and random.
    public var criterion: String?
    public var sparsity: Double

    public init(method: String, criterion: String? = nil, sparsity: Double = 0) {
        self.method = method
        self.criterion = criterion
        self.sparsity = sparsity
    }

    public static let dense = SweepCell(method: "dense")

    /// The cell a `key` names (nil if it names none).
    public init?(key: String) {
        if key == "dense" { self = .dense; return }
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, let sparsity = Double(parts[2]) else { return nil }
        self.init(method: String(parts[0]), criterion: parts[1] == "-" ? nil : String(parts[1]), sparsity: sparsity)
    }

    /// A stable name, used as the key of the resumable state and of `results.json`.
    public var key: String {
        method == "dense" ? "dense" : "\(method)/\(criterion ?? "-")/\(String(format: "%.2f", sparsity))"
    }

    /// The series a plot draws this cell in: one line per method and criterion.
    public var series: String { method == "dense" ? "dense" : criterion.map { "\(method) (\($0))" } ?? method }

    public static func < (a: SweepCell, b: SweepCell) -> Bool {
        (a.method == "dense" ? 0 : 1, a.method, a.criterion ?? "", a.sparsity)
            < (b.method == "dense" ? 0 : 1, b.method, b.criterion ?? "", b.sparsity)
    }
}

/// Which units a sweep's sparsities prune. Heads-only sweeps are how the heads-only criteria
/// (jacov, epenas) are compared with the others.
public enum SweepUnits: String, Codable, Sendable, CaseIterable {
    case both, heads, neurons

    /// The targets of one sparsity: the unit types left out stay dense.
    public func settings(sparsity p: Double, policy: MaskPolicy, hybridFloor: Double) -> SparsitySettings {
        SparsitySettings(headSparsity: self == .neurons ? 0 : p, neuronSparsity: self == .heads ? 0 : p,
                         policy: policy, hybridFloor: hybridFloor)
    }

    /// What the sparsity axis counts, for reports and plots.
    public var description: String {
        switch self {
        case .both: "heads and neurons"
        case .heads: "heads; neurons dense"
        case .neurons: "neurons; heads dense"
        }
    }
}

/// What a sweep has accumulated for one cell on one task. Counts and sums only, so a chunk's
/// worth can be saved and a resumed run adds to it exactly.
public struct SweepTally: Codable, Equatable, Sendable {
    /// Items scored (multiple choice, LAMBADA) or 1 once a perplexity task is done.
    public var items = 0
    public var accCorrect = 0
    public var accNormCorrect = 0
    /// LAMBADA: summed log-likelihood of the targets and their tokens.
    public var logLikelihoodSum = 0.0
    public var targetTokens = 0
    /// Perplexity tasks.
    public var nllSum = 0.0
    public var predictedTokens = 0
    public var agreement = Agreement()
    /// Realised whole-model sparsity summed over masks (mean = sum / masks).
    public var headSparsitySum = 0.0
    public var neuronSparsitySum = 0.0
    public var masks = 0
    public var seconds = 0.0
    /// Items whose requests lost tokens from their start to fit the model's context (as `eval`'s
    /// truncated_items); nil in a state saved before they were counted, whose earlier items are
    /// unknown, so a resumed run leaves it nil rather than report a part as the whole.
    public var truncatedItems: Int? = 0
    /// Of `masks`, those the oracle left dense (a prompt of one token gives no loss to score);
    /// nil in a state saved before they were counted.
    public var denseMasks: Int? = 0

    public init() {}
}

/// A sweep's resumable state: per task, per cell key, what has been accumulated so far.
public struct SweepState: Codable, Equatable, Sendable {
    public var version = Self.currentVersion
    /// A description of the settings that must match for the state to be reused.
    public var settings: String
    public var tallies: [String: [String: SweepTally]] = [:]
    /// Per cell key, where its masks come from (a predictor file, a trace directory): a resumed
    /// sweep whose cell would read another source must not mix the two.
    public var sources: [String: String] = [:]
    /// The commands that filled this state, oldest first (absent in states written before it was kept).
    public var commands: [String]?
    /// Per cell key, the cell as it was run: its key rounds the sparsity to two decimals, so a
    /// 1/3 stored by an earlier command is reported as 1/3 (absent in older states: keys are read).
    public var cells: [String: SweepCell]?
    /// Per criterion, the mean head importance per layer of the traces an earlier command read,
    /// so the heat map stays when a later command adds cells without --traces (absent in older
    /// states). Rows of equal length, finite.
    public var headImportance: [String: [[Float]]]?
    /// The cells earlier commands asked for and could not run, with why ("static (fisher): …").
    public var skipped: [String]?

    public init(settings: String) { self.settings = settings }

    /// The version this build writes and reads.
    public static let currentVersion = 1

    /// Throws unless the state read from `path` is one this build wrote: a resumed sweep starts
    /// each cell at its item count, so a negative or impossible count would index outside the
    /// task's items. The error names the key. `shape` is the model's: the heat map has a row per
    /// layer and a column per head.
    public func validate(path: String, shape: TransformerShape) throws {
        guard version == Self.currentVersion else {
            throw ShadowError.badJSON(path: path, key: "version", reason: "is \(version); this build reads version \(Self.currentVersion)")
        }
        for (criterion, rows) in (headImportance ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard rows.count == shape.layers, rows.allSatisfy({ $0.count == shape.heads && $0.allSatisfy(\.isFinite) }) else {
                throw ShadowError.badJSON(path: path, key: "headImportance.\(criterion)",
                                          reason: "is not a table of finite scores with a row per layer and a column per head (\(shape.layers) × \(shape.heads))")
            }
        }
        // A cell key the sweep could have written: a method, a criterion or "-", a sparsity.
        // (0.995 and above are kept under …/1.00, and states before 2026-12-05 may hold …/0.00.)
        func isCell(_ cell: SweepCell?, keyedAs key: String) -> Bool {
            guard let cell else { return false }
            return cell.key == key && (cell.method == "dense" || (0...1).contains(cell.sparsity))
        }
        for (key, cell) in (cells ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard isCell(cell, keyedAs: key) else {
                throw ShadowError.badJSON(path: path, key: "cells.\(key)", reason: "is not the cell its key names")
            }
        }
        for (task, cells) in tallies.sorted(by: { $0.key < $1.key }) {
            for (key, tally) in cells.sorted(by: { $0.key < $1.key }) {
                let counts = [("items", tally.items), ("accCorrect", tally.accCorrect), ("accNormCorrect", tally.accNormCorrect),
                              ("targetTokens", tally.targetTokens), ("predictedTokens", tally.predictedTokens), ("masks", tally.masks),
                              ("agreement.positions", tally.agreement.positions), ("agreement.matches", tally.agreement.matches)]
                for (name, value) in counts where value < 0 {
                    throw ShadowError.badJSON(path: path, key: "tallies.\(task).\(key).\(name)", reason: "is \(value); counts cannot be negative")
                }
                for (name, value) in [("accCorrect", tally.accCorrect), ("accNormCorrect", tally.accNormCorrect)] where value > tally.items {
                    throw ShadowError.badJSON(path: path, key: "tallies.\(task).\(key).\(name)",
                                              reason: "is \(value), more than the \(tally.items) items scored")
                }
                if let dense = tally.denseMasks, !(0...tally.masks).contains(dense) {
                    throw ShadowError.badJSON(path: path, key: "tallies.\(task).\(key).denseMasks",
                                              reason: "is \(dense), outside the \(tally.masks) masks built")
                }
                if let truncated = tally.truncatedItems, !(0...tally.items).contains(truncated) {
                    throw ShadowError.badJSON(path: path, key: "tallies.\(task).\(key).truncatedItems",
                                              reason: "is \(truncated), outside the \(tally.items) items scored")
                }
                guard tally.agreement.matches <= tally.agreement.positions else {
                    throw ShadowError.badJSON(path: path, key: "tallies.\(task).\(key).agreement.matches",
                                              reason: "is \(tally.agreement.matches), more than the \(tally.agreement.positions) positions")
                }
                guard isCell(SweepCell(key: key), keyedAs: key) else {
                    throw ShadowError.badJSON(path: path, key: "tallies.\(task).\(key)", reason: "is not a cell of a sweep (METHOD/CRITERION/SPARSITY or dense)")
                }
                // Sums with the sign their terms have: log-likelihoods ≤ 0, NLL, KL (up to rounding), sparsities and times ≥ 0.
                let sums: [(String, Double, ClosedRange<Double>)] = [
                    ("logLikelihoodSum", tally.logLikelihoodSum, -Double.greatestFiniteMagnitude...0),
                    ("nllSum", tally.nllSum, 0...Double.greatestFiniteMagnitude),
                    ("agreement.klSum", tally.agreement.klSum, -1e-6 * Double(max(tally.agreement.positions, 1))...Double.greatestFiniteMagnitude),
                    ("headSparsitySum", tally.headSparsitySum, 0...Double(tally.masks)),
                    ("neuronSparsitySum", tally.neuronSparsitySum, 0...Double(tally.masks)),
                    ("seconds", tally.seconds, 0...Double.greatestFiniteMagnitude),
                ]
                for (name, value, range) in sums where !range.contains(value) {
                    throw ShadowError.badJSON(path: path, key: "tallies.\(task).\(key).\(name)", reason: "is \(value); no sweep sums to that")
                }
            }
        }
    }

    /// Records `command` as the latest to add to this state.
    public mutating func record(command: String) {
        if commands?.last != command { commands = (commands ?? []) + [command] }
    }

    /// The cells to report for `task`: every cell of `requested` that holds items, and every
    /// cell of earlier commands that covers as many items as the dense model (so cells added by
    /// later commands complete one table, and a cell left behind by a larger --limit is not
    /// shown beside the others).
    public func reportedCells(task: String, requested: [SweepCell]) -> [SweepCell] {
        // Matched by key, so a requested cell is never listed twice.
        let requestedKeys = Set(requested.map(\.key)), denseItems = tally(task: task, cell: .dense).items
        let earlier = (tallies[task] ?? [:]).filter { !requestedKeys.contains($0.key) && $0.value.items > 0 && $0.value.items == denseItems }
        let earlierCells = earlier.keys.compactMap { cells?[$0] ?? SweepCell(key: $0) }
        return (requested.filter { tally(task: task, cell: $0).items > 0 } + earlierCells).sorted()
    }

    public func tally(task: String, cell: SweepCell) -> SweepTally {
        tallies[task]?[cell.key] ?? SweepTally()
    }

    /// Stores what `cell` has accumulated on `task`.
    public mutating func store(_ tally: SweepTally, task: String, cell: SweepCell) {
        tallies[task, default: [:]][cell.key] = tally
        cells = (cells ?? [:]).merging([cell.key: cell]) { _, new in new }
    }
}

/// A task as the sweep runs it: multiple-choice items, LAMBADA passages or a text to score.
public enum SweepTask: Sendable {
    case multipleChoice(name: String, items: [MultipleChoiceItem], range: Range<Int>)
    case lambada(items: [MultipleChoiceItem], range: Range<Int>)
    case perplexity(name: String, text: String, context: Int)

    public var name: String {
        switch self {
        case .multipleChoice(let name, _, _): return name
        case .lambada: return "lambada"
        case .perplexity(let name, _, _): return name
        }
    }
}

/// Runs every cell of a sweep on every task, dense once per item and shared by all the sparse
/// cells, saving the state after every chunk of items so a killed run loses at most one chunk.
public struct SweepRunner {
    public let model: any CausalLanguageModel
    public let tokenizer: any Tokenizer
    public let maskMode: MaskMode
    public let shots: Int
    public let seed: UInt64
    /// WikiText: the model reads lm-eval's detokenized text (words and bytes still counted as stored).
    public let detokenizeWikiText: Bool
    /// Items between two saves of the state.
    public var chunkSize = 5
    /// The last text split and tokenized, so `work` (sizing the progress bar) and `run` do it once
    /// (a class: both are non-mutating; a runner is used from one thread).
    private let lastText = TokenizedText()

    private final class TokenizedText {
        var text: String?
        var pages = WikiTextPages.empty
    }

    private func pages(of text: String) -> WikiTextPages {
        if lastText.text != text {
            lastText.pages = WikiTextPages(text: text, detokenize: detokenizeWikiText, tokenizer: tokenizer)
            lastText.text = text
        }
        return lastText.pages
    }

    public init(model: any CausalLanguageModel, tokenizer: any Tokenizer, maskMode: MaskMode, shots: Int, seed: UInt64,
                detokenizeWikiText: Bool = false) {
        self.model = model
        self.tokenizer = tokenizer
        self.maskMode = maskMode
        self.shots = shots
        self.seed = seed
        self.detokenizeWikiText = detokenizeWikiText
    }

    /// Units of work of a task for the progress bar (items or text windows, times cells).
    public func work(_ task: SweepTask, cells: Int) throws -> Int {
        switch task {
        case .multipleChoice(_, _, let range), .lambada(_, let range): return range.count * cells
        case .perplexity(_, let text, let context):
            return max(1, pages(of: text).windowCount(context: context, stride: nil)) * cells
        }
    }

    /// Evaluates `task` for the cells whose controllers `makeController` builds (nil for dense),
    /// continuing from `state`; `save` is called with the state after every chunk.
    public func run(_ task: SweepTask, cells: [SweepCell], state: inout SweepState,
                    makeController: (SweepCell) throws -> (any SparsityController)?,
                    save: (SweepState) throws -> Void, progress: (Int) -> Void) throws {
        let sparseCells = cells.filter { $0.method != "dense" }
        switch task {
        case .perplexity(let name, let text, let context):
            let pages = pages(of: text)
            let windows = max(1, pages.windowCount(context: context, stride: nil))
            for cell in cells {
                if state.tally(task: name, cell: cell).items > 0 { progress(windows); continue }
                try Interruption.check(Self.interruptedMessage)
                let controller = try makeController(cell)
                let start = Date()
                var reported = 0
                let scored = try pages.score(model: model, context: context, stride: nil, sparsity: controller) { done in
                    progress(done)
                    reported += done
                }
                var tally = SweepTally()
                tally.items = 1
                tally.nllSum = scored.total.nllSum
                tally.predictedTokens = scored.total.predictedTokens
                record(realisedSparsity: controller, into: &tally)
                tally.seconds = Date().timeIntervalSince(start)
                state.store(tally, task: name, cell: cell)
                try save(state)
                progress(windows - reported)
            }
        case .multipleChoice(_, let items, let range):
            try runItems(task: task.name, isLambada: false, items: items, range: range, cells: [SweepCell.dense] + sparseCells,
                         state: &state, makeController: makeController, save: save, progress: progress)
        case .lambada(let items, let range):
            try runItems(task: task.name, isLambada: true, items: items, range: range, cells: [SweepCell.dense] + sparseCells,
                         state: &state, makeController: makeController, save: save, progress: progress)
        }
    }

    private func runItems(task: String, isLambada: Bool, items: [MultipleChoiceItem], range: Range<Int>, cells: [SweepCell],
                          state: inout SweepState, makeController: (SweepCell) throws -> (any SparsityController)?,
                          save: (SweepState) throws -> Void, progress: (Int) -> Void) throws {
        let sparse = Array(cells.dropFirst())
        let controllers = try sparse.map { cell -> any SparsityController in
            guard let controller = try makeController(cell) else {
                throw ShadowError.failed("sweep: \(cell.key) has no mask source")
            }
            return controller
        }
        let scorer = LoglikelihoodScorer(model: model, controllers: controllers, maskMode: maskMode)
        let plainPool = try Evaluation.fewShotPool(items: items, range: range, shots: shots)
        let pool = isLambada ? Evaluation.lambadaShots(plainPool) : plainPool
        // Each cell continues where it stopped; a cell added to an earlier sweep starts at 0.
        var done = cells.map { min(state.tally(task: task, cell: $0).items, range.count) }
        progress(done.reduce(0, +))
        var position = done.min() ?? range.count
        while position < range.count {
            let end = min(range.count, position + chunkSize)
            // Fresh sums per chunk, added to the saved ones: a resumed run adds in the same order.
            scorer.resetTallies()
            var worked = Set<Int>()
            var tallies = cells.map { state.tally(task: task, cell: $0) }
            let start = DispatchTime.now().uptimeNanoseconds   // the scorer's clock
            var interrupted = false
            for index in position..<end {
                // Ctrl-C: save the items finished so far (below), then stop.
                if Interruption.requested { interrupted = true; break }
                let needed = Set(sparse.indices.filter { done[$0 + 1] <= index })
                guard done[0] <= index || !needed.isEmpty else { continue }
                let item = items[range.lowerBound + index]
                let requests = Evaluation.requests(for: item, pool: pool, shots: shots, seed: seed, tokenizer: tokenizer,
                                                   maxTokens: scorer.maxTokens)
                let scores = try Evaluation.scoring(item: item.id) { try scorer.scoreAll(requests, only: needed) }
                if done[0] <= index { add(scores.dense, item: item, requests: requests, isLambada: isLambada, to: &tallies[0]) }
                for c in needed {
                    add(scores.sparse[c], item: item, requests: requests, isLambada: isLambada, to: &tallies[c + 1])
                    record(realisedSparsity: controllers[c], into: &tallies[c + 1])
                }
                progress((done[0] <= index ? 1 : 0) + needed.count)
                for c in cells.indices where c == 0 ? done[0] <= index : needed.contains(c - 1) {
                    done[c] = index + 1
                    worked.insert(c)
                }
            }
            // Each cell's own passes, and an equal share of what they shared: building the
            // requests, and the dense reference pass when the dense row itself was done before.
            let own = [scorer.denseSeconds] + scorer.controllerSeconds
            let shared = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 - worked.reduce(0) { $0 + own[$1] }
            for c in worked.sorted() {
                tallies[c].seconds += own[c] + max(0, shared) / Double(worked.count)
                if c > 0 {
                    let k = c - 1
                    tallies[c].agreement.add(scorer.agreements[k])
                }
                state.store(tallies[c], task: task, cell: cells[c])
            }
            try save(state)
            if interrupted { throw ShadowError.interrupted(Self.interruptedMessage) }
            position = end
        }
    }

    static let interruptedMessage = "sweep stopped; its state is saved: run the same command again to continue"

    private func add(_ scores: [ChoiceScore], item: MultipleChoiceItem, requests: [ScoringRequest], isLambada: Bool,
                     to tally: inout SweepTally) {
        tally.items += 1
        if requests.contains(where: { $0.droppedTokens > 0 }) { tally.truncatedItems? += 1 }
        if isLambada {
            if scores[0].isGreedy { tally.accCorrect += 1 }
            tally.logLikelihoodSum += scores[0].logLikelihood
            tally.targetTokens += scores[0].tokens
            return
        }
        let sums = scores.map(\.logLikelihood)
        if ChoiceDecision.acc(sums) == item.gold { tally.accCorrect += 1 }
        if ChoiceDecision.accNorm(sums, characters: requests.map(\.characters)) == item.gold { tally.accNormCorrect += 1 }
    }

    /// Adds the masks a predicting controller built for one item (or one text) and resets its
    /// statistics, or takes the fixed mask's sparsity. Each item's sums go on `OrderFreeSum`'s
    /// grid, so a sweep saved in other chunks (resumed, extended) reports the same bits.
    private func record(realisedSparsity controller: (any SparsityController)?, into tally: inout SweepTally) {
        if let predicting = controller as? PredictingController {
            let built = predicting.statistics
            predicting.resetStatistics()
            tally.headSparsitySum += OrderFreeSum.onGrid(built.headSparsitySum)
            tally.neuronSparsitySum += OrderFreeSum.onGrid(built.neuronSparsitySum)
            tally.masks += built.masks
            tally.denseMasks? += built.denseMasks
        } else if let realised = Evaluation.realisedSparsity(controller, shape: model.shape), tally.masks == 0 {
            tally.headSparsitySum = realised.heads
            tally.neuronSparsitySum = realised.neurons
            tally.masks = 1
        }
    }
}

/// The metrics of one cell on one task, as `results.json` holds them.
public struct SweepRow: Codable, Equatable, Sendable {
    public var task: String
    public var method: String
    public var criterion: String?
    public var sparsity: Double
    public var n: Int
    /// acc, acc_stderr, acc_norm, acc_norm_stderr (multiple choice); acc, acc_stderr, perplexity
    /// (per passage, lm-eval's), token_perplexity (per target token) (LAMBADA, as `eval`);
    /// word_perplexity, byte_perplexity, bits_per_byte, token_perplexity (text).
    public var metrics: [String: Double]
    public var klDivergence: Double?
    public var top1Agreement: Double?
    public var realisedHeadSparsity: Double?
    public var realisedNeuronSparsity: Double?
    /// Items cut to the model's context (question tasks and LAMBADA; nil for text, or when an
    /// older state did not count them).
    public var truncatedItems: Int?
    /// Oracle cells: masks left dense because their prompt was one token (nil for other methods,
    /// or when an older state did not count them).
    public var denseMasks: Int?
    public var seconds: Double

    enum CodingKeys: String, CodingKey {
        case task, method, criterion, sparsity, n, metrics, seconds
        case truncatedItems = "truncated_items", denseMasks = "dense_masks"
        case klDivergence = "kl_divergence", top1Agreement = "top1_agreement"
        case realisedHeadSparsity = "realised_head_sparsity", realisedNeuronSparsity = "realised_neuron_sparsity"
    }

    public var cell: SweepCell { SweepCell(method: method, criterion: criterion, sparsity: sparsity) }

    /// The metric a task is compared on: acc_norm for HellaSwag (as the paper), word perplexity
    /// for text, acc otherwise.
    public static func headlineMetric(task: String) -> String {
        switch task {
        case "hellaswag": return "acc_norm"
        case "wikitext": return "word_perplexity"
        default: return "acc"
        }
    }

    public init(task: SweepTask, cell: SweepCell, tally: SweepTally) {
        self.task = task.name
        method = cell.method
        criterion = cell.criterion
        sparsity = cell.sparsity
        n = tally.items
        seconds = tally.seconds
        metrics = [:]
        if case .perplexity = task {} else { truncatedItems = tally.truncatedItems }
        if cell.method == "oracle" { denseMasks = tally.denseMasks }
        switch task {
        case .perplexity(_, let text, _):
            let perplexity = TextPerplexity(nllSum: tally.nllSum, predictedTokens: tally.predictedTokens, text: text)
            metrics = ["word_perplexity": perplexity.wordPerplexity, "byte_perplexity": perplexity.bytePerplexity,
                       "bits_per_byte": perplexity.bitsPerByte, "token_perplexity": perplexity.tokenPerplexity]
        case .lambada:
            let p = Double(tally.accCorrect) / Double(max(tally.items, 1))
            metrics = ["acc": p, "acc_stderr": Proportion.stderr(p: p, n: tally.items),
                       "perplexity": exp(-tally.logLikelihoodSum / Double(max(tally.items, 1))),
                       "token_perplexity": exp(-tally.logLikelihoodSum / Double(max(tally.targetTokens, 1)))]
        case .multipleChoice:
            let acc = Double(tally.accCorrect) / Double(max(tally.items, 1))
            let accNorm = Double(tally.accNormCorrect) / Double(max(tally.items, 1))
            metrics = ["acc": acc, "acc_stderr": Proportion.stderr(p: acc, n: tally.items),
                       "acc_norm": accNorm, "acc_norm_stderr": Proportion.stderr(p: accNorm, n: tally.items)]
        }
        if cell.method == "dense" {
            // A dense run is its own reference; perplexity rows compare no next-token
            // distributions (null, as for their sparse rows and in `eval`).
            if case .perplexity = task {} else {
                klDivergence = 0
                top1Agreement = 1
            }
            realisedHeadSparsity = 0
            realisedNeuronSparsity = 0
        } else {
            if tally.agreement.positions > 0 {
                klDivergence = tally.agreement.meanKL
                top1Agreement = tally.agreement.top1
            }
            if tally.masks > 0 {
                realisedHeadSparsity = tally.headSparsitySum / Double(tally.masks)
                realisedNeuronSparsity = tally.neuronSparsitySum / Double(tally.masks)
            }
        }
    }
}
