/// Pre-tokenizers cut normalized text into pieces that BPE then encodes one at a time (merges never
/// cross a piece boundary). Each stage splits every piece the previous stage produced, as in
/// Hugging Face tokenizers' `Sequence`. Pieces are UTF-8 slices.
enum PreTokenizer: Sendable, Equatable {
    /// GPT-2's ByteLevel: optionally a leading space on every piece that lacks one, then (if
    /// `useRegex`) the GPT-2 split. The byte → character map itself is applied by the BPE model.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    /// A `Split` whose regex is one of the patterns we implement by hand (behaviour "Isolated").
    case split(SplitPattern)
    /// A `Split` on a literal string (Gemma's " "): its occurrences and the text between them
    /// become pieces as `behavior` says.
    case splitLiteral(pattern: [UInt8], behavior: SplitBehavior)
    /// Numbers apart from the rest: each digit alone (`individual`) or digit runs together.
    case digits(individual: Bool)
    /// SentencePiece's Metaspace: spaces become `replacement` ("▁"), a leading one is added per
    /// `prependScheme`, and (if `split`) the text is cut before every replacement character.
    case metaspace(replacement: [UInt8], prependScheme: PrependScheme, split: Bool)

    /// Appends the pieces of `piece` to `pieces`. `atTextStart` says the piece begins the input
    /// text (not merely a segment after an added token); Metaspace's "first" scheme needs it.
    func split(_ piece: ArraySlice<UInt8>, atTextStart: Bool, into pieces: inout [ArraySlice<UInt8>]) {
        switch self {
        case .byteLevel(let addPrefixSpace, let useRegex):
            var piece = piece
            if addPrefixSpace, piece.first != 0x20 { piece = ArraySlice([0x20] + piece) }
            if useRegex {
                SplitPattern.gpt2.split(piece, into: &pieces)
            } else {
                pieces.append(piece)
            }
        case .split(let pattern):
            pattern.split(piece, into: &pieces)
        case .splitLiteral(let pattern, let behavior):
            behavior.split(piece, on: pattern, into: &pieces)
        case .digits(let individual):
            splitDigits(piece, individual: individual, into: &pieces)
        case .metaspace(let replacement, let scheme, let split):
            var replaced = replaceAll(in: piece, of: [0x20], with: replacement)
            let prepend = scheme == .always || (scheme == .first && atTextStart)
            if prepend, !replaced.starts(with: replacement) { replaced = replacement + replaced }
            if split {
                // tokenizers' Metaspace is this Split: each mark leads the piece after it.
                SplitBehavior.mergedWithNext.split(ArraySlice(replaced), on: replacement, into: &pieces)
            } else {
                pieces.append(ArraySlice(replaced))
            }
        }
    }
}

/// When SentencePiece-style tokenizers add the "▁" that makes a first word look like any other.
enum PrependScheme: String, Sendable {
    case always, first, never
}

/// The split regexes that released tokenizers use, implemented by hand over Unicode scalars:
/// Swift's Regex is far slower, and these patterns are fixed, so a hand-written matcher is exact.
enum SplitPattern: Sendable, Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// Llama-3's pattern: case-insensitive contractions, one non-letter glued before a word,
    /// digit runs of at most `maxDigits` (3 for Llama-3, 1 for Qwen2), newlines kept with
    /// punctuation and with the whitespace before them.
    case llama3(maxDigits: Int)

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The pattern a tokenizer.json regex spells, if it is one we know.
    init?(regex: String) {
        switch regex {
        case Self.gpt2Regex: self = .gpt2
        case Self.llama3Regex: self = .llama3(maxDigits: 3)
        case Self.qwen2Regex: self = .llama3(maxDigits: 1)
        default: return nil
        }
    }

    /// Bytes matched at a time in a long piece (see `split`).
    static let stretchLength = 1 << 16

    /// Appends the matches of the pattern in `piece`; both patterns match every character, so the
    /// matches tile the piece. A long piece is matched a stretch at a time, each ending where a
    /// space follows an ASCII letter: no match of either pattern runs across that point (letter
    /// runs and contractions stop at the space, and what matches from the space on depends only on
    /// what follows), so the matches are the same, while the decoded scalars (13 bytes per byte of
    /// text) are held for one stretch instead of a whole text.
    func split(_ piece: ArraySlice<UInt8>, into pieces: inout [ArraySlice<UInt8>]) {
        var start = piece.startIndex
        while piece.endIndex - start > Self.stretchLength {
            var end = start + Self.stretchLength
            while end < piece.endIndex, !(piece[end] == 0x20 && CharacterClass.isASCIILetter(piece[end - 1])) { end += 1 }
            splitStretch(piece[start..<end], into: &pieces)
            start = end
        }
        splitStretch(piece[start...], into: &pieces)
    }

    func splitStretch(_ piece: ArraySlice<UInt8>, into pieces: inout [ArraySlice<UInt8>]) {
        guard !piece.isEmpty else { return }
        let text = ScalarText(piece)
        var i = 0
        while i < text.count {
            let end: Int
            switch self {
            case .gpt2: end = text.gpt2MatchEnd(from: i)
            case .llama3(let maxDigits): end = text.llama3MatchEnd(from: i, maxDigits: maxDigits)
            }
            pieces.append(piece[text.offsets[i]..<text.offsets[end]])
            i = end
        }
    }
}

