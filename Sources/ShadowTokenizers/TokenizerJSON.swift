import Foundation
import ShadowFormats

/// A tokenizer pipeline, stage by stage, as Hugging Face's tokenizer.json lays it out:
/// added tokens → normalizer → pre-tokenizer → model → post-processor, and a decoder for the way
/// back. The GGUF path builds the same description from metadata.
struct TokenizerSpec: Sendable {
    var path: String
    var model = BPEModelSpec()
    var addedTokens: [AddedToken] = []
    var normalizers: [Normalizer] = []
    var preTokenizers: [PreTokenizer] = []
    /// Ids the post-processor puts around a single sequence (BOS in front, for example).
    var prefix: [Int] = []
    var suffix: [Int] = []
    /// nil when the file has no decoder: tokens are then joined with spaces, as tokenizers does.
    var decoders: [TokenDecoder]?
    /// BOS/EOS as ids (GGUF) or as token strings (tokenizer_config.json).
    var bosID: Int?
    var eosID: Int?
    var bosToken: String?
    var eosToken: String?
    var warnings: [String] = []
    var chatTemplate: String?
}

/// Reads tokenizer.json into a `TokenizerSpec`. Every error names the file and the key path of the
/// offending value (`pre_tokenizer.pretokenizers[1].pattern`), in one line.
struct TokenizerJSONReader {
    let path: String

    func read(_ root: JSONValue) throws -> TokenizerSpec {
        guard case .object = root else { throw error(nil, "expected a JSON object at the top level") }
        var spec = TokenizerSpec(path: path)
        spec.model = try model(root)
        spec.addedTokens = try addedTokens(member(root, "added_tokens"))
        spec.normalizers = try normalizers(member(root, "normalizer"), key: "normalizer")
        spec.preTokenizers = try preTokenizers(member(root, "pre_tokenizer"), key: "pre_tokenizer")
        let specialIDs = try postProcessorSpecialTokens(member(root, "post_processor"))
        (spec.prefix, spec.suffix) = try postProcessor(member(root, "post_processor"), key: "post_processor",
                                                       specialIDs: specialIDs)
        if let decoder = member(root, "decoder") {
            spec.decoders = try decoders(decoder, key: "decoder")
        }
        return spec
    }

    /// bos_token / eos_token of a tokenizer_config.json (a string, or an object with "content"), and
    /// its chat_template (a string, or a list of `{name, template}` of which "default" is the one
    /// applied, as in transformers).
    func readConfig(_ root: JSONValue, into spec: inout TokenizerSpec) throws {
        guard case .object = root else { throw error(nil, "expected a JSON object at the top level") }
        func tokenName(_ name: String) throws -> String? {
            guard let value = member(root, name) else { return nil }
            switch value {
            case .string(let text): return text
            case .object: return try requiredString(value, "content", key: name)
            default: throw error(name, "expected a string or an object with \"content\", found \(value.kindName)")
            }
        }
        spec.bosToken = try tokenName("bos_token")
        spec.eosToken = try tokenName("eos_token")
        // Only chat reads the template: one it cannot read is a warning, not a refusal of the model.
        do { spec.chatTemplate = try chatTemplate(member(root, "chat_template")) } catch let error as ShadowError {
            spec.warnings.append("\(error); the chat template is not used")
        }
    }

    /// A processor's chat_template.json (`{"chat_template": …}`, multimodal checkpoints such as
    /// Gemma 3's); the loader reads it only when no other template was found.
    func readProcessorTemplate(_ root: JSONValue, into spec: inout TokenizerSpec) {
        do {
            guard case .object = root else { throw error(nil, "expected a JSON object at the top level") }
            spec.chatTemplate = try chatTemplate(member(root, "chat_template"))
        } catch {
            spec.warnings.append("\(error); the chat template is not used")
        }
    }

    // MARK: Model

