/// A token matched as a whole string in the text before any splitting (tokenizer.json
/// `added_tokens`; GGUF control and user-defined tokens). `special` ones are dropped by
/// `decode(_:skipSpecialTokens: true)`.
struct AddedToken: Sendable, Equatable {
    var id: Int
    var content: String
    var special: Bool
    /// Match only where the token is not glued to a word character on either side.
    var singleWord = false
    /// Swallow whitespace on the left / right of a match.
    var leftStrip = false
    var rightStrip = false
    /// Match against the normalized text rather than the raw text.
    var normalized = false
}

/// Cuts text at added tokens. Among matches the leftmost wins, and among those starting at the same
/// place the longest ("leftmost-longest", as the Aho-Corasick automaton in tokenizers is set up),
/// so "<|im_start|>" is never read as a shorter token that is its prefix. A match that is set
/// aside (a single-word token glued to a word; a special token when special tokens are not
/// recognised) stays text, and the search goes on after it, as tokenizers' does: tokens that
/// overlap it are not looked for.
struct AddedTokenMatcher: Sendable {
    enum Segment: Equatable {
        case text(Range<Int>)
        case token(Int)
    }

    private struct Pattern: Sendable {
        var bytes: [UInt8]
        var token: AddedToken
    }

    /// Patterns by their first byte, longest first.
    private let patternsByFirstByte: [[Pattern]]

    /// nil when there is nothing to match.
    init?(_ tokens: [(pattern: [UInt8], token: AddedToken)]) {
        var table = [[Pattern]](repeating: [], count: 256)
        for (pattern, token) in tokens where !pattern.isEmpty {
            table[Int(pattern[0])].append(Pattern(bytes: pattern, token: token))
        }
        guard table.contains(where: { !$0.isEmpty }) else { return nil }
        patternsByFirstByte = table.map { $0.sorted { $0.bytes.count > $1.bytes.count } }
    }

    /// The text between matches and the ids of the matches, in order; text ranges are indices of
    /// `text` and never empty. With `matchingSpecial` false, special tokens are left as text
    /// (tokenizers' `encode_special_tokens`); the others are still matched.
    func split(_ text: ArraySlice<UInt8>, matchingSpecial: Bool = true) -> [Segment] {
        var segments: [Segment] = []
        var textStart = text.startIndex
        var i = text.startIndex
        while i < text.endIndex {
            guard let pattern = patternsByFirstByte[Int(text[i])].first(where: { text[i...].starts(with: $0.bytes) }) else {
                i += 1
                continue
            }
            var start = i
            var end = i + pattern.bytes.count
            let token = pattern.token
            if token.special && !matchingSpecial
                || token.singleWord && (wordCharacter(before: start, in: text) || wordCharacter(at: end, in: text)) {
                i = end
                continue
            }
            if token.leftStrip {
                while start > textStart, let (value, length) = scalar(before: start, in: text),
                      CharacterClass.of(value) == .whitespace {
                    start -= length
                }
            }
            if token.rightStrip {
                while end < text.endIndex {
                    let (value, length) = decodeUTF8(text, at: end)
                    guard CharacterClass.of(value) == .whitespace else { break }
                    end += length
                }
            }
            if textStart < start { segments.append(.text(textStart..<start)) }
            segments.append(.token(token.id))
            textStart = end
            i = end
        }
        if textStart < text.endIndex { segments.append(.text(textStart..<text.endIndex)) }
        return segments
    }

    private func scalar(before index: Int, in text: ArraySlice<UInt8>) -> (UInt32, Int)? {
        guard index > text.startIndex else { return nil }
        var start = index - 1
        while start > text.startIndex, text[start] & 0xC0 == 0x80 { start -= 1 }
        return decodeUTF8(text, at: start)
    }

    /// tokenizers decides "glued to a word" with the Rust regex crate's Unicode `\w`: Alphabetic,
    /// marks, decimal digits, connector punctuation and the joiners. So "single½" still matches
    /// (½ is a number but not a digit) while "single\u{0301}" and "single\u{200D}" do not.
    private func isWordCharacter(_ value: UInt32) -> Bool {
        if value < 0x80 { return value == 0x5F || [.letter, .number].contains(CharacterClass.of(value)) }
        guard let properties = Unicode.Scalar(value)?.properties, isKnownToReference(properties) else { return false }
        if properties.isAlphabetic || properties.isJoinControl { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    private func wordCharacter(before index: Int, in text: ArraySlice<UInt8>) -> Bool {
        scalar(before: index, in: text).map { isWordCharacter($0.0) } ?? false
    }

    private func wordCharacter(at index: Int, in text: ArraySlice<UInt8>) -> Bool {
        index < text.endIndex && isWordCharacter(decodeUTF8(text, at: index).value)
    }
}
