import Foundation
import Testing
@testable import ShadowEval
import ShadowModels
import ShadowSparsity
import ShadowTasks

@Suite("Sweep runner")
struct SweepTests {
    struct Killed: Error {}

    let cells = [SweepCell.dense, SweepCell(method: "random", sparsity: 0.25), SweepCell(method: "random", sparsity: 0.5)]

    func controller(_ model: any CausalLanguageModel) -> (SweepCell) throws -> (any SparsityController)? {
        { cell in
            guard cell.method != "dense" else { return nil }
            let scores = Masks.randomScores(shape: model.shape, seed: 3)
            return FixedSparsity(layers: Masks.plans(headScores: scores.heads, neuronScores: scores.neurons,
                                                     settings: SparsitySettings(headSparsity: cell.sparsity, neuronSparsity: cell.sparsity),
                                                     shape: model.shape))
        }
    }

    func runner(_ loaded: LoadedModel) throws -> SweepRunner {
        var runner = SweepRunner(model: loaded.model, tokenizer: try loaded.requireTokenizer(), maskMode: .causal, shots: 0, seed: 1)
        runner.chunkSize = 1
        return runner
    }

    /// Seconds differ between runs; everything else must not.
    func withoutTimes(_ state: SweepState) -> SweepState {
        var copy = state
        for (task, cells) in copy.tallies {
            for key in cells.keys { copy.tallies[task]![key]!.seconds = 0 }
        }
        return copy
    }

    @Test("each cell's accuracy equals a separate evaluation with that controller")
    func matchesEvaluation() throws {
        let loaded = try fixture("tiny-llama")
        let task = SweepTask.multipleChoice(name: "piqa", items: questions, range: 0..<questions.count)
        var state = SweepState(settings: "test")
        let make = controller(loaded.model)
        try runner(loaded).run(task, cells: cells, state: &state, makeController: make, save: { _ in }, progress: { _ in })
        let tokenizer = try loaded.requireTokenizer()
        for cell in cells {
            let scorer = LoglikelihoodScorer(model: loaded.model, sparsity: try make(cell))
            let result = try Evaluation.multipleChoice(items: questions[...], pool: [], shots: 0, seed: 1, tokenizer: tokenizer, scorer: scorer)
            let row = SweepRow(task: task, cell: cell, tally: state.tally(task: "piqa", cell: cell))
            #expect(row.n == questions.count)
            #expect(row.metrics["acc"] == result.acc.value, "\(cell.key)")
            #expect(row.metrics["acc_norm"] == result.accNorm.value, "\(cell.key)")
            if cell.method != "dense" {
                #expect(abs(row.klDivergence! - scorer.agreement.meanKL) < 1e-9)
                #expect(row.top1Agreement == scorer.agreement.top1)
                #expect(row.realisedHeadSparsity! > 0)
            } else {
                #expect(row.klDivergence == 0 && row.top1Agreement == 1)
            }
        }
    }

    @Test("LAMBADA cells report accuracy, perplexity per passage and per target token, as eval does")
    func lambadaMatchesEvaluation() throws {
        let loaded = try fixture("tiny-llama")
        let items = Evaluation.lambadaItems([("the cat sat on the", " mat"), ("one two three", " four five"), ("a b", " c")])
        let task = SweepTask.lambada(items: items, range: 0..<items.count)
        var state = SweepState(settings: "test")
        let make = controller(loaded.model)
        try runner(loaded).run(task, cells: cells, state: &state, makeController: make, save: { _ in }, progress: { _ in })
        for cell in cells {
            let result = try Evaluation.lambada(items: items[...], pool: [], shots: 0, seed: 1, tokenizer: try loaded.requireTokenizer(),
                                            scorer: LoglikelihoodScorer(model: loaded.model, sparsity: try make(cell)))
            let row = SweepRow(task: task, cell: cell, tally: state.tally(task: "lambada", cell: cell))
            #expect(row.n == items.count && row.metrics["acc"] == result.sparse.acc.value, "\(cell.key)")
            for (key, value) in [("perplexity", result.sparse.perplexity), ("token_perplexity", result.sparse.tokenPerplexity)] {
                #expect(abs(row.metrics[key]! - value) < 1e-9 * value, "\(cell.key) \(key)")
            }
        }
    }

    @Test("every cell's seconds are its own and the rows add up to no more than the run's time")
    func cellTimes() throws {
        let loaded = try fixture("tiny-llama")
        let task = SweepTask.multipleChoice(name: "piqa", items: questions, range: 0..<questions.count)
        var state = SweepState(settings: "test")
        let start = Date()
        try runner(loaded).run(task, cells: cells, state: &state, makeController: controller(loaded.model), save: { _ in }, progress: { _ in })
        let wall = Date().timeIntervalSince(start)
        let seconds = cells.map { state.tally(task: "piqa", cell: $0).seconds }
        #expect(seconds.allSatisfy { $0 > 0 }, "\(seconds)")
        #expect(seconds.reduce(0, +) <= wall, "\(seconds) in \(wall) s")
    }

