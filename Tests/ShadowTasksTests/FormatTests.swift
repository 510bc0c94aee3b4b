import Foundation
import Testing
import ShadowFormats
@testable import ShadowTasks

// Each format from a small file written here, against the prompts lm-evaluation-harness builds
// for the same documents (worked out by hand from its templates, quoted in each reader).

@Suite("PIQA reader")
struct PIQATests {
    let directory: TempDirectory
    let data: String

    init() throws {
        directory = try TempDirectory()
        data = try directory.file("valid.jsonl", """
            {"goal": "Keep a door open", "sol1": "Wedge a shoe under it.", "sol2": "Tie it with a shoelace. "}\r
            {"goal": "dry wet shoes", "sol1": "stuff them with newspaper", "sol2": "put them in the oven", "label": 0}\r

            """)
    }

    @Test("builds lm-eval's Question/Answer context with each solution after a space")
    func template() throws {
        let labels = try directory.file("valid-labels.lst", "1\r\n0\r\n")
        let items = try TaskFile.multipleChoice(task: .piqa, path: data, labels: labels)
        #expect(try items == [
            MultipleChoiceItem(id: 0, context: "Question: Keep a door open\nAnswer:",
                               continuations: [" Wedge a shoe under it.", " Tie it with a shoelace. "], gold: 1),
            MultipleChoiceItem(id: 1, context: "Question: dry wet shoes\nAnswer:",
                               continuations: [" stuff them with newspaper", " put them in the oven"], gold: 0),
        ])
        #expect(items[0].sharedContext == "Question: Keep a door open\nAnswer:")
        // Without a labels file given, the release's valid-labels.lst beside valid.jsonl is read, as the commands do.
        #expect(try TaskFile.multipleChoice(task: .piqa, path: data) == items)
    }

    @Test("takes an inline label when no labels file is given")
    func inlineLabel() throws {
        let path = try directory.file("inline.jsonl", #"{"goal": "g", "sol1": "a", "sol2": "b", "label": "1"}"#)
        #expect(try TaskFile.multipleChoice(task: .piqa, path: path)[0].gold == 1)
        // A labels file that agrees is used; a test split's placeholder label (-1) is not compared with it.
        let agreeing = try directory.file("agreeing-labels.lst", "1\n")
        #expect(try TaskFile.multipleChoice(task: .piqa, path: path, labels: agreeing)[0].gold == 1)
        let test = try directory.file("test.jsonl", #"{"goal": "g", "sol1": "a", "sol2": "b", "label": -1}"#)
        #expect(try TaskFile.multipleChoice(task: .piqa, path: test, labels: agreeing)[0].gold == 1)
    }
}

@Suite("HellaSwag reader")
struct HellaSwagTests {
    @Test("joins label, ctx_a and capitalised ctx_b, and preprocesses context and endings like lm-eval")
    func jsonLines() throws {
        let directory = try TempDirectory()
        let path = try directory.file("hellaswag_val.jsonl", try jsonLinesText([
            ["activity_label": "Removing ice from car",
             "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.",
             "ctx_b": "then",
             "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift.",
                         ", the man puts on a christmas coat.", ", the man continues removing the snow on his car."],
             "label": 3],
            ["activity_label": "Personal Care and Style",
             "ctx_a": "[header] How to dye your hair [title] Buy the dye.",
             "ctx_b": "MIX it  well",
             "endings": ["  [step] Rinse.  ", "Wait [a] b [c", "x   y", "z"],
             "label": "0"],
            ["activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["d", "e", "f", "g"], "label": " 2 "],
        ]))
        let items = try TaskFile.multipleChoice(task: .hellaswag, path: path)
        #expect(try TaskFile.multipleChoice(task: .hellaswag, path: path, asStored: true).map { $0.contexts[0] }.prefix(2) == [
            "Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. then",
            "Personal Care and Style: How to dye your hair. Buy the dye. MIX it well"])
        #expect(try items[0] == MultipleChoiceItem(
            id: 0,
            context: "Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. Then",
            continuations: [" , the man adds wax to the windshield and cuts it.", " , a person board a ski lift.",
                            " , the man puts on a christmas coat.", " , the man continues removing the snow on his car."],
            gold: 3))
        // Python's capitalize() lower-cases the rest ("MIX it" → "Mix it"); " [title]" becomes ". ",
        // other brackets go, and one pass of "  " → " " leaves three spaces as two.
        #expect(try items[1] == MultipleChoiceItem(
            id: 1, context: "Personal Care and Style: How to dye your hair. Buy the dye. Mix it well",
            continuations: ["  Rinse.", " Wait b [c", " x  y", " z"], gold: 0))
        // An index label with white space around it is read as lm-eval's int(label) reads it.
        #expect(items[2].gold == 2)
    }

    @Test("a line with only the joined ctx reads as llama.cpp's line does: ctx_b's capital restored unless as stored")
    func joinedContext() throws {
        let directory = try TempDirectory()
        let path = try directory.file("hellaswag.jsonl", try jsonLinesText([
            ["activity_label": "Roof shingle removal", "ctx": "A man is sitting on a roof. he",
             "endings": ["is using wrap.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing."],
             "label": 3],
        ]))
        let item = try #require(try TaskFile.multipleChoice(task: .hellaswag, path: path).first)
        #expect(item.contexts[0] == "Roof shingle removal: A man is sitting on a roof. He")
        #expect(item.continuations[3] == " starts pulling up roofing." && item.gold == 3)
        #expect(try TaskFile.multipleChoice(task: .hellaswag, path: path, asStored: true)[0].contexts[0]
                == "Roof shingle removal: A man is sitting on a roof. he")
    }

    @Test("reads llama.cpp's six-line text with exactly one space before each ending and ctx_b capitalised")
    func llamaCppText() throws {
        let directory = try TempDirectory()
        let path = try directory.file("hellaswag_val_full.txt", """
            Roof shingle removal: A man is sitting on a roof. he\r
            3\r
            is using wrap to wrap a pair of skis.\r
             is ripping level tiles off.\r
            is holding a rubik's cube.\r
            starts pulling up roofing on a roof.\r
            Home: [header] How to paint [title] Pick a color.
            0
            Buy  paint.
            b
            c
            d

            """)
        let items = try TaskFile.multipleChoice(task: .hellaswag, path: path)
        #expect(try items == [
            MultipleChoiceItem(id: 0, context: "Roof shingle removal: A man is sitting on a roof. He",
                               continuations: [" is using wrap to wrap a pair of skis.", " is ripping level tiles off.",
                                               " is holding a rubik's cube.", " starts pulling up roofing on a roof."],
                               gold: 3),
            MultipleChoiceItem(id: 1, context: "Home: How to paint. Pick a color.",
                               continuations: [" Buy paint.", " b", " c", " d"], gold: 0),
        ])
        let asStored = try TaskFile.multipleChoice(task: .hellaswag, path: path, asStored: true)
        #expect(asStored.map { $0.contexts[0] } == ["Roof shingle removal: A man is sitting on a roof. he", "Home: How to paint. Pick a color."])
        // Blank lines before the first item are padding too; a first line that opens with "[" is still text.
        let padded = try directory.file("padded.txt", "\n \n" + (try String(contentsOfFile: path, encoding: .utf8)))
        #expect(try TaskFile.multipleChoice(task: .hellaswag, path: padded) == items)
        let bracketed = try directory.file("bracketed.txt", "[header] How to paint [title] Pick a color.\n0\na\nb\nc\nd\n")
        #expect(try TaskFile.multipleChoice(task: .hellaswag, path: bracketed).map { $0.contexts[0] } == [" How to paint. Pick a color."])
    }

    // The first items of hellaswag_val.jsonl as released: lm-eval's query from ctx_a and ctx_b,
    // and the same item's line in llama.cpp's text (label: ctx_a ctx_b, ctx_b as written).
    @Test("a llama.cpp line gets the query lm-eval builds from the item's ctx_a and ctx_b",
          arguments: [
            ("Clean and jerk", "A lady walks to a barbell. She bends down and grabs the pole.", "the lady"),
            ("Canoeing", "Two women in a child are shown in a canoe while a man pulls the canoe while standing in the water, with other individuals visible in the background.", "the child and a different man"),
            ("High jump", "The boy lifts his body above the height of a pole. The boy lands on his back on to a red mat.", "the boy"),
            ("Sumo", "A cartoon animation video is shown with people wandering around and rockets being shot.", "two men"),
            ("Sharpening knives", "A man is holding a pocket knife while sitting on some rocks in the wilderness.", "then he"),
            ("Talking", "She says \"stop!\"", "and the Dog"),
            ("Personal Care and Style", "How to dye your hair. Buy the dye.", ""),
          ])
    func restoresCtxB(label: String, ctxA: String, ctxB: String) {
        let line = HellaSwag.preprocess(label + ": " + ctxA + " " + ctxB)
        #expect(HellaSwag.restoringCapitalizedCtxB(line) == HellaSwag.preprocess(label + ": " + ctxA + " " + ctxB.pythonCapitalized))
    }

    @Test("a line whose last part is not a lower-case sentence opening is left as written",
          arguments: [
            "Home: How to paint. pick a color and buy it.",   // a whole sentence: ctx_a of a WikiHow item
            "Saxophone: 1 a guy is playing the saxophone. 2 a guy",
            "Dribbling: \"how to dribble\" overlays the video. \" power dribble",
            "Roofing: a man sits on a roof he",                // no sentence end to find ctx_b after
            "Roofing: A man is on a roof. He",
            "",
          ])
    func leavesOtherLines(line: String) {
        #expect(HellaSwag.restoringCapitalizedCtxB(line) == line)
    }

    @Test("preprocess is idempotent on clean text")
    func idempotent() {
        for text in ["A man sits. He stands.", "Home: How to paint. Pick a color.", "a [b"] {
            #expect(HellaSwag.preprocess(text) == text)
            #expect(HellaSwag.preprocess(HellaSwag.preprocess(" \(text)  ")) == HellaSwag.preprocess(" \(text)  "))
        }
    }
}

