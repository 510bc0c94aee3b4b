import Foundation
import ShadowEval
import ShadowFormats
import ShadowKernels
import ShadowModels
import ShadowSparsity

/// Where masks come from, as `--method` names them (`dense`: no masks).
enum MaskMethod: String, CaseIterable, Sendable {
    case dense, random, `static`, shadow, dejavu, dejavuLookahead = "dejavu-lookahead", oracle

    /// The predictor kind a method reads from a file (nil: its masks come from elsewhere).
    var predictorKind: PredictorKind? { PredictorKind(rawValue: rawValue) }

    static let names = allCases.map(\.rawValue)
    static let sparseNames = allCases.filter { $0 != .dense }.map(\.rawValue)
    static let predictorNames = allCases.filter { $0.predictorKind != nil }.map(\.rawValue)
}

/// The options every command that can run sparse shares (`generate`, `chat`, `perplexity`,
/// `eval`; `bench` and `sweep` take their lists of methods and reuse the parts).
enum SparsityOptions {

    /// `decoding`: the command generates tokens, so `--refresh` (masks re-predicted every n decode
    /// tokens) means something; `perplexity` and `eval` only prefill and do not offer it.
    static func options(decoding: Bool) -> [Option] {
        [
            .value("sparsity", "p", help: "Fraction of heads and of neurons to prune (layer 0 always runs dense).", default: "0"),
            .value("head-sparsity", "p", help: "Fraction of attention heads to prune (overrides --sparsity)."),
            .value("neuron-sparsity", "p", help: "Fraction of FFN neurons to prune (overrides --sparsity)."),
            .value("policy", "name", help: "How scores become masks: rank all layers together, per layer, or global with a per-layer floor. dejavu always selects per layer: a layer's scores exist only once it runs.",
                   default: MaskPolicy.global.rawValue, allowed: MaskPolicy.allCases.map(\.rawValue)),
            hybridFloorOption,
            .value("method", "name", help: "Where masks come from: dense; random (seeded lower bound); static (aggregate scores of --scores); shadow (one predictor from layer 0, once per prompt); dejavu / dejavu-lookahead (a predictor per layer); oracle (the true criterion of each prompt, from a backward pass: an upper bound for evaluation, not a fast path).",
                   default: "dense", allowed: MaskMethod.names),
            .value("predictor", "path", help: "shadow/dejavu: a predictor file from train-predictor, or a directory holding METHOD.safetensors or one METHOD-*.safetensors."),
            .value("scores", "path", help: "static: a JSON file {\"heads\": [[L×H]], \"neurons\": [[L×F]]} of aggregate importance (from `aggregate`; one sample's `scores --json` also fits); the model fingerprint they carry must be the loaded model's."),
            .value("mask-seed", "n", help: "random: the seed of the random scores.", default: "0"),
            .value("oracle-criterion", "name", help: "oracle: the criterion computed on each prompt.", default: Criterion.plainact.rawValue,
                   allowed: Criterion.allCases.map(\.rawValue)),
        ] + (decoding ? [
            .value("refresh", "n", help: "shadow/dejavu: re-predict the masks every n decode tokens (0: once per prompt; dejavu defaults to 1, per token).", defaultDescription: "0 for shadow, 1 for dejavu"),
        ] : [])
    }

    /// When sparse decode reads a mask's kept rows from packed copies instead of gathering them
    /// from the full matrices (`generate`, `chat`; `bench` takes a list to compare).
    enum Packing: String, CaseIterable {
        case auto, on, off

        /// Decode tokens `auto` reads a projection's rows gathered before it packs them: about
        /// what the copy costs in gathered tokens' extra time (SmolLM2 f16 at 50% on a 2-core
        /// Zen 3 VM: ~100 ms of page faults against ~2–4 ms a token), the ski-rental rule; the
        /// copies are spread over the next 16 tokens.
        static let autoRule = PackingRule(after: 48, spread: 16)

