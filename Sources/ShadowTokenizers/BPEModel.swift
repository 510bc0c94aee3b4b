import Foundation
import ShadowFormats

/// What a BPE model is made of, whichever file it came from.
struct BPEModelSpec: Sendable {
    struct MergeRule: Sendable {
        var left: String
        var right: String
        /// Lower merges first. Pairs may share a rank (SentencePiece scores); then the leftmost wins.
        var rank: Int

        init(left: String, right: String, rank: Int) {
            self.left = left
            self.right = right
            self.rank = rank
        }

        /// A rule in its text form, "left right": exactly one space, as tokenizers requires (nil
        /// otherwise; tokenizer.json's older form and GGUF's merges are written so).
        init?(line: String, rank: Int) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
            self.init(left: String(parts[0]), right: String(parts[1]), rank: rank)
        }
    }

    /// Vocabulary entries as written in the file, with their ids.
    var vocabulary: [(token: String, id: Int)] = []
    var merges: [MergeRule] = []
    var unknownToken: String?
    /// Characters missing from the vocabulary become their UTF-8 bytes as "<0xNN>" tokens.
    var byteFallback = false
    /// Consecutive unknown characters become one unknown token.
    var fuseUnknown = false
    /// A piece that is itself a vocabulary entry is taken whole, without merging (Llama-3).
    var ignoreMerges = false
    /// Where the vocabulary and merges came from, for error messages.
    var vocabularyKey = "model.vocab"
    var mergesKey = "model.merges"
}

/// Byte-pair encoding over token ids.
///
/// A piece starts as one id per character (per byte in byte-level mode); then the adjacent pair
/// with the lowest merge rank is joined, leftmost first, until no adjacent pair can merge. Ranks
/// come from the order of tokenizer.json's merges, or from SentencePiece scores (GGUF "llama").
struct BPEModel: Sendable {
    struct Merge: Sendable {
        var rank: Int32
        var result: Int32
    }

    /// (left id, right id) packed into one key → the merge of that pair.
    private let merges: [UInt64: Merge]
    /// Byte-level mode: the id of each byte's stand-in character (-1 when missing).
    private let byteLevelIDs: [Int32]?
    /// Character mode: the id of every single-character vocabulary entry.
    private let characterIDs: [UInt32: Int32]
    /// The ids of "<0xNN>" for byte fallback (-1 when missing), or nil without byte fallback.
    private let byteFallbackIDs: [Int32]?
    private let unknownID: Int32?
    private let fuseUnknown: Bool
    private let ignoreMerges: Bool
    /// Every vocabulary entry by its UTF-8 spelling.
    let vocabulary: [[UInt8]: Int32]
    private let cache = PieceCache()

    /// Pieces of up to this many bytes are cached: words repeat, long pieces rarely do.
    private static let longestCachedPiece = 64
    /// Above this many symbols the merge loop switches from rescanning to a priority queue.
    private static let longestRescannedPiece = 48

