import Foundation
import ShadowFormats
import ShadowSparsity

/// `shadowllm predictor info FILE`: what a predictor file holds — its kind, criterion, networks,
/// the model it was trained for, its training and its held-out quality.
enum PredictorInfoCommand {
    static let command = Command(
        name: "predictor info", abstract: "Describe a predictor file (kind, model, training, held-out quality).",
        discussion: "The file is loaded in full, so a corrupt or incomplete predictor is reported here.",
        positional: .value("file", "file", help: "A predictor written by train-predictor."),
        options: [
            .flag("json", help: "Print the metadata as JSON (held-out quality under quality.heads / quality.neurons)."),
            .flag("markdown", help: "Print the description and the held-out quality report as Markdown (a table of ρ and recall per unit)."),
        ]
    ) { arguments, console in
        let path = try arguments.required("file")
        if arguments.flag("json") && arguments.flag("markdown") {
            throw ShadowError.invalidArgument(name: "--markdown", reason: "give only one of --json and --markdown")
        }
        let predictor = try PredictorFile.load(path: path)
        if arguments.flag("json") {
            console.print(try json(predictor.metadata, path: path))
        } else if arguments.flag("markdown") {
            console.print(markdown(predictor.metadata, path: path))
        } else {
            console.print(summary(predictor.metadata, path: path))
        }
    }

