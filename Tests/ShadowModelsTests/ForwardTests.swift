import Foundation
import Testing
import ShadowFormats
@testable import ShadowKernels
@testable import ShadowModels
import ShadowModelTestSupport
import ShadowTestSupport

@Suite("Forward pass and KV cache")
struct ForwardTests {
    @Test("decoding token by token gives the same logits as one prefill", arguments: [false, true])
    func incrementalEqualsPrefill(bias: Bool) {
        let model = TinyModels.llama(bias: bias)
        let tokens = [3, 14, 15, 9, 26, 5, 35]
        let full = model.forward(tokens, cache: model.makeCache(capacity: 16), logits: .all)
        let cache = model.makeCache(capacity: 16)
        var stepwise: [Float] = []
        // A prefill of three tokens, then one token at a time through the GEMV path.
        stepwise += model.forward(Array(tokens[0..<3]), cache: cache, logits: .all)
        for token in tokens[3...] { stepwise += model.forward([token], cache: cache, logits: .last) }
        expectClose(stepwise, full, tolerance: 1e-4)
        #expect(cache.length == tokens.count)
    }

    @Test("a long prefill after cached tokens attends in causal blocks exactly as one query at a time, with sliding windows too",
          arguments: [WeightDType.f32, .f16], [nil, 1, 50, 130, 400] as [Int?])
    func blockedPrefillAttention(dtype: WeightDType, window: Int?) {
        // 300 new tokens after 40 cached ones: blocks of 128, 128 and 44 query rows.
        let past = 40, T = 300, shape = TransformerShape(layers: 1, hiddenSize: 16, heads: 4, kvHeads: 2, headDim: 8,
                                                         ffnSize: 8, vocabularySize: 10, maxContext: 512)
        #expect(T > 2 * CausalBlocks.rows)
        let total = past + T
        let q = randomFloats(total * shape.attentionWidth, seed: 31).map { 3 * $0 }
        let k = randomFloats(total * shape.kvWidth, seed: 32), v = randomFloats(total * shape.kvWidth, seed: 33)
        let cache = KVCache(shape: shape, capacity: total, dtype: dtype)
        CausalAttention.store(cache: cache, layer: 0, k: k, v: v, past: 0, tokens: total)
        let width = shape.attentionWidth
        var blocked = [Float](repeating: 0, count: T * width), single = blocked
        q.withUnsafeBufferPointer { qp in
            CausalAttention.attend(&blocked, q: qp.baseAddress! + past * width, cache: cache, layer: 0,
                                   past: past, tokens: T, scale: 0.35, window: window)
            for t in 0..<T {
                single.withUnsafeMutableBufferPointer { out in
                    CausalAttention.attend(out.baseAddress! + t * width, q: qp.baseAddress! + (past + t) * width,
                                           cache: cache, layer: 0, past: past + t, tokens: 1, scale: 0.35, window: window)
                }
            }
        }
        expectClose(blocked, single, tolerance: 1e-5)
        // A window of one: each token sees only itself, so it gets its own value.
        if window == 1, dtype == .f32 {
            let own = (0..<T).flatMap { t in (0..<shape.heads).flatMap { h in
                let g = h / shape.groupSize, row = (past + t) * shape.kvWidth + g * shape.headDim
                return Array(v[row..<row + shape.headDim])
            } }
            expectClose(blocked, own, tolerance: 1e-6)
        }
    }

    @Test("an fp16 KV cache gives the fp32 cache's logits, in prefill and decode, in half the bytes")
    func halfPrecisionCache() {
        let model = TinyModels.llama()
        let tokens = [3, 14, 15, 9, 26, 5, 35, 8, 41]
        let full = model.forward(tokens, cache: model.makeCache(capacity: 16), logits: .all)
        let half = KVCache(shape: model.shape, capacity: 16, dtype: .f16)
        #expect(half.byteCount * 2 == model.makeCache(capacity: 16).byteCount)
        // Six tokens take the GEMM path (past gemvTokenLimit), the rest the decode kernel.
        var stepwise = model.forward(Array(tokens[0..<6]), cache: half, logits: .all)
        for token in tokens[6...] { stepwise += model.forward([token], cache: half, logits: .last) }
        expectClose(stepwise, full, tolerance: 2e-3)
        #expect(stepwise != full)   // it really is rounded
    }

