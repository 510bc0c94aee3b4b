import Testing
@testable import ShadowTasks

/// A pool of `count` two-choice items whose texts name their id, so a prompt shows which items it used.
private func pool(_ count: Int) throws -> [MultipleChoiceItem] {
    try (0..<count).map { id in
        try MultipleChoiceItem(id: id, context: "Question: q\(id)\nAnswer:", continuations: [" a\(id)", " b\(id)"], gold: id % 2)
    }
}

@Suite("Few-shot prompts")
struct FewShotTests {
    @Test("joins k shots, each its context and gold continuation, and the query with blank lines")
    func layout() throws {
        let items = try pool(20)
        let query = items[7]
        let shots = FewShot.shots(for: query, count: 5, pool: items, seed: 42)
        #expect(shots.count == 5)
        let expected = shots.map { $0.contexts[$0.gold] + $0.continuations[$0.gold] }.joined(separator: "\n\n")
            + "\n\n" + query.contexts[0]
        #expect(FewShot.contexts(for: query, shots: 5, pool: items, seed: 42) == [expected, expected])
        #expect(expected.components(separatedBy: "\n\n").count == 6)
        #expect(shots[0].gold == 0 ? expected.hasPrefix("Question: q\(shots[0].id)\nAnswer: a\(shots[0].id)\n\n")
                                   : expected.hasPrefix("Question: q\(shots[0].id)\nAnswer: b\(shots[0].id)\n\n"))
    }

    @Test("draws the same shots for the same seed and item, other shots for another seed")
    func deterministic() throws {
        let items = try pool(200)
        let first = FewShot.contexts(for: items[3], shots: 5, pool: items, seed: 1234)
        #expect(FewShot.contexts(for: items[3], shots: 5, pool: items, seed: 1234) == first)
        #expect(FewShot.contexts(for: items[3], shots: 5, pool: items, seed: 1235) != first)
        // Each item has its own draw.
        #expect(FewShot.shots(for: items[4], count: 5, pool: items, seed: 1234).map(\.id)
                != FewShot.shots(for: items[3], count: 5, pool: items, seed: 1234).map(\.id))
        // Pinned, so a change of generator (which would change every calibration set) is noticed.
        #expect(FewShot.shots(for: items[3], count: 5, pool: items, seed: 1234).map(\.id) == [50, 149, 2, 47, 105])
    }

    @Test("never uses the query item or the same item twice", arguments: [1, 5, 9, 10, 25])
    func neverItself(k: Int) throws {
        // A pool of 10: small k takes the sampling path, large k the shuffle path.
        let items = try pool(10)
        for item in items {
            for seed: UInt64 in 0..<20 {
                let ids = FewShot.shots(for: item, count: k, pool: items, seed: seed).map(\.id)
                #expect(!ids.contains(item.id))
                #expect(Set(ids).count == ids.count)
                #expect(ids.count == min(k, 9))
            }
        }
    }

    @Test("matches the query by id, so a copy of it in the pool is not a shot")
    func comparesByID() throws {
        let items = try pool(6)
        let copy = try MultipleChoiceItem(id: 2, context: "other text", continuations: [" x", " y"], gold: 0)
        let ids = FewShot.shots(for: copy, count: 5, pool: items, seed: 7).map(\.id)
        #expect(Set(ids) == [0, 1, 3, 4, 5])
    }

    @Test("leaves the contexts alone for zero shots or a pool of only the item")
    func zeroShots() throws {
        let items = try pool(4)
        #expect(FewShot.contexts(for: items[1], shots: 0, pool: items, seed: 0) == items[1].contexts)
        #expect(FewShot.contexts(for: items[1], shots: 3, pool: [items[1]], seed: 0) == items[1].contexts)
        #expect(FewShot.contexts(for: items[1], shots: 3, pool: [], seed: 0) == items[1].contexts)
    }

    @Test("puts the same shots before each of Winogrande's per-option contexts")
    func winogrande() throws {
        let items = try (0..<8).map { id in
            try MultipleChoiceItem(id: id, contexts: ["A\(id) said", "B\(id) said"],
                               continuations: [" hi.", " hi."], gold: id % 2)
        }
        let contexts = FewShot.contexts(for: items[0], shots: 3, pool: items, seed: 9)
        let shots = FewShot.shots(for: items[0], count: 3, pool: items, seed: 9)
        let prefix = shots.map { ($0.gold == 0 ? "A" : "B") + "\($0.id) said hi." }.joined(separator: "\n\n") + "\n\n"
        #expect(contexts == [prefix + "A0 said", prefix + "B0 said"])
    }

    @Test("costs little per prompt for a large pool")
    func largePool() throws {
        let items = try pool(10_000)
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for item in items.prefix(2000) { _ = FewShot.contexts(for: item, shots: 5, pool: items, seed: 1) }
        }
        #expect(elapsed < .seconds(1) * sanitizerSlowdown, "took \(elapsed)")
    }
}
