import Foundation

/// A parsed JSON value: tokenizer.json, tokenizer_config.json and the lines of task files.
///
/// Objects keep their members in file order, with keys exactly as written. That matters for
/// vocabularies: Swift compares strings by canonical equivalence, so a `[String: Int]` would merge
/// two distinct entries such as "é" (U+00E9) and "e\u{301}", or trap on them as duplicate keys.
/// Callers never key a dictionary by a vocabulary string; they key by its UTF-8 bytes.
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])

    /// The member named `key` of an object, or nil. A repeated key gives its last member, as
    /// Python's `json` and most other readers do. Callers look up ASCII names, for which `==` is exact.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.key == key }?.value
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// A short name of the value's kind, for error messages ("expected a string, found an array").
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// The same words for a Swift type a decoder expected (`DecodingError.typeMismatch`), so
    /// errors say "expected an object" rather than "expected Dictionary<String, Any>".
    public static func kindName(of type: Any.Type) -> String {
        var name = String(describing: type)
        while name.hasPrefix("Optional<") && name.hasSuffix(">") { name = String(name.dropFirst("Optional<".count).dropLast()) }
        if ["Array<", "ContiguousArray<", "ArraySlice<", "Set<"].contains(where: name.hasPrefix) { return "an array" }
        if name.hasPrefix("Dictionary<") { return "an object" }
        switch name {
        case "String", "Substring", "Character": return "a string"
        case "Bool": return "a boolean"
        case "Int", "Int8", "Int16", "Int32", "Int64", "UInt", "UInt8", "UInt16", "UInt32", "UInt64": return "an integer"
        case "Float", "Double", "Float16", "Float80", "Decimal": return "a number"
        default: return "an object"   // any other Decodable reads a keyed container
        }
    }
}

/// A strict recursive-descent JSON parser over UTF-8 bytes (RFC 8259). Hand-written rather than
/// `JSONSerialization`, which loses what callers need: vocabulary keys byte for byte (see
/// `JSONValue`), the difference between `1` and `true` (on Linux both come back as one NSNumber,
/// but a task label's type matters), and the offset where a file broke.
public struct JSONParser {
    public struct Failure: Error {
        public let message: String
        /// Bytes from the start of the parsed text to where parsing stopped.
        public let offset: Int
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0
    /// Deep enough for any tokenizer.json or task document; shallow enough that hostile input
    /// cannot exhaust the stack.
    private static let maximumDepth = 256

    /// Parses `bytes` in place, without copying them; the whole text must be one JSON value.
    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(Failure) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.index != bytes.count { throw parser.fail("unexpected text after the JSON value") }
        return value
    }