@Suite("COPA reader")
struct COPATests {
    static let expected = try! [
        MultipleChoiceItem(id: 0, context: "My body cast a shadow over the grass because",
                           continuations: [" the sun was rising.", " the grass was cut."], gold: 0),
        MultipleChoiceItem(id: 1, context: "The man turned on the faucet therefore",
                           continuations: [" the toilet filled with water.", " water & soap flowed from the spout."], gold: 1),
    ]

    @Test("drops the premise's period, adds because/therefore and lower-cases each choice's first letter")
    func superGLUE() throws {
        let directory = try TempDirectory()
        let path = try directory.file("copa.jsonl", """
            {"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.", "choice2": "The grass was cut.", "question": "cause", "label": 0, "idx": 0}
            {"premise": " The man turned on the faucet. ", "choice1": "The toilet filled with water.", "choice2": "Water & soap flowed from the spout.", "question": "effect", "label": 1, "idx": 1}
            """)
        #expect(try TaskFile.multipleChoice(task: .copa, path: path) == Self.expected)
    }

    @Test("reads the original XML release with entities and attributes in any order")
    func xml() throws {
        let directory = try TempDirectory()
        let path = try directory.file("copa-dev.xml", """
            <?xml version="1.0" encoding="utf-8"?>
            <copa-corpus version="1.0">
              <item id="1" asks-for="cause" most-plausible-alternative="1">
                <p>My body cast a shadow over the grass.</p>
                <a1>The sun was rising.</a1>
                <a2>The grass was cut.</a2>
              </item>
              <item most-plausible-alternative='2' id="2" asks-for="effect"><p>The man turned on the faucet.</p>
                <a1>The toilet filled with water.</a1><a2>Water &amp; soap flowed from the spout.</a2></item>
            </copa-corpus>
            """)
        #expect(try TaskFile.multipleChoice(task: .copa, path: path) == Self.expected)
    }