/// The character classes the split patterns tell apart: `\p{L}`, `\p{N}`, `\s`, everything else.
enum CharacterClass: UInt8 {
    case letter, number, whitespace, other

    private static let ascii: [CharacterClass] = (0..<128).map { value in
        switch value {
        case 0x41...0x5A, 0x61...0x7A: return .letter
        case 0x30...0x39: return .number
        case 0x09...0x0D, 0x20: return .whitespace
        default: return .other
        }
    }

    static func isASCIILetter(_ byte: UInt8) -> Bool {
        (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
    }

    /// `\s` is Unicode White_Space; `\p{L}` and `\p{N}` are the general categories L* and N*.
    static func of(_ value: UInt32) -> CharacterClass {
        if value < 128 { return ascii[Int(value)] }
        guard let scalar = Unicode.Scalar(value) else { return .other }
        let properties = scalar.properties
        if properties.isWhitespace { return .whitespace }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return isKnownToReference(properties) ? .letter : .other
        case .decimalNumber, .letterNumber, .otherNumber:
            return isKnownToReference(properties) ? .number : .other
        default:
            return .other
        }
    }
}

/// The Unicode version of the character tables in Hugging Face tokenizers (0.23: Oniguruma for
/// the split regexes, Rust's std and regex crate for digits and word characters). Swift's own
/// tables may be newer (Swift 6.3 has Unicode 17), and characters assigned since are still
/// unassigned, so neither letters nor numbers, to the reference: U+A7CE '꟎' glued to "'s" splits
/// differently otherwise. Measured with scripts/reference/tokenizer_differential.py --sweep.
let referenceUnicodeVersion = (major: 16, minor: 0)

/// Whether the character was assigned by `referenceUnicodeVersion`.
func isKnownToReference(_ properties: Unicode.Scalar.Properties) -> Bool {
    guard let age = properties.age else { return false }
    return (age.major, age.minor) <= referenceUnicodeVersion
}

/// A UTF-8 slice decoded into scalars, their classes and their byte offsets (absolute indices into
/// the slice, with one extra entry for the end).
struct ScalarText {
    var values: [UInt32] = []
    var classes: [CharacterClass] = []
    var offsets: [Int] = []
    var count: Int { values.count }

