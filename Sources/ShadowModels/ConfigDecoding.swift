import Foundation
import ShadowFormats

/// Decodes a `config.json`-style file into a `Codable` configuration, turning Swift's decoding
/// errors into one line that names the file and the key (`num_attention_heads: missing`).
public enum ConfigDecoding {
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, path: String,
                                            userInfo: [CodingUserInfoKey: any Sendable] = [:]) throws -> T {
        do {
            let decoder = JSONDecoder()
            decoder.userInfo = userInfo
            let decoded = try decoder.decode(type, from: data)
            // JSONDecoder keeps a repeated key's first value, Python's json (transformers, and
            // whatever wrote the file) its last: refused rather than read otherwise than meant.
            if let parsed = try? JSONParser.parse([UInt8](data)), let key = repeatedKey(in: parsed) {
                throw ShadowError.badJSON(path: path, key: key, reason: "is given twice in one object (readers differ on which counts); keep one")
            }
            return decoded
        } catch DecodingError.dataCorrupted(let context)
                    where context.codingPath.isEmpty && (try? JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed)) != nil {
            // JSONDecoder's words for a number its type cannot hold come under no key (`namingKey`
            // names it for the model configs): name the number that most likely broke it.
            let parsed = try? JSONParser.parse([UInt8](data))
            if let (key, value, others) = parsed.flatMap(unfitNumber) {
                let more = others == 0 ? "" : ", the first of \(others + 1) numbers beyond single precision"
                throw ShadowError.badJSON(path: path, key: key, reason: "\(value) does not fit the type of number expected here (the likeliest key\(more); JSON's decoder names none)")
            }
            throw ShadowError.badJSON(path: path, key: nil, reason: "a number does not fit the type expected (a fraction where an integer is expected, or a value out of range)")
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
            // A file of another kind given where JSON belongs: say what it is, not where parsing failed.
            let bytes = [UInt8](data)
            if let form = notTextForm(bytes) { throw ShadowError.corruptFile(path: path, reason: form) }
            let location = JSONParser.syntaxError(in: bytes).map { " at \($0)" } ?? ""
            throw ShadowError.badJSON(path: path, key: nil, reason: "not valid JSON" + location)
        } catch let error as DecodingError {
            throw ShadowError.badJSON(path: path, key: keyPath(of: error), reason: reason(of: error))
        } catch let error as ShadowError {
            throw error
        } catch {
            throw ShadowError.badJSON(path: path, key: nil, reason: "\(error)")
        }
    }

    /// `acceptingStreams` for a file the user names that may come through a pipe (`--scores <(jq …)`).
    public static func decode<T: Decodable>(_ type: T.Type, path: String, acceptingStreams: Bool = false) throws -> T {
        try decode(type, from: try readWholeFile(path, acceptingStreams: acceptingStreams), path: path)
    }

    /// The path of the first key that an object of `value` holds twice, or nil.
    static func repeatedKey(in value: JSONValue) -> String? {
        repeatedKeyPath(in: value).map { $0.reversed().joined(separator: ".") }
    }

    /// The same path, innermost first; built only on a find (a score file holds a million numbers).
    private static func repeatedKeyPath(in value: JSONValue) -> [String]? {
        switch value {
        case .array(let items):
            for (i, item) in items.enumerated() {
                switch item {
                case .array, .object: if let path = repeatedKeyPath(in: item) { return path + [String(i)] }
                default: continue
                }
            }
        case .object(let members):
            var seen = Set<String>(minimumCapacity: members.count)
            for member in members {
                if !seen.insert(member.key).inserted { return [member.key] }
                if let path = repeatedKeyPath(in: member.value) { return path + [member.key] }
            }
        default: break
        }
        return nil
    }

    /// The number JSONDecoder most likely could not store, with its key path, when one stands
    /// out: the first of those beyond single precision or 64-bit integers (with how many others
    /// there are: scores written out of range are rarely alone), else the only negative integer
    /// (an unsigned field), else the only fraction (an integer field). nil when none or several
    /// negatives or fractions do; the error then names no key rather than a wrong one.
    static func unfitNumber(in value: JSONValue) -> (key: String, value: String, others: Int)? {
        var huge: [(String, Double)] = [], negatives: [(String, Double)] = [], fractions: [(String, Double)] = []
        func walk(_ value: JSONValue, _ path: [String]) {
            switch value {
            case .number(let x):
                let key = path.joined(separator: ".")
                // (A non-zero number that rounds to 0 in single precision, below half its
                // smallest, is refused by JSONDecoder too.)
                if x.magnitude > Double(Float.greatestFiniteMagnitude) || x >= 0x1p64 || x < -0x1p63
                    || (x != 0 && x.magnitude <= Double(Float.leastNonzeroMagnitude) / 2) { huge.append((key, x)) }
                else if x < 0, x == x.rounded() { negatives.append((key, x)) }
                else if x != x.rounded() { fractions.append((key, x)) }
            case .array(let items): for (i, item) in items.enumerated() { walk(item, path + [String(i)]) }
            case .object(let members): for member in members { walk(member.value, path + [member.key]) }
            default: break
            }
        }
        walk(value, [])
        let candidates = [huge, negatives, fractions].first { !$0.isEmpty } ?? []
        guard let (key, x) = candidates.first, candidates.count == 1 || !huge.isEmpty, !key.isEmpty else { return nil }
        return (key, x == x.rounded() && x.magnitude < 1e15 ? String(Int64(x)) : "\(x)", candidates.count - 1)
    }

    static func keyPath(of error: DecodingError) -> String? {
        let path: [any CodingKey]
        switch error {
        case .keyNotFound(let key, let context): path = context.codingPath + [key]
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            path = context.codingPath
        @unknown default: return nil
        }
        let joined = path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        return joined.isEmpty ? nil : joined
    }

    static func reason(of error: DecodingError) -> String {
        switch error {
        case .keyNotFound: return "missing"
        case .typeMismatch(let type, _): return "expected \(JSONValue.kindName(of: type))"
        case .valueNotFound(let type, _): return "expected \(JSONValue.kindName(of: type)), found null"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "not valid JSON" }
            // A RawRepresentable enum's words: "Cannot initialize Kind from invalid String value x".
            let words = context.debugDescription
            if words.hasPrefix("Cannot initialize "), let range = words.range(of: " from invalid ") {
                let value = words[range.upperBound...].split(separator: " ", maxSplits: 2).dropFirst(2).first.map(String.init) ?? ""
                return "\"\(value)\" is not one of the values this key takes"
            }
            return words
        @unknown default: return "invalid"
        }
    }
}

