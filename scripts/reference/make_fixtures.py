#!/usr/bin/env python3
"""Reference fixtures for the Swift tests of ShadowLLM.

Usage:
    python3 scripts/reference/make_fixtures.py [--smollm2 PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf] [--out DIR]
                                               [--only NAME,...]

--only rewrites just the named fixtures (e.g. --only tiny-qwen3), leaving the others as they are.

Writes into Tests/ShadowModelsTests/Fixtures/ (or --out):

  tiny-llama/           LlamaForCausalLM, GQA 4/2, head_dim 16, untied lm_head, float32, saved SHARDED
                        (model-00001-of-00002.safetensors, model-00002-of-00002.safetensors and
                        model.safetensors.index.json). config.json rewritten in the transformers-4.x layout
                        (top-level "rope_theta", "torch_dtype") that most downloaded hub directories have.
  tiny-llama-tied/      LlamaForCausalLM, 4/4 heads, tie_word_embeddings, rope theta 50000, float32,
                        config.json exactly as transformers 5 writes it ("rope_parameters": {"rope_theta",
                        "rope_type"}, "dtype").
  tiny-qwen2/           Qwen2ForCausalLM, GQA 4/2, random non-zero q/k/v biases, tied, rope theta 1e6, stored
                        as bfloat16, config.json in the transformers-4.x layout (as tiny-llama).
  tiny-qwen3/           Qwen3ForCausalLM, GQA 4/2, head_dim 24 (not hidden / heads), random q_norm / k_norm
                        weights, tied, rope theta 1e6, float32, config.json as transformers 5 writes it.
  tiny-opt/             OPTForCausalLM pre-LN (like opt-125m), random biases and LayerNorm weights, tied,
                        stored as float16.
  tiny-opt-postln/      OPTForCausalLM post-LN like opt-350m: do_layer_norm_before=false,
                        word_embed_proj_dim 32 != hidden 64 (project_in / project_out), float32.
  tiny-llama-gguf/      model.gguf: a llama GGUF laid out like llama.cpp's converter output (attn_q / attn_k
                        rows permuted for adjacent-pair RoPE), rope freq_base 30000, with Q8_0, Q4_0, Q4_1, F16, BF16 and F32
                        tensors, and byte-level BPE tokenizer metadata.
  tiny-llama-bias/      LlamaForCausalLM with attention_bias (q, k, v, o) and mlp_bias (gate, up, down), random
                        biases, GQA 4/2, untied, float32.
  tiny-qwen3-gguf/      model.gguf: tiny-qwen3's float32 weights as llama.cpp's qwen3 GGUF (attn_q_norm,
                        attn_k_norm, attention.key_length 24), byte-level BPE tokenizer metadata; expected.json
                        is tiny-qwen3's.
  tiny-llama-bias-gguf/ the same for tiny-llama-bias as a llama GGUF (attn_q / attn_k rows and biases permuted).
  tiny-smollm3/         SmolLM3ForCausalLM, 4 layers, the 4th without RoPE (NoPE), GQA 4/2, tied, float32;
  tiny-smollm3-gguf/    and as a smollm3 GGUF (Q/K permuted as for llama; llama.cpp leaves RoPE out of every 4th layer).
  tiny-phi3/            Phi3ForCausalLM: fused qkv_proj (rows q, k, v) and gate_up_proj (rows gate, then up), GQA 4/2,
                        head_dim 16, untied, rope theta 10000, no sliding window, float32.
  tiny-phi3-longrope/   Phi3ForCausalLM like Phi-3.5 / Phi-4-mini: partial_rotary_factor 0.75 (12 of 16 dims rotate),
                        "longrope" with random short / long factors, max_position_embeddings 128 over
                        original_max_position_embeddings 32 (cos / sin scaled by sqrt(1 + ln 4 / ln 32)), 3 layers,
                        tied, float32; the sequences are shorter than 32, so the short factors apply, and
                        expected.json's reference.long_sequence is one pass over 48 tokens, all rotated with the
                        long factors.
  tiny-phi3-longrope-gguf/ model.gguf: tiny-phi3-longrope's float32 weights as llama.cpp's phi3 GGUF (attn_qkv and
                        ffn_up = gate_up kept fused and unpermuted, rope_factors_long / rope_factors_short,
                        rope.dimension_count 12, rope.scaling.attn_factor, sliding_window 0); expected.json is
                        tiny-phi3-longrope's.
  tiny-mistral-window/  MistralForCausalLM, sliding_window 5 (shorter than the 12 / 13-token sequences: key j is seen
                        by query i only if i - 5 < j <= i), 2 layers, GQA 4/2, head_dim 16, untied, float32.
  tiny-qwen2-window/    Qwen2ForCausalLM, use_sliding_window, sliding_window 4, max_window_layers 1: layer_types
                        [full, sliding, sliding] (layer 0 attends fully), 3 layers, GQA 4/2, random q/k/v biases,
                        tied, float32. For both window fixtures expected.json's "reference" records layer_types and
                        "window_matters": max |logits - logits of the same weights without the window| (> 1e-3).
  tiny-gemma3/          Gemma3ForCausalLM (model_type gemma3_text), 4 layers, layer_types [sliding, sliding, full,
                        sliding] with sliding_window 5, GQA 4/2, head_dim 24, query_pre_attn_scalar 20 (attention
                        scale 20^-0.5, not head_dim^-0.5), RoPE per layer type (full: linear factor 2, theta 1e6;
                        sliding: default, theta 1e4), GELU-tanh MLP, four RMSNorms per layer plus q_norm / k_norm,
                        all scaling by (1 + weight), embeddings times sqrt(hidden) = 8, tied, float32. Its
                        tokenizer.json is Gemma-style, not byte-level (train_gemma_bpe): BPE with byte_fallback and
                        fuse_unk over <pad> <eos> <bos> <unk> <mask> (ids 0..4), <0x00>..<0xFF> (5..260) and learnt
                        pieces, normalizer Replace(" ", "▁"), pre-tokenizer Split(" ", merged_with_previous) (a
                        no-op after the normalizer), decoder Replace / ByteFallback / Fuse, <bos> prepended (so
                        input_ids[0] starts with 2). "reference" records layer_types, sliding_window,
                        query_pre_attn_scalar, the RoPE parameters and inv_freq per layer type, and, each > 1e-3,
                        window_matters, query_pre_attn_scalar_matters, rope_matters, rope_linear_factor_matters and
                        local_rope_theta_matters (gemma_settings_matter).
  tiny-gemma2/          Gemma2ForCausalLM (model_type gemma2), 4 layers, layer_types [sliding, full, sliding, full]
                        (Gemma2Config's default: even layers slide; written out in config.json) with sliding_window 5,
                        GQA 4/2, head_dim 24, query_pre_attn_scalar 20, one RoPE (default, theta 1e4) for every layer,
                        attn_logit_softcapping 2 (every scaled attention score s becomes 2 tanh(s / 2) before the
                        mask) and final_logit_softcapping 3 (logits 3 tanh(z / 3)): the released 50 / 30 would be
                        nearly linear on this model, whose scores reach about 4 and logits about 11. GELU-tanh MLP,
                        four (1 + weight) RMSNorms per layer and no q_norm / k_norm, embeddings times 8, tied,
                        float32, tiny-gemma3's tokenizer. "reference" records layer_types, sliding_window,
                        query_pre_attn_scalar, both softcaps, the largest score and logit before capping, and, each
                        > 1e-3, window_matters, query_pre_attn_scalar_matters, attn_logit_softcapping_matters and
                        final_logit_softcapping_matters (gemma_settings_matter).
  tiny-gemma3-vision/   Gemma3ForConditionalGeneration (model_type gemma3, as gemma-3-4b and larger): tiny-gemma3's
                        text shape (own weights) beside a one-layer SigLIP tower and projector, laid out as
                        google/gemma-3-4b-it was published (transformers 4.50): keys language_model.model.*,
                        vision_tower.vision_model.*, multi_modal_projector.*, no lm_head (tied); config.json with
                        top-level eos_token_id [1, 106] and image token ids, text_config holding only non-default keys
                        in 4.50's names (sliding_window_pattern 3, rope_scaling linear 2, default rope_theta /
                        rope_local_base_freq). tiny-gemma3's tokenizer and input_ids; logits of the text-only forward
                        (equal to Gemma3ForCausalLM's on the same weights).
  tiny-gemma3-gguf/     model.gguf: a gemma3 GGUF as llama.cpp's converter writes it (norm weights stored + 1, Q/K
                        not permuted, rope.scaling linear 2, rope.freq_base_swa, sliding_window 5, key_length 24),
                        byte-level BPE tokenizer metadata. llama.cpp fixes what a GGUF cannot say (every 6th layer
                        full, local theta 1e4, scale 1/sqrt(key_length)), so this is its own 7-layer model (layer 5
                        full, query_pre_attn_scalar 24) with its own expected.json from transformers, cross-checked
                        against the file read back and a numpy forward written after llama.cpp's graph.
  tiny-gemma2-gguf/     model.gguf: a gemma2 GGUF as llama.cpp's converter writes it (norm weights stored + 1, Q/K
                        not permuted, no output.weight, attention.sliding_window 5, attn_logit_softcapping 2,
                        final_logit_softcapping 3, key_length 24, rope.freq_base 10000), byte-level BPE tokenizer
                        metadata. llama.cpp fixes what a GGUF cannot say (even layers slide, scale
                        1/sqrt(key_length)), so this is its own 5-layer model (layers 0, 2, 4 slide;
                        query_pre_attn_scalar 24) with its own expected.json from transformers, cross-checked the same
                        way as tiny-gemma3-gguf.
  smollm2-expected.json only with --smollm2: tokenisation, log-likelihoods, last-position logits and greedy
                        continuation of SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised, float64 forward).

Each tiny directory also holds tokenizer.json (a byte-level BPE trained here on the fixed text CORPUS; Gemma-style
for tiny-gemma3, tiny-gemma3-vision and tiny-gemma2) and expected.json:

  {
    "input_ids": [[int]],            two sequences, ids passed to the model as they are (no BOS added)
    "logits":    [[[float]]],        [sequence][position][vocab], float32 values
    "nll_sum":   [float],            per sequence: sum over t = 1..T-1 of -log softmax(logits[t-1])[ids[t]]
    "predicted_tokens": [int],       per sequence: T - 1
    "tokenizer": {"texts": [str], "ids": [[int]]}   encode(text, add_special_tokens=True) of tokenizer.json
    "reference": {...}               how the numbers were made (versions, compute dtype, storage dtype)
  }

Expected logits are computed by transformers' own model in eval mode with eager attention, in float64,
after loading the directory that was just written (so the weights are exactly the stored, possibly
bf16/f16-rounded, values). For the GGUF the reference is a Hugging Face LlamaForCausalLM holding the
DEQUANTISED weights read back from model.gguf, with attn_q / attn_k rows un-permuted to HF layout; a small
numpy forward that applies adjacent-pair RoPE directly to the permuted GGUF weights cross-checks it.

Everything is deterministic: fixed seeds (torch.manual_seed / numpy default_rng with SEED), a fixed training
text for the tokenizers, float64 forwards on CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import gguf
import safetensors
import tokenizers
import transformers
from gguf import GGMLQuantizationType as QT
from gguf import GGUFReader, GGUFWriter
from gguf import quants as gquants
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from safetensors.torch import save_file
from transformers import (Gemma2Config, Gemma2ForCausalLM, Gemma3Config, Gemma3ForCausalLM,
                          Gemma3ForConditionalGeneration, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM,
                          MistralConfig, MistralForCausalLM, OPTConfig, OPTForCausalLM, Phi3Config, Phi3ForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM, SiglipVisionConfig,
                          SmolLM3Config, SmolLM3ForCausalLM)

SEED = 1234
VOCAB = 384          # every tiny model and tokenizer
HIDDEN = 64
FFN = 128
MAX_POS = 128

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "Tests" / "ShadowModelsTests" / "Fixtures"

# Training text for the tiny byte-level BPE tokenizers (written for this script).
CORPUS = """\
The little engine reads a prompt, runs the first layer, and asks a small network which heads and which
neurons of the later layers will matter for this input. Then it skips the rest. A head that is skipped
costs nothing: no queries, no scores, no softmax, and no slice of the output projection. A neuron that is
skipped costs nothing either, because its row of the up projection and its column of the down projection
are never read. The result should be the same as the dense model with those units set to zero.

On a quiet morning the baker opened the shop at 6:30 and sold 42 loaves before 8 o'clock. She wrote the
numbers in a notebook: 12, 7, 23, and then 100 in the afternoon. The price of a loaf was 3.50 and the price
of a cake was 12.75, so the total for the week came to 1,234.25 in the end. Her brother thought that the
weather would change, but the sky stayed clear and the river stayed calm.

def count_words(text):
    counts = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    return counts

for i in range(10):
    print(i, i * i)  # squares

Questions are easy to ask and harder to answer. What is the capital of the country? Which of these is
true? Is the statement false? The answer is yes, the answer is no, and sometimes the answer is that there
is not enough information in the text to decide. A careful reader checks the question twice.

The model has layers, and every layer has attention and a feed forward part. The attention part has heads;
the feed forward part has neurons. Some of them are important for one sentence and not for another, which
is why the prediction depends on the input. When the predictor is good, the sparse model keeps its
accuracy while it reads fewer weights from memory, and memory is what limits the speed of decoding.
"""

# Texts whose tokenisation is recorded in every tiny expected.json.
TOKENIZER_TEXTS = [
    "Hello, world! The year 2024 has 366 days.",
    "café naïve — 東京",
    "def add(a, b):\n    return a + b  # sum\n",
    "  leading spaces,   runs of   spaces\n\n\nand newlines\t\ttabs ",
    "It's a test: don't, won't, I'm, you've... OK?",
    "Prices: $3.50, 1,000,000 items; e-mail me@example.com",
]

# Text whose tokens form the first input sequence of each tiny model.
MODEL_TEXT = "The baker opened the shop and sold 42 loaves before the river stayed calm."
SEQ_LEN = 12


# --------------------------------------------------------------------------------------------------------
# Helpers

def f32(x) -> float:
    """A Python float whose repr is the shortest string that round-trips the float32 value of x."""
    return float(str(np.float32(x)))


def f32_list(a) -> list:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0:
        return f32(a)
    return [f32_list(v) for v in a] if a.ndim > 1 else [f32(v) for v in a]


def write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, separators=(",", ":"))
        fh.write("\n")


def nll_sums(logits: torch.Tensor, ids: list[int]) -> float:
    """Sum over t = 1..T-1 of the cross-entropy of ids[t] given logits at t-1 (float64)."""
    lp = torch.log_softmax(logits.double(), dim=-1)
    return float(-sum(lp[t - 1, ids[t]].item() for t in range(1, len(ids))))


def reference_info(**extra) -> dict:
    info = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "compute_dtype": "float64",
        "note": "transformers computes RMSNorm, attention softmax and RoPE cos/sin in float32 even in a "
                "float64 model; logits are therefore accurate to float32 rounding (about 1e-6)",
        "attn_implementation": "eager",
    }
    info.update(extra)
    return info


# --------------------------------------------------------------------------------------------------------
# Tokenizers

def train_byte_level_bpe(specials: list[str], bos_template: str | None) -> Tokenizer:
    """GPT-2 style byte-level BPE with exactly VOCAB entries, specials first (ids 0..).

    bos_template: if given (OPT), a TemplateProcessing post-processor prepends this special token;
    otherwise the GPT-2 ByteLevel post-processor is used, which adds nothing.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS], trainer)
    assert tok.get_vocab_size() == VOCAB, f"trainer produced {tok.get_vocab_size()} tokens, wanted {VOCAB}"
    if bos_template is None:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        bos_id = tok.token_to_id(bos_template)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_template} $A", pair=f"{bos_template} $A {bos_template} $B",
            special_tokens=[(bos_template, bos_id)])
    return tok


LLAMA_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]   # ids 0, 1, 2 as in SmolLM2
OPT_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]                   # ids 0, 1, 2, 3 as in OPT
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]    # ids 0..4 as in Gemma


def gemma_pipeline(tok: Tokenizer) -> None:
    """The normalizer, pre-tokenizer and decoder that transformers' GemmaTokenizer builds. The normalizer runs
    first, so the Split on " " never finds a space: a text is one pre-token, and merges may cross words."""
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])


