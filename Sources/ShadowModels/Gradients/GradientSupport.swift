import Foundation
import ShadowFormats
import ShadowKernels

/// What every architecture's gradient pass shares: argument checks, fp32 views of the weights,
/// the LM head with its cross-entropy, and the test hook.
enum GradientPass {
    /// Throws unless `tokens` can be scored from `predictFrom` on.
    static func validate(tokens: [Int], predictFrom: Int, shape: TransformerShape) throws {
        guard !tokens.isEmpty else { throw ShadowError.invalidArgument(name: "tokens", reason: "is empty") }
        guard tokens.count <= shape.maxContext else {
            throw ShadowError.invalidArgument(name: "tokens", reason: "\(tokens.count) tokens exceed the model's context of \(shape.maxContext)")
        }
        guard predictFrom >= 1 && predictFrom < tokens.count else {
            throw ShadowError.invalidArgument(
                name: "predictFrom", reason: "must be in 1..<\(tokens.count) (the number of tokens) so that at least one token is predicted from at least one, got \(predictFrom)")
        }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= shape.vocabularySize }) {
            throw ShadowError.invalidArgument(name: "tokens", reason: "id \(bad) is outside the vocabulary of \(shape.vocabularySize)")
        }
    }

    /// Throws unless `offsets` has one entry per layer and every delta has its matrix's size.
    static func validate(_ offsets: WeightOffsets?, shape: TransformerShape) throws {
        guard let offsets else { return }
        let s = shape
        guard offsets.outputProjection.count == s.layers, offsets.downProjection.count == s.layers else {
            throw ShadowError.invalidArgument(name: "weightOffsets", reason: "needs one entry per layer (\(s.layers))")
        }
        for l in 0..<s.layers {
            if let o = offsets.outputProjection[l], o.count != s.attentionWidth * s.hiddenSize {
                throw ShadowError.invalidArgument(name: "weightOffsets", reason: "layer \(l): output projection delta has \(o.count) values, expected \(s.attentionWidth * s.hiddenSize)")
            }
            if let o = offsets.downProjection[l], o.count != s.ffnSize * s.hiddenSize {
                throw ShadowError.invalidArgument(name: "weightOffsets", reason: "layer \(l): down projection delta has \(o.count) values, expected \(s.ffnSize * s.hiddenSize)")
            }
        }
    }

    /// The mean cross-entropy of `targets` given the final states of the predicted rows, and
    /// (when `dfinal` is given) its gradient with respect to those states, added into `dfinal`.
    /// Rows go through in blocks of at most `blockValues` logits, so that the logits, their
    /// gradient and Gemma 2's slope stay a few tens of MB each for any vocabulary and sample
    /// length (each row's numbers are the same as in one pass over all rows). A 16-bit head
    /// larger than `wholeHeadValues` is widened `sliceValues` at a time (a 128k × 2,048 head is
    /// 1 GB in fp32); smaller ones (SmolLM2's 113 MB) and fp32 heads are read whole.
    static func lossHead(_ dfinal: FloatBuffer?,   // (R, e)
                         _ final: FloatInput,      // (R, e) states after the final norm / projection
                         head: WeightMatrix,       // (V, e)
                         targets: [Int],           // (R)
                         weights: WeightViews,
                         softcap: Float? = nil,
                         blockValues: Int = 1 << 24,
                         wholeHeadValues: Int = 1 << 26, sliceValues: Int = 1 << 24) -> Double {
        let rows = targets.count, vocab = head.rows, width = head.cols
        guard rows > 0 else { return 0 }
        let slices = HeadSlices(head, weights: weights, whole: head.dtype == .f32 || head.count <= wholeHeadValues,
                                sliceRows: max(1, sliceValues / max(1, width)))
        let block = max(1, min(rows, blockValues / max(1, vocab)))
        let logits = Matrix(rows: block, cols: vocab)   // (B, V), softmax in place
        let dlogits = Matrix.zeros(block, vocab, if: dfinal != nil)
        let slope = Matrix.zeros(block, vocab, if: softcap != nil)
        let losses = UnsafeMutablePointer<Double>.allocate(capacity: rows)
        defer { losses.deallocate() }
        let dlosses = [Float](repeating: 1 / Float(rows), count: block)
        for first in stride(from: 0, to: rows, by: block) {
            let count = min(block, rows - first), values = count * vocab
            slices.forEach { range, w in
                BLAS.gemmABt(logits.pointer + range.lowerBound, final + first * width, w,
                             m: count, n: range.count, k: width, ldc: vocab)
            }
            // Gemma 2 caps the logits, c·tanh(z / c); the slope 1 − (capped / c)² is kept for the backward.
            if let softcap, let slope {
                Ops.softcap(logits.pointer, count: values, cap: softcap)
                for i in 0..<values { let t = logits.pointer[i] / softcap; slope.pointer[i] = 1 - t * t }
            }
            targets.withUnsafeBufferPointer {
                crossEntropyForward(losses + first, logits.pointer, logits.pointer, $0.baseAddress! + first, rows: count, vocab: vocab)
            }
            guard let dfinal, let dlogits else { continue }
            dlogits.pointer.update(repeating: 0, count: values)
            targets.withUnsafeBufferPointer { t in
                crossEntropyBackward(dlogits.pointer, dlosses, logits.pointer, t.baseAddress! + first, rows: count, vocab: vocab)
            }
            if let slope { for i in 0..<values { dlogits.pointer[i] *= slope.pointer[i] } }
            slices.forEach { range, w in
                BLAS.gemmAB(dfinal + first * width, dlogits.pointer + range.lowerBound, w,
                            m: count, n: width, k: range.count, lda: vocab, accumulate: true)
            }
        }
        var total = 0.0
        for r in 0..<rows { total += losses[r] }
        return total / Double(rows)
    }

    /// The LM head as fp32 rows: whole (in place for fp32, else widened once), or widened a
    /// slice of rows at a time into one buffer, each time it is walked.
    private struct HeadSlices {
        let head: WeightMatrix
        let whole: FloatInput?
        let sliceRows: Int
        let buffer: Matrix?

        init(_ head: WeightMatrix, weights: WeightViews, whole: Bool, sliceRows: Int) {
            self.head = head
            self.whole = whole ? weights(head, "lm_head") : nil
            self.sliceRows = min(sliceRows, head.rows)
            buffer = whole ? nil : Matrix(rows: self.sliceRows, cols: head.cols)
        }

        /// Calls `body` with each slice's rows and their fp32 values, in order.
        func forEach(_ body: (Range<Int>, FloatInput) -> Void) {
            guard let buffer else { return body(0..<head.rows, whole!) }
            for start in stride(from: 0, to: head.rows, by: sliceRows) {
                let range = start..<min(head.rows, start + sliceRows), cols = head.cols
                parallelChunks(range.count, minimumPerThread: 16) { part in
                    head.widenRows(range.lowerBound + part.lowerBound..<range.lowerBound + part.upperBound,
                                   into: buffer.pointer + part.lowerBound * cols)
                }
                body(range, UnsafePointer(buffer.pointer))
            }
        }
    }

    /// The most memory a pass may keep of its forward for the backward: a quarter of what the
    /// system has available (of half its memory where /proc/meminfo does not say). Past it, the
    /// first layers keep only their inputs and the backward recomputes the rest, one layer at a time.
    static var keptActivationBudget: Int {
        (ProcessMemory.availableBytes ?? Int(clamping: ProcessInfo.processInfo.physicalMemory / 2)) / 4
    }

    /// How many of the first of `layers` layers a pass over `tokens` tokens recomputes (see
    /// `GradientOptions.recomputedLayers`): the fewest n for which n layers' inputs and the other
    /// layers' whole saved states fit `budget`. Sizes are in floats per token.
    static func recomputedLayers(_ options: GradientOptions, layers: Int, stateSize: Int, inputSize: Int, tokens: Int,
                                 budget: Int = keptActivationBudget) -> Int {
        if options.activationsOnly { return 0 }
        if let chosen = options.recomputedLayers { return min(max(chosen, 0), layers) }
        let bytes = MemoryLayout<Float>.size * tokens
        let state = stateSize * bytes, input = inputSize * bytes
        if state * layers <= budget { return 0 }
        let kept = max(0, (budget - input * layers) / max(1, state - input))
        return layers - min(kept, layers)
    }

    /// Applies the test hook `shift` to A or N of layer `layer` if it targets them.
    static func applyShift(_ shift: ActivationShift?, _ target: ActivationShift.Target, layer: Int,
                           _ buffer: FloatBuffer, count: Int) {
        guard let shift, shift.target == target, shift.layer == layer else { return }
        precondition(shift.index >= 0 && shift.index < count, "shift index out of range")
        buffer[shift.index] += shift.delta
    }
}

