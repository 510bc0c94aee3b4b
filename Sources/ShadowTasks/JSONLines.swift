import Foundation
import ShadowFormats

// Task files are small enough (PIQA 0.5 MB, HellaSwag 8 MB) to read whole. Every reader goes
// through `SourceLines`, so line numbers in errors always count the same way an editor does.

/// A task file cut into lines. Numbers count from 1; a "\r" before "\n" is dropped (files written
/// on Windows), as is the empty line after a final "\n" and a UTF-8 byte-order mark.
struct SourceLines {
    let path: String
    let bytes: [UInt8]
    /// Byte range of each line, without its line break.
    let ranges: [Range<Int>]

    init(path: String) throws {
        self.path = path
        var bytes = try readTaskFile(path)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        self.bytes = bytes
        self.ranges = bytes.withUnsafeBufferPointer(Self.lineRanges)
    }

    /// Plain loops over a buffer pointer: debug builds run them fast enough for 10k-line files.
    private static func lineRanges(_ bytes: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start = 0
        var offset = 0
        while offset < bytes.count {
            if bytes[offset] == 0x0A {
                let end = offset > start && bytes[offset - 1] == 0x0D ? offset - 1 : offset
                ranges.append(start..<end)
                start = offset + 1
            }
            offset += 1
        }
        if start < bytes.count {
            let end = bytes[bytes.count - 1] == 0x0D ? bytes.count - 1 : bytes.count
            ranges.append(start..<end)
        }
        return ranges
    }

    var count: Int { ranges.count }

    /// The 1-based number of line `index`.
    func number(_ index: Int) -> Int { index + 1 }

    /// `path:line`, the prefix of every error about that line.
    func location(_ index: Int) -> String { "\(path):\(number(index))" }

    func isBlank(_ index: Int) -> Bool {
        ranges[index].allSatisfy { bytes[$0] == 0x20 || bytes[$0] == 0x09 }
    }

    /// Line `index` as text; a line that is not UTF-8 is an error naming it.
    func text(_ index: Int) throws -> String {
        let decoded = bytes.withUnsafeBufferPointer { buffer in
            String(validating: UnsafeBufferPointer(rebasing: buffer[ranges[index]]), as: UTF8.self)
        }
        guard let text = decoded else {
            throw ShadowError.corruptFile(path: location(index), reason: "not valid UTF-8")
        }
        return text
    }

    /// The first byte that is not white space, to tell formats apart (`{` JSON, `<` XML, else text).
    var firstSignificantByte: UInt8? {
        bytes.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
    }

    /// Every non-blank line parsed as a JSON object: the JSON Lines form of every task in
    /// lm-evaluation-harness's sources (one document per line).
    func jsonRecords() throws -> [JSONRecord] {
        var records: [JSONRecord] = []
        records.reserveCapacity(ranges.count)
        for index in ranges.indices where !isBlank(index) {
            let parsed = bytes.withUnsafeBufferPointer { buffer in
                Result { () throws(JSONParser.Failure) in
                    try JSONParser.parse(UnsafeBufferPointer(rebasing: buffer[ranges[index]]))
                }
            }
            let value: JSONValue
            switch parsed {
            case .success(let parsedValue): value = parsedValue
            case .failure(let failure):
                throw ShadowError.badJSON(path: location(index), key: nil,
                                          reason: "malformed JSON at column \(failure.offset + 1): \(failure.message)")
            }
            guard case .object = value else {
                throw ShadowError.badJSON(path: location(index), key: nil,
                                          reason: "expected a JSON object, found \(value.kindName)")
            }
            records.append(JSONRecord(location: location(index), value: value))
        }
        if records.isEmpty { throw ShadowError.corruptFile(path: path, reason: "no items (the file is empty)") }
        return records
    }
}

/// The bytes of a file, or `fileNotFound` naming it.
func readTaskFile(_ path: String) throws -> [UInt8] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
          let data = FileManager.default.contents(atPath: path) else {
        throw ShadowError.fileNotFound(path: path)
    }
    return [UInt8](data)
}

// MARK: - JSON values

