import Foundation
import ShadowFormats
import ShadowKernels

/// Strict weight loading (STYLE: "every tensor consumed, every shape checked"): a model asks for
/// each tensor by name and shape; at the end every tensor in the file must have been used or
/// deliberately ignored, and each error names the file and the tensor.
public final class TensorTable {
    public let source: any TensorSource
    private var used: Set<String> = []
    private var ignoredPrefixes: [String] = []
    private var ignoredSuffixes: [String] = []
    /// Prefixes the checkpoint stores in place of the ones loaders ask for (a multimodal
    /// checkpoint's text model: `model.` → `language_model.model.`), first match first.
    private var storedPrefixes: [(asked: String, stored: String)] = []

    /// How matrices are stored once loaded (vectors always stay fp32).
    public let weightDType: WeightDType

    /// fp32 buffers that weights are decoded (and transposed) in before they are stored in
    /// `weightDType`, reused from tensor to tensor: fresh memory for each one cost more in page
    /// faults than the decoding did (SmolLM2's load: 1.07 → 0.72 s).
    private var decoded: Matrix?, transposedStage: Matrix?

    /// Weights above this many values are read in slices of rows of about this many (tests
    /// set it low to reach the sliced path with small tensors).
    let sliceValues: Int

    public convenience init(_ source: any TensorSource, weightDType: WeightDType = .f32) {
        self.init(source, weightDType: weightDType, sliceValues: 1 << 22)
    }

    init(_ source: any TensorSource, weightDType: WeightDType, sliceValues: Int) {
        self.source = source
        self.weightDType = weightDType
        self.sliceValues = sliceValues
    }

    public var path: String { source.path }

    /// Makes every name that starts with `asked` be read from the tensor starting `stored`
    /// instead; errors name the stored tensor.
    public func read(prefix asked: String, as stored: String) { storedPrefixes.append((asked, stored)) }

    /// The name `name` has in the checkpoint.
    public func storedName(_ name: String) -> String {
        guard let rule = storedPrefixes.first(where: { name.hasPrefix($0.asked) }) else { return name }
        return rule.stored + name.dropFirst(rule.asked.count)
    }

    public func has(_ name: String) -> Bool { source.tensorInfos[storedName(name)] != nil }

    public func shape(_ name: String) throws -> [Int] {
        try storedShape(storedName(name))
    }

    private func storedShape(_ name: String) throws -> [Int] {
        guard let info = source.tensorInfos[name] else {
            throw ShadowError.badTensor(path: path, tensor: name, reason: "missing")
        }
        return info.shape
    }

    /// Throws unless the checkpoint has tensors enough for `layers` layers (each has at least one).
    /// A config or GGUF header claiming 2^28 layers must be refused before the loader reserves an
    /// array of that many blocks: a 3 KB file once asked for 64 GB that way (found by fuzzing).
    public func checkLayerCount(_ layers: Int, key: String) throws {
        let tensors = source.tensorNames.count
        guard layers <= tensors else {
            throw ShadowError.corruptFile(
                path: path, reason: "\(key) is \(layers), but the checkpoint has only \(tensors) tensors")
        }
    }

    /// Reads `name` as a `[rows, cols]` matrix.
    public func matrix(_ name: String, rows: Int, cols: Int) throws -> Matrix {
        let m = Matrix(rows: rows, cols: cols)
        try read(name, rows: rows, cols: cols, into: m.pointer)
        return m
    }

    /// Decodes `name`, checked to be `[rows, cols]` and finite, into `values`, and marks it used.
    private func read(_ name: String, rows: Int, cols: Int, into values: UnsafeMutablePointer<Float>) throws {
        let name = storedName(name)
        try check(name, [rows, cols])
        try source.floats(name, into: UnsafeMutableBufferPointer(start: values, count: rows * cols))
        source.dropPages(of: name)
        try checkFinite(name, values, count: rows * cols)
        used.insert(name)
    }

