import Foundation
import ShadowKernels
#if canImport(Glibc)
import Glibc
#endif

/// llama-bench-style measurements: `pp<N>` is prompt processing (N tokens in one forward pass),
/// `tg<N>` is text generation (N single-token forward passes from an empty cache).
public enum Benchmark {
    public struct Measurement: Sendable, Codable {
        public var test: String
        public var tokens: Int
        public var samplesTokensPerSecond: [Double]

        public init(test: String, tokens: Int, samplesTokensPerSecond: [Double]) {
            self.test = test
            self.tokens = tokens
            self.samplesTokensPerSecond = samplesTokensPerSecond
        }
        public var mean: Double { samplesTokensPerSecond.reduce(0, +) / Double(max(samplesTokensPerSecond.count, 1)) }
        public var stddev: Double {
            let n = Double(samplesTokensPerSecond.count)
            guard n > 1 else { return 0 }
            let m = mean
            return (samplesTokensPerSecond.map { ($0 - m) * ($0 - m) }.reduce(0, +) / (n - 1)).squareRoot()
        }
    }

    /// Deterministic token ids for the prompt (their values barely matter for speed).
    public static func tokens(_ count: Int, vocabulary: Int) -> [Int] {
        var generator = SeededGenerator(seed: 1234)
        return (0..<count).map { _ in Int(generator.next() % UInt64(vocabulary)) }
    }

    /// Prompt processing: one forward pass over `tokens` tokens, logits of the last only.
    public static func promptProcessing(model: any CausalLanguageModel, tokens count: Int, repetitions: Int,
                                        sparsity: (any SparsityController)? = nil) -> Measurement {
        let prompt = tokens(count, vocabulary: model.shape.vocabularySize)
        let cache = model.makeCache(capacity: count)
        _ = model.forward(Array(prompt.prefix(min(count, 16))), cache: cache, logits: .last, sparsity: sparsity)  // warm-up
        var samples: [Double] = []
        for _ in 0..<repetitions {
            cache.reset()
            let start = DispatchTime.now().uptimeNanoseconds
            _ = model.forward(prompt, cache: cache, logits: .last, sparsity: sparsity)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            samples.append(Double(count) / seconds)
        }
        return Measurement(test: "pp\(count)", tokens: count, samplesTokensPerSecond: samples)
    }

    /// Text generation: `tokens` sequential single-token forward passes (greedy), from an empty cache.
    /// `measuring` is called once after the warm-up run, before the measured ones.
    public static func textGeneration(model: any CausalLanguageModel, tokens count: Int, repetitions: Int,
                                      sparsity: (any SparsityController)? = nil, packKeptRows: Bool = false,
                                      measuring: () -> Void = {}) -> Measurement {
        let cache = model.makeCache(capacity: count + 1)
        cache.scratch.packing = packKeptRows ? PackingRule(after: 2) : nil   // packed from the warm-up run's second token
        var samples: [Double] = []
        for repetition in 0...repetitions {
            if repetition == 1 { measuring() }
            cache.reset()
            var token = 1
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<count {
                let logits = model.forward([token], cache: cache, logits: .last, sparsity: sparsity)
                token = Sampler.argmax(logits)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if repetition > 0 { samples.append(Double(count) / seconds) }   // the first run warms up
        }
        return Measurement(test: "tg\(count)", tokens: count, samplesTokensPerSecond: samples)
    }

    /// Peak resident memory of this process so far, in bytes.
    public static var peakResidentBytes: Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024   // kilobytes on Linux
    }
}