    @Test("a sweep stopped after any chunk and resumed ends in the same state as one run straight through")
    func resumes() throws {
        let loaded = try fixture("tiny-llama")
        let task = SweepTask.multipleChoice(name: "piqa", items: questions, range: 0..<questions.count)
        let make = controller(loaded.model)
        var straight = SweepState(settings: "test")
        try runner(loaded).run(task, cells: cells, state: &straight, makeController: make, save: { _ in }, progress: { _ in })
        for killAfter in 1..<questions.count {
            // Only what was saved survives the kill.
            var saved = SweepState(settings: "test")
            var saves = 0
            var working = SweepState(settings: "test")
            #expect(throws: Killed.self) {
                try runner(loaded).run(task, cells: cells, state: &working, makeController: make, save: { state in
                    saved = state
                    saves += 1
                    if saves == killAfter { throw Killed() }
                }, progress: { _ in })
            }
            var resumed = saved
            var units = 0
            try runner(loaded).run(task, cells: cells, state: &resumed, makeController: make, save: { _ in }, progress: { units += $0 })
            #expect(withoutTimes(resumed) == withoutTimes(straight), "killed after chunk \(killAfter)")
            #expect(units == questions.count * cells.count)
        }
    }

    @Test("cells whose masks differ per question report the same bits whatever the chunks a sweep was saved in (as a Ctrl-C between chunks leaves them)")
    func chunkingLeavesPredictedSparsityExact() throws {
        let loaded = try fixture("tiny-llama")
        let model = try #require(loaded.model as? any DifferentiableLanguageModel)
        // An empty context is one token (BOS): the oracle leaves its mask dense, so the realised
        // sparsities added differ from item to item.
        let items = questions + [try MultipleChoiceItem(id: 9, context: "", continuations: [" yes", " no"], gold: 0)]
        let task = SweepTask.multipleChoice(name: "piqa", items: items, range: 0..<items.count)
        let oracleCells = [SweepCell.dense, SweepCell(method: "oracle", criterion: "plainact", sparsity: 0.3),
                           SweepCell(method: "oracle", criterion: "plainact", sparsity: 0.6)]
        let make: (SweepCell) throws -> (any SparsityController)? = { cell in
            guard cell.method != "dense" else { return nil }
            return try OracleController(model: model, criterion: .plainact,
                                        settings: SparsitySettings(headSparsity: cell.sparsity, neuronSparsity: cell.sparsity))
        }
        let states = try [1, 2, 3, items.count].map { chunk -> SweepState in
            var runner = try runner(loaded)
            runner.chunkSize = chunk
            var state = SweepState(settings: "test")
            try runner.run(task, cells: oracleCells, state: &state, makeController: make, save: { _ in }, progress: { _ in })
            return withoutTimes(state)
        }
        // One mask per context: Winogrande's question has two.
        let tally = states[0].tally(task: "piqa", cell: oracleCells[1])
        #expect(tally.masks == items.count + 1 && tally.denseMasks == 1 && tally.headSparsitySum > 0, "\(tally)")
        for state in states.dropFirst() { #expect(state == states[0]) }
    }

    @Test("a cell added to a finished sweep runs alone and the others keep their numbers")
    func addedCell() throws {
        let loaded = try fixture("tiny-llama")
        let task = SweepTask.multipleChoice(name: "piqa", items: questions, range: 0..<2)
        let make = controller(loaded.model)
        var state = SweepState(settings: "test")
        try runner(loaded).run(task, cells: Array(cells.prefix(2)), state: &state, makeController: make, save: { _ in }, progress: { _ in })
        let before = state
        var full = SweepState(settings: "test")
        try runner(loaded).run(task, cells: cells, state: &state, makeController: make, save: { _ in }, progress: { _ in })
        try runner(loaded).run(task, cells: cells, state: &full, makeController: make, save: { _ in }, progress: { _ in })
        for cell in cells.prefix(2) {
            #expect(state.tally(task: "piqa", cell: cell) == before.tally(task: "piqa", cell: cell))
        }
        #expect(withoutTimes(state) == withoutTimes(full))
    }

    @Test("every cell counts the items cut to the model's context, as eval does; a state saved before they were counted reports none")
    func truncatedItems() throws {
        let loaded = try fixture("tiny-llama")
        let long = String(repeating: "long context ", count: loaded.model.shape.maxContext)
        let items = Array(questions.prefix(2)) + [try MultipleChoiceItem(id: 99, context: long, continuations: [" yes", " no"], gold: 0)]
        let task = SweepTask.multipleChoice(name: "piqa", items: items, range: 0..<items.count)
        var state = SweepState(settings: "test")
        try runner(loaded).run(task, cells: cells, state: &state, makeController: controller(loaded.model), save: { _ in }, progress: { _ in })
        for cell in cells {
            #expect(SweepRow(task: task, cell: cell, tally: state.tally(task: "piqa", cell: cell)).truncatedItems == 1, "\(cell.key)")
        }

        // An older state has no count: resumed, its cells leave it unknown rather than count part of the items.
        let encoded = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        let older = encoded.replacingOccurrences(of: #","truncatedItems":1"#, with: "").replacingOccurrences(of: #""truncatedItems":1,"#, with: "")
        #expect(!older.contains("truncatedItems"))
        var resumed = try JSONDecoder().decode(SweepState.self, from: Data(older.utf8))
        let piqa = try #require(resumed.tallies["piqa"])
        for key in piqa.keys { resumed.tallies["piqa"]![key]!.items = 2 }
        try runner(loaded).run(task, cells: cells, state: &resumed, makeController: controller(loaded.model), save: { _ in }, progress: { _ in })
        for cell in cells {
            let tally = resumed.tally(task: "piqa", cell: cell)
            #expect(tally.items == 3 && tally.truncatedItems == nil, "\(cell.key)")
        }
    }

    @Test("perplexity cells report word and byte perplexity and bits per byte of the text, scored after the prefix token")
    func perplexity() throws {
        let loaded = try fixture("tiny-opt")
        let text = "The river ran past the old mill.\nChildren played in the square while the bells rang.\n"
        let task = SweepTask.perplexity(name: "wikitext", text: text, context: 16)
        var state = SweepState(settings: "test")
        try runner(loaded).run(task, cells: cells, state: &state, makeController: controller(loaded.model), save: { _ in }, progress: { _ in })
        let dense = SweepRow(task: task, cell: .dense, tally: state.tally(task: "wikitext", cell: .dense))
        let tokenizer = try loaded.requireTokenizer()
        let tokens = [try #require(tokenizer.bosTokenID ?? tokenizer.eosTokenID)] + tokenizer.encode(text)
        let reference = try Scoring.perplexity(model: loaded.model, tokens: tokens, context: 16)
        let expected = TextPerplexity(nllSum: reference.nllSum, predictedTokens: reference.predictedTokens, text: text)
        #expect(dense.metrics["word_perplexity"] == expected.wordPerplexity)
        #expect(dense.metrics["bits_per_byte"] == expected.bitsPerByte)
        let sparse = SweepRow(task: task, cell: cells[2], tally: state.tally(task: "wikitext", cell: cells[2]))
        #expect(sparse.metrics["word_perplexity"]! != expected.wordPerplexity)
    }

    @Test("cell keys are stable and sort dense first")
    func keys() {
        #expect(SweepCell.dense.key == "dense")
        #expect(SweepCell(method: "shadow", criterion: "plainact", sparsity: 0.5).key == "shadow/plainact/0.50")
        #expect(SweepCell(method: "random", sparsity: 0.3).key == "random/-/0.30")
        #expect([SweepCell(method: "a", sparsity: 0.5), .dense].sorted().first == .dense)
        #expect(SweepCell(key: "random/-/0.30") == SweepCell(method: "random", sparsity: 0.3))
        #expect(SweepCell(key: "dense") == .dense && SweepCell(key: "shadow/0.5") == nil && SweepCell(key: "a/b/c") == nil)
    }

    @Test("a report holds the requested cells and the earlier cells that cover the dense model's items, each once")
    func reportedCells() {
        var state = SweepState(settings: "s")
        func tally(_ items: Int) -> SweepTally { var t = SweepTally(); t.items = items; return t }
        let third = SweepCell(method: "shadow", criterion: "plainact", sparsity: 1.0 / 3)
        state.tallies["piqa"] = ["dense": tally(4), third.key: tally(4), "static/l2_norm/0.50": tally(4),
                                 "random/-/0.50": tally(2), "oracle/plainact/0.50": tally(0)]
        let cells = state.reportedCells(task: "piqa", requested: [.dense, third, SweepCell(method: "dejavu", criterion: "l2_norm", sparsity: 0.5)])
        // The requested 1/3 cell appears once (not again as "0.33" read back from its key); the
        // unrun dejavu cell, the random cell left at 2 items and the empty oracle cell do not.
        #expect(cells == [.dense, third, SweepCell(method: "static", criterion: "l2_norm", sparsity: 0.5)].sorted(), "\(cells)")
    }

    @Test("an earlier command's cell is reported with the sparsity it ran at, not its key's two decimals")
    func earlierCellKeepsItsSparsity() {
        var state = SweepState(settings: "s")
        var tally = SweepTally()
        tally.items = 4
        let third = SweepCell(method: "shadow", criterion: "plainact", sparsity: 1.0 / 3)
        state.store(tally, task: "piqa", cell: .dense)
        state.store(tally, task: "piqa", cell: third)
        let decoded = try? JSONDecoder().decode(SweepState.self, from: JSONEncoder().encode(state))
        #expect(decoded?.reportedCells(task: "piqa", requested: [.dense]) == [.dense, third])
        // A state written before cells were kept still reports the cell, from its key.
        state.cells = nil
        #expect(state.reportedCells(task: "piqa", requested: [.dense]).last?.sparsity == 0.33)
    }
}
