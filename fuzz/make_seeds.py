#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/TARGET/: small valid files of every form each reader
accepts, so libFuzzer starts from inputs that get past the magic numbers and into the parsers.
Standard library only; run from anywhere: python3 fuzz/make_seeds.py"""

import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    assert len(data) <= 4096, f"{target}/{name} is {len(data)} bytes; run.sh caps inputs at 4096"
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


# MARK: GGUF (ggml docs/gguf.md): little-endian; strings are u64 length + bytes.

def gguf_string(s):
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


SCALAR = {"u8": (0, "<B"), "i8": (1, "<b"), "u16": (2, "<H"), "i16": (3, "<h"), "u32": (4, "<I"),
          "i32": (5, "<i"), "f32": (6, "<f"), "bool": (7, "<?"), "u64": (10, "<Q"), "i64": (11, "<q"),
          "f64": (12, "<d")}


def gguf_value(kind, value):
    """(type id, payload) for a scalar kind, "str", or ("arr", element kind)."""
    if kind == "str":
        return 8, gguf_string(value)
    if isinstance(kind, tuple):
        element = kind[1]
        if element == "str":
            body = b"".join(gguf_string(v) for v in value)
            type_id = 8
        else:
            type_id, fmt = SCALAR[element]
            body = b"".join(struct.pack(fmt, v) for v in value)
        return 9, struct.pack("<IQ", type_id, len(value)) + body
    type_id, fmt = SCALAR[kind]
    return type_id, struct.pack(fmt, value)


def gguf(metadata, tensors, alignment=32):
    """metadata: [(key, kind, value)]; tensors: [(name, ne innermost first, ggml type, data)]."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, kind, value in metadata:
        type_id, payload = gguf_value(kind, value)
        out += gguf_string(key) + struct.pack("<I", type_id) + payload
    offset = 0
    placed = []
    for name, ne, ggml_type, data in tensors:
        out += gguf_string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", ggml_type, offset)
        placed.append(data)
        offset = (offset + len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    for data in placed:
        out += data + b"\0" * (-len(data) % alignment)
    return out


def half_bytes(values):
    return b"".join(struct.pack("<e", v) for v in values)


def gguf_seeds():
    floats = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
    q8_0 = half_bytes([0.25]) + bytes(range(32))                     # one Q8_0 block: f16 d, 32 int8
    q4_0 = half_bytes([0.5]) + bytes(range(0, 256, 16))              # one Q4_0 block: f16 d, 16 bytes
    q4_1 = half_bytes([0.5, -1.0]) + bytes(range(16))
    q5_0 = half_bytes([0.5]) + struct.pack("<I", 0xF0F0F0F0) + bytes(range(16))
    q5_1 = half_bytes([0.5, 1.0]) + struct.pack("<I", 0x0F0F0F0F) + bytes(range(16))
    write("gguf", "tensors.gguf", gguf(
        [("general.architecture", "str", "llama"), ("general.alignment", "u32", 32),
         ("llama.block_count", "u32", 1), ("llama.rope.freq_base", "f32", 10000.0),
         ("flag", "bool", True), ("big", "u64", 1 << 40), ("neg", "i64", -5), ("d", "f64", 0.125),
         ("small", ("arr", "i8"), [-1, 0, 1]), ("wide", ("arr", "u64"), [1, 2]),
         ("flags", ("arr", "bool"), [True, False])],
        [("f32.weight", [2, 2], 0, floats), ("f16.weight", [4], 1, half_bytes([1, 2, 3, 4])),
         ("q8_0.weight", [32], 8, q8_0), ("q4_0.weight", [32], 2, q4_0), ("q4_1.weight", [32], 3, q4_1),
         ("q5_0.weight", [32], 6, q5_0), ("q5_1.weight", [32], 7, q5_1),
         ("bf16.weight", [2], 30, struct.pack("<2H", 0x3F80, 0xC000)),
         ("f64.weight", [1, 1], 28, struct.pack("<d", 2.5))]))
    # One super-block of each K-quant and IQ4 type: patterned bytes with finite f16 factors at
    # the offsets each layout keeps them (d, dmin), so the fuzzer starts inside every dequantiser.
    def block(size, factors, f32_d=False):
        data = bytearray((7 * i + 3) % 256 for i in range(size))
        for offset, value in factors:
            data[offset:offset + 2] = half_bytes([value])
        if f32_d:
            data[0:4] = struct.pack("<f", 0.5)
        return bytes(data)
    write("gguf", "kquants.gguf", gguf(
        [("general.architecture", "str", "llama")],
        [("q2_K.weight", [256], 10, block(84, [(80, 0.5), (82, 0.25)])),
         ("q3_K.weight", [256], 11, block(110, [(108, 0.5)])),
         ("q4_K.weight", [256], 12, block(144, [(0, 0.5), (2, 0.25)])),
         ("q5_K.weight", [256], 13, block(176, [(0, 0.5), (2, 0.25)])),
         ("q6_K.weight", [256], 14, block(210, [(208, 0.5)])),
         ("q8_K.weight", [256], 15, block(292, [], f32_d=True)),
         ("iq4_nl.weight", [32], 20, block(18, [(0, 0.5)])),
         ("iq4_xs.weight", [256], 23, block(136, [(0, 0.5)]))]))
    # A byte-level (gpt2) vocabulary, as a SmolLM2 GGUF carries one.
    tokens = ["<|endoftext|>", "H", "e", "l", "o", "Ġ", "w", "r", "d", "He", "ll", "llo", "Ġw", "Hello", "1", "2", "3"]
    write("gguf", "vocab-gpt2.gguf", gguf(
        [("tokenizer.ggml.model", "str", "gpt2"), ("tokenizer.ggml.pre", "str", "smollm"),
         ("tokenizer.ggml.tokens", ("arr", "str"), tokens),
         ("tokenizer.ggml.token_type", ("arr", "i32"), [3] + [1] * (len(tokens) - 1)),
         ("tokenizer.ggml.merges", ("arr", "str"), ["H e", "l l", "ll o", "Ġ w", "He llo"]),
         ("tokenizer.ggml.bos_token_id", "u32", 0), ("tokenizer.ggml.eos_token_id", "u32", 0),
         ("tokenizer.ggml.add_bos_token", "bool", False)], []))
    # A SentencePiece (llama) vocabulary: scores instead of merges, byte fallback tokens.
    pieces = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x41>", "▁", "H", "e", "l", "o", "▁H", "ll", "▁Hell", "▁Hello", "ello"]
    write("gguf", "vocab-llama.gguf", gguf(
        [("tokenizer.ggml.model", "str", "llama"),
         ("tokenizer.ggml.tokens", ("arr", "str"), pieces),
         ("tokenizer.ggml.scores", ("arr", "f32"), [0.0, 0.0, 0.0, 0.0, 0.0] + [-float(i) for i in range(len(pieces) - 5)]),
         ("tokenizer.ggml.token_type", ("arr", "i32"), [2, 3, 3, 6, 6] + [1] * (len(pieces) - 5)),
         ("tokenizer.ggml.bos_token_id", "u32", 1), ("tokenizer.ggml.eos_token_id", "u32", 2)], []))


def gguf_model_seeds():
    """A whole Llama model small enough for libFuzzer's 4 KB inputs: width 8, one layer, two query
    heads sharing one KV head, FFN 16, vocabulary 4, weights in f16."""
    d, ffn, vocab, kv = 8, 16, 4, 4
    def f16(rows, cols, scale=0.1):
        return half_bytes([((i * 7) % 11 - 5) * scale for i in range(rows * cols)])
    tensors = [("token_embd.weight", [d, vocab], 1, f16(vocab, d)),
               ("blk.0.attn_norm.weight", [d], 0, struct.pack(f"<{d}f", *([1.0] * d))),
               ("blk.0.attn_q.weight", [d, d], 1, f16(d, d)),
               ("blk.0.attn_k.weight", [d, kv], 1, f16(kv, d)),
               ("blk.0.attn_v.weight", [d, kv], 1, f16(kv, d)),
               ("blk.0.attn_output.weight", [d, d], 1, f16(d, d)),
               ("blk.0.ffn_norm.weight", [d], 0, struct.pack(f"<{d}f", *([1.0] * d))),
               ("blk.0.ffn_gate.weight", [d, ffn], 1, f16(ffn, d)),
               ("blk.0.ffn_up.weight", [d, ffn], 1, f16(ffn, d)),
               ("blk.0.ffn_down.weight", [ffn, d], 1, f16(d, ffn)),
               ("output_norm.weight", [d], 0, struct.pack(f"<{d}f", *([1.0] * d)))]
    metadata = [("general.architecture", "str", "llama"), ("llama.embedding_length", "u32", d),
                ("llama.attention.head_count", "u32", 2), ("llama.attention.head_count_kv", "u32", 1),
                ("llama.feed_forward_length", "u32", ffn), ("llama.block_count", "u32", 1),
                ("llama.context_length", "u32", 16), ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5),
                ("llama.rope.freq_base", "f32", 10000.0),
                ("tokenizer.ggml.model", "str", "gpt2"), ("tokenizer.ggml.tokens", ("arr", "str"), ["a", "b", "ab", "Ġ"]),
                ("tokenizer.ggml.merges", ("arr", "str"), ["a b"]), ("tokenizer.ggml.eos_token_id", "u32", 3)]
    write("gguf_model", "tiny-llama.gguf", gguf(metadata, tensors))
    # With its own LM head and an 8-byte alignment.
    write("gguf_model", "tiny-llama-untied.gguf", gguf(
        metadata + [("general.alignment", "u32", 8)],
        tensors + [("output.weight", [d, vocab], 1, f16(vocab, d, 0.05))], alignment=8))


