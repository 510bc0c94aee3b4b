import Foundation

/// The pipeline's human-readable outputs: a Markdown report, a terminal summary and SVG plots
/// drawn by our own code.
enum PipelineReport {
    static func format(_ value: Double?, _ pattern: String = "%.2f") -> String {
        Markdown.number(value, pattern)
    }

    static func table(_ results: PipelineCommand.Results) -> [String] {
        let taskKeys = Array(Set(results.rows.flatMap { $0.tasks.keys })).sorted()
        // The realised fractions beside the nominal one: masks round per layer or per policy.
        var header = "| method | sparsity (realised heads / neurons) | token perplexity |"
        var rule = "| --- | ---: | ---: |"
        for key in taskKeys { header += " \(key) |"; rule += " ---: |" }
        let pp = results.benchTests.first { $0.hasPrefix("pp") } ?? "pp", tg = results.benchTests.first { $0.hasPrefix("tg") } ?? "tg"
        // Runs from before 2026-12-06 benched f16 only.
        let showsQ8 = results.rows.contains { $0.q8DecodeTokensPerSecond != nil }
        header += " \(pp) t/s | \(tg) t/s |\(showsQ8 ? " \(tg) t/s, q8 |" : "") MB/token | predictor share |"
        rule += " ---: | ---: |\(showsQ8 ? " ---: |" : "") ---: | ---: |"
        var lines = [header, rule]
        for row in results.rows {
            let realised = row.realisedHeadSparsity.map { " (\(format($0)) / \(format(row.realisedNeuronSparsity)))" } ?? ""
            var line = "| \(row.method) | \(row.sparsity)\(realised) | \(format(row.perplexity)) |"
            for key in taskKeys { line += " \(format(row.tasks[key], "%.3f")) |" }
            line += " \(format(row.prefillTokensPerSecond, "%.1f")) | \(format(row.decodeTokensPerSecond, "%.1f")) |"
            if showsQ8 { line += " \(format(row.q8DecodeTokensPerSecond, "%.1f")) |" }
            line += " \(row.bytesPerToken.map(Markdown.megabytes) ?? "—") |"
            line += " \(row.predictorShare.map { String(format: "%.1f%%", $0 * 100) } ?? "—") |"
            lines.append(line)
        }
        return lines
    }

    static func summary(_ results: PipelineCommand.Results) -> String {
        (["", "ShadowLLM pipeline — \(URL(fileURLWithPath: results.model).lastPathComponent), \(results.samples) calibration samples, sparsity \(results.sparsity)", ""]
            + table(results)).joined(separator: "\n")
    }