/// fp32 views of weights for one gradient pass. fp32 weights are read in place; 16-bit weights
/// are widened into a buffer named after the role, and a weight with an offset is copied there
/// and shifted. A view stays valid until the same name is asked for again, so one buffer per
/// role serves every layer (widening all of a bf16 model at once would double its memory).
final class WeightViews {
    private let scratch = Scratch()

    func callAsFunction(_ w: WeightMatrix, _ name: String, offset: [Float]? = nil) -> FloatInput {
        if w.dtype == .f32 && offset == nil { return UnsafePointer(w.floatPointer) }
        let buffer = scratch.buffer(name, count: w.count)
        if w.dtype == .f32 {
            buffer.update(from: w.floatPointer, count: w.count)
        } else {
            parallelChunks(w.rows, minimumPerThread: 16) { range in
                w.widenRows(range, into: buffer + range.lowerBound * w.cols)
            }
        }
        if let offset {
            precondition(offset.count == w.count, "weight offset has \(offset.count) values, expected \(w.count)")
            offset.withUnsafeBufferPointer { Ops.add(buffer, $0.baseAddress!, count: w.count) }
        }
        return UnsafePointer(buffer)
    }
}

/// What a block's forward saves for its backward.
protocol SavedBlock: AnyObject {
    /// (T, d) the residual stream entering the block.
    var input: Matrix { get }
    /// (T, H·d_h) A, the heads' attention outputs.
    var a: Matrix { get }
    /// (T, F) N, the neurons' activations, and Z, their pre-activations.
    var n: Matrix { get }
    var z: Matrix { get }
}

