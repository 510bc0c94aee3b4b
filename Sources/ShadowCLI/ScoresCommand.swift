import Foundation
import ShadowEval
import ShadowFormats
import ShadowModels
import ShadowSparsity

/// `shadowllm scores`: how important every head and neuron is for one (context, continuation)
/// sample, under one criterion of DESIGN §3.
enum ScoresCommand {
    struct Report: Encodable {
        let criterion: String
        let tokens: Int
        let predictedTokens: Int
        let seconds: Double
        let loss: Double
        let heads: [[Float]]
        let neurons: [[Float]]?   // absent for heads-only criteria
        /// The model scored, so that `--method static --scores` refuses the file for another.
        let model: ModelFingerprint
        enum CodingKeys: String, CodingKey {
            case criterion, tokens, predictedTokens = "predicted_tokens", seconds, loss, heads, neurons, model
        }
    }

    static let command = Command(
        name: "scores", abstract: "Importance of every attention head and FFN neuron for one sample.",
        discussion: """
            The loss is the mean cross-entropy of the continuation's tokens given everything before them; \
            one forward and one hand-written backward pass give the criterion's scores (GRASP runs two more). \
            As lm-evaluation-harness (and eval) does, white space ending the context moves to the front of the \
            continuation, context + continuation is tokenized once (with the model's BOS, if it adds one) and \
            the continuation is every token after the context's own token count. \
            --json prints {"criterion", "tokens", "predicted_tokens", "seconds", "loss": x, "heads": [[L×H]], \
            "neurons": [[L×F]], "model": {…}} on one line (the model's fingerprint, as in traces and predictors); \
            heads-only criteria (jacov, epenas) omit "neurons".

            CRITERIA (A: a head's attention output, N: a neuron's activation, L: the loss):
            """ + Criterion.allCases.map { "\n  \($0.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)) \($0.summary)" }.joined(),
        options: ModelOptions.prefillOptions + [
            .value("context", "text", help: "The context (prompt) text."),
            .value("continuation", "text", help: "The continuation whose loss is differentiated."),
            .value("criterion", "name", help: "The importance criterion.", default: Criterion.plainact.rawValue,
                   allowed: Criterion.allCases.map(\.rawValue)),
            .flag("json", help: "Print JSON (one line) instead of a per-layer summary."),
        ]
    ) { arguments, console in
        let context = try arguments.required("context")
        let continuation = try arguments.required("continuation")
        guard !context.isEmpty else { throw ShadowError.invalidArgument(name: "--context", reason: "is empty") }
        let criterion = Criterion(rawValue: try arguments.required("criterion"))!   // the parser allows only criteria
        let loaded = try ModelOptions.load(arguments, console: console)
        let model = try loaded.requireDifferentiable(for: "scores")
        let tokenizer = try loaded.requireTokenizer()
        // eval's request: white space ending the context moves to the continuation, and a context
        // of no tokens is lm-eval's prefix token (BOS, else EOS).
        let request = ScoringRequest(context: context, continuation: continuation, tokenizer: tokenizer, maxTokens: .max)
        let (tokens, predictFrom) = (request.tokens, request.predictFrom)
        guard tokens.count > predictFrom else {
            throw ShadowError.invalidArgument(name: "--continuation", reason: "adds no tokens after the context's \(counted(predictFrom, "token")) (nothing to score)")
        }
        guard tokens.count <= model.shape.maxContext else {
            throw ShadowError.invalidArgument(
                name: "--continuation",
                reason: "context and continuation are \(tokens.count) tokens, more than \(model.contextDescription)")
        }
        let start = Date()
        let scores = try Importance.scores(model: model, tokens: tokens, predictFrom: predictFrom, criteria: [criterion])[criterion]!
        let seconds = Date().timeIntervalSince(start)
        guard scores.loss.isFinite else { throw ShadowError.notFinite("the loss is") }
        guard scores.heads.joined().allSatisfy(\.isFinite), scores.neurons?.joined().allSatisfy(\.isFinite) ?? true else {
            throw ShadowError.notFinite("some \(criterion.rawValue) scores are")
        }
        if arguments.flag("verbose") {
            console.printError(String(format: "%@: %ld tokens (%ld predicted) in %.3f s", criterion.rawValue, tokens.count,
                                      tokens.count - predictFrom, seconds))
        }
        if arguments.flag("json") {
            // One line, as documented (its matrices are long).
            console.print(try JSONOutput.string(Report(criterion: criterion.rawValue, tokens: tokens.count, predictedTokens: tokens.count - predictFrom,
                                                       seconds: seconds, loss: scores.loss, heads: scores.heads, neurons: scores.neurons,
                                                       model: ModelFingerprint(loaded: loaded)), pretty: false))
            return
        }
        console.print(String(format: "%@ scores: %ld tokens, %ld predicted, loss %.4f nats/token, %.2f s",
                             criterion.rawValue, tokens.count, tokens.count - predictFrom, scores.loss, seconds))
        for (l, heads) in scores.heads.enumerated() {
            var line = String(format: "layer %2ld  heads", l) + heads.map { String(format: " %.4g", $0) }.joined()
            if let neurons = scores.neurons?[l] {
                let sorted = neurons.sorted()
                let top = neurons.indices.sorted { neurons[$0] > neurons[$1] }.prefix(3)
                line += String(format: "  |  neurons min %.3g median %.3g max %.3g, top", sorted.first ?? 0,
                               sorted.isEmpty ? 0 : sorted[sorted.count / 2], sorted.last ?? 0)
                line += top.map { " \($0)" }.joined()
            }
            console.print(line)
        }
    }
}