        /// When decode packs kept rows (`Scratch.packing`), for a model of `weightBytes` with
        /// `availableBytes` of memory free: `auto` stays off when the copies could take more than
        /// half of it (they hold at most the weights), so a default never pushes a large model
        /// into swap; `on` is obeyed.
        func rule(weightBytes: Int, availableBytes: Int?) -> PackingRule? {
            switch self {
            case .on: return PackingRule(after: 2)
            case .auto: return availableBytes.map { weightBytes > $0 / 2 } == true ? nil : Packing.autoRule
            case .off: return nil
            }
        }

        /// Whether decode under `controller` reads packed rows once past the warm-up (bench's
        /// steady state): `auto` when its masks stay put (chosen once per prompt); masks
        /// re-predicted during decode change before they would be packed.
        func packs(_ controller: (any SparsityController)?) -> Bool {
            guard let controller else { return false }
            switch self {
            case .on: return true
            case .off: return false
            case .auto: return controller.masksStayPut
            }
        }
    }

    static let packingHelp = "Sparse decode reads a mask's kept rows from packed copies: each token then reads them faster than gathered, but the copy holds the kept rows' memory beside the model and costs, once, the time to fault that memory in (on a 2-core Zen 3 VM about 100 ms for SmolLM2 f16 at 50%, what packed reads save over some 25–50 tokens). auto packs a projection's rows once decode has read the same ones for \(Packing.autoRule.after) tokens in a row, the copies spread over the next \(Packing.autoRule.spread) (in chat a fixed mask's count runs on across turns), so short replies and masks re-predicted more often than that pay nothing, and packs nothing when the copies could take more than half the memory available; on packs them at the second token; off never."

    /// `--packing` of `generate` and `chat`.
    static let packingOption = Option.value("packing", "when", help: packingHelp, default: Packing.auto.rawValue,
                                            allowed: Packing.allCases.map(\.rawValue))

    /// When `--packing` packs kept rows under `controller` (nil: never, as for the dense model,
    /// which reads whole matrices); says so under `--verbose` when `auto` packs nothing for want
    /// of memory.
    static func packingRule(_ arguments: ParsedArguments, controller: (any SparsityController)?,
                            model: any CausalLanguageModel, console: Console, command: String) throws -> PackingRule? {
        guard controller != nil else { return nil }
        let packing = Packing(rawValue: try arguments.required("packing"))!
        let weights = model.decodeBytesPerToken, available = ProcessMemory.availableBytes
        let rule = packing.rule(weightBytes: weights, availableBytes: available)
        if packing == .auto, rule == nil, let available, arguments.flag("verbose") {
            console.printError(String(format: "%@: --packing auto packs nothing: copies of up to %.0f MB could take more than half the %.0f MB of memory available",
                                      command, Double(weights) / 1e6, Double(available) / 1e6))
        }
        return rule
    }

    /// `--hybrid-floor`, as every command with a hybrid policy offers it.
    static let hybridFloorOption = Option.value("hybrid-floor", "f", help: "hybrid: the smallest fraction of each layer's units kept.", default: "0.1")

    /// `--sparsity` beside both `--head-sparsity` and `--neuron-sparsity` would not be read.
    static func refuseUnreadSparsity(_ arguments: ParsedArguments) throws {
        if arguments.has("sparsity") && arguments.has("head-sparsity") && arguments.has("neuron-sparsity") {
            throw ShadowError.invalidArgument(name: "--sparsity", reason: "is not read when --head-sparsity and --neuron-sparsity are both given; drop one of the three")
        }
    }

    static func settings(_ arguments: ParsedArguments) throws -> SparsitySettings {
        try refuseUnreadSparsity(arguments)
        let both = try arguments.double("sparsity") ?? 0
        let settings = SparsitySettings(
            headSparsity: try arguments.double("head-sparsity") ?? both,
            neuronSparsity: try arguments.double("neuron-sparsity") ?? both,
            policy: MaskPolicy(rawValue: try arguments.required("policy"))!,
            hybridFloor: try arguments.double("hybrid-floor") ?? 0.1)
        // A value that came from --sparsity is named as the user wrote it.
        do { try settings.validate() } catch ShadowError.invalidArgument(let name, let reason)
            where ["--head-sparsity", "--neuron-sparsity"].contains(name) && !arguments.has(String(name.dropFirst(2))) {
            throw ShadowError.invalidArgument(name: "--sparsity", reason: reason)
        }
        return settings
    }

