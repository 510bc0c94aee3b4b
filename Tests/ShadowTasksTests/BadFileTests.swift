import Foundation
import Testing
import ShadowFormats
@testable import ShadowTasks

/// A broken task file and the one-line error it must give (paths relative to the test's directory).
struct BadFile: CustomTestStringConvertible, Sendable {
    let what: String
    let task: TaskName
    let data: [UInt8]
    var labels: String? = nil
    let message: String

    init(_ what: String, _ task: TaskName, _ data: String, labels: String? = nil, _ message: String) {
        self.init(what, task, Array(data.utf8), labels: labels, message)
    }

    init(_ what: String, _ task: TaskName, _ data: [UInt8], labels: String? = nil, _ message: String) {
        self.what = what
        self.task = task
        self.data = data
        self.labels = labels
        self.message = message
    }

    var testDescription: String { what }

    /// The file name the data is written under, with the extension its format has.
    var fileName: String {
        switch task {
        case .hellaswag where data.first != UInt8(ascii: "{") && data.first != UInt8(ascii: "\""): return "hellaswag.txt"
        case .copa where data.first == UInt8(ascii: "<"): return "copa.xml"
        case .rte where data.first != UInt8(ascii: "{"): return "rte.tsv"
        case .wikitext: return "wiki.txt"
        default: return "\(task.rawValue).jsonl"
        }
    }
}

private let piqaItems = """
    {"goal": "g0", "sol1": "a", "sol2": "b"}
    {"goal": "g1", "sol1": "a", "sol2": "b"}
    """
private let hellaswagItem = "ctx\n1\na\nb\nc\nd\n"
private let copaItem = #"<item id="1" asks-for="cause" most-plausible-alternative="1"><p>P.</p><a1>A.</a1><a2>B.</a2></item>"#