    @Test("an XML element's CDATA section is text as written; other markup inside an element is refused")
    func xmlCharacterData() throws {
        let directory = try TempDirectory()
        let path = try directory.file("copa-cdata.xml", """
            <copa-corpus>
              <item id="1" asks-for="cause" most-plausible-alternative="1">
                <p><![CDATA[My body cast a shadow over the grass.]]></p>
                <a1>The sun <![CDATA[was]]> rising.</a1>
                <!-- <![CDATA[ in a comment is no section ]]> -->
                <a2>The grass was cut.</a2>
              </item>
            </copa-corpus>
            """)
        #expect(try TaskFile.multipleChoice(task: .copa, path: path) == [Self.expected[0]])
        let markup = try directory.file("copa-markup.xml", """
            <copa-corpus><item id="1" asks-for="cause" most-plausible-alternative="1">
            <p>My body cast a <b>shadow</b>.</p><a1>A.</a1><a2>B.</a2></item></copa-corpus>
            """)
        #expect(throws: ShadowError.self) { try TaskFile.multipleChoice(task: .copa, path: markup) }
    }

    @Test("an XML element's line breaks written CR LF or CR read as LF, as XML parsers read them; a character reference to CR stays")
    func xmlLineBreaks() throws {
        let directory = try TempDirectory()
        let item = "<copa-corpus>\r\n<item id=\"1\" asks-for=\"cause\" most-plausible-alternative=\"1\">\r\n"
            + "<p>My body cast\r\na shadow\rover the grass.</p>\r\n<a1>The sun<![CDATA[\r\n]]>was&#13;rising.</a1>\r\n"
            + "<a2>The grass was cut.</a2>\r\n</item>\r\n</copa-corpus>\r\n"
        let items = try TaskFile.multipleChoice(task: .copa, path: try directory.file("copa-crlf.xml", item))
        #expect(items.first?.contexts == Array(repeating: "My body cast\na shadow\nover the grass because", count: 2), "\(items)")
        #expect(items.first?.continuations.first == " the sun\nwas\rrising.", "\(items)")
    }

    @Test("XML comments are not content: an item commented out is not read, and a comment inside an element is no text; white space may surround \"=\"")
    func xmlComments() throws {
        let directory = try TempDirectory()
        let path = try directory.file("copa-comments.xml", """
            <copa-corpus>
            <!-- removed:
            <item id="9" asks-for="cause" most-plausible-alternative="2"><p>The man fell.</p><a1>He slipped.</a1></item>
            -->
              <item id = "1" asks-for= "cause"
                    most-plausible-alternative ='1'>
                <p>My body cast a shadow over the grass.</p>
                <a1>The sun was <!-- early --><![CDATA[rising.]]></a1>
                <a2>The grass was cut.</a2>
              </item>
            </copa-corpus>
            """)
        #expect(try TaskFile.multipleChoice(task: .copa, path: path) == [Self.expected[0]])
        // "<!--" inside a CDATA section is text.
        let inData = try directory.file("copa-cdata-comment.xml", """
            <copa-corpus><item id="1" asks-for="cause" most-plausible-alternative="1">
            <p>P.</p><a1><![CDATA[The sun <!-- rose]]>.</a1><a2>B.</a2></item></copa-corpus>
            """)
        #expect(try TaskFile.multipleChoice(task: .copa, path: inData)[0].continuations[0] == " the sun <!-- rose.")
        let open = try directory.file("copa-open.xml", "<copa-corpus>\n<!-- never closed\n<item id=\"1\" asks-for=\"cause\" most-plausible-alternative=\"1\"><p>P.</p><a1>A.</a1><a2>B.</a2></item>\n")
        #expect(shadowErrorMessage { try TaskFile.multipleChoice(task: .copa, path: open) } == "\(open):2: comment is not closed by \"-->\"")
    }
}

