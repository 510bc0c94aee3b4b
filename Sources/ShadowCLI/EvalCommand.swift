import Foundation
import ShadowEval
import ShadowFormats
import ShadowModels
import ShadowSparsity
import ShadowTasks
import ShadowTokenizers

/// `shadowllm eval`: one task of DESIGN §6, sparse and dense in the same harness.
enum EvalCommand {
    /// The JSON report. Task-specific metrics are present only for their tasks; `limit`,
    /// `kl_divergence` and `top1_agreement` are null when they do not apply.
    struct Report: Encodable {
        var task: String
        var model: String
        /// The task file read and how the weights were kept: what else decides the numbers.
        var data: String = ""
        var weights: String = ""
        var n: Int
        var metrics: [String: Double] = [:]
        var method: String
        var maskMode: String
        var headSparsity: Double
        var neuronSparsity: Double
        var realisedHeadSparsity: Double?
        var realisedNeuronSparsity: Double?
        var klDivergence: Double?
        var top1Agreement: Double?
        var dense: [String: Double]
        var offset: Int
        var limit: Int?
        var shots: Int
        var seed: UInt64
        var seconds: Double
        /// WikiText only: whether the model read lm-eval's detokenized text.
        var detokenized: Bool?
        /// HellaSwag only: whether ctx_b was capitalised as lm-eval's query has it.
        var capitalizedCtxB: Bool?
        /// WikiText only: the window length and the targets predicted per window.
        var context: Int?
        var stride: Int?
        /// Question tasks: items a request of which was longer than the model's context.
        var truncatedItems: Int?
        /// Sparse runs: where their masks come from and how scores become masks (`predictor`,
        /// `scores`, `oracle_criterion`, `mask_seed`, `policy`, `hybrid_floor`, as given or defaulted).
        var maskSource: [String: String] = [:]

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ string: String) { stringValue = string }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        /// The mask source's options, numbers as numbers (`mask_seed`, `hybrid_floor`), in name order.
        static func encode(maskSource: [String: String], into c: inout KeyedEncodingContainer<Key>) throws {
            for (name, value) in maskSource.sorted(by: { $0.key < $1.key }) {
                if name == "mask_seed", let seed = UInt64(value) {
                    try c.encode(seed, forKey: Key(name))
                } else if name == "hybrid_floor", let floor = Double(value) {
                    try c.encode(floor, forKey: Key(name))
                } else {
                    try c.encode(value, forKey: Key(name))
                }
            }
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(task, forKey: Key("task"))
            try c.encode(model, forKey: Key("model"))
            try c.encode(data, forKey: Key("data"))
            try c.encode(weights, forKey: Key("weights"))
            try c.encode(n, forKey: Key("n"))
            for (name, value) in metrics { try c.encode(value, forKey: Key(name)) }
            try c.encode(method, forKey: Key("method"))
            try Self.encode(maskSource: maskSource, into: &c)
            // WikiText has no questions: no mask mode, no few-shot examples, no seed (all refused).
            let perplexityTask = task == TaskName.wikitext.rawValue
            if !perplexityTask { try c.encode(maskMode, forKey: Key("mask_mode")) }
            try c.encode(headSparsity, forKey: Key("head_sparsity"))
            try c.encode(neuronSparsity, forKey: Key("neuron_sparsity"))
            try c.encode(realisedHeadSparsity, forKey: Key("realised_head_sparsity"))
            try c.encode(realisedNeuronSparsity, forKey: Key("realised_neuron_sparsity"))
            try c.encode(klDivergence, forKey: Key("kl_divergence"))
            try c.encode(top1Agreement, forKey: Key("top1_agreement"))
            try c.encode(dense, forKey: Key("dense"))
            try c.encode(offset, forKey: Key("offset"))
            try c.encode(limit, forKey: Key("limit"))
            if !perplexityTask {
                try c.encode(shots, forKey: Key("shots"))
                try c.encode(seed, forKey: Key("seed"))
                try c.encodeIfPresent(truncatedItems, forKey: Key("truncated_items"))
            }
            try c.encode(seconds, forKey: Key("seconds"))
            try c.encodeIfPresent(detokenized, forKey: Key("detokenized"))
            try c.encodeIfPresent(capitalizedCtxB, forKey: Key("ctx_b_capitalized"))
            try c.encodeIfPresent(context, forKey: Key("context"))
            try c.encodeIfPresent(stride, forKey: Key("stride"))
        }
    }

    static let command = Command(
        name: "eval", abstract: "Evaluate a task (lm-evaluation-harness conventions), sparse next to dense.",
        discussion: """
            Multiple-choice tasks sum the log-likelihood of each choice's continuation: acc takes the largest \
            sum, acc_norm the largest sum per character. LAMBADA counts a passage correct when greedy decoding \
            reproduces its last word; WikiText reports word and byte perplexity, article by article over \
            rolling windows (lm-eval's document-level WikiText; a " = Title = " line starts an article). Every \
            sparse run is compared with the dense model on the same inputs (multiple choice and LAMBADA: KL \
            divergence and top-1 agreement at the positions that predict answer tokens; WikiText: the dense metrics). Masks: causal (default) predicts one mask per \
            question from its last context token; per-choice predicts one per choice from context + answer, \
            as the paper's harness does.
            """,
        options: ModelOptions.prefillOptions + SparsityOptions.options(decoding: false) + [
            .value("task", "name", help: "The task (lm-eval's names lambada_openai and lambada_standard also read LAMBADA files, sglue_rte RTE files).",
                   allowed: TaskName.allCases.map(\.rawValue) + TaskName.aliases.keys.sorted()),
            .value("data", "path", help: "The task file (formats: docs/user-guide.md, \"Task files and how they are scored\")."),
            .value("labels", "path", help: "PIQA / Winogrande: a file of one gold label per line.", defaultDescription: "NAME-labels.lst beside NAME.jsonl, when there (--verbose names it)"),
            .value("limit", "n", help: "Evaluate at most n items (WikiText: articles, lm-eval's documents).", defaultDescription: "all"),
            .value("offset", "k", help: "Skip the first k items (WikiText: articles) of the file.", default: "0"),
            .value("shots", "k", help: "Few-shot examples per question, drawn from the items outside --offset/--limit (from every other item when those are too few; never the question itself; not wikitext).", default: "0"),
            .value("seed", "n", help: "Seed of the few-shot draw (with --shots; not wikitext).", default: "1234"),
            .value("mask-mode", "mode", help: "causal: one mask per question from its context; per-choice: one per choice from context + answer.",
                   default: MaskMode.causal.rawValue, allowed: MaskMode.allCases.map(\.rawValue)),
            .value("context", short: "c", "n", help: "WikiText: window length in tokens; the default is lm-eval's (8192 for SmolLM2). A shorter window gives a higher perplexity, and is faster only on articles longer than it.",
                   defaultDescription: "the model's context"),
            .value("stride", "n", help: "WikiText: predict n tokens per window (overlapping windows when below the context).",
                   defaultDescription: "the context (lm-eval's rolling windows)"),
            .flag("as-stored", help: "WikiText: score the file exactly as stored. By default the model reads it after lm-eval's wikitext detokenizer (\" @-@ \" → \"-\", \" , \" → \", \", …), as lm-eval does; words and bytes are counted on the file as stored either way. HellaSwag: keep ctx_b as written (\"… on a roof. he\", as llama.cpp reads its text file) instead of capitalising it as lm-eval does (\"… on a roof. He\")."),
            .flag("detokenize", help: "WikiText: lm-eval's detokenizer, the default (accepted for older commands)."),
            .value("samples", "path", help: "Also write one JSON line per item (per article for WikiText): the contexts and continuations scored and their log-likelihoods, as lm-eval's --log_samples (written atomically)."),
            .flag("json", help: "Print the report as JSON."),
            .flag("no-progress", help: "Hide the progress bar."),
        ]
    ) { arguments, console in
        try run(arguments, console: console)
    }

    static func run(_ arguments: ParsedArguments, console: Console) throws {
        // The task is read before the model is loaded, so a bad file fails fast.
        let input = try Input(arguments, console: console)
        let loaded = try ModelOptions.load(arguments, console: console)
        let sparsity = try SparsityOptions.controller(arguments, loaded: loaded, console: console)
        let tokenizer = try loaded.requireTokenizer()
        let model = loaded.model
        let start = Date()
        var bar: ProgressBar?
        let showProgress = !arguments.flag("no-progress")
        let progress: (Int, Int) -> Void = { done, total in
            if bar == nil { bar = ProgressBar(console: console, label: input.task.rawValue, total: total, enabled: showProgress, started: start) }
            bar?.update(done)
        }

        var report = Report(task: input.task.rawValue, model: loaded.path, n: 0, method: try arguments.required("method"),
                            maskMode: input.maskMode.rawValue, headSparsity: input.settings.headSparsity,
                            neuronSparsity: input.settings.neuronSparsity, dense: [:], offset: input.offset, limit: input.limit,
                            shots: input.shots, seed: input.seed, seconds: 0)
        report.data = input.dataPath
        report.maskSource = try SparsityOptions.source(arguments)
        report.weights = loaded.model.weightDType.rawValue
        let samples: [Sample]
        if input.task == .wikitext {
            let context = input.context ?? model.shape.maxContext, stride = input.stride
            let detokenize = !arguments.flag("as-stored")
            let scored = try Evaluation.wikitext(text: input.text, detokenize: detokenize, model: model, tokenizer: tokenizer,
                                                 context: context, stride: stride, sparsity: sparsity, progress: progress)
            report.n = TaskFile.wikitextPages(input.text).count     // articles, as lm-eval counts documents
            report.detokenized = detokenize
            report.context = context
            report.stride = stride ?? Scoring.defaultStride(context: context)
            report.metrics = perplexityMetrics(scored.result)
            report.dense = perplexityMetrics(scored.dense)
            samples = zip(scored.result.pages, scored.dense.pages).enumerated().map { index, pair in
                Sample.page(input.offset + index, pair.0, dense: sparsity == nil ? nil : pair.1)
            }
        } else {
            if input.task == .hellaswag { report.capitalizedCtxB = !arguments.flag("as-stored") }
            let scorer = LoglikelihoodScorer(model: model, sparsity: sparsity, maskMode: input.maskMode)
            samples = try scoreItems(input, scorer: scorer, tokenizer: tokenizer, report: &report, progress: progress)
            if let statistics = (sparsity as? OracleController)?.statistics, statistics.denseMasks > 0 {
                console.printError("warning: \(statistics.denseMasks) of \(statistics.masks) oracle masks ran dense: their prompt (the context, cut to the model's context) was one token, which gives no loss to score; the realised sparsity counts them")
            }
            if let truncated = report.truncatedItems, truncated > 0 {
                console.printError("warning: \(truncated) of \(report.n) items were longer than the model's context of \(model.shape.maxContext) tokens and lost tokens from their start (as lm-eval truncates them); they are marked \"truncated\" in --samples")
            }
        }
        if let realised = Evaluation.realisedSparsity(sparsity, shape: model.shape) {
            report.realisedHeadSparsity = realised.heads
            report.realisedNeuronSparsity = realised.neurons
        }
        report.seconds = Date().timeIntervalSince(start)
        if let path = arguments.string("samples") {
            try AtomicFile.write(try Sample.jsonLines(samples), to: path)
        }
        console.print(arguments.flag("json") ? try JSONOutput.string(report) : markdown(report))
    }

    /// A multiple-choice or LAMBADA slice scored, sparse and dense: its metrics into `report`,
    /// its items as --samples lines.
    static func scoreItems(_ input: Input, scorer: LoglikelihoodScorer, tokenizer: any Tokenizer, report: inout Report,
                           progress: @escaping (Int, Int) -> Void) throws -> [Sample] {
        let items = input.items, range = input.range, pool = input.pool
        let sparse = scorer.sparsity != nil
        let agreement: Agreement?
        let samples: [Sample]
        if input.task == .lambada {
            let result = try Evaluation.lambada(items: items[range], pool: pool, shots: input.shots, seed: input.seed,
                                                tokenizer: tokenizer, scorer: scorer, progress: progress)
            report.n = result.n
            report.metrics = ["acc": result.sparse.acc.value, "acc_stderr": result.sparse.acc.stderr,
                              "perplexity": result.sparse.perplexity, "token_perplexity": result.sparse.tokenPerplexity]
            report.dense = ["acc": result.dense.acc.value, "perplexity": result.dense.perplexity, "token_perplexity": result.dense.tokenPerplexity]
            agreement = result.agreement
            report.truncatedItems = result.truncatedItems
            samples = result.passages.indices.map { Sample.passage(result, $0, sparse: sparse) }
        } else {
            let result = try Evaluation.multipleChoice(items: items[range], pool: pool, shots: input.shots, seed: input.seed,
                                                       tokenizer: tokenizer, scorer: scorer, progress: progress)
            report.n = result.n
            report.metrics = ["acc": result.acc.value, "acc_stderr": result.acc.stderr,
                              "acc_norm": result.accNorm.value, "acc_norm_stderr": result.accNorm.stderr]
            report.dense = ["acc": result.denseAcc.value, "acc_norm": result.denseAccNorm.value]
            agreement = result.agreement
            report.truncatedItems = result.truncatedItems
            samples = result.items.map { Sample.item($0, sparse: sparse) }
        }
        // A dense run is its own reference: nothing diverges.
        report.klDivergence = sparse ? agreement?.meanKL : 0
        report.top1Agreement = sparse ? agreement?.top1 : 1
        return samples
    }

    /// What an `eval` command asks for, checked, with its task read: the items (multiple choice,
    /// LAMBADA) or the text (WikiText, cut to the --offset/--limit articles).
    struct Input {
        let task: TaskName
        let dataPath: String
        let offset: Int
        let limit: Int?
        let shots: Int
        let seed: UInt64
        let maskMode: MaskMode
        let settings: SparsitySettings
        /// WikiText's window and stride (nil: the model's context, and the window).
        let context: Int?
        let stride: Int?
        private(set) var items: [MultipleChoiceItem] = []
        /// The items scored (--offset, --limit) and the few-shot examples' pool (the others).
        private(set) var range: Range<Int> = 0..<0
        private(set) var pool: [MultipleChoiceItem] = []
        private(set) var text = ""

        init(_ arguments: ParsedArguments, console: Console) throws {
            task = TaskName(name: try arguments.required("task"))!   // the parser allows only tasks and their aliases
            dataPath = try arguments.required("data")
            try ModelOptions.requireFile(dataPath, option: "data")
            // Refused before the file is looked for: its name is not the problem.
            if arguments.has("labels"), let refusal = task.labelsFileRefusal {
                throw ShadowError.invalidArgument(name: "--labels", reason: refusal)
            }
            if let labels = arguments.string("labels") { try ModelOptions.requireFile(labels, option: "labels") }
            // Without --labels, the labels file the release keeps beside the data, as calibrate finds it.
            let labels = try arguments.string("labels") ?? TaskFile.labelsBeside(data: dataPath, task: task)
            if let labels, arguments.flag("verbose") {
                console.printLabels("eval", task: task.rawValue, labels: labels, data: dataPath, given: arguments.has("labels"))
            }
            if let samples = arguments.string("samples") {
                try AtomicFile.checkWritable(samples, option: "--samples")
                try AtomicFile.refuseOverwriting(samples, option: "--samples", inputs: [
                    ("--data", dataPath), ("--labels", labels ?? ""), ("--scores", arguments.string("scores") ?? "")]
                    + ModelOptions.filesOf("--model", (try? ModelOptions.modelPath(arguments)) ?? "")
                    + ModelOptions.filesOf("--predictor", arguments.string("predictor") ?? ""))
            }
            offset = try arguments.int("offset", range: 0...Int.max) ?? 0
            limit = try arguments.int("limit", range: 1...Int.max)
            shots = try arguments.int("shots", range: 0...1000) ?? 0
            seed = UInt64(try arguments.int("seed", range: 0...Int.max) ?? 1234)
            maskMode = MaskMode(rawValue: try arguments.required("mask-mode"))!
            settings = try SparsityOptions.settings(arguments)

            switch task {
            case .wikitext: text = try TaskFile.wikitext(path: dataPath)
            case .lambada: items = Evaluation.lambadaItems(try TaskFile.lambada(path: dataPath))
            default: items = try TaskFile.multipleChoice(task: task, path: dataPath, labels: labels, asStored: arguments.flag("as-stored"))
            }
            try Self.refuseUnread(arguments, task: task)
            context = try arguments.int("context", range: 1...1_000_000)
            stride = try arguments.int("stride", range: 1...1_000_000)
            if task != .wikitext {
                range = try Evaluation.slice(count: items.count, offset: offset, limit: limit)
                pool = try Evaluation.fewShotPool(items: items, range: range, shots: shots)
            } else if offset != 0 || limit != nil {
                // lm-eval's --limit counts documents, and WikiText's documents are its articles. Pages
                // joined by a line break split into the same pages again.
                let pages = TaskFile.wikitextPages(text)
                text = pages[try Evaluation.slice(count: pages.count, offset: offset, limit: limit, unit: "articles")].joined(separator: "\n")
            }
        }

        /// Options the task would not read, refused rather than ignored.
        private static func refuseUnread(_ arguments: ParsedArguments, task: TaskName) throws {
            for option in ["detokenize", "context", "stride"] where arguments.has(option) && task != .wikitext {
                throw ShadowError.invalidArgument(name: "--\(option)", reason: "applies to wikitext only")
            }
            if arguments.has("as-stored"), task != .wikitext, task != .hellaswag {
                throw ShadowError.invalidArgument(name: "--as-stored", reason: "applies to wikitext and hellaswag only")
            }
            // WikiText scores the text itself: there is no question to put examples before.
            for option in ["shots", "seed"] where arguments.has(option) && task == .wikitext {
                throw ShadowError.invalidArgument(name: "--\(option)", reason: "does not apply to wikitext (no few-shot examples: each article is scored whole)")
            }
            // The seed draws the few-shot examples and nothing else.
            if arguments.has("seed"), (try arguments.int("shots", range: 0...1000) ?? 0) == 0 {
                throw ShadowError.invalidArgument(name: "--seed", reason: "is only read with --shots above 0 (it draws the few-shot examples)")
            }
            if arguments.has("mask-mode") {
                if task == .wikitext {
                    throw ShadowError.invalidArgument(name: "--mask-mode", reason: "does not apply to wikitext (each window is one prompt)")
                }
                if try arguments.required("method") == "dense" {
                    throw ShadowError.invalidArgument(name: "--mask-mode", reason: "is only read with a sparse --method")
                }
            }
            if arguments.flag("detokenize"), arguments.flag("as-stored") {
                throw ShadowError.invalidArgument(name: "--as-stored", reason: "contradicts --detokenize")
            }
        }
    }

    /// One line of `--samples`: what lm-eval's `--log_samples` would show for the item. In a
    /// sparse run the log-likelihoods are the sparse model's and `dense_*` the dense model's.
    struct Sample: Encodable {
        var docID: Int
        // Multiple choice.
        var gold: Int?
        var contexts: [String]?
        var continuations: [String]?
        var loglikelihoods: [Double]?
        var denseLoglikelihoods: [Double]?
        var characters: [Int]?
        var acc: Bool?
        var accNorm: Bool?
        // LAMBADA.
        var context: String?
        var continuation: String?
        var loglikelihood: Double?
        var denseLoglikelihood: Double?
        var greedy: Bool?
        /// Multiple choice and LAMBADA: present (true) only when a request lost its first tokens.
        var truncated: Bool?
        // WikiText (loglikelihood as above).
        var words: Int?
        var bytes: Int?
        var tokens: Int?

        enum CodingKeys: String, CodingKey {
            case docID = "doc_id", gold, contexts, continuations, loglikelihoods, denseLoglikelihoods = "dense_loglikelihoods"
            case characters, acc, accNorm = "acc_norm", context, continuation, loglikelihood
            case denseLoglikelihood = "dense_loglikelihood", greedy, truncated, words, bytes, tokens
        }

        static func item(_ item: ItemOutcome, sparse: Bool) -> Sample {
            Sample(docID: item.id, gold: item.gold, contexts: item.contexts, continuations: item.continuations,
                   loglikelihoods: item.sums, denseLoglikelihoods: sparse ? item.denseSums : nil,
                   characters: item.characters, acc: item.acc, accNorm: item.accNorm, truncated: item.truncated ? true : nil)
        }

        static func passage(_ result: LambadaResult, _ index: Int, sparse: Bool) -> Sample {
            let passage = result.passages[index]
            return Sample(docID: passage.id, context: passage.context, continuation: passage.continuation,
                          loglikelihood: result.sparse.logLikelihoods[index],
                          denseLoglikelihood: sparse ? result.dense.logLikelihoods[index] : nil,
                          greedy: result.sparse.greedy[index], truncated: result.truncated[index] ? true : nil)
        }

        static func page(_ index: Int, _ page: TextPerplexity, dense: TextPerplexity?) -> Sample {
            Sample(docID: index, loglikelihood: -page.nllSum, denseLoglikelihood: dense.map { -$0.nllSum },
                   words: page.words, bytes: page.bytes, tokens: page.predictedTokens)
        }

        static func jsonLines(_ samples: [Sample]) throws -> String {
            try samples.map { try JSONOutput.string($0, pretty: false) + "\n" }.joined()
        }
    }

    static func perplexityMetrics(_ result: TextPerplexity) -> [String: Double] {
        ["word_perplexity": result.wordPerplexity, "byte_perplexity": result.bytePerplexity,
         "bits_per_byte": result.bitsPerByte, "nll_sum": result.nllSum,
         "predicted_tokens": Double(result.predictedTokens), "token_perplexity": result.tokenPerplexity]
    }

    /// A Markdown table: one row per metric, sparse next to dense.
    static func markdown(_ report: Report) -> String {
        // Counts as integers; everything else with four decimals, so an accuracy of 1 reads 1.0000 beside 0.5000.
        func format(_ value: Double?, count: Bool = false) -> String {
            if count, let value, value == value.rounded() && abs(value) < 1e15 { return String(Int(value)) }
            return Markdown.number(value, "%.4f")
        }
        // The dense model beside a sparse one; alone, it is compared with nothing.
        let sparse = report.method != "dense"
        var lines = sparse
            ? ["| task | n | metric | \(report.method) | stderr | dense |", "|---|---:|---|---:|---:|---:|"]
            : ["| task | n | metric | value | stderr |", "|---|---:|---|---:|---:|"]
        let order = ["acc", "acc_norm", "perplexity", "token_perplexity", "word_perplexity", "byte_perplexity",
                     "bits_per_byte", "nll_sum", "predicted_tokens"]
        for name in order {
            guard let value = report.metrics[name] else { continue }
            let count = name == "predicted_tokens"
            lines.append("| \(report.task) | \(report.n) | \(name) | \(format(value, count: count)) | \(format(report.metrics[name + "_stderr"])) |"
                         + (sparse ? " \(format(report.dense[name], count: count)) |" : ""))
        }
        var notes = ["method \(report.method)"]
        if sparse {
            notes.append(String(format: "head sparsity %.2f, neuron sparsity %.2f", report.headSparsity, report.neuronSparsity))
            if let heads = report.realisedHeadSparsity, let neurons = report.realisedNeuronSparsity {
                notes.append(String(format: "realised %.3f / %.3f", heads, neurons))
            }
            // WikiText has no questions (each window is one prompt), and no few-shot examples.
            if report.task != TaskName.wikitext.rawValue { notes.append("masks \(report.maskMode)") }
        }
        if sparse, let kl = report.klDivergence, let top1 = report.top1Agreement {
            notes.append(String(format: "KL(dense‖sparse) %.5f, top-1 agreement %.4f", kl, top1))
        }
        if report.detokenized == true { notes.append("lm-eval detokenized text") }
        if report.capitalizedCtxB == false { notes.append("ctx_b as stored") }
        if let context = report.context, let stride = report.stride {
            notes.append(stride == context ? "\(context)-token windows" : "\(context)-token windows, stride \(stride)")
        }
        notes.append("offset \(report.offset)" + (report.limit.map { ", limit \($0)" } ?? "")
                     + (report.task == TaskName.wikitext.rawValue ? "" : ", \(report.shots)-shot"))
        notes.append(String(format: "%.2f s", report.seconds))
        lines += ["", notes.joined(separator: "; ")]
        return lines.joined(separator: "\n")
    }
}
