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
    }

    static let command = Command(
        name: "aggregate", abstract: "Sum per-sample scores of a trace directory into static importance (for --method static).",
        options: [
            .value("traces", "dir", help: "A trace directory written by calibrate."),
            .value("criterion", "name", help: "Which criterion's scores to sum.", default: "plainact",
                   allowed: Criterion.allCases.map(\.rawValue)),
            .value("out", short: "o", "path", help: "Write the JSON here (atomically) instead of stdout."),
        ]
    ) { arguments, console in
        let directory = try arguments.required("traces")
        let criterion = try arguments.required("criterion")
        let manifest = try TraceManifest.load(directory: directory)
        guard manifest.criteria.contains(criterion) else {
            throw ShadowError.invalidArgument(name: "--criterion", reason: "\(directory) has no \"\(criterion)\" scores (it has \(manifest.criteria.joined(separator: ", ")))")
        }
        let shape = manifest.model.shape
        var heads = [Float](repeating: 0, count: shape.layers * shape.heads)
        var neurons: [Float]?
        var samples = 0
        try TraceStore.forEach(directory: directory) { record in
            samples += 1
            for (i, v) in (record.heads[criterion] ?? []).enumerated() { heads[i] += v }
            if let n = record.neurons[criterion] {
                if neurons == nil { neurons = [Float](repeating: 0, count: n.count) }
                for (i, v) in n.enumerated() { neurons![i] += v }
            }
        }
        func rows(_ values: [Float], _ width: Int) -> [[Float]] {
            stride(from: 0, to: values.count, by: width).map { Array(values[$0..<$0 + width]) }
        }
        let report = Report(criterion: criterion, samples: samples, heads: rows(heads, shape.heads),
                            neurons: neurons.map { rows($0, shape.ffnSize) })
        let json = try JSONOutput.string(report)
        if let out = arguments.string("out") {
            try AtomicFile.write(json + "\n", to: out)
            console.print("summed \(samples) samples of \(criterion) into \(out)")
        } else {
            console.print(json)
        }
    }
}