@Suite("ARC and OpenBookQA reader")
struct AI2Tests {
    @Test("ARC: Question/Answer context, gold found by letter or digit label, AI2 and Hugging Face forms")
    func arc() throws {
        let directory = try TempDirectory()
        let path = try directory.file("ARC-Challenge-Dev.jsonl", """
            {"id": "Mercury_7175875", "question": {"stem": "Which is the most likely effect of this increase in rotation?", "choices": [{"text": "Planetary density will decrease.", "label": "A"}, {"text": "Planetary years will become longer.", "label": "B"}, {"text": "Planetary days will become shorter.", "label": "C"}, {"text": "Planetary gravity will become stronger.", "label": "D"}]}, "answerKey": "C"}
            {"id": "NYSEDREGENTS_2015_4_8", "question": {"stem": "Which is a gas?", "choices": [{"text": "ice", "label": "1"}, {"text": "water", "label": "2"}, {"text": "steam", "label": "3"}]}, "answerKey": "3"}
            {"id": "hf", "question": "Which is heavier?", "choices": {"text": ["a feather", "a brick"], "label": ["A", "B"]}, "answerKey": "B"}
            """)
        for task in [TaskName.arcEasy, .arcChallenge] {
            let items = try TaskFile.multipleChoice(task: task, path: path)
            #expect(try items == [
                MultipleChoiceItem(id: 0, context: "Question: Which is the most likely effect of this increase in rotation?\nAnswer:",
                                   continuations: [" Planetary density will decrease.", " Planetary years will become longer.",
                                                   " Planetary days will become shorter.", " Planetary gravity will become stronger."],
                                   gold: 2),
                MultipleChoiceItem(id: 1, context: "Question: Which is a gas?\nAnswer:",
                                   continuations: [" ice", " water", " steam"], gold: 2),
                MultipleChoiceItem(id: 2, context: "Question: Which is heavier?\nAnswer:",
                                   continuations: [" a feather", " a brick"], gold: 1),
            ])
        }
    }

    @Test("ARC: a five-choice item answers E, numeric labels match, and the older lm-eval query that already holds the template is not wrapped again")
    func arcQueryAndFiveChoices() throws {
        let directory = try TempDirectory()
        let path = try directory.file("arc.jsonl", """
            {"id": "five", "question": {"stem": "Which is a planet?", "choices": [{"text": "Sun", "label": "A"}, {"text": "Moon", "label": "B"}, {"text": "Comet", "label": "C"}, {"text": "Star", "label": "D"}, {"text": "Mars", "label": "E"}]}, "answerKey": "E"}
            {"query": "Question: Which is a gas?\\nAnswer:", "choices": ["ice", "steam"], "gold": 1}
            {"query": "Which is a liquid?", "choices": ["water", "stone"], "gold": 0}
            {"question": {"stem": "Which is a gas?", "choices": [{"text": "ice", "label": 1}, {"text": "steam", "label": 2}]}, "answerKey": 2}
            {"question": "Which is a gas?", "choices": {"text": ["ice", "steam"], "label": [1, 2]}, "answerKey": 2}
            """)
        let items = try TaskFile.multipleChoice(task: .arcEasy, path: path)
        #expect(items[0].gold == 4 && items[0].choiceCount == 5)
        #expect(items[3].gold == 1 && items[4].gold == 1)   // labels and answerKey written as numbers
        #expect(items[1].contexts[0] == "Question: Which is a gas?\nAnswer:")
        #expect(items[2].contexts[0] == "Question: Which is a liquid?\nAnswer:")
        // OpenBookQA's query is its bare stem, used as is.
        #expect(try TaskFile.multipleChoice(task: .openbookqa, path: path)[2].contexts[0] == "Which is a liquid?")
    }

    @Test("OpenBookQA: the bare stem as context, from AI2, Hugging Face and query/choices/gold forms")
    func openBookQA() throws {
        let directory = try TempDirectory()
        let path = try directory.file("dev.jsonl", """
            {"id": "7-980", "question": {"stem": "The sun is responsible for", "choices": [{"text": "puppies learning new tricks", "label": "A"}, {"text": "children growing up and getting old", "label": "B"}, {"text": "flowers wilting in a vase", "label": "C"}, {"text": "plants sprouting, blooming and wilting", "label": "D"}]}, "answerKey": "D"}
            {"id": "7-584", "question_stem": "When food is reduced in the stomach", "choices": {"text": ["the mind needs time to digest", "take a second to digest what I said", "nutrients are being deconstructed", "reader's digest is a body of works"], "label": ["A", "B", "C", "D"]}, "answerKey": " C"}
            {"query": "A magnet will stick to", "choices": ["a belt buckle", "a wooden table", "a plastic cup", "a paper plate"], "gold": 0}
            {"id": "7-981", "question": {"stem": "The sun is responsible for"}, "choices": [{"text": "puppies", "label": "A"}, {"text": "plants", "label": "B"}], "answerKey": "B"}
            """)
        var items = try TaskFile.multipleChoice(task: .openbookqa, path: path)
        // DESIGN §6's layout: the stem in `question`, the choices beside it.
        #expect(try items.popLast() == MultipleChoiceItem(id: 3, context: "The sun is responsible for",
                                                      continuations: [" puppies", " plants"], gold: 1))
        #expect(try items == [
            MultipleChoiceItem(id: 0, context: "The sun is responsible for",
                               continuations: [" puppies learning new tricks", " children growing up and getting old",
                                               " flowers wilting in a vase", " plants sprouting, blooming and wilting"], gold: 3),
            MultipleChoiceItem(id: 1, context: "When food is reduced in the stomach",
                               continuations: [" the mind needs time to digest", " take a second to digest what I said",
                                               " nutrients are being deconstructed", " reader's digest is a body of works"], gold: 2),
            MultipleChoiceItem(id: 2, context: "A magnet will stick to",
                               continuations: [" a belt buckle", " a wooden table", " a plastic cup", " a paper plate"], gold: 0),
        ])
    }
}