    @Test("models with 16-bit weights make fp16 caches; fp32 weights and bf16 products keep an fp32 cache")
    func cachePrecisionFollowsWeights() {
        #expect(TinyModels.llama().makeCache(capacity: 4).dtype == .f32)
        #expect(TinyModels.llama(weights: .bf16dot).makeCache(capacity: 4).dtype == .f32)
        #expect(TinyModels.llama(weights: .bf16).makeCache(capacity: 4).dtype == .f16)
        #expect(TinyModels.llama(weights: .f16).makeCache(capacity: 4).dtype == .f16)
    }

    @Test("the last-token logits equal the last row of all logits")
    func lastRow() {
        let model = TinyModels.llama()
        let tokens = [1, 2, 3, 4]
        let all = model.forward(tokens, cache: model.makeCache(), logits: .all)
        let last = model.forward(tokens, cache: model.makeCache(), logits: .last)
        expectClose(last, Array(all[(3 * 50)...]), tolerance: 1e-5)
    }

    @Test("target log-probabilities, computed in blocks of rows, are the log-softmax of all logits at the targets",
          arguments: [WeightDType.f32, .f16, .bf16dot, .q8])
    func targetLogProbabilities(weights: WeightDType) {
        checkTargetLogProbabilities(weights: weights)
        // Without bf16 kernels the blocks of a bf16-dot head go through BLAS on rounded inputs.
        if weights == .bf16dot { BF16Products.$usesKernels.withValue(false) { checkTargetLogProbabilities(weights: weights) } }
    }

    func checkTargetLogProbabilities(weights: WeightDType) {
        // 520 tokens: vocabulary blocks of 256, 256 and 8 rows (and 16-bit heads widened once).
        let model = TinyModels.llama(weights: weights, maxContext: 600)
        let tokens = (0..<520).map { ($0 * 7 + 3) % 50 }, targets = tokens.map { ($0 * 11 + 5) % 50 }
        let all = model.forward(tokens, cache: model.makeCache(capacity: 520), logits: .all)
        let streamed = model.forward(tokens, cache: model.makeCache(capacity: 520), logits: .targetLogProbabilities(targets))
        let expected = all.withUnsafeBufferPointer { rows in
            targets.indices.map { t in
                let row = rows.baseAddress! + t * 50
                return Float(Double(row[targets[t]]) - Ops.logSumExp(row, 50))
            }
        }
        expectClose(streamed, expected, tolerance: 1e-5)
        let short = model.forward(Array(tokens.prefix(5)), cache: model.makeCache(capacity: 8),
                                  logits: .targetLogProbabilities(Array(targets.prefix(5))))
        expectClose(short, Array(expected.prefix(5)), tolerance: 1e-5)
    }

    @Test("target log-probabilities take logits in blocks of 256 rows, fewer for large vocabularies (about 50 MB a block)")
    func logProbabilityBlocks() {
        #expect(LMHead.logProbabilityBlockRows(vocabulary: 384) == 256 && LMHead.logProbabilityBlockRows(vocabulary: 49_152) == 256)
        #expect(LMHead.logProbabilityBlockRows(vocabulary: 262_144) == 48 && LMHead.logProbabilityBlockRows(vocabulary: 10_000_000) == 16)
    }