    /// The options that say where a sparse method's masks come from and how they are chosen, as
    /// reports record them (given or defaulted; names with underscores); empty for the dense model.
    static func source(_ arguments: ParsedArguments) throws -> [String: String] {
        var names: [String]
        switch MaskMethod(rawValue: try arguments.required("method"))! {   // the parser allows only these
        case .dense: return [:]
        case .random: names = ["mask-seed", "policy"]
        case .static: names = ["scores", "policy"]
        case .oracle: names = ["oracle-criterion", "policy"]
        case .shadow: names = ["predictor", "policy"]
        case .dejavu, .dejavuLookahead: names = ["predictor"]   // DejaVu-style masks are chosen per layer whatever --policy says
        }
        if names.contains("policy"), arguments.string("policy") == MaskPolicy.hybrid.rawValue { names.append("hybrid-floor") }
        var source: [String: String] = [:]
        for name in names {
            // The parser supplies the options' defaults.
            if let value = arguments.string(name) { source[name.replacingOccurrences(of: "-", with: "_")] = value }
        }
        return source
    }

    /// The controller the options describe, or nil for the dense model. A sparsity too small to
    /// prune a single unit is warned about on `console`.
    static func controller(_ arguments: ParsedArguments, loaded: LoadedModel, console: Console) throws -> (any SparsityController)? {
        try refuseUnread(arguments)
        let method = try arguments.required("method")
        let settings = try settings(arguments)
        let controller = try controller(method: method, settings: settings,
                       scoresPath: arguments.string("scores"), predictorPath: arguments.string("predictor"),
                       refresh: try arguments.int("refresh", range: 0...1_000_000),
                       seed: UInt64(try arguments.int("mask-seed", range: 0...Int.max) ?? 0),
                       oracleCriterion: Criterion(rawValue: try arguments.required("oracle-criterion"))!, loaded: loaded)
        for line in try sparsityWarnings(method: method, settings: settings, shape: loaded.model.shape) { console.printError(line) }
        if method != "dense", !["sparsity", "head-sparsity", "neuron-sparsity"].contains(where: arguments.has) {
            // Legal (the masks' machinery runs, pruning nothing), but rarely what was meant.
            console.printError("warning: --method \(method) without --sparsity prunes nothing (the default sparsity is 0); give --sparsity P, or --sparsity 0 to say so")
        }
        return controller
    }

    /// `SparsitySettings.warnings` for one of `MaskMethod`'s names (none for dense), as printed.
    static func sparsityWarnings(method: String, settings: SparsitySettings, shape: TransformerShape) throws -> [String] {
        guard method != "dense" else { return [] }
        // DejaVu-style masks are chosen per layer whatever --policy says (a layer's scores exist only once it runs).
        return try settings.warnings(method: method, selectsPerLayer: method.hasPrefix("dejavu"), shape: shape).map { "warning: " + $0 }
    }