    static func markdown(_ results: PipelineCommand.Results) -> String {
        var lines = ["# ShadowLLM pipeline report", "",
                     "- model: \(Markdown.code(results.model))",
                     "- date: \(results.date)\(results.steps.contains(where: \.skipped) ? " (this report; the steps done by an earlier run are marked below)" : ""); machine: \(results.machine)",
                     "- calibration samples: \(results.samples)\(results.quick ? " (quick run)" : ""); held-out text: \(Markdown.code(results.heldOutText))",
                     "- sparsity of the sparse rows: \(results.sparsity) of heads and of neurons (layer 0 dense; in brackets the realised fractions, a mean over the tasks evaluated)",
                     "- items scored: " + (results.items.isEmpty ? "none (no task data)" : results.items.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")),
                     "- perplexity is per token on the held-out text; per-task details (standard errors, word perplexity, KL divergence and top-1 agreement against dense): [sweep/report.md](sweep/report.md)",
                     "- speed: f16 weights\(results.rows.contains { $0.q8DecodeTokensPerSecond != nil } ? " (`--weights q8`: 8-bit weights, decode only, in its own column)" : ""); MB/token is what a decoded f16 token reads", "",
                     "## Accuracy and speed", ""]
        lines += table(results)
        if !results.notes.isEmpty { lines += [""] + results.notes.map { "Note: \($0)." } }
        lines += generatedText(results)
        lines += ["", "## Predictors (held-out quality)", "",
                  "Recall at 0.5: the fraction of the units the true scores keep that the predicted ones keep too, with layers ranked together (global) / each layer on its own (per layer).", "",
                  "| predictor | heads ρ | neurons ρ | heads recall@0.5 global / per layer | neurons recall@0.5 global / per layer | parameters | training s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        func recall(_ values: [String: Double]?) -> String { "\(format(values?["global"], "%.3f")) / \(format(values?["local"], "%.3f"))" }
        for (kind, q) in results.predictors.sorted(by: { $0.key < $1.key }) {
            lines.append("| \(kind) | \(format(q.headSpearman, "%.3f")) | \(format(q.neuronSpearman, "%.3f")) | \(recall(q.headRecall)) | \(recall(q.neuronRecall)) | "
                         + "\(q.parameters.map(String.init) ?? "—") | \(format(q.trainingSeconds, "%.1f")) |")
        }
        lines += ["", "## Steps", "", "| step | seconds | |", "| --- | ---: | --- |"]
        for step in results.steps {
            let seconds = step.skipped && step.seconds == 0 ? "—" : String(format: "%.1f", step.seconds)
            lines.append("| \(step.name) | \(seconds) | \(step.skipped ? "done by an earlier run" : "") |")
        }
        lines += ["", "![plots](plots.svg)", ""]
        return lines.joined(separator: "\n")
    }

    /// Each method's reply as `generate` gives it, in a fenced block.
    static func generatedText(_ results: PipelineCommand.Results) -> [String] {
        guard let generation = results.generation, results.rows.contains(where: { $0.generatedText != nil }) else { return [] }
        let how = generation.chat ? "as a user's turn of the chat template, no system turn" : "as text to continue"
        var lines = ["", "## Generated text", "",
                     "Each method's greedy reply (at most \(generation.maxTokens) tokens, \(generation.weights) weights) to \(Markdown.code(visible(generation.prompt))), \(how)\(generation.noThink ? ", thinking switched off" : ""); ↵ ends a line of it:", ""]
        for row in results.rows {
            guard let text = row.generatedText else { continue }
            lines += ["**\(row.method)**\(row.method == "dense" ? "" : " at \(row.sparsity)")", ""]
                + (text.isEmpty ? ["(no text: the reply ended at once)"] : Markdown.codeBlock(visible(text))) + [""]
        }
        return Array(lines.dropLast())
    }

    /// A reply with its line breaks shown (↵ ends each line), a run of three or more as one
    /// "↵ × n" line: a reply of 48 newlines, which sparse models write, would be an empty block.
    static func visible(_ text: String) -> String {
        var out = "", breaks = 0
        func flush() {
            out += breaks >= 3 ? "↵ × \(breaks)\n" : String(repeating: "↵\n", count: breaks)
            breaks = 0
        }
        for character in text {
            if character.isNewline { breaks += 1; continue }   // "\r\n" is one Character
            flush()
            out.append(character)
        }
        flush()
        return out.hasSuffix("\n") ? String(out.dropLast()) : out
    }

    /// Two bar charts side by side: held-out perplexity and decode tokens/s per method.
    static func svg(_ results: PipelineCommand.Results) -> String {
        let charts: [(title: String, values: [(String, Double)])] = [
            ("held-out perplexity (lower is better)", results.rows.compactMap { r in r.perplexity.map { (r.method, $0) } }),
            ("decode tokens/s (higher is better)", results.rows.compactMap { r in r.decodeTokensPerSecond.map { (r.method, $0) } }),
        ]
        let width = 360.0, height = 240.0
        var svg = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width * 2 + 40))\" height=\"\(Int(height + 20))\" font-family=\"sans-serif\" font-size=\"12\">",
                   "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"]
        let colors = SVG.palette
        for (c, chart) in charts.enumerated() {
            let x0 = 20 + Double(c) * (width + 20), top = 40.0, bottom = height - 30
            svg.append("<text x=\"\(x0 + width / 2)\" y=\"20\" text-anchor=\"middle\" font-weight=\"bold\">\(SVG.escape(chart.title))</text>")
            svg.append("<line x1=\"\(x0)\" y1=\"\(bottom)\" x2=\"\(x0 + width)\" y2=\"\(bottom)\" stroke=\"black\"/>")
            let maximum = max(chart.values.map(\.1).max() ?? 1, 1e-9)
            let slot = width / Double(max(chart.values.count, 1))
            for (i, (label, value)) in chart.values.enumerated() {
                let barHeight = (bottom - top) * value / maximum
                let x = x0 + Double(i) * slot + slot * 0.15
                svg.append("<rect x=\"\(SVG.number(x))\" y=\"\(SVG.number(bottom - barHeight))\" width=\"\(SVG.number(slot * 0.7))\" height=\"\(SVG.number(barHeight))\" fill=\"\(colors[i % colors.count])\"/>")
                svg.append("<text x=\"\(SVG.number(x + slot * 0.35))\" y=\"\(SVG.number(bottom - barHeight - 4))\" text-anchor=\"middle\">\(String(format: "%.1f", value))</text>")
                svg.append("<text x=\"\(SVG.number(x + slot * 0.35))\" y=\"\(SVG.number(bottom + 16))\" text-anchor=\"middle\">\(SVG.escape(label))</text>")
            }
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }


}