    /// The metadata as JSON with the file's path and size added.
    static func json(_ metadata: PredictorMetadata, path: String) throws -> String {
        let data = Data(try JSONOutput.string(metadata).utf8)
        guard var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ShadowError.failed("\(path): metadata does not encode as a JSON object")
        }
        object["file"] = path
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int { object["file_bytes"] = size }
        let text = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: text, as: UTF8.self)
    }

    static func count(_ n: Int) -> String {
        n >= 1_000_000_000 ? String(format: "%.2f G", Double(n) / 1e9)
            : n >= 1_000_000 ? String(format: "%.2f M", Double(n) / 1e6)
            : n >= 1_000 ? String(format: "%.1f k", Double(n) / 1e3) : String(n)
    }

    /// A human-readable description.
    static func summary(_ m: PredictorMetadata, path: String) -> String {
        var lines = ["predictor: \(path)"] + description(m)
        if let q = m.quality {
            let keys = PredictorQuality.sparsities.map(PredictorQuality.key)
            lines.append("held-out quality (\(counted(q.heldOutSamples, "sample")), layers 1…\(m.model.shape.layers - 1)):")
            lines.append("  " + "".padding(toLength: 9, withPad: " ", startingAt: 0) + "Spearman ρ" + keys.map { "  recall@\($0)" }.joined())
            func row(_ name: String, _ u: UnitQuality) -> String {
                "  " + name.padding(toLength: 9, withPad: " ", startingAt: 0) + String(format: "%10.3f", u.spearman)
                    + keys.map { String(format: "%12.3f", u.recall[$0] ?? .nan) }.joined()
            }
            lines.append(row("heads", q.heads))
            if let n = q.neurons { lines.append(row("neurons", n)) }
            // Recall when each layer keeps its own top k (older files do not have it).
            let local = [("heads", q.heads.localRecall), ("neurons", q.neurons?.localRecall)].compactMap { name, recall in recall.map { (name, $0) } }
            if !local.isEmpty {
                lines.append("  each layer its own top k (the local policy):")
                for (name, recall) in local {
                    lines.append("  " + name.padding(toLength: 19, withPad: " ", startingAt: 0) + keys.map { String(format: "%12.3f", recall[$0] ?? .nan) }.joined())
                }
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The same as Markdown: the description as a list, the held-out quality as a table.
    static func markdown(_ m: PredictorMetadata, path: String) -> String {
        var lines = ["# Predictor \(Markdown.code(path))", ""]
        for line in description(m) {
            // An indented line goes on with the one above (the training options).
            if line.hasPrefix(" "), let last = lines.popLast() { lines.append(last + "; " + line.trimmingCharacters(in: .whitespaces)) }
            else { lines.append("- " + line) }
        }
        guard let q = m.quality else { return (lines + ["", "No held-out quality recorded.", ""]).joined(separator: "\n") }
        let keys = PredictorQuality.sparsities.map(PredictorQuality.key)
        let hasLocal = q.heads.localRecall != nil
        lines += ["", "## Held-out quality (\(counted(q.heldOutSamples, "sample")), layers 1…\(m.model.shape.layers - 1))", "",
                  "Spearman ρ between predicted and true scores per sample (mean over samples); recall: the fraction of the units the true "
                  + "scores keep that the predicted ones keep too, ranking layers 1…\(m.model.shape.layers - 1) together (the global policy)"
                  + (hasLocal ? " or each layer on its own (the local policy)." : "."), ""]
        var header = "| units | Spearman ρ |" + keys.map { " recall@\($0) |" }.joined()
        if hasLocal { header += keys.map { " per-layer recall@\($0) |" }.joined() }
        lines += [header, "| --- |" + String(repeating: " ---: |", count: 1 + keys.count * (hasLocal ? 2 : 1))]
        for (name, unit) in [("heads", q.heads), ("neurons", q.neurons)] {
            guard let unit else { continue }
            var row = "| \(name) | \(String(format: "%.3f", unit.spearman)) |" + keys.map { " \(String(format: "%.3f", unit.recall[$0] ?? .nan)) |" }.joined()
            if hasLocal { row += keys.map { key in " \(unit.localRecall.map { String(format: "%.3f", $0[key] ?? .nan) } ?? "—") |" }.joined() }
            lines.append(row)
        }
        return (lines + [""]).joined(separator: "\n")
    }

    /// What the file holds, one line each: kind, model, networks, size, training.
    static func description(_ m: PredictorMetadata) -> [String] {
        let s = m.model.shape
        var lines: [String] = []
        lines.append("kind: \(m.kind.rawValue), criterion \(m.criterion)\(m.predictsNeurons ? "" : " (heads only)")")
        lines.append("model: \(m.model)")
        let headOut = m.kind == .shadow ? "\(s.layers)·\(s.heads)" : "\(s.heads) per layer"
        let neuronOut = m.kind == .shadow ? "\(s.layers)·\(s.ffnSize)" : "\(s.ffnSize) per layer"
        let rank = m.rank.map { " → \($0)" } ?? ""
        lines.append("input: \(m.input)")
        lines.append("networks: heads \(m.inputWidth) → \(m.headWidth) → \(headOut)"
                     + (m.predictsNeurons ? "; neurons \(m.inputWidth) → \(m.neuronWidth)\(rank) → \(neuronOut)" : ""))
        lines.append("targets: \(m.targetScaling.rawValue) min-max scaled; loss \(m.loss.rawValue)"
                     + (m.loss == .rank ? String(format: " (temperature %g)", m.rankTemperature) : ""))
        lines.append("parameters: \(count(m.parameters.total)) (heads \(count(m.parameters.heads)), neurons \(count(m.parameters.neurons)))"
                     + ", stored as \(m.weightsDType ?? "f32")")
        lines.append("FLOPs per prediction: \(count(m.flopsPerPrediction.total))"
                     + (m.kind == .shadow ? " (once per prompt)" : " (all layers, once per token when re-predicted every token)"))
        if let t = m.training {
            let o = t.options
            lines.append("training: \(t.samples) samples from \(t.traces) (\(t.trainSamples) train, \(t.heldOutSamples) held out, split seed \(o.splitSeed))"
                         + (t.predictorToken.map { "; predictor token \($0)" } ?? ""))
            lines.append(String(format: "  epochs %d heads / %d neurons, batch %d / %d, lr %g, weight decay %g, seed %llu, %.1f s",
                                o.headEpochs, o.neuronEpochs, o.headBatch, o.neuronBatch, o.learningRate, o.weightDecay, o.seed, t.seconds))
        }
        return lines
    }
}
