import Testing
import ShadowFormats
import ShadowTestSupport

private func parse(_ bytes: [UInt8]) -> Result<JSONValue, JSONParser.Failure> {
    Result { () throws(JSONParser.Failure) in try JSONParser.parse(bytes) }
}

private func parse(_ text: String) -> Result<JSONValue, JSONParser.Failure> { parse(Array(text.utf8)) }

/// A value written back as compact JSON (strings as Swift debug-prints them), so trees compare as text.
private func compact(_ value: JSONValue) -> String {
    switch value {
    case .null: return "null"
    case .bool(let flag): return "\(flag)"
    case .number(let number): return "\(number)"
    case .string(let text): return text.debugDescription
    case .array(let elements): return "[" + elements.map(compact).joined(separator: ",") + "]"
    case .object(let members):
        return "{" + members.map { "\($0.key.debugDescription):\(compact($0.value))" }.joined(separator: ",") + "}"
    }
}

/// The string that `json` holds, or nil when it holds something else or does not parse.
private func string(_ json: String) -> String? {
    guard case .success(.string(let text)) = parse(json) else { return nil }
    return text
}

private func number(_ json: String) -> Double? {
    guard case .success(.number(let number)) = parse(json) else { return nil }
    return number
}

/// The tree of `text` as compact text, or "error at OFFSET: MESSAGE".
private func outcome(_ text: String) -> String {
    outcome(Array(text.utf8))
}

private func outcome(_ bytes: [UInt8]) -> String {
    switch parse(bytes) {
    case .success(let value): return compact(value)
    case .failure(let failure): return "error at \(failure.offset): \(failure.message)"
    }
}

@Suite("JSON parser")
struct JSONTests {
    @Test("names Swift types a decoder expected in JSON's words")
    func kindNamesOfTypes() {
        #expect(JSONValue.kindName(of: [String: Any].self) == "an object")
        #expect(JSONValue.kindName(of: [Any].self) == "an array")
        #expect(JSONValue.kindName(of: [[Float]].self) == "an array")
        #expect(JSONValue.kindName(of: Float.self) == "a number")
        #expect(JSONValue.kindName(of: UInt64.self) == "an integer")
        #expect(JSONValue.kindName(of: String?.self) == "a string")
        #expect(JSONValue.kindName(of: Bool.self) == "a boolean")
    }

    @Test("reads every kind of value, with white space anywhere between tokens")
    func kinds() throws {
        #expect(outcome(#" {"a": [null, true, false, "", {}, []], "b" :{ "c":-1.5 } }"#)
                == #"{"a":[null,true,false,"",{},[]],"b":{"c":-1.5}}"#)
        #expect(outcome("\t\r\n 7 \n") == "7.0")
        guard case .array(let elements) = try parse(#"[null, true, 1, "s", [], {}]"#).get() else {
            Issue.record("not an array")
            return
        }
        let kinds = elements.map(\.kindName)
        #expect(kinds == ["null", "a boolean", "a number", "a string", "an array", "an object"])
    }