def train_gemma_bpe() -> Tokenizer:
    """Gemma (SentencePiece-converted) style BPE with exactly VOCAB entries: GEMMA_SPECIALS (ids 0..4), the 256
    byte tokens <0x00>..<0xFF> (ids 5..260) for byte fallback, then the characters and merges learnt from CORPUS
    through the Gemma pipeline (ids 261..). BPE(byte_fallback, fuse_unk, unk <unk>); a TemplateProcessing
    post-processor prepends <bos>."""
    learner = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    gemma_pipeline(learner)
    learner.train_from_iterator([CORPUS], trainers.BpeTrainer(vocab_size=VOCAB - 256, special_tokens=GEMMA_SPECIALS,
                                                              show_progress=False))
    learnt = json.loads(learner.to_str())["model"]
    vocab = {t: i for i, t in enumerate(GEMMA_SPECIALS + [f"<0x{b:02X}>" for b in range(256)])}
    for t, _ in sorted(learnt["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(t, len(vocab))
    assert len(vocab) == VOCAB, f"{len(vocab)} tokens, wanted {VOCAB}"
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m) for m in learnt["merges"]], unk_token="<unk>",
                               fuse_unk=True, byte_fallback=True))
    gemma_pipeline(tok)
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in GEMMA_SPECIALS])
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos>:1 $B:1",
                                                       special_tokens=[("<bos>", vocab["<bos>"])])
    return tok


def save_tokenizer(tok: Tokenizer, path: Path, legacy_merges: bool) -> None:
    """Write tokenizer.json. tokenizers >= 0.20 writes merges as [a, b] pairs; with legacy_merges the
    older "a b" string form (which most hub files still carry) is written instead. Both load identically."""
    data = json.loads(tok.to_str())
    if legacy_merges:
        data["model"]["merges"] = [" ".join(p) for p in data["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    # The written file must load and tokenise identically.
    back = Tokenizer.from_file(str(path))
    for t in TOKENIZER_TEXTS:
        assert back.encode(t).ids == tok.encode(t).ids


def tokenizer_block(tok_path: Path) -> dict:
    tok = Tokenizer.from_file(str(tok_path))
    ids = [tok.encode(t, add_special_tokens=True).ids for t in TOKENIZER_TEXTS]
    for t, i in zip(TOKENIZER_TEXTS, ids):
        dec = tok.decode(i, skip_special_tokens=True)
        assert dec == t, (t, dec)
    return {"texts": TOKENIZER_TEXTS, "ids": ids}


def model_input_ids(tok_path: Path, seed: int) -> list[list[int]]:
    tok = Tokenizer.from_file(str(tok_path))
    first = tok.encode(MODEL_TEXT, add_special_tokens=True).ids[:SEQ_LEN]
    assert len(first) == SEQ_LEN
    rng = np.random.default_rng(seed)
    second = [int(v) for v in rng.integers(0, VOCAB, size=SEQ_LEN + 1)]
    return [first, second]


# --------------------------------------------------------------------------------------------------------
# Tiny Hugging Face checkpoints

def randomize(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter a random value of a sensible scale: matrices N(0, 1/fan_in), embeddings
    N(0, 0.25^2), norm weights 1 + N(0, 0.2^2), biases N(0, 0.1^2). Nothing stays zero or one.
    Gemma's norms (Gemma*RMSNorm) multiply by 1 + w, so theirs are N(0, 0.2^2), a gain near 1 as in the others (a
    gain near 2 in each of its 25 norms made logits so large that float32 gradients were off by 1e-4); the SigLIP
    LayerNorms of tiny-gemma3-vision's vision tower multiply by w and are centred on 1. Convolution kernels (ndim > 2,
    the vision tower's patch embedding) are N(0, 1/fan_in) with fan_in the product of all but the first dimension."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():   # shared (tied) tensors appear once
            if p.ndim == 2 and ("embed" in name or "lm_head" in name):
                v = torch.randn(p.shape, generator=g) * 0.25
            elif p.ndim == 2:
                v = torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1])
            elif p.ndim > 2:
                v = torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel())
            elif name.endswith("bias"):
                v = torch.randn(p.shape, generator=g) * 0.1
            else:                                    # RMSNorm / LayerNorm weights
                owner = type(model.get_submodule(name.rpartition(".")[0])).__name__
                norm_centre = 0.0 if owner.startswith("Gemma") and owner.endswith("RMSNorm") else 1.0
                v = norm_centre + torch.randn(p.shape, generator=g) * 0.2
            p.copy_(v.to(p.dtype))


def legacy_config(path: Path) -> None:
    """Rewrite a transformers-5 config.json into the transformers-4.x layout: top-level "rope_theta"
    instead of "rope_parameters", "torch_dtype" instead of "dtype". Key order otherwise unchanged."""
    cfg = json.loads(path.read_text())
    out = {}
    for k, v in cfg.items():
        if k == "rope_parameters":
            assert v.get("rope_type", "default") == "default" and set(v) <= {"rope_type", "rope_theta"}
            out["rope_theta"] = v["rope_theta"]
        elif k == "dtype":
            out["torch_dtype"] = v
        else:
            out[k] = v
    path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")


def save_sharded_in_two(model, out: Path) -> None:
    """save_pretrained with a max_shard_size chosen so that exactly two shard files come out."""
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    for frac in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8):
        tmp = Path(tempfile.mkdtemp())
        model.save_pretrained(tmp, max_shard_size=int(total * frac))
        shards = sorted(p.name for p in tmp.glob("model-*.safetensors"))
        if len(shards) == 2:
            for p in tmp.iterdir():
                shutil.move(str(p), out / p.name)
            shutil.rmtree(tmp)
            return
        shutil.rmtree(tmp)
    raise RuntimeError("could not obtain exactly two shards")


def compute_expected(out: Path, cls, input_ids: list[list[int]], storage_dtype: str,
                     rope_theta: float | None) -> dict:
    """Load the directory just written with transformers, upcast to float64, run every sequence."""
    model = cls.from_pretrained(out, attn_implementation="eager")
    if rope_theta is not None:   # the (possibly rewritten) config must be read back with the intended theta
        assert model.config.rope_parameters["rope_theta"] == rope_theta, model.config.rope_parameters
    model = model.to(torch.float64).eval()
    logits_all, nll = [], []
    with torch.no_grad():
        for ids in input_ids:
            logits = model(torch.tensor([ids])).logits[0]
            logits_all.append(f32_list(logits.numpy()))
            nll.append(nll_sums(logits, ids))
    return {
        "input_ids": input_ids,
        "logits": logits_all,
        "nll_sum": nll,
        "predicted_tokens": [len(i) - 1 for i in input_ids],
        "reference": reference_info(storage_dtype=storage_dtype,
                                    model_class=cls.__name__),
    }


# --only: the fixtures to write (None: all).
ONLY: set[str] | None = None

# tiny-phi3-longrope: rotary dims per head (partial_rotary_factor 0.75 of head_dim 16) and the pretraining
# length of LongRoPE (max_position_embeddings is MAX_POS = 128).
PHI3_ROTARY_DIMS = 12
PHI3_ORIGINAL_MAX_POS = 32
# The sequence of tiny-phi3-longrope's reference past the original context.
PHI3_LONG_SEQUENCE = 48


def phi3_longrope_attention_factor(max_pos: int, original_max_pos: int) -> float:
    """LongRoPE's cos / sin scale when no attention_factor is given (transformers and llama.cpp's converter)."""
    return math.sqrt(1 + math.log(max_pos / original_max_pos) / math.log(original_max_pos))