    @Test("target log-probabilities read the head's input width when the final step narrows the rows (OPT's project_out), with Gemma 2's capped logits too",
          arguments: [WeightDType.f32, .f16, .bf16dot], [nil, 1.5] as [Float?])
    func targetLogProbabilitiesAfterProjection(dtype: WeightDType, softcap: Float?) {
        // d = 8 wide residual rows, narrowed to e = 6 before a (11, 6) head; blocks of 4 rows.
        let T = 10, d = 8, e = 6, vocab = 11
        let head = WeightMatrix(Matrix(rows: vocab, cols: e, values: randomFloats(vocab * e, seed: 50)), dtype: dtype)
        var x = randomFloats(T * d, seed: 51).map { 3 * $0 }
        let narrow = { (dst: UnsafeMutablePointer<Float>, src: UnsafePointer<Float>, rows: Int) in
            for r in 0..<rows { for i in 0..<e { dst[r * e + i] = 0.5 * src[r * d + i + 1] } }
        }
        let targets = (0..<T).map { ($0 * 5 + 2) % vocab }
        var normed = [Float](repeating: 0, count: T * d)
        func run(_ request: LogitsRequest, capped: Bool = true) -> [Float] {
            x.withUnsafeMutableBufferPointer { xp in
                normed.withUnsafeMutableBufferPointer { np in
                    LMHead.logits(x: xp.baseAddress!, tokens: T, width: d, norm: narrow, head: head,
                                  normed: np.baseAddress!, scratch: Scratch(), request: request, blockRows: 4,
                                  softcap: capped ? softcap : nil)
                }
            }
        }
        let all = run(.all), streamed = run(.targetLogProbabilities(targets))
        let expected = all.withUnsafeBufferPointer { rows in
            targets.indices.map { t in
                Float(Double(rows[t * vocab + targets[t]]) - Ops.logSumExp(rows.baseAddress! + t * vocab, vocab))
            }
        }
        expectClose(streamed, expected, tolerance: 1e-5)
        if let softcap {   // every logit is c·tanh(z / c) of the uncapped one
            expectClose(all, run(.all, capped: false).map { softcap * tanh($0 / softcap) }, tolerance: 1e-6)
        }
    }

    @Test("a 16-bit head's target log-probabilities on the BLAS path gather the log-sum-exp over vocabulary slices, equal to whole rows", arguments: [WeightDType.f16, .bf16], [nil, 1.5] as [Float?])
    func slicedTargetLogProbabilities(dtype: WeightDType, softcap: Float?) {
        // 120 rows take the BLAS path without AVX-512; slices of 8 of the 37 vocabulary rows, the last one short.
        let T = 120, d = 16, vocab = 37
        let head = WeightMatrix(Matrix(rows: vocab, cols: d, values: randomFloats(vocab * d, seed: 60)), dtype: dtype)
        var x = randomFloats(T * d, seed: 61).map { 3 * $0 }
        let copy = { (dst: UnsafeMutablePointer<Float>, src: UnsafePointer<Float>, rows: Int) in dst.update(from: src, count: rows * d) }
        let targets = (0..<T).map { ($0 * 7 + 3) % vocab }
        var normed = [Float](repeating: 0, count: T * d)
        func run(_ request: LogitsRequest, sliceRows: Int? = nil) -> [Float] {
            x.withUnsafeMutableBufferPointer { xp in
                normed.withUnsafeMutableBufferPointer { np in
                    LMHead.logits(x: xp.baseAddress!, tokens: T, width: d, norm: copy, head: head, normed: np.baseAddress!,
                                  scratch: Scratch(), request: request, blockRows: 16, sliceRows: sliceRows, softcap: softcap)
                }
            }
        }
        let all = run(.all)
        let expected = all.withUnsafeBufferPointer { rows in
            targets.indices.map { t in
                Float(Double(rows[t * vocab + targets[t]]) - Ops.logSumExp(rows.baseAddress! + t * vocab, vocab))
            }
        }
        expectClose(run(.targetLogProbabilities(targets), sliceRows: 8), expected, tolerance: 1e-5)
        expectClose(run(.targetLogProbabilities(targets)), expected, tolerance: 1e-5)
        // Called directly too: with AVX-512 the rows above take the small-GEMM path, not BLAS.
        for (slice, tokenRows) in [(8, 16), (37, nil), (nil, 50), (nil, nil)] as [(Int?, Int?)] {
            let sliced = x.withUnsafeBufferPointer {
                LMHead.slicedTargetLogProbabilities($0.baseAddress!, tokens: T, targets: targets, head: head,
                                                    scratch: Scratch(), sliceRows: slice, tokenRows: tokenRows, softcap: softcap)
            }
            expectClose(sliced, expected, tolerance: 1e-5)
        }
    }