    public static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (buffer) throws(Failure) in try parse(buffer) }
    }

    /// Where and why `bytes` are no JSON ("line 3, column 14: expected \",\" or \"}\""), or nil
    /// when they parse: for errors about files that Foundation's decoder only calls invalid.
    public static func syntaxError(in bytes: [UInt8]) -> String? {
        do throws(Failure) {
            _ = try parse(bytes)
            return nil
        } catch {
            let before = bytes.prefix(error.offset)
            let line = before.count { $0 == 0x0A } + 1
            let column = error.offset - (before.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) + 1
            return "line \(line), column \(column): \(error.message)"
        }
    }

    private init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    private func fail(_ message: String) -> Failure { Failure(message: message, offset: index) }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// A byte as error messages show it: printable ASCII as itself, anything else in hex, since a
    /// lone byte of a multi-byte character is no character at all.
    private static func describe(_ byte: UInt8) -> String {
        (0x21...0x7E).contains(byte) ? "\"\(Character(Unicode.Scalar(byte)))\"" : "byte 0x\(String(byte, radix: 16))"
    }

    private mutating func parseValue() throws(Failure) -> JSONValue {
        guard let byte = current else { throw fail("unexpected end of input") }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expectLiteral("true", .bool(true))
        case UInt8(ascii: "f"): return try expectLiteral("false", .bool(false))
        case UInt8(ascii: "n"): return try expectLiteral("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character \(Self.describe(byte))")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString, _ value: JSONValue) throws(Failure) -> JSONValue {
        let expected = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        for byte in expected {
            guard current == byte else { throw fail("expected \(literal)") }
            index += 1
        }
        return value
    }

    /// Steps inside a container, past its opening bracket and any white space; true when it is
    /// empty, its closing bracket then consumed too.
    private mutating func enter(closedBy close: UInt8) throws(Failure) -> Bool {
        depth += 1
        if depth > Self.maximumDepth { throw fail("nested more than \(Self.maximumDepth) levels deep") }
        index += 1
        skipWhitespace()
        guard current == close else { return false }
        index += 1
        return true
    }

    /// After a member or element: true at "," and false at `close` (either consumed), else an error.
    private mutating func continues(closedBy close: UInt8) throws(Failure) -> Bool {
        skipWhitespace()
        switch current {
        case UInt8(ascii: ","):
            index += 1
            return true
        case close:
            index += 1
            return false
        case nil: throw fail("unexpected end of input")
        default: throw fail("expected \",\" or \"\(Character(Unicode.Scalar(close)))\"")
        }
    }

    private mutating func parseObject() throws(Failure) -> JSONValue {
        let isEmpty = try enter(closedBy: UInt8(ascii: "}"))
        defer { depth -= 1 }
        var members: [(key: String, value: JSONValue)] = []
        guard !isEmpty else { return .object(members) }
        repeat {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw fail("expected \":\" after a key") }
            index += 1
            skipWhitespace()
            members.append((key, try parseValue()))
        } while try continues(closedBy: UInt8(ascii: "}"))
        return .object(members)
    }

    private mutating func parseArray() throws(Failure) -> JSONValue {
        let isEmpty = try enter(closedBy: UInt8(ascii: "]"))
        defer { depth -= 1 }
        var elements: [JSONValue] = []
        guard !isEmpty else { return .array(elements) }
        repeat {
            skipWhitespace()
            elements.append(try parseValue())
        } while try continues(closedBy: UInt8(ascii: "]"))
        return .array(elements)
    }

    /// RFC 8259's grammar exactly: no "+1", "01", "1." or ".5", which `Double(String)` would take.
    private mutating func parseNumber() throws(Failure) -> JSONValue {
        let start = index
        let negative = current == UInt8(ascii: "-")
        if negative { index += 1 }
        let integerStart = index
        var integer: UInt64 = 0
        while let byte = current, let digit = Self.digitValue(byte) {
            integer = integer &* 10 &+ UInt64(digit)  // wraps past 19 digits, but then goes unused
            index += 1
        }
        let integerDigits = index - integerStart
        guard integerDigits > 0 else { throw fail("expected a digit") }
        if integerDigits > 1, bytes[integerStart] == UInt8(ascii: "0") {
            throw Failure(message: "a number may not start with 0", offset: integerStart)
        }
        var isInteger = true
        if current == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard skipDigits() > 0 else { throw fail("expected a digit after \".\"") }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard skipDigits() > 0 else { throw fail("expected a digit in the exponent") }
        }
        // Ids, ranks and labels are integers: up to 15 digits they are below 2^53, so exact in a
        // Double, and summing them above spares building a String for `Double(_:)`.
        if isInteger, integerDigits <= 15 {
            let magnitude = Double(integer)
            return .number(negative ? -magnitude : magnitude)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let number = Double(text), number.isFinite else {
            throw Failure(message: "number \(text) is out of range", offset: start)
        }
        return .number(number)
    }

    private static func digitValue(_ byte: UInt8) -> UInt8? {
        let digit = byte &- UInt8(ascii: "0")
        return digit < 10 ? digit : nil
    }

    /// Skips decimal digits and returns how many there were.
    private mutating func skipDigits() -> Int {
        let from = index
        while let byte = current, Self.digitValue(byte) != nil { index += 1 }
        return index - from
    }

    /// A string starting at its opening quote. Invalid UTF-8 is an error rather than U+FFFD, so a
    /// damaged file cannot quietly change a vocabulary entry or a task's text.
    private mutating func parseString() throws(Failure) -> String {
        index += 1  // opening quote
        // Stays empty until the first escape (which always adds a byte): most strings have none,
        // and their bytes are the string.
        var decoded: [UInt8] = []
        var runStart = index
        while true {
            // Plain bytes in a tight loop; everything below handles the rare ones.
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                index += 1
            }
            let run = UnsafeBufferPointer(rebasing: bytes[runStart..<index])
            guard let byte = current else { throw fail("unterminated string") }
            if byte == UInt8(ascii: "\"") {
                index += 1
                let text: String?
                if decoded.isEmpty {
                    text = Self.string(validating: run)
                } else {
                    decoded.append(contentsOf: run)
                    text = decoded.withUnsafeBufferPointer(Self.string(validating:))
                }
                guard let text else { throw fail("string is not valid UTF-8") }
                return text
            }
            if byte < 0x20 { throw fail("control character in a string") }
            decoded.append(contentsOf: run)
            index += 1  // backslash
            try appendEscape(to: &decoded)
            runStart = index
        }
    }

    /// `utf8` as a String, or nil when it is not valid UTF-8. On the short strings of a vocabulary
    /// `String(validating:)` takes three times as long as `String(decoding:)`, which replaces
    /// invalid bytes with U+FFFD: its result equals its input byte for byte exactly when the input
    /// was valid.
    private static func string(validating utf8: UnsafeBufferPointer<UInt8>) -> String? {
        let text = String(decoding: utf8, as: UTF8.self)
        guard text.utf8.count == utf8.count else { return nil }
        let unchanged = text.utf8.withContiguousStorageIfAvailable { decoded in
            utf8.isEmpty || memcmp(decoded.baseAddress!, utf8.baseAddress!, utf8.count) == 0
        } ?? text.utf8.elementsEqual(utf8)
        return unchanged ? text : nil
    }

    /// Decodes the escape after a backslash.
    private mutating func appendEscape(to decoded: inout [UInt8]) throws(Failure) {
        guard let escape = current else { throw fail("unterminated string") }
        index += 1
        switch escape {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded.append(escape)
        case UInt8(ascii: "b"): decoded.append(0x08)
        case UInt8(ascii: "f"): decoded.append(0x0C)
        case UInt8(ascii: "n"): decoded.append(0x0A)
        case UInt8(ascii: "r"): decoded.append(0x0D)
        case UInt8(ascii: "t"): decoded.append(0x09)
        case UInt8(ascii: "u"):
            let scalar = Unicode.Scalar(try parseUnicodeEscape()) ?? "\u{FFFD}"
            UTF8.encode(scalar) { decoded.append($0) }
        default:
            index -= 1
            throw fail("unknown escape \"\\\(Character(Unicode.Scalar(escape)))\"")
        }
    }

    /// The code point of the hex digits after `\u`, joining a UTF-16 surrogate pair (how
    /// `json.dumps` writes emoji). A lone surrogate, which no Swift string can hold, becomes U+FFFD;
    /// an escape after a lone high surrogate is then read again on its own.
    private mutating func parseUnicodeEscape() throws(Failure) -> UInt32 {
        let first = try parseHex4()
        guard (0xD800..<0xDC00).contains(first) else {
            return (0xDC00..<0xE000).contains(first) ? 0xFFFD : first
        }
        let afterFirst = index
        if current == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u") {
            index += 2
            let second = try parseHex4()
            if (0xDC00..<0xE000).contains(second) {
                return 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            index = afterFirst
        }
        return 0xFFFD
    }

    private mutating func parseHex4() throws(Failure) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = current, let digit = Self.hexValue(byte) else {
                throw fail("expected four hex digits after \\u")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
