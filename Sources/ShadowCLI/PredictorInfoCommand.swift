import Foundation
import ShadowFormats
import ShadowSparsity

/// `shadowllm predictor info FILE`: what a predictor file holds — its kind, criterion, networks,
/// the model it was trained for, its training and its held-out quality.
enum PredictorInfoCommand {
    static let command = Command(
        name: "predictor info", abstract: "Describe a predictor file (kind, model, training, held-out quality).",
        discussion: """
            The file is loaded in full, so a corrupt or incomplete predictor is reported here. With --traces, the \
            predictor is also measured on the samples of another trace directory of its model (calibrated on other \
            tasks or texts, say), with the same ρ and recall as its held-out quality. Samples it trained on are left \
            out, found by their content (shards merged, traces extended or copied; files written before 2026-12-07 \
            do not record them, and only their own training directory is refused).
            """,
        positional: .value("file", "file", help: "A predictor written by train-predictor."),
        options: [
            .flag("json", help: "Print the metadata as JSON (held-out quality under quality.heads / quality.neurons)."),
            .flag("markdown", help: "Print the description and the held-out quality report as Markdown (a table of ρ and recall per unit)."),
            .value("traces", "dir", help: "Also measure the predictor on the samples of this trace directory (not its training traces; samples it trained on, found by content, are left out); JSON: quality_on_traces."),
        ]
    ) { arguments, console in
        let path = try arguments.required("file")
        if arguments.flag("json") && arguments.flag("markdown") {
            throw ShadowError.invalidArgument(name: "--markdown", reason: "give only one of --json and --markdown")
        }
        let predictor = try PredictorFile.load(path: path)
        let measured = try arguments.string("traces").map { try measure(predictor, traces: $0) }
        if arguments.flag("json") {
            console.print(try json(predictor.metadata, path: path, measured: measured))
        } else if arguments.flag("markdown") {
            console.print(markdown(predictor.metadata, path: path, measured: measured))
        } else {
            console.print(summary(predictor.metadata, path: path, measured: measured))
        }
    }

    /// A predictor's quality on the samples of a trace directory other than its training one.
    struct Measured: Encodable {
        var traces: String
        var quality: PredictorQualityReport
        /// Samples of the directory the predictor trained on, left out of `quality` (nil for a
        /// file that does not record them: only its own training directory is refused then).
        var trainingSamplesLeftOut: Int?

        enum CodingKeys: String, CodingKey {
            case traces, quality, trainingSamplesLeftOut = "training_samples_left_out"
        }

        var title: String { "quality on \(traces)" }
        /// How many samples were left out as training samples, when any were.
        var note: String? {
            trainingSamplesLeftOut.flatMap { $0 > 0 ? "\(counted($0, "sample")) it trained on left out" : nil }
        }
    }

    static func measure(_ predictor: Predictor, traces: String) throws -> Measured {
        let m = predictor.metadata
        let manifest = try TraceStore.open(directory: traces)
        let directory = URL(fileURLWithPath: traces).standardizedFileURL.path   // as training records it
        if let training = m.training, AtomicFile.canonical(training.traces) == AtomicFile.canonical(traces) {
            throw ShadowError.invalidArgument(name: "--traces", reason: "\(traces) is what the predictor was trained on; its held-out quality is already in the file")
        }
        guard manifest.criteria.contains(m.criterion) else {
            throw ShadowError.invalidArgument(name: "--traces", reason: "\(traces) has no \"\(m.criterion)\" scores, the predictor's criterion (it has \(manifest.criteria.joined(separator: ", ")))")
        }
        guard manifest.model == m.model else {
            throw ShadowError.invalidArgument(name: "--traces", reason: "\(traces) was calibrated on another model than the predictor's: \(m.model.difference(to: manifest.model))")
        }
        // The inputs must be the activations of the token the predictor learned to read.
        if let token = m.training?.predictorToken, token != manifest.predictorToken.rawValue {
            throw ShadowError.invalidArgument(name: "--traces", reason: "\(traces) holds activations at the \(manifest.predictorToken.rawValue) token; the predictor reads the \(token) token")
        }
        let data = try PredictorDataset.load(directory: traces, criterion: m.criterion, kind: m.kind, forTraining: false)
        // The same samples may sit in another directory (shards merged, traces extended, a copy).
        var samples = Array(0..<data.count), leftOut: Int?
        if let trained = predictor.trainingSampleDigests {
            samples = data.samples(excluding: trained)
            leftOut = data.count - samples.count
            guard !samples.isEmpty else {
                throw ShadowError.invalidArgument(name: "--traces", reason: "every sample of \(traces) is one the predictor trained on; its held-out quality is already in the file")
            }
        }
        return Measured(traces: directory, quality: PredictorQuality.measure(predictor, data: data, samples: samples), trainingSamplesLeftOut: leftOut)
    }