def phi3_longrope_reference(out: Path, input_ids: list[list[int]]) -> dict:
    """Checks that every sequence is within original_max_position_embeddings (so transformers rotates with
    the short factors) and records the RoPE numbers transformers used."""
    assert all(len(ids) <= PHI3_ORIGINAL_MAX_POS for ids in input_ids), [len(i) for i in input_ids]
    model = Phi3ForCausalLM.from_pretrained(out, attn_implementation="eager").to(torch.float64).eval()
    rp = model.config.rope_parameters
    assert rp["rope_type"] == "longrope" and rp["original_max_position_embeddings"] == PHI3_ORIGINAL_MAX_POS, rp
    rotary = int(model.config.hidden_size // model.config.num_attention_heads * rp["partial_rotary_factor"])
    assert rotary == PHI3_ROTARY_DIMS
    emb = model.model.rotary_emb
    with torch.no_grad():
        for ids in input_ids:
            model(torch.tensor([ids]))
    base = rp["rope_theta"] ** (torch.arange(0, rotary, 2, dtype=torch.int64).float() / rotary)
    short_inv = 1.0 / (torch.tensor(rp["short_factor"], dtype=torch.float32) * base)
    long_inv = 1.0 / (torch.tensor(rp["long_factor"], dtype=torch.float32) * base)
    assert torch.equal(emb.inv_freq.float(), short_inv), (emb.inv_freq, short_inv)
    assert not torch.equal(short_inv, long_inv)
    factor = phi3_longrope_attention_factor(model.config.max_position_embeddings, PHI3_ORIGINAL_MAX_POS)
    assert abs(emb.attention_scaling - factor) < 1e-12, (emb.attention_scaling, factor)
    # One pass over a sequence past the original context: transformers then rotates every position of
    # the pass with the long factors (as llama.cpp does for any context set past the original one).
    long_ids = [(i * 37 + 11) % model.config.vocab_size for i in range(PHI3_LONG_SEQUENCE)]
    with torch.no_grad():
        long_logits = model(torch.tensor([long_ids])).logits[0].double()
    assert torch.equal(emb.inv_freq.float(), long_inv), (emb.inv_freq, long_inv)
    long_nll = torch.nn.functional.cross_entropy(long_logits[:-1], torch.tensor(long_ids[1:]), reduction="sum").item()
    long_rows = [0, PHI3_ORIGINAL_MAX_POS - 1, PHI3_ORIGINAL_MAX_POS, PHI3_LONG_SEQUENCE - 1]
    return {
        "long_sequence": {
            "note": f"one pass over {PHI3_LONG_SEQUENCE} tokens (past original_max_position_embeddings "
                    f"{PHI3_ORIGINAL_MAX_POS}): every position rotated with long_factor",
            "input_ids": long_ids,
            "logits_rows": {str(r): [f32(v) for v in long_logits[r].numpy()] for r in long_rows},
            "nll_sum": long_nll,
            "rope_inv_freq": [f32(v) for v in long_inv.numpy()],
        },
        "rotary_dims": rotary,
        "rope_scaling": "longrope",
        "rope_factors_used": "short",
        "rope_factors_note": "every sequence is at most original_max_position_embeddings (32) long, so "
                             "transformers divides the frequencies by short_factor (long_factor applies beyond 32)",
        "attention_factor": factor,
        "attention_factor_formula": "sqrt(1 + ln(max_position_embeddings / original_max_position_embeddings) / "
                                    "ln(original_max_position_embeddings)), multiplies cos and sin",
        "rope_inv_freq": [f32(v) for v in short_inv.numpy()],
    }


def sliding_window_reference(cls, window: int, layer_types: list[str]):
    """extra_reference for the sliding-window fixtures: checks that transformers builds the intended per-layer
    attention (layer_types), that the window changes the logits (the same weights with every layer attending
    fully give different logits from position `window` on, identical ones before it), that the cache used by
    the default forward changes nothing, and, when every layer slides, that the receptive field is exactly
    n_layers * (window - 1) + 1 tokens (transformers masks key j for query i unless i - window < j <= i)."""
    def check(out: Path, input_ids: list[list[int]]) -> dict:
        model = cls.from_pretrained(out, attn_implementation="eager").to(torch.float64).eval()
        cfg = model.config
        got_types = list(getattr(cfg, "layer_types", None) or ["sliding_attention"] * cfg.num_hidden_layers)
        print(f"  {out.name}: sliding_window {cfg.sliding_window}, layer_types {got_types}", flush=True)
        assert cfg.sliding_window == window and got_types == layer_types, (cfg.sliding_window, got_types)
        full_cfg = type(cfg).from_pretrained(out)
        full_cfg.sliding_window = None
        if hasattr(full_cfg, "layer_types"):
            full_cfg.layer_types = ["full_attention"] * cfg.num_hidden_layers
        full = cls.from_pretrained(out, config=full_cfg, attn_implementation="eager").to(torch.float64).eval()
        assert all(getattr(l.self_attn, "sliding_window", None) is None for l in full.model.layers)
        delta = 0.0
        with torch.no_grad():
            for ids in input_ids:
                x = torch.tensor([ids])
                a = model(x).logits[0]
                assert torch.equal(a, model(x, use_cache=False).logits[0])
                b = full(x).logits[0]
                d = (a - b).abs().max(dim=-1).values
                assert d[:window].max() < 1e-12, d        # the window cuts nothing off before position `window`
                assert d[window:].max() > 1e-3, d
                delta = max(delta, float(d[window:].max()))
                if all(t == "sliding_attention" for t in got_types):
                    reach = cfg.num_hidden_layers * (window - 1)   # token j reaches position i iff i - j <= reach
                    y = x.clone()
                    y[0, 0] = (y[0, 0] + 1) % cfg.vocab_size
                    e = (model(y).logits[0] - a).abs().max(dim=-1).values
                    assert e[:reach + 1].min() > 1e-6 and e[reach + 1:].max() < 1e-12, (reach, e)
        print(f"  {out.name}: window_matters {delta:.6g}", flush=True)
        return {"sliding_window": window, "layer_types": got_types, "window_matters": delta,
                "window_matters_note": "max over both sequences and positions >= sliding_window of max |logits - "
                                       "logits of the same weights with sliding_window None (all layers full)|; "
                                       "positions < sliding_window agree to < 1e-12"}
    return check


# Gemma 2 and Gemma 3 share the tiny shape (gemma_args): GQA 4/2, head_dim 24 (not hidden / heads), window 5,
# GELU-tanh, tied, Gemma's special-token ids.
GEMMA_WINDOW = 5
GEMMA_HEAD_DIM = 24
# Gemma 3: RoPE per layer type as transformers 5 writes it (Gemma 3 4B / 12B / 27B scale the full layers linearly).
GEMMA3_ROPE = {"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0},
               "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}
# Gemma 2: one RoPE for every layer, and tanh softcapping of the attention scores and of the final logits. The
# released models cap at 50 and 30, far above this tiny model's scores and logits (a few units), where tanh would be
# nearly linear; caps of 2 and 3 bend both (gemma_settings_matter asserts that each changes the logits).
GEMMA2_ROPE = {"rope_type": "default", "rope_theta": 10000.0}
GEMMA2_ATTN_SOFTCAP = 2.0
GEMMA2_FINAL_SOFTCAP = 3.0
# model_type -> (config class, model class)
GEMMA_CLASSES = {"gemma2": (Gemma2Config, Gemma2ForCausalLM), "gemma3_text": (Gemma3TextConfig, Gemma3ForCausalLM)}


def gemma_args(**kw) -> dict:
    """The config arguments every tiny Gemma shares; kw adds or overrides."""
    args = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, max_position_embeddings=MAX_POS,
                num_attention_heads=4, num_key_value_heads=2, head_dim=GEMMA_HEAD_DIM, rms_norm_eps=1e-6,
                hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True, sliding_window=GEMMA_WINDOW,
                use_bidirectional_attention=False, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    args.update(kw)
    return args


def gemma3_config(**kw) -> Gemma3TextConfig:
    """A tiny Gemma3TextConfig: gemma_args, RoPE per layer type (GEMMA3_ROPE), no softcapping; kw overrides."""
    return Gemma3TextConfig(**gemma_args(**{
        "rope_parameters": json.loads(json.dumps(GEMMA3_ROPE)),   # a copy: the config edits it in place
        "final_logit_softcapping": None, "attn_logit_softcapping": None, **kw}))


def gemma2_config(**kw) -> Gemma2Config:
    """A tiny Gemma2Config: gemma_args, one default RoPE at theta 1e4, softcapping GEMMA2_ATTN_SOFTCAP /
    GEMMA2_FINAL_SOFTCAP; kw overrides (callers give layer_types explicitly)."""
    return Gemma2Config(**gemma_args(**{
        "rope_parameters": dict(GEMMA2_ROPE), "attn_logit_softcapping": GEMMA2_ATTN_SOFTCAP,
        "final_logit_softcapping": GEMMA2_FINAL_SOFTCAP, **kw}))


def max_logit_delta(a, b, input_ids: list[list[int]]) -> tuple[float, list]:
    """max |logits of model a - logits of model b| over the sequences, and per sequence the per-position maxima."""
    per_position = []
    with torch.no_grad():
        for ids in input_ids:
            x = torch.tensor([ids])
            per_position.append((a(x).logits[0] - b(x).logits[0]).abs().max(dim=-1).values)
    return max(float(d.max()) for d in per_position), per_position


def load_gemma(out: Path, **changes):
    """The float64 Gemma 2 / Gemma 3 model in `out` (by config.json's model_type), with config attributes replaced
    by `changes`."""
    config_cls, cls = GEMMA_CLASSES[json.loads((out / "config.json").read_text())["model_type"]]
    cfg = config_cls.from_pretrained(out)
    for k, v in changes.items():
        setattr(cfg, k, v)
    return cls.from_pretrained(out, config=cfg, attn_implementation="eager").to(torch.float64).eval()


def gemma_settings_matter(out: Path, input_ids: list[list[int]], label: str) -> dict:
    """max |logits - logits of the same weights with one Gemma setting changed| (each asserted > 1e-3): (a) a
    window longer than the sequences, layer types (and so RoPE per layer) kept; (b) query_pre_attn_scalar =
    head_dim, unless it already is; (c) with RoPE per layer type (Gemma 3), every layer default RoPE at the full
    layers' theta, and each half of that change alone: the full layers without their linear factor, the sliding
    layers at the full layers' theta; (d) with softcapping (Gemma 2), attn_logit_softcapping None and
    final_logit_softcapping None, each alone."""
    model = load_gemma(out)
    cfg = model.config
    rp = cfg.rope_parameters
    window, per_position = max_logit_delta(model, load_gemma(out, sliding_window=cfg.max_position_embeddings),
                                           input_ids)
    assert all(d[:cfg.sliding_window].max() < 1e-12 for d in per_position), per_position
    checks = {"window_matters": window}
    notes = ["window_matters with sliding_window = max_position_embeddings (layer_types kept; positions < "
             "sliding_window agree to < 1e-12)", "query_pre_attn_scalar_matters with query_pre_attn_scalar = head_dim"]
    if cfg.query_pre_attn_scalar != cfg.head_dim:
        checks["query_pre_attn_scalar_matters"], _ = max_logit_delta(
            model, load_gemma(out, query_pre_attn_scalar=cfg.head_dim), input_ids)
    if "full_attention" in rp:
        plain = {"rope_type": "default", "rope_theta": rp["full_attention"]["rope_theta"]}
        for key, full, sliding in (("rope_matters", plain, plain),
                                   ("rope_linear_factor_matters", plain, rp["sliding_attention"]),
                                   ("local_rope_theta_matters", rp["full_attention"], plain)):
            changed = load_gemma(out, rope_parameters={"full_attention": dict(full), "sliding_attention": dict(sliding)})
            checks[key], _ = max_logit_delta(model, changed, input_ids)
        notes += ["rope_matters with every layer default RoPE at the full layers' theta", "rope_linear_factor_matters "
                  "without the full layers' linear factor only", "local_rope_theta_matters with the sliding layers "
                  "at the full layers' theta only"]
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if getattr(cfg, key, None) is not None:
            checks[f"{key}_matters"], _ = max_logit_delta(model, load_gemma(out, **{key: None}), input_ids)
            notes.append(f"{key}_matters with {key} None (no capping) only")
    print(f"  {label}: " + ", ".join(f"{k} {v:.6g}" for k, v in checks.items()), flush=True)
    assert all(v > 1e-3 for v in checks.values()), checks
    checks["checks_note"] = ("max over both sequences and all positions of |logits - logits of the same weights with "
                             "one setting changed|: " + "; ".join(notes))
    return checks


def gemma_checkpoint_checks(model, out: Path, input_ids: list[list[int]], norms_per_layer: int) -> float:
    """Checks shared by the Gemma fixtures; returns the embedding scale. Every *RMSNorm (norms_per_layer per layer
    plus the final one) computes rms_norm(x) * (1 + weight) in float32 with a stored weight near 0; the embedding
    scale is sqrt(hidden); the saved tokenizer is the one transformers' GemmaTokenizer builds (ids and decoding of
    every text, <bos> = 2 first); the cache used by the default forward changes nothing."""
    cfg = model.config
    embed_scale = float(model.model.embed_tokens.embed_scale)
    assert embed_scale == math.sqrt(HIDDEN)      # exactly 8 for hidden 64 (larger sizes round it to float32)

    g = torch.Generator().manual_seed(0)
    norms = {n: m for n, m in model.named_modules() if type(m).__name__.endswith("RMSNorm")}
    assert len(norms) == norms_per_layer * cfg.num_hidden_layers + 1, sorted(norms)
    for n, m in norms.items():
        x = torch.randn(3, m.weight.shape[0], generator=g, dtype=torch.float64)
        want = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps) * (1 + m.weight.float())
        assert torch.equal(m(x), want.double()), n
        assert 0 < m.weight.abs().max() < 1, n   # stored weights are N(0, 0.2^2): the gain 1 + w is near 1

    data = json.loads((out / "tokenizer.json").read_text())
    assert data["pre_tokenizer"] == {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                                     "invert": False}, data["pre_tokenizer"]
    assert data["normalizer"] == {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    assert data["model"]["byte_fallback"] and data["model"]["fuse_unk"] and data["model"]["unk_token"] == "<unk>"
    from transformers import GemmaTokenizer
    hf_tok = GemmaTokenizer.from_pretrained(str(out))
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    for t in TOKENIZER_TEXTS + [MODEL_TEXT]:
        ids = tok.encode(t).ids
        assert hf_tok(t)["input_ids"] == ids and hf_tok.decode(ids, skip_special_tokens=True) == t, t
    assert input_ids[0][0] == hf_tok.bos_token_id == 2

    with torch.no_grad():
        for ids in input_ids:
            x = torch.tensor([ids])
            assert torch.equal(model(x).logits[0], model(x, use_cache=False).logits[0])
    return embed_scale


GEMMA_TOKENIZER_CHECK = ("transformers' GemmaTokenizer loading this tokenizer.json gives the same ids for every text "
                         "and decodes them back")


def gemma3_reference(out: Path, input_ids: list[list[int]]) -> dict:
    """extra_reference for tiny-gemma3: checks that transformers reads back the intended per-layer attention and
    RoPE, that every Gemma norm (q_norm / k_norm included) scales by (1 + weight), that the saved tokenizer is the
    one transformers' GemmaTokenizer builds (gemma_checkpoint_checks), and (gemma_settings_matter) that the sliding
    window, query_pre_attn_scalar and the RoPE split between layer types each change the logits."""
    model = load_gemma(out)
    cfg = model.config
    assert type(model) is Gemma3ForCausalLM and cfg.model_type == "gemma3_text"
    assert cfg.layer_types == ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"]
    assert cfg.sliding_window == GEMMA_WINDOW and cfg.query_pre_attn_scalar == 20 and cfg.head_dim == 24
    assert cfg.rope_parameters == GEMMA3_ROPE, cfg.rope_parameters
    assert [l.self_attn.sliding_window for l in model.model.layers] == [5, 5, None, 5]
    assert all(l.self_attn.scaling == 20 ** -0.5 for l in model.model.layers)
    embed_scale = gemma_checkpoint_checks(model, out, input_ids, norms_per_layer=6)
    checks = gemma_settings_matter(out, input_ids, out.name)
    emb = model.model.rotary_emb
    return {
        "layer_types": cfg.layer_types,
        "sliding_window": cfg.sliding_window,
        "sliding_window_note": "key j is seen by query i of a sliding layer only if i - sliding_window < j <= i",
        "head_dim": cfg.head_dim,
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
        "attention_scale": cfg.query_pre_attn_scalar ** -0.5,
        "embed_scale": embed_scale,
        "norms": "every RMSNorm (input, post_attention, pre_feedforward, post_feedforward, q_norm, k_norm, final) "
                 "computes rms_norm(x) * (1 + weight) in float32",
        "rope_parameters": cfg.rope_parameters,
        "rope_inv_freq": {t: [f32(v) for v in getattr(emb, f"{t}_inv_freq").float().numpy()]
                          for t in sorted(set(cfg.layer_types))},
        **checks,
        "tokenizer_check": GEMMA_TOKENIZER_CHECK,
    }


GEMMA2_SOFTCAPPING_NOTE = (
    "attention: s = (q . k) * query_pre_attn_scalar^-0.5 after RoPE, then s = attn_logit_softcapping * tanh(s / "
    "attn_logit_softcapping), then the causal / sliding mask is added (masked keys get no weight), softmax in float32; "
    "logits: lm_head (the tied embedding) output z, then final_logit_softcapping * tanh(z / final_logit_softcapping) in "
    "the model's dtype (float64 here, no float32 upcast). expected logits, nll_sum and the gradients' loss are all of "
    "the capped logits")


def gemma2_softcap_inputs(out: Path, input_ids: list[list[int]]) -> dict:
    """How far into tanh the capping reaches in the Gemma 2 model in `out`: max |scaled attention score| over the
    query / key pairs the mask keeps, before attn_logit_softcapping, and max |logit| before final_logit_softcapping,
    over both sequences and every layer, with their ratios to the caps."""
    import transformers.models.gemma2.modeling_gemma2 as gemma2_modeling
    original = gemma2_modeling.eager_attention_forward
    scores = []

    def spy(module, query, key, value, attention_mask, scaling=None, **kw):
        s = torch.matmul(query, gemma2_modeling.repeat_kv(key, module.num_key_value_groups).transpose(2, 3)) * scaling
        kept = (attention_mask == 0).expand_as(s)
        scores.append(float(s.masked_select(kept).abs().max()))
        return original(module, query, key, value, attention_mask, scaling=scaling, **kw)

    uncapped = load_gemma(out, final_logit_softcapping=None)
    cfg = Gemma2Config.from_pretrained(out)
    gemma2_modeling.eager_attention_forward = spy
    try:
        with torch.no_grad():
            logits = max(float(uncapped(torch.tensor([ids])).logits.abs().max()) for ids in input_ids)
    finally:
        gemma2_modeling.eager_attention_forward = original
    assert len(scores) == len(input_ids) * cfg.num_hidden_layers
    attn = max(scores)
    return {"attention_scores_max_abs_before_cap": attn,
            "attention_scores_max_abs_over_cap": attn / cfg.attn_logit_softcapping,
            "logits_max_abs_before_cap": logits,
            "logits_max_abs_over_cap": logits / cfg.final_logit_softcapping}


def gemma2_reference(out: Path, input_ids: list[list[int]]) -> dict:
    """extra_reference for tiny-gemma2: checks that transformers reads back the intended per-layer attention
    (Gemma2Config's default layer_types, written out), one RoPE, the attention scale and both softcaps, that every
    norm scales by (1 + weight) and the tokenizer is GemmaTokenizer's (gemma_checkpoint_checks), and
    (gemma_settings_matter) that the window, query_pre_attn_scalar and each softcap change the logits."""
    model = load_gemma(out)
    cfg = model.config
    layers = model.model.layers
    assert type(model) is Gemma2ForCausalLM and cfg.model_type == "gemma2"
    default_types = Gemma2Config(num_hidden_layers=cfg.num_hidden_layers).layer_types
    assert cfg.layer_types == default_types == ["sliding_attention", "full_attention"] * 2, cfg.layer_types
    assert cfg.sliding_window == GEMMA_WINDOW and cfg.query_pre_attn_scalar == 20 and cfg.head_dim == GEMMA_HEAD_DIM
    assert cfg.rope_parameters == GEMMA2_ROPE, cfg.rope_parameters
    assert (cfg.attn_logit_softcapping, cfg.final_logit_softcapping) == (GEMMA2_ATTN_SOFTCAP, GEMMA2_FINAL_SOFTCAP)
    assert [l.self_attn.sliding_window for l in layers] == [5, None, 5, None]
    assert all(l.self_attn.scaling == 20 ** -0.5 and l.self_attn.attn_logit_softcapping == GEMMA2_ATTN_SOFTCAP
               and not hasattr(l.self_attn, "q_norm") for l in layers)
    embed_scale = gemma_checkpoint_checks(model, out, input_ids, norms_per_layer=4)
    ranges = gemma2_softcap_inputs(out, input_ids)
    checks = gemma_settings_matter(out, input_ids, out.name)
    return {
        "layer_types": cfg.layer_types,
        "layer_types_note": "Gemma2Config's default (layer i slides iff (i + 1) % 2 != 0: the even layers), written "
                            "out in config.json",
        "sliding_window": cfg.sliding_window,
        "sliding_window_note": "key j is seen by query i of a sliding layer only if i - sliding_window < j <= i",
        "head_dim": cfg.head_dim,
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
        "attention_scale": cfg.query_pre_attn_scalar ** -0.5,
        "attn_logit_softcapping": cfg.attn_logit_softcapping,
        "final_logit_softcapping": cfg.final_logit_softcapping,
        "softcapping_note": GEMMA2_SOFTCAPPING_NOTE,
        **ranges,
        "embed_scale": embed_scale,
        "norms": "every RMSNorm (input, post_attention, pre_feedforward, post_feedforward, final; Gemma 2 has no "
                 "q_norm / k_norm) computes rms_norm(x) * (1 + weight) in float32",
        "rope_parameters": cfg.rope_parameters,
        "rope_inv_freq": [f32(v) for v in model.model.rotary_emb.inv_freq.float().numpy()],
        **checks,
        "tokenizer_check": GEMMA_TOKENIZER_CHECK,
    }


# tiny-gemma3-vision: the multimodal Gemma 3 (Gemma3ForConditionalGeneration, config model_type "gemma3": gemma-3-4b
# and larger), a Gemma 3 text model beside a SigLIP vision tower and its projector, laid out as google/gemma-3-4b-it
# was published (transformers 4.50). Its text model has tiny-gemma3's shape; the vision tower is about the smallest
# transformers accepts (28 x 28 images in 14 x 14 patches: a 2 x 2 grid, which mm_tokens_per_image 4 pools with a
# kernel of 1).
GEMMA3_LAYER_TYPES = ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"]
# The begin-of-image, end-of-image and image soft tokens (255999, 256000 and 262144 in the released vocabulary of
# 262208) are ids of the tiny vocabulary that no input sequence holds; the top-level eos_token_id is the chat
# models' [<eos>, <end_of_turn>] = [1, 106] (106 is the byte token <0x65> here).
GEMMA3_VISION_TOKENS = {"boi_token_index": 379, "eoi_token_index": 382, "image_token_index": 383}
GEMMA3_VISION_EOS = [1, 106]
GEMMA3_HUB_VERSION = "4.50.0.dev0"
# transformers 5 parameter prefix -> the key prefix of the published checkpoints.
GEMMA3_HUB_PREFIXES = {"model.language_model.": "language_model.model.",
                       "model.vision_tower.": "vision_tower.vision_model.",
                       "model.multi_modal_projector.": "multi_modal_projector."}
# Gemma3TextConfig / SiglipVisionConfig attributes that 4.50 wrote under the same name when not at their default.
GEMMA3_HUB_TEXT_KEYS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "num_key_value_heads", "head_dim", "hidden_activation", "max_position_embeddings",
                        "initializer_range", "rms_norm_eps", "use_cache", "pad_token_id", "eos_token_id",
                        "bos_token_id", "tie_word_embeddings", "attention_bias", "attention_dropout",
                        "query_pre_attn_scalar", "sliding_window", "final_logit_softcapping", "attn_logit_softcapping"]
GEMMA3_HUB_VISION_KEYS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "num_channels", "image_size", "patch_size", "hidden_act", "layer_norm_eps",
                          "attention_dropout"]


def gemma3_vision_config() -> Gemma3Config:
    """tiny-gemma3-vision's Gemma3Config: tiny-gemma3's text config (gemma3_config, 4 layers, GEMMA3_LAYER_TYPES,
    query_pre_attn_scalar 20), a one-layer SigLIP (hidden 16, 2 heads, MLP 32, no pooling head), 4 image tokens."""
    text = gemma3_config(num_hidden_layers=4, query_pre_attn_scalar=20, layer_types=list(GEMMA3_LAYER_TYPES))
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14, vision_use_head=False)
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                        eos_token_id=list(GEMMA3_VISION_EOS), **GEMMA3_VISION_TOKENS)


