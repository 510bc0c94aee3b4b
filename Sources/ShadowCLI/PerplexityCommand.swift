import Foundation
import ShadowEval
import ShadowFormats
import ShadowModels

/// `shadowllm perplexity`: summed NLL and perplexity of a text.
enum PerplexityCommand {
    struct Report: Encodable {
        let model: String
        let tokens: Int
        let context: Int
        let stride: Int
        let nllSum: Double
        let predictedTokens: Int
        let windows: Int
        let perplexity: Double
        let bytes: Int
        /// The bytes of the predicted tokens: the text's, less those of its first token, which is
        /// only context (none when it is the tokenizer's BOS).
        let predictedBytes: Int
        let bitsPerByte: Double
        let seconds: Double
        let method: String
        let headSparsity: Double
        let neuronSparsity: Double
        /// Of all heads and neurons, the fraction pruned over the run (layer 0 runs dense); absent
        /// where a method keeps no count (the oracle).
        let realisedHeadSparsity: Double?
        let realisedNeuronSparsity: Double?
        /// The weights dtype kept (`--weights` unless the model fell back).
        let weights: String
        /// Where a sparse run's masks come from, as eval records them (`predictor`, `scores`,
        /// `oracle_criterion`, `mask_seed`, `policy`, `hybrid_floor`).
        let maskSource: [String: String]

        func encode(to encoder: any Encoder) throws {
            typealias Key = EvalCommand.Report.Key
            var c = encoder.container(keyedBy: Key.self)
            for (name, value) in [("model", model), ("method", method), ("weights", weights)] {
                try c.encode(value, forKey: Key(name))
            }
            try EvalCommand.Report.encode(maskSource: maskSource, into: &c)
            for (name, value) in [("tokens", tokens), ("context", context), ("stride", stride), ("predicted_tokens", predictedTokens),
                                  ("windows", windows), ("bytes", bytes), ("predicted_bytes", predictedBytes)] {
                try c.encode(value, forKey: Key(name))
            }
            for (name, value) in [("nll_sum", nllSum), ("perplexity", perplexity), ("bits_per_byte", bitsPerByte), ("seconds", seconds),
                                  ("head_sparsity", headSparsity), ("neuron_sparsity", neuronSparsity)] {
                try c.encode(value, forKey: Key(name))
            }
            try c.encodeIfPresent(realisedHeadSparsity, forKey: Key("realised_head_sparsity"))
            try c.encodeIfPresent(realisedNeuronSparsity, forKey: Key("realised_neuron_sparsity"))
        }
    }

    static let command = Command(
        name: "perplexity", abstract: "Score a text: summed negative log-likelihood and perplexity.",
        discussion: """
            The text is tokenized once (no BOS unless the model's tokenizer adds one); token 0 is context \
            only and every later token is predicted once. Tokens are predicted in blocks of --stride, each \
            block by one pass over the --context tokens just before its last token. The default stride is \
            the context: lm-eval's rolling windows (the first token of each block has one token of context); \
            a smaller stride gives every block more context, at more passes. A special token's spelling in \
            the text ("<|endoftext|>") is read as that token, as Hugging Face tokenizers do by default \
            (`tokenize --split-special-tokens` shows the other reading).
            """,
        options: ModelOptions.options + SparsityOptions.options(decoding: false) + [
            .value("text-file", "path", help: "The UTF-8 text to score (- reads standard input)."),
            .value("text", "string", help: "Score this text instead of a file."),
            .value("context", short: "c", "n", help: "Window length in tokens.", defaultDescription: "1024, or the model's context if smaller"),
            .value("stride", "n", help: "Predict n tokens per window (overlapping windows when below the context).", defaultDescription: "the context"),
            .flag("json", help: "Print JSON with nll_sum, predicted_tokens and perplexity."),
            .flag("no-progress", help: "Hide the progress bar."),
        ]
    ) { arguments, console in
        let text = try ModelOptions.text(arguments, console: console)
        let source = ModelOptions.textSource(arguments)
        guard !text.isEmpty else { throw ShadowError.invalidArgument(name: source, reason: "is empty") }
        let loaded = try ModelOptions.load(arguments, console: console)
        let sparsity = try SparsityOptions.controller(arguments, loaded: loaded, console: console)
        let tokenizer = try loaded.requireTokenizer()
        let context = try arguments.int("context", range: 1...1_000_000) ?? Scoring.defaultContext(for: loaded.model)
        let stride = try arguments.int("stride", range: 1...1_000_000)
        let start = Date()
        var progressBar: ProgressBar?
        let scored: ScoredText
        do {
            scored = try Scoring.perplexity(model: loaded.model, tokenizer: tokenizer, text: text, context: context, stride: stride,
                                            sparsity: sparsity) { done, total in
                if progressBar == nil {
                    progressBar = ProgressBar(console: console, label: "perplexity", total: total,
                                              enabled: !arguments.flag("no-progress") && total > 1, started: start)
                }
                progressBar?.update(done)
            }
        } catch ShadowError.invalidArgument("text", let reason) {
            throw ShadowError.invalidArgument(name: source, reason: reason)   // --text or the file
        }
        let result = scored.result
        let realised = Evaluation.realisedSparsity(sparsity, shape: loaded.model.shape)
        let report = Report(model: loaded.path, tokens: scored.tokens, context: context, stride: stride ?? Scoring.defaultStride(context: context),
                            nllSum: result.nllSum, predictedTokens: result.predictedTokens, windows: result.windows,
                            perplexity: result.perplexity, bytes: scored.bytes, predictedBytes: scored.predictedBytes,
                            bitsPerByte: scored.bitsPerByte, seconds: Date().timeIntervalSince(start),
                            method: try arguments.required("method"),
                            headSparsity: try SparsityOptions.settings(arguments).headSparsity,
                            neuronSparsity: try SparsityOptions.settings(arguments).neuronSparsity,
                            realisedHeadSparsity: realised?.heads, realisedNeuronSparsity: realised?.neurons,
                            weights: loaded.model.weightDType.rawValue, maskSource: try SparsityOptions.source(arguments))
        if arguments.flag("json") {
            console.print(try JSONOutput.string(report))
        } else {
            var line = String(format: "perplexity %.4f over %@ (%ld tokens, %@ of up to %ld); nll_sum %.4f; %.2f s",
                              report.perplexity, counted(report.predictedTokens, "predicted token"), report.tokens, counted(report.windows, "window"), context,
                              report.nllSum, report.seconds)
            if sparsity != nil, let realised {
                line += String(format: "; sparsity: heads %.3f (realised %.3f), neurons %.3f (realised %.3f)",
                               report.headSparsity, realised.heads, report.neuronSparsity, realised.neurons)
            }
            console.print(line)
        }
    }
}
