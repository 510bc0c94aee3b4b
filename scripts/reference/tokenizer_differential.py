#!/usr/bin/env python3
"""Differential test of our tokenizer against Hugging Face `tokenizers` on thousands of texts.

Nothing here is committed as expectations: the texts are generated (fixed seed) or read from
../shared/data, both sides are run, and every disagreement is printed with the shortest piece of
the text that still disagrees. Regression cases found this way belong in tokenizer_fixtures.py.

Tokenizers compared:
  smollm2    the default model's GGUF (~/.cache/shadowllm/models/SmolLM2-135M-Instruct.Q4_1.gguf,
             or --gguf). The reference is rebuilt from the GGUF metadata the way SmolLM2's
             tokenizer.json is laid out: byte-level BPE from tokens/merges, pre-tokenizer
             Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)], ByteLevel
             decoder, control tokens (type 3) as special added tokens.
  <fixture>  every Tests/ShadowTokenizersTests/Fixtures/*.tokenizer.json, loaded as it is.

Our side runs twice: through a test-only harness (Tests/ShadowTokenizersTests/DifferentialHarness.swift:
encode, encode with special tokens, encode with special tokens not recognised (the reference with
`encode_special_tokens = True`), decode of the reference ids with and without skipping special
tokens, all texts in one process), and through the real CLI (`shadowllm tokenize --text-file`,
texts joined into a few large files with a special token between them, compared with the reference
on the same joined text). Minimising a disagreement calls the CLI once per candidate.

Run from the package root (needs `pip install tokenizers==0.23.3 gguf` and a release build with tests):

    swift build -c release --build-tests -Xswiftc -enable-testing
    python3 scripts/reference/tokenizer_differential.py            # all tokenizers, default sizes
    python3 scripts/reference/tokenizer_differential.py --only smollm2 --count 8000 --seed 7

Exit status 1 when anything disagrees. --keep DIR leaves the generated texts and both sides' output.
"""
import argparse
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import unicodedata

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests" / "ShadowTokenizersTests" / "Fixtures"
DATA = ROOT.parent / "shared" / "data"
DEFAULT_GGUF = pathlib.Path.home() / ".cache" / "shadowllm" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CLI = ROOT / ".build" / "release" / "shadowllm"
TOKENIZERS_VERSION = "0.23.3"


# ----------------------------------------------------------------------------------------------
# Reference for the GGUF

def smollm2_reference(gguf_path):
    from gguf import GGUFReader
    fields = GGUFReader(str(gguf_path)).fields

    def value(key):
        return fields[key].contents()

    assert value("tokenizer.ggml.model") == "gpt2" and value("tokenizer.ggml.pre") == "smollm"
    tokens, types, merges = (value("tokenizer.ggml.tokens"), value("tokenizer.ggml.token_type"),
                             value("tokenizer.ggml.merges"))
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, kind in zip(tokens, types) if kind == 3])
    # Ids recorded in Tests/ShadowModelsTests/Fixtures/smollm2-expected.json, where transformers'
    # own GGUF loader agreed on the first two: a sanity check of the rebuild.
    known = {
        "<|im_start|>user\nWhat is 7 times 8?<|im_end|>\n": [1, 4093, 198, 1780, 314, 216, 39, 1711, 216,
                                                              40, 47, 2, 198],
        "The capital of France is": [504, 3575, 282, 4649, 314],
        "x² + y³ = ½": [104, 19133, 1232, 329, 39050, 446, 216, 16738],
    }
    for text, ids in known.items():
        got = tok.encode(text).ids
        assert got == ids, f"reference rebuild is off: {text!r} → {got}, expected {ids}"
    return tok


# ----------------------------------------------------------------------------------------------
# Texts

