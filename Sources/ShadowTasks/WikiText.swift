import ShadowFormats

/// WikiText (Merity et al. 2016): the text itself, no items. Read as stored — the tokenized
/// release's spacing (" @-@ ", " , "), its " = Heading = " lines and blank lines are part of what
/// the perplexity is measured on — but for a UTF-8 byte-order mark and Windows line breaks, which
/// Python's text mode drops too. lm-eval scores it article by article (`pages`).
enum WikiText {
    static func read(path: String) throws -> String {
        var bytes = try readTaskFile(path)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        if bytes.contains(0x0D) { bytes = droppingCarriageReturnsBeforeLineFeeds(bytes) }
        if let first = bytes.first(where: { ![0x20, 0x09, 0x0A].contains($0) }), first == UInt8(ascii: "{") || first == UInt8(ascii: "[") {
            throw ShadowError.corruptFile(path: path, reason: "looks like JSON; wikitext reads the raw or tokenized text release as it is")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            let lines = try SourceLines(path: path)
            for index in 0..<lines.count { _ = try lines.text(index) }  // names the bad line
            throw ShadowError.corruptFile(path: path, reason: "not valid UTF-8")
        }
        if text.allSatisfy(\.isWhitespace) {
            throw ShadowError.corruptFile(path: path, reason: "no text (the file is empty)")
        }
        return text
    }

    /// `bytes` with every "\r" that ends a line removed ("\r\n" → "\n").
    private static func droppingCarriageReturnsBeforeLineFeeds(_ bytes: [UInt8]) -> [UInt8] {
        var kept: [UInt8] = []
        kept.reserveCapacity(bytes.count)
        for (index, byte) in bytes.enumerated() where !(byte == 0x0D && index + 1 < bytes.count && bytes[index + 1] == 0x0A) {
            kept.append(byte)
        }
        return kept
    }

    /// lm-eval's `wikitext_detokenizer` (`wikitext/preprocess_wikitext.py`), step for step in its
    /// order: lm-eval scores this text but divides by the words and bytes of the text before it.
    /// Both WikiText releases (raw and tokenized) space out punctuation and number separators
    /// the same way; the tokenized one's `<unk>` stays as it is.
    static func detokenize(_ text: String) -> String {
        var string = text.pythonReplacing("s '", with: "s'")
        // `re.sub(r"/' [0-9]/", r"/'[0-9]/", s)`: the replacement is the literal text "[0-9]".
        string = string.replacingSlashQuoteDigit
        for (old, new) in [(" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."),
                           (" : ", ": "), (" ; ", "; "), (" . ", ". "), (" ! ", "! "), (" ? ", "? "), (" , ", ", ")] {
            string = string.pythonReplacing(old, with: new)
        }
        // `re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", s)` and its [ ], { }, " " and ' ' siblings.
        for (open, close) in [("(", ")"), ("[", "]"), ("{", "}"), ("\"", "\""), ("'", "'")] as [(Unicode.Scalar, Unicode.Scalar)] {
            string = string.trimmingInsidePairs(open: open, close: close)
        }
        for (old, new) in [("= = = =", "===="), ("= = =", "==="), ("= =", "=="), (" \u{B0} ", "\u{B0}"),
                           (" \n", "\n"), ("\n ", "\n"), (" N ", " 1 "), (" 's", "'s")] {
            string = string.pythonReplacing(old, with: new)
        }
        return string
    }

    /// The articles ("pages") lm-eval scores one by one, split as the document-level WikiText
    /// that lm-eval reads (EleutherAI/wikitext_document_level) splits the line-level release: a
    /// line that reads "= Title =" once "= = =" and "= =" are closed up and white space stripped
    /// (a level-1 heading; " = = Section = = " is not one) starts a new page. Pages are their
    /// lines joined by "\n" (the line break before the next title is dropped); a white-space-only
    /// page before the first title is skipped; the last page is kept whatever it holds. A text
    /// without such a heading is one page.
    static func pages(_ text: String) -> [String] {
        var pages: [String] = []
        var lines: [Substring] = []
        for raw in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            let line = Substring(raw)
            let closed = String(line).pythonReplacing("= = =", with: "===").pythonReplacing("= =", with: "==").pythonStripped
            if closed.hasPrefix("= ") && closed.hasSuffix(" =") {
                let page = lines.joined(separator: "\n")
                if !page.pythonStripped.isEmpty { pages.append(page) }
                lines = []
            }
            lines.append(line)
        }
        pages.append(lines.joined(separator: "\n"))
        return pages
    }

    /// How lm-eval counts a page's words: `len(re.split(r"\s+", page))`, i.e. one more than the
    /// number of white-space runs — a page that starts or ends with white space counts an empty
    /// "word" there, as Python's split does.
    static func wordCount(_ text: String) -> Int {
        var runs = 0
        var inRun = false
        for scalar in text.unicodeScalars {
            let space = isPythonSpace(scalar)
            if space && !inRun { runs += 1 }
            inRun = space
        }
        return runs + 1
    }
}

extension String {
    /// `re.sub(open + r"\s*([^" + close + r"]*?)\s*" + close, open + r"\1" + close, s)`: left to
    /// right, each `open` and the first `close` after it lose the white space just inside them;
    /// an `open` with no `close` after it is left alone and the scan goes on from the next code
    /// point. For quotes (`open == close`) this pairs the first with the second, and so on.
    func trimmingInsidePairs(open: Unicode.Scalar, close: Unicode.Scalar) -> String {
        let scalars = Array(unicodeScalars)
        guard scalars.contains(open) else { return self }
        var result = String.UnicodeScalarView()
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            if scalar == open, let end = scalars[(index + 1)...].firstIndex(of: close) {
                var from = index + 1, to = end
                while from < to, isPythonSpace(scalars[from]) { from += 1 }
                while to > from, isPythonSpace(scalars[to - 1]) { to -= 1 }
                result.append(open)
                result.append(contentsOf: scalars[from..<to])
                result.append(close)
                index = end + 1
            } else {
                result.append(scalar)
                index += 1
            }
        }
        return String(result)
    }

    /// `re.sub(r"/' [0-9]/", r"/'[0-9]/", s)`: "/' " + an ASCII digit + "/" becomes "/'[0-9]/".
    var replacingSlashQuoteDigit: String {
        guard contains("/' ") else { return self }
        let scalars = Array(unicodeScalars)
        var result = String.UnicodeScalarView()
        var index = 0
        while index < scalars.count {
            if index + 4 < scalars.count, scalars[index] == "/", scalars[index + 1] == "'", scalars[index + 2] == " ",
               ("0"..."9").contains(scalars[index + 3]), scalars[index + 4] == "/" {
                result.append(contentsOf: "/'[0-9]/".unicodeScalars)
                index += 5
            } else {
                result.append(scalars[index])
                index += 1
            }
        }
        return String(result)
    }
}