@Suite("Winogrande reader")
struct WinograndeTests {
    @Test("gives each option its own context up to the blank and shares the rest as continuation")
    func partialEvaluation() throws {
        let directory = try TempDirectory()
        let path = try directory.file("dev.jsonl", """
            {"qID": "3D5G8J4N5CI2K40F4RZLF9OG2CKVTH-1", "sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.", "option1": "Sarah", "option2": "Maria", "answer": "1"}
            {"sentence": "_ is  here. ", "option1": "The cat", "option2": "The dog", "answer": 2}
            """)
        let items = try TaskFile.multipleChoice(task: .winogrande, path: path)
        #expect(try items == [
            MultipleChoiceItem(id: 0, contexts: ["Sarah was a much better surgeon than Maria so Sarah",
                                                 "Sarah was a much better surgeon than Maria so Maria"],
                               continuations: [" always got the harder cases.", " always got the harder cases."], gold: 0),
            MultipleChoiceItem(id: 1, contexts: ["The cat", "The dog"], continuations: [" is  here.", " is  here."], gold: 1),
        ])
        #expect(items[0].sharedContext == nil)
        let labels = try directory.file("dev-labels.lst", "1\n2\n")
        #expect(try TaskFile.multipleChoice(task: .winogrande, path: path, labels: labels).map(\.gold) == [0, 1])
        // The test split: no answers (or the empty placeholder) in the data, the gold from the labels file.
        let test = try directory.file("test.jsonl", """
            {"sentence": "_ ran.", "option1": "A", "option2": "B"}
            {"sentence": "_ ran.", "option1": "A", "option2": "B", "answer": ""}
            """)
        #expect(try TaskFile.multipleChoice(task: .winogrande, path: test, labels: try directory.file("test-labels.lst", "2\n1\n")).map(\.gold) == [1, 0])
    }
}

@Suite("RTE reader")
struct RTETests {
    static let context = "No Weapons of Mass Destruction Found in Iraq Yet.\nQuestion: Weapons of Mass Destruction Found in Iraq. True or False?\nAnswer:"

    @Test("asks True or False with gold 0 for entailment, from SuperGLUE JSON Lines")
    func superGLUE() throws {
        let directory = try TempDirectory()
        let path = try directory.file("val.jsonl", """
            {"premise": "No Weapons of Mass Destruction Found in Iraq Yet.", "hypothesis": "Weapons of Mass Destruction Found in Iraq.", "label": "not_entailment", "idx": 0}
            {"premise": "A cat sat.", "hypothesis": "A cat exists.", "label": 0, "idx": 1}
            {"sentence1": "A dog ran.", "sentence2": "A dog moved.", "label": "entailment"}
            """)
        let items = try TaskFile.multipleChoice(task: .rte, path: path)
        #expect(try items == [
            MultipleChoiceItem(id: 0, context: Self.context, continuations: [" True", " False"], gold: 1),
            MultipleChoiceItem(id: 1, context: "A cat sat.\nQuestion: A cat exists. True or False?\nAnswer:",
                               continuations: [" True", " False"], gold: 0),
            MultipleChoiceItem(id: 2, context: "A dog ran.\nQuestion: A dog moved. True or False?\nAnswer:",
                               continuations: [" True", " False"], gold: 0),
        ])
    }

    @Test("reads GLUE's tab-separated dev file by its header")
    func glueTSV() throws {
        let directory = try TempDirectory()
        let path = try directory.file("dev.tsv", "index\tsentence1\tsentence2\tlabel\r\n"
            + "0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons of Mass Destruction Found in Iraq.\tnot_entailment\r\n"
            + "1\tA cat sat.\tA cat exists.\tentailment\r\n")
        let items = try TaskFile.multipleChoice(task: .rte, path: path)
        #expect(items.map(\.gold) == [1, 0])
        #expect(items[0].contexts[0] == Self.context)
        #expect(items[1].id == 1)
    }

    @Test("drops the CSV quoting of a pandas export but keeps GLUE's bare quotes verbatim")
    func csvQuotedTSV() throws {
        let directory = try TempDirectory()
        // As `datasets`' glue/rte exported by pandas: 0 = entailment, quoted fields.
        let exported = try directory.file("exported.tsv", "sentence1\tsentence2\tlabel\tidx\n"
            + "\"He was known as \"\"Dr. Death\"\".\"\tA man had a nickname.\t0\t0\n"
            + "A cat sat.\t\"\"\"Cats\"\" sit.\"\t1\t1\n")
        let items = try TaskFile.multipleChoice(task: .rte, path: exported)
        #expect(items.map(\.contexts[0]) == [
            "He was known as \"Dr. Death\".\nQuestion: A man had a nickname. True or False?\nAnswer:",
            "A cat sat.\nQuestion: \"Cats\" sit. True or False?\nAnswer:",
        ])
        #expect(items.map(\.gold) == [0, 1])

        // GLUE's own file: a field opening with a quote that is part of the text.
        let glue = try directory.file("dev.tsv", "index\tsentence1\tsentence2\tlabel\n"
            + "0\t\"Fairytale of New York\" does not contain \"bad words\"\tA song.\tentailment\n"
            + "1\t\"Hello.\"\tA greeting.\tnot_entailment\n")
        #expect(try TaskFile.multipleChoice(task: .rte, path: glue).map(\.contexts[0]) == [
            "\"Fairytale of New York\" does not contain \"bad words\"\nQuestion: A song. True or False?\nAnswer:",
            "\"Hello.\"\nQuestion: A greeting. True or False?\nAnswer:",
        ])
    }
}

