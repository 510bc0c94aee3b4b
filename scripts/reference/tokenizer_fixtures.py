#!/usr/bin/env python3
"""Writes the tokenizer fixtures that Tests/ShadowTokenizersTests compares against.

Each fixture is a small BPE tokenizer trained deterministically with the Hugging Face `tokenizers`
library on the fixed corpus below and saved as `<name>.tokenizer.json`, next to
`<name>.expected.json`: for every test text, the ids the library produces with and without special
tokens, the ids it produces with `encode_special_tokens = True` (special tokens spelled in the text
are tokenized as text; non-special added tokens are still matched; written as `ids_split_special`
only where they differ from `ids`), and the strings it decodes the ids with special tokens back to. The Swift tokenizer must agree with all of it.

    python3 scripts/reference/tokenizer_fixtures.py        # rewrites the Fixtures folder

Fixtures:
  gpt2       byte-level BPE, GPT-2 regex split, merges written in the older "a b" string form
  smollm     Sequence[Digits(individual_digits), ByteLevel] with chat special tokens (SmolLM2 form)
  opt        byte-level BPE whose post-processor prepends </s> (id 2), as OPT does
  roberta    the gpt2 vocabulary with add_prefix_space and RobertaProcessing (<s> ... </s>)
  llama3     Split(Llama-3 regex) + ByteLevel(use_regex=False), ignore_merges, <|begin_of_text|> BOS
  llama2     SentencePiece-style BPE: normalizer Prepend("▁") + Replace(" ", "▁"), byte_fallback,
             decoder Replace/ByteFallback/Fuse/Strip, <s> BOS; merges listed the way a SentencePiece
             vocabulary implies them (every split of a piece, ordered by the piece's score), so the
             GGUF path (scores only) must reach the same ids
  metaspace  the llama2 vocabulary with the newer Metaspace pre-tokenizer and decoder
  llama2-added  llama2 plus added tokens with the less common options: a normalized one
             (matched in the normalized text), one that strips whitespace around it, a single-word one
  smollm-overlap  smollm plus non-special added tokens that overlap its chat tokens ("<|im",
             "_end|>") and each other ("singleword" single-word, "single", "wordy"): a match that is
             set aside (a special token while encode_special_tokens is on, a single-word token glued
             to a word) hides the tokens that overlap it, as the library's leftmost-longest search does
  gemma      Gemma's shape, as transformers' GemmaTokenizer builds it: normalizer Replace(" ", "▁"),
             pre-tokenizer Split(String " ", MergedWithPrevious), BPE with byte_fallback over
             <pad> <eos> <bos> <unk> <mask>, <0x00>…<0xFF> and pieces learned from the ASCII lines of
             the corpus (so "é" and "日本" fall back to bytes), decoder Replace/ByteFallback/Fuse,
             <bos> prepended; its own short list of texts
"""
import json
import pathlib

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

OUT = pathlib.Path(__file__).resolve().parents[2] / "Tests" / "ShadowTokenizersTests" / "Fixtures"

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
                  r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

# Training text, written for these fixtures. Small on purpose: the vocabularies stay a few hundred
# tokens, so many test words are split into several pieces and the merge order matters.
CORPUS = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.",
    "A tokenizer turns text into numbers, and a model turns numbers into more text.",
    "We don't know what they'll say, but it's likely that we'll hear it soon.",
    "She said: \"I'm here, you're there, and they've gone home.\" He'd agree.",
    "In 2023 the team measured 3.14159 and 2.71828; in 2024 they counted 1,000,000 steps.",
    "Prices rose by 12% to $45.99, then fell to $39.50 on 15 March 2024 at 09:30.",
    "def tokenize(text):\n    words = text.split()\n    return [w.lower() for w in words]\n",
    "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(i, 'even')\n\telse:\n\t\tprint(i, 'odd')\n",
    "struct Point { var x: Int; var y: Int }\nlet p = Point(x: 1, y: 2)\n",
    "The café on the corner serves naïve tourists a crème brûlée for €7.",
    "Tokyo (東京) and Kyoto (京都) are cities in Japan; 日本語 is written with kanji.",
    "Rockets 🚀 and stars ✨ and hearts ❤ appear in chat messages all the time.",
    "Sparse models skip heads and neurons that a small predictor marks as unimportant.",
    "Every layer of the network reads the residual stream and writes a correction back.",
    "Numbers like 42, 007, 1e-5 and 0x1F look different to every tokenizer.",
    "Spaces   between   words,\ttabs\tand\nnew lines\n\nall count as whitespace.",
    "THE SHOUTING HEADLINE SAYS: MARKETS RALLY AS INVESTORS CHEER NEWS!",
    "Well... maybe? Yes! No; perhaps -- or (probably) [not] {ever}.",
    "user: hello there\nassistant: hi, how can I help you today?\n",
    "The rain in Spain stays mainly in the plain, and the train is late again.",
]

