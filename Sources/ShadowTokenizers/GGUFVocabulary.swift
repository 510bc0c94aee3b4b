import ShadowFormats

/// Builds a `TokenizerSpec` from the `tokenizer.ggml.*` metadata of a GGUF file, mirroring the
/// pipelines that the equivalent tokenizer.json files spell out.
struct GGUFVocabulary {
    /// `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type).
    enum TokenType: Int {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    var model: String
    var pre: String?
    var tokens: [String]
    var tokenTypes: [Int]?
    var merges: [String]?
    var scores: [Float]?
    var bosID: Int?
    var eosID: Int?
    var addBOS: Bool?
    var addSpacePrefix: Bool?
    /// `general.name`.
    var modelName: String?
    var path: String

    private func error(_ key: String, _ reason: String) -> ShadowError {
        .corruptFile(path: path, reason: "\(key): \(reason)")
    }

    func spec() throws -> TokenizerSpec {
        guard !tokens.isEmpty else { throw error("tokenizer.ggml.tokens", "missing or empty") }
        if let tokenTypes, tokenTypes.count != tokens.count {
            throw error("tokenizer.ggml.token_type", "has \(tokenTypes.count) entries for \(tokens.count) tokens")
        }
        for (key, id) in [("tokenizer.ggml.bos_token_id", bosID), ("tokenizer.ggml.eos_token_id", eosID)] {
            if let id, !tokens.indices.contains(id) {
                throw error(key, "\(id) is outside the vocabulary of \(tokens.count) tokens")
            }
        }
        var spec = TokenizerSpec(path: path)
        spec.model.vocabulary = tokens.enumerated().map { ($1, $0) }
        spec.model.vocabularyKey = "tokenizer.ggml.tokens"
        spec.model.mergesKey = "tokenizer.ggml.merges"
        spec.bosID = bosID
        spec.eosID = eosID
        spec.addedTokens = addedTokens()
        switch model {
        case "gpt2":
            try buildByteLevel(&spec)
            if addBOS ?? false, let bosID { spec.prefix = [bosID] }
        case "llama":
            try buildSentencePiece(&spec)
            // llama.cpp adds BOS for SentencePiece vocabularies unless the file says otherwise.
            if addBOS ?? true, let bosID { spec.prefix = [bosID] }
        default:
            throw error("tokenizer.ggml.model", "\(quoted(model)) is not supported (gpt2 or llama)")
        }
        return spec
    }

    private func type(of id: Int) -> TokenType? {
        tokenTypes.flatMap { TokenType(rawValue: $0[id]) }
    }

    /// Control and unknown tokens are special (skipped when decoding with skipSpecialTokens);
    /// user-defined ones are matched whole but kept. Without types, BOS and EOS are the specials.
    /// A GGUF holds no lstrip/rstrip; as llama.cpp does for a model whose general.name says
    /// Phi-3, every one of these tokens but <unk>, <s> and <|endoftext|> swallows the white space
    /// after it, as Phi-3's tokenizer.json marks its chat tokens (`rstrip`).
    private func addedTokens() -> [AddedToken] {
        var added: [AddedToken]
        if tokenTypes == nil {
            added = Set([bosID, eosID].compactMap { $0 }).sorted().map {
                AddedToken(id: $0, content: tokens[$0], special: true)
            }
        } else {
            added = tokens.indices.compactMap { id in
                switch type(of: id) {
                case .control, .unknown: return AddedToken(id: id, content: tokens[id], special: true)
                case .userDefined: return AddedToken(id: id, content: tokens[id], special: false)
                default: return nil
                }
            }
        }
        if let name = modelName?.lowercased(), name.contains("phi-3") || name.contains("phi3") {
            for i in added.indices where !["<unk>", "<s>", "<|endoftext|>"].contains(added[i].content) {
                added[i].rightStrip = true
            }
        }
        return added
    }