def gemma3_hub_config(cfg: Gemma3Config, dtype: str) -> dict:
    """config.json as the published multimodal Gemma 3 checkpoints have it (4.50's to_diff_dict): at the top level
    architectures, the image token ids, eos_token_id, initializer_range, mm_tokens_per_image, model_type, torch_dtype
    and transformers_version; text_config with model_type and only what differs from Gemma3TextConfig's defaults,
    in 4.50's names: no layer_types (which layers slide is sliding_window_pattern: layer i slides iff
    (i + 1) % pattern != 0), no rope_parameters (the full layers' RoPE is rope_scaling; rope_theta and
    rope_local_base_freq are left out at their defaults, 1e6 and 1e4); vision_config likewise, with
    vision_use_head false."""
    text, vision = cfg.text_config, cfg.vision_config
    text_default, vision_default = Gemma3TextConfig(), SiglipVisionConfig()
    text_json = {"model_type": "gemma3_text"}
    text_json.update({k: getattr(text, k) for k in GEMMA3_HUB_TEXT_KEYS
                      if getattr(text, k) != getattr(text_default, k)})
    n = text.num_hidden_layers
    pattern = next(p for p in range(1, n + 1) if text.layer_types == ["sliding_attention" if (i + 1) % p else
                                                                      "full_attention" for i in range(n)])
    if pattern != 6:
        text_json["sliding_window_pattern"] = pattern
    full, sliding = text.rope_parameters["full_attention"], text.rope_parameters["sliding_attention"]
    assert full["rope_theta"] == 1e6 and sliding == {"rope_type": "default", "rope_theta": 1e4}, text.rope_parameters
    if full["rope_type"] != "default":
        text_json["rope_scaling"] = {k: v for k, v in full.items() if k != "rope_theta"}
    vision_json = {"model_type": "siglip_vision_model", "vision_use_head": vision.vision_use_head}
    vision_json.update({k: getattr(vision, k) for k in GEMMA3_HUB_VISION_KEYS
                        if getattr(vision, k) != getattr(vision_default, k)})
    return {"architectures": ["Gemma3ForConditionalGeneration"], **GEMMA3_VISION_TOKENS,
            "eos_token_id": cfg.eos_token_id, "initializer_range": cfg.initializer_range,
            "mm_tokens_per_image": cfg.mm_tokens_per_image, "model_type": "gemma3", "text_config": text_json,
            "torch_dtype": dtype, "transformers_version": GEMMA3_HUB_VERSION, "vision_config": vision_json}


def gemma3_hub_key(name: str) -> str:
    """A Gemma3ForConditionalGeneration state_dict name (transformers 5) -> its key in the published checkpoints."""
    prefix = next(p for p in GEMMA3_HUB_PREFIXES if name.startswith(p))
    return GEMMA3_HUB_PREFIXES[prefix] + name[len(prefix):]


class Gemma3HubWriter:
    """save and extra_reference of tiny-gemma3-vision (make_hf_fixture); the model written is kept for the checks."""

    def __init__(self):
        self.model = None
        self.save_pretrained_keys = None

    def save(self, model, out: Path) -> None:
        """model.safetensors under the published key names (GEMMA3_HUB_PREFIXES), without the tied head
        (lm_head.weight, which is model.language_model.embed_tokens.weight), metadata {"format": "pt"}; config.json
        (gemma3_hub_config) and generation_config.json as google/gemma-3-4b-it has them. Also records the names
        transformers' own save_pretrained writes, for the reference."""
        self.model = model
        assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
        tensors = {gemma3_hub_key(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()
                   if k != "lm_head.weight"}
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            with safetensors.safe_open(str(Path(tmp) / "model.safetensors"), "pt") as st:
                self.save_pretrained_keys = sorted(st.keys())
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        dtype = str(model.dtype).replace("torch.", "")
        (out / "config.json").write_text(json.dumps(gemma3_hub_config(model.config, dtype), indent=2, sort_keys=True)
                                         + "\n")
        (out / "generation_config.json").write_text(json.dumps(
            {"bos_token_id": 2, "cache_implementation": "hybrid", "do_sample": True, "eos_token_id": GEMMA3_VISION_EOS,
             "pad_token_id": 0, "top_k": 64, "top_p": 0.95, "transformers_version": GEMMA3_HUB_VERSION},
            indent=2, sort_keys=True) + "\n")

    def reference(self, out: Path, input_ids: list[list[int]]) -> dict:
        """Checks that Gemma3ForConditionalGeneration.from_pretrained reads the directory back without missing,
        unexpected or mismatched keys to the very tensors and logits of the model written, and the config to the
        same text and vision configs (layer types, RoPE, windows and attention scale as tiny-gemma3's); that
        Gemma3ForCausalLM holding the text model's weights gives the same float64 logits on the text-only input, and
        its norms, embedding scale and the tokenizer pass gemma_checkpoint_checks; that an image prompt runs."""
        written = self.model
        model, info = Gemma3ForConditionalGeneration.from_pretrained(out, output_loading_info=True,
                                                                     attn_implementation="eager")
        model.eval()
        assert not any(info.values()), info
        lm = model.model.language_model
        assert model.lm_head.weight is lm.embed_tokens.weight
        state = model.state_dict()
        assert sorted(state) == sorted(written.state_dict()), sorted(set(state) ^ set(written.state_dict()))
        assert all(torch.equal(state[k], v) for k, v in written.state_dict().items())
        written.set_attn_implementation("eager")
        with torch.no_grad():
            for ids in input_ids:
                x = torch.tensor([ids])
                assert torch.equal(model(x).logits, written(x).logits)

        # config.json read back: the same text and vision configs as the model written.
        cfg = model.config
        ignore = {"_sliding_window_pattern", "sliding_window_pattern", "transformers_version", "dtype", "architectures"}
        for got, want in ((cfg.text_config, written.config.text_config),
                          (cfg.vision_config, written.config.vision_config)):
            a = {k: v for k, v in got.to_dict().items() if k not in ignore}
            b = {k: v for k, v in want.to_dict().items() if k not in ignore}
            assert a == b, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
        assert cfg.eos_token_id == GEMMA3_VISION_EOS and cfg.text_config.eos_token_id == 1
        assert all(getattr(cfg, k) == v for k, v in GEMMA3_VISION_TOKENS.items()) and cfg.mm_tokens_per_image == 4
        text = cfg.text_config
        assert text._attn_implementation == "eager"
        assert text.layer_types == GEMMA3_LAYER_TYPES and text.rope_parameters == GEMMA3_ROPE, text.rope_parameters
        assert [l.self_attn.sliding_window for l in lm.layers] == [5, 5, None, 5]
        assert all(l.self_attn.scaling == 20 ** -0.5 for l in lm.layers)
        assert not any(t in GEMMA3_VISION_TOKENS.values() for ids in input_ids for t in ids)
        same_ids = out.parent / "tiny-gemma3" / "expected.json"
        if same_ids.exists():
            assert json.loads(same_ids.read_text())["input_ids"] == input_ids

        # The text model alone: Gemma3ForCausalLM with the same weights, float64.
        model = model.to(torch.float64)
        causal = Gemma3ForCausalLM(text).eval()
        causal.model.load_state_dict(lm.state_dict())
        causal = causal.to(torch.float64)
        assert causal.lm_head.weight is causal.model.embed_tokens.weight
        with torch.no_grad():
            causal_diff = max(float((model(x).logits - causal(x).logits).abs().max())
                              for x in (torch.tensor([ids]) for ids in input_ids))
        assert causal_diff < 1e-12, causal_diff
        embed_scale = gemma_checkpoint_checks(causal, out, input_ids, norms_per_layer=6)

        # An image prompt runs: <bos> text <start_of_image> 4 image tokens <end_of_image> text, bidirectional over the
        # image tokens (token_type_ids); the positions before the image are those of the text-only prompt.
        g = torch.Generator().manual_seed(0)
        ids = [2, 300, GEMMA3_VISION_TOKENS["boi_token_index"]] + [GEMMA3_VISION_TOKENS["image_token_index"]] * 4 + [
            GEMMA3_VISION_TOKENS["eoi_token_index"], 301]
        x = torch.tensor([ids])
        with torch.no_grad():
            img = model(x, pixel_values=torch.randn(1, 3, 28, 28, generator=g, dtype=torch.float64),
                        token_type_ids=(x == GEMMA3_VISION_TOKENS["image_token_index"]).long()).logits
            plain = model(x).logits
        assert torch.isfinite(img).all() and torch.equal(img[0, :3], plain[0, :3])
        assert (img[0, 3:] - plain[0, 3:]).abs().max() > 1e-3

        # save_pretrained's names differ only by the vision tower's missing vision_model. level.
        hub_keys = {gemma3_hub_key(n) for n in state if n != "lm_head.weight"}
        differ = sorted(k for k in self.save_pretrained_keys if k not in hub_keys)
        assert differ and all(k.startswith("vision_tower.") for k in differ)
        assert {k.replace("vision_tower.", "vision_tower.vision_model.", 1) if k in differ else k
                for k in self.save_pretrained_keys} == hub_keys
        return {
            "key_layout": "hub 4.50 layout: language_model.model.* (the text model), vision_tower.vision_model.* "
                          "(SigLIP), multi_modal_projector.mm_input_projection_weight and "
                          "multi_modal_projector.mm_soft_emb_norm.weight; no lm_head (tied to "
                          "language_model.model.embed_tokens.weight)",
            "save_pretrained_note": f"transformers {transformers.__version__}'s save_pretrained writes the same names "
                                    "but the vision tower's without vision_model. (" + ", ".join(differ[:2]) +
                                    ", ...); model.safetensors is written here with the published names",
            "config_layout": "config.json as google/gemma-3-4b-it's (transformers 4.50): top-level eos_token_id "
                             "[1, 106] (none in text_config), boi / eoi / image_token_index, mm_tokens_per_image; "
                             "text_config holds model_type and only what differs from Gemma3TextConfig's defaults: "
                             "sliding_window_pattern 3 (layer i slides iff (i + 1) % 3 != 0) instead of layer_types, "
                             "rope_scaling {factor 2, linear} for the full layers, rope_theta (1e6) and "
                             "rope_local_base_freq (1e4) left at their defaults",
            "loading_check": "Gemma3ForConditionalGeneration.from_pretrained(output_loading_info=True): no missing, "
                             "unexpected or mismatched keys, no errors; every tensor and the float32 logits equal to "
                             "the model written; the config read back gives the same text and vision configs",
            "layer_types": text.layer_types,
            "sliding_window": text.sliding_window,
            "head_dim": text.head_dim,
            "query_pre_attn_scalar": text.query_pre_attn_scalar,
            "attention_scale": text.query_pre_attn_scalar ** -0.5,
            "rope_parameters": text.rope_parameters,
            "embed_scale": embed_scale,
            "eos_token_id": cfg.eos_token_id,
            **GEMMA3_VISION_TOKENS,
            "mm_tokens_per_image": cfg.mm_tokens_per_image,
            "gemma3_for_causal_lm_max_abs_diff": causal_diff,
            "note": "logits are Gemma3ForConditionalGeneration's on text-only input_ids (no pixel_values, no "
                    "token_type_ids): the text model's embeddings times sqrt(hidden), its causal / sliding masks, "
                    "the tied head and no logit softcapping, exactly Gemma3ForCausalLM's on the same weights "
                    "(gemma3_for_causal_lm_max_abs_diff); the vision tower and projector are not used. The "
                    "image token ids are in the vocabulary but absent from the inputs. input_ids are tiny-gemma3's "
                    "(model_input_ids with its seed); the weights are not (seed SEED + 20)",
            "tokenizer_check": GEMMA_TOKENIZER_CHECK,
        }


def make_hf_fixture(root: Path, name: str, cls, config, storage_dtype: torch.dtype, seed: int,
                    tok: Tokenizer, *, sharded: bool = False, legacy: bool = False,
                    legacy_merges: bool = False, extra_reference=None, save=None,
                    input_seed: int | None = None) -> dict:
    """extra_reference: if given, a function (directory, input_ids) -> dict of entries added to the
    "reference" block of expected.json (it may also check the written checkpoint). save: if given, a function
    (model, directory) that writes the weights and config.json instead of save_pretrained. input_seed: the seed of
    the random second sequence (model_input_ids), if not `seed`."""
    if ONLY is not None and name not in ONLY:
        return {"name": name + " (kept)", "tensors": {}}
    out = root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(seed)
    model = cls(config).eval()
    randomize(model, seed)
    model = model.to(storage_dtype)
    if save is not None:
        save(model, out)
    elif sharded:
        save_sharded_in_two(model, out)
    else:
        model.save_pretrained(out)
    if legacy:
        legacy_config(out / "config.json")
    save_tokenizer(tok, out / "tokenizer.json", legacy_merges)
    input_ids = model_input_ids(out / "tokenizer.json", seed if input_seed is None else input_seed)
    theta = getattr(config, "rope_parameters", None)
    theta = theta.get("rope_theta") if theta else None   # None for Gemma 3's per-layer-type rope_parameters
    expected = compute_expected(out, cls, input_ids, str(storage_dtype).replace("torch.", ""), theta)
    if extra_reference is not None:
        expected["reference"].update(extra_reference(out, input_ids))
    expected["tokenizer"] = tokenizer_block(out / "tokenizer.json")
    write_json(out / "expected.json", expected)
    # Record what the checkpoint holds, for the summary.
    tensors = {}
    for f in sorted(out.glob("*.safetensors")):
        with safetensors.safe_open(str(f), "pt") as st:
            for k in st.keys():
                t = st.get_slice(k)
                tensors[k] = (f.name, t.get_dtype(), list(t.get_shape()))
    return {"name": name, "tensors": tensors}


def tiny_hf_fixtures(root: Path) -> list[dict]:
    llama_tok = train_byte_level_bpe(LLAMA_SPECIALS, None)
    opt_tok = train_byte_level_bpe(OPT_SPECIALS, "</s>")
    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, max_position_embeddings=MAX_POS,
                  rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=2, pad_token_id=None)
    summaries = []

    # tiny-llama: GQA 4/2, untied, sharded, config in the 4.x layout.
    cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      rope_theta=10000.0, tie_word_embeddings=False, **common)
    summaries.append(make_hf_fixture(root, "tiny-llama", LlamaForCausalLM, cfg, torch.float32, SEED + 1,
                                     llama_tok, sharded=True, legacy=True))

    # tiny-llama-tied: 4/4 heads, tied. transformers 5.x writes "rope_parameters"; kept as written.
    # theta differs from the llama default so that a loader which ignores it fails the logits test.
    cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                      rope_theta=50000.0, tie_word_embeddings=True, **common)
    summaries.append(make_hf_fixture(root, "tiny-llama-tied", LlamaForCausalLM, cfg, torch.float32, SEED + 2,
                                     llama_tok))

    # tiny-qwen2: q/k/v biases, GQA 4/2, tied, bfloat16 storage, config in the 4.x layout.
    cfg = Qwen2Config(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False, **common)
    summaries.append(make_hf_fixture(root, "tiny-qwen2", Qwen2ForCausalLM, cfg, torch.bfloat16, SEED + 3,
                                     llama_tok, legacy=True))

    # tiny-qwen3: per-head q/k RMSNorms (random weights), head_dim 24 != hidden / heads, tied.
    cfg = Qwen3Config(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=24,
                      rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False, **common)
    summaries.append(make_hf_fixture(root, "tiny-qwen3", Qwen3ForCausalLM, cfg, torch.float32, SEED + 7,
                                     llama_tok))

    # tiny-llama-bias: attention_bias (q, k, v and o_proj) and mlp_bias (gate, up, down), random.
    cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      rope_theta=10000.0, tie_word_embeddings=False, attention_bias=True, mlp_bias=True, **common)
    summaries.append(make_hf_fixture(root, "tiny-llama-bias", LlamaForCausalLM, cfg, torch.float32, SEED + 8,
                                     llama_tok))

    # tiny-smollm3: 4 layers, the 4th without RoPE (no_rope_layers [1, 1, 1, 0], the default interval), tied.
    cfg = SmolLM3Config(num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                        rope_theta=50000.0, tie_word_embeddings=True, **common)
    summaries.append(make_hf_fixture(root, "tiny-smollm3", SmolLM3ForCausalLM, cfg, torch.float32, SEED + 9,
                                     llama_tok))

    # tiny-phi3: fused qkv_proj / gate_up_proj, GQA 4/2, head_dim 16 (= hidden / heads), untied, no sliding
    # window. original_max_position_embeddings (default 4096) set to max_position_embeddings: unused without
    # rope scaling.
    cfg = Phi3Config(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                     tie_word_embeddings=False, original_max_position_embeddings=MAX_POS, sliding_window=None,
                     **common)
    summaries.append(make_hf_fixture(root, "tiny-phi3", Phi3ForCausalLM, cfg, torch.float32, SEED + 10,
                                     llama_tok))

    # tiny-phi3-longrope: partial rotary (12 of 16 dims) and LongRoPE like Phi-3.5 / Phi-4-mini, tied.
    rng = np.random.default_rng(SEED + 11)
    short = [round(float(v), 4) for v in rng.uniform(1.0, 5.0, size=PHI3_ROTARY_DIMS // 2)]
    long = [round(float(v), 4) for v in rng.uniform(1.0, 5.0, size=PHI3_ROTARY_DIMS // 2)]
    assert short != long
    cfg = Phi3Config(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                     original_max_position_embeddings=PHI3_ORIGINAL_MAX_POS, sliding_window=None,
                     rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                      "partial_rotary_factor": PHI3_ROTARY_DIMS / 16,
                                      "short_factor": short, "long_factor": long},
                     **common)
    summaries.append(make_hf_fixture(root, "tiny-phi3-longrope", Phi3ForCausalLM, cfg, torch.float32, SEED + 11,
                                     llama_tok, extra_reference=phi3_longrope_reference))

    # tiny-mistral-window: every layer slides with a window (5) shorter than the sequences, untied.
    cfg = MistralConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                        rope_theta=10000.0, tie_word_embeddings=False, sliding_window=5, **common)
    summaries.append(make_hf_fixture(root, "tiny-mistral-window", MistralForCausalLM, cfg, torch.float32, SEED + 12,
                                     llama_tok, extra_reference=sliding_window_reference(
                                         MistralForCausalLM, 5, ["sliding_attention"] * 2)))

    # tiny-qwen2-window: layers >= max_window_layers (1) slide with window 4, layer 0 attends fully; biases, tied.
    cfg = Qwen2Config(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=True, sliding_window=4,
                      max_window_layers=1, **common)
    summaries.append(make_hf_fixture(root, "tiny-qwen2-window", Qwen2ForCausalLM, cfg, torch.float32, SEED + 13,
                                     llama_tok, extra_reference=sliding_window_reference(
                                         Qwen2ForCausalLM, 4, ["full_attention", "sliding_attention",
                                                               "sliding_attention"])))

    # tiny-gemma3: sliding layers 0, 1, 3 (window 5) and full layer 2, per-type RoPE (full: linear factor 2,
    # theta 1e6; sliding: theta 1e4), attention scale 20^-0.5 != head_dim^-0.5, (1 + w) norms, sqrt(hidden)
    # embedding scale, Gemma-style tokenizer.
    gemma_tok = train_gemma_bpe()
    cfg = gemma3_config(num_hidden_layers=4, query_pre_attn_scalar=20,
                        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"])
    summaries.append(make_hf_fixture(root, "tiny-gemma3", Gemma3ForCausalLM, cfg, torch.float32, SEED + 14,
                                     gemma_tok, extra_reference=gemma3_reference))

    # tiny-gemma2: Gemma2Config's default layer_types for 4 layers (even layers slide, window 5), written out; one
    # RoPE (theta 1e4); attention scale 20^-0.5 != head_dim^-0.5; attention scores capped at 2 and logits at 3
    # (small enough to bend tanh on this model); (1 + w) norms, sqrt(hidden) embedding scale, Gemma-style tokenizer.
    cfg = gemma2_config(num_hidden_layers=4, query_pre_attn_scalar=20,
                        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"])
    summaries.append(make_hf_fixture(root, "tiny-gemma2", Gemma2ForCausalLM, cfg, torch.float32, SEED + 16,
                                     gemma_tok, extra_reference=gemma2_reference))

    # tiny-gemma3-vision: Gemma3ForConditionalGeneration with tiny-gemma3's text shape and a one-layer SigLIP, saved
    # under the published key names with a 4.50-style config.json; input_ids are tiny-gemma3's (its seed).
    writer = Gemma3HubWriter()
    summaries.append(make_hf_fixture(root, "tiny-gemma3-vision", Gemma3ForConditionalGeneration, gemma3_vision_config(),
                                     torch.float32, SEED + 20, gemma_tok, save=writer.save,
                                     extra_reference=writer.reference, input_seed=SEED + 14))

    opt_common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, ffn_dim=FFN, num_attention_heads=4,
                      max_position_embeddings=MAX_POS, bos_token_id=2, eos_token_id=2, pad_token_id=1,
                      dropout=0.0, attention_dropout=0.0, activation_function="relu",
                      enable_bias=True, layer_norm_elementwise_affine=True, tie_word_embeddings=True)
    # tiny-opt: pre-LN (opt-125m style), float16 storage. Merges in the legacy "a b" string form.
    cfg = OPTConfig(num_hidden_layers=3, do_layer_norm_before=True, word_embed_proj_dim=HIDDEN, **opt_common)
    summaries.append(make_hf_fixture(root, "tiny-opt", OPTForCausalLM, cfg, torch.float16, SEED + 4,
                                     opt_tok, legacy_merges=True))

    # tiny-opt-postln: post-LN (opt-350m style), project_in / project_out, float32 storage.
    cfg = OPTConfig(num_hidden_layers=2, do_layer_norm_before=False, word_embed_proj_dim=32, **opt_common)
    summaries.append(make_hf_fixture(root, "tiny-opt-postln", OPTForCausalLM, cfg, torch.float32, SEED + 5,
                                     opt_tok, legacy_merges=True))
    return summaries, llama_tok


# --------------------------------------------------------------------------------------------------------
# GGUF: permutation, block formats, reading back

def permute_for_gguf(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF rotate-half layout -> llama.cpp adjacent-pair layout. Within each head of width hd, HF row i
    (i < hd/2) and row i + hd/2 form one RoPE pair; in the GGUF they become rows 2i and 2i + 1."""
    hd = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_from_gguf(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of permute_for_gguf: GGUF rows 2i, 2i + 1 of a head go back to HF rows i, i + hd/2."""
    hd = w.shape[0] // n_heads
    return w.reshape(n_heads, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama_state_dict_from_gguf(w, n_layer, n_head, n_kv, tied):
    """Hugging Face Llama parameter names for a llama GGUF's tensors (Q/K rows un-permuted)."""
    sd = {"model.embed_tokens.weight": w["token_embd.weight"], "model.norm.weight": w["output_norm.weight"]}
    if not tied:
        sd["lm_head.weight"] = w["output.weight"]
    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    for i in range(n_layer):
        for g, h in names.items():
            a = w[f"blk.{i}.{g}.weight"]
            if g == "attn_q":
                a = unpermute_from_gguf(a, n_head)
            elif g == "attn_k":
                a = unpermute_from_gguf(a, n_kv)
            sd[f"model.layers.{i}.{h}.weight"] = a
    return sd


def dequant_blocks(raw: np.ndarray, qtype: QT, n_cols: int) -> np.ndarray:
    """Independent numpy dequantiser for the block formats the fixtures use (checked against gguf-py).
    raw: uint8 [rows, bytes_per_row]."""
    rows = raw.shape[0]
    if qtype == QT.F32:
        return raw.view(np.float32).reshape(rows, n_cols)
    if qtype == QT.F16:
        return raw.view(np.float16).astype(np.float32).reshape(rows, n_cols)
    if qtype == QT.BF16:
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(rows, n_cols)
    nb = n_cols // 32
    if qtype == QT.Q8_0:                   # 34 bytes: f16 d, 32 x int8 q; x = d * q
        b = raw.reshape(rows, nb, 34)
        d = b[..., 0:2].copy().view(np.float16).astype(np.float32)
        q = b[..., 2:34].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(rows, n_cols)
    if qtype in (QT.Q4_0, QT.Q4_1):       # Q4_0 18 bytes: f16 d, 16 bytes; x = d * (q - 8)
        size = 18 if qtype == QT.Q4_0 else 20   # Q4_1 20 bytes: f16 d, f16 m, 16 bytes; x = d * q + m
        b = raw.reshape(rows, nb, size)
        d = b[..., 0:2].copy().view(np.float16).astype(np.float32)
        nib = b[..., size - 16:]
        q = np.concatenate([nib & 0x0F, nib >> 4], axis=-1).astype(np.float32)  # low: 0..15, high: 16..31
        if qtype == QT.Q4_0:
            return (d * (q - 8.0)).reshape(rows, n_cols)
        m = b[..., 2:4].copy().view(np.float16).astype(np.float32)
        return (d * q + m).reshape(rows, n_cols)
    raise ValueError(f"no dequantiser for {qtype.name}")


def read_gguf_tensors(path: Path) -> tuple[GGUFReader, dict[str, np.ndarray]]:
    """All tensors of a GGUF, dequantised to float32, numpy shape [rows, cols] (= GGUF ne reversed)."""
    reader = GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        a = gquants.dequantize(t.data, t.tensor_type)
        out[t.name] = np.asarray(a, dtype=np.float32).reshape([int(v) for v in reversed(t.shape)])
    return reader, out


def gguf_meta(reader: GGUFReader, key: str):
    return reader.fields[key].contents()


def float64_model(model, sd: dict, tied: bool):
    """`model` in float64 eval mode holding the numpy state dict `sd` (no lm_head.weight when tied)."""
    model = model.to(torch.float64).eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float64))
                                                 for k, v in sd.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    if tied:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def hf_llama_from_gguf(path: Path) -> tuple[LlamaForCausalLM, GGUFReader, dict]:
    """A float64 HF LlamaForCausalLM holding the dequantised weights of a llama GGUF, with attn_q /
    attn_k un-permuted back to the rotate-half layout. Hyperparameters come from the metadata."""
    reader, w = read_gguf_tensors(path)
    n_layer = int(gguf_meta(reader, "llama.block_count"))
    n_embd = int(gguf_meta(reader, "llama.embedding_length"))
    n_head = int(gguf_meta(reader, "llama.attention.head_count"))
    n_kv = int(gguf_meta(reader, "llama.attention.head_count_kv"))
    eps = float(f"{float(gguf_meta(reader, 'llama.attention.layer_norm_rms_epsilon')):.7g}")  # f32 1e-5 -> 1e-5
    theta = float(gguf_meta(reader, "llama.rope.freq_base"))
    n_vocab = w["token_embd.weight"].shape[0]
    tied = "output.weight" not in w
    cfg = LlamaConfig(vocab_size=n_vocab, hidden_size=n_embd,
                      intermediate_size=int(gguf_meta(reader, "llama.feed_forward_length")),
                      num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_kv,
                      head_dim=n_embd // n_head, rope_theta=theta, rms_norm_eps=eps,
                      max_position_embeddings=int(gguf_meta(reader, "llama.context_length")),
                      tie_word_embeddings=tied, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    assert int(gguf_meta(reader, "llama.rope.dimension_count")) == n_embd // n_head
    sd = llama_state_dict_from_gguf(w, n_layer, n_head, n_kv, tied)
    cfg._attn_implementation = "eager"
    model = float64_model(LlamaForCausalLM(cfg), sd, tied)
    return model, reader, w


def numpy_llama_adjacent_rope(w: dict, ids: list[int], n_layer, n_head, n_kv, eps, theta) -> np.ndarray:
    """Independent float64 llama forward on the GGUF-layout (permuted) weights with adjacent-pair RoPE.
    Used only to confirm that the permutation + adjacent RoPE equals HF's rotate-half on HF weights."""
    W = {k: v.astype(np.float64) for k, v in w.items()}
    T = len(ids)
    x = W["token_embd.weight"][ids]
    d = x.shape[1]
    hd = d // n_head
    # Angles, cos and sin exactly as transformers computes them: in float32 even in a float64 model.
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float) / hd))            # [hd/2]
    ang = torch.arange(T, dtype=torch.float)[:, None] * inv[None, :]                    # [T, hd/2]
    cos, sin = ang.cos().double().numpy(), ang.sin().double().numpy()

    def rms(v, g):
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + eps) * g

    def rope(v):                                             # v [T, heads, hd], pairs (2i, 2i+1)
        a, b = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2] = a * cos[:, None, :] - b * sin[:, None, :]
        out[..., 1::2] = a * sin[:, None, :] + b * cos[:, None, :]
        return out

    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(n_layer):
        p = f"blk.{l}."
        h = rms(x, W[p + "attn_norm.weight"])
        q = rope((h @ W[p + "attn_q.weight"].T).reshape(T, n_head, hd))
        k = rope((h @ W[p + "attn_k.weight"].T).reshape(T, n_kv, hd))
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, n_kv, hd)
        heads = []
        for hh in range(n_head):
            g = hh // (n_head // n_kv)
            s = q[:, hh] @ k[:, g].T / math.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            heads.append(s @ v[:, g])
        x = x + np.concatenate(heads, axis=1) @ W[p + "attn_output.weight"].T
        h = rms(x, W[p + "ffn_norm.weight"])
        gate = h @ W[p + "ffn_gate.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ W[p + "ffn_up.weight"].T)) @ W[p + "ffn_down.weight"].T
    x = rms(x, W["output_norm.weight"])
    return x @ W.get("output.weight", W["token_embd.weight"]).T


def transformers_gguf_crosscheck(path: Path, model: LlamaForCausalLM, sequences: list[list[int]]):
    """Max |logit difference| between our GGUF -> HF conversion and transformers' own GGUF loader (which
    dequantises and un-permutes independently). Needs `accelerate`; returns None if it is missing."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        return None
    from transformers import AutoModelForCausalLM
    theirs = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                  attn_implementation="eager").to(torch.float64).eval()
    err = 0.0
    with torch.no_grad():
        for ids in sequences:
            x = torch.tensor([ids])
            err = max(err, float((theirs(x).logits - model(x).logits).abs().max()))
    del theirs
    return err


def gguf_tokenizer_from_fields(tokens: list[str], merges: list[str], types: list[int], digits: bool) -> Tokenizer:
    """Byte-level BPE tokenizer rebuilt from GGUF tokenizer metadata with the `tokenizers` library.
    digits=True gives SmolLM2's pre-tokenizer (each digit split off before the GPT-2 regex split)."""
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ")) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, byte_fallback=False, ignore_merges=False))
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), bl]) if digits else bl
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    return tok