    init(_ bytes: ArraySlice<UInt8>) {
        values.reserveCapacity(bytes.count)
        classes.reserveCapacity(bytes.count)
        offsets.reserveCapacity(bytes.count + 1)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let (value, length) = decodeUTF8(bytes, at: i)
            values.append(value)
            classes.append(CharacterClass.of(value))
            offsets.append(i)
            i += length
        }
        offsets.append(bytes.endIndex)
    }

    private func runEnd(from start: Int, of characterClass: CharacterClass) -> Int {
        var k = start
        while k < count, classes[k] == characterClass { k += 1 }
        return k
    }

    /// End of the GPT-2 pattern's match at `i`: the alternatives are tried in order, as the regex
    /// engine does, and each is greedy.
    func gpt2MatchEnd(from i: Int) -> Int {
        if let end = contractionEnd(from: i, ignoringCase: false) { return end }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
        var j = i
        if values[i] == 0x20, i + 1 < count, classes[i + 1] != .whitespace { j = i + 1 }
        if classes[j] != .whitespace { return runEnd(from: j + 1, of: classes[j]) }
        return whitespaceEnd(from: i)
    }

    /// End of the Llama-3 pattern's match at `i`.
    func llama3MatchEnd(from i: Int, maxDigits: Int) -> Int {
        if let end = contractionEnd(from: i, ignoringCase: true) { return end }
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if classes[i] == .letter { return runEnd(from: i + 1, of: .letter) }
        if i + 1 < count, classes[i + 1] == .letter, classes[i] != .number, !isNewline(values[i]) {
            return runEnd(from: i + 2, of: .letter)
        }
        // `\p{N}{1,3}`
        if classes[i] == .number {
            var k = i + 1
            while k < count, k - i < maxDigits, classes[k] == .number { k += 1 }
            return k
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        var j = i
        if values[i] == 0x20, i + 1 < count, classes[i + 1] == .other { j = i + 1 }
        if classes[j] == .other {
            var k = runEnd(from: j + 1, of: .other)
            while k < count, isNewline(values[k]) { k += 1 }
            return k
        }
        // `\s*[\r\n]+`: backtracking leaves the match at the last newline of the whitespace run.
        let runEnd = runEnd(from: i, of: .whitespace)
        if let lastNewline = (i..<runEnd).last(where: { isNewline(values[$0]) }) { return lastNewline + 1 }
        return whitespaceEnd(from: i)
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d`, optionally case-insensitive (Unicode folding adds only 'ſ' → s).
    private func contractionEnd(from i: Int, ignoringCase: Bool) -> Int? {
        guard values[i] == 0x27, i + 1 < count else { return nil }
        func letter(_ k: Int) -> UInt32 {
            let v = values[k]
            guard ignoringCase else { return v }
            if v == 0x17F { return 0x73 }  // ſ folds to s
            return (0x41...0x5A).contains(v) ? v + 0x20 : v
        }
        let a = letter(i + 1)
        if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }  // s t m d
        guard i + 2 < count else { return nil }
        let b = letter(i + 2)
        if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return i + 3 }  // re ve ll
        return nil
    }

    /// `\s+(?!\S)|\s+` at a whitespace character: a run that reaches the end (or a lone character)
    /// is taken whole; otherwise its last character is left to prefix the word that follows.
    private func whitespaceEnd(from i: Int) -> Int {
        let k = runEnd(from: i + 1, of: .whitespace)
        if k == count || k - i == 1 { return k }
        return k - 1
    }

    private func isNewline(_ value: UInt32) -> Bool { value == 0x0A || value == 0x0D }
}

/// Decodes the scalar starting at `i`. Input comes from Swift strings, so it is valid UTF-8;
/// a stray byte is still read as one scalar of its own rather than trusted.
@inline(__always)
func decodeUTF8(_ bytes: ArraySlice<UInt8>, at i: Int) -> (value: UInt32, length: Int) {
    let lead = bytes[i]
    if lead < 0x80 { return (UInt32(lead), 1) }
    let length: Int
    var value: UInt32
    switch lead {
    case 0xC0..<0xE0: length = 2; value = UInt32(lead & 0x1F)
    case 0xE0..<0xF0: length = 3; value = UInt32(lead & 0x0F)
    case 0xF0..<0xF8: length = 4; value = UInt32(lead & 0x07)
    default: return (0xFFFD, 1)
    }
    guard i + length <= bytes.endIndex else { return (0xFFFD, 1) }
    for k in 1..<length {
        let byte = bytes[i + k]
        guard byte & 0xC0 == 0x80 else { return (0xFFFD, 1) }
        value = value << 6 | UInt32(byte & 0x3F)
    }
    return (value, length)
}

/// Digits(individual_digits): numeric characters (general category N*) split from the rest.
/// tokenizers asks Rust's `char::is_numeric` here, whose tables are newer than its regexes' (the
/// digits U+11DE0… of Unicode 17 count here but not in `\p{N}`), so this takes Swift's own tables
/// without the `referenceUnicodeVersion` cut.
private func splitDigits(_ piece: ArraySlice<UInt8>, individual: Bool, into pieces: inout [ArraySlice<UInt8>]) {
    var start = piece.startIndex
    var runIsNumeric = false
    var i = piece.startIndex
    while i < piece.endIndex {
        let (value, length) = decodeUTF8(piece, at: i)
        let numeric = isNumeric(value)
        if i > start, numeric != runIsNumeric || (numeric && individual) {
            pieces.append(piece[start..<i])
            start = i
        }
        runIsNumeric = numeric
        i += length
    }
    if start < piece.endIndex { pieces.append(piece[start..<piece.endIndex]) }
}

/// General category Nd, Nl or No in Swift's Unicode tables.
private func isNumeric(_ value: UInt32) -> Bool {
    if value < 128 { return (0x30...0x39).contains(value) }
    switch Unicode.Scalar(value)?.properties.generalCategory {
    case .decimalNumber?, .letterNumber?, .otherNumber?: return true
    default: return false
    }
}

/// What tokenizers' `Split` does with each occurrence of its pattern; the examples split
/// "the-final--countdown" on "-". The raw values are the names tokenizer.json spells.
enum SplitBehavior: String, Sendable, CaseIterable {
    /// Dropped: "the", "final", "countdown".
    case removed = "Removed"
    /// A piece of its own: "the", "-", "final", "-", "-", "countdown".
    case isolated = "Isolated"
    /// Ends the piece before it: "the-", "final-", "-", "countdown".
    case mergedWithPrevious = "MergedWithPrevious"
    /// Starts the piece after it: "the", "-final", "-", "-countdown".
    case mergedWithNext = "MergedWithNext"
    /// Adjacent occurrences make one piece: "the", "-", "final", "--", "countdown".
    case contiguous = "Contiguous"

    /// The behaviour a tokenizer.json names, in any letter case ("isolated" was always accepted).
    init?(name: String) {
        let name = name.lowercased()
        guard let behavior = Self.allCases.first(where: { $0.rawValue.lowercased() == name }) else { return nil }
        self = behavior
    }

    /// Appends the pieces of `text` split on the non-empty `pattern`. Occurrences are found left to
    /// right without overlapping, as tokenizers' search for the escaped pattern finds them; both are
    /// valid UTF-8, so a byte match starts on a character. Empty pieces are dropped, as there.
    func split(_ text: ArraySlice<UInt8>, on pattern: [UInt8], into pieces: inout [ArraySlice<UInt8>]) {
        guard let first = pattern.first else {
            if !text.isEmpty { pieces.append(text) }
            return
        }
        var start = text.startIndex  // where the piece being built begins
        var previousEnd: Int?  // end of the previous occurrence, for Contiguous
        func cut(at end: Int) {
            if start < end { pieces.append(text[start..<end]) }
            start = end
        }
        var i = text.startIndex
        while i < text.endIndex {
            guard text[i] == first, text[i...].starts(with: pattern) else {
                i += 1
                continue
            }
            let end = i + pattern.count
            switch self {
            case .removed:
                cut(at: i)
                start = end
            case .isolated:
                cut(at: i)
                cut(at: end)
            case .mergedWithPrevious:
                cut(at: end)
            case .mergedWithNext:
                cut(at: i)
            case .contiguous:
                // An occurrence apart from the previous one closes that run; the text between is a piece.
                if previousEnd != i {
                    if let previousEnd { cut(at: previousEnd) }
                    cut(at: i)
                }
                previousEnd = end
            }
            i = end
        }
        if let previousEnd { cut(at: previousEnd) }
        cut(at: text.endIndex)
    }
}

/// Every occurrence of `pattern` replaced by `replacement`, left to right, byte-exact (Foundation's
/// string replacement compares by canonical equivalence).
func replaceAll(in text: ArraySlice<UInt8>, of pattern: [UInt8], with replacement: [UInt8]) -> [UInt8] {
    guard !pattern.isEmpty else { return Array(text) }
    var result: [UInt8] = []
    result.reserveCapacity(text.count)
    var i = text.startIndex
    let first = pattern[0]
    while i < text.endIndex {
        if text[i] == first, text[i...].starts(with: pattern) {
            result.append(contentsOf: replacement)
            i += pattern.count
        } else {
            result.append(text[i])
            i += 1
        }
    }
    return result
}
