import ShadowFormats

/// k-shot prompts in lm-evaluation-harness's layout: each shot is its context followed by its gold
/// continuation (`doc_to_text + target_delimiter + gold choice`), shots and the query joined by
/// `fewshot_delimiter` "\n\n". lm-eval draws shots with Python's `random.Random(1234).sample`,
/// dropping the query if drawn; we cannot reproduce Python's generator bit for bit, so we draw
/// with our own seeded one, keeping what matters: the same seed gives the same shots, and an item
/// is never its own example.
public enum FewShot {
    /// lm-eval's default `fewshot_delimiter`.
    public static let separator = "\n\n"

    /// The full context of each choice of `item` after `k` shots drawn from `pool` (Winogrande:
    /// one per option). With `k == 0`, or a pool holding nothing but the item, the item's own
    /// contexts. When the pool holds fewer than `k` other items, all of them are used.
    public static func contexts(for item: MultipleChoiceItem, shots k: Int, pool: [MultipleChoiceItem],
                                seed: UInt64) -> [String] {
        let examples = shots(for: item, count: k, pool: pool, seed: seed)
        if examples.isEmpty { return item.contexts }
        let prefix = examples.map(\.goldText).joined(separator: separator) + separator
        return item.contexts.map { prefix + $0 }
    }

    /// The shots `contexts(for:shots:pool:seed:)` uses, in prompt order: distinct pool entries,
    /// none with the item's id. The generator is seeded with `seed` and the item's id, so every
    /// item gets its own draw and the draw does not depend on which items were asked for before.
    public static func shots(for item: MultipleChoiceItem, count k: Int, pool: [MultipleChoiceItem],
                             seed: UInt64) -> [MultipleChoiceItem] {
        guard k > 0, !pool.isEmpty else { return [] }
        var generator = SplitMix64(seed: seed ^ SplitMix64.finalize(UInt64(bitPattern: Int64(item.id)) &+ SplitMix64.golden))
        // Rejection sampling costs O(k) per prompt, which matters when a 10k-item pool yields 10k
        // prompts; it only runs while k is well below the pool size, and a bounded number of
        // draws keeps a pool full of the item's own id from looping.
        if 4 * k <= pool.count {
            var chosen: [Int] = [], seen: Set<Int> = []
            var draws = 0
            while chosen.count < k, draws < 16 * k + 64 {
                draws += 1
                let index = generator.next(below: pool.count)
                if pool[index].id == item.id || !seen.insert(index).inserted { continue }
                chosen.append(index)
            }
            if chosen.count == k { return chosen.map { pool[$0] } }
        }
        // Otherwise a partial Fisher–Yates shuffle of the eligible entries.
        var eligible = pool.indices.filter { pool[$0].id != item.id }
        let count = min(k, eligible.count)
        for position in 0..<count {
            let pick = position + generator.next(below: eligible.count - position)
            eligible.swapAt(position, pick)
        }
        return eligible.prefix(count).map { pool[$0] }
    }
}