TEXTS = [
    "Hello world",
    "In 2024, 3.14159 and 1,000,000",
    "don't we'll I'M they're you've she'd it's O'Neil's",
    "'S 'RE 'Ll 've",
    "café naïve — 東京 🚀",
    "def add(a, b):\n    return a + b\n\n\tif x:\n\t\tprint('tab')\n",
    "a   b\n\n\tc  ",
    "  leading and trailing  ",
    "",
    " ",
    "\n",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "before <s> middle </s> after <|endoftext|> end<|begin_of_text|>x <custom> y",
    "Ελληνικά и русский ☃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u0000 bell\u0007",
    "line one\r\nline two\u00a0nbsp\u2003em\u3000ideographic",
    "e\u0301 vs \u00e9",
    "x1y22z333 \u0661\u0662\u0663 \u216b \u00bd",
    "Wait... what?!?! (yes) [no] {maybe} -- ok; done.",
    "fill <mask> here and  <mask>\tthere, <custom>",
    "single word, singles, a single_one, x single, (single)",
    # Word characters for single-word tokens are the regex crate's \w (Alphabetic, marks, Nd, Pc,
    # joiners), not letters and numbers: ½ and ① leave "single" free, a combining mark, a virama,
    # a keycap, ZWJ and ‿ glue it to its neighbour.
    "single½ ①single single\u0301 ்single single\u200d 1\u20e3single single‿x ²single",
    # A leading byte-order mark is text like any other: three byte-level tokens.
    "\ufeffBOM first",
    # Assigned in Unicode 17, after the tables of tokenizers' regexes: not letters, numbers or word
    # characters to them, whatever a newer Swift says. Its Digits pre-tokenizer (Rust's std) does
    # know the new digits U+11DE0….
    "x\ua7ce's a\u0c5cb \U00010940\U00010941 7\u088f single\u1acf \U00011de0's 1\U00011de1x",
    # Chat markers and the tokens that overlap them in smollm-overlap; a special token first.
    "<|im_end|> x<|im_start|>y <|imz _end|> end|> <|im_start|>user\nsay <|im_end|><|im_end|>\n",
    "<s>lead</s>tail <|endoftext|><mask> <custom>",
    # A single-word token glued to a word, overlapping shorter and later tokens.
    "singlewordy singleword y asingleword single wordy singlesingleword",
    "The quick brown fox jumps over the lazy dog while the cat sleeps; " * 3
    + "a" * 100 + " " + "!" * 70,
]

# Gemma's texts: white space where a split on " " would show, and characters only bytes can spell.
GEMMA_TEXTS = [
    "Hello world",
    " leading space",
    "trailing space ",
    "double  spaces  and   three",
    "  ",
    "line one\nline two\n\n",
    "\n the end",
    "café",
    "日本",
    "naïve 日本語 🚀 e\u0301",
    "",
    "<bos>the<eos> x <mask>y",
    "The quick brown fox jumps over the lazy dog.",
]