WORDS = ("the of and to in is was for that with as on by at from it an be this are or which his "
         "had not but have were has its they their one all been would there she can more when "
         "time people year about into first over new also some could these two may than other "
         "tokenizer model merge sparse layer predictor neuron attention head residual stream "
         "Paris London Tokyo Amazon Python Swift GPU CPU NASA OpenAI iPhone McDonald O'Brien "
         "naïve café résumé façade coöperate Zürich São Ångström jalapeño crème brûlée").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL",
                "'D", "'Ll", "'rE", "n't", "N'T", "’s", "’ll", "‘quoted’", "'", "''", "'x", "'sa",
                "'lla", "'dd", "’", "ʼs", "ſ", "'ſ"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "—", "–", "«", "»", "“", "”", "„", "¿",
                                                       "¡", "·", "•", "…", "‰", "§", "¶", "†", "©", "®", "™"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\t\t", "\u000b", "\u000c",
          "\u0085", "\u00a0", "\u1680", "\u2000", "\u2002", "\u2003", "\u2009", "\u200a", "\u2028",
          "\u2029", "\u202f", "\u205f", "\u3000", "\u180e", "\u200b", "\u200c", "\u200d", "\u2060",
          "\ufeff", " \u00a0", "\u00a0 ", "\n\u3000"]
NUMBERS_EXTRA = ["٠١٢٣٤٥٦٧٨٩", "०१२३४५", "０１２３", "²³¹", "½¼¾⅓", "ⅠⅡⅫⅻ", "①②⑳", "𝟎𝟏𝟐", "௰", "〇一二",
                 "1⃣", "1️⃣", "#️⃣", "3.14159", "1,000,000", "1e-5", "0x1F", "-42", "+7", "2024-01-15",
                 "09:30", "12%", "$45.99", "€7", "1/2", "10^9", "١٢.٥"]
UNICODE_BITS = [
    "café", "cafe\u0301", "e\u0301\u0301", "a\u0308", "ñ", "n\u0303", "Å", "A\u030a", "\u212b",
    "ﬁ", "ﬀ", "Ǆ", "ǅ", "İstanbul", "ß", "ẞ", "Ω", "Ω", "µ", "μ", "K", "K",
    "東京", "日本語のテキスト", "中文字符", "한국어", "\u1112\u1161\u11ab", "ｶﾀｶﾅ", "ｈａｌｆ",
    "العربية", "مرحبا بالعالم", "עברית", "हिन्दी", "नमस्ते", "বাংলা", "தமிழ்", "ไทย", "ລາວ", "ગુજરાતી",
    "Ελληνικά", "русский", "українська", "ქართული", "Հայերեն", "አማርኛ", "ᚠᚢᚦ", "𐌰𐌱", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "𝐁𝐨𝐥𝐝", "ℌ", "ℓ", "№", "℃", "Ⓐ", "🄰",
    "🚀", "✨", "❤", "❤️", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵🇺🇸", "😀😃😄", "🫠", "🧑🏿‍🦱",
    "\u0300", "\u20dd", "a\u20dd", "\ufe0f", "x\ufe0e", "\U000e0041", "\ue000", "\U000f0000", "\ufffd",
    "\u0000", "\u0001", "\u0007", "\u001b[31m", "\u007f", "\u0080", "\u009f", "\u00ad", "\u034f",
    "\u061c", "\u200e", "\u200f", "\u202e", "\u2066", "\ufff9", "\U0001d173",
    "\ufdd0", "\uffff", "\U0010ffff", "\u0378", "\U000e01ef",
    "\u0e33", "\u0f00", "\u1e9e", "\u3007", "\u2160", "\u16ee", "\U00010140", "\u00b2",
]
SPECIALS_SMOLLM = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<file_sep>",
                   "<jupyter_code>", "<empty_output>", "<|im_start", "im_end|>", "<|im_start|", "<|",
                   "|>", "<|im_end|><|im_end|>", "<<|im_start|>>", "<|IM_START|>", "< |im_start|>"]