# MARK: safetensors: u64 header length, JSON header, data.

def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    write("safetensors", "mixed.safetensors", safetensors(
        [("a.weight", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
         ("b.weight", "F16", [3], half_bytes([1, -1, 0.5])),
         ("c.weight", "BF16", [1, 2], struct.pack("<2H", 0x3F80, 0x4000)),
         ("empty", "F32", [0, 4], b""), ("ids", "I64", [2], struct.pack("<2q", 0, 1))],
        {"format": "pt"}))
    write("safetensors", "scalar.safetensors", safetensors([("s", "F64", [], struct.pack("<d", 1.5))]))


# MARK: config.json: the model fixtures' own configs (Llama, Qwen2, OPT, Gemma 2 and 3, multimodal Gemma 3), and a Llama 3 RoPE one.

def config_seeds():
    fixtures = os.path.join(ROOT, "Tests", "ShadowModelsTests", "Fixtures")
    for name in ["tiny-llama", "tiny-qwen2", "tiny-opt", "tiny-opt-postln", "tiny-gemma2", "tiny-gemma3", "tiny-gemma3-vision"]:
        with open(os.path.join(fixtures, name, "config.json"), "rb") as f:
            write("config", f"{name}.json", f.read())
    write("config", "rope-parameters.json", json.dumps({
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "vocab_size": 100, "eos_token_id": [1, 2],
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 8192}}))