    init(_ spec: BPEModelSpec, byteLevel: Bool, fail: (String, String) -> ShadowError) throws {
        var vocabulary: [[UInt8]: Int32] = [:]
        vocabulary.reserveCapacity(spec.vocabulary.count)
        for (token, id) in spec.vocabulary {
            guard id >= 0, id < Int(Int32.max) else {
                throw fail(spec.vocabularyKey, "token \(quoted(token)) has id \(id), outside 0..<2³¹")
            }
            vocabulary[Array(token.utf8)] = Int32(id)
        }
        self.vocabulary = vocabulary

        var merges: [UInt64: Merge] = [:]
        merges.reserveCapacity(spec.merges.count)
        for (index, rule) in spec.merges.enumerated() {
            let key = "\(spec.mergesKey)[\(index)]"
            func lookUp(_ token: String) throws -> Int32 {
                guard let id = vocabulary[Array(token.utf8)] else {
                    throw fail(key, "merge \(quoted(rule.left)) + \(quoted(rule.right)) needs \(quoted(token)), "
                                  + "which is not in \(spec.vocabularyKey)")
                }
                return id
            }
            let left = try lookUp(rule.left)
            let right = try lookUp(rule.right)
            let result = try lookUp(rule.left + rule.right)
            guard rule.rank >= 0, rule.rank < Int(Int32.max) else { throw fail(key, "rank \(rule.rank) out of range") }
            // A repeated pair keeps its last rank, as tokenizers' hash map does.
            merges[Self.pairKey(left, right)] = Merge(rank: Int32(rule.rank), result: result)
        }
        self.merges = merges

        if byteLevel {
            byteLevelIDs = ByteLevel.utf8ForByte.map { vocabulary[$0] ?? -1 }
            characterIDs = [:]
        } else {
            byteLevelIDs = nil
            var characters: [UInt32: Int32] = [:]
            for (utf8, id) in vocabulary {
                let scalars = String(decoding: utf8, as: UTF8.self).unicodeScalars
                if scalars.count == 1, let scalar = scalars.first { characters[scalar.value] = id }
            }
            characterIDs = characters
        }
        byteFallbackIDs = spec.byteFallback
            ? (0..<256).map { vocabulary[Array(String(format: "<0x%02X>", $0).utf8)] ?? -1 }
            : nil
        if let unknown = spec.unknownToken {
            guard let id = vocabulary[Array(unknown.utf8)] else {
                throw fail("model.unk_token", "\(quoted(unknown)) is not in \(spec.vocabularyKey)")
            }
            unknownID = id
        } else {
            unknownID = nil
        }
        fuseUnknown = spec.fuseUnknown
        ignoreMerges = spec.ignoreMerges
    }

    private static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private func merge(_ left: Int32, _ right: Int32) -> Merge? {
        merges[Self.pairKey(left, right)]
    }

    /// Appends the ids of one pre-tokenized piece.
    func encode(_ piece: ArraySlice<UInt8>, into ids: inout [Int]) {
        guard !piece.isEmpty else { return }
        let cacheable = piece.count <= Self.longestCachedPiece
        if cacheable, let cached = cache[piece] {
            ids.append(contentsOf: cached.lazy.map(Int.init))
            return
        }
        var symbols: [Int32]
        if ignoreMerges, let whole = wholePieceID(piece) {
            symbols = [whole]
        } else {
            symbols = initialSymbols(piece)
            if symbols.count > Self.longestRescannedPiece {
                mergeWithQueue(&symbols)
            } else {
                mergeByRescanning(&symbols)
            }
        }
        if cacheable { cache[piece] = symbols }
        ids.append(contentsOf: symbols.lazy.map(Int.init))
    }

    private func wholePieceID(_ piece: ArraySlice<UInt8>) -> Int32? {
        byteLevelIDs == nil ? vocabulary[Array(piece)] : vocabulary[ByteLevel.encode(piece)]
    }