    @Test("keeps object members in file order with keys byte for byte, and a repeated key reads as its last member")
    func members() throws {
        // "é" precomposed and decomposed are canonically equivalent, so equal as Swift strings.
        let value = try parse(#"{"\u00e9": 1, "e\u0301": 2, "b": 3, "b": 4}"#).get()
        guard case .object(let members) = value else { Issue.record("not an object"); return }
        #expect(members.map { Array($0.key.utf8) } == [[0xC3, 0xA9], [0x65, 0xCC, 0x81], [0x62], [0x62]])
        #expect(compact(try #require(value["b"])) == "4.0")
        #expect(value["missing"] == nil)
        #expect(JSONValue.array([])["b"] == nil)
    }

    @Test("decodes every escape and joins surrogate pairs; a lone surrogate becomes U+FFFD")
    func escapes() {
        #expect(string(#""\"\\\/\b\f\n\r\t""#) == "\"\\/\u{8}\u{C}\n\r\t")
        #expect(string(#""caf\u00E9 \ud83d\ude80 plain""#) == "café 🚀 plain")
        #expect(string(#""\ud800""#) == "\u{FFFD}")
        #expect(string(#""\udc00x""#) == "\u{FFFD}x")
        // The escape after a lone high surrogate still counts, whether a character or another surrogate.
        #expect(string(#""\ud800\u0041""#) == "\u{FFFD}A")
        #expect(string(#""\ud800\ud800\udc00""#) == "\u{FFFD}\u{10000}")
    }

    @Test("takes integers exactly and numbers only in RFC 8259's grammar")
    func numbers() {
        #expect(number("0")?.sign == .plus)
        #expect(number("-0")?.sign == .minus)
        #expect(number("49151") == 49151)
        #expect(number("-999999999999999") == -999_999_999_999_999)
        #expect(number("9007199254740993") == 9_007_199_254_740_992)  // nearest Double, as Double("…") gives
        #expect(number("123456789012345678901234567890") == 1.2345678901234568e29)
        #expect(number("1.5e2") == 150)
        #expect(number("-0.25") == -0.25)
        #expect(number("1E-2") == 0.01)
        #expect(number("1e+2") == 100)
        #expect(number("0.1") == 0.1)
        #expect(outcome("01") == "error at 0: a number may not start with 0")
        #expect(outcome("-012") == "error at 1: a number may not start with 0")
        #expect(outcome("-") == "error at 1: expected a digit")
        #expect(outcome("-x") == "error at 1: expected a digit")
        #expect(outcome("1.") == "error at 2: expected a digit after \".\"")
        #expect(outcome("1.e5") == "error at 2: expected a digit after \".\"")
        #expect(outcome("1e") == "error at 2: expected a digit in the exponent")
        #expect(outcome("1e+") == "error at 3: expected a digit in the exponent")
        #expect(outcome("1e999") == "error at 0: number 1e999 is out of range")
        #expect(outcome("[-1e400]") == "error at 1: number -1e400 is out of range")
        #expect(outcome(".5") == "error at 0: unexpected character \".\"")
        #expect(outcome("+1") == "error at 0: unexpected character \"+\"")
        #expect(outcome("0x10") == "error at 1: unexpected text after the JSON value")
    }

    @Test("rejects invalid UTF-8 in strings, even where the U+FFFD repair would keep the length")
    func invalidUTF8() {
        let quote: [UInt8] = [0x22]
        for bad: [UInt8] in [[0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF0, 0x9F, 0x98], [0x61, 0x80]] {
            #expect(outcome(quote + bad + quote) == "error at \(bad.count + 2): string is not valid UTF-8", "\(bad)")
            let escaped = quote + Array(#"\n"#.utf8) + bad + quote
            #expect(outcome(escaped) == "error at \(bad.count + 4): string is not valid UTF-8", "\(bad) after an escape")
        }
        #expect(outcome(quote + [0xF0, 0x9F, 0x98, 0x80] + quote) == "\"😀\"")
    }

    @Test("names what broke and the byte offset where")
    func failures() {
        let cases: [(text: String, error: String)] = [
            ("", "error at 0: unexpected end of input"),
            ("   ", "error at 3: unexpected end of input"),
            ("[1,]", "error at 3: unexpected character \"]\""),
            ("[1 2]", "error at 3: expected \",\" or \"]\""),
            ("[1", "error at 2: unexpected end of input"),
            (#"{"a" 1}"#, "error at 5: expected \":\" after a key"),
            (#"{"a": 1 "b": 2}"#, "error at 8: expected \",\" or \"}\""),
            (#"{"a": 1,}"#, "error at 8: expected a string key"),
            ("{1: 2}", "error at 1: expected a string key"),
            (#"{"a": 1"#, "error at 7: unexpected end of input"),
            ("tru", "error at 3: expected true"),
            ("nul!", "error at 3: expected null"),
            ("[falsy]", "error at 5: expected false"),
            (#""abc"#, "error at 4: unterminated string"),
            (#""abc\"#, "error at 5: unterminated string"),
            ("\"a\tb\"", "error at 2: control character in a string"),
            (#""a\nb\u0000\x""#, "error at 12: unknown escape \"\\x\""),
            (#""\u12g4""#, "error at 5: expected four hex digits after \\u"),
            (#""\u12""#, "error at 5: expected four hex digits after \\u"),
            ("1 2", "error at 2: unexpected text after the JSON value"),
            ("é", "error at 0: unexpected character byte 0xc3"),
            ("'a'", "error at 0: unexpected character \"'\""),
        ]
        for (text, error) in cases {
            #expect(outcome(text) == error, "\(text.debugDescription)")
        }
    }

    @Test("stops at 256 levels of nesting, so hostile input cannot exhaust the stack")
    func depth() {
        func nested(_ levels: Int) -> String {
            String(repeating: "[", count: levels) + String(repeating: "]", count: levels)
        }
        #expect(outcome(nested(256)) == nested(256))
        #expect(outcome(nested(257)) == "error at 256: nested more than 256 levels deep")
        #expect(outcome(String(repeating: #"{"a":"#, count: 300)) == "error at 1280: nested more than 256 levels deep")
        #expect(outcome(String(repeating: "[", count: 100_000)) == "error at 256: nested more than 256 levels deep")
    }

    @Test("parses part of a larger buffer in place, with offsets from the start of that part")
    func slices() {
        let lines = Array("{\"a\": 1}\n[1, 2\n".utf8)
        lines.withUnsafeBufferPointer { buffer in
            let first = Result { () throws(JSONParser.Failure) in
                try JSONParser.parse(UnsafeBufferPointer(rebasing: buffer[0..<8]))
            }
            #expect((try? first.get()).map(compact) == #"{"a":1.0}"#)
            let second = Result { () throws(JSONParser.Failure) in
                try JSONParser.parse(UnsafeBufferPointer(rebasing: buffer[9..<14]))
            }
            guard case .failure(let failure) = second else { Issue.record("parsed a cut-off array"); return }
            #expect(failure.offset == 5)
            #expect(failure.message == "unexpected end of input")
        }
    }
}