    @Test("greedy generation is deterministic and sampling repeats with the same seed")
    func generation() throws {
        let model = TinyModels.llama()
        let a = try Generator.generate(model: model, prompt: [1, 2, 3], maxTokens: 8)
        let b = try Generator.generate(model: model, prompt: [1, 2, 3], maxTokens: 8)
        #expect(a.tokens == b.tokens && a.tokens.count == 8)
        let options = SamplingOptions(temperature: 0.9, topP: 0.9, seed: 42)
        let c = try Generator.generate(model: model, prompt: [1, 2, 3], maxTokens: 8, sampling: options)
        let d = try Generator.generate(model: model, prompt: [1, 2, 3], maxTokens: 8, sampling: options)
        #expect(c.tokens == d.tokens)
        // The greedy continuation's first token is the argmax of the prompt's last logits.
        let logits = model.forward([1, 2, 3], cache: model.makeCache(), logits: .last)
        #expect(a.tokens.first == Sampler.argmax(logits))
        // Decode speed counts forward passes: 8 tokens take 7 (the prefill chose the first), 1 takes none.
        #expect(a.stats.generatedTokens == 8 && a.stats.decodePasses == 7)
        let one = try Generator.generate(model: model, prompt: [1, 2, 3], maxTokens: 1)
        #expect(one.stats.decodePasses == 0 && one.stats.generatedTokensPerSecond == nil)
    }

    @Test("a long dense prompt is prefilled in parts, heard to stop between them, and gives the logits of one pass")
    func prefillInParts() throws {
        let model = TinyModels.llama(maxContext: 2 * Generator.prefillPart + 64)
        let prompt = (0..<(Generator.prefillPart + 40)).map { ($0 * 7 + 3) % 50 }
        let whole = model.forward(prompt, cache: model.makeCache(capacity: prompt.count), logits: .last)
        let generated = try Generator.generate(model: model, prompt: prompt, maxTokens: 1)
        #expect(generated.tokens == [Sampler.argmax(whole)])
        // Asked to stop after the first part: no token, the rest of the prompt never prefilled.
        var asked = 0
        let cache = model.makeCache(capacity: prompt.count + 4)
        var cached: [Int] = []
        let stopped = try Generator.generate(model: model, prompt: prompt, continuing: cache, cached: &cached, maxTokens: 4,
                                             shouldStop: { asked += 1; return true })
        #expect(stopped.tokens.isEmpty && asked >= 1 && cache.length == Generator.prefillPart && cached == Array(prompt.prefix(Generator.prefillPart)))
        #expect(stopped.stats.promptTokens == Generator.prefillPart && generated.stats.promptTokens == prompt.count)
    }

    @Test("sampling at any positive temperature is finite: a tiny one picks the largest logit, as greedy does")
    func tinyTemperature() {
        let logits: [Float] = [1.5, -3, 7.25, 7.0, 0, -40]
        // A subnormal temperature (about 1e-40), spelled without the literal's underflow warning.
        let subnormal = Float.leastNormalMagnitude / 128
        for temperature in [Float(1e-30), 1e-38, subnormal, .leastNonzeroMagnitude] {
            for seed in UInt64(0)..<20 {
                var sampler = Sampler(SamplingOptions(temperature: temperature, seed: seed))
                #expect(sampler.sample(logits) == 2, "T = \(temperature), seed \(seed)")
            }
        }
        // Ties at the top share the draw; nothing else is ever drawn.
        var drawn = Set<Int>()
        var sampler = Sampler(SamplingOptions(temperature: subnormal, seed: 3))
        for _ in 0..<200 { drawn.insert(sampler.sample([2, 9, 1, 9])) }
        #expect(drawn == [1, 3])
    }

    @Test("NaN logits draw a token under every filter instead of trapping")
    func nanLogits() {
        let logits: [Float] = [1, .nan, 3, 2]
        for options in [SamplingOptions(temperature: 1, minP: 0.1, seed: 1), SamplingOptions(temperature: 1, topP: 0.5, seed: 1),
                        SamplingOptions(temperature: 1, topK: 2, seed: 1), SamplingOptions(temperature: 1, seed: 1)] {
            var sampler = Sampler(options)
            #expect(logits.indices.contains(sampler.sample(logits)), "\(options)")
        }
    }

