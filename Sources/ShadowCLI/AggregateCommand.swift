import Foundation
import ShadowFormats
import ShadowSparsity

/// `shadowllm aggregate`: static (input-independent) importance from a trace directory.
enum AggregateCommand {
    struct Report: Encodable {
        let criterion: String
        let samples: Int
        let heads: [[Float]]
        let neurons: [[Float]]?
        /// Present (true) when the head scores are jacov's statistic of vectors pooled over the samples.
        let pooled: Bool?
        /// The model the traces were made with: `--method static` refuses the scores for another.
        let model: ModelFingerprint
    }

    static let command = Command(
        name: "aggregate", abstract: "Sum per-sample scores of a trace directory into static importance (for --method static); jacov pools its gradient vectors over the samples instead.",
        options: [
            .value("traces", "dir", help: "A trace directory written by calibrate."),
            .value("criterion", "name", help: "Which criterion's scores to sum.", defaultDescription: "the traces' first criterion, as for train-predictor",
                   allowed: Criterion.allCases.map(\.rawValue)),
            .value("out", short: "o", "path", help: "Write the JSON here (atomically) instead of stdout."),
        ]
    ) { arguments, console in
        let directory = try arguments.required("traces")
        let manifest = try TraceManifest.load(directory: directory)
        guard let criterion = arguments.string("criterion") ?? manifest.criteria.first else {
            throw ShadowError.failed("\(directory)/\(TraceManifest.fileName): lists no criteria")
        }
        if let out = arguments.string("out") {
            try AtomicFile.checkWritable(out, option: "--out")
            try AtomicFile.refuseOverwriting(out, option: "--out", inputs: traceInputs(directory))
        }
        let aggregate = try AggregateImportance(traces: directory, criterion: criterion)
        if !aggregate.complete {
            console.printError("warning: \(directory) is not complete (\(aggregate.samples) samples so far; finish it with calibrate --resume)")
        }
        if let shard = shardWarning(manifest, directory: directory) { console.printError("warning: " + shard) }
        let report = Report(criterion: criterion, samples: aggregate.samples, heads: aggregate.heads, neurons: aggregate.neurons,
                            pooled: aggregate.pooled ? true : nil, model: manifest.model)
        let json = try JSONOutput.string(report)
        if let out = arguments.string("out") {
            try AtomicFile.write(json + "\n", to: out)
            console.print("\(aggregate.pooled ? "pooled" : "summed") \(counted(aggregate.samples, "sample")) of \(criterion) into \(out)")
        } else {
            console.print(json)
        }
    }

    /// One shard of a sharded calibration holds every n-th sample only: worth saying, as an
    /// incomplete directory is (traces merge joins the shards).
    static func shardWarning(_ manifest: TraceManifest, directory: String) -> String? {
        guard manifest.shardCount > 1 else { return nil }
        let i = manifest.shardIndex, n = manifest.shardCount
        return "\(directory) is shard \(i)/\(n) of a calibration (samples \(i), \(i + n), \(i + 2 * n), …); join the shards with traces merge to use them all"
    }

    /// What an output must not replace in a trace directory: the directory, its manifest and its
    /// chunks (a file of its own beside them is fine).
    static func traceInputs(_ directory: String) -> [(option: String, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return [("--traces", directory)] + names.filter { $0 == TraceManifest.fileName || $0.hasPrefix("chunk-") }.sorted()
            .map { ("--traces", (directory as NSString).appendingPathComponent($0)) }
    }
}