    /// A NaN or infinity in a weight turns every logit after it into NaN: refused at load, naming
    /// the tensor, rather than found as "nan" perplexities or empty generations. `values` start
    /// at element `firstElement` of the tensor.
    private func checkFinite(_ name: String, _ values: UnsafePointer<Float>, count: Int, firstElement: Int = 0) throws {
        if let index = Ops.firstNonFinite(values, count: count) {
            throw ShadowError.badTensor(path: path, tensor: name, reason: "holds a non-finite value (\(values[index]) at element \(firstElement + index))")
        }
    }

    /// Reads `name` as a `[rows, cols]` weight in `weightDType`.
    public func weight(_ name: String, rows: Int, cols: Int) throws -> WeightMatrix {
        guard rows * cols > sliceValues, rows > 1 else {
            return WeightMatrix(rows: rows, cols: cols, values: try staged(name, rows: rows, cols: cols), dtype: weightDType)
        }
        return try slicedWeight(name, rows: rows, cols: cols)
    }

    /// A large weight (a vocabulary-sized embedding or head) read a slice of rows at a time,
    /// twice: once to check it, choose fp16 or bf16 and find 8-bit weights' column factors, once
    /// to store it. Its fp32 values are
    /// never whole in memory (SmolLM2's embedding: 113 MB of fresh pages to fault in; Gemma 3's:
    /// 2.7 GB).
    private func slicedWeight(_ name: String, rows: Int, cols: Int) throws -> WeightMatrix {
        let name = storedName(name)
        try check(name, [rows, cols])
        let sliceRows = max(1, sliceValues / cols)
        let values = TensorTable.grow(&decoded, to: sliceRows * cols)
        func slices(_ body: (Range<Int>) throws -> Void) throws {
            for start in stride(from: 0, to: rows, by: sliceRows) {
                let slice = start..<min(start + sliceRows, rows)
                try source.floats(name, rows: slice, into: UnsafeMutableBufferPointer(start: values, count: slice.count * cols))
                try body(slice)
            }
        }
        var fitsHalf = true
        // 8-bit weights divide each column by its largest magnitude (WeightMatrix.columnScales).
        var columnMaxima = [Float](repeating: 0, count: weightDType == .q8 ? cols : 0)
        try slices { slice in
            try checkFinite(name, values, count: slice.count * cols, firstElement: slice.lowerBound * cols)
            if fitsHalf { fitsHalf = Ops.allWithin(values, count: slice.count * cols, magnitude: WeightMatrix.halfLimit) }
            if !columnMaxima.isEmpty { Ops.columnMaxMagnitudes(&columnMaxima, values, rows: slice.count, cols: cols) }
        }
        let weight = WeightMatrix(rows: rows, cols: cols, dtype: WeightMatrix.storedDType(weightDType, cols: cols, fitsHalf: fitsHalf))
        if weight.dtype == .q8 { weight.setColumnScales(maxima: columnMaxima) }
        try slices { slice in weight.store(rows: slice, from: values) }
        source.dropPages(of: name)
        used.insert(name)
        return weight
    }

    /// Reads a `[rows, cols]` tensor and stores it transposed, `[cols, rows]`, in `weightDType`.
    public func transposedWeight(_ name: String, rows: Int, cols: Int) throws -> WeightMatrix {
        let values = try staged(name, rows: rows, cols: cols)
        let transposed = TensorTable.grow(&transposedStage, to: rows * cols)
        Matrix.transpose(values, rows: rows, cols: cols, into: transposed)
        return WeightMatrix(rows: cols, cols: rows, values: transposed, dtype: weightDType)
    }

    /// `name`'s values, read as `matrix` reads them, in `decoded` (valid until the next call).
    private func staged(_ name: String, rows: Int, cols: Int) throws -> UnsafePointer<Float> {
        let values = TensorTable.grow(&decoded, to: rows * cols)
        try read(name, rows: rows, cols: cols, into: values)
        return UnsafePointer(values)
    }

