import Foundation
import ShadowModels
import ShadowTestSupport
@testable import ShadowTokenizers
import Testing
@testable import ShadowCLI

@Suite("Command line: Qwen3's thinking in the ChatML template")
struct ThinkingChatTests {
    /// The tiny Llama (ChatML markers) with Qwen3's chat template.
    static func model(name: String) throws -> String {
        let directory = TestScratch.path("qwen3-template-\(name)")
        try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: directory)
        try JSONSerialization.data(withJSONObject: ["chat_template": try Llama3ChatTests.template("qwen3")])
            .write(to: URL(fileURLWithPath: directory + "/tokenizer_config.json"))
        return directory
    }

    // The expected texts are jinja2 3.1.6's renderings of Fixtures/chat-templates/qwen3.jinja
    // (transformers' settings) for the same messages.

    @Test("an earlier reply is written without its reasoning, as Qwen3's template writes it")
    func reasoningDropped() throws {
        let tokenizer = try ModelLoader.loadTokenizer(path: try Self.model(name: "drop"))
        let template = try ChatTemplate(tokenizer: tokenizer, option: "chat")
        #expect(template.family == .chatML && template.dropsReasoning && template.hasThinkingSwitch && template.defaultSystem == nil)
        let reply = tokenizer.encode("<think>\nThe user greets.\n</think>\n\nHello!")
        let prompt = try template.prompt(system: nil, turns: [ChatTurn(user: "Hi", reply: reply)], user: "More")
        #expect(prompt == tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n"))
        // A reply without a think block is kept as generated.
        let plain = tokenizer.encode("Hello!")
        #expect(template.turn(user: "Hi", reply: plain) == template.message("user", "Hi") + template.replyStart + template.closing(reply: plain))
        // ChatML templates without </think> keep every reply whole.
        let smol = try ChatTemplate(tokenizer: try ModelLoader.loadTokenizer(path: fixture("tiny-llama")), option: "chat")
        #expect(!smol.dropsReasoning && !smol.hasThinkingSwitch)
        #expect(smol.turn(user: "Hi", reply: reply) == smol.message("user", "Hi") + smol.replyStart + smol.closing(reply: reply))
    }

    @Test("--no-think starts the reply after an empty think block, which earlier replies do not keep")
    func noThink() throws {
        let directory = try Self.model(name: "no-think")
        let tokenizer = try ModelLoader.loadTokenizer(path: directory)
        let run = CLIRun(["generate", "--model", directory, "--chat", "--no-think", "--prompt", "Hi", "-n", "2", "--json"])
        #expect(run.status == 0, "\(run.err)")
        #expect(try run.json()["prompt_tokens"] as? [Int]
                == tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"), "\(run.out)")
        var template = try ChatTemplate(tokenizer: tokenizer, option: "chat")
        template.thinking = false
        let prompt = try template.prompt(system: nil, turns: [ChatTurn(user: "Hi", reply: tokenizer.encode("Hello!"))], user: "More")
        #expect(prompt == tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"))
        let chat = CLIRun(["chat", "--model", directory, "--no-think", "--json", "-n", "3"], input: ["Hi", "More"])
        #expect(chat.status == 0 && chat.out.split(separator: "\n").count == 2, "\(chat.err)")
    }

    @Test("a template whose generation prompt opens the reasoning (QwQ, Qwen3-Thinking) starts the reply after its <think>")
    func openedReasoning() throws {
        let qwen3 = try Llama3ChatTests.template("qwen3")
        let forced = qwen3.replacingOccurrences(of: """
            {{- '<|im_start|>assistant\\n' }}
                {%- if enable_thinking is defined and enable_thinking is false %}
                    {{- '<think>\\n\\n</think>\\n\\n' }}
                {%- endif %}
            """, with: "{{- '<|im_start|>assistant\\n<think>\\n' }}")
        #expect(forced != qwen3)
        #expect(ChatTemplate.generationPromptTail(in: forced) == "<think>\n" && ChatTemplate.generationPromptTail(in: qwen3) == "")
        let directory = TestScratch.path("qwq-template")
        try FileManager.default.copyItem(atPath: fixture("tiny-llama"), toPath: directory)
        try JSONSerialization.data(withJSONObject: ["chat_template": forced]).write(to: URL(fileURLWithPath: directory + "/tokenizer_config.json"))
        let tokenizer = try ModelLoader.loadTokenizer(path: directory)
        let template = try ChatTemplate(tokenizer: tokenizer, option: "chat")
        #expect(!template.hasThinkingSwitch && template.dropsReasoning)
        // jinja2's rendering of the edited template: the reply opens inside <think>, and an earlier
        // reply (generated after it) keeps only its answer.
        let reply = tokenizer.encode("The user greets.\n</think>\n\nHello!")
        #expect(try template.prompt(system: nil, turns: [ChatTurn(user: "Hi", reply: reply)], user: "More") == tokenizer.encode(
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n<think>\n"))
    }

    @Test("--no-think is refused without a thinking switch in the template, and without --chat")
    func noThinkRefused() {
        let chat = CLIRun(["chat", "--model", fixture("tiny-llama"), "--no-think"], input: ["Hi"])
        #expect(chat.status == 1 && chat.err == "error: --no-think: the model's chat template has no thinking switch (enable_thinking)\n", "\(chat.err)")
        let plain = CLIRun(["generate", "--model", fixture("tiny-llama"), "--no-think", "--prompt", "Hi"])
        #expect(plain.status == 1 && plain.err == "error: --no-think: applies to --chat only\n", "\(plain.err)")
    }
}
