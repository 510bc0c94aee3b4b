import ShadowFormats

// lm-evaluation-harness builds prompts with Python string methods. These are their exact
// counterparts, working on Unicode scalars (Python's code points) rather than Swift's grapheme
// clusters, so that a combining mark after "_" or " " does not hide it. (`isPythonSpace`,
// `pythonStripped` and `pythonRightStripped` live in ShadowFormats: chat templates use them too.)

extension String {
    /// Python's `str.capitalize()` (3.8+): the first code point title-cased, every other one
    /// lower-cased — "he Is" becomes "He is", not "He Is". Like Python, a capital sigma at the
    /// end of a word becomes the final "ς" ("ΟΔΟΣ" → "Οδος").
    var pythonCapitalized: String {
        let scalars = Array(unicodeScalars)
        guard let first = scalars.first else { return self }
        var result = first.properties.titlecaseMapping
        for index in scalars.indices.dropFirst() {
            if scalars[index] == "\u{3A3}" {
                result.unicodeScalars.append(Self.isFinalSigma(scalars, at: index) ? "\u{3C2}" : "\u{3C3}")
            } else {
                result += scalars[index].properties.lowercaseMapping
            }
        }
        return result
    }

    /// CPython's `handle_capital_sigma` (Unicode's Final_Sigma condition): "Σ" lower-cases to
    /// "ς" when a cased letter comes before it and none after it, case-ignorable code points
    /// (apostrophes, combining marks, …) skipped both ways.
    static func isFinalSigma(_ scalars: [Unicode.Scalar], at index: Int) -> Bool {
        guard let before = scalars[..<index].lastIndex(where: { !$0.properties.isCaseIgnorable }),
              scalars[before].properties.isCased else { return false }
        guard let after = scalars[(index + 1)...].firstIndex(where: { !$0.properties.isCaseIgnorable }) else {
            return true
        }
        return !scalars[after].properties.isCased
    }

    /// `s[0].lower() + s[1:]`: lm-eval's COPA `convert_choice`.
    var lowercasingFirst: String {
        guard let first = unicodeScalars.first else { return self }
        return first.properties.lowercaseMapping + String(unicodeScalars.dropFirst())
    }

    /// Python's `str.replace(old, new)`: every non-overlapping occurrence, left to right, in one
    /// pass ("   ".replace("  ", " ") is "  "). Patterns here are ASCII, so matching UTF-8 bytes is
    /// matching code points: an ASCII byte never occurs inside a multi-byte sequence.
    func pythonReplacing(_ old: String, with new: String) -> String {
        let source = Array(utf8)
        let pattern = Array(old.utf8)
        guard !pattern.isEmpty, source.count >= pattern.count else { return self }
        var result: [UInt8] = []
        result.reserveCapacity(source.count)
        var index = 0
        var changed = false
        while index < source.count {
            if source[index] == pattern[0], index + pattern.count <= source.count,
               source[index..<index + pattern.count].elementsEqual(pattern) {
                result.append(contentsOf: new.utf8)
                index += pattern.count
                changed = true
            } else {
                result.append(source[index])
                index += 1
            }
        }
        return changed ? String(decoding: result, as: UTF8.self) : self
    }

    /// `re.sub(r"\[.*?\]", "", s)`: each "[" up to the nearest "]" after it goes, brackets
    /// included; `.` does not cross a line break, and a "[" with no "]" after it on its line stays.
    var removingBracketedText: String {
        let source = Array(utf8)
        guard source.contains(UInt8(ascii: "[")) else { return self }
        var result: [UInt8] = []
        result.reserveCapacity(source.count)
        var index = 0
        while index < source.count {
            if source[index] == UInt8(ascii: "[") {
                var close = index + 1
                while close < source.count, source[close] != UInt8(ascii: "]"), source[close] != 0x0A { close += 1 }
                if close < source.count, source[close] == UInt8(ascii: "]") {
                    index = close + 1
                    continue
                }
            }
            result.append(source[index])
            index += 1
        }
        return String(decoding: result, as: UTF8.self)
    }
}