# --------------------------------------------------------------------------------------------------------
# Tiny GGUF

GGUF_LAYERS = 2
GGUF_HEADS, GGUF_KV = 4, 2
GGUF_THETA = 30000.0
# Tensor types in the tiny GGUF (norms are F32).
GGUF_TYPES = {
    "token_embd.weight": QT.Q8_0,
    "output.weight": QT.F32,
    **{f"blk.{l}.{n}.weight": QT.Q4_1 for l in range(GGUF_LAYERS)
       for n in ("attn_q", "attn_k", "attn_v", "attn_output")},
    **{f"blk.0.{n}.weight": QT.Q4_0 for n in ("ffn_gate", "ffn_up", "ffn_down")},
    "blk.1.ffn_gate.weight": QT.F16, "blk.1.ffn_up.weight": QT.BF16, "blk.1.ffn_down.weight": QT.F16,
}


def add_gguf_tokenizer(wr: GGUFWriter, tok: Tokenizer) -> None:
    """The byte-level BPE `tok` as llama.cpp's tokenizer.ggml.* metadata."""
    vocab = tok.get_vocab()
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = [" ".join(p) for p in json.loads(tok.to_str())["model"]["merges"]]
    types = [3 if t in LLAMA_SPECIALS else 1 for t in tokens]
    wr.add_add_space_prefix(False)
    wr.add_add_bos_token(False)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("gpt-2")          # plain GPT-2 regex split, no digit splitting (matches tokenizer.json)
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(vocab["<|im_start|>"])
    wr.add_eos_token_id(vocab["<|im_end|>"])
    wr.add_unk_token_id(vocab["<|endoftext|>"])
    wr.add_pad_token_id(vocab["<|im_end|>"])


def start_gguf_copy(root: Path, name: str, src: Path | None = None) -> tuple[Path, Path, dict]:
    """NAME's directory (or src), a fresh NAME-gguf directory, and the source's config.json."""
    src = src or root / name
    out = root / f"{name}-gguf"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return src, out, json.loads((src / "config.json").read_text())


def float32_state_dict(src: Path) -> dict:
    with safetensors.safe_open(str(src / "model.safetensors"), "np") as st:
        return {k: st.get_tensor(k).astype(np.float32) for k in st.keys()}


def write_gguf_copy(wr: GGUFWriter, tok: Tokenizer, gg: dict, src: Path, out: Path) -> None:
    """Adds the tokenizer and the tensors `gg` to `wr`, writes the file, and gives the copy NAME's expected.json."""
    add_gguf_tokenizer(wr, tok)
    for tensor, a in gg.items():
        wr.add_tensor(tensor, a)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    shutil.copy(src / "expected.json", out / "expected.json")


def add_gguf_hparams(wr: GGUFWriter, name: str, cfg: dict, theta: float) -> None:
    """The model keys every converted copy carries, from the source's config.json, in the converter's order."""
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    wr.add_type("model")
    wr.add_name(f"{name} fixture")
    wr.add_context_length(cfg["max_position_embeddings"])
    wr.add_embedding_length(cfg["hidden_size"])
    wr.add_block_count(cfg["num_hidden_layers"])
    wr.add_feed_forward_length(cfg["intermediate_size"])
    wr.add_head_count(heads)
    wr.add_head_count_kv(cfg["num_key_value_heads"])
    wr.add_key_length(head_dim)
    wr.add_value_length(head_dim)
    wr.add_rope_freq_base(theta)
    wr.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)


