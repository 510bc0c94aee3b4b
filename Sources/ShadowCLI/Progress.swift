import Foundation

/// A one-line progress bar with rate and ETA on stderr, redrawn at most a few times a second. When
/// stderr is no terminal (a log file, a pipe), a plain line every `logInterval` seconds and at the
/// end instead: no carriage returns or escape codes in logs.
final class ProgressBar {
    /// Seconds between the lines of a bar written to a log.
    static let logInterval: Double = 30
    private let console: Console
    private let label: String
    private let total: Int
    private let start: Date
    /// `started` was given: the work began then, so a first update after some units has a rate.
    private let knowsStart: Bool
    private var lastDraw = Date.distantPast
    private let enabled: Bool
    /// A bar is on screen without its newline (the run stopped early).
    private var lineOpen = false
    /// The bar has shown its total (a later update repeating it is not drawn again).
    private var finished = false
    /// The first update: the rate behind the ETA is measured from it, so work a resumed run
    /// found already done (reported in its first update) does not make the ETA look short.
    private var first: (done: Int, time: Date)?
    /// The last line drawn said `ETA ?`: the next update with a rate is drawn at once, so a log
    /// has an estimate after the first unit rather than `logInterval` later.
    private var etaUnknown = false

    /// `started`: when the work began, for a bar made at its first report (after the first unit).
    /// Without it the first update is only a baseline (a resumed run reports the work it found
    /// done), and the ETA waits for the second.
    init(console: Console, label: String, total: Int, enabled: Bool = true, started: Date? = nil) {
        self.start = started ?? Date()
        self.knowsStart = started != nil
        self.console = console
        self.label = label
        self.total = max(total, 1)
        self.enabled = enabled
    }

    func update(_ done: Int, detail: String = "") {
        guard enabled else { return }
        let now = Date()
        let terminal = console.errIsTerminal
        // In a log the first update draws too (a start line), as the last one does.
        let rateArrived = etaUnknown && first.map { done > $0.done } == true
        guard done >= total || rateArrived || now.timeIntervalSince(lastDraw) > (terminal ? 0.25 : Self.logInterval) else { return }
        guard done < total || !finished else { return }
        lastDraw = now
        let fraction = min(1, Double(done) / Double(total))
        let width = 24
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let elapsed = now.timeIntervalSince(start)
        if first == nil { first = (done, now) }
        let remaining = Double(total - done)
        let eta: Double
        if let first, done > first.done {
            eta = now.timeIntervalSince(first.time) / Double(done - first.done) * remaining
        } else if knowsStart, done > 0 {
            eta = elapsed / Double(done) * remaining
        } else {
            // No rate to estimate from yet (nothing done, or only what a resumed run found done):
            // "?" rather than 0:00.
            eta = remaining > 0 ? .nan : 0
        }
        let suffix = detail.isEmpty ? "" : "  \(detail)"
        let line = "\(label) \(bar) \(done)/\(total)  \(Self.format(elapsed)) elapsed, ETA \(Self.format(eta))\(suffix)"
        finished = done >= total
        etaUnknown = !eta.isFinite
        guard terminal else { return console.err(line + "\n") }
        console.err("\r\(line)\u{1B}[K")
        lineOpen = !finished
        if finished { console.err("\n") }
    }

    // An error or interruption message after an unfinished bar starts on its own line.
    deinit {
        if lineOpen { console.err("\n") }
    }

    static func format(_ seconds: Double) -> String {
        // (Converting a non-finite or huge estimate to Int would trap.)
        guard seconds.isFinite else { return "?" }
        let s = Int(min(max(seconds, 0), 1e9).rounded())
        return s >= 3600 ? String(format: "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60) : String(format: "%ld:%02ld", s / 60, s % 60)
    }
}
