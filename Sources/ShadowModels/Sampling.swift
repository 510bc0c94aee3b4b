import Foundation
import ShadowFormats

/// The generator sampling draws from: SplitMix64, so sampled generations repeat exactly.
public typealias SeededGenerator = SplitMix64

/// How the next token is chosen from the logits.
public struct SamplingOptions: Sendable, Equatable {
    /// 0 means greedy (argmax).
    public var temperature: Float
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `topP`.
    public var topP: Float
    /// Keep only the `topK` most probable tokens (0: all of them).
    public var topK: Int
    /// Keep only tokens at least `minP` times as probable as the most probable one (0: all).
    public var minP: Float
    /// llama.cpp's repetition penalty (1: none): a token among the last `repeatLastN` of the
    /// prompt and the text so far has its logit divided by it when positive, multiplied when
    /// negative, before greedy choice or sampling.
    public var repeatPenalty: Float
    /// As llama.cpp's: 0 turns the penalty off, −1 looks back over the whole context.
    public var repeatLastN: Int
    public var seed: UInt64

    public init(temperature: Float = 0, topP: Float = 1, topK: Int = 0, minP: Float = 0,
                repeatPenalty: Float = 1, repeatLastN: Int = 64, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.minP = minP
        self.repeatPenalty = repeatPenalty
        self.repeatLastN = repeatLastN
        self.seed = seed
    }

    public static let greedy = SamplingOptions()
}

public struct Sampler: Sendable {
    public let options: SamplingOptions
    private var generator: SeededGenerator

    public init(_ options: SamplingOptions) {
        self.options = options
        generator = SeededGenerator(seed: options.seed)
    }

    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return best
    }

    /// The `count` first of `indices` in the order `before`, sorted, without sorting them all:
    /// a vocabulary has tens of thousands of tokens and top-k keeps a few dozen.
    static func largest(_ count: Int, of indices: Range<Int>, by before: (Int, Int) -> Bool) -> [Int] {
        var kept: [Int] = []
        kept.reserveCapacity(count + 1)
        for index in indices {
            if kept.count == count, !before(index, kept[count - 1]) { continue }
            var low = 0, high = kept.count
            while low < high {
                let middle = (low + high) / 2
                if before(kept[middle], index) { low = middle + 1 } else { high = middle }
            }
            kept.insert(index, at: low)
            if kept.count > count { kept.removeLast() }
        }
        return kept
    }

    /// `logits` with the repetition penalty applied to the tokens among the last
    /// `repeatLastN` of `history`, each once however often it occurs.
    func penalized(_ logits: [Float], history: ArraySlice<Int>) -> [Float] {
        guard options.repeatPenalty != 1, options.repeatLastN != 0, !history.isEmpty else { return logits }
        var logits = logits
        for token in Set(options.repeatLastN < 0 ? history : history.suffix(options.repeatLastN)) where logits.indices.contains(token) {
            logits[token] = logits[token] > 0 ? logits[token] / options.repeatPenalty : logits[token] * options.repeatPenalty
        }
        return logits
    }

    /// The next token after `history` (the prompt and the tokens generated so far, oldest
    /// first; only the repetition penalty reads it).
    public mutating func sample(_ logits: [Float], history: ArraySlice<Int> = []) -> Int {
        let logits = penalized(logits, history: history)
        if options.temperature <= 0 { return Self.argmax(logits) }
        // Shifted by the largest logit and divided (not multiplied by 1/T, which overflows to
        // infinity below T ≈ 3e-39 and makes 0 × ∞ = NaN): the largest logit gets exp(0) = 1
        // and every other one at most 1, so any positive T is stable and a tiny one is greedy.
        let maxLogit = logits.max() ?? 0
        var probabilities = logits.map { expf(($0 - maxLogit) / options.temperature) }
        let total = probabilities.reduce(0, +)
        for i in probabilities.indices { probabilities[i] /= total }
        // The filters in the order of Hugging Face's generate (after the temperature): top-k,
        // top-p on what top-k kept, min-p on what top-p kept. Most probable first; ties keep the
        // lower id first, so a cut is repeatable.
        func before(_ a: Int, _ b: Int) -> Bool { probabilities[a] > probabilities[b] || (probabilities[a] == probabilities[b] && a < b) }
        var candidates: [Int]
        let topKCuts = options.topK > 0 && options.topK < probabilities.count
        if topKCuts {
            candidates = Self.largest(options.topK, of: probabilities.indices, by: before)
        } else if options.topP < 1 {
            // The nucleus usually lies among the few most probable tokens: sort the vocabulary
            // only when it does not (the sorted order starts with the same tokens either way).
            candidates = Self.largest(min(64, probabilities.count), of: probabilities.indices, by: before)
            if candidates.reduce(Float(0), { $0 + probabilities[$1] }) < options.topP {
                candidates = probabilities.indices.sorted(by: before)
            }
        } else if options.minP > 0 {
            // What min-p keeps, sorted: the same list as sorting everything and cutting.
            let floor = options.minP * (probabilities.max() ?? 0)
            candidates = probabilities.indices.filter { probabilities[$0] >= floor }.sorted(by: before)
        } else {
            candidates = Array(probabilities.indices)
        }
        if options.topP < 1 {
            // The nucleus of what top-k kept, in proportion to its own mass.
            let kept = topKCuts ? candidates.reduce(Float(0)) { $0 + probabilities[$1] } : 1
            var cumulative: Float = 0
            var keep = 0
            for id in candidates {
                cumulative += probabilities[id]
                keep += 1
                if cumulative >= options.topP * kept { break }
            }
            candidates = Array(candidates.prefix(keep))
        }
        if options.minP > 0, let best = candidates.first {
            let floor = options.minP * probabilities[best]
            candidates = Array(candidates.prefix { probabilities[$0] >= floor })
        }
        // NaN logits (a broken checkpoint) compare false everywhere and can leave no candidate.
        guard let last = candidates.last else { return Self.argmax(logits) }
        let mass = candidates.reduce(Float(0)) { $0 + probabilities[$1] }
        var r = Float(Double(generator.next() >> 11) / Double(1 << 53)) * mass
        for id in candidates {
            r -= probabilities[id]
            if r <= 0 { return id }
        }
        return last
    }
}
