/// Turns generated ids into text as they arrive, yielding only complete characters.
///
/// One token can end in the middle of a UTF-8 sequence ("東" is three byte tokens in a small
/// vocabulary), and decoders treat the start of a text specially (Llama-2 strips the leading
/// space). So rather than decoding token by token, this decodes a short window of recent tokens
/// twice — without and with the new ones — and yields the difference once it no longer ends in an
/// incomplete character. The concatenated output equals `decode` of all ids.
public struct StreamingDecoder: Sendable {
    public let tokenizer: any Tokenizer
    public let skipSpecialTokens: Bool
    private var ids: [Int] = []
    /// ids[windowStart..<emittedEnd] were already yielded and serve as context for what follows.
    private var windowStart = 0
    private var emittedEnd = 0

    public init(tokenizer: any Tokenizer, skipSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the text it completes (often "", e.g. mid-character).
    public mutating func append(_ id: Int) -> String {
        ids.append(id)
        let context = decodedBytes(ids[windowStart..<emittedEnd])
        let full = decodedBytes(ids[windowStart...])
        // An incomplete character at the end decodes as U+FFFD (EF BF BD): wait for more bytes.
        guard full.count > context.count, !full.suffix(3).elementsEqual([0xEF, 0xBF, 0xBD]) else { return "" }
        windowStart = emittedEnd
        emittedEnd = ids.count
        return String(decoding: newBytes(full, after: context), as: UTF8.self)
    }

    /// Everything not yet yielded, incomplete characters included (as U+FFFD).
    public mutating func flush() -> String {
        guard emittedEnd < ids.count else { return "" }
        let context = decodedBytes(ids[windowStart..<emittedEnd])
        let full = decodedBytes(ids[windowStart...])
        windowStart = emittedEnd
        emittedEnd = ids.count
        return String(decoding: newBytes(full, after: context), as: UTF8.self)
    }

    /// All ids appended so far.
    public var tokenIDs: [Int] { ids }

    private func decodedBytes(_ window: ArraySlice<Int>) -> [UInt8] {
        Array(tokenizer.decode(Array(window), skipSpecialTokens: skipSpecialTokens).utf8)
    }

    /// The part of `full` beyond `context`. Decoding is prefix-stable for the tokenizers we build,
    /// but should a decoder rewrite earlier text, what was already yielded cannot be taken back:
    /// yield from the first difference.
    private func newBytes(_ full: [UInt8], after context: [UInt8]) -> ArraySlice<UInt8> {
        var common = 0
        while common < context.count, common < full.count, context[common] == full[common] { common += 1 }
        return full[common...]
    }
}
