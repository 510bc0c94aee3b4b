import ShadowFormats

/// The tokenizer both file formats build: byte-level BPE (GPT-2, OPT, SmolLM2, Llama-3) and
/// SentencePiece-style BPE (Llama-2) are the same pipeline with different stages.
///
/// encode: added tokens are cut out of the raw text first; each stretch of text between them is
/// normalized, pre-tokenized into pieces, and each piece is BPE-encoded. decode: ids → token
/// strings → the decoder stages.
final class BPETokenizer: Tokenizer {
    let vocabularySize: Int
    let bosTokenID: Int?
    let eosTokenID: Int?
    let addsBOS: Bool
    let warnings: [String]
    let chatTemplate: String?

    /// Vocabulary entries by id (added tokens take precedence); nil for ids nothing uses.
    private let tokenStrings: [String?]
    private let tokenUTF8: [[UInt8]]
    private let isSpecial: [Bool]
    /// Added tokens matched in the raw text, and those (normalized: true) matched after normalizing.
    private let rawMatcher: AddedTokenMatcher?
    private let normalizedMatcher: AddedTokenMatcher?
    /// Added tokens that swallow the white space beside them (lstrip, rstrip), by id.
    private let whitespaceStrips: [Int: (left: Bool, right: Bool)]
    private let normalizers: [Normalizer]
    private let preTokenizers: [PreTokenizer]
    /// Internal rather than private so tests can compare the two merge loops.
    let model: BPEModel
    private let prefix: [Int]
    private let suffix: [Int]
    private let decoders: [TokenDecoder]?

    /// `fail(key, reason)` makes the error for a bad value, in the terms of the source file.
    init(_ spec: TokenizerSpec, fail: (String, String) -> ShadowError) throws {
        let byteLevel = spec.preTokenizers.contains {
            if case .byteLevel = $0 { return true }
            return false
        }
        let model = try BPEModel(spec.model, byteLevel: byteLevel, fail: fail)
        self.model = model

        let largestID = max(spec.model.vocabulary.map(\.id).max() ?? -1, spec.addedTokens.map(\.id).max() ?? -1)
        // Ids index dense tables; a stray huge id would allocate gigabytes.
        guard largestID < 1 << 24 else {
            throw fail(spec.model.vocabularyKey, "id \(largestID) is implausibly large for a vocabulary")
        }
        let vocabularySize = largestID + 1
        self.vocabularySize = vocabularySize
        var strings = [String?](repeating: nil, count: vocabularySize)
        var special = [Bool](repeating: false, count: vocabularySize)
        for (token, id) in spec.model.vocabulary { strings[id] = token }
        for token in spec.addedTokens {
            // tokenizers (0.23) spells a normalized added token in its normalized form, and decodes
            // it so: Llama-2's "<custom>" reads back as "▁<custom>", i.e. " <custom>".
            strings[token.id] = token.normalized
                ? String(decoding: spec.normalizers.apply(Array(token.content.utf8)[...]), as: UTF8.self)
                : token.content
            special[token.id] = token.special
        }
        tokenStrings = strings
        tokenUTF8 = strings.map { Array(($0 ?? "").utf8) }
        isSpecial = special

        normalizers = spec.normalizers
        preTokenizers = spec.preTokenizers
        let added = spec.addedTokens.filter { !$0.content.isEmpty }
        whitespaceStrips = Dictionary(added.filter { $0.leftStrip || $0.rightStrip }.map { ($0.id, ($0.leftStrip, $0.rightStrip)) },
                                      uniquingKeysWith: { first, _ in first })
        rawMatcher = AddedTokenMatcher(added.filter { !$0.normalized }.map { (Array($0.content.utf8), $0) })
        // tokenizers matches normalized added tokens by their normalized spelling.
        normalizedMatcher = AddedTokenMatcher(added.filter(\.normalized).map {
            (spec.normalizers.apply(Array($0.content.utf8)[...]), $0)
        })

        for (key, ids) in [("prefix", spec.prefix), ("suffix", spec.suffix)] {
            if let bad = ids.first(where: { !(0..<vocabularySize).contains($0) }) {
                throw fail("post_processor", "\(key) id \(bad) is outside the vocabulary of \(vocabularySize) tokens")
            }
        }
        prefix = spec.prefix
        suffix = spec.suffix
        addsBOS = !spec.prefix.isEmpty
        decoders = spec.decoders
        warnings = spec.warnings
        chatTemplate = spec.chatTemplate

        // BOS/EOS: explicit ids (GGUF), then tokenizer_config.json's names, then the template,
        // then the names released models use.
        func id(of token: String) -> Int? {
            let utf8 = Array(token.utf8)
            if let added = spec.addedTokens.last(where: { Array($0.content.utf8) == utf8 }) { return added.id }
            return model.vocabulary[utf8].map(Int.init)
        }
        let bosNames = ["<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<|endoftext|>"]
        let eosNames = ["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<|eot_id|>", "<|im_end|>"]
        bosTokenID = spec.bosID ?? spec.bosToken.flatMap(id) ?? spec.prefix.first ?? bosNames.lazy.compactMap(id).first
        eosTokenID = spec.eosID ?? spec.eosToken.flatMap(id) ?? spec.suffix.last ?? eosNames.lazy.compactMap(id).first
    }

    // MARK: Encoding