    @Test("top-k, min-p and top-p draw only from the tokens they keep, and top-k 1 is greedy")
    func samplingFilters() {
        // Probabilities at T = 1 ∝ exp(logit): token 2 ≈ 0.64, 3 ≈ 0.24, 0 ≈ 0.09, 4 ≈ 0.03, …
        let logits: [Float] = [2, -1, 4, 3, 1, -5]
        func drawn(_ options: SamplingOptions) -> Set<Int> {
            var sampler = Sampler(options)
            return Set((0..<400).map { _ in sampler.sample(logits) })
        }
        #expect(drawn(SamplingOptions(temperature: 1, seed: 1)).isSuperset(of: [0, 2, 3, 4]))
        #expect(drawn(SamplingOptions(temperature: 1, topK: 1, seed: 1)) == [2])
        #expect(drawn(SamplingOptions(temperature: 1, topK: 2, seed: 1)) == [2, 3])
        // min-p 0.3 keeps p ≥ 0.3 · 0.64 ≈ 0.19: tokens 2 and 3.
        #expect(drawn(SamplingOptions(temperature: 1, minP: 0.3, seed: 1)) == [2, 3])
        // min-p after top-p: of {2, 3} (top-p 0.8), min-p 0.4 keeps p ≥ 0.26: token 2 alone.
        #expect(drawn(SamplingOptions(temperature: 1, topP: 0.8, minP: 0.4, seed: 1)) == [2])
        #expect(drawn(SamplingOptions(temperature: 1, topP: 0.8, minP: 0.3, seed: 1)) == [2, 3])
        // top-p applies to what top-k kept: of {2, 3, 0} (mass ≈ 0.97), 0.7 of it is reached by 2 and 3.
        #expect(drawn(SamplingOptions(temperature: 1, topP: 0.7, topK: 3, seed: 1)) == [2, 3])
        #expect(drawn(SamplingOptions(temperature: 1, topP: 0.5, seed: 1)) == [2])
    }

    @Test("the sampler's shortcuts draw what sorting the whole vocabulary draws, filters in any combination")
    func samplingShortcuts() {
        /// The naive twin: every filter on the fully sorted vocabulary.
        func reference(_ logits: [Float], _ options: SamplingOptions, draws: Int) -> [Int] {
            var generator = SeededGenerator(seed: options.seed)
            let top = logits.max()!
            var p = logits.map { expf(($0 - top) / options.temperature) }
            let total = p.reduce(0, +)
            for i in p.indices { p[i] /= total }
            var order = p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
            let topKCuts = options.topK > 0 && options.topK < p.count
            if topKCuts { order = Array(order.prefix(options.topK)) }
            if options.topP < 1 {
                let kept = topKCuts ? order.reduce(Float(0)) { $0 + p[$1] } : 1
                var cumulative: Float = 0, keep = 0
                for id in order { cumulative += p[id]; keep += 1; if cumulative >= options.topP * kept { break } }
                order = Array(order.prefix(keep))
            }
            if options.minP > 0 { let floor = options.minP * p[order[0]]; order = order.filter { p[$0] >= floor } }
            if !topKCuts, options.topP == 1, options.minP == 0 { order = Array(p.indices) }
            let mass = order.reduce(Float(0)) { $0 + p[$1] }
            return (0..<draws).map { _ in
                var r = Float(Double(generator.next() >> 11) / Double(1 << 53)) * mass
                for id in order { r -= p[id]; if r <= 0 { return id } }
                return order.last!
            }
        }
        var generator = SplitMix64(seed: 11)
        for flat in [false, true] {
            // A peaked vocabulary (the nucleus among a few tokens) and a flat one (sorted whole).
            let logits = (0..<3000).map { i in Float(generator.next() % 1000) / (flat ? 900 : 60) - (i % 7 == 0 ? 0 : 2) }
            for options in [SamplingOptions(temperature: 0.8, topP: 0.9, seed: 4), SamplingOptions(temperature: 1, topP: 0.5, seed: 5),
                            SamplingOptions(temperature: 1.3, minP: 0.05, seed: 6), SamplingOptions(temperature: 1, topP: 0.95, topK: 40, seed: 7),
                            SamplingOptions(temperature: 0.7, topP: 0.9, minP: 0.1, seed: 8), SamplingOptions(temperature: 1, seed: 9),
                            SamplingOptions(temperature: 1, topP: 0.9, topK: 5000, seed: 10)] {   // a top-k that cuts nothing
                var sampler = Sampler(options)
                #expect((0..<50).map { _ in sampler.sample(logits) } == reference(logits, options, draws: 50), "\(options), flat \(flat)")
            }
        }
    }

    @Test("top-k selection gives the sorted order's first k, ties by lower id")
    func topKSelection() {
        var generator = SplitMix64(seed: 5)
        let values = (0..<500).map { _ in Float(generator.next() % 40) }   // many ties
        func before(_ a: Int, _ b: Int) -> Bool { values[a] > values[b] || (values[a] == values[b] && a < b) }
        let sorted = values.indices.sorted(by: before)
        for k in [1, 2, 7, 40, 499, 500] {
            #expect(Sampler.largest(k, of: values.indices, by: before) == Array(sorted.prefix(k)), "k = \(k)")
        }
    }

