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
    /// The ids decoded on each call: the last yielded chunk (context for decoders that treat the
    /// start of a text specially), then the ids not yet yielded.
    private var window: [Int] = []
    /// How many ids at the front of `window` were already yielded.
    private var yieldedCount = 0

    /// More ids than this waiting to complete a character cannot be one character (UTF-8 needs at
    /// most four bytes): the text ends in invalid bytes, or the ids decode to nothing (skipped
    /// special tokens). Past it the decoder stops waiting, so that a long run of such ids costs
    /// linear time rather than re-decoding an ever longer window on every call.
    static let maxPending = 16

    public init(tokenizer: any Tokenizer, skipSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the text it completes (often "", e.g. mid-character).
    public mutating func append(_ id: Int) -> String {
        ids.append(id)
        window.append(id)
        let context = decodedBytes(window[..<yieldedCount])
        let full = decodedBytes(window[...])
        // An incomplete character at the end decodes as U+FFFD (EF BF BD): wait for more bytes.
        if full.count > context.count, !full.suffix(3).elementsEqual([0xEF, 0xBF, 0xBD]) {
            return advance(full, after: context)
        }
        guard window.count - yieldedCount > Self.maxPending else { return "" }
        if full.count > context.count { return advance(full, after: context) }
        // These ids add nothing to the text: drop them from the window and keep the context.
        window.removeSubrange(yieldedCount...)
        return ""
    }

    /// Everything not yet yielded, incomplete characters included (as U+FFFD).
    public mutating func flush() -> String {
        guard yieldedCount < window.count else { return "" }
        return advance(decodedBytes(window[...]), after: decodedBytes(window[..<yieldedCount]))
    }

    /// All ids appended so far.
    public var tokenIDs: [Int] { ids }

    /// Yields what `full` adds to `context`; the ids just yielded become the next context.
    private mutating func advance(_ full: [UInt8], after context: [UInt8]) -> String {
        window.removeFirst(yieldedCount)
        yieldedCount = window.count
        return String(decoding: newBytes(full, after: context), as: UTF8.self)
    }

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
