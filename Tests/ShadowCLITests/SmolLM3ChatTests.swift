import Foundation
import ShadowModels
import ShadowTestSupport
@testable import ShadowTokenizers
import Testing
@testable import ShadowCLI

@Suite("Command line: SmolLM3 chat template")
struct SmolLM3ChatTests {
    /// transformers' renderings of Fixtures/chat-templates/smollm3.jinja (scripts/reference/chat_renderings.py).
    struct Rendering: Decodable {
        let name: String
        let messages: [[String: String]]
        let enable_thinking: Bool?
        let text: String
    }

    static func renderings() throws -> [Rendering] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/chat-templates/smollm3-renderings.json")
        return try JSONDecoder().decode([Rendering].self, from: Data(contentsOf: url))
    }

    /// The tiny Llama (a ChatML tokenizer) with SmolLM3's chat template and a context of 2048
    /// (its default system turn takes ~700 tokens of this tokenizer).
    static func model() throws -> String {
        let directory = TestScratch.path("smollm3-chat")
        try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: directory)
        let configURL = URL(fileURLWithPath: directory + "/config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["max_position_embeddings"] = 2048
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        try JSONSerialization.data(withJSONObject: ["chat_template": try Llama3ChatTests.template("smollm3")])
            .write(to: URL(fileURLWithPath: directory + "/tokenizer_config.json"))
        return directory
    }

    @Test("prompts are transformers' renderings of SmolLM3's template: its metadata system turn left open, the reasoning mode from --no-think or the system message, earlier replies as the mode writes them")
    func renderingsMatch() throws {
        let tokenizer = try ModelLoader.loadTokenizer(path: try Self.model())
        let now = Date(timeIntervalSince1970: 1_764_892_800)   // early December 2025
        for rendering in try Self.renderings() {
            var template = try ChatTemplate(tokenizer: tokenizer, option: "chat", now: now)
            #expect(template.family == .chatML && template.metadataSystem != nil && template.defaultSystem == "" && !template.dropsReasoning)
            let system = rendering.messages.first { $0["role"] == "system" }?["content"]
            try template.chooseThinking(noThink: rendering.enable_thinking == false, system: system)
            let exchanged = rendering.messages.filter { $0["role"] != "system" }
            let turns = stride(from: 0, to: exchanged.count - 1, by: 2).map {
                ChatTurn(user: exchanged[$0]["content"]!, reply: tokenizer.encode(exchanged[$0 + 1]["content"]!))
            }
            let ids = try template.prompt(system: system ?? template.defaultSystem, turns: turns, user: exchanged.last!["content"]!)
            let text = rendering.text.replacingOccurrences(of: "{DATE}", with: ChatTemplate.strftime("%d %B %Y", now))
            #expect(ids == tokenizer.encodeWithSpecialTokens(text), "\(rendering.name): \(tokenizer.decode(ids, skipSpecialTokens: false).debugDescription)")
        }
    }

    @Test("the defaults are read by the reasoning mode each follows, not by their order")
    func defaultsByMode() throws {
        let template = try Llama3ChatTests.template("smollm3")
        let thinking = try #require(MetadataSystem(template: template)).thinkingDefault
        // The same template with its two defaults' branches swapped.
        let swapped = template.replacingOccurrences(of: #"{%- elif reasoning_mode == "/think" -%}"#, with: #"{%- elif reasoning_mode == "/no_think" -%}"#)
            .replacingOccurrences(of: "{{- \"You are a helpful AI assistant named SmolLM, trained by Hugging Face.\\n\\n\" -}}", with: "{{- \"THINK\" -}}")
            .replacingOccurrences(of: "{{- \"You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role", with: "{{- \"PLAIN. Your role")
        #expect(swapped != template)
        let metadata = try #require(MetadataSystem(template: swapped))
        #expect(metadata.thinkingDefault == "THINK", "\(metadata.thinkingDefault.prefix(60))")
        #expect(metadata.plainDefault.hasPrefix("PLAIN. Your role") && thinking.hasSuffix("conclusion.\n\n"), "\(metadata.plainDefault.prefix(60))")
    }

    @Test("generate --chat, --no-think, --no-system and info on SmolLM3's template")
    func commands() throws {
        let directory = try Self.model()
        let tokenizer = try ModelLoader.loadTokenizer(path: directory)
        let renderings = Dictionary(uniqueKeysWithValues: try Self.renderings().map { ($0.name, $0.text) })
        let today = ChatTemplate.strftime("%d %B %Y", Date())
        for (options, name) in [([String](), "default"), (["--no-think"], "no think"), (["--system", "/no_think"], "only the flag")] {
            let run = CLIRun(["generate", "--model", directory, "--chat", "--prompt", "Hi", "-n", "1", "--json"] + options)
            #expect(run.status == 0, "\(run.err)")
            let text = try #require(renderings[name]).replacingOccurrences(of: "{DATE}", with: today)
            #expect(try run.json()["prompt_tokens"] as? [Int] == tokenizer.encodeWithSpecialTokens(text), "\(options) \(run.out)")
        }
        let bare = CLIRun(["generate", "--model", directory, "--chat", "--no-system", "--prompt", "Hi", "-n", "1", "--json"])
        #expect(try bare.json()["prompt_tokens"] as? [Int] == tokenizer.encodeWithSpecialTokens("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"))
        let info = CLIRun(["info", "--model", directory, "--json"])
        let system = try #require(info.json()["default_system"] as? String)
        #expect(system.hasPrefix("## Metadata\n\nKnowledge Cutoff Date: June 2025\nToday Date: \(today)\nReasoning Mode: /think\n\n## Custom Instructions\n\nYou are a helpful AI assistant named SmolLM"), "\(system)")
    }
}
