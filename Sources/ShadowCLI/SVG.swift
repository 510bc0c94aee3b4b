/// Small helpers shared by the SVG plots the reports draw (our own code; no plotting library).
enum SVG {
    /// Colours of successive series, distinguishable in print and for most colour-blind readers.
    static let palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
                          "#ccb974", "#64b5cd"]

    /// A coordinate with one decimal.
    static func number(_ v: Double) -> String { String(format: "%.1f", v) }

    /// Text safe inside an element or a quoted attribute.
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

enum Markdown {
    /// A number for a table cell, "—" where there is none (or NaN: a standard error of one item).
    static func number(_ value: Double?, _ pattern: String) -> String {
        value.flatMap { $0.isNaN ? nil : String(format: pattern, $0) } ?? "—"
    }

    /// `text` as an inline code span that stays one (CommonMark): fenced by more backticks than
    /// its longest run of them, padded with a space where it starts or ends with one.
    static func code(_ text: String) -> String {
        let fence = String(repeating: "`", count: longestBacktickRun(text) + 1)
        let pad = text.hasPrefix("`") || text.hasSuffix("`") ? " " : ""
        return fence + pad + text.replacingOccurrences(of: "\n", with: " ") + pad + fence
    }

    /// `text` as a fenced code block (CommonMark): no line of it can close a fence longer than
    /// its longest run of backticks.
    static func codeBlock(_ text: String, info: String = "text") -> [String] {
        let fence = String(repeating: "`", count: max(3, longestBacktickRun(text) + 1))
        return [fence + info, text, fence]
    }

    private static func longestBacktickRun(_ text: String) -> Int {
        var longest = 0, run = 0
        for character in text {
            run = character == "`" ? run + 1 : 0
            longest = max(longest, run)
        }
        return longest
    }

    /// Bytes as megabytes for a table cell: one decimal from 10 MB, three significant digits below
    /// (a tiny model's 0.215 would read 0.2 in every row).
    static func megabytes(_ bytes: Int) -> String {
        let value = Double(bytes) / 1e6
        return String(format: value >= 10 ? "%.1f" : "%.3g", value)
    }
}