    /// The metadata as JSON with the file's path and size added (and the quality on other traces).
    static func json(_ metadata: PredictorMetadata, path: String, measured: Measured? = nil) throws -> String {
        let data = Data(try JSONOutput.string(metadata).utf8)
        guard var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ShadowError.failed("\(path): metadata does not encode as a JSON object")
        }
        if let measured {
            object["quality_on_traces"] = try JSONSerialization.jsonObject(with: Data(try JSONOutput.string(measured).utf8))
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
    static func summary(_ m: PredictorMetadata, path: String, measured: Measured? = nil) -> String {
        var lines = ["predictor: \(path)"] + description(m)
        if let q = m.quality { lines += qualityLines(q, title: "held-out quality", layers: m.model.shape.layers) }
        if let measured {
            lines += qualityLines(measured.quality, title: measured.title, note: measured.note, layers: m.model.shape.layers)
        }
        return lines.joined(separator: "\n")
    }

    /// ρ and recall per unit as an aligned text table.
    static func qualityLines(_ q: PredictorQualityReport, title: String, note: String? = nil, layers: Int) -> [String] {
        let keys = PredictorQuality.sparsities.map(PredictorQuality.key)
        var lines = ["\(title) (\(counted(q.heldOutSamples, "sample")), layers 1…\(layers - 1)\(note.map { "; \($0)" } ?? "")):",
                     "  " + "".padding(toLength: 9, withPad: " ", startingAt: 0) + "Spearman ρ" + keys.map { "  recall@\($0)" }.joined()]
        func row(_ name: String, _ u: UnitQuality) -> String {
            "  " + name.padding(toLength: 9, withPad: " ", startingAt: 0) + String(format: "%10.3f", u.spearman)
                + keys.map { recallCell(u.recall[$0], width: 12) }.joined()
        }
        lines.append(row("heads", q.heads))
        if let n = q.neurons { lines.append(row("neurons", n)) }
        // Recall when each layer keeps its own top k (older files do not have it).
        let local = [("heads", q.heads.localRecall), ("neurons", q.neurons?.localRecall)].compactMap { name, recall in recall.map { (name, $0) } }
        if !local.isEmpty {
            lines.append("  each layer its own top k (the local policy):")
            for (name, recall) in local {
                lines.append("  " + name.padding(toLength: 19, withPad: " ", startingAt: 0) + keys.map { recallCell(recall[$0], width: 12) }.joined())
            }
        }
        return lines
    }

    /// The same as Markdown: the description as a list, the held-out quality as a table.
    static func markdown(_ m: PredictorMetadata, path: String, measured: Measured? = nil) -> String {
        var lines = ["# Predictor \(Markdown.code(path))", ""]
        for line in description(m) {
            // An indented line goes on with the one above (the training options).
            if line.hasPrefix(" "), let last = lines.popLast() { lines.append(last + "; " + line.trimmingCharacters(in: .whitespaces)) }
            else { lines.append("- " + line) }
        }
        let layers = m.model.shape.layers
        if let q = m.quality {
            lines += ["", "## Held-out quality (\(counted(q.heldOutSamples, "sample")), layers 1…\(layers - 1))", ""]
                + qualityTable(q, layers: layers, explained: true)
        } else {
            lines += ["", "No held-out quality recorded."]
        }
        if let measured {
            let leftOut = measured.trainingSamplesLeftOut.map { $0 > 0 ? "; \(counted($0, "sample")) it trained on left out" : "" } ?? ""
            lines += ["", "## Quality on \(Markdown.code(measured.traces)) (\(counted(measured.quality.heldOutSamples, "sample"))\(leftOut), layers 1…\(layers - 1))", ""]
                + qualityTable(measured.quality, layers: layers, explained: m.quality?.heads.localRecall == nil)   // said once
        }
        return (lines + [""]).joined(separator: "\n")
    }

    /// A recall figure to three decimals, right-aligned in `width` characters; "—" when the file
    /// has none at that sparsity (written by hand, or by a build that measured others).
    static func recallCell(_ recall: Double?, width: Int = 0) -> String {
        let text = recall.map { String(format: "%.3f", $0) } ?? "—"
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }

    /// ρ and recall per unit as a Markdown table, `explained` after a sentence that says what they are.
    static func qualityTable(_ q: PredictorQualityReport, layers: Int, explained: Bool) -> [String] {
        let keys = PredictorQuality.sparsities.map(PredictorQuality.key)
        let hasLocal = q.heads.localRecall != nil
        var lines = !explained ? [] : ["Spearman ρ between predicted and true scores per sample (mean over samples); recall: the fraction of the units the true "
                  + "scores keep that the predicted ones keep too, ranking layers 1…\(layers - 1) together (the global policy)"
                  + (hasLocal ? " or each layer on its own (the local policy)." : "."), ""]
        var header = "| units | Spearman ρ |" + keys.map { " recall@\($0) |" }.joined()
        if hasLocal { header += keys.map { " per-layer recall@\($0) |" }.joined() }
        lines += [header, "| --- |" + String(repeating: " ---: |", count: 1 + keys.count * (hasLocal ? 2 : 1))]
        for (name, unit) in [("heads", q.heads), ("neurons", q.neurons)] {
            guard let unit else { continue }
            var row = "| \(name) | \(String(format: "%.3f", unit.spearman)) |" + keys.map { " \(recallCell(unit.recall[$0])) |" }.joined()
            if hasLocal { row += keys.map { key in " \(recallCell(unit.localRecall?[key])) |" }.joined() }
            lines.append(row)
        }
        return lines
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
            lines.append(String(format: "  epochs %ld heads / %ld neurons, batch %ld / %ld, lr %g, weight decay %g, seed %llu, %.1f s",
                                o.headEpochs, o.neuronEpochs, o.headBatch, o.neuronBatch, o.learningRate, o.weightDecay, o.seed, t.seconds))
        }
        return lines
    }
}
