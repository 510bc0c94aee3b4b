import Foundation
import Testing
import ShadowFormats
@testable import ShadowTasks

// Task files written by the tests into a fresh temporary directory, and the checks the suites share.

/// A temporary directory that removes itself; `file(_:_:)` writes one file into it.
final class TempDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("ShadowTasksTests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// Writes `text` as UTF-8 and returns the file's path.
    @discardableResult
    func file(_ name: String, _ text: String) throws -> String {
        try bytes(name, Array(text.utf8))
    }

    @discardableResult
    func bytes(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = url.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// JSON Lines from dictionaries, one object per line, keys sorted.
func jsonLinesText(_ objects: [[String: Any]]) throws -> String {
    try objects.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]), as: UTF8.self) }
        .joined(separator: "\n") + "\n"
}

/// Runs `body` and returns the one-line message of the `ShadowError` it throws; records a
/// failure when it throws nothing or something else.
func shadowErrorMessage(_ body: () throws -> Any, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        _ = try body()
        Issue.record("expected a ShadowError, but nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as ShadowError {
        let message = error.description
        #expect(!message.contains("\n"), "the message should be one line: \(message)", sourceLocation: sourceLocation)
        return message
    } catch {
        Issue.record("expected a ShadowError, got \(error)", sourceLocation: sourceLocation)
    }
    return ""
}

/// The shared data folder (`../shared/data` from the package root), or nil when this checkout has none.
func sharedDataPath(_ relative: String) -> String? {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let path = root.appendingPathComponent("../shared/data/\(relative)").standardized.path
    return FileManager.default.fileExists(atPath: path) ? path : nil
}

/// Time limits stretch under scripts/sanitize.sh, whose instrumented code runs 5–20× slower.
let sanitizerSlowdown = ProcessInfo.processInfo.environment["SHADOWLLM_SANITIZER"] == nil ? 1 : 20
