import Foundation

/// The one error type every ShadowLLM module throws. Each case names the file, key or tensor that
/// was wrong so the CLI can print a single line and exit non-zero.
public enum ShadowError: Error, CustomStringConvertible, Equatable {
    /// Nothing is at the path.
    case fileNotFound(path: String)
    /// The file is there but could not be opened or read; `reason` is the system's ("Permission denied").
    case unreadableFile(path: String, reason: String)
    /// A binary file (GGUF, safetensors) is truncated, corrupt or of a version we do not read.
    case corruptFile(path: String, reason: String)
    /// A JSON file (config.json, tokenizer.json, task files) is malformed or misses a key.
    case badJSON(path: String, key: String?, reason: String)
    /// A tensor is missing, unexpected, of the wrong shape or of an unsupported dtype.
    case badTensor(path: String, tensor: String, reason: String)
    /// The checkpoint names an architecture we do not build.
    case unknownArchitecture(path: String, name: String, known: [String] = [])
    /// A user-supplied value is out of range or malformed (CLI options, prompts, sparsity).
    case invalidArgument(name: String, reason: String)
    /// Anything else, stated in one line.
    case failed(String)
    /// Ctrl-C (SIGINT) or SIGTERM stopped the work; the message says what was saved and how to continue.
    case interrupted(String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            // An option given "" (an unset shell variable) would otherwise read ": no such file or directory".
            return path.isEmpty ? "a path is empty: no such file or directory" : "\(path): no such file or directory"
        case .unreadableFile(let path, let reason):
            return "cannot read \(path): \(reason)"
        case .corruptFile(let path, let reason):
            return "\(path): \(reason)"
        case .badJSON(let path, let key, let reason):
            if let key { return "\(path): key \"\(key)\": \(reason)" }
            return "\(path): \(reason)"
        case .badTensor(let path, let tensor, let reason):
            return "\(path): tensor \"\(tensor)\": \(reason)"
        case .unknownArchitecture(let path, let name, let known):
            return "\(path): unknown architecture \"\(name)\"" + (known.isEmpty ? "" : " (this build reads \(known.joined(separator: ", ")))")
        case .invalidArgument(let name, let reason):
            return "\(name): \(reason)"
        case .failed(let message):
            return message
        case .interrupted(let message):
            return "interrupted: \(message)"
        }
    }

    /// The file the error is about, when it names one (for `--verbose` details).
    public var path: String? {
        switch self {
        case .fileNotFound(let path), .unreadableFile(let path, _), .corruptFile(let path, _), .badJSON(let path, _, _), .badTensor(let path, _, _),
             .unknownArchitecture(let path, _, _):
            return path
        case .invalidArgument, .failed, .interrupted:
            return nil
        }
    }
}

extension ShadowError {
    /// A model's output that came out NaN or infinite (weights or settings too large for single
    /// precision): refused, since a NaN perplexity or a greedy pick among NaNs is no result.
    public static func notFinite(_ what: String) -> ShadowError {
        .failed("\(what) not finite (NaN or infinity): the model's weights or settings overflow single precision")
    }
}

/// "1 sample", "3 samples": a count and its noun, for messages.
public func counted(_ n: Int, _ noun: String, plural: String? = nil) -> String { "\(n) \(n == 1 ? noun : plural ?? noun + "s")" }

/// A string in double quotes with control characters escaped, so error messages stay on one line.
/// Without `escapingQuotes` quotes and backslashes stay as written (a JSON line quoted whole
/// reads better so, and the escapes of its control characters still stand out).
public func quoted(_ text: String, escapingQuotes: Bool = true) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"" where escapingQuotes: result += "\\\""
        case "\\" where escapingQuotes: result += "\\\\"
        case "\n": result += "\\n"
        case "\t": result += "\\t"
        case "\r": result += "\\r"
        default:
            let value = scalar.value
            if value < 0x20 || (0x7F..<0xA0).contains(value) || value == 0x2028 || value == 0x2029 {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result + "\""
}