    @Test("the repetition penalty divides positive and multiplies negative logits of recent tokens, greedy too")
    func repetitionPenalty() {
        let logits: [Float] = [2, -1, 4, 3.5, 1]
        var plain = Sampler(SamplingOptions())
        #expect(plain.sample(logits, history: [2, 2]) == 2)        // no penalty: the history is not read
        var penalized = Sampler(SamplingOptions(repeatPenalty: 1.25))
        #expect(penalized.penalized(logits, history: [2, 1, 2]) == [2, -1.25, 3.2, 3.5, 1])
        #expect(penalized.sample(logits, history: [2]) == 3)       // 4 / 1.25 = 3.2 < 3.5
        // Only the last repeatLastN tokens count: token 2 lies further back; −1 reads them all, 0 none.
        var recent = Sampler(SamplingOptions(repeatPenalty: 1.25, repeatLastN: 2))
        #expect(recent.sample(logits, history: [2, 0, 4]) == 2)
        var all = Sampler(SamplingOptions(repeatPenalty: 1.25, repeatLastN: -1))
        #expect(all.sample(logits, history: [2, 0, 4]) == 3)
        var off = Sampler(SamplingOptions(repeatPenalty: 1.25, repeatLastN: 0))
        #expect(off.sample(logits, history: [2]) == 2)
    }

    @Test("generation with a repetition penalty differs from plain greedy decoding and repeats itself exactly; stop tokens are never penalised")
    func generationWithPenalty() throws {
        let model = TinyModels.llama()
        let plain = try Generator.generate(model: model, prompt: [1, 2, 3], maxTokens: 12)
        let options = SamplingOptions(repeatPenalty: 3)
        let a = try Generator.generate(model: model, prompt: [1, 2, 3], maxTokens: 12, sampling: options)
        let b = try Generator.generate(model: model, prompt: [1, 2, 3], maxTokens: 12, sampling: options)
        #expect(a.tokens == b.tokens && a.tokens != plain.tokens)
        // The plain greedy token repeats the last; as a stop token it ends generation at once,
        // penalty or not (penalised, the model would pick another token and go on).
        let stop = try #require(plain.tokens.first)
        #expect(a.tokens.first != stop)   // penalised, it is not chosen
        let stopped = try Generator.generate(model: model, prompt: [1, 2, 3], maxTokens: 12, sampling: options, stopTokens: [stop])
        #expect(stopped.stoppedAtEOS && stopped.tokens.isEmpty)
    }

    @Test("generation stops at a stop token and rejects an empty prompt")
    func stops() throws {
        let model = TinyModels.llama()
        let first = try Generator.generate(model: model, prompt: [7, 8], maxTokens: 1).tokens[0]
        let stopped = try Generator.generate(model: model, prompt: [7, 8], maxTokens: 5, stopTokens: [first])
        #expect(stopped.tokens.isEmpty && stopped.stoppedAtEOS && stopped.stats.decodePasses == 0)
        // Ended by a stop token, every generated token was fed back once.
        let second = try Generator.generate(model: model, prompt: [7, 8], maxTokens: 2).tokens[1]
        let afterOne = try Generator.generate(model: model, prompt: [7, 8], maxTokens: 5, stopTokens: [second])
        #expect(afterOne.stoppedAtEOS && afterOne.stats.decodePasses == afterOne.tokens.count)
        #expect(throws: (any Error).self) { try Generator.generate(model: model, prompt: [], maxTokens: 5) }
    }