@Suite("BoolQ reader")
struct BoolQTests {
    @Test("adds a question mark and answers no/yes with gold 1 for true")
    func template() throws {
        let directory = try TempDirectory()
        let path = try directory.file("val.jsonl", """
            {"question": "do iran and afghanistan speak the same language", "passage": "Persian language -- Persian is spoken in Iran and Afghanistan.", "label": true}
            {"question": "is the sky green", "passage": "The sky is blue.", "answer": false, "title": "Sky"}
            {"question": "q", "passage": "p", "label": 1}
            """)
        let items = try TaskFile.multipleChoice(task: .boolq, path: path)
        #expect(try items[0] == MultipleChoiceItem(
            id: 0,
            context: "Persian language -- Persian is spoken in Iran and Afghanistan.\nQuestion: do iran and afghanistan speak the same language?\nAnswer:",
            continuations: [" no", " yes"], gold: 1))
        #expect(items.map(\.gold) == [1, 0, 1])
    }

    @Test("puts the title of Google's release back in front of its passage, as SuperGLUE's passages read")
    func googleRelease() throws {
        let directory = try TempDirectory()
        let path = try directory.file("dev.jsonl", """
            {"question": "does ethanol take more energy make that produces", "title": "Ethanol fuel", "answer": false, "passage": "All biomass goes through at least some of these steps."}
            """)
        let items = try TaskFile.multipleChoice(task: .boolq, path: path)
        #expect(try items == [MultipleChoiceItem(
            id: 0,
            context: "Ethanol fuel -- All biomass goes through at least some of these steps.\nQuestion: does ethanol take more energy make that produces?\nAnswer:",
            continuations: [" no", " yes"], gold: 0)])
        // A passage that already opens with its title, an empty title or a null one: nothing is added.
        let others = try directory.file("others.jsonl", """
            {"question": "q", "title": "T", "answer": true, "passage": "T -- p."}
            {"question": "q", "title": "", "answer": true, "passage": "p."}
            {"question": "q", "title": null, "answer": true, "passage": "p."}
            """)
        #expect(try TaskFile.multipleChoice(task: .boolq, path: others).map(\.contexts[0])
                == ["T -- p.\nQuestion: q?\nAnswer:", "p.\nQuestion: q?\nAnswer:", "p.\nQuestion: q?\nAnswer:"])
    }
}