    /// `method`: one of `MaskMethod`'s names (the parsers allow no other).
    static func controller(method: String, settings: SparsitySettings, scoresPath: String?, predictorPath: String? = nil,
                           refresh: Int? = nil, seed: UInt64, oracleCriterion: Criterion = .plainact,
                           loaded: LoadedModel) throws -> (any SparsityController)? {
        let shape = loaded.model.shape
        switch MaskMethod(rawValue: method)! {
        case .dense:
            guard settings.headSparsity == 0 && settings.neuronSparsity == 0 else {
                throw ShadowError.invalidArgument(name: "--method", reason: "a sparsity above 0 needs a mask source (\(MaskMethod.sparseNames.joined(separator: ", ")))")
            }
            return nil
        case .random:
            return try fixedMasks(Masks.randomScores(shape: shape, seed: seed), settings: settings, shape: shape)
        case .static:
            guard let path = scoresPath else {
                throw ShadowError.invalidArgument(name: "--scores", reason: "is required by --method static")
            }
            if try fileKind(atPath: path) == .directory {
                let traces = FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("manifest.json"))
                throw ShadowError.invalidArgument(name: "--scores", reason: "\(path) is a " + (traces
                    ? "trace directory; --scores reads the JSON that `shadowllm aggregate --traces \(path) --out scores.json` writes from it"
                    : "directory, not a file"))
            }
            let scores = try StaticScores.load(path: path, shape: shape, needsNeurons: settings.neuronSparsity > 0,
                                               model: ModelFingerprint(loaded: loaded))
            return try fixedMasks(scores, settings: settings, shape: shape)
        case .oracle:
            return try oracle(criterion: oracleCriterion, settings: settings, loaded: loaded)
        case .shadow, .dejavu, .dejavuLookahead:
            let predictor = try loadPredictor(method: method, path: predictorPath, loaded: loaded)
            return try predictor.controller(settings: settings, shape: shape, refresh: refresh)
        }
    }

    /// The same masks for every prompt, from one set of scores (random or aggregate).
    static func fixedMasks(_ scores: (heads: [[Float]], neurons: [[Float]]?), settings: SparsitySettings,
                           shape: TransformerShape) throws -> FixedSparsity {
        try Masks.fixedSparsity(headScores: scores.heads, neuronScores: scores.neurons, settings: settings, shape: shape)
    }

    /// An option that the chosen method or policy does not read is refused, so a mistyped
    /// method does not run quietly without the file the user meant it to use.
    static func refuseUnread(_ arguments: ParsedArguments) throws {
        try refuseUnread(arguments, methods: [try arguments.required("method")])
    }

    /// The same for a list of methods (`bench`): an option is read when any of them reads it.
    /// `offersOracle`: false in `bench`, which refuses the oracle, so errors do not suggest it.
    static func refuseUnread(_ arguments: ParsedArguments, methods: [String], offersOracle: Bool = true) throws {
        let policy = try arguments.required("policy")
        let predictorMethods = MaskMethod.predictorNames
        // dejavu selects per layer whatever the policy says; dense has no masks to rank.
        let rankingMethods = ["random", "static", "shadow"] + (offersOracle ? ["oracle"] : [])
        // Why dejavu is not among them, said only where a dejavu method was asked for.
        let asksDejavu = methods.contains { $0.hasPrefix("dejavu") }
        let rankers = "--method \(rankingMethods.dropLast().joined(separator: ", ")) or \(rankingMethods.last!)" + (asksDejavu ? " (dejavu selects per layer)" : "")
        let uses = { (names: [String]) in methods.contains { names.contains($0) } }
        let readers: [(option: String, readBy: Bool, what: String)] = [
            ("predictor", uses(predictorMethods), "--method shadow, dejavu or dejavu-lookahead"),
            ("refresh", uses(predictorMethods), "--method shadow, dejavu or dejavu-lookahead"),
            ("scores", uses(["static"]), "--method static"),
            ("mask-seed", uses(["random"]), "--method random"),
            ("oracle-criterion", uses(["oracle"]), "--method oracle"),
            ("policy", uses(rankingMethods), rankers),
            ("hybrid-floor", policy == MaskPolicy.hybrid.rawValue, "--policy hybrid"),
            ("hybrid-floor", uses(rankingMethods), rankers),
            ("packing", methods.contains { $0 != "dense" }, "a sparse --method (dense reads whole matrices)"),
        ]
        for reader in readers where arguments.has(reader.option) && !reader.readBy {
            throw ShadowError.invalidArgument(name: "--\(reader.option)", reason: "is only read with \(reader.what)")
        }
    }

    static func oracle(criterion: Criterion, settings: SparsitySettings, loaded: LoadedModel) throws -> OracleController {
        return try OracleController(model: try loaded.requireDifferentiable(for: "--method oracle"), criterion: criterion, settings: settings)
    }

    /// A predictor file, or in a directory `METHOD.safetensors` (what `pipeline` writes), else its
    /// one `METHOD-*.safetensors` (`shadow-plainact.safetensors`), checked against the loaded model.
    static func loadPredictor(method: String, path: String?, loaded: LoadedModel) throws -> Predictor {
        guard let path else { throw ShadowError.invalidArgument(name: "--predictor", reason: "is required by --method \(method)") }
        do {
            return try PredictorFile.load(path: path, kind: PredictorKind(rawValue: method)!, for: ModelFingerprint(loaded: loaded),
                                          forPredictionOnly: true)   // the commands only predict with it
        } catch ShadowError.invalidArgument(let name, let reason) where name.hasPrefix(path) {
            // The library's choice of file names the path; here the option says where it came from.
            throw ShadowError.invalidArgument(name: "--predictor", reason: "\(name) \(reason)")
        }
    }
}

