// Python's white space and `strip`, on Unicode scalars (Python's code points) rather than Swift's
// grapheme clusters, so that a combining mark after a space does not hide it. Task templates
// (lm-evaluation-harness builds prompts in Python) and chat templates (Jinja's `trim`) use them.

/// Python's `str.isspace()` for one code point: Unicode White_Space plus the four ASCII
/// information separators (U+001C…U+001F) that Python also counts.
public func isPythonSpace(_ scalar: Unicode.Scalar) -> Bool {
    scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
}

extension String {
    /// Python's `str.strip()` (also Jinja's `trim`, which chat templates use).
    public var pythonStripped: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !isPythonSpace($0) }),
              let last = scalars.lastIndex(where: { !isPythonSpace($0) }) else { return "" }
        return String(scalars[first...last])
    }

    /// Python's `str.rstrip()`.
    public var pythonRightStripped: String {
        let scalars = unicodeScalars
        guard let last = scalars.lastIndex(where: { !isPythonSpace($0) }) else { return "" }
        return String(scalars[...last])
    }
}
