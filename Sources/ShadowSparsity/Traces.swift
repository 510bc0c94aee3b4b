import Foundation
import ShadowFormats
import ShadowKernels
import ShadowModels

/// What calibration records for one sample (DESIGN §3): the predictor input x = A⁰ at the
/// predictor token, every layer's residual input at that token (what the DejaVu-style
/// predictors read), every layer's A^l there (DESIGN §3's other DejaVu input; recorded, read by
/// no predictor here), the loss, and the score matrices of each criterion.
public struct TraceRecord: Sendable {
    public var index: Int
    public var loss: Float
    public var x: [Float]                    // (H·d_h)
    public var attention: [Float]            // (L, H·d_h)
    public var layerInputs: [Float]          // (L, d)
    public var heads: [String: [Float]]      // criterion → (L, H)
    public var neurons: [String: [Float]]    // criterion → (L, F); absent for heads-only criteria
    /// jacov only: (L·H, pooledPerSample, d_h) gradient vectors for the pooled static score.
    public var pooledVectors: [Float]

    public init(index: Int, loss: Float, x: [Float], attention: [Float], layerInputs: [Float],
                heads: [String: [Float]], neurons: [String: [Float]], pooledVectors: [Float] = []) {
        self.pooledVectors = pooledVectors
        self.index = index
        self.loss = loss
        self.x = x
        self.attention = attention
        self.layerInputs = layerInputs
        self.heads = heads
        self.neurons = neurons
    }
}

/// The JSON manifest beside the chunk files. It is rewritten (atomically) after every chunk, so
/// it always describes exactly the chunks that are complete on disk.
public struct TraceManifest: Codable, Sendable, Equatable {
    public struct Chunk: Codable, Sendable, Equatable {
        public var file: String
        public var samples: Int
        public var firstIndex: Int
        public var lastIndex: Int
        enum CodingKeys: String, CodingKey {
            case file, samples, firstIndex = "first_index", lastIndex = "last_index"
        }
    }

    public var format = "shadowllm-traces"
    public var version = 1
    public var model: ModelFingerprint
    public var criteria: [String]
    public var predictorToken: PredictorToken
    public var sources: [String]
    public var options: CalibrationOptions
    public var requestedSamples: Int
    public var shardIndex: Int
    public var shardCount: Int
    public var chunkSize: Int
    /// How the weights were kept (`--weights`): scores under bf16 rounding are not those of f32.
    /// nil in traces written before it was recorded (and then not compared).
    public var weights: String?
    /// FNV-1a of each source's file (and labels), in the order of `sources`. nil in traces
    /// written before they were recorded (and then not compared).
    public var sourceDigests: [String]?
    public var chunks: [Chunk] = []
    public var complete = false

    enum CodingKeys: String, CodingKey {
        case format, version, model, criteria, sources, options, chunks, complete, weights
        case predictorToken = "predictor_token", requestedSamples = "requested_samples"
        case shardIndex = "shard_index", shardCount = "shard_count", chunkSize = "chunk_size"
        case sourceDigests = "source_digests"
    }

    public init(model: ModelFingerprint, criteria: [String], predictorToken: PredictorToken, sources: [String],
                options: CalibrationOptions, requestedSamples: Int, shardIndex: Int, shardCount: Int, chunkSize: Int,
                weights: String? = nil, sourceDigests: [String]? = nil) {
        self.weights = weights
        self.sourceDigests = sourceDigests
        self.model = model
        self.criteria = criteria
        self.predictorToken = predictorToken
        self.sources = sources
        self.options = options
        self.requestedSamples = requestedSamples
        self.shardIndex = shardIndex
        self.shardCount = shardCount
        self.chunkSize = chunkSize
    }

    public var sampleCount: Int { chunks.reduce(0) { $0 + $1.samples } }

    /// Same run (model, criteria, samples, shard) as `other`, ignoring progress and how the
    /// source files were spelled.
    public func sameRun(as other: TraceManifest) -> Bool {
        var a = self, b = other
        a.chunks = []; b.chunks = []; a.complete = false; b.complete = false
        a.sources = Self.resolved(a.sources); b.sources = Self.resolved(b.sources)
        if a.weights == nil || b.weights == nil { a.weights = nil; b.weights = nil }
        if a.sourceDigests == nil || b.sourceDigests == nil { a.sourceDigests = nil; b.sourceDigests = nil }
        return a == b
    }