private let badFiles: [BadFile] = [
    // Shared by every JSON Lines reader.
    BadFile("an empty file", .piqa, "", "piqa.jsonl: no items (the file is empty)"),
    BadFile("a file of blank lines", .boolq, "\n  \r\n\n", "boolq.jsonl: no items (the file is empty)"),
    BadFile("a line missing a comma", .piqa, "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n{\"goal\": \"g\" \"sol1\": \"a\"}",
            "piqa.jsonl:2: malformed JSON at column 14: expected \",\" or \"}\""),
    BadFile("a line cut short", .piqa, "{\"goal\": \"g\", \"sol1\": ", "piqa.jsonl:1: malformed JSON at column 23: unexpected end of input"),
    BadFile("an unterminated string", .piqa, "{\"goal\": \"g", "piqa.jsonl:1: malformed JSON at column 12: unterminated string"),
    BadFile("text after the object", .piqa, "{\"goal\": \"g\"} x", "piqa.jsonl:1: malformed JSON at column 15: unexpected text after the JSON value"),
    BadFile("a raw tab inside a string", .piqa, "{\"goal\": \"a\tb\"}", "piqa.jsonl:1: malformed JSON at column 12: control character in a string"),
    BadFile("nesting 300 levels deep", .piqa, String(repeating: "[", count: 300) + String(repeating: "]", count: 300),
            "piqa.jsonl:1: malformed JSON at column 257: nested more than 256 levels deep (expected JSON Lines: one JSON object per line)"),
    BadFile("a line that is an array", .piqa, "[1, 2]\n{\"goal\": \"g\"}", "piqa.jsonl:1: expected a JSON object, found an array"),
    BadFile("one JSON array on one line (json.dump, pandas' orient=\"records\")", .piqa, "[{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}]",
            "piqa.jsonl: is one JSON array; expected JSON Lines, one JSON object per line (jq -c '.[]' converts it)"),
    BadFile("a line that is not UTF-8", .piqa, Array("{\"goal\": \"".utf8) + [0xFF] + Array("\"}".utf8),
            "piqa.jsonl:1: malformed JSON at column 13: string is not valid UTF-8"),
    BadFile("a missing key", .piqa, "{\"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}", "piqa.jsonl:1: key \"goal\": missing"),
    BadFile("a key of the wrong type", .piqa, "{\"goal\": \"g\", \"sol1\": 3, \"sol2\": \"b\", \"label\": 0}",
            "piqa.jsonl:1: key \"sol1\": expected a string, found a number"),

    // PIQA and Winogrande labels.
    BadFile("PIQA without any label", .piqa, piqaItems, "piqa.jsonl:1: key \"label\": missing (and no labels file: give --labels, or put NAME-labels.lst beside NAME.jsonl)"),
    BadFile("a PIQA label out of range", .piqa, "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 2}",
            "piqa.jsonl:1: key \"label\": \"2\" is not one of \"0\", \"1\""),
    BadFile("a fractional PIQA label", .piqa, "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0.5}",
            "piqa.jsonl:1: key \"label\": \"0.5\" is not one of \"0\", \"1\""),
    BadFile("a labels file one short", .piqa, piqaItems, labels: "0\n",
            "labels.lst:2: no label for item 1: 1 labels for 2 items in piqa.jsonl"),
    BadFile("a labels file one long", .piqa, piqaItems, labels: "0\r\n1\r\n0\r\n",
            "labels.lst:3: label for item 2, but piqa.jsonl has only 2 items"),
    BadFile("a labels file with a bad label", .piqa, piqaItems, labels: "0\nyes\n",
            "labels.lst:2: label \"yes\" is not one of \"0\", \"1\""),
    BadFile("a labels file whose lines end in CR alone, its CR shown escaped", .piqa, piqaItems, labels: "0\r1\r",
            "labels.lst:1: label \"0\\r1\" is not one of \"0\", \"1\""),
    BadFile("a data file given as the labels file", .piqa, piqaItems,
            labels: "{\"goal\": \"When boiling butter, when it's ready, you can\", \"sol1\": \"a\", \"sol2\": \"b\"}\n",
            "labels.lst:1: label \"{\"goal\": \"When boiling butter, when it's…\" is not one of \"0\", \"1\" (a JSON line: is this the data file rather than its labels?)"),
    BadFile("a labels file that contradicts the data's own labels", .piqa,
            "{\"goal\": \"g0\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n{\"goal\": \"g1\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 1}",
            labels: "0\n0\n", "piqa.jsonl:2: key \"label\": is \"1\", but labels.lst gives \"0\" for item 1: labels of another split?"),
    BadFile("a Winogrande labels file that contradicts an answer", .winogrande,
            "{\"sentence\": \"_ ran.\", \"option1\": \"A\", \"option2\": \"B\", \"answer\": \"2\"}", labels: "1\n",
            "winogrande.jsonl:1: key \"answer\": is \"2\", but labels.lst gives \"1\" for item 0: labels of another split?"),
    BadFile("PIQA's data and labels read as Winogrande: the data is named, not its labels", .winogrande,
            "{\"goal\": \"g0\", \"sol1\": \"a\", \"sol2\": \"b\"}", labels: "0\n",
            "winogrande.jsonl:1: key \"sentence\": missing"),
    BadFile("Winogrande's data and labels read as PIQA: the data is named, not its labels", .piqa,
            "{\"sentence\": \"_ ran.\", \"option1\": \"A\", \"option2\": \"B\"}", labels: "1\n",
            "piqa.jsonl:1: key \"goal\": missing"),
    BadFile("a Winogrande labels file in PIQA's 0/1", .winogrande,
            "{\"sentence\": \"_ ran.\", \"option1\": \"A\", \"option2\": \"B\"}", labels: "0\n",
            "labels.lst:1: label \"0\" is not one of \"1\", \"2\""),

    // HellaSwag.
    BadFile("a HellaSwag label past the endings", .hellaswag,
            #"{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["1", "2", "3", "4"], "label": 4}"#,
            "hellaswag.jsonl:1: key \"label\": \"4\" is not one of \"0\", \"1\", \"2\", \"3\""),
    BadFile("an unlabelled HellaSwag test item", .hellaswag,
            #"{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["1", "2", "3", "4"], "label": ""}"#,
            "hellaswag.jsonl:1: key \"label\": \"\" is not one of \"0\", \"1\", \"2\", \"3\""),
    BadFile("a HellaSwag ending that is not a string", .hellaswag,
            #"{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["1", 2], "label": 0}"#,
            "hellaswag.jsonl:1: key \"endings[1]\": expected a string, found a number"),
    BadFile("HellaSwag with no endings", .hellaswag,
            #"{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": [], "label": 0}"#,
            "hellaswag.jsonl:1: key \"endings\": is empty"),
    BadFile("llama.cpp text cut mid-item", .hellaswag, hellaswagItem + "ctx\n2\na\n", "hellaswag.txt:7: item 2 has 3 lines of 6 (context, gold index, 4 endings)"),
    BadFile("llama.cpp text with a blank line between items", .hellaswag, hellaswagItem + "\nctx\n2\na\nb\nc\nd\n",
            "hellaswag.txt:7: blank line in item 2 (from line 7); items are 6 lines each (context, gold index, 4 endings) with no blank lines between them"),
    BadFile("a BoolQ record whose label and answer disagree", .boolq,
            #"{"passage": "P", "question": "q", "label": false, "answer": true}"#,
            "boolq.jsonl:1: key \"answer\": disagrees with key \"label\" (false)"),
    BadFile("a COPA item left open, which would swallow the next", .copa,
            "<copa-corpus>\n" + #"<item id="1" asks-for="cause" most-plausible-alternative="1"><p>P.</p><a1>A.</a1><a2>B.</a2>"# + "\n" + copaItem,
            "copa.xml:2: <item> is not closed by </item> before the next <item> (copa.xml:3)"),
    BadFile("another format read as llama.cpp's text is named at its first gold index, not at its end", .hellaswag,
            "<copa-corpus>\n" + Array(repeating: copaItem, count: 6).joined(separator: "\n") + "\n</copa-corpus>\n", "hellaswag.txt:2: gold index \"" + copaItem + "\" is not 0, 1, 2 or 3"),
    BadFile("a .jsonl HellaSwag file whose first line is not an object is read as JSON Lines", .hellaswag, "\"hello\"\n",
            "hellaswag.jsonl:1: expected a JSON object, found a string"),
    BadFile("llama.cpp text with a gold index past 3", .hellaswag, "ctx\n7\na\nb\nc\nd\n", "hellaswag.txt:2: gold index \"7\" is not 0, 1, 2 or 3"),
    BadFile("llama.cpp text with a word for the gold index", .hellaswag, hellaswagItem + "ctx\nthree\na\nb\nc\nd", "hellaswag.txt:8: gold index \"three\" is not 0, 1, 2 or 3"),
    BadFile("llama.cpp text that is not UTF-8", .hellaswag, Array("ctx\n1\na\nb\n".utf8) + [0xC3] + Array("\nd\n".utf8),
            "hellaswag.txt:5: not valid UTF-8"),

    // COPA.
    BadFile("a COPA question other than cause or effect", .copa,
            #"{"premise": "P.", "choice1": "A", "choice2": "B", "question": "reason", "label": 0}"#,
            "copa.jsonl:1: key \"question\": \"reason\" is not \"cause\" or \"effect\""),
    BadFile("a COPA label past the choices", .copa,
            #"{"premise": "P.", "choice1": "A", "choice2": "B", "question": "cause", "label": 2}"#,
            "copa.jsonl:1: key \"label\": \"2\" is not one of \"0\", \"1\""),
    BadFile("an empty COPA choice", .copa,
            #"{"premise": "P.", "choice1": "A", "choice2": "", "question": "cause", "label": 0}"#,
            "copa.jsonl:1: key \"choice2\": is empty"),
    BadFile("a COPA item without asks-for", .copa,
            "<copa-corpus>\n" + #"<item id="1" most-plausible-alternative="1"><p>P.</p><a1>A.</a1><a2>B.</a2></item>"#,
            "copa.xml:2: <item> attribute \"asks-for\": missing"),
    BadFile("a COPA answer of 3", .copa,
            "<copa-corpus>\n" + copaItem + "\n" + #"<item id="2" asks-for="effect" most-plausible-alternative="3"><p>P.</p><a1>A.</a1><a2>B.</a2></item>"#,
            "copa.xml:3: <item> attribute \"most-plausible-alternative\": \"3\" is not \"1\" or \"2\""),
    BadFile("a COPA item without a2", .copa,
            "<copa-corpus>\n\n" + #"<item id="1" asks-for="cause" most-plausible-alternative="1"><p>P.</p><a1>A.</a1></item>"#,
            "copa.xml:3: <item> element <a2>: missing"),
    BadFile("a COPA item never closed", .copa,
            #"<copa-corpus><item id="1" asks-for="cause" most-plausible-alternative="1"><p>P.</p>"#,
            "copa.xml:1: <item> is not closed by </item>"),
    BadFile("a COPA attribute without quotes", .copa,
            #"<copa-corpus><item id=1 asks-for="cause"><p>P.</p></item>"#,
            "copa.xml:1: <item> attribute \"id\": expected =\"value\""),
    BadFile("an unknown XML entity", .copa,
            #"<copa-corpus><item id="1" asks-for="cause" most-plausible-alternative="1"><p>P &nbsp;.</p><a1>A.</a1><a2>B.</a2></item>"#,
            "copa.xml:1: <p>: unknown entity \"&nbsp;\""),
    BadFile("XML with no items", .copa, "<copa-corpus>\n</copa-corpus>\n", "copa.xml: no <item> elements"),
    BadFile("a COPA attribute given twice (XML forbids it; either value would pick the connector)", .copa,
            "<copa-corpus>\n" + #"<item id="1" asks-for="cause" asks-for="effect" most-plausible-alternative="1"><p>P.</p><a1>A.</a1><a2>B.</a2></item>"# + "\n</copa-corpus>",
            "copa.xml:2: <item> attribute \"asks-for\": repeated"),
    BadFile("a COPA element given twice", .copa,
            "<copa-corpus>\n" + #"<item id="1" asks-for="cause" most-plausible-alternative="1"><p>P.</p><a1>A.</a1><a2>B.</a2>"# + "\n<a2>C.</a2></item>\n</copa-corpus>",
            "copa.xml:3: <item> element <a2>: repeated"),
    BadFile("COPA XML cut short after an item", .copa, "<copa-corpus>\n" + copaItem + "\n",
            "copa.xml:2: <copa-corpus> is not closed by </copa-corpus> (is the file cut short?)"),
    BadFile("COPA XML with an item after the root closes (two files joined)", .copa,
            "<copa-corpus>\n" + copaItem + "\n</copa-corpus>\n" + copaItem + "\n",
            "copa.xml:4: <item> after </copa-corpus>, outside the document"),

    // ARC and OpenBookQA.
    BadFile("an ARC answer key that is no label", .arcEasy,
            #"{"question": {"stem": "Q", "choices": [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}]}, "answerKey": "E"}"#,
            "arc_easy.jsonl:1: key \"answerKey\": \"E\" is not one of the choice labels A, B"),
    BadFile("an ARC question without a stem", .arcChallenge,
            #"{"question": {"choices": [{"text": "a", "label": "A"}]}, "answerKey": "A"}"#,
            "arc_challenge.jsonl:1: key \"question.stem\": missing"),
    BadFile("an ARC choice without a label", .arcChallenge,
            #"{"question": {"stem": "Q", "choices": [{"text": "a", "label": "A"}, {"text": "b"}]}, "answerKey": "A"}"#,
            "arc_challenge.jsonl:1: key \"question.choices[1].label\": missing"),
    BadFile("an ARC question with no choices", .arcEasy,
            #"{"question": {"stem": "Q", "choices": []}, "answerKey": "A"}"#,
            "arc_easy.jsonl:1: key \"question.choices\": is empty"),
    BadFile("OpenBookQA texts and labels of different lengths", .openbookqa,
            #"{"question_stem": "Q", "choices": {"text": ["a", "b"], "label": ["A"]}, "answerKey": "A"}"#,
            "openbookqa.jsonl:1: key \"choices\": 2 texts but 1 labels"),
    BadFile("OpenBookQA choices of the wrong type", .openbookqa,
            #"{"question_stem": "Q", "choices": "a, b", "answerKey": "A"}"#,
            "openbookqa.jsonl:1: key \"choices\": expected an array or an object, found a string"),
    BadFile("a query/choices/gold item with gold past the choices", .openbookqa,
            #"{"query": "Q", "choices": ["a", "b"], "gold": 5}"#,
            "openbookqa.jsonl:1: key \"gold\": \"5\" is not one of \"0\", \"1\""),

    // Winogrande.
    BadFile("a Winogrande sentence without a blank", .winogrande,
            #"{"sentence": "Sarah ran.", "option1": "A", "option2": "B", "answer": "1"}"#,
            "winogrande.jsonl:1: key \"sentence\": has no \"_\" blank to fill"),
    BadFile("an unlabelled Winogrande test item", .winogrande,
            #"{"sentence": "_ ran.", "option1": "A", "option2": "B", "answer": ""}"#,
            "winogrande.jsonl:1: key \"answer\": \"\" is not one of \"1\", \"2\""),
    BadFile("a Winogrande answer of 0", .winogrande,
            #"{"sentence": "_ ran.", "option1": "A", "option2": "B", "answer": 0}"#,
            "winogrande.jsonl:1: key \"answer\": \"0\" is not one of \"1\", \"2\""),

    // RTE.
    BadFile("an RTE label that is not a relation", .rte,
            #"{"premise": "P", "hypothesis": "H", "label": "maybe"}"#,
            "rte.jsonl:1: key \"label\": \"maybe\" is not one of \"entailment\", \"not_entailment\", \"0\", \"1\""),
    BadFile("a TSV row with a missing field", .rte, "index\tsentence1\tsentence2\tlabel\n0\tP\tentailment\n",
            "rte.tsv:2: 3 tab-separated fields; the header has 4"),
    BadFile("a TSV without a label column", .rte, "index\tsentence1\tsentence2\n0\tP\tH\n",
            "rte.tsv:1: column \"label\": missing from the header"),
    BadFile("a TSV row with a bad label", .rte, "index\tsentence1\tsentence2\tlabel\n\n0\tP\tH\tyes\n",
            "rte.tsv:3: column \"label\": \"yes\" is not \"entailment\" or \"not_entailment\""),
    BadFile("a TSV of only a header", .rte, "index\tsentence1\tsentence2\tlabel\n", "rte.tsv: no items after the header"),

    // BoolQ.
    BadFile("a BoolQ label of null", .boolq, #"{"passage": "P", "question": "q", "label": null}"#,
            "boolq.jsonl:1: key \"label\": expected a label, found null"),
    BadFile("a BoolQ label of 2", .boolq, #"{"passage": "P", "question": "q", "label": 2}"#,
            "boolq.jsonl:1: key \"label\": \"2\" is not one of \"false\", \"true\", \"0\", \"1\", \"False\", \"True\""),
    BadFile("BoolQ without label or answer", .boolq, #"{"passage": "P", "question": "q"}"#,
            "boolq.jsonl:1: key \"label\": missing"),

    // LAMBADA and WikiText.
    BadFile("an empty LAMBADA text", .lambada, "{\"text\": \"a b\"}\n{\"text\": \"\"}",
            "lambada.jsonl:2: key \"text\": is empty, so no last word to predict"),
    BadFile("a LAMBADA line without text", .lambada, #"{"passage": "a b"}"#, "lambada.jsonl:1: key \"text\": missing"),
    BadFile("an empty WikiText file", .wikitext, " \n\n", "wiki.txt: no text (the file is empty)"),
    BadFile("WikiText given a JSON Lines file", .wikitext, "\u{FEFF}\n{\"page\": \" = A = \"}\n",
            "wiki.txt: looks like JSON; wikitext reads the raw or tokenized text release as it is"),
    BadFile("COPA's XML read as LAMBADA's plain text", .lambada, "<?xml version=\"1.0\"?>\n<copa-corpus>\n</copa-corpus>\n",
            "lambada.jsonl:1: starts with markup (an XML file, COPA's release?), not a LAMBADA passage (a passage per line, or JSON Lines)"),
    BadFile("WikiText read as LAMBADA's plain text", .lambada, " \n = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 .\n",
            "lambada.jsonl:2: starts with a WikiText heading (\"= Valkyria Chronicles III =\"), not a LAMBADA passage (a passage per line, or JSON Lines)"),
    BadFile("LAMBADA as a JSON array", .lambada, "[{\"text\": \"a b\"},\n {\"text\": \"c d\"}]",
            "lambada.jsonl: is one JSON array; expected JSON Lines, one JSON object per line (jq -c '.[]' converts it)"),
    BadFile("ARC as a JSON array", .arcEasy, "[\n  {\"id\": \"x\"}\n]\n",
            "arc_easy.jsonl: is one JSON array; expected JSON Lines, one JSON object per line (jq -c '.[]' converts it)"),
    BadFile("ARC as AI2's CSV", .arcEasy, "questionID,originalQuestionID,AnswerKey\nMCAS_1,1,B\n",
            "arc_easy.jsonl:1: malformed JSON at column 1: unexpected character \"q\" (expected JSON Lines: one JSON object per line)"),
    BadFile("a pretty-printed object per record", .boolq, "{\n  \"passage\": \"P\",\n  \"question\": \"q\"\n}\n",
            "boolq.jsonl:1: malformed JSON at column 2: expected a string key (expected JSON Lines: one JSON object per line)"),
    BadFile("RTE as one JSON array", .rte, "[{\"premise\": \"A man sleeps.\", \"hypothesis\": \"A man is awake.\", \"label\": \"not_entailment\"}]\n",
            "rte.tsv: is one JSON array; expected JSON Lines, one JSON object per line (jq -c '.[]' converts it)"),
    BadFile("HellaSwag as one JSON array", .hellaswag,
            "[\n{\"activity_label\": \"Roof\", \"ctx_a\": \"A man is on a roof.\", \"ctx_b\": \"he\", \"endings\": [\"a\", \"b\", \"c\", \"d\"], \"label\": 0}\n]\n",
            "hellaswag.txt: is one JSON array; expected JSON Lines, one JSON object per line (jq -c '.[]' converts it)"),
    BadFile("RTE as comma-separated values", .rte, "sentence1,sentence2,label\nA man sleeps.,A man is awake.,1\n",
            "rte.tsv:1: column \"sentence1\": missing from the header (it has no tab: GLUE's RTE is tab-separated, not comma-separated)"),
    BadFile("a gzip-compressed file", .piqa, [0x1F, 0x8B, 0x08, 0x00, 0x00], "piqa.jsonl: is gzip-compressed; decompress it first (gunzip)"),
    BadFile("a bzip2-compressed file", .hellaswag, Array("BZh91AY&SY".utf8) + [0x00, 0x01], "hellaswag.txt: is bzip2-compressed; decompress it first (bunzip2)"),
    BadFile("a Parquet file", .arcEasy, Array("PAR1".utf8) + [0x15, 0x04] + [0x02, 0x00, 0x00, 0x00] + Array("PAR1".utf8),
            "arc_easy.jsonl: is a Parquet file; export it as JSON Lines first (datasets' to_json, or pandas' to_json(orient=\"records\", lines=True))"),
    BadFile("a GGUF model file", .wikitext, Array("GGUF".utf8) + [0x03, 0x00, 0x00, 0x00, 0x00, 0x00], "wiki.txt: is a GGUF model file, not text"),
    BadFile("a UTF-16 file", .wikitext, [0xFF, 0xFE, 0x20, 0x00, 0x3D, 0x00], "wiki.txt: is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"),
    BadFile("WikiText that is not UTF-8", .wikitext, Array(" = A = \n text\n".utf8) + [0xFE, 0x0A], "wiki.txt:3: not valid UTF-8"),
]

@Suite("Malformed task files")
struct BadFileTests {
    @Test("fail with one line naming the file, line and key", arguments: badFiles)
    func rejects(_ bad: BadFile) throws {
        let directory = try TempDirectory()
        let path = try directory.bytes(bad.fileName, bad.data)
        let labels = try bad.labels.map { try directory.file("labels.lst", $0) }
        let message = shadowErrorMessage {
            switch bad.task {
            case .lambada: return try TaskFile.lambada(path: path)
            case .wikitext: return try TaskFile.wikitext(path: path)
            default: return try TaskFile.multipleChoice(task: bad.task, path: path, labels: labels)
            }
        }
        #expect(message.replacingOccurrences(of: directory.url.path + "/", with: "") == bad.message)
    }

    @Test("names a file that does not exist, or is a directory")
    func missingFile() throws {
        let directory = try TempDirectory()
        let missing = directory.url.appendingPathComponent("nope.jsonl").path
        #expect(shadowErrorMessage { try TaskFile.multipleChoice(task: .piqa, path: missing) } == "\(missing): no such file or directory")
        #expect(shadowErrorMessage { try TaskFile.wikitext(path: directory.url.path) } == "\(directory.url.path): is a directory, not a file")
        let data = try directory.file("piqa.jsonl", piqaItems)
        #expect(shadowErrorMessage { try TaskFile.multipleChoice(task: .piqa, path: data, labels: missing) }
                == "\(missing): no such file or directory")
    }

    @Test("refuses a labels file for tasks that carry their own, and LAMBADA or WikiText as multiple choice")
    func wrongCall() throws {
        let directory = try TempDirectory()
        let path = try directory.file("x.jsonl", piqaItems)
        #expect(shadowErrorMessage { try TaskFile.multipleChoice(task: .hellaswag, path: path, labels: path) }
                == "--labels: applies to piqa and winogrande only (hellaswag keeps its labels in the task file)")
        #expect(shadowErrorMessage { try TaskFile.multipleChoice(task: .lambada, path: path) }
                == "lambada: is not multiple choice; read it with TaskFile.lambada(path:)")
        #expect(shadowErrorMessage { try TaskFile.multipleChoice(task: .wikitext, path: path) }
                == "wikitext: is not multiple choice; read it with TaskFile.wikitext(path:)")
    }

    @Test("survives every truncation of a valid file without crashing")
    func truncations() throws {
        let directory = try TempDirectory()
        let samples: [(TaskName, String)] = [
            (.arcEasy, #"{"question": {"stem": "Q \u00e9", "choices": [{"text": "a", "label": "A"}]}, "answerKey": "A"}"#),
            (.copa, "<copa-corpus>" + copaItem.replacingOccurrences(of: "P.", with: "P &amp; Q.") + "</copa-corpus>"),
            (.hellaswag, hellaswagItem),
            (.rte, "index\tsentence1\tsentence2\tlabel\n0\tP\tH\tentailment\n"),
        ]
        for (task, text) in samples {
            let bytes = Array(text.utf8)
            for length in 0..<bytes.count {
                let path = try directory.bytes("cut", Array(bytes[..<length]))
                do { _ = try TaskFile.multipleChoice(task: task, path: path) } catch is ShadowError {}
            }
        }
    }
}