    @Test("prompt and generated tokens together never exceed the context; a full context is reported only before --max-tokens")
    func generationFillsTheContext() throws {
        let model = TinyModels.llama(maxContext: 8)
        let prompt = [1, 2, 3]
        let full = try Generator.generate(model: model, prompt: prompt, maxTokens: 100)
        #expect(prompt.count + full.tokens.count == 8 && full.stoppedAtContext && !full.stoppedAtEOS)
        // The same tokens as a run that asks for exactly what fits: the last one was sampled from the full context.
        let exact = try Generator.generate(model: model, prompt: prompt, maxTokens: 5)
        #expect(exact.tokens == full.tokens && !exact.stoppedAtContext)
        let fewer = try Generator.generate(model: model, prompt: prompt, maxTokens: 4)
        #expect(fewer.tokens == Array(full.tokens.prefix(4)) && !fewer.stoppedAtContext)
        // A prompt one short of the context leaves room for exactly one token.
        let one = try Generator.generate(model: model, prompt: Array(1...7), maxTokens: 100)
        #expect(one.tokens.count == 1 && one.stoppedAtContext)
        #expect(throws: (any Error).self) { try Generator.generate(model: model, prompt: Array(1...8), maxTokens: 1) }
    }

    /// A fixed mask for a model of 4 heads in 2 K/V groups that prunes heads and neurons of every
    /// layer after the first; odd layers keep heads of one group only, so the other group's keys
    /// and values are never computed.
    static func prunedFixedMask(_ shape: TransformerShape) -> FixedSparsity {
        let neurons = (0..<Int32(shape.ffnSize))
        return FixedSparsity(layers: (0..<shape.layers).map { layer in
            if layer == 0 { return .dense }
            return layer % 2 == 1 ? LayerPlan(heads: [1], neurons: neurons.filter { $0 % 3 == 0 }, shape: shape)
                                  : LayerPlan(heads: [0, 3], neurons: neurons.filter { $0 % 2 == 1 }, shape: shape)
        })
    }