def make_gguf_copy(root: Path, tok: Tokenizer, name: str, arch: str) -> dict:
    """NAME-gguf/model.gguf: the float32 checkpoint NAME under llama.cpp's tensor names for `arch`, as its
    converter writes them: llama permutes the attn_q / attn_k rows (and their biases) for adjacent-pair
    RoPE, qwen3 does not; Qwen3's per-head norms are attn_q_norm / attn_k_norm; biases keep their names
    with ".bias"; no output.weight for a tied head. The weights are the same, so its expected.json is
    NAME's."""
    src, out, cfg = start_gguf_copy(root, name)
    sd = float32_state_dict(src)
    layers, heads, kv = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    permute = arch in ("llama", "smollm3")
    gg = {"token_embd.weight": sd["model.embed_tokens.weight"]}
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
             "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for l in range(layers):
        for hf, cpp in names.items():
            for kind in ("weight", "bias"):
                key = f"model.layers.{l}.{hf}.{kind}"
                if key not in sd:
                    continue
                a = sd[key]
                if permute and cpp in ("attn_q", "attn_k"):
                    n = heads if cpp == "attn_q" else kv
                    a = permute_for_gguf(a.reshape(a.shape[0], -1), n).reshape(a.shape)
                gg[f"blk.{l}.{cpp}.{kind}"] = a
    gg["output_norm.weight"] = sd["model.norm.weight"]
    if "lm_head.weight" in sd:
        gg["output.weight"] = sd["lm_head.weight"]
    wr = GGUFWriter(str(out / "model.gguf"), arch)
    add_gguf_hparams(wr, name, cfg, cfg.get("rope_parameters", {}).get("rope_theta") or cfg["rope_theta"])
    write_gguf_copy(wr, tok, gg, src, out)
    return {"name": f"{name}-gguf", "tensors": {k: ("model.gguf", "F32", list(v.shape)) for k, v in gg.items()}}


def make_phi3_gguf_copy(root: Path, tok: Tokenizer, name: str) -> dict:
    """NAME-gguf/model.gguf: the float32 Phi-3 checkpoint NAME as llama.cpp's converter writes a phi3 GGUF:
    the fused qkv_proj and gate_up_proj copied as they are (attn_qkv, and ffn_up with the gate rows first; no
    permutation, phi3 uses NeoX / rotate-half RoPE), rope.dimension_count = int(partial_rotary_factor *
    hidden) / heads, LongRoPE's factors as the float32 tensors rope_factors_long / rope_factors_short with
    rope.scaling.original_context_length and rope.scaling.attn_factor, sliding_window 0 when the config has
    none, no key_length / value_length, no output.weight for a tied head. expected.json is NAME's. The file is
    read back into a Phi3ForCausalLM, whose logits must equal the expected ones."""
    src, out, cfg = start_gguf_copy(root, name)
    rp = cfg["rope_parameters"]
    sd = float32_state_dict(src)
    layers, heads, kv = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    n_embd, max_pos = cfg["hidden_size"], cfg["max_position_embeddings"]
    orig_max_pos = cfg["original_max_position_embeddings"]
    rope_dims = int(rp.get("partial_rotary_factor", 1.0) * n_embd) // heads
    gg = {}
    if rp.get("rope_type") == "longrope":
        assert len(rp["long_factor"]) == len(rp["short_factor"]) == rope_dims // 2
        gg["rope_factors_long.weight"] = np.asarray(rp["long_factor"], dtype=np.float32)
        gg["rope_factors_short.weight"] = np.asarray(rp["short_factor"], dtype=np.float32)
    gg["token_embd.weight"] = sd["model.embed_tokens.weight"]
    names = {"input_layernorm": "attn_norm", "self_attn.qkv_proj": "attn_qkv", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for l in range(layers):
        for hf, cpp in names.items():
            gg[f"blk.{l}.{cpp}.weight"] = sd[f"model.layers.{l}.{hf}.weight"]
    gg["output_norm.weight"] = sd["model.norm.weight"]
    if "lm_head.weight" in sd:
        gg["output.weight"] = sd["lm_head.weight"]
    used = {f"model.layers.{l}.{hf}.weight" for l in range(layers) for hf in names}
    used |= {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    assert set(sd) <= used, set(sd) - used

    wr = GGUFWriter(str(out / "model.gguf"), "phi3")
    wr.add_type("model")
    wr.add_name(f"{name} fixture")
    wr.add_context_length(max_pos)
    wr.add_rope_scaling_orig_ctx_len(orig_max_pos)
    wr.add_embedding_length(n_embd)
    wr.add_feed_forward_length(cfg["intermediate_size"])
    wr.add_block_count(layers)
    wr.add_head_count(heads)
    wr.add_head_count_kv(kv)
    wr.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    wr.add_rope_dimension_count(rope_dims)
    wr.add_rope_freq_base(rp["rope_theta"])
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)
    wr.add_sliding_window(cfg.get("sliding_window") or 0)
    if rp.get("rope_type") == "longrope":
        wr.add_rope_scaling_attn_factors(phi3_longrope_attention_factor(max_pos, orig_max_pos))
    write_gguf_copy(wr, tok, gg, src, out)
    err = phi3_gguf_crosscheck(out / "model.gguf", json.loads((out / "expected.json").read_text()))
    print(f"{name}-gguf: max |logit - expected| of the Phi3ForCausalLM read back from model.gguf: {err:.3g}")
    return {"name": f"{name}-gguf", "tensors": {k: ("model.gguf", "F32", list(v.shape)) for k, v in gg.items()}}


def phi3_gguf_crosscheck(path: Path, expected: dict) -> float:
    """Rebuild a Phi3ForCausalLM from a phi3 GGUF alone (metadata and tensors; llama.cpp names map 1:1 onto
    Hugging Face's fused names) and return max |logit - expected|; asserts it is below 1e-5."""
    reader, w = read_gguf_tensors(path)
    assert gguf_meta(reader, "general.architecture") == "phi3"
    n_embd = int(gguf_meta(reader, "phi3.embedding_length"))
    n_head = int(gguf_meta(reader, "phi3.attention.head_count"))
    n_layer = int(gguf_meta(reader, "phi3.block_count"))
    head_dim = n_embd // n_head
    rope_dims = int(gguf_meta(reader, "phi3.rope.dimension_count"))
    max_pos = int(gguf_meta(reader, "phi3.context_length"))
    orig = int(gguf_meta(reader, "phi3.rope.scaling.original_context_length"))
    assert int(gguf_meta(reader, "phi3.attention.sliding_window")) == 0
    rope = {"rope_type": "default", "rope_theta": float(gguf_meta(reader, "phi3.rope.freq_base")),
            "partial_rotary_factor": rope_dims / head_dim}
    if "rope_factors_long.weight" in w:
        rope.update(rope_type="longrope", long_factor=[float(v) for v in w["rope_factors_long.weight"]],
                    short_factor=[float(v) for v in w["rope_factors_short.weight"]])
    tied = "output.weight" not in w
    cfg = Phi3Config(vocab_size=w["token_embd.weight"].shape[0], hidden_size=n_embd,
                     intermediate_size=int(gguf_meta(reader, "phi3.feed_forward_length")), num_hidden_layers=n_layer,
                     num_attention_heads=n_head, num_key_value_heads=int(gguf_meta(reader, "phi3.attention.head_count_kv")),
                     rms_norm_eps=float(f"{float(gguf_meta(reader, 'phi3.attention.layer_norm_rms_epsilon')):.7g}"),
                     max_position_embeddings=max_pos, original_max_position_embeddings=orig, rope_parameters=rope,
                     tie_word_embeddings=tied, sliding_window=None, bos_token_id=None, eos_token_id=None,
                     pad_token_id=None)
    cfg._attn_implementation = "eager"
    names = {"attn_norm": "input_layernorm", "attn_qkv": "self_attn.qkv_proj", "attn_output": "self_attn.o_proj",
             "ffn_norm": "post_attention_layernorm", "ffn_up": "mlp.gate_up_proj", "ffn_down": "mlp.down_proj"}
    sd = {"model.embed_tokens.weight": w["token_embd.weight"], "model.norm.weight": w["output_norm.weight"]}
    if not tied:
        sd["lm_head.weight"] = w["output.weight"]
    for l in range(n_layer):
        for g, h in names.items():
            sd[f"model.layers.{l}.{h}.weight"] = w[f"blk.{l}.{g}.weight"]
    model = float64_model(Phi3ForCausalLM(cfg), sd, tied)
    if rope["rope_type"] == "longrope":
        attn = float(gguf_meta(reader, "phi3.rope.scaling.attn_factor"))
        assert abs(attn - model.model.rotary_emb.attention_scaling) < 1e-6, (attn, model.model.rotary_emb.attention_scaling)
    err = 0.0
    with torch.no_grad():
        for ids, want in zip(expected["input_ids"], expected["logits"]):
            got = model(torch.tensor([ids])).logits[0].numpy()
            err = max(err, float(np.abs(got - np.asarray(want, dtype=np.float64)).max()))
    assert err < 1e-5, err
    return err


# What llama.cpp's gemma3 loader fixes rather than reads (src/llama-model.cpp, LLM_ARCH_GEMMA3): every layer l with
# (l + 1) % 6 != 0 slides (set_swa_pattern(6)) with RoPE base 10000 and no scaling, and Q is scaled by
# 1 / sqrt(attention.key_length) whatever query_pre_attn_scalar was (the 62-layer 27B takes 1 / sqrt(n_embd / n_head)).
# 7 layers make layer 5 the only full one.
LLAMACPP_GEMMA3_SWA_PERIOD = 6
LLAMACPP_GEMMA3_SWA_THETA = 10000.0
GEMMA3_GGUF_LAYERS = 7
# What llama.cpp's gemma2 loader fixes or defaults (src/models/gemma2.cpp, llama_model_gemma2::load_arch_hparams; in
# older trees src/llama-model.cpp, LLM_ARCH_GEMMA2): layer l slides iff l % 2 < 1 (set_swa_pattern(2); newer loaders
# take the period from an optional attention.sliding_window_pattern), window 4096 unless attention.sliding_window is
# given, Q scaled by 1 / sqrt(attention.key_length) (the 46-layer 27B: 1 / sqrt(n_embd / n_head)), attention scores
# and logits always softcapped (50 and 30 unless attn_logit_softcapping / final_logit_softcapping are given),
# rope.freq_base 10000 unless given (the converter writes none for gemma2), rope.freq_base_swa = rope.freq_base
# unless given, token_embd as the head. 5 layers: 0, 2 and 4 slide, 1 and 3 attend fully.
LLAMACPP_GEMMA2_SWA_PERIOD = 2
GEMMA2_GGUF_LAYERS = 5
# Hugging Face Gemma 3 layer tensor -> llama.cpp name (gguf-py's TensorNameMap must agree).
GEMMA3_GGUF_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                     "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                     "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
                     "post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
                     "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
                     "post_feedforward_layernorm": "post_ffw_norm"}
# Gemma 2: the same without the per-head q / k norms.
GEMMA2_GGUF_NAMES = {h: c for h, c in GEMMA3_GGUF_NAMES.items() if h not in ("self_attn.q_norm", "self_attn.k_norm")}
# GGUF architecture -> (gguf-py MODEL_ARCH, layer tensor names, layer count of the "27B" whose attention scale is
# 1 / sqrt(n_embd / n_head)).
GEMMA_GGUF_ARCHS = {"gemma2": (gguf.MODEL_ARCH.GEMMA2, GEMMA2_GGUF_NAMES, 46),
                    "gemma3": (gguf.MODEL_ARCH.GEMMA3, GEMMA3_GGUF_NAMES, 62)}


def llamacpp_swa_layer_types(n_layer: int, period: int) -> list[str]:
    """llama.cpp's set_swa_pattern(period) (not dense_first): layer l slides iff l % period < period - 1."""
    return ["sliding_attention" if l % period < period - 1 else "full_attention" for l in range(n_layer)]


def make_gemma_gguf(root: Path, tok: Tokenizer, name: str, seed: int, cfg, add_arch_hparams,
                    settings_checks=gemma_settings_matter) -> tuple:
    """NAME/model.gguf as llama.cpp's converter writes a Gemma GGUF (every *norm.weight stored as weight + 1, Q/K
    rows not permuted, no output.weight for the tied head; tensor names asserted against gguf-py's table for the
    architecture) with byte-level BPE tokenizer metadata, for a fresh model of `cfg` (randomize(seed)) whose Hugging
    Face config is what llama.cpp reads from the file. expected.json is computed by transformers from the weights
    before the + 1 (the checkpoint itself is not kept). add_arch_hparams(wr, hf) writes the model keys from the
    checkpoint's config.json `hf`; settings_checks(checkpoint, input_ids, name) gives the checks recorded in
    "reference". The file is read back (gemma_gguf_crosscheck) and its tokenizer metadata re-encoded.
    Returns (out, expected, checks, gg, hf, readback, numpy_err)."""
    cls = GEMMA_CLASSES[cfg.model_type][1]
    arch = {"gemma2": "gemma2", "gemma3_text": "gemma3"}[cfg.model_type]
    model_arch, names, _ = GEMMA_GGUF_ARCHS[arch]
    n_layer = cfg.num_hidden_layers
    assert tok.get_vocab_size() == cfg.vocab_size == VOCAB, (tok.get_vocab_size(), cfg.vocab_size)
    input_ids = model_input_ids_from_tok(tok, seed)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(seed)
        model = cls(cfg).eval()
        randomize(model, seed)
        model.save_pretrained(tmp)
        src, out, hf = start_gguf_copy(root, name.removesuffix("-gguf"), src=Path(tmp))
        expected = compute_expected(src, cls, input_ids, "float32", None)
        expected["tokenizer"] = {"texts": TOKENIZER_TEXTS, "ids": [tok.encode(t).ids for t in TOKENIZER_TEXTS]}
        checks = settings_checks(src, input_ids, name)
        write_json(src / "expected.json", expected)
        sd = float32_state_dict(src)

        # The converter adds 1 to every tensor whose name ends in "norm.weight" (Gemma's RMSNorm scales by 1 + w).
        tensor_map = gguf.get_tensor_name_map(model_arch, n_layer)
        gg = {"token_embd.weight": sd["model.embed_tokens.weight"]}
        for l in range(n_layer):
            for h, c in names.items():
                assert tensor_map.get_name(f"model.layers.{l}.{h}") == f"blk.{l}.{c}", (h, c)
                a = sd[f"model.layers.{l}.{h}.weight"]
                gg[f"blk.{l}.{c}.weight"] = a + np.float32(1) if h.endswith("norm") else a
        gg["output_norm.weight"] = sd["model.norm.weight"] + np.float32(1)
        assert len(gg) == len(sd) and "lm_head.weight" not in sd, sorted(set(sd))
        table = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[model_arch]}
        written = {"blk.{bid}." + k.split(".")[2] if k.startswith("blk.") else k.removesuffix(".weight") for k in gg}
        assert written <= table and table - written <= {"output"}, (sorted(written), sorted(table))

        wr = GGUFWriter(str(out / "model.gguf"), arch)
        add_arch_hparams(wr, hf)
        write_gguf_copy(wr, tok, gg, src, out)

    path = out / "model.gguf"
    readback, numpy_err = gemma_gguf_crosscheck(path, expected)
    print(f"{name}: max |logit - expected|: {cls.__name__} read back from model.gguf {readback:.3g}, "
          f"numpy llama.cpp-style forward {numpy_err:.3g}")
    reader = GGUFReader(str(path))
    gtok = gguf_tokenizer_from_fields(list(gguf_meta(reader, "tokenizer.ggml.tokens")),
                                      list(gguf_meta(reader, "tokenizer.ggml.merges")),
                                      list(gguf_meta(reader, "tokenizer.ggml.token_type")), digits=False)
    assert [gtok.encode(t).ids for t in TOKENIZER_TEXTS] == expected["tokenizer"]["ids"]
    return out, expected, checks, gg, hf, readback, numpy_err


GEMMA_GGUF_TOKENIZER = ("byte-level BPE GGUF metadata of tiny-llama-gguf's copies (no BOS added); tokenizer.ids = "
                        "encode(text) of that tokenizer")


