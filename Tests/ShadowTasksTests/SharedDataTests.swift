import Foundation
import Testing
@testable import ShadowTasks

// The real validation files in ../shared/data (see its README). A user's checkout has no such
// folder, so these tests skip, saying why, when it is absent.

private let piqa = sharedDataPath("piqa/valid.jsonl")
private let piqaLabels = sharedDataPath("piqa/valid-labels.lst")
private let hellaswag = sharedDataPath("hellaswag/hellaswag_val_full.txt")
private let wikitext = sharedDataPath("wikitext-2/test.txt")

@Suite("Shared evaluation data")
struct SharedDataTests {
    @Test("reads all 1838 PIQA validation items with their labels",
          .enabled(if: piqa != nil && piqaLabels != nil, "../shared/data/piqa is absent; skipping the real PIQA file"))
    func piqaValidation() throws {
        let items = try TaskFile.multipleChoice(task: .piqa, path: piqa!, labels: piqaLabels!)
        #expect(items.count == 1838)
        #expect(try items[0] == MultipleChoiceItem(
            id: 0, context: "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
            continuations: [
                " Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you will also need to supply it with a water bottle and a food dish.",
                " Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, you will also need to supply it with a water bottle and a food dish.",
            ],
            gold: 0))
        // Item 1's second solution keeps its double space and trailing space, as lm-eval does.
        #expect(items[1].continuations == [" replace drawer with bobby pin ", " finish, woodgrain with  bobby pin "])
        #expect(items[1].gold == 1)
        #expect(items.last?.id == 1837)
    }

    @Test("reads all 10042 HellaSwag validation items from llama.cpp's text",
          .enabled(if: hellaswag != nil, "../shared/data/hellaswag is absent; skipping the real HellaSwag file"))
    func hellaswagValidation() throws {
        let clock = ContinuousClock()
        var items: [MultipleChoiceItem] = []
        let elapsed = try clock.measure { items = try TaskFile.multipleChoice(task: .hellaswag, path: hellaswag!) }
        #expect(items.count == 10042)
        #expect(try items[0] == MultipleChoiceItem(
            id: 0, context: "Roof shingle removal: A man is sitting on a roof. He",
            continuations: [" is using wrap to wrap a pair of skis.", " is ripping level tiles off.",
                            " is holding a rubik's cube.", " starts pulling up roofing on a roof."],
            gold: 3))
        #expect(items.allSatisfy { $0.choiceCount == 4 && $0.sharedContext != nil })
        #expect(items.allSatisfy { item in item.continuations.allSatisfy { $0.hasPrefix(" ") && !$0.hasPrefix("  ") } })
        #expect(Dictionary(grouping: items, by: \.gold).mapValues(\.count) == [0: 2515, 1: 2485, 2: 2584, 3: 2458])
        #expect(elapsed < .seconds(5) * sanitizerSlowdown, "took \(elapsed)")
        // ctx_b capitalised: the 3,236 ActivityNet items whose line ends in a lower-case sentence
        // opening ("… on a roof. he"), by exactly that one letter.
        let stored = try TaskFile.multipleChoice(task: .hellaswag, path: hellaswag!, asStored: true)
        let changed = zip(items, stored).filter { $0.0 != $0.1 }
        #expect(changed.count == 3236)
        #expect(changed.allSatisfy { new, old in
            zip(new.contexts[0].unicodeScalars, old.contexts[0].unicodeScalars).filter { $0 != $1 }.count == 1
                && new.contexts[0].lowercased() == old.contexts[0].lowercased() && new.continuations == old.continuations
        })
    }

    @Test("reads WikiText-2 test text unchanged",
          .enabled(if: wikitext != nil, "../shared/data/wikitext-2 is absent; skipping the real WikiText file"))
    func wikitextTest() throws {
        let text = try TaskFile.wikitext(path: wikitext!)
        #expect(text.utf8.count == 1_256_449)
        #expect(text.hasPrefix(" \n = Robert <unk> = \n"))
        // Pinned from lm-eval's rules run in Python on this file: len(re.split(r"\s+", text)) and
        // the detokenized text's UTF-8 length and FNV-1a 64 hash.
        #expect(TaskFile.wikitextWordCount(text) == 241_213)
        let detokenized = Array(TaskFile.wikitextDetokenized(text).utf8)
        #expect(detokenized.count == 1_206_463)
        #expect(detokenized.reduce(0xcbf2_9ce4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 } == 0x4848_9650_00ee_78a0)
        // lm-eval scores it as 62 articles (EleutherAI's document-level split, run in Python):
        // words and bytes summed page by page.
        let pages = TaskFile.wikitextPages(text)
        #expect(pages.count == 62)
        #expect(pages.reduce(0) { $0 + TaskFile.wikitextWordCount($1) } == 241_335)
        #expect(pages.reduce(0) { $0 + $1.utf8.count } == 1_256_386)
        #expect(pages[1].hasPrefix(" = Du Fu = \n"))
    }
}
