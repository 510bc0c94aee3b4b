import ShadowFormats

/// COPA (Roemmele et al. 2011), as SuperGLUE JSON Lines (`premise, choice1, choice2, question,
/// label`) or the original XML. lm-eval's `super_glue/copa/utils.py`: the context is
/// `premise.strip()[:-1] + " because"` (question "cause") or `" therefore"` ("effect") — the
/// final character, always a period in COPA, is dropped unseen — and each choice is " " + the
/// choice with its first letter lower-cased, so "The sun was rising." continues the premise.
/// That single space is DESIGN §6's request and lm-eval 0.3's. lm-eval 0.4's `utils.doc_to_choice`
/// puts its own " " before each choice and the request adds the target delimiter as well, so its
/// requests read "… because  the sun was rising." with two spaces; we do not copy that.
enum COPA {
    static func read(path: String) throws -> [MultipleChoiceItem] {
        let lines = try SourceLines(path: path)
        if lines.firstSignificantByte == UInt8(ascii: "<") {
            return try readXML(lines)
        }
        return try lines.jsonRecords().enumerated().map { id, record in
            let premise = try record.string("premise")
            let choices = [try record.string("choice1"), try record.string("choice2")]
            let question = try record.string("question")
            guard let connector = connectors[question] else {
                throw record.error("question", "\"\(question)\" is not \"cause\" or \"effect\"")
            }
            if premise.pythonStripped.isEmpty { throw record.error("premise", "is empty") }
            for (index, choice) in choices.enumerated() where choice.isEmpty {
                throw record.error("choice\(index + 1)", "is empty")
            }
            return try item(id: id, premise: premise, connector: connector, choices: choices,
                        gold: try record.label("label", indexLabels(2)))
        }
    }

    static let connectors = ["cause": "because", "effect": "therefore"]

    static func item(id: Int, premise: String, connector: String, choices: [String], gold: Int) throws -> MultipleChoiceItem {
        let stripped = premise.pythonStripped
        let context = String(stripped.unicodeScalars.dropLast()) + " " + connector
        return try MultipleChoiceItem(id: id, context: context,
                                  continuations: choices.map { " " + $0.lowercasingFirst }, gold: gold)
    }

