import Foundation
import ShadowFormats
import ShadowModels
import ShadowTokenizers

/// `shadowllm info`: what a checkpoint holds.
enum InfoCommand {
    struct Report: Encodable {
        let path: String
        let format: String
        let architecture: String
        /// The checkpoint's model_type when only its text model runs (a multimodal `gemma3`).
        let textModelOf: String?
        let layers: Int
        let hiddenSize: Int
        let heads: Int
        let kvHeads: Int
        let headDim: Int
        let ffnSize: Int
        let vocabularySize: Int
        let maxContext: Int
        /// Sliding-window attention's window, and how many layers slide (all, or those the config names).
        let slidingWindow: Int?
        let slidingLayers: Int?
        /// Gemma's soft-caps of the attention scores and of the logits.
        let attentionSoftcap: Float?, logitSoftcap: Float?
        /// Why max_context ends before the checkpoint's declared context (LongRoPE's original context).
        let contextLimit: String?
        let parameters: Int
        /// `--weights`, and the bytes of weights one decoded token reads in it (every matrix, the LM head included).
        let weights: String
        let decodeBytesPerToken: Int
        let sourceDTypes: [String: Int]
        let tokenizer: Bool
        /// The tokenizer's BOS and EOS (tokenizer_config.json or GGUF metadata, else guessed from
        /// its special tokens' names).
        let bosTokenID: Int?
        let eosTokenID: Int?
        let addsBOS: Bool?
        /// Every id generate stops at: the tokenizer's EOS and the model's own (config.json and
        /// generation_config.json, or GGUF's EOS and EOT); chat and --chat add the turn's end.
        let stopTokenIDs: [Int]
        /// The turn template `chat` and `generate --chat` would build ("ChatML", "Llama 3", "Phi-3", "Gemma"), nil
        /// when they would refuse the tokenizer.
        let chatTemplate: String?
        /// Why they would refuse it (nil when they would not, or without a tokenizer).
        let chatTemplateProblem: String?
        /// The system turn's text they open with when no --system is given (nil: none).
        let defaultSystem: String?

        enum CodingKeys: String, CodingKey {
            case path, format, architecture, layers, heads, parameters, tokenizer
            case hiddenSize = "hidden_size", kvHeads = "kv_heads", headDim = "head_dim", ffnSize = "ffn_size"
            case vocabularySize = "vocab_size", maxContext = "max_context", slidingWindow = "sliding_window", sourceDTypes = "source_dtypes"
            case contextLimit = "context_limit", slidingLayers = "sliding_layers", textModelOf = "text_model_of"
            case attentionSoftcap = "attention_softcap", logitSoftcap = "logit_softcap"
            case bosTokenID = "bos_token_id", eosTokenID = "eos_token_id", addsBOS = "adds_bos", stopTokenIDs = "stop_token_ids"
            case chatTemplate = "chat_template", chatTemplateProblem = "chat_template_problem", defaultSystem = "default_system"
            case weights, decodeBytesPerToken = "decode_bytes_per_token"
        }
    }

    static let command = Command(
        name: "info", abstract: "Show a model's architecture, sizes, parameter count and dtypes.",
        // --threads would change nothing info prints.
        options: ModelOptions.options.filter { $0.name != "threads" } + [.flag("json", help: "Print JSON.")]
    ) { arguments, console in
        let loaded = try ModelOptions.load(arguments, console: console)
        let s = loaded.model.shape
        let chatResult = loaded.tokenizer.map { tokenizer in Result { try ChatTemplate(tokenizer: tokenizer, option: "chat") } }
        let chat = try? chatResult?.get()
        var chatProblem: String? {
            guard case .failure(let error) = chatResult else { return nil }
            if case ShadowError.invalidArgument(_, let reason) = error { return reason }
            return "\(error)"
        }
        let llama = (loaded.model as? LlamaModel)?.config
        let window = loaded.model.slidingWindow
        let sliding = window == nil ? nil : llama.map { c in (0..<c.layers).filter { c.window(layer: $0) != nil }.count } ?? s.layers
        let report = Report(
            path: loaded.path, format: loaded.format.rawValue, architecture: loaded.model.architecture, textModelOf: loaded.textModelOf,
            layers: s.layers, hiddenSize: s.hiddenSize, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim,
            ffnSize: s.ffnSize, vocabularySize: s.vocabularySize, maxContext: s.maxContext,
            slidingWindow: window, slidingLayers: sliding, attentionSoftcap: llama?.attentionSoftcap, logitSoftcap: llama?.logitSoftcap,
            contextLimit: loaded.model.contextLimit,
            parameters: loaded.model.parameterCount,
            weights: loaded.model.weightDType.rawValue, decodeBytesPerToken: loaded.model.decodeBytesPerToken,
            sourceDTypes: loaded.model.sourceDTypes,
            tokenizer: loaded.tokenizer != nil, bosTokenID: loaded.tokenizer?.bosTokenID,
            eosTokenID: loaded.tokenizer?.eosTokenID, addsBOS: loaded.tokenizer?.addsBOS, stopTokenIDs: loaded.stopTokens.sorted(),
            chatTemplate: chat?.family.rawValue, chatTemplateProblem: chatProblem, defaultSystem: chat.flatMap { $0.systemContent($0.defaultSystem) })
        if arguments.flag("json") {
            console.print(try JSONOutput.string(report))
            return
        }
        let dtypes = report.sourceDTypes.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
        let windowText = report.slidingWindow.map { window in
            ", sliding-window attention over \(window) tokens" + (report.slidingLayers.map { $0 < s.layers ? " in \($0) of \(s.layers) layers" : "" } ?? "")
        } ?? ""
        let caps = [report.attentionSoftcap.map { "scores \(String(format: "%g", Double($0)))" }, report.logitSoftcap.map { "logits \(String(format: "%g", Double($0)))" }].compactMap { $0 }
        let capsLine = caps.isEmpty ? "" : "\nsoft-capping  " + caps.joined(separator: ", ")
        console.print("""
            model         \(report.path)
            format        \(report.format)
            architecture  \(report.architecture)\(report.textModelOf.map { ", the text model of a multimodal \($0) checkpoint (its vision tower is not read)" } ?? "")
            layers        \(s.layers)
            hidden size   \(s.hiddenSize)
            heads         \(s.heads) query, \(s.kvHeads) key/value, width \(s.headDim)
            ffn size      \(s.ffnSize)
            vocabulary    \(s.vocabularySize)
            context       \(s.maxContext)\(report.contextLimit.map { " (\($0))" } ?? "")\(windowText)\(capsLine)
            parameters    \(report.parameters) (\(String(format: "%.1f", Double(report.parameters) / 1e6)) M)
            file dtypes   \(dtypes)
            weights       \(report.weights) in memory (--weights), \(String(format: "%.1f", Double(report.decodeBytesPerToken) / 1e6)) MB read per decoded token
            tokenizer     \(report.tokenizer ? "yes, BOS \(report.addsBOS == true ? "added" : "not added")" : "none")
            stops at ids  \(report.stopTokenIDs.isEmpty ? "none but a chat turn's end" : report.stopTokenIDs.map(String.init).joined(separator: ", "))
            chat          \(report.chatTemplate.map { "\($0) turns" + (report.defaultSystem.map { ", default system turn \($0.debugDescription)" } ?? ", no default system turn") } ?? report.chatTemplateProblem.map { "none: " + $0 } ?? "no chat template this tool builds")
            """)
    }
}