    @Test("under a fixed mask, a prefill in parts after cached tokens gives the logits of one whole prefill")
    func fixedMaskPrefillInParts() {
        let model = TinyModels.llama(layers: 3)
        let mask = Self.prunedFixedMask(model.shape)
        let tokens = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 12]
        let whole = model.forward(tokens, cache: model.makeCache(capacity: 16), logits: .all, sparsity: mask)
        let cache = model.makeCache(capacity: 16)
        var parts = model.forward(Array(tokens[0..<6]), cache: cache, logits: .all, sparsity: mask)
        parts += model.forward(Array(tokens[6...]), cache: cache, logits: .all, sparsity: mask)
        expectClose(parts, whole, tolerance: 1e-4)
        // Not vacuous: the mask changes the logits.
        let dense = model.forward(tokens, cache: model.makeCache(capacity: 16), logits: .all)
        #expect(zip(whole, dense).map { abs($0 - $1) }.max()! > 1e-2)
    }

    @Test("continuing a conversation's cache under a fixed mask replies as prefilling each turn whole under it, after a truncation too")
    func fixedMaskContinuesCache() throws {
        // The fixture's own output head: the code-built models, whose head is their embedding, repeat the last token.
        let model = try ModelLoader.load(path: Fixtures.path("tiny-llama")).model
        let mask = Self.prunedFixedMask(model.shape)
        let cache = model.makeCache(capacity: 64)
        var cached: [Int] = []
        var prompts: [[Int]] = [], replies: [[Int]] = [], reused: [Int] = []
        for turn in 0..<3 {
            let prompt: [Int]
            switch turn {
            case 0: prompt = [1, 2, 3, 4, 5]
            case 1: prompt = prompts[0] + replies[0] + [6, 7, 8]   // turn 1 and its reply, then a new message
            default: prompt = [1, 2, 3, 4, 9, 10, 11]              // shares only its first 4 tokens with the cache
            }
            let continued = try Generator.generate(model: model, prompt: prompt, continuing: cache, cached: &cached,
                                                   maxTokens: 6, sparsity: mask)
            let whole = try Generator.generate(model: model, prompt: prompt, maxTokens: 6, sparsity: mask)
            #expect(continued.tokens == whole.tokens && continued.tokens.count == 6, "turn \(turn + 1)")
            #expect(continued.stats.promptTokens == prompt.count - continued.reusedTokens)
            // The last reply token was sampled but never entered the cache.
            #expect(cached == Array((prompt + continued.tokens).dropLast()))
            prompts.append(prompt)
            replies.append(continued.tokens)
            reused.append(continued.reusedTokens)
        }
        #expect(reused == [0, 5 + 6 - 1, 4], "\(reused)")
        // Not vacuous: the dense model replies otherwise to some turn.
        #expect(try prompts.map { try Generator.generate(model: model, prompt: $0, maxTokens: 6).tokens } != replies)
    }

    @Test("perplexity of a short text is one sequence whose first token is context only")
    func perplexityShortText() throws {
        let model = TinyModels.llama()
        let tokens = [4, 8, 15, 16, 23, 42]
        let nll = Scoring.tokenNLL(model: model, tokens: tokens)
        let result = try Scoring.perplexity(model: model, tokens: tokens, context: 32)
        #expect(result.predictedTokens == 5 && result.windows == 1)
        #expect(abs(result.nllSum - nll.reduce(0, +)) < 1e-9)
    }

    @Test("default windows are lm-eval's rolling ones: blocks of a context's targets, each read from the context before its last token")
    func perplexityWindows() throws {
        let model = TinyModels.llama()
        let tokens = (0..<20).map { ($0 * 7) % 50 }
        // lm-eval's get_rolling_token_windows(max_seq_len 8, context_len 1) on tokens 1…19 after
        // token 0 as the prefix: targets [1, 9), [9, 17), [17, 20); the last window reaches back
        // a whole context.
        #expect(Scoring.windows(tokens: 20, context: 8) == [
            PerplexityWindow(input: 0..<8, targets: 1..<9),
            PerplexityWindow(input: 8..<16, targets: 9..<17),
            PerplexityWindow(input: 11..<19, targets: 17..<20),
        ])
        let rolling = try Scoring.perplexity(model: model, tokens: tokens, context: 8)
        #expect(rolling.windows == 3 && rolling.predictedTokens == 19)
        var rollingExpected = Scoring.tokenNLL(model: model, tokens: Array(tokens[0..<9])).reduce(0, +)
        rollingExpected += Scoring.tokenNLL(model: model, tokens: Array(tokens[8..<17])).reduce(0, +)
        rollingExpected += Scoring.tokenNLL(model: model, tokens: Array(tokens[11..<20]))[5...].reduce(0, +)
        #expect(abs(rolling.nllSum - rollingExpected) < 1e-4)
        // A stride of 4 predicts blocks of 4 from the 8 tokens before each block's last token.
        let strided = try Scoring.perplexity(model: model, tokens: tokens, context: 8, stride: 4)
        #expect(strided.windows == 5 && strided.predictedTokens == 19)
        var expected = 0.0
        for (first, end) in [(1, 5), (5, 9), (9, 13), (13, 17), (17, 20)] {
            expected += Scoring.tokenNLL(model: model, tokens: Array(tokens[max(0, end - 9)..<end])).suffix(end - first).reduce(0, +)
        }
        #expect(abs(strided.nllSum - expected) < 1e-4)
        // A context of one token (`-c 1`) predicts every token from the one before it alone.
        let bigram = try Scoring.perplexity(model: model, tokens: tokens, context: 1)
        #expect(bigram.windows == 19 && bigram.predictedTokens == 19)
        let pairs = (1..<20).map { Scoring.tokenNLL(model: model, tokens: [tokens[$0 - 1], tokens[$0]])[0] }.reduce(0, +)
        #expect(abs(bigram.nllSum - pairs) < 1e-4)
        #expect(throws: (any Error).self) { try Scoring.perplexity(model: model, tokens: [1], context: 8) }
        #expect(throws: (any Error).self) { try Scoring.perplexity(model: model, tokens: tokens, context: 8, stride: 9) }
    }

    @Test("the window count progress bars use is the number of windows perplexity runs, reported from 0 before the first")
    func windowCount() throws {
        let model = TinyModels.llama()
        for length in [2, 7, 8, 9, 16, 17, 20] {
            let tokens = (0..<length).map { ($0 * 7) % 50 }
            for (context, stride) in [(8, nil), (8, 4), (8, 1), (4, 3)] as [(Int, Int?)] {
                var reports: [(done: Int, total: Int)] = []
                let result = try Scoring.perplexity(model: model, tokens: tokens, context: context, stride: stride) { reports.append(($0, $1)) }
                #expect(Scoring.windowCount(tokens: length, context: context, stride: stride) == result.windows,
                        "\(length) tokens, context \(context), stride \(stride.map(String.init) ?? "-")")
                // One report before the first window (a bar is drawn from the start), then one per window.
                #expect(reports.map(\.done) == Array(0...result.windows) && reports.allSatisfy { $0.total == result.windows })
            }
        }
    }
}
