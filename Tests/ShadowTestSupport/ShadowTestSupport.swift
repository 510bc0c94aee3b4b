import Foundation
import Testing

// Helpers every test target shares (a library target of the tests, not part of the product).

/// Compares two float arrays element-wise with a relative-or-absolute tolerance and reports the
/// first mismatches and the largest difference (llm.c's tensor check).
public func expectClose(_ actual: [Float], _ expected: [Float], tolerance: Float = 1e-5,
                        _ label: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "\(label): \(actual.count) values, expected \(expected.count)",
            sourceLocation: sourceLocation)
    guard actual.count == expected.count else { return }
    var worst: Float = 0
    var mismatches: [String] = []
    for i in actual.indices {
        let diff = abs(actual[i] - expected[i])
        let allowed = tolerance * max(1, abs(expected[i]))
        worst = max(worst, diff)
        if !(diff <= allowed) && !(actual[i].isNaN && expected[i].isNaN) && mismatches.count < 5 {
            mismatches.append("[\(i)] \(actual[i]) vs \(expected[i])")
        }
    }
    #expect(mismatches.isEmpty, "\(label): largest difference \(worst); first mismatches: \(mismatches.joined(separator: ", "))",
            sourceLocation: sourceLocation)
}

/// Compares with a tolerance relative to each expected value, floored at `floor` times the
/// largest |expected| so values near zero are judged on the tensor's scale; reports the first
/// mismatches and the worst relative error.
public func expectRelativelyClose(_ actual: [Float], _ expected: [Float], tolerance: Double, floor: Double = 1e-3,
                                  _ label: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "\(label): \(actual.count) values, expected \(expected.count)",
            sourceLocation: sourceLocation)
    guard actual.count == expected.count else { return }
    let scale = Double(expected.map { abs($0) }.max() ?? 0)
    var worst = 0.0
    var mismatches: [String] = []
    for i in actual.indices {
        let reference = max(Double(abs(expected[i])), floor * scale, 1e-30)
        let error = Double(abs(actual[i] - expected[i])) / reference
        worst = max(worst, error)
        if !(error <= tolerance) && mismatches.count < 5 { mismatches.append("[\(i)] \(actual[i]) vs \(expected[i])") }
    }
    #expect(mismatches.isEmpty, "\(label): worst relative error \(worst); first mismatches: \(mismatches.joined(separator: ", "))",
            sourceLocation: sourceLocation)
}

/// Deterministic pseudo-random floats in [-1, 1).
public func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Double(state >> 40) / Double(1 << 24)) * 2 - 1
    }
}

/// Temporary files and directories of one test process, all under one root that is removed when
/// the process exits, so test runs do not fill the disk.
public enum TestScratch {
    public static let root: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("shadowllm-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: TestScratch.root) }
        return url
    }()

    /// A fresh path `root/prefix-UUIDsuffix` (nothing is created there).
    public static func url(_ prefix: String, suffix: String = "") -> URL {
        root.appendingPathComponent("\(prefix)-\(UUID().uuidString)\(suffix)")
    }

    public static func path(_ prefix: String, suffix: String = "") -> String { url(prefix, suffix: suffix).path }
}

/// Sets `keys` (a path of dictionary keys) in a JSON object.
public func setJSON(_ object: inout [String: Any], _ keys: [String], _ value: Any) {
    guard let first = keys.first else { return }
    if keys.count == 1 { object[first] = value; return }
    var inner = object[first] as? [String: Any] ?? [:]
    setJSON(&inner, Array(keys.dropFirst()), value)
    object[first] = inner
}