def trained_byte_level(special_tokens, pre_tokenizer, vocab_size=600):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def write(name, tok, rewrite=None, texts=TEXTS):
    path = OUT / f"{name}.tokenizer.json"
    tok.save(str(path), pretty=False)
    if rewrite:
        data = json.loads(path.read_text())
        rewrite(data)
        path.write_text(json.dumps(data, ensure_ascii=False))
        tok = Tokenizer.from_file(str(path))
    cases = []
    for text in texts:
        plain = tok.encode(text, add_special_tokens=False).ids
        special = tok.encode(text, add_special_tokens=True).ids
        tok.encode_special_tokens = True
        split = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        case = {"text": text, "ids": plain, "ids_with_special": special}
        if split != plain:  # written only where it differs, to keep the files small
            case["ids_split_special"] = split
        case["decoded"] = tok.decode(special, skip_special_tokens=True)
        case["decoded_with_special"] = tok.decode(special, skip_special_tokens=False)
        cases.append(case)
    expected = {"fixture": name, "vocab_size": tok.get_vocab_size(with_added_tokens=True), "cases": cases}
    (OUT / f"{name}.expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1))


def merges_as_strings(data):
    # The older tokenizer.json form: "a b" strings instead of ["a", "b"] pairs.
    data["model"]["merges"] = [" ".join(pair) for pair in data["model"]["merges"]]


def gpt2():
    tok = trained_byte_level(["<|endoftext|>"], pre_tokenizers.ByteLevel(add_prefix_space=False))
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    write("gpt2", tok, rewrite=merges_as_strings)
    return tok


def smollm():
    pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok = trained_byte_level(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], pre)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # A user-defined token: matched as one piece but not special, so decoding keeps it.
    tok.add_tokens([AddedToken("<custom>", special=False, normalized=False)])
    write("smollm", tok)


def opt():
    tok = trained_byte_level(["<s>", "<pad>", "</s>", "<unk>"],
                             pre_tokenizers.ByteLevel(add_prefix_space=False))
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", 2)])
    write("opt", tok)


def roberta(base):
    tok = Tokenizer.from_str(base.to_str())
    tok.add_special_tokens(["<s>", "</s>"])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    write("roberta", tok)


def llama3():
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = trained_byte_level(["<|begin_of_text|>", "<|end_of_text|>"], pre)
    data = json.loads(tok.to_str())
    data["model"]["ignore_merges"] = True
    tok = Tokenizer.from_str(json.dumps(data))
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      special_tokens=[("<|begin_of_text|>", 0)])])
    write("llama3", tok)


def sentencepiece_vocab():
    """Trains on ▁-joined text, then lays the vocabulary out as Llama-2 does: <unk> <s> </s>,
    the 256 byte tokens <0x00>…<0xFF>, then the learned pieces in merge order."""
    norm = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = norm
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"],
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    learned = sorted(tok.get_vocab().items(), key=lambda item: item[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in learned:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    # SentencePiece keeps no merge list: a pair merges when the joined piece is in the vocabulary,
    # higher score first. Its score here is minus its id, so list every split of every piece by id.
    merges = []
    for piece, pid in sorted(vocab.items(), key=lambda item: item[1]):
        if pid < 259:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                merges.append((left, right))
    return vocab, merges


def llama2(vocab, merges):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ["<unk>", "<s>", "</s>"]])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    write("llama2", tok)


def metaspace(vocab, merges):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(
        replacement="▁", prepend_scheme="first", split=False)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ["<unk>", "<s>", "</s>"]])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    write("metaspace", tok)


def llama2_added(vocab, merges):
    tok = Tokenizer.from_file(str(OUT / "llama2.tokenizer.json"))
    tok.add_tokens([AddedToken("<custom>", special=False, normalized=True),
                    AddedToken("single", special=False, single_word=True, normalized=False)])
    tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, rstrip=True, normalized=False)])
    write("llama2-added", tok)


def smollm_overlap():
    tok = Tokenizer.from_file(str(OUT / "smollm.tokenizer.json"))
    tok.add_tokens([AddedToken("<|im", special=False, normalized=False),
                    AddedToken("_end|>", special=False, normalized=False),
                    AddedToken("singleword", special=False, single_word=True, normalized=False),
                    AddedToken("single", special=False, normalized=False),
                    AddedToken("wordy", special=False, normalized=False)])
    write("smollm-overlap", tok)


def gemma():
    # Learned on ▁-joined ASCII text only: every other character needs its UTF-8 bytes.
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "▁")
    trainer = trainers.BpeTrainer(vocab_size=140, show_progress=False)
    tok.train_from_iterator([line for line in CORPUS if line.isascii()], trainer)
    learned = json.loads(tok.to_str())["model"]
    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(learned["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(pair) for pair in learned["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous", invert=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)])
    write("gemma", tok, texts=GEMMA_TEXTS)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    base = gpt2()
    smollm()
    opt()
    roberta(base)
    llama3()
    vocab, merges = sentencepiece_vocab()
    llama2(vocab, merges)
    metaspace(vocab, merges)
    llama2_added(vocab, merges)
    smollm_overlap()
    gemma()
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total / 1024:.0f} KiB, to {OUT}")


if __name__ == "__main__":
    main()