    /// One id per byte (byte-level) or per character, with byte fallback and unknown tokens
    /// handled as tokenizers' BPE does.
    func initialSymbols(_ piece: ArraySlice<UInt8>) -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(piece.count)
        var pendingUnknown = false
        func emitUnknown() {
            guard let unknownID else { return }  // without an unknown token the character is dropped
            if pendingUnknown, fuseUnknown { return }
            symbols.append(unknownID)
            pendingUnknown = true
        }
        if let byteLevelIDs {
            for byte in piece {
                let id = byteLevelIDs[Int(byte)]
                if id >= 0 {
                    symbols.append(id)
                    pendingUnknown = false
                } else {
                    emitUnknown()
                }
            }
            return symbols
        }
        var i = piece.startIndex
        while i < piece.endIndex {
            let (value, length) = decodeUTF8(piece, at: i)
            defer { i += length }
            if let id = characterIDs[value] {
                symbols.append(id)
                pendingUnknown = false
                continue
            }
            if let byteFallbackIDs {
                let bytes = piece[i..<i + length].map { byteFallbackIDs[Int($0)] }
                if !bytes.contains(-1) {
                    symbols.append(contentsOf: bytes)
                    pendingUnknown = false
                    continue
                }
            }
            emitUnknown()
        }
        return symbols
    }

    /// For short pieces: find the best pair, merge it, update its two neighbours' ranks, repeat.
    func mergeByRescanning(_ symbols: inout [Int32]) {
        guard symbols.count > 1 else { return }
        var ranks: [Int32] = []
        var results: [Int32] = []
        ranks.reserveCapacity(symbols.count)
        results.reserveCapacity(symbols.count)
        for i in 0..<(symbols.count - 1) {
            let merge = merge(symbols[i], symbols[i + 1])
            ranks.append(merge?.rank ?? .max)
            results.append(merge?.result ?? -1)
        }
        while true {
            var best = -1
            var bestRank = Int32.max
            for i in ranks.indices where ranks[i] < bestRank {
                best = i
                bestRank = ranks[i]
            }
            guard best >= 0 else { return }
            symbols[best] = results[best]
            symbols.remove(at: best + 1)
            ranks.remove(at: best)
            results.remove(at: best)
            for i in [best - 1, best] where i >= 0 && i < ranks.count {
                let merge = merge(symbols[i], symbols[i + 1])
                ranks[i] = merge?.rank ?? .max
                results[i] = merge?.result ?? -1
            }
        }
    }

    /// For long pieces (SentencePiece text with no pre-tokenizer can be a whole paragraph): a
    /// linked list of symbols and a min-heap of candidate pairs keyed by (rank, position), so each
    /// merge costs O(log n). Entries made stale by earlier merges are skipped when popped.
    func mergeWithQueue(_ symbols: inout [Int32]) {
        let n = symbols.count
        var next = (0..<n).map { Int32($0 + 1) }  // n = none
        var previous = (0..<n).map { Int32($0 - 1) }  // -1 = none
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap()
        func push(_ position: Int32) {
            let right = next[Int(position)]
            guard right < n, let merge = merge(symbols[Int(position)], symbols[Int(right)]) else { return }
            heap.push(UInt64(UInt32(merge.rank)) << 32 | UInt64(UInt32(position)))
        }
        for i in 0..<(n - 1) { push(Int32(i)) }
        while let top = heap.pop() {
            let rank = Int32(truncatingIfNeeded: top >> 32)
            let position = Int(UInt32(truncatingIfNeeded: top))
            let right = Int(next[position])
            guard alive[position], right < n,
                  let merge = merge(symbols[position], symbols[right]), merge.rank == rank else { continue }
            symbols[position] = merge.result
            alive[right] = false
            next[position] = next[right]
            if Int(next[right]) < n { previous[Int(next[right])] = Int32(position) }
            if previous[position] >= 0 { push(previous[position]) }
            push(Int32(position))
        }
        var merged: [Int32] = []
        var position = 0  // the first symbol only ever absorbs its right neighbours
        while position < n {
            merged.append(symbols[position])
            position = Int(next[position])
        }
        symbols = merged
    }
}

/// A binary min-heap of packed (rank, position) keys.
private struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(_ item: UInt64) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                guard left < items.count else { break }
                let right = left + 1
                let smaller = right < items.count && items[right] < items[left] ? right : left
                guard items[smaller] < items[parent] else { break }
                items.swapAt(parent, smaller)
                parent = smaller
            }
        }
        return top
    }
}

/// Encoded pieces by their bytes, shared by all callers of one tokenizer. Cleared when full rather
/// than evicted piece by piece: a simple bound that keeps the common words of any text hot.
private final class PieceCache: @unchecked Sendable {
    private var entries: [[UInt8]: [Int32]] = [:]
    private let lock = NSLock()
    private static let capacity = 20_000

    subscript(piece: ArraySlice<UInt8>) -> [Int32]? {
        get {
            let key = Array(piece)
            lock.lock()
            defer { lock.unlock() }
            return entries[key]
        }
        set {
            let key = Array(piece)
            lock.lock()
            defer { lock.unlock() }
            if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
            entries[key] = newValue
        }
    }
}