/// What generate and chat report of their masks, as perplexity and eval do: the method, the
/// nominal sparsities and the realised ones (of all heads and neurons, layer 0 dense; nil where
/// a method keeps no count, the oracle).
struct SparsitySummary: Encodable {
    let method: String
    let headSparsity: Double, neuronSparsity: Double
    let realisedHeadSparsity: Double?, realisedNeuronSparsity: Double?
    /// `--packing`, and whether decode ended reading packed copies of the kept rows and their
    /// bytes (`packedBytes` of the generation); nil for the dense model.
    let packing: String?
    let packedRows: Bool?, packedBytes: Int?

    enum CodingKeys: String, CodingKey {
        case method, headSparsity = "head_sparsity", neuronSparsity = "neuron_sparsity"
        case realisedHeadSparsity = "realised_head_sparsity", realisedNeuronSparsity = "realised_neuron_sparsity"
        case packing, packedRows = "packed_rows", packedBytes = "packed_bytes"
    }

    init(_ arguments: ParsedArguments, controller: (any SparsityController)?, shape: TransformerShape, packedBytes: Int) throws {
        method = try arguments.required("method")
        let settings = try SparsityOptions.settings(arguments)
        (headSparsity, neuronSparsity) = method == "dense" ? (0, 0) : (settings.headSparsity, settings.neuronSparsity)
        let realised = Evaluation.realisedSparsity(controller, shape: shape)
        (realisedHeadSparsity, realisedNeuronSparsity) = (realised?.heads, realised?.neurons)
        let sparse = controller != nil
        packing = sparse ? try arguments.required("packing") : nil
        (packedRows, self.packedBytes) = sparse ? (packedBytes > 0, packedBytes) : (nil, nil)
    }

    /// "; random masks, heads 0.50 / neurons 0.50, realised 0.483 / 0.479, kept rows packed (95.3 MB)"
    /// (empty for the dense model).
    var text: String {
        guard method != "dense" else { return "" }
        let realised = realisedHeadSparsity.map { String(format: ", realised %.3f / %.3f", $0, realisedNeuronSparsity ?? 0) } ?? ""
        return String(format: "; %@ masks, heads %.2f / neurons %.2f", method, headSparsity, neuronSparsity) + realised
            + (packedRows == true ? String(format: ", kept rows packed (%.1f MB)", Double(packedBytes ?? 0) / 1e6) : "")
    }
}

/// How a generation ended and how fast it ran: generate --json and each chat --json turn.
struct GenerationOutcome: Encodable {
    let stoppedAtEOS: Bool
    /// The text spelled --stop, and ends before it (a chat keeps the reply's tokens before it).
    let stoppedAtStop: Bool
    /// The prompt and the text filled the context (chat: --context) before --max-tokens.
    let stoppedAtContext: Bool
    /// Ctrl-C or SIGTERM ended the text early (generate then exits with status 130; Ctrl-C in a chat ends only the reply).
    let interrupted: Bool
    let prefillTokensPerSecond: Double
    /// Decode passes per second (the first token comes from the prefill's logits, the last is
    /// never fed back); absent when none ran (one token generated, or none).
    let decodeTokensPerSecond: Double?

    enum CodingKeys: String, CodingKey {
        case stoppedAtEOS = "stopped_at_eos", stoppedAtStop = "stopped_at_stop", stoppedAtContext = "stopped_at_context", interrupted
        case prefillTokensPerSecond = "prefill_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
    }
}

/// A command's own `fields`, then the generation's outcome and masks, in one JSON object.
struct GenerationReport<Fields: Encodable>: Encodable {
    let fields: Fields
    let outcome: GenerationOutcome
    let masks: SparsitySummary

    func encode(to encoder: any Encoder) throws {
        try fields.encode(to: encoder)
        try outcome.encode(to: encoder)
        try masks.encode(to: encoder)
    }
}