CODE = [
    "def f(x):\n    return x * 2\n",
    "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(i)\n",
    "    if (a && b) { return c; }\n",
    "let xs = [1, 2, 3].map { $0 * 2 }\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }\n",
    "const re = /^\\s+|\\s+$/g;  // trim\n",
    "SELECT id, name FROM users WHERE age >= 21 ORDER BY name;\n",
    "<div class=\"box\"><span>Hi</span></div>\n",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
    "x=1;y=2;z=x+y**2//3%4\n",
    "    \n    \n        pass\n",
    "if __name__ == '__main__':\n    main()\n",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }\n",
    "$ ls -la | grep '.py' > out.txt 2>&1\n",
    "a_b_c __init__ CamelCaseName snake_case_name SCREAMING_CASE kebab-case-name\n",
    "https://example.com/path?q=1&r=%20x#frag user@example.org\n",
    "| col | col |\n|-----|-----|\n| 1   | 2   |\n",
    "```python\nprint('hi')\n```\n",
]


def natural_texts(limit):
    """Lines of PIQA goals/solutions, HellaSwag contexts/endings and WikiText, in file order."""
    texts = []
    piqa = DATA / "piqa" / "valid.jsonl"
    if piqa.exists():
        for line in piqa.read_text(encoding="utf-8").splitlines()[: limit // 6]:
            item = json.loads(line)
            texts += [item["goal"], item["sol1"], " " + item["sol2"]]
    hellaswag = DATA / "hellaswag" / "hellaswag_val_full.txt"
    if hellaswag.exists():
        lines = hellaswag.read_text(encoding="utf-8").splitlines()
        for start in range(0, min(len(lines), 6 * (limit // 12)), 6):
            texts += [lines[start], lines[start] + " " + lines[start + 2]]
    for name in ["test.txt", "valid.txt"]:
        wiki = DATA / "wikitext-2" / name
        if wiki.exists():
            lines = [l for l in wiki.read_text(encoding="utf-8").split("\n") if l.strip()]
            texts += lines[: limit // 6]
            # Several lines together keep their newlines and leading spaces.
            texts += ["\n".join(lines[k:k + 4]) + "\n" for k in range(0, min(len(lines), limit // 2), 40)]
    return texts[:limit]


def random_word(rng):
    kind = rng.random()
    if kind < 0.6:
        word = rng.choice(WORDS)
    elif kind < 0.8:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 14)))
    else:
        word = rng.choice(UNICODE_BITS)
    case = rng.random()
    if case < 0.1:
        word = word.upper()
    elif case < 0.2:
        word = word.capitalize()
    elif case < 0.25:
        word = "".join(c.upper() if rng.random() < 0.5 else c for c in word)
    return word


def random_scalar(rng):
    ranges = [(0x20, 0x7e), (0x00, 0x20), (0xa0, 0x2ff), (0x300, 0x36f), (0x370, 0x52f), (0x590, 0x6ff),
              (0x900, 0xdff), (0xe00, 0xfff), (0x1100, 0x11ff), (0x1e00, 0x1fff), (0x2000, 0x206f),
              (0x2070, 0x2bff), (0x3000, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xe000, 0xf8ff),
              (0xf900, 0xffff), (0x10000, 0x1ffff), (0x1f300, 0x1faff), (0x20000, 0x2ffff), (0xe0000, 0x10ffff)]
    lo, hi = rng.choice(ranges)
    while True:
        value = rng.randint(lo, hi)
        if not 0xd800 <= value <= 0xdfff:
            return chr(value)


def fragment(rng, specials):
    kind = rng.randrange(11)
    if kind == 0:
        return " ".join(random_word(rng) for _ in range(rng.randint(1, 12)))
    if kind == 1:
        return random_word(rng) + rng.choice(CONTRACTIONS) + rng.choice(["", " ", " word", "s", "!"])
    if kind == 2:
        if rng.random() < 0.5:
            return rng.choice(NUMBERS_EXTRA)
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40)))
    if kind == 3:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 12)))
    if kind == 4:
        return "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 6)))
    if kind == 5:
        return rng.choice(UNICODE_BITS)
    if kind == 6:
        return rng.choice(specials) if specials else random_word(rng)
    if kind == 7:
        return rng.choice(CODE)
    if kind == 8:
        return "".join(random_scalar(rng) for _ in range(rng.randint(1, 10)))
    if kind == 9:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 24))).decode("utf-8", "replace")
    return rng.choice(SPACES) + random_word(rng)