def make_gemma3_gguf(root: Path, tok: Tokenizer) -> dict:
    """tiny-gemma3-gguf/ (make_gemma_gguf): a gemma3 GGUF with rope.scaling.type linear and rope.scaling.factor for
    the full layers, rope.freq_base_swa and attention.sliding_window. A GGUF cannot carry tiny-gemma3's
    layer_types, query_pre_attn_scalar or local RoPE, so this is its own 7-layer model whose Hugging Face config is
    what llama.cpp reads from the file. The file is read back into a Gemma3ForCausalLM (norms - 1) and run through
    a numpy forward written after llama.cpp's graph on the stored weights; both must reproduce the expected logits."""
    name = "tiny-gemma3-gguf"
    layer_types = llamacpp_swa_layer_types(GEMMA3_GGUF_LAYERS, LLAMACPP_GEMMA3_SWA_PERIOD)
    cfg = gemma3_config(num_hidden_layers=GEMMA3_GGUF_LAYERS, query_pre_attn_scalar=GEMMA_HEAD_DIM,
                        layer_types=layer_types)
    assert cfg.rope_parameters["sliding_attention"] == {"rope_type": "default", "rope_theta": LLAMACPP_GEMMA3_SWA_THETA}

    def add_hparams(wr: GGUFWriter, hf: dict) -> None:
        rope = hf["rope_parameters"]
        assert rope["full_attention"]["rope_type"] == "linear", rope
        add_gguf_hparams(wr, name, hf, rope["full_attention"]["rope_theta"])
        wr.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        wr.add_rope_scaling_factor(rope["full_attention"]["factor"])
        wr.add_rope_freq_base_swa(rope["sliding_attention"]["rope_theta"])
        wr.add_sliding_window(hf["sliding_window"])

    out, expected, checks, gg, hf, readback, numpy_err = make_gemma_gguf(root, tok, name, SEED + 15, cfg, add_hparams)
    rope = hf["rope_parameters"]
    expected["reference"].update(
        gguf=gguf_version(), storage="float32 GGUF; the reference runs the Hugging Face weights (norms before + 1)",
        layer_types=layer_types, sliding_window=hf["sliding_window"], head_dim=hf["head_dim"],
        query_pre_attn_scalar=hf["query_pre_attn_scalar"], rope_parameters=rope,
        llama_cpp_conventions={
            "norms": "every *norm.weight (attn_norm, attn_q_norm, attn_k_norm, post_attention_norm, ffn_norm = "
                     "pre_feedforward_layernorm, post_ffw_norm, output_norm) is stored as HF weight + 1 and "
                     "multiplies the normalised vector as it is",
            "sliding_layers": "layer l slides iff (l + 1) % 6 != 0 (llama.cpp set_swa_pattern(6); only layer 5 of "
                              "7 is full); window gemma3.attention.sliding_window; key j is masked for query i "
                              "iff i - j >= window",
            "rope": "NeoX pairs (i, i + head_dim / 2): attn_q / attn_k rows are not permuted; full layers: "
                    "rope.freq_base with rope.scaling.type linear and rope.scaling.factor (positions times 1 / "
                    "factor); sliding layers: base 10000 and no scaling (fixed in llama.cpp's gemma3 loader; newer "
                    "converters also write rope.freq_base_swa, which newer loaders may read: 10000 here either way)",
            "attention_scale": "Q times 1 / sqrt(attention.key_length) (llama.cpp reads no query_pre_attn_scalar; "
                               "only the 62-layer 27B uses 1 / sqrt(n_embd / n_head)), so the reference has "
                               "query_pre_attn_scalar = head_dim",
            "embedding": "token_embd rows times sqrt(embedding_length); no output.weight, the head is token_embd",
            "final_logit_softcapping": "none (no key written)",
        },
        **checks, gguf_readback_max_abs_diff=readback, llamacpp_numpy_max_abs_diff=numpy_err,
        tokenizer=GEMMA_GGUF_TOKENIZER)
    write_json(out / "expected.json", expected)
    return {"name": name, "tensors": {k: ("model.gguf", "F32", list(v.shape)) for k, v in gg.items()}}


def make_gemma2_gguf(root: Path, tok: Tokenizer) -> dict:
    """tiny-gemma2-gguf/ (make_gemma_gguf): a gemma2 GGUF with attention.sliding_window, attn_logit_softcapping and
    final_logit_softcapping, rope.freq_base 10000 and key_length 24. llama.cpp fixes what a GGUF cannot say (even
    layers slide, scale 1 / sqrt(key_length)), so this is its own 5-layer model (layers 0, 2, 4 sliding, which is
    also Gemma2Config's default; query_pre_attn_scalar 24) with tiny-gemma2's softcaps (2 and 3) and window (5). The
    file is read back into a Gemma2ForCausalLM (norms - 1) and run through a numpy forward written after llama.cpp's
    graph (src/models/gemma2.cpp) on the stored weights; both must reproduce the expected logits."""
    name = "tiny-gemma2-gguf"
    layer_types = llamacpp_swa_layer_types(GEMMA2_GGUF_LAYERS, LLAMACPP_GEMMA2_SWA_PERIOD)
    assert layer_types == Gemma2Config(num_hidden_layers=GEMMA2_GGUF_LAYERS).layer_types, layer_types
    cfg = gemma2_config(num_hidden_layers=GEMMA2_GGUF_LAYERS, query_pre_attn_scalar=GEMMA_HEAD_DIM,
                        layer_types=layer_types)

    def add_hparams(wr: GGUFWriter, hf: dict) -> None:
        rope = hf["rope_parameters"]
        assert rope == GEMMA2_ROPE, rope
        add_gguf_hparams(wr, name, hf, rope["rope_theta"])
        wr.add_attn_logit_softcapping(hf["attn_logit_softcapping"])
        wr.add_final_logit_softcapping(hf["final_logit_softcapping"])
        wr.add_sliding_window(hf["sliding_window"])

    def settings_checks(src: Path, input_ids: list[list[int]], label: str) -> dict:
        return {**gemma2_softcap_inputs(src, input_ids), **gemma_settings_matter(src, input_ids, label)}

    out, expected, checks, gg, hf, readback, numpy_err = make_gemma_gguf(root, tok, name, SEED + 17, cfg, add_hparams,
                                                                         settings_checks)
    expected["reference"].update(
        gguf=gguf_version(), storage="float32 GGUF; the reference runs the Hugging Face weights (norms before + 1)",
        layer_types=layer_types, sliding_window=hf["sliding_window"], head_dim=hf["head_dim"],
        query_pre_attn_scalar=hf["query_pre_attn_scalar"], attn_logit_softcapping=hf["attn_logit_softcapping"],
        final_logit_softcapping=hf["final_logit_softcapping"], softcapping_note=GEMMA2_SOFTCAPPING_NOTE,
        rope_parameters=hf["rope_parameters"],
        llama_cpp_conventions={
            "source": "llama.cpp src/models/gemma2.cpp (llama_model_gemma2::load_arch_hparams and its graph; older "
                      "trees: src/llama-model.cpp LLM_ARCH_GEMMA2 and src/models/gemma2-iswa.cpp), build_attn_mha in "
                      "src/llama-graph.cpp, set_swa_pattern / is_masked_swa in src/llama-hparams.*, the converter's "
                      "Gemma2Model",
            "norms": "every *norm.weight (attn_norm, post_attention_norm, ffn_norm = pre_feedforward_layernorm, "
                     "post_ffw_norm, output_norm) is stored as HF weight + 1 and multiplies the normalised vector as "
                     "it is; no attn_q_norm / attn_k_norm",
            "sliding_layers": "layer l slides iff l % 2 < 1 (llama.cpp set_swa_pattern(2): layers 0, 2, 4 of 5, "
                              "Gemma2Config's default; newer loaders read the period from an optional "
                              "gemma2.attention.sliding_window_pattern, not written, default 2); window "
                              "gemma2.attention.sliding_window (4096 when absent); key j is masked for query i iff "
                              "i - j >= window",
            "rope": "NeoX pairs (i, i + head_dim / 2): attn_q / attn_k rows are not permuted; every layer "
                    "rope.freq_base with no scaling (llama.cpp's default 10000 when the key is absent: the converter "
                    "writes no rope.freq_base for gemma2; written here, 10000); rope.freq_base_swa (not written) "
                    "defaults to rope.freq_base",
            "attention_scale": "Q times 1 / sqrt(attention.key_length) after RoPE (llama.cpp reads no "
                               "query_pre_attn_scalar; only the 46-layer 27B uses 1 / sqrt(n_embd / n_head)), so the "
                               "reference has query_pre_attn_scalar = head_dim",
            "attn_logit_softcapping": "always on (attn_soft_cap): kq = cap * tanh(kq / cap) on the scaled scores, "
                                      "then soft_max_ext adds the mask; cap gemma2.attn_logit_softcapping (50 when "
                                      "absent)",
            "final_logit_softcapping": "always on: logits = cap * tanh(logits / cap) after the head; cap "
                                       "gemma2.final_logit_softcapping (30 when absent)",
            "embedding": "token_embd rows times sqrt(embedding_length); no output.weight: llama.cpp's gemma2 always "
                         "uses token_embd as the head",
            "ffn": "gelu_tanh(ffn_gate x) * ffn_up x, then ffn_down (LLM_FFN_GELU, LLM_FFN_PAR)",
        },
        **checks, gguf_readback_max_abs_diff=readback, llamacpp_numpy_max_abs_diff=numpy_err,
        tokenizer=GEMMA_GGUF_TOKENIZER)
    write_json(out / "expected.json", expected)
    return {"name": name, "tensors": {k: ("model.gguf", "F32", list(v.shape)) for k, v in gg.items()}}


