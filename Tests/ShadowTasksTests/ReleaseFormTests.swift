import Testing
@testable import ShadowTasks

// Forms the releases really ship that FormatTests does not already cover, each against the strings
// lm-evaluation-harness builds for the same document (worked out by hand from its task files:
// hellaswag/utils.py, super_glue/copa/utils.py, arc_easy.yaml, super_glue/rte/default.yaml).

@Suite("Release forms")
struct ReleaseFormTests {
    @Test("HellaSwag: a WikiHow item with an empty ctx_b loses the trailing space and its markup as lm-eval's preprocess does")
    func hellaSwagWikiHow() throws {
        let directory = try TempDirectory()
        let path = try directory.file("hellaswag_val.jsonl", try jsonLinesText([
            ["ind": 4, "activity_label": "Home and Garden", "split": "val", "split_type": "indomain", "source_id": "wikihow~1",
             "ctx_a": "[header] How to grow tomatoes [title] Pick a sunny spot. [step] Tomatoes need six hours of sun.",
             "ctx_b": "",
             "ctx": "[header] How to grow tomatoes [title] Pick a sunny spot. [step] Tomatoes need six hours of sun.",
             "endings": ["[substeps] Water them daily.", "Plant them in a closet [title] Keep the door shut.",
                         " Buy seeds.", "Give up"],
             "label": 1],
        ]))
        // query = preprocess(label + ": " + ctx_a + " " + ""): strip, " [title]" → ". ", brackets
        // out, one pass of "  " → " ". An ending whose markup opened it keeps the space after it,
        // so its request starts with two spaces (lm-eval's delimiter, then the choice's own).
        #expect(try TaskFile.multipleChoice(task: .hellaswag, path: path) == [
            MultipleChoiceItem(id: 0, context: "Home and Garden: How to grow tomatoes. Pick a sunny spot. Tomatoes need six hours of sun.",
                               continuations: ["  Water them daily.", " Plant them in a closet. Keep the door shut.",
                                               " Buy seeds.", " Give up"],
                               gold: 1),
        ])
    }

    @Test("COPA: the XML release with its DOCTYPE line and tab indents reads like the SuperGLUE form")
    func copaXMLRelease() throws {
        let directory = try TempDirectory()
        let path = try directory.file("copa-dev.xml", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            + "<!DOCTYPE copa-corpus SYSTEM \"copa.dtd\">\n<copa-corpus version=\"1.0\">\n"
            + "\t<item id=\"1\" asks-for=\"cause\" most-plausible-alternative=\"1\">\n"
            + "\t\t<p>My body cast a shadow over the grass.</p>\n\t\t<a1>The sun was rising.</a1>\n"
            + "\t\t<a2>The grass was cut.</a2>\n\t</item>\n</copa-corpus>\n")
        #expect(try TaskFile.multipleChoice(task: .copa, path: path) == [COPATests.expected[0]])
    }

    @Test("ARC: Hugging Face's form with digit labels finds the gold by its digit answerKey")
    func arcDigitLabels() throws {
        let directory = try TempDirectory()
        let path = try directory.file("arc_challenge_test.jsonl", """
            {"id": "NYSEDREGENTS_2008_8_14", "question": "Which object is the best conductor of electricity?", "choices": {"text": ["a wax crayon", "a plastic spoon", "a rubber eraser", "an iron nail"], "label": ["1", "2", "3", "4"]}, "answerKey": "4"}
            """)
        #expect(try TaskFile.multipleChoice(task: .arcChallenge, path: path) == [
            MultipleChoiceItem(id: 0, context: "Question: Which object is the best conductor of electricity?\nAnswer:",
                               continuations: [" a wax crayon", " a plastic spoon", " a rubber eraser", " an iron nail"], gold: 3),
        ])
    }

    @Test("RTE: lm-eval's SuperGLUE task name sglue_rte reads as rte")
    func superGLUEName() {
        #expect(TaskName(name: "sglue_rte") == .rte)
        #expect(TaskName(name: "rte") == .rte)
        #expect(TaskName(rawValue: "sglue_rte") == nil)
    }
}