/// A parsed JSON value. Objects keep their members in file order; lookups take the last member of
/// a repeated key, as Python's `json` does.
enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])

    subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.key == key }?.value
    }

    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// How a label reads when compared with the allowed spellings: strings as written, integral
    /// numbers in decimal ("1", not "1.0"), booleans as "true"/"false".
    var labelText: String? {
        switch self {
        case .string(let text): return text
        case .bool(let flag): return flag ? "true" : "false"
        case .number(let number):
            if number.rounded() == number, abs(number) < 1e15 { return String(Int64(number)) }
            return String(number)
        default: return nil
        }
    }
}

/// One JSON object of a JSON Lines file and where it came from, with typed accessors whose
/// errors name the file, line and key (`piqa.jsonl:12: key "goal": missing`).
struct JSONRecord {
    /// `path:line`.
    let location: String
    let value: JSONValue

    func error(_ key: String?, _ reason: String) -> ShadowError {
        .badJSON(path: location, key: key, reason: reason)
    }

    /// The value at a dotted key path (`question.stem`; a number steps into an array,
    /// `question.choices.2.text`), or nil when any step is missing.
    func optional(_ key: String) -> JSONValue? {
        var current = value
        for part in key.split(separator: ".", omittingEmptySubsequences: false) {
            if case .array(let elements) = current, let index = Int(part), elements.indices.contains(index) {
                current = elements[index]
            } else if let next = current[String(part)] {
                current = next
            } else {
                return nil
            }
        }
        return current
    }

    func has(_ key: String) -> Bool { optional(key) != nil }

    /// `display` is how errors name the key when the path is not how a reader would write it.
    func required(_ key: String, display: String? = nil) throws -> JSONValue {
        guard let found = optional(key) else { throw error(display ?? key, "missing") }
        return found
    }

    func string(_ key: String, display: String? = nil) throws -> String {
        let found = try required(key, display: display)
        guard case .string(let text) = found else {
            throw error(display ?? key, "expected a string, found \(found.kindName)")
        }
        return text
    }

    func array(_ key: String) throws -> [JSONValue] {
        let found = try required(key)
        guard case .array(let elements) = found else { throw error(key, "expected an array, found \(found.kindName)") }
        return elements
    }

    func strings(_ key: String) throws -> [String] {
        try array(key).enumerated().map { index, element in
            guard case .string(let text) = element else {
                throw error("\(key)[\(index)]", "expected a string, found \(element.kindName)")
            }
            return text
        }
    }

    /// A label given as any of `allowed` spellings (a number 1, a string "1" or a boolean all match
    /// "1"/"true" as written there), mapped to its index. Data sets disagree on the type of labels:
    /// PIQA's are integers, Winogrande's the strings "1"/"2", SuperGLUE's RTE uses words.
    func label(_ key: String, _ allowed: [(spelling: String, index: Int)]) throws -> Int {
        let found = try required(key)
        guard let text = found.labelText else {
            throw error(key, "expected a label, found \(found.kindName)")
        }
        guard let match = allowed.first(where: { $0.spelling == text }) else {
            let list = allowed.map { "\"\($0.spelling)\"" }.joined(separator: ", ")
            throw error(key, "\"\(text)\" is not one of \(list)")
        }
        return match.index
    }
}

/// Labels "0", "1", … for `count` choices.
func indexLabels(_ count: Int) -> [(spelling: String, index: Int)] {
    (0..<count).map { (String($0), $0) }
}

// MARK: - Parser

/// A strict JSON parser (RFC 8259) over the bytes of one line. Written here rather than using
/// `JSONSerialization`, which on Linux hands back `1` and `true` as the same NSNumber: a label's
/// type matters (BoolQ's `true` vs a PIQA `1`), and errors should say which column broke.
struct JSONParser {
    struct Failure: Error {
        let message: String
        let offset: Int
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0
    /// Task documents nest three levels; the limit only stops hostile input from exhausting the stack.
    private static let maximumDepth = 100

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(Failure) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.value()
        parser.skipWhitespace()
        if parser.index != bytes.count { throw parser.fail("unexpected text after the JSON value") }
        return value
    }