def long_text(rng, specials):
    kind = rng.randrange(6)
    n = rng.choice([49, 50, 63, 64, 65, 100, 300, 1000, 3000])
    if kind == 0:
        return rng.choice("axZé東🚀") * n
    if kind == 1:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzé") for _ in range(n))
    if kind == 2:
        return "".join(rng.choice("0123456789") for _ in range(n))
    if kind == 3:
        return rng.choice(["!", ".", "-", "=", "*", "#", "~", "!?", "\\"]) * n
    if kind == 4:
        return rng.choice([" ", "\t", "\n", "\u00a0", " \n"]) * n + rng.choice(["", "x", " end"])
    return "".join(fragment(rng, specials) for _ in range(rng.randint(10, 40)))


def generated_texts(rng, count, specials):
    texts = ["", " ", "  ", "\n", "\t", "a", "'s", "'", "0", "00", " 0", "\r\n", "\u00a0", "\ufeff",
             "\ufeffstart", "Hello world", " Hello world", "Hello world ", "Hello  world", "Hello\tworld"]
    texts += specials
    texts += [f"{s}user\nhi{e}\n{s}assistant\n" for s, e in [("<|im_start|>", "<|im_end|>")]]
    texts += ["<|im_start|>user\nhi<|im_end|>", " <|im_start|> ", "x<|im_end|>y", "<|im_end|>\n\n",
              "\n<|im_start|>", "<|endoftext|><|endoftext|>", "<s>x</s>", " </s> ", "<unk>"]
    while len(texts) < count:
        r = rng.random()
        if r < 0.08:
            text = long_text(rng, specials)
        else:
            text = "".join(fragment(rng, specials) for _ in range(rng.randint(1, 6)))
        form = rng.random()
        if form < 0.05:
            text = unicodedata.normalize("NFD", text)
        elif form < 0.08:
            text = unicodedata.normalize("NFKC", text)
        elif form < 0.12:
            text = rng.choice(SPACES) + text
        elif form < 0.16:
            text = text + rng.choice(SPACES)
        texts.append(text)
    return texts[:count]


def sweep_texts(specials):
    """One text per Unicode scalar of planes 0-3 and 14 (surrogates left out), each putting the
    character where the split rules look at its class: inside and beside words, digits, spaces,
    apostrophes and (single-word) added tokens."""
    word = next((s for s in specials if s.strip() == s and s.isalpha()), "x")
    texts = []
    for value in list(range(0x0, 0x40000)) + list(range(0xE0000, 0xE0200)):
        if 0xD800 <= value <= 0xDFFF:
            continue
        c = chr(value)
        texts.append(f"a{c}b {c}{c}1{c} {c}x\t{c}'s{c}\n {word}{c}{word} {c}")
    return texts


def sweep_high_texts(specials, stride=17, high_stride=1):
    """Planes 4-16, unswept by sweep_texts: every scalar of planes 15-16 (supplementary private
    use, with the noncharacters U+FFFFE/F, U+10FFFE/F) and every `stride`-th scalar of planes 4-13
    (unassigned), plus the noncharacters U+xFFFE/U+xFFFF of planes 4-13, in sweep_texts' frame."""
    word = next((s for s in specials if s.strip() == s and s.isalpha()), "x")
    values = list(range(0x40000, 0xE0000, stride)) + list(range(0xF0000, 0x110000, high_stride))
    values += [0xFFFFE, 0xFFFFF, 0x10FFFE, 0x10FFFF]
    values += [(plane << 16) | low for plane in range(4, 14) for low in (0xFFFE, 0xFFFF)]
    texts = []
    for value in sorted(set(values)):
        c = chr(value)
        texts.append(f"a{c}b {c}{c}1{c} {c}x\t{c}'s{c}\n {word}{c}{word} {c}")
    return texts


EDGE_PUA = ["\ue000", "\uf8ff", "\ue801", "\U000f0000", "\U000f1234", "\U000ffffd", "\U00100000",
            "\U0010fffd", "\U00108000"]