    private func model(_ root: JSONValue) throws -> BPEModelSpec {
        guard let model = member(root, "model") else { throw error("model", "missing") }
        guard case .object = model else { throw error("model", "expected an object, found \(model.kindName)") }
        // Old files may omit "type"; a model with merges is BPE.
        let type = try optionalString(model, "type", key: "model") ?? (member(model, "merges") != nil ? "BPE" : nil)
        guard let type else { throw error("model.type", "missing") }
        guard type == "BPE" else {
            throw error("model.type", "\(quoted(type)) models are not supported (only BPE)")
        }
        var spec = BPEModelSpec()
        guard let vocab = member(model, "vocab") else { throw error("model.vocab", "missing") }
        guard case .object(let entries) = vocab else {
            throw error("model.vocab", "expected an object of token → id, found \(vocab.kindName)")
        }
        spec.vocabulary.reserveCapacity(entries.count)
        for (token, value) in entries {
            guard let id = integer(value), id >= 0 else {
                throw error("model.vocab", "token \(quoted(token)) maps to \(value.kindName), expected an id ≥ 0")
            }
            spec.vocabulary.append((token, id))
        }
        if let merges = member(model, "merges") {
            guard case .array(let rules) = merges else {
                throw error("model.merges", "expected an array, found \(merges.kindName)")
            }
            spec.merges.reserveCapacity(rules.count)
            for (rank, rule) in rules.enumerated() {
                let key = "model.merges[\(rank)]"
                switch rule {
                case .string(let line):
                    // The older form, "left right".
                    guard let rule = BPEModelSpec.MergeRule(line: line, rank: rank) else {
                        throw error(key, "expected two tokens separated by one space, found \(quoted(line))")
                    }
                    spec.merges.append(rule)
                case .array(let pair):
                    guard pair.count == 2, case .string(let left) = pair[0], case .string(let right) = pair[1] else {
                        throw error(key, "expected a pair of token strings")
                    }
                    spec.merges.append(.init(left: left, right: right, rank: rank))
                default:
                    throw error(key, "expected \"left right\" or [left, right], found \(rule.kindName)")
                }
            }
        }
        spec.unknownToken = try optionalString(model, "unk_token", key: "model")
        spec.byteFallback = try bool(model, "byte_fallback", key: "model", default: false)
        spec.fuseUnknown = try bool(model, "fuse_unk", key: "model", default: false)
        spec.ignoreMerges = try bool(model, "ignore_merges", key: "model", default: false)
        for affix in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let text = try optionalString(model, affix, key: "model"), !text.isEmpty {
                throw error("model.\(affix)", "\(quoted(text)) is not supported (only empty or null)")
            }
        }
        // "dropout" is a training-time regulariser; inference runs without it, deterministically.
        return spec
    }

    private func addedTokens(_ value: JSONValue?) throws -> [AddedToken] {
        guard let value else { return [] }
        guard case .array(let items) = value else {
            throw error("added_tokens", "expected an array, found \(value.kindName)")
        }
        return try items.enumerated().map { index, item in
            let key = "added_tokens[\(index)]"
            guard case .object = item else { throw error(key, "expected an object, found \(item.kindName)") }
            guard let idValue = member(item, "id") else { throw error("\(key).id", "missing") }
            guard let id = integer(idValue), id >= 0 else { throw error("\(key).id", "expected an id ≥ 0") }
            let special = try bool(item, "special", key: key, default: false)
            return AddedToken(
                id: id,
                content: try requiredString(item, "content", key: key),
                special: special,
                singleWord: try bool(item, "single_word", key: key, default: false),
                leftStrip: try bool(item, "lstrip", key: key, default: false),
                rightStrip: try bool(item, "rstrip", key: key, default: false),
                normalized: try bool(item, "normalized", key: key, default: !special))
        }
    }

    // MARK: Normalizer and pre-tokenizer

    private func normalizers(_ value: JSONValue?, key: String) throws -> [Normalizer] {
        guard let value else { return [] }
        let type = try requiredString(value, "type", key: key)
        switch type {
        case "Sequence":
            return try array(value, "normalizers", key: key).enumerated().flatMap { index, item in
                try normalizers(item.isNull ? nil : item, key: "\(key).normalizers[\(index)]")
            }
        case "Prepend":
            return [.prepend(Array(try requiredString(value, "prepend", key: key).utf8))]
        case "Replace":
            return [.replace(pattern: try literalPattern(value, key: key),
                             content: Array(try requiredString(value, "content", key: key).utf8))]
        case "NFC": return [.nfc]
        case "NFD": return [.nfd]
        case "NFKC": return [.nfkc]
        case "NFKD": return [.nfkd]
        case "Lowercase": return [.lowercase]
        case "Strip":
            return [.strip(left: try bool(value, "left", key: key, default: true),
                           right: try bool(value, "right", key: key, default: true))]
        default:
            throw error("\(key).type", "normalizer \(quoted(type)) is not supported")
        }
    }

    private func preTokenizers(_ value: JSONValue?, key: String) throws -> [PreTokenizer] {
        guard let value else { return [] }
        let type = try requiredString(value, "type", key: key)
        switch type {
        case "Sequence":
            return try array(value, "pretokenizers", key: key).enumerated().flatMap { index, item in
                try preTokenizers(item.isNull ? nil : item, key: "\(key).pretokenizers[\(index)]")
            }
        case "ByteLevel":
            return [.byteLevel(addPrefixSpace: try bool(value, "add_prefix_space", key: key, default: true),
                               useRegex: try bool(value, "use_regex", key: key, default: true))]
        case "Digits":
            return [.digits(individual: try bool(value, "individual_digits", key: key, default: false))]
        case "Metaspace":
            return [.metaspace(replacement: try replacement(value, key: key),
                               prependScheme: try prependScheme(value, key: key),
                               split: try bool(value, "split", key: key, default: true))]
        case "Split":
            let pattern = try splitPattern(value, key: key)
            let name = try optionalString(value, "behavior", key: key) ?? "Isolated"
            guard let behavior = SplitBehavior(name: name) else {
                throw error("\(key).behavior", "\(quoted(name)) is not a Split behavior; expected Removed, Isolated, "
                                               + "MergedWithPrevious, MergedWithNext or Contiguous")
            }
            // Released tokenizers use their regexes with Isolated only; the other behaviours are
            // implemented for literal patterns alone.
            if case .regex = pattern, behavior != .isolated {
                throw error("\(key).behavior", "\(quoted(name)) is not supported with a Regex pattern (only Isolated)")
            }
            guard try !bool(value, "invert", key: key, default: false) else {
                throw error("\(key).invert", "inverted splits are not supported")
            }
            switch pattern {
            case .literal(let text): return [.splitLiteral(pattern: text, behavior: behavior)]
            case .regex(let split): return [.split(split)]
            }
        default:
            throw error("\(key).type", "pre-tokenizer \(quoted(type)) is not supported")
        }
    }

    private enum SplitPatternValue {
        case literal([UInt8])
        case regex(SplitPattern)
    }

    /// Split's `{"String": "…"}` (non-empty) or `{"Regex": "…"}` (one of the regexes we know).
    private func splitPattern(_ value: JSONValue, key: String) throws -> SplitPatternValue {
        guard let pattern = member(value, "pattern") else { throw error("\(key).pattern", "missing") }
        if let text = try optionalString(pattern, "String", key: "\(key).pattern") {
            // tokenizers would accept "" and split between characters; no tokenizer asks for that.
            guard !text.isEmpty else { throw error("\(key).pattern", "an empty String pattern is not supported") }
            return .literal(Array(text.utf8))
        }
        guard let regex = try optionalString(pattern, "Regex", key: "\(key).pattern") else {
            throw error("\(key).pattern", "expected a String or a Regex pattern, found \(describe(pattern))")
        }
        guard let split = SplitPattern(regex: regex) else {
            throw error("\(key).pattern", "unsupported regex \(quoted(regex)); "
                                          + "known patterns are GPT-2's, Llama-3's and Qwen2's")
        }
        return .regex(split)
    }

    // MARK: Post-processor and decoder

    /// The ids of TemplateProcessing's special tokens, by name, wherever it sits in a Sequence.
    private func postProcessorSpecialTokens(_ value: JSONValue?) throws -> [String: [Int]] {
        guard let value else { return [:] }
        var result: [String: [Int]] = [:]
        if case .array(let processors)? = member(value, "processors") {
            for processor in processors {
                result.merge(try postProcessorSpecialTokens(processor)) { $1 }
            }
        }
        if case .object(let tokens)? = member(value, "special_tokens") {
            for (name, token) in tokens {
                guard case .array(let ids)? = member(token, "ids") else { continue }
                result[name] = ids.compactMap(integer)
            }
        }
        return result
    }

    private func postProcessor(_ value: JSONValue?, key: String,
                               specialIDs: [String: [Int]]) throws -> (prefix: [Int], suffix: [Int]) {
        guard let value else { return ([], []) }
        let type = try requiredString(value, "type", key: key)
        switch type {
        case "ByteLevel":
            return ([], [])  // adjusts offsets only
        case "TemplateProcessing":
            var prefix: [Int] = []
            var suffix: [Int] = []
            var seenSequence = false
            for (index, item) in try array(value, "single", key: key).enumerated() {
                let itemKey = "\(key).single[\(index)]"
                if member(item, "Sequence") != nil {
                    seenSequence = true
                } else if let special = member(item, "SpecialToken") {
                    let name = try requiredString(special, "id", key: "\(itemKey).SpecialToken")
                    guard let ids = specialIDs[name] else {
                        throw error("\(key).special_tokens", "no entry for \(quoted(name)), used in \(itemKey)")
                    }
                    if seenSequence { suffix += ids } else { prefix += ids }
                } else {
                    throw error(itemKey, "expected a Sequence or a SpecialToken")
                }
            }
            return (prefix, suffix)
        case "RobertaProcessing", "BertProcessing":
            func token(_ name: String) throws -> Int {
                guard case .array(let pair)? = member(value, name), pair.count == 2, let id = integer(pair[1]) else {
                    throw error("\(key).\(name)", "expected [token, id]")
                }
                return id
            }
            return ([try token("cls")], [try token("sep")])
        case "Sequence":
            var prefix: [Int] = []
            var suffix: [Int] = []
            for (index, item) in try array(value, "processors", key: key).enumerated() {
                // Each processor wraps what the previous ones produced.
                let inner = try postProcessor(item.isNull ? nil : item, key: "\(key).processors[\(index)]",
                                              specialIDs: specialIDs)
                prefix = inner.prefix + prefix
                suffix += inner.suffix
            }
            return (prefix, suffix)
        default:
            throw error("\(key).type", "post-processor \(quoted(type)) is not supported")
        }
    }

    private func decoders(_ value: JSONValue, key: String) throws -> [TokenDecoder] {
        let type = try requiredString(value, "type", key: key)
        switch type {
        case "Sequence":
            return try array(value, "decoders", key: key).enumerated().flatMap { index, item in
                item.isNull ? [] : try decoders(item, key: "\(key).decoders[\(index)]")
            }
        case "ByteLevel": return [.byteLevel]
        case "ByteFallback": return [.byteFallback]
        case "Fuse": return [.fuse]
        case "Replace":
            return [.replace(pattern: try literalPattern(value, key: key),
                             content: Array(try requiredString(value, "content", key: key).utf8))]
        case "Strip":
            let content = try requiredString(value, "content", key: key)
            guard let start = integer(member(value, "start") ?? .number(0)),
                  let stop = integer(member(value, "stop") ?? .number(0)), start >= 0, stop >= 0 else {
                throw error("\(key).start", "expected counts ≥ 0 in start and stop")
            }
            return [.strip(content: Array(content.utf8), start: start, stop: stop)]
        case "Metaspace":
            return [.metaspace(replacement: try replacement(value, key: key),
                               prependScheme: try prependScheme(value, key: key))]
        default:
            throw error("\(key).type", "decoder \(quoted(type)) is not supported")
        }
    }

    // MARK: Shared pieces

    /// Metaspace's replacement character (SentencePiece's "▁" by default).
    private func replacement(_ value: JSONValue, key: String) throws -> [UInt8] {
        let text = try optionalString(value, "replacement", key: key) ?? "▁"
        guard text.unicodeScalars.count == 1 else {
            throw error("\(key).replacement", "expected one character, found \(quoted(text))")
        }
        return Array(text.utf8)
    }

    /// `prepend_scheme`, or the older `add_prefix_space` flag it replaced.
    private func prependScheme(_ value: JSONValue, key: String) throws -> PrependScheme {
        if let name = try optionalString(value, "prepend_scheme", key: key) {
            guard let scheme = PrependScheme(rawValue: name.lowercased()) else {
                throw error("\(key).prepend_scheme", "expected always, first or never, found \(quoted(name))")
            }
            return scheme
        }
        return try bool(value, "add_prefix_space", key: key, default: true) ? .always : .never
    }

    /// `{"String": "…"}` patterns of Replace; regex patterns are not supported.
    private func literalPattern(_ value: JSONValue, key: String) throws -> [UInt8] {
        guard let pattern = member(value, "pattern") else { throw error("\(key).pattern", "missing") }
        guard let text = try optionalString(pattern, "String", key: "\(key).pattern"), !text.isEmpty else {
            throw error("\(key).pattern", "only non-empty String patterns are supported, found \(describe(pattern))")
        }
        return Array(text.utf8)
    }

    private func describe(_ value: JSONValue) -> String {
        if case .object(let members) = value, let first = members.first {
            if case .string(let text) = first.value { return "\(first.key) \(quoted(text))" }
            return first.key
        }
        return value.kindName
    }

    /// chat_template: a string, or named templates (`[{"name": "default", "template": …}, …]`).
    private func chatTemplate(_ value: JSONValue?) throws -> String? {
        guard let value else { return nil }
        switch value {
        case .string(let text): return text
        case .array(let entries):
            for (index, entry) in entries.enumerated() {
                let key = "chat_template[\(index)]"
                guard case .object = entry else { throw error(key, "expected an object, found \(entry.kindName)") }
                if try requiredString(entry, "name", key: key) == "default" {
                    return try requiredString(entry, "template", key: key)
                }
            }
            return nil
        default:
            throw error("chat_template", "expected a string or a list of named templates, found \(value.kindName)")
        }
    }

    func error(_ key: String?, _ reason: String) -> ShadowError {
        .badJSON(path: path, key: key, reason: reason)
    }

    /// A member that is present and not null.
    private func member(_ parent: JSONValue, _ name: String) -> JSONValue? {
        guard let value = parent[name], !value.isNull else { return nil }
        return value
    }

    private func joined(_ key: String, _ name: String) -> String { key.isEmpty ? name : "\(key).\(name)" }

    private func requiredString(_ parent: JSONValue, _ name: String, key: String) throws -> String {
        guard let text = try optionalString(parent, name, key: key) else { throw error(joined(key, name), "missing") }
        return text
    }

    private func optionalString(_ parent: JSONValue, _ name: String, key: String) throws -> String? {
        guard let value = member(parent, name) else { return nil }
        guard case .string(let text) = value else {
            throw error(joined(key, name), "expected a string, found \(value.kindName)")
        }
        return text
    }

    private func bool(_ parent: JSONValue, _ name: String, key: String, default fallback: Bool) throws -> Bool {
        guard let value = member(parent, name) else { return fallback }
        guard case .bool(let flag) = value else {
            throw error(joined(key, name), "expected true or false, found \(value.kindName)")
        }
        return flag
    }

    private func array(_ parent: JSONValue, _ name: String, key: String) throws -> [JSONValue] {
        guard let value = member(parent, name) else { throw error(joined(key, name), "missing") }
        guard case .array(let items) = value else {
            throw error(joined(key, name), "expected an array, found \(value.kindName)")
        }
        return items
    }

    private func integer(_ value: JSONValue) -> Int? {
        guard case .number(let number) = value, number == number.rounded(), abs(number) < 9e15 else { return nil }
        return Int(number)
    }
}