    /// `tokenizer.ggml.pre` values and the splits they name (llama.cpp's names). Anything else
    /// falls back to the GPT-2 split with a warning.
    static let preTokenizers: [String: [PreTokenizer]] = [
        "default": [.byteLevel(addPrefixSpace: false, useRegex: true)],
        "gpt-2": [.byteLevel(addPrefixSpace: false, useRegex: true)],
        "gpt2": [.byteLevel(addPrefixSpace: false, useRegex: true)],
        "smollm": [.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)],
        "starcoder": [.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)],
        "llama3": [.split(.llama3(maxDigits: 3)), .byteLevel(addPrefixSpace: false, useRegex: false)],
        "llama-v3": [.split(.llama3(maxDigits: 3)), .byteLevel(addPrefixSpace: false, useRegex: false)],
        "llama-bpe": [.split(.llama3(maxDigits: 3)), .byteLevel(addPrefixSpace: false, useRegex: false)],
        "qwen2": [.split(.llama3(maxDigits: 1)), .byteLevel(addPrefixSpace: false, useRegex: false)],
    ]

    private func buildByteLevel(_ spec: inout TokenizerSpec) throws {
        guard let merges else { throw error("tokenizer.ggml.merges", "missing (a gpt2 vocabulary needs merges)") }
        spec.model.merges = try merges.enumerated().map { rank, line in
            guard let rule = BPEModelSpec.MergeRule(line: line, rank: rank) else {
                throw error("tokenizer.ggml.merges[\(rank)]",
                            "expected two tokens separated by one space, found \(quoted(line))")
            }
            return rule
        }
        let name = pre ?? "default"
        if let known = Self.preTokenizers[name] {
            spec.preTokenizers = known
        } else {
            spec.preTokenizers = Self.preTokenizers["default"]!
            spec.warnings.append("\(path): tokenizer.ggml.pre \(quoted(name)) is not one we implement; "
                                 + "using the GPT-2 split, so some texts may tokenize differently")
        }
        // llama.cpp takes a Llama-3 piece whole when it is in the vocabulary, as ignore_merges does.
        spec.model.ignoreMerges = spec.preTokenizers.contains(.split(.llama3(maxDigits: 3)))
        spec.decoders = [.byteLevel]
    }

    /// SentencePiece BPE: no merge list, only a score per piece. Two adjacent symbols merge when
    /// their concatenation is a piece, highest score first (llama.cpp's llm_tokenizer_spm). That is
    /// BPE with one merge rule per way of cutting a piece in two, ranked by the piece's score.
    private func buildSentencePiece(_ spec: inout TokenizerSpec) throws {
        guard var scores else { throw error("tokenizer.ggml.scores", "missing (a llama vocabulary needs scores)") }
        guard scores.count == tokens.count else {
            throw error("tokenizer.ggml.scores", "has \(scores.count) entries for \(tokens.count) tokens")
        }
        scores = scores.map { $0.isNaN ? -.infinity : $0 }  // a NaN would have no rank
        var idOf: [[UInt8]: Int] = [:]
        for (id, token) in tokens.enumerated() { idOf[Array(token.utf8)] = id }
        // Equal scores share a rank, so the leftmost pair wins between them, as in llama.cpp.
        let distinctScores = Set(scores).sorted(by: >)
        let rankOfScore = Dictionary(uniqueKeysWithValues: distinctScores.enumerated().map { ($1, $0) })
        // Both halves of a cut are pieces shorter than the one cut, so only the cuts where both
        // halves have the length of such a piece are looked up (and none past the longest of
        // them): long pieces (a damaged or hostile file) cost their length, not its square.
        let lengthSet = Set(tokens.map(\.utf8.count))
        let lengths = lengthSet.sorted()
        var longestShorter: [Int: Int] = [lengths[0]: 0]
        for (shorter, longer) in zip(lengths, lengths.dropFirst()) { longestShorter[longer] = shorter }
        for (id, token) in tokens.enumerated() {
            if let type = type(of: id), type != .normal { continue }
            let utf8 = Array(token.utf8)
            let scalars = token.unicodeScalars
            guard scalars.count > 1 else { continue }
            let limit = longestShorter[utf8.count]!
            var cut = 0
            for scalar in scalars.dropLast() {
                cut += UTF8.width(scalar)
                if cut > limit { break }
                guard lengthSet.contains(cut), lengthSet.contains(utf8.count - cut),
                      idOf[Array(utf8[..<cut])] != nil, idOf[Array(utf8[cut...])] != nil else { continue }
                spec.model.merges.append(.init(left: String(decoding: utf8[..<cut], as: UTF8.self),
                                               right: String(decoding: utf8[cut...], as: UTF8.self),
                                               rank: rankOfScore[scores[id]]!))
            }
        }
        spec.model.byteFallback = true
        spec.model.fuseUnknown = true
        let unknownID = tokens.indices.first { type(of: $0) == .unknown } ?? idOf[Array("<unk>".utf8)]
        spec.model.unknownToken = unknownID.map { tokens[$0] }
        if addSpacePrefix ?? true {
            spec.normalizers = [.prepend(Array("▁".utf8))]
        }
        spec.normalizers.append(.replace(pattern: [0x20], content: Array("▁".utf8)))
        spec.decoders = [.replace(pattern: Array("▁".utf8), content: [0x20]), .byteFallback, .fuse]
        if addSpacePrefix ?? true {
            spec.decoders?.append(.strip(content: [0x20], start: 1, stop: 0))
        }
    }
}
