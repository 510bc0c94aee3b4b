import Foundation
import ShadowTasks

/// A mean of 0/1 outcomes with lm-eval's standard error: the sample standard deviation over
/// √n, which for 0/1 values is √(p(1 − p)/(n − 1)). NaN when n < 2.
public struct Proportion: Sendable, Equatable {
    public var value: Double
    public var stderr: Double

    public init(_ outcomes: [Bool]) {
        let n = outcomes.count
        let p = n > 0 ? Double(outcomes.filter { $0 }.count) / Double(n) : .nan
        value = p
        stderr = Self.stderr(p: p, n: n)
    }

    public static func stderr(p: Double, n: Int) -> Double {
        n > 1 ? (p * (1 - p) / Double(n - 1)).squareRoot() : .nan
    }
}

/// lm-eval's multiple-choice decisions from the per-choice log-likelihood sums.
public enum ChoiceDecision {
    /// Index of the largest value, the first on ties (numpy's argmax).
    public static func argmax(_ values: [Double]) -> Int {
        var best = 0
        for i in values.indices.dropFirst() where values[i] > values[best] { best = i }
        return best
    }

    /// `acc`: the choice with the largest summed log-likelihood.
    public static func acc(_ sums: [Double]) -> Int { argmax(sums) }

    /// `acc_norm`: the largest sum per character of the continuation.
    public static func accNorm(_ sums: [Double], characters: [Int]) -> Int {
        argmax(zip(sums, characters).map { $0 / Double(max($1, 1)) })
    }
}

/// Perplexity of a text in the units lm-eval's WikiText task reports.
public struct TextPerplexity: Sendable, Equatable {
    public var nllSum: Double
    public var predictedTokens: Int
    /// Words as lm-eval counts them (`len(re.split(r"\s+", page))`, summed over the articles) and
    /// UTF-8 bytes, both of the text as stored (before any detokenization).
    public var words: Int
    public var bytes: Int
    /// Each article's figures, in order, when the text was scored article by article.
    public var pages: [TextPerplexity] = []

    public init(nllSum: Double, predictedTokens: Int, words: Int, bytes: Int) {
        self.nllSum = nllSum
        self.predictedTokens = predictedTokens
        self.words = words
        self.bytes = bytes
    }

    /// Words and bytes summed over the text's articles, as lm-eval counts them page by page.
    public init(nllSum: Double, predictedTokens: Int, text: String) {
        let pages = TaskFile.wikitextPages(text)
        self.init(nllSum: nllSum, predictedTokens: predictedTokens,
                  words: pages.reduce(0) { $0 + TaskFile.wikitextWordCount($1) },
                  bytes: pages.reduce(0) { $0 + $1.utf8.count })
    }

    public var wordPerplexity: Double { exp(nllSum / Double(words)) }
    public var bytePerplexity: Double { exp(nllSum / Double(bytes)) }
    public var bitsPerByte: Double { nllSum / Double(bytes) / log(2) }
    public var tokenPerplexity: Double { exp(nllSum / Double(predictedTokens)) }
}