# MARK: tokenizer.json: small hand-made files for each pipeline the loader builds.

def added(i, content, special=True, **flags):
    token = {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": special}
    token.update(flags)
    return token


def tokenizer_seeds():
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    vocab = {t: i for i, t in enumerate(["<|endoftext|>", "H", "e", "l", "o", "Ġ", "w", "r", "d", "1", "2",
                                         "He", "ll", "llo", "Ġw", "Hello", "Ġwo"])}
    merges = [["H", "e"], ["l", "l"], ["ll", "o"], ["Ġ", "w"], ["He", "llo"], ["Ġw", "o"]]
    smollm = {"version": "1.0", "added_tokens": [added(0, "<|endoftext|>"), added(17, "<custom>", special=False)],
              "normalizer": None,
              "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                  {"type": "Digits", "individual_digits": True}, byte_level]},
              "post_processor": byte_level, "decoder": byte_level,
              "model": {"type": "BPE", "unk_token": None, "fuse_unk": False, "byte_fallback": False,
                        "ignore_merges": False, "vocab": vocab, "merges": merges}}
    write("tokenizer_json", "byte-level.json", json.dumps(smollm, ensure_ascii=False))
    # The same with a tokenizer_config.json after a NUL (the harness splits there).
    config = {"bos_token": "<|endoftext|>", "eos_token": {"content": "<|endoftext|>"}, "add_bos_token": True}
    write("tokenizer_json", "byte-level-config.bin",
          json.dumps(smollm, ensure_ascii=False).encode() + b"\0" + json.dumps(config).encode())

    pieces = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x41>", "▁", "H", "e", "l", "o", "▁H", "ll", "▁Hell", "▁Hello"]
    llama2 = {"version": "1.0",
              "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>"),
                               added(14, "<mask>", lstrip=True, rstrip=True), added(15, "single", special=False, single_word=True)],
              "normalizer": {"type": "Sequence", "normalizers": [
                  {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
              "pre_tokenizer": None,
              "post_processor": {"type": "TemplateProcessing",
                                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                                 "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
              "decoder": {"type": "Sequence", "decoders": [
                  {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
                  {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
              "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                        "ignore_merges": False, "vocab": {p: i for i, p in enumerate(pieces)},
                        "merges": ["▁ H", "l l", "▁H e", "▁He ll", "▁Hell o"]}}
    # "▁He" is missing from the vocabulary on purpose: merges must name known tokens, so drop it.
    llama2["model"]["merges"] = ["▁ H", "l l"]
    write("tokenizer_json", "sentencepiece.json", json.dumps(llama2, ensure_ascii=False))

    metaspace = dict(llama2, normalizer=None,
                     pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
                     decoder={"type": "Sequence", "decoders": [
                         {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}]})
    write("tokenizer_json", "metaspace.json", json.dumps(metaspace, ensure_ascii=False))

    llama3 = dict(smollm, pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        dict(byte_level, use_regex=False)]})
    llama3["model"] = dict(smollm["model"], ignore_merges=True)
    write("tokenizer_json", "llama3-split.json", json.dumps(llama3, ensure_ascii=False))

    roberta = dict(smollm, pre_tokenizer=dict(byte_level, add_prefix_space=True),
                   added_tokens=[added(0, "<|endoftext|>"), added(17, "<s>"), added(18, "</s>")],
                   post_processor={"type": "RobertaProcessing", "sep": ["</s>", 18], "cls": ["<s>", 17],
                                   "trim_offsets": True, "add_prefix_space": True})
    write("tokenizer_json", "roberta.json", json.dumps(roberta, ensure_ascii=False))

    # Gemma's shape: spaces replaced by "▁", then a Split on a literal " " (MergedWithPrevious).
    gemma = dict(llama2, normalizer={"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
                 pre_tokenizer={"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                                "invert": False},
                 decoder={"type": "Sequence", "decoders": llama2["decoder"]["decoders"][:3]})
    write("tokenizer_json", "gemma-split.json", json.dumps(gemma, ensure_ascii=False))


def tokenize_seeds():
    # First byte picks the fixture (Harness.fixtures, 8 of them); the rest is the text.
    texts = ["Hello world", "The year 2024: 12345 items!", "naïve café — 日本語 🙂", "<|im_start|>user\nhi<|im_end|>",
             "  leading   spaces\t\ttabs\r\n", "<s> <mask> single singles </s>", "I'm here, aren't you? 's 'll",
             "\u00a0\u2003\u0301e\u0000\ufffd"]
    for index, text in enumerate(texts):
        write("tokenize", f"text-{index}", bytes([index]) + text.encode("utf-8"))


# MARK: task files, in every form each reader takes.

def task_seeds():
    jl = lambda objects: "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)
    write("piqa", "inline.jsonl", jl([{"goal": "Keep a door open", "sol1": "Wedge a shoe under it.", "sol2": "Tie it.", "label": 0},
                                      {"goal": "dry wet shoes", "sol1": "newspaper", "sol2": "oven", "label": "1"}]))
    write("piqa", "with-labels.bin", jl([{"goal": "g", "sol1": "a", "sol2": "b"}, {"goal": "h", "sol1": "c", "sol2": "d"}])
          + "\0" + "1\r\n0\r\n")
    write("hellaswag", "val.jsonl", jl([{"activity_label": "Personal Care", "ctx_a": "[header] How to dye [title] Buy dye.",
                                         "ctx_b": "MIX it  well", "endings": ["  [step] Rinse.  ", "Wait [a] b [c", "x   y", "z"],
                                         "label": "0"}]))
    write("hellaswag", "llama-cpp.txt", "Roof: A man is on a roof. he\r\n3\r\nis using wrap.\r\n is ripping tiles.\r\n"
                                        "holds a cube.\r\nstarts pulling.\r\nHome: [header] x [title] y.\n0\nBuy  paint.\nb\nc\nd\n")
    write("copa", "superglue.jsonl", jl([{"premise": "My body cast a shadow.", "choice1": "The sun rose.", "choice2": "Grass was cut.",
                                          "question": "cause", "label": 0, "idx": 0},
                                         {"premise": " The man turned on the faucet. ", "choice1": "Water flowed.",
                                          "choice2": "Soap fell.", "question": "effect", "label": 1, "idx": 1}]))
    write("copa", "copa-dev.xml", """<?xml version="1.0" encoding="utf-8"?>
<copa-corpus version="1.0">
  <item id="1" asks-for="cause" most-plausible-alternative="1">
    <p>My body cast a shadow over the grass.</p>
    <a1>The sun was rising.</a1>
    <a2>The grass was cut.</a2>
  </item>
  <item most-plausible-alternative='2' id="2" asks-for="effect"><p>The man turned on the faucet.</p>
    <a1>The toilet filled &#x41; &#65; &lt;.</a1><a2>Water &amp; soap &quot;flowed&apos;.</a2></item>
</copa-corpus>
""")
    write("ai2", "arc.jsonl", jl([
        {"id": "M1", "question": {"stem": "Which is a gas?", "choices": [{"text": "ice", "label": "A"}, {"text": "steam", "label": "B"}]},
         "answerKey": "B"},
        {"id": "N2", "question": {"stem": "Pick", "choices": [{"text": "x", "label": "1"}, {"text": "y", "label": "2"}]}, "answerKey": "2"},
        {"id": "hf", "question": "Which is heavier?", "choices": {"text": ["a feather", "a brick"], "label": ["A", "B"]}, "answerKey": "B"}]))
    write("ai2", "openbookqa.jsonl", jl([
        {"id": "7-584", "question_stem": "When food is reduced", "choices": {"text": ["a", "b", "c", "d"], "label": ["A", "B", "C", "D"]},
         "answerKey": " C"},
        {"query": "A magnet will stick to", "choices": ["a buckle", "a table"], "gold": 0}]))
    write("winogrande", "dev.jsonl", jl([{"qID": "3D-1", "sentence": "Sarah beat Maria so _ got the cases.", "option1": "Sarah",
                                          "option2": "Maria", "answer": "1"},
                                         {"sentence": "_ is  here. ", "option1": "The cat", "option2": "The dog", "answer": 2}]))
    write("winogrande", "with-labels.bin", jl([{"sentence": "A _ b.", "option1": "x", "option2": "y"}]) + "\0" + "2\n")
    write("rte", "superglue.jsonl", jl([{"premise": "No weapons found.", "hypothesis": "Weapons found.", "label": "not_entailment", "idx": 0},
                                        {"premise": "A cat sat.", "hypothesis": "A cat exists.", "label": 0, "idx": 1},
                                        {"sentence1": "A dog ran.", "sentence2": "A dog moved.", "label": "entailment"}]))
    write("rte", "dev.tsv", "index\tsentence1\tsentence2\tlabel\r\n0\tNo weapons.\tWeapons.\tnot_entailment\r\n1\tA cat.\tA cat.\tentailment\r\n")
    write("boolq", "val.jsonl", jl([{"question": "is the sky blue", "passage": "The sky is blue.", "label": True},
                                    {"question": "is it green", "passage": "No.", "answer": False, "title": "Sky"},
                                    {"question": "q", "passage": "p", "label": 1}]))
    write("lambada", "test.jsonl", jl([{"text": "his mouth curved in a grin , i do n't care about signs"},
                                       {"text": "she said\n\n\" come with me , \" and took the lead.  Then  Jack"}]))
    write("wikitext", "test.txt", " \n = Robert <unk> = \n \n Robert <unk> is an English actor .\r\n = = Career = = \n")
    write("python_text", "text.txt", "  [header] How to  dye [title] Buy   it.\u001c ÉCOLE naïve [a] b [c\n")


if __name__ == "__main__":
    shutil.rmtree(CORPUS, ignore_errors=True)
    gguf_seeds()
    gguf_model_seeds()
    safetensors_seeds()
    config_seeds()
    tokenizer_seeds()
    tokenize_seeds()
    task_seeds()
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print(f"{target}: {len(files)} seeds, {size} bytes")