/// Throws unless each product of sizes fits in an `Int` (as a count of 4-byte floats), naming the
/// first key of the first product that does not.
func checkProducts(path: String, _ products: [[(key: String, value: Int)]]) throws {
    for factors in products {
        var product = MemoryLayout<Float>.size
        for factor in factors {
            let (next, overflow) = product.multipliedReportingOverflow(by: factor.value)
            guard !overflow else {
                let names = factors.map { "\($0.key) \($0.value)" }.joined(separator: " × ")
                throw ShadowError.badJSON(path: path, key: factors[0].key,
                                          reason: "sizes too large: \(names) floats do not fit in memory")
            }
            product = next
        }
    }
}

/// A configuration value that is present but wrong. Thrown from `init(from:)` so the key is named.
struct ConfigValueError: Error {
    let key: String
    let reason: String
}

extension KeyedDecodingContainer {
    /// Runs `decode` for `key`. For a number that is no Int (64.5, 1e30) JSONDecoder throws an
    /// error of its own that reaches the caller as "not valid JSON" under no key; this throws one
    /// naming the key instead.
    func namingKey<T>(_ key: Key, _ decode: () throws -> T) throws -> T {
        do {
            return try decode()
        } catch let error as DecodingError {
            throw error
        } catch {
            guard let number = try? decodeIfPresent(Double.self, forKey: key) else { throw error }
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "must be an integer in range, got \(number)")
        }
    }

    /// A token id or a list of them (eos_token_id may be either); nil when absent or null.
    func tokenIDsIfPresent(_ key: Key) throws -> [Int]? {
        if let one = try? decodeIfPresent(Int.self, forKey: key) { return [one] }
        return try decodeIfPresent([Int].self, forKey: key)
    }

    func integerIfPresent(_ key: Key) throws -> Int? {
        try namingKey(key) { try decodeIfPresent(Int.self, forKey: key) }
    }

    /// Decodes a positive integer, naming the key when it is not.
    func positiveInt(_ key: Key) throws -> Int {
        let value = try namingKey(key) { try decode(Int.self, forKey: key) }
        guard value > 0 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "must be positive, got \(value)")
        }
        return value
    }

    func optionalPositiveInt(_ key: Key) throws -> Int? {
        guard let value = try integerIfPresent(key) else { return nil }
        guard value > 0 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "must be positive, got \(value)")
        }
        return value
    }
}