extension SavedBlock {
    /// The block's units without gradients (a pass that runs only the forward).
    var activations: LayerGradients {
        LayerGradients(layerInput: input.array, attention: a.array, attentionGrad: [], hidden: n.array, hiddenGrad: [],
                       preActivation: z.array)
    }
}

/// What a pass keeps of its forward for the backward: a block's saved state, or for the first
/// `GradientPass.recomputedLayers` blocks only its input, from which `take` recomputes the rest.
struct SavedLayers<Saved: SavedBlock> {
    private var saved: [Saved?]
    private var inputs: [Matrix?]

    /// Runs every block's forward in order. With `options.activationsOnly` each block's
    /// activations go to `visit` at once and nothing is kept. `stateSize`: the floats per token
    /// of one block's state.
    init(options: GradientOptions, shape: TransformerShape, tokens: Int, stateSize: Int, forward: (_ layer: Int) -> Saved,
         visit: (_ layer: Int, LayerGradients) throws -> Void) rethrows {
        saved = Array(repeating: nil, count: shape.layers)
        inputs = Array(repeating: nil, count: shape.layers)
        let recomputed = GradientPass.recomputedLayers(options, layers: shape.layers, stateSize: stateSize,
                                                       inputSize: shape.hiddenSize, tokens: tokens)
        for l in 0..<shape.layers {
            let state = forward(l)
            if options.activationsOnly {
                try visit(l, state.activations)
            } else if l < recomputed {
                inputs[l] = state.input
            } else {
                saved[l] = state
            }
        }
    }

    /// Layer l's state, let go of here; `recompute` runs the block's forward again on its input
    /// (which the forward copies into the state before it overwrites it with the block's output).
    mutating func take(layer l: Int, recompute: (Matrix) -> Saved) -> Saved {
        defer { saved[l] = nil; inputs[l] = nil }
        return saved[l] ?? recompute(inputs[l]!)
    }
}

extension Matrix {
    /// A zeroed (rows, cols) matrix when `condition` holds, else nil.
    static func zeros(_ rows: Int, _ cols: Int, if condition: Bool) -> Matrix? {
        condition ? Matrix(rows: rows, cols: cols) : nil
    }
}

/// When `condition` holds, a zeroed array of `count` floats that `fill` adds into; else nil.
/// Weight gradients are built this way, straight in the array the record keeps (they are as
/// large as the weights: a copy per pass showed up as a third of the time).
func gradientArray(_ count: Int, if condition: Bool, _ fill: (FloatBuffer) -> Void) -> [Float]? {
    guard condition else { return nil }
    var values = [Float](repeating: 0, count: count)
    values.withUnsafeMutableBufferPointer { fill($0.baseAddress!) }
    return values
}

/// The backward of a projection inside a block: adds the gradient reaching its input into
/// `dInput`, and returns its weight's gradient (in the weight's layout) when `wanted`.
func projectionBackward(_ dInput: FloatBuffer, _ dout: FloatInput, input: FloatInput, weight: FloatInput,
                        rows: Int, inputs: Int, outputs: Int, layout: WeightLayout = .standard,
                        weightGradient wanted: Bool) -> [Float]? {
    linearBackward(dInput, nil, nil, dout, nil, weight, rows: rows, inputs: inputs, outputs: outputs, layout: layout)
    return gradientArray(inputs * outputs, if: wanted) {
        linearBackward(nil, $0, nil, dout, input, weight, rows: rows, inputs: inputs, outputs: outputs, layout: layout)
    }
}

extension WeightMatrix {
    /// The whole matrix widened to fp32, row-major, or [] unless `condition` holds.
    func floatArray(if condition: Bool = true) -> [Float] {
        guard condition else { return [] }
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            widenRows(0..<rows, into: buffer.baseAddress!)
            initialized = count
        }
    }
}
