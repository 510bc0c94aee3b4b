import Foundation

/// Normalizers rewrite a text segment before it is split (tokenizer.json `normalizer`). Applied to
/// each stretch of text between added tokens separately, as Hugging Face tokenizers does: with
/// Llama-2's `Prepend("▁")` every such stretch gains its own leading "▁".
enum Normalizer: Sendable, Equatable {
    /// Put `prefix` in front of a non-empty segment (Llama-2's "▁", SentencePiece's dummy prefix).
    case prepend([UInt8])
    /// Replace every occurrence of a literal string.
    case replace(pattern: [UInt8], content: [UInt8])
    case nfc, nfd, nfkc, nfkd
    case lowercase
    /// Remove leading and/or trailing whitespace.
    case strip(left: Bool, right: Bool)

    func apply(_ text: [UInt8]) -> [UInt8] {
        switch self {
        case .prepend(let prefix):
            return text.isEmpty ? text : prefix + text
        case .replace(let pattern, let content):
            return replaceAll(in: text[...], of: pattern, with: content)
        case .nfc:
            return Array(string(text).precomposedStringWithCanonicalMapping.utf8)
        case .nfd:
            return Array(string(text).decomposedStringWithCanonicalMapping.utf8)
        case .nfkc:
            return Array(string(text).precomposedStringWithCompatibilityMapping.utf8)
        case .nfkd:
            return Array(string(text).decomposedStringWithCompatibilityMapping.utf8)
        case .lowercase:
            return Array(string(text).lowercased().utf8)
        case .strip(let left, let right):
            let scalars = Array(string(text).unicodeScalars)
            var start = 0
            var end = scalars.count
            if left { while start < end, scalars[start].properties.isWhitespace { start += 1 } }
            if right { while end > start, scalars[end - 1].properties.isWhitespace { end -= 1 } }
            var kept = String.UnicodeScalarView()
            kept.append(contentsOf: scalars[start..<end])
            return Array(String(kept).utf8)
        }
    }

    private func string(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
}

extension Array where Element == Normalizer {
    func apply(_ text: ArraySlice<UInt8>) -> [UInt8] {
        reduce([UInt8](text)) { text, normalizer in normalizer.apply(text) }
    }
}
