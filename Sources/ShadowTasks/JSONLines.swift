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

    /// Throws when the whole file is one JSON array (`datasets`' `to_json(lines=False)`, pandas'
    /// `orient="records"`), which every reader would otherwise report as a fault on some line.
    func refuseJSONArray() throws {
        guard firstSignificantByte == UInt8(ascii: "[") else { return }
        let parsed = bytes.withUnsafeBufferPointer { buffer in
            Result { () throws(JSONParser.Failure) in try JSONParser.parse(buffer) }
        }
        if case .success(.array) = parsed {
            throw ShadowError.corruptFile(
                path: path, reason: "is one JSON array; expected JSON Lines, one JSON object per line (jq -c '.[]' converts it)")
        }
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
                // A first line that does not parse is most likely another format (CSV, TSV, a
                // pretty-printed JSON array or object).
                if records.isEmpty { try refuseJSONArray() }
                let line = bytes[ranges[index]].filter { $0 != 0x20 && $0 != 0x09 }
                let hint = records.isEmpty && (line.first != UInt8(ascii: "{") || line == [UInt8(ascii: "{")])
                    ? " (expected JSON Lines: one JSON object per line)" : ""
                throw ShadowError.badJSON(path: location(index), key: nil,
                                          reason: "malformed JSON at column \(failure.offset + 1): \(failure.message)\(hint)")
            }
            guard case .object = value else {
                if records.isEmpty, case .array = value { try refuseJSONArray() }
                throw ShadowError.badJSON(path: location(index), key: nil,
                                          reason: "expected a JSON object, found \(value.kindName)")
            }
            records.append(JSONRecord(location: location(index), value: value))
        }
        if records.isEmpty { throw ShadowError.corruptFile(path: path, reason: "no items (the file is empty)") }
        return records
    }
}

/// The bytes of a file; the error names it and says whether it is missing, a directory or unreadable.
func readTaskFile(_ path: String) throws -> [UInt8] {
    if try existingFileKind(atPath: path) == .directory { throw ShadowError.corruptFile(path: path, reason: "is a directory, not a file") }
    let bytes = [UInt8](try readWholeFile(path, acceptingStreams: true))
    if let form = notTextForm(bytes) { throw ShadowError.corruptFile(path: path, reason: form) }
    return bytes
}

// MARK: - JSON records

extension JSONValue {
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

    /// A label's spelling whether the file writes it as a string or a number (`"2"` or `2`).
    func labelString(_ key: String, display: String? = nil) throws -> String {
        let found = try required(key, display: display)
        switch found {
        case .string(let text): return text
        case .number: if let text = found.labelText { return text }
        default: break
        }
        throw error(display ?? key, "expected a string or a number, found \(found.kindName)")
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
        // An index written with white space around it (" 3 ") is read as Python's int() reads it.
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let asIndex = Int(trimmed) != nil ? allowed.first(where: { $0.spelling == trimmed }) : nil
        guard let match = allowed.first(where: { $0.spelling == text }) ?? asIndex else {
            let list = allowed.map { "\"\($0.spelling)\"" }.joined(separator: ", ")
            throw error(key, "\(quoted(text, escapingQuotes: false)) is not one of \(list)")
        }
        return match.index
    }
}

/// Labels "0", "1", … for `count` choices.
func indexLabels(_ count: Int) -> [(spelling: String, index: Int)] {
    (0..<count).map { (String($0), $0) }
}