    func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        encode(text, matchingSpecial: true, atTextStart: true, into: &ids)
        return ids
    }

    func encode(_ parts: [PromptPart]) -> [Int] {
        var ids: [Int] = []
        for (index, part) in parts.enumerated() {
            switch part {
            case .token(let id): ids.append(id)
            case .text(let text):
                // A marker that swallows the white space beside it (Phi-3's rstrip ones) does so
                // here as it would in the template's text.
                var scalars = Substring(text).unicodeScalars[...]
                if index > 0, case .token(let id) = parts[index - 1], whitespaceStrips[id]?.right == true {
                    scalars = scalars.drop { CharacterClass.of($0.value) == .whitespace }
                }
                if index + 1 < parts.count, case .token(let id) = parts[index + 1], whitespaceStrips[id]?.left == true {
                    while let last = scalars.last, CharacterClass.of(last.value) == .whitespace { scalars = scalars.dropLast() }
                }
                // Text starts the input only when nothing comes before it (Metaspace's "first").
                encode(String(scalars), matchingSpecial: false, atTextStart: ids.isEmpty, into: &ids)
            }
        }
        return ids
    }

    func addingSpecialTokens(_ ids: [Int]) -> [Int] {
        prefix + ids + suffix
    }

    /// Cuts `text` at added tokens (special ones only when `matchingSpecial`), then encodes the
    /// stretches between them.
    private func encode(_ text: String, matchingSpecial: Bool, atTextStart: Bool, into ids: inout [Int]) {
        let bytes = Array(text.utf8)
        ids.reserveCapacity(ids.count + bytes.count / 3)
        guard let rawMatcher else {
            encodeSegment(bytes[...], matchingSpecial: matchingSpecial, atTextStart: atTextStart, into: &ids)
            return
        }
        for segment in rawMatcher.split(bytes[...], matchingSpecial: matchingSpecial) {
            switch segment {
            case .token(let id): ids.append(id)
            case .text(let range):
                encodeSegment(bytes[range], matchingSpecial: matchingSpecial, atTextStart: atTextStart && range.lowerBound == 0,
                              into: &ids)
            }
        }
    }

    /// Normalizes one stretch of text between added tokens, then pre-tokenizes and encodes it.
    private func encodeSegment(_ text: ArraySlice<UInt8>, matchingSpecial: Bool, atTextStart: Bool, into ids: inout [Int]) {
        let normalized = normalizers.isEmpty ? text : normalizers.apply(text)[...]
        guard let normalizedMatcher else {
            encodeNormalized(normalized, atTextStart: atTextStart, into: &ids)
            return
        }
        for segment in normalizedMatcher.split(normalized, matchingSpecial: matchingSpecial) {
            switch segment {
            case .token(let id): ids.append(id)
            case .text(let range):
                let startsText = atTextStart && range.lowerBound == normalized.startIndex
                encodeNormalized(normalized[range], atTextStart: startsText, into: &ids)
            }
        }
    }

    private func encodeNormalized(_ text: ArraySlice<UInt8>, atTextStart: Bool, into ids: inout [Int]) {
        var pieces = [text]
        for preTokenizer in preTokenizers.dropLast() {
            var next: [ArraySlice<UInt8>] = []
            next.reserveCapacity(pieces.count * 2)
            for (index, piece) in pieces.enumerated() where !piece.isEmpty {
                preTokenizer.split(piece, atTextStart: atTextStart && index == 0, into: &next)
            }
            pieces = next
        }
        guard let last = preTokenizers.last else {
            for piece in pieces { model.encode(piece, into: &ids) }
            return
        }
        // The last pre-tokenizer's pieces (words, for byte-level ones: 32 bytes of slice per four
        // or five bytes of text) are encoded piece by piece rather than gathered for the whole
        // text first, which would cost several times a long text's size in memory.
        var words: [ArraySlice<UInt8>] = []
        for (index, piece) in pieces.enumerated() where !piece.isEmpty {
            words.removeAll(keepingCapacity: true)
            last.split(piece, atTextStart: atTextStart && index == 0, into: &words)
            for word in words { model.encode(word, into: &ids) }
        }
    }

    // MARK: Decoding

    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        text(of: decodedTokens(ids, skipSpecialTokens: skipSpecialTokens), midStream: false)
    }

    func decodeBytes(_ ids: [Int], skipSpecialTokens: Bool) -> [UInt8] {
        bytes(of: decodedTokens(ids, skipSpecialTokens: skipSpecialTokens), midStream: false, raw: true)
    }

    /// The token strings of `ids` that decoding reads.
    private func decodedTokens(_ ids: [Int], skipSpecialTokens: Bool) -> [[UInt8]] {
        var tokens: [[UInt8]] = []
        tokens.reserveCapacity(ids.count)
        // Ids outside the vocabulary are ignored, as tokenizers does.
        for id in ids where tokenString(id) != nil && !(skipSpecialTokens && isSpecial[id]) {
            tokens.append(tokenUTF8[id])
        }
        return tokens
    }

    func decodeToken(_ id: Int) -> String {
        guard tokenString(id) != nil else { return "" }
        return text(of: [tokenUTF8[id]], midStream: true)
    }

    func tokenString(_ id: Int) -> String? {
        tokenStrings.indices.contains(id) ? tokenStrings[id] : nil
    }

    private func text(of tokens: [[UInt8]], midStream: Bool) -> String {
        String(decoding: bytes(of: tokens, midStream: midStream, raw: false), as: UTF8.self)
    }

    /// `raw`: bytes that are not valid UTF-8 stay as they are (else U+FFFD, as tokenizers).
    private func bytes(of tokens: [[UInt8]], midStream: Bool, raw: Bool) -> [UInt8] {
        guard let decoders else { return Array(tokens.joined(separator: [0x20])) }
        return decoders.decode(tokens, midStream: midStream, raw: raw)
    }
}