@Suite("LAMBADA and WikiText readers")
struct TextTaskTests {
    @Test("splits LAMBADA at the last space, the target keeping its space")
    func lambada() throws {
        let directory = try TempDirectory()
        let path = try directory.file("lambada_test.jsonl", """
            {"text": "his mouth curved in a confident grin , i do n't care about signs"}
            {"text": "she said\\n\\n\\" come with me , \\" and took the lead.  Then  Jack"}
            """)
        let pairs = try TaskFile.lambada(path: path)
        #expect(pairs.count == 2)
        #expect(pairs[0].context == "his mouth curved in a confident grin , i do n't care about")
        #expect(pairs[0].target == " signs")
        #expect(pairs[1].context == "she said\n\n\" come with me , \" and took the lead.  Then ")
        #expect(pairs[1].target == " Jack")
        // lm-eval's split on " " keeps an empty last word: the target is a lone space.
        let trailing = try directory.file("trailing.jsonl", #"{"text": "a b "}"# + "\n" + #"{"text": "a b  "}"#)
        #expect(try TaskFile.lambada(path: trailing).map { [$0.context, $0.target] } == [["a b", " "], ["a b ", " "]])
    }

    @Test("reads LAMBADA's plain-text release as one passage per line")
    func lambadaPlainText() throws {
        let directory = try TempDirectory()
        let path = try directory.file("lambada_test_plain_text.txt",
                                      "\u{FEFF}i do n't care about signs\r\n\r\nshe took the lead . then jack \t\n")
        let pairs = try TaskFile.lambada(path: path)
        #expect(pairs.map(\.context) == ["i do n't care about", "she took the lead . then"])
        #expect(pairs.map(\.target) == [" signs", " jack"])
        // A passage of one word is all target, after an empty context (lm-eval's split).
        let oneWord = try directory.file("one-word.txt", "a b\nword\n")
        #expect(try TaskFile.lambada(path: oneWord).map { [$0.context, $0.target] } == [["a", " b"], ["", " word"]])
        // Passages that start like markup or a heading, but are neither XML nor WikiText, are read.
        let odd = try directory.file("odd-starts.txt", "<3 she said to him\n= and so it went on\n")
        #expect(try TaskFile.lambada(path: odd).map(\.target) == [" him", " on"])
    }

    @Test("detokenizes WikiText the way lm-eval's wikitext_detokenizer does, step by step")
    func wikitextDetokenizer() {
        // Worked by hand from preprocess_wikitext.py's rules, in their order.
        let cases: [(String, String)] = [
            (" = Robert <unk> = \n", " = Robert <unk> =\n"),
            (" = = Career = = \n\n Text", " == Career ==\n\nText"),
            (" = = = 2000 – 2005 = = = \n", " === 2000 – 2005 ===\n"),
            ("a guest @-@ starring role , in 2 @,@ 000 and 1 @.@ 5 .", "a guest-starring role, in 2,000 and 1.5 ."),
            ("Teddy 's Story ; the players ' union : yes ! why ? ", "Teddy's Story; the players' union: yes! why? "),
            ("as \" Craig \" in ( the episode ) [ 1 ] { x }", "as \"Craig\" in (the episode) [1] {x}"),
            ("( a ( b ) c )", "(a ( b) c )"),
            ("an open ( bracket", "an open ( bracket"),
            ("it was 20 ° C , N of here", "it was 20°C, 1 of here"),
            ("/' 5/", "/'[0-9]/"),
        ]
        for (raw, expected) in cases {
            #expect(TaskFile.wikitextDetokenized(raw) == expected, "\(raw)")
        }
    }

    @Test("counts WikiText words as lm-eval's re.split on white space, empty ends included")
    func wikitextWords() {
        #expect(TaskFile.wikitextWordCount("a b") == 2)
        #expect(TaskFile.wikitextWordCount(" = Robert = \n \n Robert is an actor . \n") == 10)
        #expect(TaskFile.wikitextWordCount("") == 1)
        #expect(TaskFile.wikitextWordCount("a\u{A0}\u{2003}b") == 2)
    }

    @Test("splits WikiText into articles at level-1 headings, as lm-eval's document-level WikiText does")
    func wikitextPages() throws {
        // Worked by hand from the rule: a line that is "= Title =" once "= = =" / "= =" close up and
        // white space is stripped starts a page; a blank page before the first title is dropped.
        #expect(TaskFile.wikitextPages(" \n = A = \n \n x y . \n = = B = = \n z \n = C = \n w")
                == [" = A = \n \n x y . \n = = B = = \n z ", " = C = \n w"])
        #expect(TaskFile.wikitextPages("\n\n = A = \r\n text \n =  = \n = B=\n= C =\n")
                == [" = A = \r\n text ", " =  = \n = B=", "= C =\n"])
        #expect(TaskFile.wikitextPages("no heading here\n = = Section = = \n") == ["no heading here\n = = Section = = \n"])
        #expect(TaskFile.wikitextPages("intro\n = A = \n") == ["intro", " = A = \n"])
    }

    @Test("returns WikiText as stored, but for a byte-order mark and Windows line breaks")
    func wikitext() throws {
        let directory = try TempDirectory()
        let text = " \n = Robert <unk> = \n \n Robert <unk> is an English film , television and \r theatre actor .\n"
        let path = try directory.file("test.txt", text)
        #expect(try TaskFile.wikitext(path: path) == text)
        // A lone "\r" is text; one that ends a line is the file's, as in Python's text mode.
        let windows = try directory.file("windows.txt", "\u{FEFF}" + text.replacingOccurrences(of: "\n", with: "\r\n"))
        #expect(try TaskFile.wikitext(path: windows) == text)
    }
}

@Suite("JSON Lines reader")
struct JSONLinesTests {
    @Test("decodes escapes, surrogate pairs and non-ASCII text, and skips blank lines without renumbering")
    func escapes() throws {
        let directory = try TempDirectory()
        let path = try directory.file("piqa.jsonl", """
            \u{FEFF}{"goal": "caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/ \\t", "sol1": "naïve", "sol2": "日本"}

            {"goal": "g", "sol1": "a", "sol2": "b", "label": 0, "extra": [1.5e3, -0.25, null, {"x": [true]}]}
            """)
        let items = try TaskFile.multipleChoice(task: .piqa, path: path, labels: try directory.file("l", "0\n0\n"))
        #expect(items[0].contexts[0] == "Question: café 😀 \"q\" \\ / \t\nAnswer:")
        #expect(items[0].continuations == [" naïve", " 日本"])
        #expect(items[1].id == 1)
    }