EDGE_NONCHAR = ["\ufffe", "\uffff", "\ufdd0", "\ufdef", "\U0001fffe", "\U0001ffff", "\U0002fffe",
                "\U0003ffff", "\U0005fffe", "\U000efffe", "\U000ffffe", "\U000fffff", "\U0010fffe",
                "\U0010ffff"]
EDGE_COMBINING = ["\u0300", "\u0301", "\u0308", "\u0327", "\u034f", "\u0488", "\u0903", "\u093c",
                  "\u1ab0", "\u1dc0", "\u20dd", "\u20e3", "\ufe20", "\U0001d165", "\U000e0100"]
EDGE_EMOJI = ["👩\u200d💻", "👨\u200d👩\u200d👧\u200d👦", "🏳\ufe0f\u200d🌈", "🧑🏿\u200d🦱",
              "❤\ufe0f\u200d🔥", "🐻\u200d❄\ufe0f", "👁\ufe0f\u200d🗨\ufe0f", "1\ufe0f\u20e3", "#\ufe0f\u20e3",
              "☺\ufe0e", "☺\ufe0f", "✌🏽", "🇺🇳", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
              "\u200d", "\u200d\u200d", "a\u200db", "x\ufe0fy", "\u845b\U000e0100", "\u845b\U000e0101",
              "\ufe00", "\ufe0f\ufe0f", "\U000e01ef"]
EDGE_DIGITS = ["٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९", "０１２３４５６７８９", "১২৩", "๑๒๓",
               "᠐᠑", "𝟘𝟙𝟚", "🄁🄂", "\U000104a0\U000104a1", "\U00011066"]
EDGE_BREAKS = ["\r\n", "\r", "\n", "\u2028", "\u2029", "\u0085", "\r\n\r\n", "\n\u2028", "\u2028\u2028",
               " \u0085 ", "\u0085\u0085", "\r\u0085", "\u000b", "\u000c", "\r\n ", " \r\n"]


def edge_texts(rng, specials, per_category=55):
    """Hand-aimed texts by category (dict name -> list of texts)."""
    word = lambda: rng.choice(WORDS)
    sp = lambda: rng.choice(["", " ", "  ", "\t", "\n"])
    cats = {}

    def make(fn, n=per_category):
        return [fn() for _ in range(n)]

    cats["private-use"] = make(lambda: "".join(
        rng.choice([word(), rng.choice(EDGE_PUA), rng.choice(EDGE_PUA) * rng.randint(2, 5), " ", "'s",
                    "1", chr(rng.randint(0xE000, 0xF8FF)), chr(rng.randint(0xF0000, 0x10FFFD))])
        for _ in range(rng.randint(1, 8))))
    cats["noncharacters"] = make(lambda: "".join(
        rng.choice([word(), rng.choice(EDGE_NONCHAR), " " + rng.choice(EDGE_NONCHAR), "'", "'t", "7",
                    chr(((rng.randint(0, 16)) << 16) | rng.choice([0xFFFE, 0xFFFF]))])
        for _ in range(rng.randint(1, 8))))
    cats["combining-after-pua-nonchar"] = make(lambda: "".join(
        sp() + rng.choice(EDGE_PUA + EDGE_NONCHAR + ["a", "1", " ", "'", "\u200d"])
        + "".join(rng.choice(EDGE_COMBINING) for _ in range(rng.randint(1, 4)))
        + rng.choice(["", "b", " c", "2", "'s", "!"]) for _ in range(rng.randint(1, 5))))
    cats["emoji-zwj-vs"] = make(lambda: "".join(
        rng.choice([sp() + rng.choice(EDGE_EMOJI), word(), rng.choice(EDGE_EMOJI) + rng.choice(EDGE_EMOJI),
                    rng.choice(EDGE_EMOJI) + chr(rng.randint(0xFE00, 0xFE0F)),
                    "x" + chr(rng.randint(0xE0100, 0xE01EF))]) for _ in range(rng.randint(1, 6))))
    cats["script-digits"] = make(lambda: "".join(
        rng.choice([sp() + rng.choice(EDGE_DIGITS), "".join(rng.choice(rng.choice(EDGE_DIGITS) + "0123456789")
                                                            for _ in range(rng.randint(1, 30))),
                    word(), " 12", ".", ",", "٫", "%", "-"]) for _ in range(rng.randint(1, 6))))
    cats["line-breaks"] = make(lambda: "".join(
        rng.choice([rng.choice(EDGE_BREAKS), word(), " " + word(), "!", "1", "  ", "\t"])
        for _ in range(rng.randint(1, 10))))
    cats["long-space-runs"] = make(lambda: rng.choice(["", "x", "word ", "\n", "'s", "1", "\U000f0000"])
                                   + rng.choice([" ", "\t", " \t", "\t ", "  \t\n", "\u00a0", "\u3000", " \u2028"])
                                   * rng.choice([17, 100, 255, 256, 257, 1000, 4096, 5000, 10000])
                                   + rng.choice(["", "x", " end", "\n", "1", "'s", "\ue000"]))

    def long_word():
        n = rng.choice([5000, 5001, 6000, 8192, 10000, 20000])
        kind = rng.randrange(8)
        if kind == 0:
            return rng.choice("axZé東") * n
        if kind == 1:
            return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
        if kind == 2:
            return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzéèüß") for _ in range(n))
        if kind == 3:
            return "".join(rng.choice("0123456789٠١٢३४") for _ in range(n))
        if kind == 4:
            return rng.choice(EDGE_PUA) * n
        if kind == 5:
            return "".join(rng.choice(EDGE_PUA + EDGE_NONCHAR + ["a"]) for _ in range(n))
        if kind == 6:
            return "e\u0301" * (n // 2)
        return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(n))
    cats["very-long-words"] = make(lambda: rng.choice(["", " ", "The ", "'s"]) + long_word()
                                   + rng.choice(["", " end", "!", "\n", "1"]), 40)
    return cats