def gemma_gguf_hparams(reader: GGUFReader) -> dict:
    """What llama.cpp takes from a gemma2 / gemma3 GGUF, with the values its loader fixes or defaults."""
    arch = gguf_meta(reader, "general.architecture")
    assert arch in GEMMA_GGUF_ARCHS, arch

    def key(k, default=None):
        return gguf_meta(reader, f"{arch}.{k}") if f"{arch}.{k}" in reader.fields else default

    def f32_key(k, default=None):                   # float32 in the file: 1e-6 -> 1e-6, not 9.99999997e-07
        v = key(k, default)
        return None if v is None else float(f"{float(v):.7g}")

    n_layer, n_embd, n_head = int(key("block_count")), int(key("embedding_length")), int(key("attention.head_count"))
    head_dim = int(key("attention.key_length"))
    scaling = key("rope.scaling.type", "none")
    assert scaling in ("none", "linear"), scaling
    hp = {"arch": arch, "n_layer": n_layer, "n_embd": n_embd, "n_ff": int(key("feed_forward_length")),
          "n_head": n_head, "n_head_kv": int(key("attention.head_count_kv")), "head_dim": head_dim,
          "n_ctx": int(key("context_length")), "eps": f32_key("attention.layer_norm_rms_epsilon"),
          "base": float(key("rope.freq_base", 10000.0)), "factor": float(key("rope.scaling.factor", 1.0)),
          "attn_scale_dim": n_embd // n_head if n_layer == GEMMA_GGUF_ARCHS[arch][2] else head_dim}
    if arch == "gemma3":
        assert key("attn_logit_softcapping") is None and key("final_logit_softcapping") is None
        period = LLAMACPP_GEMMA3_SWA_PERIOD
        hp.update(n_swa=int(key("attention.sliding_window")), base_swa=LLAMACPP_GEMMA3_SWA_THETA,
                  attn_softcap=None, final_softcap=None)
    else:
        period = int(key("attention.sliding_window_pattern", LLAMACPP_GEMMA2_SWA_PERIOD))
        hp.update(n_swa=int(key("attention.sliding_window", 4096)), base_swa=float(key("rope.freq_base_swa", hp["base"])),
                  attn_softcap=f32_key("attn_logit_softcapping", 50.0),
                  final_softcap=f32_key("final_logit_softcapping", 30.0))
    hp["swa"] = [t == "sliding_attention" for t in llamacpp_swa_layer_types(n_layer, period)]
    return hp


def gemma_gguf_crosscheck(path: Path, expected: dict) -> tuple[float, float]:
    """max |logit - expected| of (a) a Gemma2ForCausalLM / Gemma3ForCausalLM built from the GGUF alone (norms - 1;
    layer types, RoPE, attention scale and softcaps as llama.cpp derives them) and (b) numpy_gemma_llamacpp on the
    stored weights; asserts both are small."""
    reader, w = read_gguf_tensors(path)
    hp = gemma_gguf_hparams(reader)
    tied = "output.weight" not in w
    shape = dict(vocab_size=w["token_embd.weight"].shape[0], hidden_size=hp["n_embd"], intermediate_size=hp["n_ff"],
                 num_hidden_layers=hp["n_layer"], num_attention_heads=hp["n_head"], num_key_value_heads=hp["n_head_kv"],
                 head_dim=hp["head_dim"], query_pre_attn_scalar=hp["attn_scale_dim"], rms_norm_eps=hp["eps"],
                 max_position_embeddings=hp["n_ctx"], sliding_window=hp["n_swa"],
                 layer_types=["sliding_attention" if s else "full_attention" for s in hp["swa"]],
                 tie_word_embeddings=tied)
    if hp["arch"] == "gemma3":
        full_rope = {"rope_type": "default", "rope_theta": hp["base"]}
        if hp["factor"] != 1.0:
            full_rope.update(rope_type="linear", factor=hp["factor"])
        cfg = gemma3_config(**shape, rope_parameters={"full_attention": full_rope, "sliding_attention":
                                                      {"rope_type": "default", "rope_theta": hp["base_swa"]}})
    else:
        # Gemma2ForCausalLM has one unscaled RoPE for every layer and always ties the head, as llama.cpp's gemma2.
        assert hp["factor"] == 1.0 and hp["base_swa"] == hp["base"] and tied, hp
        cfg = gemma2_config(**shape, rope_parameters={"rope_type": "default", "rope_theta": hp["base"]},
                            attn_logit_softcapping=hp["attn_softcap"], final_logit_softcapping=hp["final_softcap"])
    cfg._attn_implementation = "eager"
    back = {v: k for k, v in GEMMA3_GGUF_NAMES.items()}
    sd = {"model.embed_tokens.weight": w["token_embd.weight"], "model.norm.weight": w["output_norm.weight"] - 1}
    for name, a in w.items():
        if name.startswith("blk."):
            _, l, c, _ = name.split(".")
            sd[f"model.layers.{l}.{back[c]}.weight"] = a - 1 if back[c].endswith("norm") else a
    assert len(sd) == len(w), sorted(w)
    model = float64_model(GEMMA_CLASSES[cfg.model_type][1](cfg), sd, tied)
    readback = numpy_err = 0.0
    with torch.no_grad():
        for ids, want in zip(expected["input_ids"], expected["logits"]):
            want = np.asarray(want, dtype=np.float64)
            readback = max(readback, float(np.abs(model(torch.tensor([ids])).logits[0].numpy() - want).max()))
            numpy_err = max(numpy_err, float(np.abs(numpy_gemma_llamacpp(w, ids, hp) - want).max()))
    assert readback < 1e-5 and numpy_err < 1e-4, (readback, numpy_err)
    return readback, numpy_err


def numpy_gemma_llamacpp(w: dict, ids: list[int], hp: dict) -> np.ndarray:
    """Independent float64 forward of a gemma2 / gemma3 GGUF following llama.cpp's graph (src/models/gemma2.cpp,
    src/models/gemma3.cpp) on the stored weights: x = token_embd[ids] * sqrt(n_embd); per layer attn_norm; Q, K, V;
    attn_q_norm / attn_k_norm per head (gemma3); NeoX RoPE with the layer's base and scale; Q * 1 / sqrt(attn_scale_dim);
    scores Q K^T, capped cap * tanh(s / cap) (gemma2), then causal softmax, sliding layers masking keys i - j >= n_swa;
    attn_output; post_attention_norm; residual; ffn_norm; gelu_tanh(gate) * up; ffn_down; post_ffw_norm; residual;
    output_norm; token_embd as the head; logits capped (gemma2). Norms multiply by the stored weights."""
    W = {k: v.astype(np.float64) for k, v in w.items()}
    T, hd, n_head, n_kv = len(ids), hp["head_dim"], hp["n_head"], hp["n_head_kv"]

    def rms(v, g):
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + hp["eps"]) * g

    def rope(v, base, scale):                                # v [T, heads, hd], pairs (i, i + hd/2)
        ang = np.arange(T)[:, None] * scale * base ** (-np.arange(0, hd, 2) / hd)[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = v[..., :hd // 2], v[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def softcap(v, cap):
        return v if cap is None else cap * np.tanh(v / cap)

    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    x = W["token_embd.weight"][ids] * math.sqrt(hp["n_embd"])
    for l in range(hp["n_layer"]):
        p = f"blk.{l}."
        swa = hp["swa"][l]
        base, scale = (hp["base_swa"], 1.0) if swa else (hp["base"], 1.0 / hp["factor"])
        mask = np.where((j <= i) & (~swa | (i - j < hp["n_swa"])), 0.0, -np.inf)
        h = rms(x, W[p + "attn_norm.weight"])
        q = (h @ W[p + "attn_q.weight"].T).reshape(T, n_head, hd)
        k = (h @ W[p + "attn_k.weight"].T).reshape(T, n_kv, hd)
        if p + "attn_q_norm.weight" in W:
            q, k = rms(q, W[p + "attn_q_norm.weight"]), rms(k, W[p + "attn_k_norm.weight"])
        q, k = rope(q, base, scale), rope(k, base, scale)
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, n_kv, hd)
        q = q / math.sqrt(hp["attn_scale_dim"])
        heads = []
        for hh in range(n_head):
            g = hh // (n_head // n_kv)
            s = softcap(q[:, hh] @ k[:, g].T, hp["attn_softcap"]) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            heads.append((s / s.sum(axis=1, keepdims=True)) @ v[:, g])
        x = x + rms(np.concatenate(heads, axis=1) @ W[p + "attn_output.weight"].T, W[p + "post_attention_norm.weight"])
        h = rms(x, W[p + "ffn_norm.weight"])
        gate = h @ W[p + "ffn_gate.weight"].T
        act = 0.5 * gate * (1 + np.tanh(math.sqrt(2 / math.pi) * (gate + 0.044715 * gate ** 3)))
        x = x + rms((act * (h @ W[p + "ffn_up.weight"].T)) @ W[p + "ffn_down.weight"].T, W[p + "post_ffw_norm.weight"])
    return softcap(rms(x, W["output_norm.weight"]) @ W.get("output.weight", W["token_embd.weight"]).T,
                   hp["final_softcap"])


def make_tiny_gguf(root: Path, tok: Tokenizer) -> dict:
    out = root / "tiny-llama-gguf"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    seed = SEED + 6
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=GGUF_LAYERS,
                      num_attention_heads=GGUF_HEADS, num_key_value_heads=GGUF_KV, head_dim=HIDDEN // GGUF_HEADS,
                      max_position_embeddings=MAX_POS, rope_theta=GGUF_THETA, rms_norm_eps=1e-5,
                      tie_word_embeddings=False)
    src = LlamaForCausalLM(cfg).eval()
    randomize(src, seed)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in src.state_dict().items()}

    # HF tensor -> GGUF tensor, in the order llama.cpp's converter emits them.
    gg = {"token_embd.weight": sd["model.embed_tokens.weight"]}
    for l in range(GGUF_LAYERS):
        p = f"model.layers.{l}."
        gg[f"blk.{l}.attn_norm.weight"] = sd[p + "input_layernorm.weight"]
        gg[f"blk.{l}.ffn_down.weight"] = sd[p + "mlp.down_proj.weight"]
        gg[f"blk.{l}.ffn_gate.weight"] = sd[p + "mlp.gate_proj.weight"]
        gg[f"blk.{l}.ffn_up.weight"] = sd[p + "mlp.up_proj.weight"]
        gg[f"blk.{l}.ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
        gg[f"blk.{l}.attn_k.weight"] = permute_for_gguf(sd[p + "self_attn.k_proj.weight"], GGUF_KV)
        gg[f"blk.{l}.attn_output.weight"] = sd[p + "self_attn.o_proj.weight"]
        gg[f"blk.{l}.attn_q.weight"] = permute_for_gguf(sd[p + "self_attn.q_proj.weight"], GGUF_HEADS)
        gg[f"blk.{l}.attn_v.weight"] = sd[p + "self_attn.v_proj.weight"]
    gg["output_norm.weight"] = sd["model.norm.weight"]
    gg["output.weight"] = sd["lm_head.weight"]

    vocab = tok.get_vocab()
    path = out / "model.gguf"
    wr = GGUFWriter(str(path), "llama")
    wr.add_type("model")
    wr.add_name("Tiny Llama Fixture")
    wr.add_context_length(MAX_POS)
    wr.add_embedding_length(HIDDEN)
    wr.add_block_count(GGUF_LAYERS)
    wr.add_feed_forward_length(FFN)
    wr.add_head_count(GGUF_HEADS)
    wr.add_head_count_kv(GGUF_KV)
    wr.add_rope_freq_base(GGUF_THETA)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    wr.add_vocab_size(VOCAB)
    wr.add_rope_dimension_count(HIDDEN // GGUF_HEADS)
    add_gguf_tokenizer(wr, tok)
    wr.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, a in gg.items():
        qt = GGUF_TYPES.get(name, QT.F32)
        if qt == QT.F32:
            wr.add_tensor(name, a.astype(np.float32))
        elif qt == QT.F16:
            wr.add_tensor(name, a.astype(np.float16))
        else:
            q = gquants.quantize(a, qt)
            wr.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qt)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()

    # Read back: check gguf-py's dequantiser against the independent one, and that un-permuting the
    # read-back Q/K recovers (dequantised) HF rows.
    model, reader, deq = hf_llama_from_gguf(path)
    tensor_info = {}
    for t in reader.tensors:
        n_cols = int(t.shape[0])
        n_rows = int(np.prod([int(v) for v in t.shape[1:]]))
        raw = np.ascontiguousarray(t.data).view(np.uint8).reshape(n_rows, -1)
        mine = dequant_blocks(raw, t.tensor_type, n_cols)
        theirs = deq[t.name].reshape(mine.shape)
        assert np.array_equal(mine, theirs), t.name
        tensor_info[t.name] = {"type": t.tensor_type.name, "ne": [int(v) for v in t.shape]}
    for l in range(GGUF_LAYERS):
        hf_q = model.model.layers[l].self_attn.q_proj.weight.detach().numpy()
        ref_q = sd[f"model.layers.{l}.self_attn.q_proj.weight"]
        assert np.abs(hf_q - ref_q).max() < 0.2, "un-permute did not recover HF q rows"

    # Expected: HF model (un-permuted, dequantised) in float64. Cross-check with adjacent-pair RoPE on
    # the permuted GGUF weights.
    input_ids = model_input_ids_from_tok(tok, seed)
    logits_all, nll, cross_err = [], [], 0.0
    with torch.no_grad():
        for ids in input_ids:
            lg = model(torch.tensor([ids])).logits[0]
            alt = numpy_llama_adjacent_rope(deq, ids, GGUF_LAYERS, GGUF_HEADS, GGUF_KV, 1e-5, GGUF_THETA)
            err = np.abs(alt - lg.numpy()).max()
            # transformers runs RMSNorm, the attention softmax and RoPE cos/sin in float32 even in a float64
            # model, so the two forwards agree to float32 rounding (~1e-6), not to float64 rounding.
            assert err < 2e-5, f"adjacent-pair RoPE cross-check failed: {err}"
            cross_err = max(cross_err, float(err))
            logits_all.append(f32_list(lg.numpy()))
            nll.append(nll_sums(lg, ids))

    # The tokenizer described by the GGUF metadata must reproduce the tokenizer.json it came from.
    gtok = gguf_tokenizer_from_fields(list(gguf_meta(reader, "tokenizer.ggml.tokens")),
                                      list(gguf_meta(reader, "tokenizer.ggml.merges")),
                                      list(gguf_meta(reader, "tokenizer.ggml.token_type")), digits=False)
    tok_ids = [gtok.encode(t, add_special_tokens=True).ids for t in TOKENIZER_TEXTS]
    assert tok_ids == [tok.encode(t).ids for t in TOKENIZER_TEXTS]
    tf_err = transformers_gguf_crosscheck(path, model, input_ids)
    assert tf_err is None or tf_err < 1e-9, f"transformers' GGUF loader disagrees: {tf_err}"

    expected = {
        "input_ids": input_ids,
        "logits": logits_all,
        "nll_sum": nll,
        "predicted_tokens": [len(i) - 1 for i in input_ids],
        "tokenizer": {"texts": TOKENIZER_TEXTS, "ids": tok_ids},
        "tensor_types": {k: v["type"] for k, v in tensor_info.items()},
        "reference": reference_info(gguf=gguf_version(), storage="dequantised GGUF weights",
                                    model_class="LlamaForCausalLM (attn_q/attn_k un-permuted)",
                                    adjacent_rope_numpy_max_abs_diff=cross_err,
                                    transformers_gguf_loader_max_abs_diff=tf_err),
    }
    write_json(out / "expected.json", expected)
    return {"name": "tiny-llama-gguf", "tensors": tensor_info}


def model_input_ids_from_tok(tok: Tokenizer, seed: int) -> list[list[int]]:
    first = tok.encode(MODEL_TEXT).ids[:SEQ_LEN]
    rng = np.random.default_rng(seed)
    return [first, [int(v) for v in rng.integers(0, VOCAB, size=SEQ_LEN + 1)]]


def gguf_version() -> str:
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:
        return "unknown"


# --------------------------------------------------------------------------------------------------------
# SmolLM2

SMOLLM2_TEXTS = [
    "The capital of France is Paris. It is famous for the Eiffel Tower, its museums and its cafés.",
    "In 2024, 3.14159 and 1,000,000 were not the same number; 2024-01-15 came before 09:30 on 31/12.",
    "Wait... what?! (Really) -- [yes]; {no}: \"quoted\" 'single' #tag @user $5 100% a/b\\c",
    "café naïve — 東京 🚀 Straße",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint(fib(10))\n",
    "a   b\n\n\tc",
    "x² + y³ = ½",    # '½' etc. are numeric for the Digits pre-tokenizer (Rust char::is_numeric: Nd, Nl, No)
    ("Every spring the village held a market by the old stone bridge. Farmers brought vegetables, cheese "
     "and honey, and children ran between the stalls while their parents talked about the weather. In the "
     "evening musicians played near the water, and the smell of fresh bread drifted across the square until "
     "the last lanterns were put out and everyone walked slowly home."),
    "<|im_start|>user\nWhat is 7 times 8?<|im_end|>\n<|im_start|>assistant\n",
]
GREEDY_PROMPT = "The capital of France is"
GREEDY_STEPS = 8
N_FIXED_IDS = 50


def make_smollm2(root: Path, gguf_path: Path) -> dict:
    print(f"SmolLM2: reading {gguf_path}", flush=True)
    model, reader, _ = hf_llama_from_gguf(gguf_path)
    cfg = model.config
    tokens = list(gguf_meta(reader, "tokenizer.ggml.tokens"))
    merges = list(gguf_meta(reader, "tokenizer.ggml.merges"))
    types = list(gguf_meta(reader, "tokenizer.ggml.token_type"))
    assert gguf_meta(reader, "tokenizer.ggml.model") == "gpt2"
    assert gguf_meta(reader, "tokenizer.ggml.pre") == "smollm"
    tok = gguf_tokenizer_from_fields(tokens, merges, types, digits=True)

    # Sanity check against transformers' own GGUF tokenizer. transformers builds it without the digit
    # split (pre-tokenizer = ByteLevel only), so it is only required to agree on texts without numeric
    # characters; on those it must agree exactly (it does). Observed: it also agrees on the ASCII-digit
    # texts, because SmolLM2's vocabulary has no multi-digit tokens and no "Ġ<digit>" tokens, so BPE splits
    # digit runs anyway. It disagrees on "x² + y³ = ½": the Digits pre-tokenizer treats '½' (Unicode No) as a
    # digit and splits it from the preceding space ('Ġ', 'Â½'), while the plain GPT-2 regex keeps " ½"
    # together (' ?\p{N}+') and BPE gives ('ĠÂ', '½').
    hf_check = {}
    try:
        from transformers import AutoTokenizer
        hf_tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        for i, t in enumerate(SMOLLM2_TEXTS + [GREEDY_PROMPT]):
            a = tok.encode(t).ids
            b = hf_tok(t, add_special_tokens=False)["input_ids"]
            hf_check[t] = {"has_numeric": any(c.isnumeric() for c in t), "agrees": a == b}
        for t, r in hf_check.items():
            if not r["has_numeric"]:
                assert r["agrees"], f"reference tokenizer disagrees with transformers' GGUF tokenizer on {t!r}"
    except Exception as e:  # pragma: no cover - informational only
        hf_check = {"error": repr(e)}

    rng = np.random.default_rng(SEED)
    fixed_ids = sorted(int(v) for v in rng.choice(cfg.vocab_size, size=N_FIXED_IDS, replace=False))
    records = []
    with torch.no_grad():
        for t in SMOLLM2_TEXTS:
            enc = tok.encode(t)
            ids = enc.ids
            assert tok.decode(ids, skip_special_tokens=False) == t, t
            lg = model(torch.tensor([ids])).logits[0]
            last = lg[-1]
            top = torch.topk(last, 20)
            records.append({
                "text": t,
                "ids": ids,
                "tokens": enc.tokens,
                "nll_sum": nll_sums(lg, ids),
                "predicted_tokens": len(ids) - 1,
                "last_top20": [[int(i), f32(v)] for v, i in zip(top.values.tolist(), top.indices.tolist())],
                "last_fixed_logits": [f32(last[i].item()) for i in fixed_ids],
            })
            print(f"  {len(ids):3d} tokens  nll/token {records[-1]['nll_sum'] / max(1, len(ids) - 1):.3f}  {t[:40]!r}",
                  flush=True)
        prompt = tok.encode(GREEDY_PROMPT).ids
        seq = list(prompt)
        for _ in range(GREEDY_STEPS):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    greedy = {"prompt": GREEDY_PROMPT, "prompt_ids": prompt, "ids": seq[len(prompt):],
              "text": tok.decode(seq[len(prompt):])}
    print(f"  greedy: {GREEDY_PROMPT!r} -> {greedy['text']!r}", flush=True)

    tf_err = transformers_gguf_crosscheck(gguf_path, model, [r["ids"] for r in records])
    assert tf_err is None or tf_err < 1e-6, f"transformers' GGUF loader disagrees: {tf_err}"
    sha = hashlib.sha256(gguf_path.read_bytes()).hexdigest()
    expected = {
        "model": {"file": gguf_path.name, "sha256": sha, "n_layer": cfg.num_hidden_layers,
                  "n_embd": cfg.hidden_size, "n_head": cfg.num_attention_heads, "n_head_kv": cfg.num_key_value_heads,
                  "head_dim": cfg.head_dim, "n_ff": cfg.intermediate_size, "n_vocab": cfg.vocab_size,
                  "rope_theta": cfg.rope_parameters["rope_theta"], "rms_norm_eps": cfg.rms_norm_eps,
                  "tied_embeddings": cfg.tie_word_embeddings},
        "bos_added": False,
        "fixed_ids": fixed_ids,
        "texts": records,
        "greedy": greedy,
        "hf_gguf_tokenizer_check": hf_check,
        "reference": reference_info(gguf=gguf_version(), storage="dequantised GGUF weights (gguf-py)",
                                    tokenizer="tokenizers BPE from GGUF tokens/merges, pre-tokenizer "
                                              "Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space="
                                              "False, use_regex=True)], ByteLevel decoder; control tokens special",
                                    transformers_gguf_loader_max_abs_diff=tf_err),
    }
    path = root / "smollm2-expected.json"
    write_json(path, expected)
    return expected


# --------------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smollm2", type=Path, help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", help="comma-separated fixture names to write (default: all)")
    args = ap.parse_args()
    global ONLY
    ONLY = set(args.only.split(",")) if args.only else None
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.out.mkdir(parents=True, exist_ok=True)

    summaries, llama_tok = tiny_hf_fixtures(args.out)
    if ONLY is None or "tiny-llama-gguf" in ONLY:
        summaries.append(make_tiny_gguf(args.out, llama_tok))
    for name, arch in (("tiny-qwen3", "qwen3"), ("tiny-llama-bias", "llama"), ("tiny-smollm3", "smollm3")):
        if ONLY is None or f"{name}-gguf" in ONLY:
            summaries.append(make_gguf_copy(args.out, llama_tok, name, arch))
    if ONLY is None or "tiny-phi3-longrope-gguf" in ONLY:
        summaries.append(make_phi3_gguf_copy(args.out, llama_tok, "tiny-phi3-longrope"))
    if ONLY is None or "tiny-gemma3-gguf" in ONLY:
        summaries.append(make_gemma3_gguf(args.out, llama_tok))
    if ONLY is None or "tiny-gemma2-gguf" in ONLY:
        summaries.append(make_gemma2_gguf(args.out, llama_tok))
    if args.smollm2:
        make_smollm2(args.out, args.smollm2.resolve())

    print(f"\nWrote fixtures into {args.out}:")
    for s in summaries:
        print(f"  {s['name']}/")
        for k, v in s["tensors"].items():
            print(f"      {k:48s} {v}")
    total = 0
    for p in sorted(args.out.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"  {p.relative_to(args.out)}  {p.stat().st_size:,} bytes")
    print(f"  total {total:,} bytes")


if __name__ == "__main__":
    main()