    @Test("reads 10,000 lines in well under a second")
    func fast() throws {
        let directory = try TempDirectory()
        let line = #"{"goal": "How do I ready a guinea pig cage for its new occupants?", "sol1": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you will also need to supply it with a water bottle and a food dish.", "sol2": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, you will also need to supply it with a water bottle and a food dish.", "label": 1}"#
        let path = try directory.file("big.jsonl", Array(repeating: line, count: 10_000).joined(separator: "\n"))
        let clock = ContinuousClock()
        var items: [MultipleChoiceItem] = []
        let elapsed = try clock.measure { items = try TaskFile.multipleChoice(task: .piqa, path: path) }
        #expect(items.count == 10_000)
        #expect(elapsed < .seconds(1) * sanitizerSlowdown, "took \(elapsed)")
    }
}

@Suite("Python string rules")
struct PythonTextTests {
    @Test("capitalize lower-cases the rest; strip, replace and bracket removal match Python")
    func rules() throws {
        #expect("hELLO World".pythonCapitalized == "Hello world")
        #expect("".pythonCapitalized == "")
        // Python's final sigma (checked against CPython 3.11's str.capitalize).
        #expect("THE SIGN READS ΟΔΟΣ ΕΡΜΟΥ AND".pythonCapitalized == "The sign reads οδος ερμου and")
        #expect("ΣΑΣ".pythonCapitalized == "Σας")
        #expect("ΑΣΑ".pythonCapitalized == "Ασα")
        #expect("Α Σ".pythonCapitalized == "Α σ")
        #expect("ΑΣ'Β".pythonCapitalized == "Ασ'β")
        #expect("ΑΣ.'".pythonCapitalized == "Ας.'")
        #expect("xΣ\u{301}".pythonCapitalized == "Xς\u{301}")
        #expect("ΣΣ".pythonCapitalized == "Σς")
        #expect("The Sun".lowercasingFirst == "the Sun")
        #expect("\u{A0} a b \n".pythonStripped == "a b")
        #expect("\u{A0} a b \n\u{2003}".pythonRightStripped == "\u{A0} a b" && " \t".pythonRightStripped == "")
        #expect("   ".pythonReplacing("  ", with: " ") == "  ")
        #expect("a [x] b [y".removingBracketedText == "a  b [y")
        #expect("a [x\n] b".removingBracketedText == "a [x\n] b")
        #expect("[a [b] c]".removingBracketedText == " c]")
    }
}

@Suite("Multiple-choice items")
struct MultipleChoiceItemTests {
    @Test("round-trips through JSON and refuses a gold index past its choices")
    func codable() throws {
        let item = try MultipleChoiceItem(id: 4, contexts: ["a", "b"], continuations: [" x", " x"], gold: 1)
        let data = try JSONEncoder().encode(item)
        #expect(try JSONDecoder().decode(MultipleChoiceItem.self, from: data) == item)
        let bad = #"{"id": 0, "contexts": ["a"], "continuations": [" x"], "gold": 1}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(MultipleChoiceItem.self, from: Data(bad.utf8)) }
        let uneven = #"{"id": 0, "contexts": ["a"], "continuations": [" x", " y"], "gold": 0}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(MultipleChoiceItem.self, from: Data(uneven.utf8)) }
    }

    @Test("refuses, with an error naming the item, a gold index past its choices or uneven contexts")
    func refusesInconsistentItems() {
        let past = #expect(throws: ShadowError.self) {
            try MultipleChoiceItem(id: 7, context: "c", continuations: [" a", " b"], gold: 2)
        }
        #expect(past?.description == "item 7: gold index 2 is not one of its 2 choices")
        let uneven = #expect(throws: ShadowError.self) {
            try MultipleChoiceItem(id: 3, contexts: ["c"], continuations: [" a", " b"], gold: 0)
        }
        #expect(uneven?.description.hasPrefix("item 3: has 1 context for 2 continuations") == true)
        #expect(throws: ShadowError.invalidArgument(name: "item 0", reason: "has no choices")) {
            try MultipleChoiceItem(id: 0, context: "c", continuations: [], gold: 0)
        }
        #expect(throws: ShadowError.self) { try MultipleChoiceItem(id: 0, context: "c", continuations: [" a"], gold: -1) }
    }

    @Test("shares its context only when every choice has the same one")
    func sharedContext() throws {
        #expect(try MultipleChoiceItem(id: 0, context: "c", continuations: [" a", " b"], gold: 0).sharedContext == "c")
        #expect(try MultipleChoiceItem(id: 0, contexts: ["c", "d"], continuations: [" a", " a"], gold: 0).sharedContext == nil)
        #expect(try MultipleChoiceItem(id: 0, contexts: ["c", "d"], continuations: [" a", " b"], gold: 1).goldText == "d b")
    }

    @Test("lists the eleven tasks under lm-eval's names")
    func names() {
        #expect(TaskName.allCases.map(\.rawValue) == ["piqa", "hellaswag", "copa", "arc_easy", "arc_challenge", "openbookqa",
                                                      "winogrande", "rte", "boolq", "lambada", "wikitext"])
        #expect(TaskName.allCases.filter { !$0.isMultipleChoice } == [.lambada, .wikitext])
        #expect(TaskName(rawValue: "arc_easy") == .arcEasy)
    }
}