    /// The original release: `<copa-corpus>` holding flat `<item id asks-for
    /// most-plausible-alternative>` elements, each with `<p>`, `<a1>`, `<a2>`. Read by hand: the
    /// structure is one level deep, and Foundation's XMLParser is not on every Linux install.
    static func readXML(_ lines: SourceLines) throws -> [MultipleChoiceItem] {
        var bytes = lines.bytes
        // Line numbers for errors: the line holding a byte offset.
        var lineStarts = [0]
        for (offset, byte) in bytes.enumerated() where byte == 0x0A { lineStarts.append(offset + 1) }
        func location(_ offset: Int) -> String {
            var low = 0, high = lineStarts.count - 1
            while low < high {
                let middle = (low + high + 1) / 2
                if lineStarts[middle] <= offset { low = middle } else { high = middle - 1 }
            }
            return "\(lines.path):\(low + 1)"
        }
        func fail(_ offset: Int, _ reason: String) -> ShadowError {
            .corruptFile(path: location(offset), reason: reason)
        }
        // Comments are not content: blanked (line breaks kept, for the line numbers) so that an
        // <item> commented out is not read, and left out of the text of an element holding one.
        // A "<!--" inside a CDATA section is text, so CDATA sections are stepped over.
        var comments: [Range<Int>] = []
        let commentOpen = Array("<!--".utf8), cdataOpen = Array("<![CDATA[".utf8)
        var scanned = 0
        while let open = find(commentOpen, in: bytes, from: scanned) {
            if let cdata = find(cdataOpen, in: bytes, from: scanned, before: open + 1), cdata < open {
                guard let end = find(Array("]]>".utf8), in: bytes, from: cdata + cdataOpen.count) else { break }
                scanned = end + 3
                continue
            }
            guard let close = find(Array("-->".utf8), in: bytes, from: open + 4) else {
                throw fail(open, "comment is not closed by \"-->\"")
            }
            comments.append(open..<close + 3)
            for offset in open..<close + 3 where bytes[offset] != 0x0A { bytes[offset] = 0x20 }
            scanned = close + 3
        }

        var items: [MultipleChoiceItem] = []
        var cursor = 0
        // An <item start tag: the name followed by white space or ">" (not "<items").
        let itemOpen = Array("<item".utf8)
        func itemStart(from: Int, before: Int? = nil) -> Int? {
            var from = from
            while let start = find(itemOpen, in: bytes, from: from, before: before) {
                let afterName = start + itemOpen.count
                if afterName < bytes.count, [0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: ">")].contains(bytes[afterName]) { return start }
                from = afterName
            }
            return nil
        }
        while let start = itemStart(from: cursor) {
            let afterName = start + itemOpen.count
            guard let tagEnd = bytes[afterName...].firstIndex(of: UInt8(ascii: ">")) else {
                throw fail(start, "<item> tag is not closed by \">\"")
            }
            guard let close = find(Array("</item>".utf8), in: bytes, from: tagEnd) else {
                throw fail(start, "<item> is not closed by </item>")
            }
            // An item left open (or closed by a misspelt tag) would swallow the next one whole.
            if let next = itemStart(from: tagEnd, before: close) {
                throw fail(start, "<item> is not closed by </item> before the next <item> (\(location(next)))")
            }
            let attributes = try parseAttributes(bytes[afterName..<tagEnd]) { fail(start, $0) }
            func attribute(_ name: String) throws -> String {
                guard let value = attributes[name] else { throw fail(start, "<item> attribute \"\(name)\": missing") }
                return value
            }
            let asksFor = try attribute("asks-for")
            guard let connector = connectors[asksFor] else {
                throw fail(start, "<item> attribute \"asks-for\": \"\(asksFor)\" is not \"cause\" or \"effect\"")
            }
            let alternative = try attribute("most-plausible-alternative")
            guard let gold = ["1": 0, "2": 1][alternative] else {
                throw fail(start, "<item> attribute \"most-plausible-alternative\": \"\(alternative)\" is not \"1\" or \"2\"")
            }
            let body = tagEnd + 1..<close
            func element(_ name: String) throws -> String {
                let open = Array("<\(name)>".utf8), end = Array("</\(name)>".utf8)
                guard let from = find(open, in: bytes, from: body.lowerBound, before: body.upperBound),
                      let to = find(end, in: bytes, from: from + open.count, before: body.upperBound) else {
                    throw fail(start, "<item> element <\(name)>: missing")
                }
                if let again = find(open, in: bytes, from: to + end.count, before: body.upperBound) {
                    throw fail(again, "<item> element <\(name)>: repeated")
                }
                let content = (from + open.count)..<to
                let kept = comments.contains { $0.overlaps(content) }
                    ? content.filter { offset in !comments.contains { $0.contains(offset) } }.map { bytes[$0] }
                    : Array(bytes[content])
                guard let raw = String(validating: kept, as: UTF8.self) else {
                    throw fail(from, "<\(name)> is not valid UTF-8")
                }
                let text = try characterData(raw) { fail(from, "<\(name)>: \($0)") }.pythonStripped
                if text.isEmpty { throw fail(from, "<item> element <\(name)>: is empty") }
                return text
            }
            items.append(try item(id: items.count, premise: try element("p"), connector: connector,
                              choices: [try element("a1"), try element("a2")], gold: gold))
            cursor = close + 7
        }
        if items.isEmpty { throw ShadowError.corruptFile(path: lines.path, reason: "no <item> elements") }
        // The root element (<copa-corpus> in the release) must be closed, after every item: a
        // file cut short between items, or two files joined, would otherwise be read in part.
        if let root = rootName(bytes), root != "item" {
            guard let close = find(Array("</\(root)>".utf8), in: bytes, from: 0) else {
                throw fail(max(0, bytes.count - 1), "<\(root)> is not closed by </\(root)> (is the file cut short?)")
            }
            if let after = itemStart(from: close) {
                throw fail(after, "<item> after </\(root)>, outside the document")
            }
        }
        return items
    }

    /// The name of the first element's start tag (after the XML declaration, comments, a DOCTYPE).
    static func rootName(_ bytes: [UInt8]) -> String? {
        var index = 0
        while let open = bytes[index...].firstIndex(of: UInt8(ascii: "<")) {
            let next = open + 1
            guard next < bytes.count else { return nil }
            if bytes[next] == UInt8(ascii: "?") || bytes[next] == UInt8(ascii: "!") { index = next; continue }
            var end = next
            while end < bytes.count, ![0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: ">"), UInt8(ascii: "/")].contains(bytes[end]) { end += 1 }
            return String(decoding: bytes[next..<end], as: UTF8.self)
        }
        return nil
    }

    /// `name="value"` pairs (single or double quotes) of a start tag, entities decoded.
    static func parseAttributes(_ bytes: ArraySlice<UInt8>, fail: (String) -> ShadowError) throws -> [String: String] {
        var attributes: [String: String] = [:]
        var index = bytes.startIndex
        func skipSpace() { while index < bytes.endIndex, [0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: "/")].contains(bytes[index]) { index += 1 } }
        skipSpace()
        while index < bytes.endIndex {
            let nameStart = index
            while index < bytes.endIndex, bytes[index] != UInt8(ascii: "="), ![0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
            let name = String(decoding: bytes[nameStart..<index], as: UTF8.self)
            // XML allows white space on either side of "=".
            func skipBlanks() { while index < bytes.endIndex, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 } }
            skipBlanks()
            guard index < bytes.endIndex, bytes[index] == UInt8(ascii: "=") else {
                throw fail("<item> attribute \"\(name)\": expected =\"value\"")
            }
            index += 1
            skipBlanks()
            guard index < bytes.endIndex, bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") else {
                throw fail("<item> attribute \"\(name)\": expected =\"value\"")
            }
            let quote = bytes[index]
            let valueStart = index + 1
            guard let valueEnd = bytes[valueStart...].firstIndex(of: quote) else {
                throw fail("<item> attribute \"\(name)\": unterminated value")
            }
            let raw = String(decoding: bytes[valueStart..<valueEnd], as: UTF8.self)
            // XML forbids a repeated attribute; reading either would silently pick a label.
            guard attributes[name] == nil else { throw fail("<item> attribute \"\(name)\": repeated") }
            attributes[name] = try decodeEntities(raw) { fail("<item> attribute \"\(name)\": \($0)") }
            index = valueEnd + 1
            skipSpace()
        }
        return attributes
    }

    /// An element's text: entities decoded, CDATA sections taken as written (comments are gone by
    /// now). Other markup inside (a child element) is refused rather than read as words of the sentence.
    /// Line breaks written CR LF or CR alone read as LF, as XML has every parser read them (a
    /// `&#13;` reference stays a CR).
    static func characterData(_ raw: String, fail: (String) -> ShadowError) throws -> String {
        var text = ""
        var rest = Substring(raw.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n"))
        while let open = rest.range(of: "<") {
            text += try decodeEntities(String(rest[..<open.lowerBound]), fail: fail)
            let markup = rest[open.lowerBound...]
            let cdata = "<![CDATA["
            guard markup.hasPrefix(cdata), let end = markup.range(of: "]]>") else {
                throw fail("holds markup (\(markup.prefix(12).prefix { $0 != "\n" && $0 != "\r" })…); expected text")
            }
            text += markup[markup.index(markup.startIndex, offsetBy: cdata.count)..<end.lowerBound]
            rest = markup[end.upperBound...]
        }
        return text + (try decodeEntities(String(rest), fail: fail))
    }

    /// XML's five named entities and numeric references (`&#233;`, `&#xE9;`).
    static func decodeEntities(_ text: String, fail: (String) -> ShadowError) throws -> String {
        guard text.contains("&") else { return text }
        var result = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            result += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";") else { throw fail("\"&\" without \";\"") }
            let name = rest[rest.index(after: amp)..<semicolon]
            let named = ["amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'"]
            if let replacement = named[String(name)] {
                result += replacement
            } else if name.hasPrefix("#x") || name.hasPrefix("#X"), let code = UInt32(name.dropFirst(2), radix: 16),
                      let scalar = Unicode.Scalar(code) {
                result.unicodeScalars.append(scalar)
            } else if name.hasPrefix("#"), let code = UInt32(name.dropFirst()), let scalar = Unicode.Scalar(code) {
                result.unicodeScalars.append(scalar)
            } else {
                throw fail("unknown entity \"&\(name);\"")
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        return result + rest
    }

    /// The offset of `pattern` in `bytes[from..<before]`, or nil.
    static func find(_ pattern: [UInt8], in bytes: [UInt8], from: Int, before: Int? = nil) -> Int? {
        let end = (before ?? bytes.count) - pattern.count
        guard from <= end else { return nil }
        var index = from
        while index <= end {
            if bytes[index] == pattern[0], bytes[index..<index + pattern.count].elementsEqual(pattern) { return index }
            index += 1
        }
        return nil
    }
}