    private init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    private func fail(_ message: String) -> Failure { Failure(message: message, offset: index) }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
    }

    private mutating func expect(_ literal: StaticString, _ result: JSONValue) throws(Failure) -> JSONValue {
        let text = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        for byte in text {
            guard current == byte else { throw fail("expected \(literal)") }
            index += 1
        }
        return result
    }

    private mutating func value() throws(Failure) -> JSONValue {
        guard let byte = current else { throw fail("unexpected end of line") }
        switch byte {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected character \"\(Unicode.Scalar(byte))\"")
        }
    }

    private mutating func nest() throws(Failure) {
        depth += 1
        if depth > Self.maximumDepth { throw fail("nested more than \(Self.maximumDepth) levels deep") }
    }

    private mutating func object() throws(Failure) -> JSONValue {
        try nest()
        index += 1
        var members: [(key: String, value: JSONValue)] = []
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try string()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw fail("expected \":\" after a key") }
            index += 1
            skipWhitespace()
            members.append((key, try value()))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                depth -= 1
                return .object(members)
            default: throw fail("expected \",\" or \"}\"")
            }
        }
    }

    private mutating func array() throws(Failure) -> JSONValue {
        try nest()
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try value())
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                depth -= 1
                return .array(elements)
            default: throw fail("expected \",\" or \"]\"")
            }
        }
    }

    private mutating func number() throws(Failure) -> JSONValue {
        let start = index
        func digits(_ parser: inout JSONParser) -> Int {
            let from = parser.index
            while let byte = parser.current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { parser.index += 1 }
            return parser.index - from
        }
        if current == UInt8(ascii: "-") { index += 1 }
        let integerStart = index
        let integerDigits = digits(&self)
        guard integerDigits > 0 else { throw fail("expected a digit") }
        if integerDigits > 1, bytes[integerStart] == UInt8(ascii: "0") {
            throw Failure(message: "a number may not start with 0", offset: integerStart)
        }
        if current == UInt8(ascii: ".") {
            index += 1
            guard digits(&self) > 0 else { throw fail("expected a digit after \".\"") }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard digits(&self) > 0 else { throw fail("expected a digit in the exponent") }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let number = Double(text) else { throw Failure(message: "bad number \(text)", offset: start) }
        return .number(number)
    }

    /// A string starting at the opening quote. Runs without escapes are copied in one piece.
    private mutating func string() throws(Failure) -> String {
        index += 1
        var result: [UInt8] = []
        var runStart = index
        while true {
            // Skip plain bytes in a tight loop; everything below handles the rare ones.
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                index += 1
            }
            guard let byte = current else { throw fail("unterminated string") }
            if byte == UInt8(ascii: "\"") {
                let run = UnsafeBufferPointer(rebasing: bytes[runStart..<index])
                index += 1
                if result.isEmpty {
                    guard let text = String(validating: run, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
                    return text
                }
                result.append(contentsOf: run)
                guard let text = String(validating: result, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
                return text
            }
            if byte < 0x20 { throw fail("control character in a string") }
            result.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
            index += 1
            guard let escape = current else { throw fail("unterminated escape") }
            index += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): result.append(escape)
            case UInt8(ascii: "b"): result.append(0x08)
            case UInt8(ascii: "f"): result.append(0x0C)
            case UInt8(ascii: "n"): result.append(0x0A)
            case UInt8(ascii: "r"): result.append(0x0D)
            case UInt8(ascii: "t"): result.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    // A UTF-16 surrogate pair spelled as two escapes (how json.dumps writes emoji).
                    guard current == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired UTF-16 surrogate")
                    }
                    index += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired UTF-16 surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let unicode = Unicode.Scalar(scalar) else { throw fail("unpaired UTF-16 surrogate") }
                result.append(contentsOf: Array(String(Character(unicode)).utf8))
            default:
                throw fail("unknown escape \"\\\(Unicode.Scalar(escape))\"")
            }
            runStart = index
        }
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = current, let digit = Character(Unicode.Scalar(byte)).hexDigitValue else {
                throw fail("expected four hex digits after \\u")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }
}
