/// Decoders turn the token strings of a sequence back into text (tokenizer.json `decoder`). Each
/// stage maps a list of tokens (UTF-8 bytes) to a new list, as in Hugging Face tokenizers; the
/// final text is their concatenation.
enum TokenDecoder: Sendable, Equatable {
    /// Map GPT-2's stand-in characters back to bytes and read them as UTF-8 (lossily).
    case byteLevel
    /// Replace a literal string in every token (Llama-2: "▁" → " ").
    case replace(pattern: [UInt8], content: [UInt8])
    /// Turn runs of "<0xNN>" tokens into the text their bytes spell, or one U+FFFD per byte when
    /// they are not valid UTF-8.
    case byteFallback
    /// Join all tokens into one.
    case fuse
    /// Remove up to `start` leading and `stop` trailing copies of `content` from every token.
    case strip(content: [UInt8], start: Int, stop: Int)
    /// "▁" → " ", except that the first token loses its "▁"s (the prefix SentencePiece added).
    case metaspace(replacement: [UInt8], prependScheme: PrependScheme)

    /// `midStream` decodes tokens that do not start the sequence (streaming one token at a time):
    /// the stages that exist to undo the prefix added at the start of the text leave them alone.
    /// `raw` keeps bytes that are not valid UTF-8 as they are, where tokenizers writes U+FFFD.
    func apply(_ tokens: [[UInt8]], midStream: Bool, raw: Bool = false) -> [[UInt8]] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                // Tokens outside the byte map (rare added tokens) pass through as their own UTF-8.
                bytes.append(contentsOf: ByteLevel.bytes(ofToken: token) ?? token)
            }
            return [raw ? bytes : Array(String(decoding: bytes, as: UTF8.self).utf8)]
        case .replace(let pattern, let content):
            return tokens.map { replaceAll(in: $0[...], of: pattern, with: content) }
        case .byteFallback:
            return Self.fallBackToBytes(tokens, raw: raw)
        case .fuse:
            return [tokens.flatMap { $0 }]
        case .strip(let content, let start, let stop):
            return tokens.map { Self.strip($0, content: content, start: midStream ? 0 : start, stop: stop) }
        case .metaspace(let replacement, let scheme):
            return tokens.enumerated().map { index, token in
                let dropsPrefix = index == 0 && !midStream && scheme != .never
                return replaceAll(in: token[...], of: replacement, with: dropsPrefix ? [] : [0x20])
            }
        }
    }

    /// The byte a "<0xNN>" token stands for.
    static func byteValue(of token: [UInt8]) -> UInt8? {
        guard token.count == 6, token.starts(with: Array("<0x".utf8)), token[5] == UInt8(ascii: ">") else {
            return nil
        }
        return UInt8(String(decoding: token[3..<5], as: UTF8.self), radix: 16)
    }

    private static func fallBackToBytes(_ tokens: [[UInt8]], raw: Bool) -> [[UInt8]] {
        var result: [[UInt8]] = []
        var pending: [UInt8] = []
        func flush() {
            guard !pending.isEmpty else { return }
            if raw || isValidUTF8(pending) {
                result.append(pending)
            } else {
                result.append(contentsOf: repeatElement(Array("\u{FFFD}".utf8), count: pending.count))
            }
            pending.removeAll()
        }
        for token in tokens {
            if let byte = byteValue(of: token) {
                pending.append(byte)
            } else {
                flush()
                result.append(token)
            }
        }
        flush()
        return result
    }

    private static func strip(_ token: [UInt8], content: [UInt8], start: Int, stop: Int) -> [UInt8] {
        guard !content.isEmpty else { return token }
        var slice = token[...]
        var removed = 0
        while removed < start, slice.starts(with: content) {
            slice = slice.dropFirst(content.count)
            removed += 1
        }
        removed = 0
        while removed < stop, slice.count >= content.count, slice.suffix(content.count).elementsEqual(content) {
            slice = slice.dropLast(content.count)
            removed += 1
        }
        return Array(slice)
    }
}

extension Array where Element == TokenDecoder {
    func decode(_ tokens: [[UInt8]], midStream: Bool, raw: Bool = false) -> [UInt8] {
        reduce(tokens) { tokens, decoder in decoder.apply(tokens, midStream: midStream, raw: raw) }.flatMap { $0 }
    }
}

/// Whether `bytes` is well-formed UTF-8 (no overlong forms, surrogates or truncated sequences).
func isValidUTF8(_ bytes: [UInt8]) -> Bool {
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue: continue
        case .emptyInput: return true
        case .error: return false
        }
    }
}