    /// Sources as "kind:path@from-to" with each path made absolute and free of symbolic links,
    /// so that `t.txt` and `/data/t.txt` (run in /data) name one file. A relative path is read
    /// against the current directory, where a resumed or merged run is normally started too.
    static func resolved(_ sources: [String]) -> [String] {
        sources.map { source in
            guard let colon = source.firstIndex(of: ":") else { return source }
            var rest = String(source[source.index(after: colon)...]), suffix = ""
            if let open = rest.range(of: " (", options: .backwards), rest.hasSuffix(")") {
                suffix = String(rest[open.lowerBound...]); rest = String(rest[..<open.lowerBound])
            }
            var slice = ""
            if let at = rest.lastIndex(of: "@"), rest[rest.index(after: at)...].allSatisfy({ $0.isNumber || $0 == "-" }) {
                slice = String(rest[at...]); rest = String(rest[..<at])
            }
            guard !rest.isEmpty else { return source }
            return String(source[...colon]) + AtomicFile.canonical(rest) + slice + suffix
        }
    }

    /// The same run as `other` except that `other` asks for at least as many samples: the sample
    /// list of a larger count starts with the smaller count's samples (sources are taken in
    /// turn), so a resumed calibration may extend the traces.
    public func extendable(to other: TraceManifest) -> Bool {
        var a = self
        a.requestedSamples = other.requestedSamples
        return other.requestedSamples >= requestedSamples && a.sameRun(as: other)
    }

    /// What keeps these traces from being extended by `other`'s run, as "--shots 5 → 3,
    /// sources (…)", for the refusal.
    /// With `forMerge`, what keeps `other` from being another shard of the same calibration:
    /// shard index, chunk size and the samples each holds may differ, the shard count and the
    /// samples asked for not.
    public func differences(from other: TraceManifest, forMerge: Bool = false) -> [String] {
        var found: [String] = []
        func compare<T: Equatable>(_ name: String, _ a: T, _ b: T, _ show: (T) -> String) {
            if a != b { found.append("\(name) \(show(a)) → \(show(b))") }
        }
        if model != other.model { found.append("model \(model.difference(to: other.model))") }
        compare("criteria", criteria, other.criteria) { $0.joined(separator: ",") }
        compare("--predictor-token", predictorToken, other.predictorToken) { $0.rawValue }
        if let weights, let otherWeights = other.weights { compare("--weights", weights, otherWeights) { $0 } }
        if Self.resolved(sources) != Self.resolved(other.sources) {
            found.append("sources \(sources.joined(separator: ",")) → \(other.sources.joined(separator: ","))")
        } else if let digests = sourceDigests, let otherDigests = other.sourceDigests, digests != otherDigests {
            let changed = zip(sources, zip(digests, otherDigests)).filter { $1.0 != $1.1 }.map(\.0)
            found.append("the contents of \(changed.isEmpty ? "the sources" : changed.joined(separator: ", ")) changed")
        }
        compare("--shots", options.shots, other.options.shots) { String($0) }
        compare("--seed", options.seed, other.options.seed) { String($0) }
        compare("--text-window", options.textWindow, other.options.textWindow) { String($0) }
        compare("--text-continuation", options.textContinuation, other.options.textContinuation) { String($0) }
        compare("--max-tokens", options.maxTokens, other.options.maxTokens) { String($0) }
        if !forMerge {
            compare("--shard", "\(shardIndex)/\(shardCount)", "\(other.shardIndex)/\(other.shardCount)") { $0 }
            compare("--chunk-size", chunkSize, other.chunkSize) { String($0) }
            if other.requestedSamples < requestedSamples { found.append("--samples \(requestedSamples) → \(other.requestedSamples) (only more can extend them)") }
        } else {
            compare("shard count", shardCount, other.shardCount) { String($0) }
            // The shards split one list of samples: another count is another list.
            compare("--samples", requestedSamples, other.requestedSamples) { String($0) }
        }
        // A calibration option added later and not listed above still counts.
        if found.isEmpty && options != other.options { found.append("the calibration options") }
        if found.isEmpty && (format != other.format || version != other.version) { found.append("the trace format") }
        return found
    }

    public static let fileName = "manifest.json"

    /// The manifest of a trace directory; a missing directory, a file, or a directory without a
    /// manifest is said in those words, whichever command reads it.
    public static func load(directory: String) throws -> TraceManifest {
        switch try fileKind(atPath: directory) {
        case nil: throw ShadowError.fileNotFound(path: directory)
        case .directory?: break
        case _?: throw ShadowError.corruptFile(path: directory, reason: "not a directory of traces (calibrate writes one)")
        }
        let path = (directory as NSString).appendingPathComponent(fileName)
        guard try fileKind(atPath: path) != nil else {
            throw ShadowError.corruptFile(path: directory, reason: "holds no traces (no \(fileName); calibrate writes one)")
        }
        let manifest = try ConfigDecoding.decode(TraceManifest.self, path: path)
        try manifest.validate(path: path)
        return manifest
    }