    /// `buffer`, made to hold `count` values. One four times larger is remade too, so a
    /// vocabulary-sized embedding's buffer is not held while the far smaller blocks load (it
    /// would raise the load's peak memory by its size).
    private static func grow(_ buffer: inout Matrix?, to count: Int) -> UnsafeMutablePointer<Float> {
        if let buffer, buffer.count >= count, buffer.count <= 4 * max(count, 1) { return buffer.pointer }
        buffer = nil   // the old one goes before the new one is made
        let grown = Matrix(rows: count, cols: 1)
        buffer = grown
        return grown.pointer
    }

    public func optionalWeight(_ name: String, rows: Int, cols: Int) throws -> WeightMatrix? {
        has(name) ? try weight(name, rows: rows, cols: cols) : nil
    }

    /// Reads `name` as a vector of `count` values.
    public func vector(_ name: String, count: Int) throws -> [Float] {
        let name = storedName(name)
        try check(name, [count])
        let values = try source.floats(name)
        try checkFinite(name, values, count: values.count)
        used.insert(name)
        return values
    }

    public func optionalVector(_ name: String, count: Int) throws -> [Float]? {
        has(name) ? try vector(name, count: count) : nil
    }

    /// The LM head of a model whose config ties it to `embedding` (read from `embeddingName`): the
    /// embedding itself, unless the checkpoint also stores `headName` with other contents; then
    /// that tensor, as transformers does not tie two unequal tensors (a fine-tune saved untied
    /// under a config that says tied). A copy in another dtype is read as a head of its own (the
    /// same logits, a second copy in memory).
    public func tiedHead(_ headName: String, embeddingName: String, embedding: WeightMatrix,
                         rows: Int, cols: Int) throws -> WeightMatrix {
        guard has(headName) else { return embedding }
        let headStored = storedName(headName), embeddingStored = storedName(embeddingName)
        let head = try source.info(headStored), embedded = try source.info(embeddingStored)
        if head.shape == embedded.shape && head.dtype == embedded.dtype {
            // Comparing faults both tensors' pages in: release them again, as loading does.
            defer { source.dropPages(of: headStored); source.dropPages(of: embeddingStored) }
            let a = try source.rawBytes(headStored), b = try source.rawBytes(embeddingStored)
            if a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0) {
                ignore(headName)
                return embedding
            }
        }
        return try weight(headName, rows: rows, cols: cols)
    }

    /// Marks tensors we deliberately do not read (e.g. precomputed RoPE tables). Prefixes and
    /// suffixes are of stored names; a whole name is one a loader asks for.
    public func ignore(prefix: String) { ignoredPrefixes.append(prefix) }
    public func ignore(suffix: String) { ignoredSuffixes.append(suffix) }
    public func ignore(_ name: String) { used.insert(storedName(name)) }

    /// Throws if any tensor in the file was neither used nor ignored.
    public func finish() throws {
        (decoded, transposedStage) = (nil, nil)   // not held while the tokenizer loads
        let unexpected = source.tensorNames.filter { name in
            !used.contains(name) && !ignoredPrefixes.contains(where: { name.hasPrefix($0) })
                && !ignoredSuffixes.contains(where: { name.hasSuffix($0) })
        }
        if let first = unexpected.first {
            let more = unexpected.count > 1 ? " (and \(unexpected.count - 1) more)" : ""
            throw ShadowError.badTensor(path: path, tensor: first, reason: "unexpected tensor\(more)")
        }
    }

    /// Counts of tensors per dtype, for `info`.
    public var dtypeCounts: [String: Int] {
        var counts: [String: Int] = [:]
        for info in source.tensorInfos.values { counts[info.dtype.rawValue, default: 0] += 1 }
        return counts
    }

    private func check(_ name: String, _ expected: [Int]) throws {
        let actual = try storedShape(name)
        guard actual == expected else {
            throw ShadowError.badTensor(path: path, tensor: name,
                                        reason: "shape \(actual), expected \(expected)")
        }
    }
}