def corpus(seed, count, natural, specials, sweep=False, sweep_high=False, edge=False, strides=(17, 1)):
    rng = random.Random(seed)
    texts = generated_texts(rng, count, specials) + natural_texts(natural)
    if edge:
        for name, items in edge_texts(random.Random(seed + 1), specials).items():
            print(f"  edge category {name}: {len(items)} texts")
            texts += items
    if sweep:
        texts += sweep_texts(specials)
    if sweep_high:
        high = sweep_high_texts(specials, *strides)
        print(f"  sweep planes 4-16: {len(high)} texts")
        texts += high
    return texts


# ----------------------------------------------------------------------------------------------
# Our side

def run_harness(jobs, workdir):
    jobs_path = workdir / "jobs.json"
    jobs_path.write_text(json.dumps(jobs))
    env = dict(os.environ, SHADOW_TOKENIZER_DIFF=str(jobs_path))
    cmd = ["swift", "test", "-c", "release", "-Xswiftc", "-enable-testing", "--skip-build",
           "--filter", "DifferentialHarness"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0 or any(not pathlib.Path(j["output"]).exists() for j in jobs):
        sys.exit(f"harness failed ({' '.join(cmd)}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def cli_ids(model, text, workdir):
    path = workdir / "cli-text.txt"
    path.write_bytes(text.encode("utf-8"))
    out = subprocess.run([str(CLI), "tokenize", "--model", str(model), "--text-file", str(path), "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return ("error", out.stderr.strip())
    return json.loads(out.stdout)["ids"]


def shortest_disagreement(text, agrees):
    """Greedy shrinking by characters: drops chunks while the texts still disagree."""
    chunk = max(1, len(text) // 2)
    while chunk >= 1:
        i = 0
        while i < len(text):
            candidate = text[:i] + text[i + chunk:]
            if candidate and not agrees(candidate):
                text = candidate
            else:
                i += chunk
        chunk //= 2
    return text


# ----------------------------------------------------------------------------------------------

def compare(name, ref, model_path, cli_model, texts, workdir, separator, verbose):
    """Runs the reference on the texts and writes the harness input; returns (harness job, case)."""
    ref_plain = [e.ids for e in ref.encode_batch(texts, add_special_tokens=False)]
    ref_special = [e.ids for e in ref.encode_batch(texts, add_special_tokens=True)]
    ref.encode_special_tokens = True
    ref_split = [e.ids for e in ref.encode_batch(texts, add_special_tokens=False)]
    ref.encode_special_tokens = False
    # Besides the ids of the texts, random id sequences (pieces of characters, lone bytes, specials)
    # and every id alone.
    rng = random.Random(len(texts))
    size = ref.get_vocab_size(with_added_tokens=True)
    added = list(ref.get_added_tokens_decoder())
    decode_ids = ref_special + [
        [rng.choice(added) if added and rng.random() < 0.15 else rng.randrange(min(size, 300))
         if rng.random() < 0.4 else rng.randrange(size) for _ in range(rng.randint(1, 12))]
        for _ in range(len(texts) // 5)] + [[i] for i in range(size)]  # and every id on its own
    ref_decoded = ref.decode_batch(decode_ids, skip_special_tokens=True)
    ref_decoded_special = ref.decode_batch(decode_ids, skip_special_tokens=False)
    inp, out = workdir / f"{name}.in.json", workdir / f"{name}.out.json"
    inp.write_text(json.dumps({"texts": texts, "decode_ids": decode_ids}, ensure_ascii=False))
    return dict(tokenizer=str(model_path), input=str(inp), output=str(out)), dict(
        name=name, texts=texts, ref=ref, cli_model=cli_model, separator=separator, plain=ref_plain,
        special=ref_special, split=ref_split, decode_ids=decode_ids, decoded=ref_decoded, decoded_special=ref_decoded_special, out=out)


def report(case, workdir, verbose):
    ours = json.loads(case["out"].read_text())
    texts, ref, name = case["texts"], case["ref"], case["name"]
    problems = {"encode": [], "encode_special": [], "encode_split_special": [], "decode": [], "decode_special": []}
    for i, text in enumerate(texts):
        if ours["ids"][i] != case["plain"][i]:
            problems["encode"].append(i)
        if ours["ids_with_special"][i] != case["special"][i]:
            problems["encode_special"].append(i)
        if ours["ids_split_special"][i] != case["split"][i]:
            problems["encode_split_special"].append(i)
    for i in range(len(case["decode_ids"])):
        if ours["decoded"][i] != case["decoded"][i]:
            problems["decode"].append(i)
        if ours["decoded_with_special"][i] != case["decoded_special"][i]:
            problems["decode_special"].append(i)

    # The CLI on the texts joined by a special token, a few large files instead of one call each.
    cli_bad = 0
    if case["cli_model"] is not None:
        batch = 250
        for start in range(0, len(texts), batch):
            joined = case["separator"].join(texts[start:start + batch])
            expected = ref.encode(joined, add_special_tokens=False).ids
            if cli_ids(case["cli_model"], joined, workdir) != expected:
                cli_bad += 1
                print(f"  [{name}] CLI disagrees on the joined texts {start}..{start + batch - 1}")

    total = sum(len(v) for v in problems.values()) + cli_bad
    print(f"{name}: {len(texts)} texts; disagreements: "
          + ", ".join(f"{k} {len(v)}" for k, v in problems.items()) + f", CLI batches {cli_bad}")
    shown = 0
    for i in problems["encode"]:
        if shown >= (50 if verbose else 8):
            break
        shown += 1
        text = texts[i]
        if case["cli_model"] is not None and len(text) < 4000:
            def agrees(candidate):
                return cli_ids(case["cli_model"], candidate, workdir) == ref.encode(
                    candidate, add_special_tokens=False).ids
            if not agrees(text):
                text = shortest_disagreement(text, agrees)
        theirs = ref.encode(text, add_special_tokens=False)
        print(f"  encode {texts[i][:60]!r} → minimal {text!r}")
        print(f"    reference {theirs.ids} {theirs.tokens}")
        if case["cli_model"] is not None:
            print(f"    ours      {cli_ids(case['cli_model'], text, workdir)}")
    for i in problems["encode_special"][: (20 if verbose else 3)]:
        print(f"  encode_special {texts[i][:60]!r}: ours {ours['ids_with_special'][i]!s:.200} "
              f"reference {case['special'][i]!s:.200}")
    for i in problems["encode_split_special"][: (20 if verbose else 3)]:
        print(f"  encode_split_special {texts[i][:60]!r}: ours {ours['ids_split_special'][i]!s:.200} "
              f"reference {case['split'][i]!s:.200}")
    for kind, key in [("decode", "decoded"), ("decode_special", "decoded_with_special")]:
        for i in problems[kind][: (20 if verbose else 3)]:
            print(f"  {kind} of {case['decode_ids'][i]!s:.120}: ours {ours[key][i]!r:.200} "
                  f"reference {case[key.replace('_with_special', '_special')][i]!r:.200}")
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--count", type=int, default=5000, help="generated texts for smollm2")
    ap.add_argument("--natural", type=int, default=2000, help="lines of ../shared/data for smollm2")
    ap.add_argument("--fixture-count", type=int, default=1500, help="generated texts per fixture")
    ap.add_argument("--gguf", type=pathlib.Path, default=DEFAULT_GGUF)
    ap.add_argument("--only", help="smollm2 or a fixture name")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI checks (harness only)")
    ap.add_argument("--keep", type=pathlib.Path, help="keep the work files in this folder")
    ap.add_argument("--sweep", action="store_true",
                    help="also one text per code point of planes 0-3 and 14 (about 260k texts per tokenizer)")
    ap.add_argument("--sweep-high", action="store_true",
                    help="also planes 15-16 whole and planes 4-13 every 17th code point")
    ap.add_argument("--edge", action="store_true", help="also the hand-aimed edge categories")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if tokenizers.__version__ != TOKENIZERS_VERSION:
        print(f"note: tokenizers {tokenizers.__version__}, the fixtures were made with {TOKENIZERS_VERSION}")

    workdir = args.keep or pathlib.Path(tempfile.mkdtemp(prefix="tokdiff-"))
    workdir.mkdir(parents=True, exist_ok=True)
    jobs, cases = [], []
    use_cli = not args.no_cli and CLI.exists()
    if args.only in (None, "smollm2"):
        ref = smollm2_reference(args.gguf)
        texts = corpus(args.seed, args.count, args.natural, SPECIALS_SMOLLM, args.sweep, args.sweep_high, args.edge)
        job, case = compare("smollm2", ref, args.gguf, args.gguf if use_cli else None, texts, workdir,
                            "<|endoftext|>", args.verbose)
        jobs.append(job)
        cases.append(case)
    for path in sorted(FIXTURES.glob("*.tokenizer.json")):
        name = path.name.removesuffix(".tokenizer.json")
        if args.only not in (None, name):
            continue
        ref = Tokenizer.from_file(str(path))
        specials = [t.content for t in ref.get_added_tokens_decoder().values()]
        specials += ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<mask>", "<custom>",
                     "single", " single ", "singleword", "wordy", "<|im", "_end|>", "x<mask>y", " <mask> ", "\t<custom>\n", "▁", "▁▁x", "<0x41>"]
        texts = corpus(args.seed + len(name), args.fixture_count, args.fixture_count // 4, specials, args.sweep,
                       args.sweep_high, args.edge, (61, 7))
        cli_model = None
        if use_cli:
            cli_model = workdir / f"model-{name}"
            cli_model.mkdir(exist_ok=True)
            shutil.copy(path, cli_model / "tokenizer.json")
        # A special token that is matched in the raw text and strips nothing joins the CLI batches.
        separator = next((t.content for t in ref.get_added_tokens_decoder().values()
                          if t.special and not t.normalized and not t.lstrip and not t.rstrip), None)
        job, case = compare(name, ref, path, cli_model if separator else None, texts, workdir, separator,
                            args.verbose)
        jobs.append(job)
        cases.append(case)

    run_harness(jobs, workdir)
    failures = sum(report(case, workdir, args.verbose) for case in cases)
    print(f"{'all agree' if failures == 0 else f'{failures} disagreements'} (work files in {workdir})")
    if not args.keep and failures == 0:
        shutil.rmtree(workdir)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