    /// Throws unless the manifest is one the writer could have written: readers trust its sizes
    /// to allocate, its chunk names to open files and its indices to skip finished samples. The
    /// error names the key.
    public func validate(path: String) throws {
        func bad(_ key: String, _ reason: String) -> ShadowError { .badJSON(path: path, key: key, reason: reason) }
        guard format == "shadowllm-traces" else { throw bad("format", "is \"\(format)\", not \"shadowllm-traces\"") }
        guard version == 1 else { throw bad("version", "is \(version); this build reads version 1") }
        try model.validate(path: path)
        let s = model.shape
        // Every product a reader forms must fit an Int (the release build does not trap on overflow).
        var product = s.layers
        // (The last factor sizes jacov's pooled vectors: pooledPerSample of width head_dim per head.)
        for (key, value) in [("heads", s.heads), ("head_dim", s.headDim), ("head_dim", GradientCorrelation.pooledPerSample)] {
            let (next, overflow) = product.multipliedReportingOverflow(by: value)
            guard !overflow else { throw bad("model.shape.\(key)", "layers × heads × head_dim × \(GradientCorrelation.pooledPerSample) (jacov's pooled vectors per sample) overflows") }
            product = next
        }
        for (key, value) in [("hidden_size", s.hiddenSize), ("ffn_size", s.ffnSize)]
            where s.layers.multipliedReportingOverflow(by: value).overflow {
            throw bad("model.shape.\(key)", "layers × \(key) overflows")
        }
        if let sourceDigests, sourceDigests.count != sources.count {
            throw bad("source_digests", "holds \(sourceDigests.count) digests for \(sources.count) sources")
        }
        if let weights, WeightDType(rawValue: weights) == nil {
            throw bad("weights", "is \"\(weights)\", not one of \(WeightDType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard !criteria.isEmpty else { throw bad("criteria", "is empty") }
        for (i, name) in criteria.enumerated() {
            guard Criterion(rawValue: name) != nil else { throw bad("criteria[\(i)]", "unknown criterion \"\(name)\"") }
            guard !criteria[..<i].contains(name) else { throw bad("criteria[\(i)]", "lists \(name) twice") }
        }
        guard shardCount >= 1 else { throw bad("shard_count", "must be at least 1, got \(shardCount)") }
        guard (0..<shardCount).contains(shardIndex) else { throw bad("shard_index", "must be in 0..<\(shardCount), got \(shardIndex)") }
        guard chunkSize >= 1 else { throw bad("chunk_size", "must be at least 1, got \(chunkSize)") }
        guard requestedSamples >= 0 else { throw bad("requested_samples", "must not be negative, got \(requestedSamples)") }
        var files = Set<String>()
        var previous: Int?
        for (i, chunk) in chunks.enumerated() {
            let key = "chunks[\(i)]"
            // A plain name inside the directory: never a path that reaches outside it.
            guard !chunk.file.isEmpty, !chunk.file.contains("/"), chunk.file != ".", chunk.file != ".." else {
                throw bad(key + ".file", "\"\(chunk.file)\" is not a file name in the trace directory")
            }
            guard files.insert(chunk.file).inserted else { throw bad(key + ".file", "\(chunk.file) is listed twice") }
            guard chunk.samples >= 1 else { throw bad(key + ".samples", "must be at least 1, got \(chunk.samples)") }
            // A chunk holds consecutive indices of the shard (index ≡ shard_index mod shard_count), after the previous chunk's.
            let (span, overflow) = (chunk.samples - 1).multipliedReportingOverflow(by: shardCount)
            guard chunk.firstIndex >= 0, chunk.firstIndex % shardCount == shardIndex, !overflow,
                  chunk.lastIndex.subtractingReportingOverflow(chunk.firstIndex) == (span, false) else {
                throw bad(key, "indices \(chunk.firstIndex)…\(chunk.lastIndex) do not hold \(chunk.samples) samples of shard \(shardIndex)/\(shardCount)")
            }
            if let previous, chunk.firstIndex <= previous {
                throw bad(key + ".first_index", "\(chunk.firstIndex) does not follow the previous chunk's last index \(previous)")
            }
            // Calibration numbers its samples from 0 and never takes more than --samples.
            guard chunk.lastIndex < requestedSamples else {
                throw bad(key + ".last_index", "\(chunk.lastIndex) is past the \(requestedSamples) samples requested (requested_samples)")
            }
            previous = chunk.lastIndex
        }
        // A calibration without samples is refused, so only a shard can be complete and empty
        // (one with fewer samples than shards).
        if complete && chunks.isEmpty && shardCount == 1 {
            throw bad("complete", "is true, but the manifest lists no chunks")
        }
    }

    public func save(directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(try encoder.encode(self), to: (directory as NSString).appendingPathComponent(Self.fileName))
    }
}

/// Streams trace records to chunk files; memory holds at most one chunk.
public final class TraceWriter {
    public let directory: String
    public private(set) var manifest: TraceManifest
    private var buffer: [TraceRecord] = []

    /// Starts a new trace directory, or resumes the one there when `resume` is set and it holds
    /// the same run (or the same run with fewer samples requested, which this one extends). An
    /// existing directory without `resume` is an error (nothing is overwritten).
    public init(directory: String, manifest: TraceManifest, resume: Bool) throws {
        self.directory = directory
        let manifestPath = (directory as NSString).appendingPathComponent(TraceManifest.fileName)
        if try fileKind(atPath: manifestPath) != nil {
            let existing = try TraceManifest.load(directory: directory)
            // A resumed run adds to the chunks there, so they must be whole and of this run:
            // one lost or cut short would otherwise be found only by the next reader.
            if resume { _ = try TraceStore.open(directory: directory) }
            guard resume else {
                throw ShadowError.invalidArgument(name: "--out", reason: "\(directory) already holds traces (pass --resume to continue them, or choose another --out)")
            }
            guard existing.extendable(to: manifest) else {
                let differences = existing.differences(from: manifest)
                throw ShadowError.invalidArgument(name: "--resume", reason: "\(directory) holds traces of a different run (\(differences.isEmpty ? "settings differ" : differences.joined(separator: ", "))); continue it with its own settings, or choose another --out")
            }
            self.manifest = existing
            if manifest.requestedSamples > existing.requestedSamples {
                self.manifest.requestedSamples = manifest.requestedSamples
                self.manifest.complete = false
                try self.manifest.save(directory: directory)
            }
        } else {
            // Chunk files without a manifest (one lost or deleted) would be overwritten unread.
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            if let stray = names.sorted().first(where: { $0.hasPrefix("chunk-") && $0.hasSuffix(".safetensors") }) {
                throw ShadowError.invalidArgument(name: "--out", reason: "\(directory) holds \(stray) but no \(TraceManifest.fileName) (traces whose manifest was lost?); choose another --out, or remove the chunk files")
            }
            self.manifest = manifest
            try AtomicFile.createDirectory(directory)
            try self.manifest.save(directory: directory)
        }
    }

    /// Indices already on disk (a resumed run skips them).
    public var completedIndices: Set<Int> {
        var done = Set<Int>()
        for chunk in manifest.chunks {
            // Chunks hold the shard's indices in order: index ≡ shardIndex (mod shardCount).
            for i in stride(from: chunk.firstIndex, through: chunk.lastIndex, by: manifest.shardCount) { done.insert(i) }
        }
        return done
    }

    public func append(_ record: TraceRecord) throws {
        try check(sizesOf: record)
        // Refused here, where the sample is known, rather than written and refused by every reader
        // (a chunk with one non-finite value is unreadable for all criteria).
        var tensors = [("x", record.x), ("attention", record.attention), ("layer_input", record.layerInputs),
                       (TraceChunk.pooledVectorsTensor, record.pooledVectors)]
        for criterion in manifest.criteria {
            tensors.append(("\(criterion).heads", record.heads[criterion] ?? []))
            tensors.append(("\(criterion).neurons", record.neurons[criterion] ?? []))
        }
        if let (name, _) = tensors.first(where: { !$0.1.allSatisfy(\.isFinite) }) {
            try flush()   // the samples before it are sound: kept, so --resume continues from them
            throw ShadowError.failed("sample \(record.index): \(name) is not finite (NaN or infinity): the model's activations or gradients overflow single precision here; the samples before it are kept")
        }
        // A chunk holds consecutive indices of the shard: a resumed run that fills a gap (a
        // manifest that lost an entry) starts a new chunk where the indices jump.
        if let last = buffer.last, record.index != last.index + manifest.shardCount { try flush() }
        buffer.append(record)
        if buffer.count >= manifest.chunkSize { try flush() }
    }

    /// Throws unless `record` holds what a chunk of these traces stores, sized by their model:
    /// otherwise the chunk writer would stop, or a reader refuse the chunk, far from the cause.
    func check(sizesOf record: TraceRecord) throws {
        let shape = manifest.model.shape, L = shape.layers
        var expected = [("x", record.x.count, shape.attentionWidth), ("attention", record.attention.count, L * shape.attentionWidth),
                        ("layer_input", record.layerInputs.count, L * shape.hiddenSize)]
        for criterion in manifest.criteria {
            expected.append(("\(criterion).heads", record.heads[criterion]?.count ?? 0, L * shape.heads))
            // Heads-only criteria score no neurons; the others score every one in every sample.
            if Criterion(rawValue: criterion)?.headsOnly == false || record.neurons[criterion] != nil {
                expected.append(("\(criterion).neurons", record.neurons[criterion]?.count ?? 0, L * shape.ffnSize))
            }
        }
        if let (name, count, wanted) = expected.first(where: { $0.1 != $0.2 }) {
            throw ShadowError.invalidArgument(name: "trace record", reason: "sample \(record.index): \(name) holds \(count) values where the traces' model (\(shape.describedSizes)) needs \(wanted)")
        }
    }

    /// Writes the buffered records as one chunk, then the manifest that lists it.
    public func flush() throws {
        guard !buffer.isEmpty else { return }
        // The next number the manifest does not list: a manifest that lost an entry must not lead
        // to a chunk written over one it lists. (A file there that it does not list is what a run
        // killed between writing a chunk and its manifest left: written over.)
        let listed = Set(manifest.chunks.map(\.file))
        let name = (manifest.chunks.count...).lazy.map { String(format: "chunk-%05ld.safetensors", $0) }.first { !listed.contains($0) }!
        try TraceChunk.write(buffer, criteria: manifest.criteria, shape: manifest.model.shape,
                             to: (directory as NSString).appendingPathComponent(name))
        // Listed in index order, as readers and the manifest's checks expect.
        let entry = TraceManifest.Chunk(file: name, samples: buffer.count, firstIndex: buffer.first!.index, lastIndex: buffer.last!.index)
        manifest.chunks.insert(entry, at: manifest.chunks.firstIndex { $0.firstIndex > entry.firstIndex } ?? manifest.chunks.endIndex)
        buffer.removeAll(keepingCapacity: true)
        try manifest.save(directory: directory)
    }

    public func finish() throws {
        try flush()
        manifest.complete = true
        try manifest.save(directory: directory)
    }
}

/// One chunk file: the records of up to `chunkSize` samples as stacked F32 tensors.
public enum TraceChunk {
    static func write(_ records: [TraceRecord], criteria: [String], shape: TransformerShape, to path: String) throws {
        var writer = SafetensorsWriter(metadata: ["format": "shadowllm-traces"])
        let n = records.count, L = shape.layers
        writer.add("index", shape: [n], values: records.map { Float($0.index) })
        writer.add("loss", shape: [n], values: records.map(\.loss))
        writer.add("x", shape: [n, shape.attentionWidth], values: records.flatMap(\.x))
        writer.add("attention", shape: [n, L, shape.attentionWidth], values: records.flatMap(\.attention))
        writer.add("layer_input", shape: [n, L, shape.hiddenSize], values: records.flatMap(\.layerInputs))
        for criterion in criteria {
            writer.add("\(criterion).heads", shape: [n, L, shape.heads], values: records.flatMap { $0.heads[criterion] ?? [] })
            if records.allSatisfy({ $0.neurons[criterion] != nil }) {
                writer.add("\(criterion).neurons", shape: [n, L, shape.ffnSize], values: records.flatMap { $0.neurons[criterion]! })
            }
        }
        let k = GradientCorrelation.pooledPerSample
        if records.allSatisfy({ $0.pooledVectors.count == L * shape.heads * k * shape.headDim }) {
            writer.add(pooledVectorsTensor, shape: [n, L * shape.heads, k, shape.headDim], values: records.flatMap(\.pooledVectors))
        }
        try writer.write(to: path)
    }

    /// The tensor of jacov's pooled gradient vectors (traces calibrated with jacov).
    static let pooledVectorsTensor = "jacov.pooled_vectors"

    /// Throws unless the chunk file's tensors have exactly the shapes the manifest gives and its
    /// sample indices are whole numbers (with `chunk`, its manifest entry: that entry's count and
    /// indices); returns the sample count. Reads the header and the small index tensor only, so
    /// the sizes are checked against the bytes on disk before anything large is allocated, and a
    /// resumed calibration refuses a chunk swapped in from another shard before adding to it.
    @discardableResult
    static func check(_ file: SafetensorsFile, chunk: TraceManifest.Chunk?, criteria: [String], shape: TransformerShape) throws -> Int {
        let path = file.path
        guard let info = file.tensorInfos["index"] else { throw ShadowError.badTensor(path: path, tensor: "index", reason: "missing") }
        let n = info.shape.first ?? 0
        guard info.shape.count == 1, n == (chunk?.samples ?? n) else {
            throw ShadowError.badTensor(path: path, tensor: "index",
                                        reason: "has shape \(info.shape), but the manifest lists \(chunk.map { String($0.samples) } ?? "?") samples")
        }
        let L = shape.layers
        var expected: [(String, [Int], Bool)] = [("loss", [n], true), ("x", [n, shape.attentionWidth], true),
                                                 ("attention", [n, L, shape.attentionWidth], true), ("layer_input", [n, L, shape.hiddenSize], true)]
        for criterion in criteria {
            // A criterion that scores neurons has them in every chunk: sums over the chunks that
            // happen to hold them would silently cover fewer samples.
            let scoresNeurons = Criterion(rawValue: criterion)?.headsOnly == false
            expected += [("\(criterion).heads", [n, L, shape.heads], true), ("\(criterion).neurons", [n, L, shape.ffnSize], scoresNeurons)]
        }
        expected.append((pooledVectorsTensor, [n, L * shape.heads, GradientCorrelation.pooledPerSample, shape.headDim], false))
        for (name, dims, required) in expected {
            guard let info = file.tensorInfos[name] else {
                if required { throw ShadowError.badTensor(path: path, tensor: name, reason: "missing (expected shape \(dims))") }
                continue
            }
            guard info.shape == dims else {
                throw ShadowError.badTensor(path: path, tensor: name, reason: "has shape \(info.shape), expected \(dims) from the manifest")
            }
        }
        let index = try file.floats("index")
        // Indices are stored as floats: a corrupt one must not reach Int(_:).
        guard index.allSatisfy({ $0 >= 0 && $0 <= 1e15 && $0 == $0.rounded() }) else {
            throw ShadowError.badTensor(path: path, tensor: "index", reason: "holds an index that is negative, fractional, huge or not a number")
        }
        if let chunk, n > 0 {
            // The manifest's entry spaces the indices evenly (by the shard count): every one is checked.
            let step = n > 1 ? (chunk.lastIndex - chunk.firstIndex) / (n - 1) : 0
            if let i = (0..<n).first(where: { index[$0] != Float(chunk.firstIndex + $0 * step) }) {
                throw ShadowError.badTensor(path: path, tensor: "index", reason: "sample \(i) has index \(index[i]), but the manifest's \(chunk.firstIndex)…\(chunk.lastIndex) gives \(chunk.firstIndex + i * step)")
            }
        }
        return n
    }

    /// Reads a chunk back as records. With `chunk` (its manifest entry), the sample count and
    /// indices must match it.
    public static func read(path: String, criteria: [String], shape: TransformerShape,
                            chunk: TraceManifest.Chunk? = nil) throws -> [TraceRecord] {
        let file = try SafetensorsFile(path: path)
        let n = try check(file, chunk: chunk, criteria: criteria, shape: shape), L = shape.layers
        let index = try file.floats("index")   // checked by `check`
        // Non-finite values would silently poison sums and training (the loss, only recorded, may be infinite).
        func tensor(_ name: String) throws -> [Float] {
            let values = try file.floats(name)
            guard values.allSatisfy(\.isFinite) else {
                throw ShadowError.badTensor(path: path, tensor: name, reason: "holds non-finite values (NaN or infinity)")
            }
            return values
        }
        let loss = try file.floats("loss")
        let x = try tensor("x")
        let attention = try tensor("attention")
        let inputs = try tensor("layer_input")
        var heads: [String: [Float]] = [:], neurons: [String: [Float]] = [:]
        for criterion in criteria {
            heads[criterion] = try tensor("\(criterion).heads")
            if file.tensorInfos["\(criterion).neurons"] != nil {
                neurons[criterion] = try tensor("\(criterion).neurons")
            }
        }
        let vectorWidth = L * shape.heads * GradientCorrelation.pooledPerSample * shape.headDim
        let vectors = file.tensorInfos[pooledVectorsTensor] == nil ? nil : try tensor(pooledVectorsTensor)
        func slice(_ values: [Float], _ i: Int, _ width: Int) -> [Float] { Array(values[i * width..<(i + 1) * width]) }
        return (0..<n).map { i in
            TraceRecord(index: Int(index[i]), loss: loss[i], x: slice(x, i, shape.attentionWidth),
                        attention: slice(attention, i, L * shape.attentionWidth),
                        layerInputs: slice(inputs, i, L * shape.hiddenSize),
                        heads: heads.mapValues { slice($0, i, L * shape.heads) },
                        neurons: neurons.mapValues { slice($0, i, L * shape.ffnSize) },
                        pooledVectors: vectors.map { slice($0, i, vectorWidth) } ?? [])
        }
    }
}

/// Reading and merging trace directories.
public enum TraceStore {
    /// The manifest of a trace directory, with every chunk it lists checked against it (headers
    /// only): after this, its sizes and sample counts are those of files on disk and safe to
    /// allocate.
    public static func open(directory: String) throws -> TraceManifest {
        let manifest = try TraceManifest.load(directory: directory)
        for chunk in manifest.chunks {
            let path = (directory as NSString).appendingPathComponent(chunk.file)
            _ = try existingFileKind(atPath: path)
            try TraceChunk.check(try SafetensorsFile(path: path), chunk: chunk, criteria: manifest.criteria, shape: manifest.model.shape)
        }
        return manifest
    }

    /// Visits every record of a trace directory in order, one chunk in memory at a time.
    public static func forEach(directory: String, _ body: (TraceRecord) throws -> Void) throws {
        let manifest = try TraceManifest.load(directory: directory)
        for chunk in manifest.chunks {
            let records = try TraceChunk.read(path: (directory as NSString).appendingPathComponent(chunk.file),
                                              criteria: manifest.criteria, shape: manifest.model.shape, chunk: chunk)
            for record in records { try body(record) }
        }
    }

    /// Joins shard directories of one calibration into `output`, ordered by sample index, so the
    /// result is the same whatever the number of shards or the order they are listed in.
    /// Everything is checked before `output` is touched, and the merge is built in a temporary
    /// directory beside it that is renamed into place at the end: a failed merge leaves nothing.
    public static func merge(shards: [String], into output: String, chunkSize: Int? = nil) throws {
        guard !shards.isEmpty else { throw ShadowError.invalidArgument(name: "--shards", reason: "needs at least one shard directory") }
        guard try !entryExists(atPath: output) else {
            throw ShadowError.invalidArgument(name: "--out", reason: "\(output) already exists (the merged traces go to a new directory)")
        }
        let manifests = try shards.map { try open(directory: $0) }
        let first = manifests[0]
        for (dir, m) in zip(shards, manifests) {
            let found = first.differences(from: m, forMerge: true)
            guard found.isEmpty else {
                throw ShadowError.failed("\(dir): not a shard of the same calibration as \(shards[0]) (\(found.joined(separator: ", ")))")
            }
            guard m.complete else { throw ShadowError.failed("\(dir): shard \(m.shardIndex)/\(m.shardCount) is not complete") }
        }
        var listed: [Int: String] = [:]
        for (dir, m) in zip(shards, manifests) {
            if let earlier = listed[m.shardIndex] {
                throw ShadowError.invalidArgument(name: "--shards", reason: "\(earlier) and \(dir) are both shard \(m.shardIndex)/\(m.shardCount)")
            }
            listed[m.shardIndex] = dir
        }
        let indices = Set(listed.keys)
        // Merged traces claim every sample: a shard left out would silently shrink them.
        if let missing = (0..<first.shardCount).first(where: { !indices.contains($0) }) {
            throw ShadowError.invalidArgument(name: "--shards", reason: "shard \(missing)/\(first.shardCount) is missing (\(manifests.count) of \(first.shardCount) shards given)")
        }
        // Shards that record their weights must agree on them (each was compared with the first
        // only, which may be from before weights were recorded); one without makes it unknown.
        let weights = Set(manifests.compactMap(\.weights))
        guard weights.count <= 1 else {
            throw ShadowError.failed("merge: the shards were calibrated with different --weights (\(weights.sorted().joined(separator: ", ")))")
        }
        var merged = first
        merged.weights = manifests.allSatisfy { $0.weights != nil } ? weights.first : nil
        merged.shardIndex = 0
        merged.shardCount = 1
        merged.chunks = []
        merged.complete = false
        merged.chunkSize = chunkSize ?? first.chunkSize
        let temporary = AtomicFile.partialPath(for: output)
        try AtomicFile.requireDirectoryParents(of: output)
        do {
            try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        } catch {
            throw ShadowError.failed("cannot create directory \(output): \(AtomicFile.describe(error))")
        }
        do {
            try merge(manifests: manifests, shards: shards, into: temporary, manifest: merged)
            try AtomicFile.moveIntoPlace(temporary, to: output)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    private static func merge(manifests: [TraceManifest], shards: [String], into output: String, manifest merged: TraceManifest) throws {
        let writer = try TraceWriter(directory: output, manifest: merged, resume: false)

        // A k-way merge over the shards' chunk streams: each shard is already in index order.
        struct Cursor { var manifest: TraceManifest; var directory: String; var chunk = 0; var records: [TraceRecord] = []; var position = 0 }
        var cursors = zip(manifests, shards).map { Cursor(manifest: $0, directory: $1) }
        func head(_ c: inout Cursor) throws -> TraceRecord? {
            while c.position >= c.records.count {
                guard c.chunk < c.manifest.chunks.count else { return nil }
                let chunk = c.manifest.chunks[c.chunk]
                c.records = try TraceChunk.read(path: (c.directory as NSString).appendingPathComponent(chunk.file),
                                                criteria: c.manifest.criteria, shape: c.manifest.model.shape, chunk: chunk)
                c.chunk += 1
                c.position = 0
            }
            return c.records[c.position]
        }
        while true {
            var best: (cursor: Int, record: TraceRecord)?
            for i in cursors.indices {
                if let record = try head(&cursors[i]), best == nil || record.index < best!.record.index { best = (i, record) }
            }
            guard let best else { break }
            cursors[best.cursor].position += 1
            try writer.append(best.record)
        }
        try writer.finish()
    }
}

/// Static (input-independent) importance: one criterion's per-sample scores summed over a trace
/// directory, as L rows of H head scores and (when the criterion scores neurons) L rows of F.
public struct AggregateImportance: Sendable, Equatable {
    public let criterion: String
    public let samples: Int
    public let heads: [[Float]]
    public let neurons: [[Float]]?
    /// The head scores are jacov's pooled statistic, not a sum over samples. Traces calibrated
    /// before jacov kept pooled vectors fall back to the sum of per-sample scores.
    public let pooled: Bool
    /// The traces were complete (a calibration still running, or killed, gives fewer samples).
    public let complete: Bool

    /// Mean importance per sample (the pooled statistic itself when pooled).
    public var headsPerSample: [[Float]] {
        let n = pooled ? 1 : Float(max(samples, 1))
        return heads.map { $0.map { $0 / n } }
    }

    public init(traces directory: String, criterion: String) throws {
        let manifest = try TraceStore.open(directory: directory)
        guard manifest.criteria.contains(criterion) else {
            throw ShadowError.invalidArgument(
                name: "--criterion",
                reason: "\(directory) has no \"\(criterion)\" scores (it has \(manifest.criteria.joined(separator: ", ")))")
        }
        guard manifest.sampleCount > 0 else {
            throw ShadowError.invalidArgument(name: "--traces", reason: "\(directory) holds no samples")
        }
        let shape = manifest.model.shape
        // jacov pools its vectors over the samples (when the traces hold them) instead of summing.
        var total = ImportanceSum(headUnits: shape.layers * shape.heads, pooledWidth: criterion == Criterion.jacov.rawValue ? shape.headDim : nil,
                                  samples: manifest.sampleCount)
        try TraceStore.forEach(directory: directory) { record in
            total.add(heads: record.heads[criterion] ?? [], neurons: record.neurons[criterion], pooledVectors: record.pooledVectors)
        }
        func rows(_ values: [Float], _ width: Int) -> [[Float]] {
            stride(from: 0, to: values.count, by: width).map { Array(values[$0..<$0 + width]) }
        }
        // The scores file holds single-precision sums: one beyond it would be written as "inf".
        let largest = Double(Float.greatestFiniteMagnitude)
        if total.headSums.contains(where: { $0.magnitude > largest }) || total.neuronSums?.contains(where: { $0.magnitude > largest }) == true {
            throw ShadowError.failed("\(directory): the \(criterion) scores sum past single precision over \(total.samples) samples (are its chunks sound?)")
        }
        self.criterion = criterion
        self.samples = total.samples
        self.complete = manifest.complete
        self.pooled = total.pooled
        self.heads = rows(total.headScores, shape.heads)
        self.neurons = total.neuronSums.map { rows($0.map(Float.init), shape.ffnSize) }
    }
}
