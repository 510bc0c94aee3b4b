import Foundation
import Testing
@testable import ShadowFormats
@testable import ShadowModels
@testable import ShadowSparsity
import ShadowTestSupport

@Suite("Trace directories that do not fit")
struct TraceValidationTests {
    /// A fresh copy of 12 synthetic samples in chunks of 4 (plainact with neurons, jacov heads only).
    func traces(_ name: String) throws -> String {
        let directory = temporaryDirectory(name)
        try SyntheticTraces.write(directory: directory, count: 12, criteria: ["plainact", "jacov"], headsOnly: ["jacov"], chunkSize: 4)
        return directory
    }

    func editManifest(_ directory: String, _ edit: (inout [String: Any]) -> Void) throws {
        let url = URL(fileURLWithPath: directory + "/" + TraceManifest.fileName)
        var manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&manifest)
        try JSONSerialization.data(withJSONObject: manifest).write(to: url)
    }

    /// Rewrites chunk `file` with its tensors passed through `edit`.
    func editChunk(_ path: String, _ edit: (inout [SafetensorsWriter.Tensor]) -> Void) throws {
        let file = try SafetensorsFile(path: path)
        var tensors = try file.tensorNames.map { SafetensorsWriter.Tensor(name: $0, shape: try file.info($0).shape, values: try file.floats($0)) }
        edit(&tensors)
        var writer = SafetensorsWriter(metadata: file.metadata)
        writer.tensors = tensors
        try writer.write(to: path)
    }

    /// Every reader refuses the directory with one line that mentions each of `mentions`.
    func expectRefused(_ directory: String, mentioning mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let readers: [(String, () throws -> Void)] = [
            ("open", { _ = try TraceStore.open(directory: directory) }),
            ("aggregate", { _ = try AggregateImportance(traces: directory, criterion: "plainact") }),
            ("train", { _ = try PredictorDataset.load(directory: directory, criterion: "plainact", kind: .dejavu) }),
        ]
        for (name, read) in readers {
            do {
                try read()
                Issue.record("\(name) accepted \(directory)", sourceLocation: sourceLocation)
            } catch let error as ShadowError {
                for mention in mentions {
                    #expect(error.description.contains(mention), "\(name): \(error) does not mention \(mention)", sourceLocation: sourceLocation)
                }
                #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
            } catch {
                Issue.record("\(name): \(error)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("a manifest with a chunk listed twice, outside the directory, of the wrong size, past the samples requested, complete without chunks, unknown weights, or of another format or version is refused naming the key")
    func inconsistentManifests() throws {
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("duplicate", { m in var c = m["chunks"] as! [[String: Any]]; c.append(c[0]); m["chunks"] = c }, "chunks[3].file"),
            ("outside", { m in var c = m["chunks"] as! [[String: Any]]; c[0]["file"] = "../../etc/passwd"; m["chunks"] = c }, "chunks[0].file"),
            ("samples", { m in var c = m["chunks"] as! [[String: Any]]; c[1]["samples"] = 9; m["chunks"] = c }, "chunks[1]"),
            ("overlap", { m in var c = m["chunks"] as! [[String: Any]]; c[1]["first_index"] = 2; c[1]["last_index"] = 5; m["chunks"] = c }, "chunks[1].first_index"),
            ("format", { m in m["format"] = "other" }, "format"),
            ("version", { m in m["version"] = 9 }, "version"),
            ("criteria", { m in m["criteria"] = ["plainact", "plainact"] }, "criteria[1]"),
            ("shards", { m in m["shard_index"] = 3 }, "shard_index"),
            ("weights", { m in m["weights"] = "q4" }, "weights"),
            // Self-contradicting counts: more samples than requested, complete without any.
            ("requested", { m in m["requested_samples"] = 10 }, "chunks[2].last_index"),
            ("empty", { m in m["chunks"] = [[String: Any]](); m["complete"] = true }, "complete"),
        ]
        for (name, edit, key) in cases {
            let directory = try traces("manifest-\(name)")
            try editManifest(directory, edit)
            expectRefused(directory, mentioning: [directory + "/manifest.json", "key \"\(key)"])
        }
        // The same sample count in the manifest but not in the file.
        let directory = try traces("manifest-count")
        try editManifest(directory) { m in
            var c = m["chunks"] as! [[String: Any]]
            c[1]["samples"] = 3; c[1]["last_index"] = 6
            m["chunks"] = c
        }
        expectRefused(directory, mentioning: ["chunk-00001.safetensors", "index"])
    }

    @Test("huge or overflowing sizes in a manifest are refused against the chunk files before anything is allocated")
    func hugeManifestSizes() throws {
        for (key, value) in [("layers", 1 << 40), ("heads", 1 << 40), ("ffn_size", 1 << 40), ("hidden_size", 1 << 40),
                             ("layers", 1 << 62), ("head_dim", 1 << 62), ("heads", -1)] {
            let directory = try traces("manifest-\(key)")
            try editManifest(directory) { m in
                var model = m["model"] as! [String: Any], shape = model["shape"] as! [String: Any]
                shape[key] = value
                model["shape"] = shape
                m["model"] = model
            }
            expectRefused(directory, mentioning: [directory + "/"])
        }
        // No chunks: nothing to check the sizes against (only that each is one a model could
        // have), and nothing to aggregate.
        let empty = try traces("manifest-empty")
        try editManifest(empty) { m in
            m["chunks"] = [[String: Any]]()
            m["complete"] = false   // (complete without chunks is refused on its own)
            var model = m["model"] as! [String: Any], shape = model["shape"] as! [String: Any]
            shape["layers"] = 1 << 30
            model["shape"] = shape
            m["model"] = model
        }
        #expect(throws: ShadowError.invalidArgument(name: "--traces", reason: "\(empty) holds no samples")) {
            _ = try AggregateImportance(traces: empty, criterion: "plainact")
        }
    }

    @Test("impossible sizes in the manifest's model fingerprint that no chunk uses are refused too, naming the key")
    func impossibleFingerprint() throws {
        for (key, value) in [("vocab_size", -5), ("vocab_size", 0), ("max_context", 1 << 50), ("kv_heads", 0), ("kv_heads", 3)] {
            let directory = try traces("manifest-fingerprint-\(key)")
            try editManifest(directory) { setJSON(&$0, ["model", "shape", key], value) }
            expectRefused(directory, mentioning: [directory + "/manifest.json", "key \"model.shape.\(key)\""])
        }
    }

    @Test("a chunk tensor with a permuted shape or non-finite scores is refused naming the chunk and tensor")
    func badChunks() throws {
        let permuted = try traces("chunk-permuted")
        let shape = SyntheticTraces.shape
        try editChunk(permuted + "/chunk-00001.safetensors") { tensors in
            tensors = tensors.map { $0.name == "plainact.heads" ? .init(name: $0.name, shape: [4, shape.heads, shape.layers], values: $0.values) : $0 }
        }
        expectRefused(permuted, mentioning: [permuted + "/chunk-00001.safetensors", "plainact.heads"])

        let nan = try traces("chunk-nan")
        try editChunk(nan + "/chunk-00002.safetensors") { tensors in
            tensors = tensors.map { $0.name == "plainact.neurons" ? .init(name: $0.name, shape: $0.shape, values: $0.values.map { _ in .nan }) : $0 }
        }
        for read in [{ _ = try AggregateImportance(traces: nan, criterion: "plainact") },
                     { _ = try PredictorDataset.load(directory: nan, criterion: "plainact", kind: .shadow) }] {
            #expect(throws: ShadowError.badTensor(path: nan + "/chunk-00002.safetensors", tensor: "plainact.neurons",
                                                  reason: "holds non-finite values (NaN or infinity)")) { try read() }
        }
    }

    @Test("a merge of only some shards is refused naming the missing one, and a failed merge leaves nothing")
    func merges() throws {
        let root = temporaryDirectory("merge")
        var shards: [String] = []
        for i in 0..<3 {
            let directory = root + "/s\(i)"
            let model = SyntheticTraces.fingerprint
            let manifest = TraceManifest(model: model, criteria: ["plainact"], predictorToken: .lastContext, sources: ["synthetic"],
                                         options: CalibrationOptions(), requestedSamples: 9, shardIndex: i, shardCount: 3, chunkSize: 2)
            let writer = try TraceWriter(directory: directory, manifest: manifest, resume: false)
            for record in SyntheticTraces.records(count: 9) where record.index % 3 == i { try writer.append(record) }
            try writer.finish()
            shards.append(directory)
        }
        let out = root + "/merged"
        #expect(throws: ShadowError.invalidArgument(name: "--shards", reason: "shard 1/3 is missing (2 of 3 shards given)")) {
            try TraceStore.merge(shards: [shards[0], shards[2]], into: out)
        }
        // A shard whose last chunk holds NaN fails half-way, after chunks were written: no output, nothing beside it.
        let cut = root + "/s1-cut"
        try FileManager.default.copyItem(atPath: shards[1], toPath: cut)
        try editChunk(cut + "/chunk-00001.safetensors") { tensors in
            tensors = tensors.map { $0.name == "x" ? .init(name: $0.name, shape: $0.shape, values: $0.values.map { _ in .nan }) : $0 }
        }
        #expect(throws: ShadowError.badTensor(path: cut + "/chunk-00001.safetensors", tensor: "x", reason: "holds non-finite values (NaN or infinity)")) {
            try TraceStore.merge(shards: [shards[0], cut, shards[2]], into: out)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).sorted() == ["s0", "s1", "s1-cut", "s2"])
        // The retry with the good shard succeeds (clearing what a killed merge left beside the
        // target); merging again onto it is refused.
        let killed = root + "/.merged.999999999.partial"
        try FileManager.default.createDirectory(atPath: killed, withIntermediateDirectories: true)
        try TraceStore.merge(shards: shards, into: out)
        #expect(!FileManager.default.fileExists(atPath: killed))
        let merged = try TraceStore.open(directory: out)
        #expect(merged.complete && merged.sampleCount == 9)
        #expect(throws: ShadowError.self) { try TraceStore.merge(shards: shards, into: out) }

        // A shard of another --samples splits another list of samples.
        let other = root + "/s1-other"
        try FileManager.default.copyItem(atPath: shards[1], toPath: other)
        try editManifest(other) { $0["requested_samples"] = 12 }
        #expect(throws: ShadowError.failed("\(other): not a shard of the same calibration as \(shards[0]) (--samples 9 → 12)")) {
            try TraceStore.merge(shards: [shards[0], other, shards[2]], into: root + "/merged-other")
        }
    }

    @Test("a chunk whose index tensor disagrees with the manifest inside its range, or that lacks a criterion's neuron scores, is refused, also by a resumed calibration")
    func chunkContents() throws {
        let shuffled = try traces("chunk-index")
        try editChunk(shuffled + "/chunk-00001.safetensors") { tensors in
            tensors = tensors.map { $0.name == "index" ? .init(name: $0.name, shape: $0.shape, values: [4, 6, 6, 7]) : $0 }
        }
        try editManifest(shuffled) { $0["complete"] = false; $0["requested_samples"] = 16 }
        let manifest = try TraceManifest.load(directory: shuffled)
        // Opening checks every chunk's indices, so a calibration resumed on them adds nothing.
        for read in [{ _ = try AggregateImportance(traces: shuffled, criterion: "plainact") },
                     { _ = try PredictorDataset.load(directory: shuffled, criterion: "plainact", kind: .shadow) },
                     { _ = try TraceWriter(directory: shuffled, manifest: manifest, resume: true) }] {
            #expect(throws: ShadowError.badTensor(path: shuffled + "/chunk-00001.safetensors", tensor: "index",
                                                  reason: "sample 1 has index 6.0, but the manifest's 4…7 gives 5")) { try read() }
        }
        let fractional = try traces("chunk-fractional-index")
        try editChunk(fractional + "/chunk-00000.safetensors") { tensors in
            tensors = tensors.map { $0.name == "index" ? .init(name: $0.name, shape: $0.shape, values: [0, 1.5, 2, 3]) : $0 }
        }
        #expect(throws: ShadowError.badTensor(path: fractional + "/chunk-00000.safetensors", tensor: "index",
                                              reason: "holds an index that is negative, fractional, huge or not a number")) {
            try TraceStore.open(directory: fractional)
        }

        let partial = try traces("chunk-no-neurons")
        try editChunk(partial + "/chunk-00001.safetensors") { tensors in tensors.removeAll { $0.name == "plainact.neurons" } }
        expectRefused(partial, mentioning: [partial + "/chunk-00001.safetensors", "plainact.neurons", "missing"])
    }

    @Test("scores that sum past single precision are refused, not written as infinity")
    func overflowingSums() throws {
        let huge = try traces("chunk-huge")
        for chunk in ["00000", "00001"] {
            try editChunk(huge + "/chunk-\(chunk).safetensors") { tensors in
                tensors = tensors.map { $0.name == "plainact.heads" ? .init(name: $0.name, shape: $0.shape, values: $0.values.map { _ in 3e38 }) : $0 }
            }
        }
        #expect(throws: ShadowError.failed("\(huge): the plainact scores sum past single precision over 12 samples (are its chunks sound?)")) {
            _ = try AggregateImportance(traces: huge, criterion: "plainact")
        }
    }

    @Test("a resumed calibration whose manifest lost a chunk's entry fills the gap in new chunks, never over one the manifest lists")
    func resumeAfterLostEntry() throws {
        let directory = try traces("lost-entry")
        let chunkFile = directory + "/chunk-00002.safetensors"
        let before = try Data(contentsOf: URL(fileURLWithPath: chunkFile))
        // Chunks of 8 from now on, and 4 more samples: the gap (4…7) and the new end (12…15)
        // would make one chunk of 8 that spans chunk-00002, were it not cut where indices jump.
        try editManifest(directory) { m in
            var c = m["chunks"] as! [[String: Any]]
            c.remove(at: 1)
            m["chunks"] = c
            m["complete"] = false
            m["chunk_size"] = 8
            m["requested_samples"] = 16
        }
        let manifest = try TraceStore.open(directory: directory)
        let writer = try TraceWriter(directory: directory, manifest: manifest, resume: true)
        for record in SyntheticTraces.records(count: 16, criteria: ["plainact", "jacov"], headsOnly: ["jacov"]) where !writer.completedIndices.contains(record.index) { try writer.append(record) }
        try writer.finish()
        #expect(try Data(contentsOf: URL(fileURLWithPath: chunkFile)) == before)
        let resumed = try TraceStore.open(directory: directory)
        #expect(resumed.sampleCount == 16 && resumed.chunks.map(\.firstIndex) == [0, 4, 8, 12], "\(resumed.chunks)")
        var indices: [Int] = []
        try TraceStore.forEach(directory: directory) { indices.append($0.index) }
        #expect(indices == Array(0..<16))
    }

    @Test("a sample with non-finite scores is refused when written, naming it and the tensor; the samples before it are written and stay readable")
    func nonFiniteSample() throws {
        let directory = temporaryDirectory("non-finite")
        let s = SyntheticTraces.shape
        let model = ModelFingerprint(name: "synthetic", architecture: "llama", shape: s, contentHash: SyntheticTraces.fingerprint.contentHash)
        let manifest = TraceManifest(model: model, criteria: ["plainact"], predictorToken: .lastContext, sources: ["synthetic"],
                                     options: CalibrationOptions(), requestedSamples: 8, shardIndex: 0, shardCount: 1, chunkSize: 4)
        let writer = try TraceWriter(directory: directory, manifest: manifest, resume: false)
        var records = SyntheticTraces.records(count: 8, shape: s, criteria: ["plainact"], headsOnly: [])
        records[5].neurons["plainact"]![3] = .infinity
        for record in records.prefix(5) { try writer.append(record) }
        #expect(throws: ShadowError.failed("sample 5: plainact.neurons is not finite (NaN or infinity): the model's activations or gradients overflow single precision here; the samples before it are kept")) {
            try writer.append(records[5])
        }
        var read: [Int] = []
        try TraceStore.forEach(directory: directory) { read.append($0.index) }
        #expect(read == [0, 1, 2, 3, 4])
    }
}
