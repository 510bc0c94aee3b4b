import Foundation
import ShadowEval
import ShadowSparsity

/// The sweep's human-readable outputs: Markdown tables and SVG plots drawn by our own code.
enum SweepReport {
    typealias Results = SweepCommand.Results

    static func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }

    /// Multiple-choice tasks of the results, in order of appearance.
    static func choiceTasks(_ results: Results) -> [String] {
        ordered(results.rows.map(\.task)).filter { $0 != "wikitext" }
    }

    static func ordered<Value: Hashable>(_ values: [Value]) -> [Value] {
        var seen = Set<Value>()
        return values.filter { seen.insert($0).inserted }
    }

    /// The mean of the tasks' headline accuracies (PIQA acc, HellaSwag acc_norm, …) for a cell;
    /// none when a task has no result for it (a cell of an earlier command that a later one left
    /// unfinished), so that no mean is taken over fewer tasks than its neighbours'.
    static func meanAccuracy(_ results: Results, cell: SweepCell) -> Double? {
        meanOverTasks(results, cell: cell) { $0.metrics[SweepRow.headlineMetric(task: $0.task)] }
    }

    /// The mean of a cell's multiple-choice rows' `value`, none when a task has no row for it.
    static func meanOverTasks(_ results: Results, cell: SweepCell, _ value: (SweepRow) -> Double?) -> Double? {
        let values = choiceTasks(results).map { task in results.rows.first { $0.task == task && $0.cell == cell }.flatMap(value) }
        return values.contains(nil) ? nil : mean(values.compactMap { $0 })
    }

    static func value(_ results: Results, task: String, cell: SweepCell) -> Double? {
        results.rows.first { $0.task == task && $0.cell == cell }?.metrics[SweepRow.headlineMetric(task: task)]
    }

    static func format(_ value: Double?, _ pattern: String = "%.3f") -> String {
        Markdown.number(value, pattern)
    }

    /// One row per cell: each task's headline metric, the accuracy mean, divergence from dense.
    static func table(_ results: Results) -> [String] {
        let tasks = ordered(results.rows.map(\.task))
        let choice = choiceTasks(results)
        var header = "| method | criterion | sparsity |"
        var rule = "| --- | --- | ---: |"
        for task in tasks {
            header += " \(task) \(SweepRow.headlineMetric(task: task)) |"   // named as results.json keys it
            rule += " ---: |"
        }
        // The mean of those tasks' columns: "mean acc/acc_norm" when it mixes the two.
        if choice.count > 1 { header += " mean \(ordered(choice.map(SweepRow.headlineMetric)).joined(separator: "/")) |"; rule += " ---: |" }
        header += " KL | top-1 | realised heads / neurons | seconds |"
        rule += " ---: | ---: | ---: | ---: |"
        var lines = [header, rule]
        for cell in ordered(results.rows.map(\.cell.key)).compactMap({ key in results.rows.first { $0.cell.key == key }?.cell }).sorted() {
            var line = "| \(cell.method) | \(cell.criterion ?? "—") | \(cell.method == "dense" ? "0" : String(format: "%.2f", cell.sparsity)) |"
            for task in tasks {
                let row = results.rows.first { $0.task == task && $0.cell == cell }
                let metric = SweepRow.headlineMetric(task: task)
                if task == "wikitext" {
                    line += " \(format(row?.metrics[metric], "%.2f")) |"
                } else {
                    line += row == nil ? " — |" : " \(format(row?.metrics[metric])) ± \(format(row?.metrics[metric + "_stderr"])) |"
                }
            }
            if choice.count > 1 { line += " \(format(meanAccuracy(results, cell: cell))) |" }
            line += " \(format(meanOverTasks(results, cell: cell, \.klDivergence), "%.4f")) | \(format(meanOverTasks(results, cell: cell, \.top1Agreement))) |"
            let realised = results.rows.first { $0.cell == cell && $0.realisedHeadSparsity != nil }
            line += " \(format(realised?.realisedHeadSparsity, "%.2f")) / \(format(realised?.realisedNeuronSparsity, "%.2f")) |"
            let rows = results.rows.filter { $0.cell == cell }   // a total over fewer tasks would mislead
            line += " \(format(rows.count == tasks.count ? rows.reduce(0) { $0 + $1.seconds } : nil, "%.1f")) |"
            lines.append(line)
        }
        return lines
    }

    /// The paper's criteria table: static masks per criterion at each sparsity, WikiText
    /// perplexity and the accuracy mean.
    static func criteriaTable(_ results: Results) -> [String] {
        let cells = results.rows.map(\.cell).filter { $0.method == "static" }
        guard !cells.isEmpty else { return [] }
        let sparsities = Array(Set(cells.map(\.sparsity))).sorted()
        let hasText = results.rows.contains { $0.task == "wikitext" }
        let choice = choiceTasks(results)
        var header = "| criterion |", rule = "| --- |"
        for p in sparsities {
            if hasText { header += " ppl @\(Int((p * 100).rounded()))% |"; rule += " ---: |" }
            if !choice.isEmpty { header += " acc @\(Int((p * 100).rounded()))% |"; rule += " ---: |" }
        }
        var lines = [header, rule]
        for criterion in ordered(cells.compactMap(\.criterion)) {
            var line = "| \(criterion) |"
            for p in sparsities {
                let cell = SweepCell(method: "static", criterion: criterion, sparsity: p)
                if hasText { line += " \(format(value(results, task: "wikitext", cell: cell), "%.2f")) |" }
                if !choice.isEmpty { line += " \(format(meanAccuracy(results, cell: cell))) |" }
            }
            lines.append(line)
        }
        return lines
    }

    static func markdown(_ results: Results) -> String {
        var lines = ["# ShadowLLM sweep", "",
                     "- model: \(Markdown.code(results.model))",
                     "- date: \(results.date); machine: \(results.machine); evaluation time \(String(format: "%.0f", results.seconds)) s",
                     "- command: \(Markdown.code(results.command))"]
        if results.commands.count > 1 {
            lines.append("- with the cells of the earlier commands in this directory:")
            lines += results.commands.dropLast().map { "  - \(Markdown.code($0))" }
        }
        lines += ["- settings: \(results.settings)", "",
                     "## Results", "",
                     "Headline metric per task (acc, HellaSwag acc_norm, WikiText word perplexity) ± standard error; " +
                     "KL is the mean KL(dense ‖ sparse) of the next-token distribution at scored positions; " +
                     "seconds is the cell's own evaluation time over all tasks (its passes, and a share of the work the cells shared).", ""]
        lines += table(results)
        let criteria = criteriaTable(results)
        if !criteria.isEmpty {
            let pruned = results.units == .both ? "" : ", \(results.units.description)"
            lines += ["", "## Criteria (static masks from aggregate scores\(pruned))", ""] + criteria
        }
        let truncated = truncation(results)
        if !truncated.isEmpty {
            lines += ["", "Cut to the model's context (items that lost tokens from their start, as lm-eval truncates them): " +
                      truncated.map { "\($0.task) \($0.items) of \($0.of)" }.joined(separator: ", ") + "."]
        }
        if !results.skipped.isEmpty {
            lines += ["", "Skipped: " + results.skipped.joined(separator: "; ") + "."]
        }
        lines += ["", "![metrics against sparsity](sweep.svg)", ""]
        if !results.headImportance.isEmpty { lines += ["![mean head importance per layer](heads.svg)", ""] }
        return lines.joined(separator: "\n")
    }

    /// Per task with items cut to the context, how many of how many: the largest count of its
    /// rows (every cell scores the same requests; a cell still running has counted fewer).
    static func truncation(_ results: Results) -> [(task: String, items: Int, of: Int)] {
        ordered(results.rows.map(\.task)).compactMap { task in
            let rows = results.rows.filter { $0.task == task }
            guard let most = rows.max(by: { ($0.truncatedItems ?? 0, $0.n) < ($1.truncatedItems ?? 0, $1.n) }),
                  let items = most.truncatedItems, items > 0 else { return nil }
            return (task, items, most.n)
        }
    }

    // MARK: - SVG

    /// One panel per task (and one for the accuracy mean): the headline metric against sparsity,
    /// a line per method and criterion starting from the dense model at 0, a legend below.
    static func plots(_ results: Results) -> String {
        // `error`: the standard error drawn as a bar through each point (accuracies).
        var panels: [(title: String, logScale: Bool, value: (SweepCell) -> Double?, error: (SweepCell) -> Double?)] = []
        for task in ordered(results.rows.map(\.task)) {
            let metric = SweepRow.headlineMetric(task: task)
            panels.append(("\(task) \(metric)" + (task == "wikitext" ? " (log scale)" : ""), task == "wikitext",
                           { value(results, task: task, cell: $0) },
                           { cell in results.rows.first { $0.task == task && $0.cell == cell }?.metrics[metric + "_stderr"] }))
        }
        if choiceTasks(results).count > 1 {
            panels.append(("mean accuracy of " + choiceTasks(results).joined(separator: ", "), false, { meanAccuracy(results, cell: $0) }, { _ in nil }))
        }
        let series = ordered(results.rows.map(\.cell).filter { $0.method != "dense" }.sorted().map(\.series))
        // Every task has a row per cell: each cell once, or its points are drawn once per task.
        let cells = ordered(results.rows.map(\.cell))
        let width = 340.0, height = 250.0, columns = min(panels.count, 3)
        let rows = (panels.count + columns - 1) / max(columns, 1)
        let legendHeight = Double((series.count + 2) / 3) * 18 + 20
        let totalWidth = Double(columns) * width + 20, totalHeight = Double(rows) * height + legendHeight
        var svg = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(totalWidth))\" height=\"\(Int(totalHeight))\" font-family=\"sans-serif\" font-size=\"11\">",
                   "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"]
        let xMax = max(cells.map(\.sparsity).max() ?? 1, 0.1)
        for (index, panel) in panels.enumerated() {
            let x0 = 10 + Double(index % columns) * width + 60, y0 = Double(index / columns) * height + 30
            let w = width - 85, h = height - 75
            let transform: (Double) -> Double = panel.logScale ? { log10(max($0, 1e-9)) } : { $0 }
            // An infinite perplexity (a window the model gives probability 0) has no place on an axis.
            // The axis holds each point's error bar too (accuracies stay within 0…1 below).
            let values = cells.flatMap { cell -> [Double] in
                guard let value = panel.value(cell) else { return [] }
                guard !panel.logScale, let error = panel.error(cell), error.isFinite, error > 0 else { return [value] }
                return [value, value - error, value + error]
            }.filter(\.isFinite).map(transform)
            guard var low = values.min(), var high = values.max() else { continue }
            if high - low < 1e-9 { low -= 0.5; high += 0.5 }
            let pad = (high - low) * 0.08
            low -= pad; high += pad
            // Finite values can still span more than a Double (±1e308): no axis to draw them on.
            guard low.isFinite, high.isFinite, (high - low).isFinite else { continue }
            // Accuracies are fractions: their axis stays within 0…1 (round steps divide 1, so it still does below).
            if !panel.logScale, values.allSatisfy({ (0...1).contains($0) }) { low = max(low, 0); high = min(high, 1) }
            // A linear axis ends on round ticks (0.2, 0.4, …); a log axis keeps five even ones.
            var ticks = (0...4).map { low + (high - low) * Double($0) / 4 }
            var decimals = 0
            if !panel.logScale {
                let axis = roundTicks(low: low, high: high)
                (low, high, ticks, decimals) = (axis.ticks.first ?? low, axis.ticks.last ?? high, axis.ticks, axis.decimals)
            }
            // Sparsities sit 5% inside the frame, so the dense point and the last error bar stay off its edges.
            func px(_ s: Double) -> Double { x0 + (0.05 + 0.9 * s / xMax) * w }
            func py(_ v: Double) -> Double { y0 + h - (transform(v) - low) / (high - low) * h }
            svg.append("<text x=\"\(SVG.number(x0 + w / 2))\" y=\"\(SVG.number(y0 - 12))\" text-anchor=\"middle\" font-weight=\"bold\">\(SVG.escape(panel.title))</text>")
            svg.append("<rect x=\"\(SVG.number(x0))\" y=\"\(SVG.number(y0))\" width=\"\(SVG.number(w))\" height=\"\(SVG.number(h))\" fill=\"none\" stroke=\"#444\"/>")
            for v in ticks {
                let y = y0 + h - (v - low) / (high - low) * h
                let label = panel.logScale ? compactNumber(pow(10, v)) : String(format: "%.\(decimals)f", v)
                svg.append("<line x1=\"\(SVG.number(x0))\" y1=\"\(SVG.number(y))\" x2=\"\(SVG.number(x0 + w))\" y2=\"\(SVG.number(y))\" stroke=\"#ddd\"/>")
                svg.append("<text x=\"\(SVG.number(x0 - 4))\" y=\"\(SVG.number(y + 4))\" text-anchor=\"end\">\(label)</text>")
            }
            for s in Array(Set(cells.map(\.sparsity))).sorted() {
                svg.append("<text x=\"\(SVG.number(px(s)))\" y=\"\(SVG.number(y0 + h + 14))\" text-anchor=\"middle\">\(Int((s * 100).rounded()))%</text>")
            }
            svg.append("<text x=\"\(SVG.number(x0 + w / 2))\" y=\"\(SVG.number(y0 + h + 30))\" text-anchor=\"middle\">sparsity (\(results.units.description))</text>")
            if let dense = panel.value(.dense), dense.isFinite {
                svg.append("<line x1=\"\(SVG.number(x0))\" y1=\"\(SVG.number(py(dense)))\" x2=\"\(SVG.number(x0 + w))\" y2=\"\(SVG.number(py(dense)))\" stroke=\"black\" stroke-dasharray=\"4 3\"/>")
            }
            for (s, name) in series.enumerated() {
                var points = cells.filter { $0.series == name }.sorted { $0.sparsity < $1.sparsity }
                    .compactMap { cell in panel.value(cell).map { (cell.sparsity, $0, panel.error(cell)) } }.filter { $0.1.isFinite }
                if let dense = panel.value(.dense), dense.isFinite { points.insert((0, dense, nil), at: 0) }
                guard !points.isEmpty else { continue }
                let color = SVG.palette[s % SVG.palette.count]
                let path = points.map { "\(SVG.number(px($0.0))),\(SVG.number(py($0.1)))" }.joined(separator: " ")
                svg.append("<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>")
                for point in points {
                    // ± one standard error, kept inside the panel.
                    if let error = point.2, error.isFinite, error > 0, !panel.logScale {
                        let top = max(py(point.1 + error), y0), bottom = min(py(point.1 - error), y0 + h)
                        svg.append("<line x1=\"\(SVG.number(px(point.0)))\" y1=\"\(SVG.number(top))\" x2=\"\(SVG.number(px(point.0)))\" y2=\"\(SVG.number(bottom))\" stroke=\"\(color)\" stroke-opacity=\"0.5\"/>")
                    }
                    svg.append("<circle cx=\"\(SVG.number(px(point.0)))\" cy=\"\(SVG.number(py(point.1)))\" r=\"3\" fill=\"\(color)\"/>")
                }
            }
        }
        // The legend: dense, then one entry per series.
        let legendTop = Double(rows) * height + 5
        let entries = ["dense"] + series
        for (i, name) in entries.enumerated() {
            let x = 20 + Double(i % 3) * (totalWidth - 40) / 3, y = legendTop + Double(i / 3) * 18
            if name == "dense" {
                svg.append("<line x1=\"\(SVG.number(x))\" y1=\"\(SVG.number(y))\" x2=\"\(SVG.number(x + 24))\" y2=\"\(SVG.number(y))\" stroke=\"black\" stroke-dasharray=\"4 3\"/>")
            } else {
                svg.append("<line x1=\"\(SVG.number(x))\" y1=\"\(SVG.number(y))\" x2=\"\(SVG.number(x + 24))\" y2=\"\(SVG.number(y))\" stroke=\"\(SVG.palette[(i - 1) % SVG.palette.count])\" stroke-width=\"2\"/>")
            }
            svg.append("<text x=\"\(SVG.number(x + 30))\" y=\"\(SVG.number(y + 4))\">\(SVG.escape(name))</text>")
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    /// Ticks covering low…high at a round step (1, 2, 2.5 or 5 × 10^k; at most four steps over the
    /// range, so at most six after widening to whole steps), and the decimals their labels need.
    static func roundTicks(low: Double, high: Double) -> (ticks: [Double], decimals: Int) {
        let raw = max(high - low, 1e-12) / 4
        let magnitude = Int(floor(log10(raw)))
        let (mantissa, exponent) = [1, 2, 2.5, 5].first { $0 * pow(10, Double(magnitude)) >= raw * (1 - 1e-9) }
            .map { ($0, magnitude) } ?? (1, magnitude + 1)
        let step = mantissa * pow(10, Double(exponent))
        // The small slack keeps a bound that is a whole step (1.0 = 10 × 0.1) from gaining one.
        let first = Int((low / step + 1e-9).rounded(.down)), last = Int((high / step - 1e-9).rounded(.up))
        let decimals = max(0, -exponent) + (mantissa == 2.5 && exponent < 1 ? 1 : 0)
        return ((first...max(last, first + 1)).map { Double($0) * step }, decimals)
    }

    /// A tick label of at most five characters or so: 29.67, 9450, 166k, 2.31M, 4.2G, 3e+15.
    static func compactNumber(_ x: Double) -> String {
        if x >= 1e12 { return String(format: "%.0e", x) }
        if x >= 1e9 { return String(format: "%.3gG", x / 1e9) }
        if x >= 1e6 { return String(format: "%.3gM", x / 1e6) }
        if x >= 1e4 { return String(format: "%.3gk", x / 1e3) }
        return String(format: "%.4g", x)
    }

    /// One panel per criterion: layers down, heads across, colour from dark (least important in
    /// the panel) to bright (most), so layers can be compared within a criterion.
    static func heatMap(_ results: Results) -> String {
        let criteria = results.headImportance.keys.sorted()
        let cell = 16.0
        let layers = results.headImportance.values.first?.count ?? 0
        let heads = results.headImportance.values.first?.first?.count ?? 0
        let panelWidth = max(Double(heads) * cell, 120) + 50
        // Wide enough for the title (about 7.5 px a character in bold at 12 px) whatever the panels need.
        let title = "Mean head importance per sample (dark: least, bright: most, per panel)"
        let width = max(Double(criteria.count) * panelWidth + 40, Double(title.count) * 7.5 + 20), height = Double(layers) * cell + 125
        var svg = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"10\">",
                   "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
                   "<text x=\"10\" y=\"18\" font-weight=\"bold\" font-size=\"12\">\(title)</text>",
                   "<text x=\"12\" y=\"56\" font-size=\"10\">layer ↓</text>"]
        for (p, criterion) in criteria.enumerated() {
            let grid = results.headImportance[criterion]!
            let values = grid.flatMap { $0 }
            let low = Double(values.min() ?? 0), high = Double(values.max() ?? 1)
            let x0 = 40 + Double(p) * panelWidth, y0 = 60.0
            svg.append("<text x=\"\(SVG.number(x0 + Double(heads) * cell / 2))\" y=\"48\" text-anchor=\"middle\" font-weight=\"bold\" font-size=\"11\">\(SVG.escape(criterion))</text>")
            for (l, row) in grid.enumerated() {
                svg.append("<text x=\"\(SVG.number(x0 - 4))\" y=\"\(SVG.number(y0 + Double(l) * cell + cell * 0.7))\" text-anchor=\"end\">\(l)</text>")
                for (h, v) in row.enumerated() {
                    let t = high > low ? (Double(v) - low) / (high - low) : 0
                    svg.append("<rect x=\"\(SVG.number(x0 + Double(h) * cell))\" y=\"\(SVG.number(y0 + Double(l) * cell))\" width=\"\(SVG.number(cell))\" height=\"\(SVG.number(cell))\" fill=\"\(color(t))\"><title>layer \(l) head \(h): \(String(format: "%.4g", v))</title></rect>")
                }
            }
            svg.append("<text x=\"\(SVG.number(x0 + Double(heads) * cell / 2))\" y=\"\(SVG.number(y0 + Double(layers) * cell + 16))\" text-anchor=\"middle\">head →</text>")
        }
        // The colour scale.
        let scaleTop = 60 + Double(layers) * cell + 30
        for i in 0..<20 {
            svg.append("<rect x=\"\(SVG.number(40 + Double(i) * 8))\" y=\"\(SVG.number(scaleTop))\" width=\"8\" height=\"10\" fill=\"\(color(Double(i) / 19))\"/>")
        }
        svg.append("<text x=\"40\" y=\"\(SVG.number(scaleTop + 22))\">least</text>")
        svg.append("<text x=\"200\" y=\"\(SVG.number(scaleTop + 22))\" text-anchor=\"end\">most</text>")
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    /// A perceptually ordered ramp (dark blue → teal → yellow) for t in [0, 1].
    static func color(_ t: Double) -> String {
        let stops: [(Double, Double, Double)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
        let x = min(max(t, 0), 1) * Double(stops.count - 1)
        let i = min(Int(x), stops.count - 2), u = x - Double(i)
        let (a, b) = (stops[i], stops[i + 1])
        func mix(_ p: Double, _ q: Double) -> Int { Int((p + (q - p) * u).rounded()) }
        return String(format: "#%02x%02x%02x", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }
}
