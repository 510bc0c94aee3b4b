#!/usr/bin/env python3
"""Reference gradients for the Swift backward pass (PyTorch autograd on the tiny checkpoints).

Usage:
    python3 scripts/reference/make_gradient_fixtures.py [--fixtures DIR] [--smollm2 PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf]
                                                        [--only NAME,...]

Reads the tiny checkpoints that make_fixtures.py wrote into Tests/ShadowModelsTests/Fixtures/ (run that
first) and writes, next to each checkpoint's expected.json, a gradients.json for one sample: the first
sequence of expected.json ("input_ids") with the loss taken from position PREDICT_FROM on, i.e.

    loss = mean over t = predict_from .. T-1 of  -log softmax(logits[t - 1])[ids[t]]

which is what `lossAndGradients(tokens:predictFrom:)` computes. Per decoder layer l it records, in the
Swift code's layouts (W_O and W_down transposed: one row per head dimension / neuron):

  attention          A^l        (T, H*d_h)  the input of o_proj / out_proj          (forward pre-hook)
  attention_grad     dL/dA^l    (T, H*d_h)                                          (retain_grad)
  hidden             N^l        (T, F)      the input of down_proj / fc2            (forward pre-hook)
  hidden_grad        dL/dN^l    (T, F)
  pre_activation     Z^l        (T, F)      gate_proj output (Llama) / fc1 output (OPT)
  output_projection_grad  dL/dW_O, transposed to (H*d_h, d)
  down_projection_grad    dL/dW_down, transposed to (F, d)
  first_projection_grad   dL/dW_gate (Llama) or dL/dW_fc1 (OPT), (F, d)
  up_projection_grad      dL/dW_up, (F, d), Llama only

Phi-3's fused gate_up_proj (rows [0, F) gate, [F, 2F) up) is split into the same entries: pre_activation is the
first F columns of its output, first_projection_grad rows [0, F) and up_projection_grad rows [F, 2F) of its
gradient (the entries are named by role, so they do not depend on how a checkpoint fuses its tensors).

Full tensors would take ~200 KB per layer, so each is summarised (`stats`) by its shape, sum, sum of
|x|, sum of x^2, max |x| and `samples`: [flat index, value] pairs for the 4 entries of largest |x| and
4 entries at fixed random positions. Per unit the file also holds the ShadowLLM "plainact" scores
(heads: sum_t |<A_t,h, G_t,h>|; neurons: sum_t |N_t,j GN_t,j|) and "snip" scores (sum |W ⊙ dL/dW| over a
head's rows of W_O^T / a neuron's row of W_down^T), which test the criteria module end to end.

The models run in float64 (eager attention, eval mode) after loading the stored weights exactly as they
are (f32, bf16 or f16). Everything is deterministic.

The gradients are transformers' own autograd, so the sliding-window mask of tiny-mistral-window (every layer,
window 5) and tiny-qwen2-window (layer_types [full, sliding, sliding], window 4) is part of them. For those two
the script also runs the same weights with every layer attending fully and checks that the loss and the weight
gradients change; "reference" records sliding_window, layer_types, loss_without_window and
window_grad_max_abs_diff (max |dL/dW with the window - without| over all weights).

tiny-gemma3 (Gemma3ForCausalLM; sliding layers 0, 1, 3 with window 5, full layer 2) is handled like the Llama
family: its decoder layer normalises the o_proj output (post_attention_layernorm) and the down_proj output
(post_feedforward_layernorm) before each residual add, but the hooks on the inputs of o_proj and down_proj still
give A and N, N = gelu_tanh(gate_proj(x)) * up_proj(x) and pre_activation the gate_proj output. Its RoPE depends
on the layer type, so its "without window" run keeps layer_types and widens the window to max_position_embeddings
instead of making every layer full.

tiny-gemma2 (Gemma2ForCausalLM; sliding layers 0 and 2 with window 5, full layers 1 and 3) is handled the same
way (no q_norm / k_norm, one RoPE). Its logits are softcapped (final_logit_softcapping 3: logits = 3 tanh(z / 3) of
the head's output z) and so is every attention score before the mask (attn_logit_softcapping 2); the loss and every
gradient here are of transformers' capped logits, and "reference" records both caps. transformers' Gemma 2 always
builds its sliding mask, so its "without window" run also keeps layer_types and widens the window.

With --smollm2 it also writes smollm2-gradients.json for the real SmolLM2-135M-Instruct GGUF (dequantised,
Q/K rows un-permuted, by make_fixtures.py's hf_llama_from_gguf) on one question/answer sample: the loss and,
per layer, the stats of dL/dA and dL/dN (no samples) and the plainact head scores (about 40 KB).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FIXTURES = REPO / "Tests" / "ShadowModelsTests" / "Fixtures"
CHECKPOINTS = ["tiny-llama", "tiny-llama-tied", "tiny-llama-bias", "tiny-qwen2", "tiny-qwen3", "tiny-smollm3", "tiny-opt", "tiny-opt-postln",
               "tiny-phi3", "tiny-phi3-longrope", "tiny-mistral-window", "tiny-qwen2-window", "tiny-gemma3",
               "tiny-gemma2"]
# Gemma model_type -> the class AutoModelForCausalLM must give
GEMMA_CLASSES = {"gemma3_text": "Gemma3ForCausalLM", "gemma2": "Gemma2ForCausalLM"}
PREDICT_FROM = 5
SEED = 4321
N_LARGEST = 4
N_RANDOM = 4


def f64(x) -> float:
    return float(np.float64(x))


def stats(a: np.ndarray, rng: np.random.Generator) -> dict:
    flat = np.asarray(a, dtype=np.float64).reshape(-1)
    largest = np.argsort(-np.abs(flat), kind="stable")[:N_LARGEST]
    spread = rng.choice(flat.size, size=N_RANDOM, replace=False)
    picks = sorted(set(int(i) for i in largest) | set(int(i) for i in spread))
    return {
        "shape": list(a.shape),
        "sum": f64(flat.sum()),
        "abs_sum": f64(np.abs(flat).sum()),
        "sq_sum": f64((flat * flat).sum()),
        "max_abs": f64(np.abs(flat).max()),
        "samples": [[i, f64(flat[i])] for i in picks],
    }


def layer_modules(model, arch: str):
    """(o_proj, down_proj, first projection, up projection or None) of every decoder layer. Phi-3's fused
    gate_up_proj is both the first and the up projection (first is up: gate rows [0, F), up rows [F, 2F))."""
    if arch == "opt":
        return [(l.self_attn.out_proj, l.fc2, l.fc1, None) for l in model.model.decoder.layers]
    if arch == "phi3":
        return [(l.self_attn.o_proj, l.mlp.down_proj, l.mlp.gate_up_proj, l.mlp.gate_up_proj) for l in model.model.layers]
    return [(l.self_attn.o_proj, l.mlp.down_proj, l.mlp.gate_proj, l.mlp.up_proj) for l in model.model.layers]


def gradients_for(directory: Path, rng: np.random.Generator) -> dict:
    expected = json.loads((directory / "expected.json").read_text())
    ids = expected["input_ids"][0]
    config = json.loads((directory / "config.json").read_text())
    arch = config["model_type"]
    model = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager")
    if arch in GEMMA_CLASSES:
        assert type(model).__name__ == GEMMA_CLASSES[arch], type(model)
    storage = str(next(model.parameters()).dtype).replace("torch.", "")
    model = model.to(torch.float64).eval()

    captured: list[dict] = []
    hooks = []
    for o_proj, down, first, _ in layer_modules(model, arch):
        slot: dict = {}
        captured.append(slot)

        def keep(name, slot=slot):
            def pre_hook(module, args):
                args[0].retain_grad()
                slot[name] = args[0]
            return pre_hook

        def keep_output(name, slot=slot):
            def hook(module, args, output):
                slot[name] = output.detach().clone()
            return hook

        hooks.append(o_proj.register_forward_pre_hook(keep("attention")))
        hooks.append(down.register_forward_pre_hook(keep("hidden")))
        hooks.append(first.register_forward_hook(keep_output("pre_activation")))

    model.zero_grad(set_to_none=True)
    logits = model(torch.tensor([ids])).logits[0]
    targets = torch.tensor(ids[PREDICT_FROM:])
    loss = torch.nn.functional.cross_entropy(logits[PREDICT_FROM - 1:len(ids) - 1], targets, reduction="mean")
    loss.backward()
    for h in hooks:
        h.remove()

    window = window_check(directory, model, ids, loss) if getattr(model.config, "sliding_window", None) else {}
    caps = {k: getattr(model.config, k) for k in ("attn_logit_softcapping", "final_logit_softcapping")
            if getattr(model.config, k, None) is not None}
    if caps:
        caps["softcapping_note"] = ("the loss is of the logits as transformers returns them, after final_logit_softcapping "
                                    "(cap * tanh(z / cap)); the attention scores are capped before the mask and softmax")

    layers = []
    for (o_proj, down, first, up), slot in zip(layer_modules(model, arch), captured):
        # OPT flattens (batch, T, ·) to (batch·T, ·) around its MLP; with batch 1 both give (T, ·).
        T = len(ids)
        a = slot["attention"].detach().reshape(T, -1).numpy()
        g = slot["attention"].grad.reshape(T, -1).numpy()
        n = slot["hidden"].detach().reshape(T, -1).numpy()
        gn = slot["hidden"].grad.reshape(T, -1).numpy()
        z = slot["pre_activation"].reshape(T, -1).numpy()
        fused = first is up                                 # Phi-3 gate_up_proj: split into gate and up rows
        F = down.weight.shape[1]
        first_grad = first.weight.grad.numpy()
        if fused:
            z = z[:, :F]
            first_grad = first_grad[:F]
        heads = model.config.num_attention_heads
        head_dim = a.shape[1] // heads
        w_o_t = o_proj.weight.detach().numpy().T            # (H*d_h, d)
        dw_o_t = o_proj.weight.grad.numpy().T
        w_down_t = down.weight.detach().numpy().T           # (F, d)
        dw_down_t = down.weight.grad.numpy().T
        plainact_heads = [f64(np.abs((a[:, h * head_dim:(h + 1) * head_dim] * g[:, h * head_dim:(h + 1) * head_dim])
                                     .sum(axis=1)).sum()) for h in range(heads)]
        plainact_neurons = [f64(v) for v in np.abs(n * gn).sum(axis=0)]
        snip_heads = [f64(np.abs(w_o_t[h * head_dim:(h + 1) * head_dim] * dw_o_t[h * head_dim:(h + 1) * head_dim]).sum())
                      for h in range(heads)]
        snip_neurons = [f64(v) for v in np.abs(w_down_t * dw_down_t).sum(axis=1)]
        record = {
            "attention": stats(a, rng),
            "attention_grad": stats(g, rng),
            "hidden": stats(n, rng),
            "hidden_grad": stats(gn, rng),
            "pre_activation": stats(z, rng),
            "output_projection_grad": stats(dw_o_t, rng),
            "down_projection_grad": stats(dw_down_t, rng),
            "first_projection_grad": stats(first_grad, rng),
            "plainact": {"heads": plainact_heads, "neurons": plainact_neurons},
            "snip": {"heads": snip_heads, "neurons": snip_neurons},
        }
        if up is not None:
            record["up_projection_grad"] = stats(up.weight.grad.numpy()[F:] if fused else up.weight.grad.numpy(), rng)
        layers.append(record)

    return {
        "input_ids": ids,
        "predict_from": PREDICT_FROM,
        "loss": f64(loss.item()),
        "predicted_tokens": len(ids) - PREDICT_FROM,
        "layers": layers,
        "reference": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "compute_dtype": "float64",
            "storage_dtype": storage,
            "attn_implementation": "eager",
            "note": "transformers keeps RMSNorm, the attention softmax and RoPE cos/sin in float32 even in a "
                    "float64 model, so these values are good to about 1e-6 relative",
            **window,
            **caps,
        },
    }


def window_check(directory: Path, model, ids: list[int], loss: torch.Tensor) -> dict:
    """For a sliding-window checkpoint (gradients already computed): the same weights with sliding_window None
    and every layer full must give a different loss and different weight gradients, i.e. the window shaped them."""
    cfg = model.config
    layer_types = list(getattr(cfg, "layer_types", None) or ["sliding_attention"] * cfg.num_hidden_layers)
    full_cfg = type(cfg).from_pretrained(directory)
    rope = getattr(cfg, "rope_parameters", None) or {}
    if "full_attention" in rope or cfg.model_type in GEMMA_CLASSES:
        # RoPE per layer type (Gemma 3), or a model that always builds its sliding mask and so needs a window (Gemma 2):
        # keep the types, make the window longer than any sequence.
        full_cfg.sliding_window = cfg.max_position_embeddings
    else:
        full_cfg.sliding_window = None
        if hasattr(full_cfg, "layer_types"):
            full_cfg.layer_types = ["full_attention"] * cfg.num_hidden_layers
    full = type(model).from_pretrained(directory, config=full_cfg, attn_implementation="eager").to(torch.float64).eval()
    logits = full(torch.tensor([ids])).logits[0]
    full_loss = torch.nn.functional.cross_entropy(logits[PREDICT_FROM - 1:len(ids) - 1], torch.tensor(ids[PREDICT_FROM:]))
    full_loss.backward()
    grads = dict(full.named_parameters())
    diff = max(float((p.grad - grads[n].grad).abs().max()) for n, p in model.named_parameters())
    assert abs(full_loss.item() - loss.item()) > 1e-3 and diff > 1e-3, (loss.item(), full_loss.item(), diff)
    print(f"  {directory.name}: sliding_window {cfg.sliding_window}, layer_types {layer_types}, loss without window "
          f"{full_loss.item():.6f}, max |grad delta| {diff:.6g}")
    return {"sliding_window": cfg.sliding_window, "layer_types": layer_types,
            "loss_without_window": f64(full_loss.item()), "window_grad_max_abs_diff": f64(diff)}


SMOLLM2_CONTEXT = "Question: Which gas do plants take in from the air to make their food?\nAnswer:"
SMOLLM2_CONTINUATION = " Plants take in carbon dioxide from the air."


def smollm2_gradients(gguf_path: Path) -> dict:
    """Loss, dL/dA and dL/dN stats and plainact head scores of SmolLM2 on one sample."""
    import make_fixtures  # the same directory: its GGUF -> Hugging Face conversion and tokenizer
    model, reader, _ = make_fixtures.hf_llama_from_gguf(gguf_path)
    tok = make_fixtures.gguf_tokenizer_from_fields(
        list(make_fixtures.gguf_meta(reader, "tokenizer.ggml.tokens")),
        list(make_fixtures.gguf_meta(reader, "tokenizer.ggml.merges")),
        list(make_fixtures.gguf_meta(reader, "tokenizer.ggml.token_type")), digits=True)
    ids = tok.encode(SMOLLM2_CONTEXT + SMOLLM2_CONTINUATION).ids
    predict_from = len(tok.encode(SMOLLM2_CONTEXT).ids)
    captured = []
    hooks = []
    for layer in model.model.layers:
        slot = {}
        captured.append(slot)

        def keep(name, slot=slot):
            def pre_hook(module, args):
                args[0].retain_grad()
                slot[name] = args[0]
            return pre_hook
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(keep("attention")))
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(keep("hidden")))
    logits = model(torch.tensor([ids])).logits[0]
    loss = torch.nn.functional.cross_entropy(logits[predict_from - 1:len(ids) - 1], torch.tensor(ids[predict_from:]))
    loss.backward()
    for h in hooks:
        h.remove()
    rng = np.random.default_rng(SEED)
    heads = model.config.num_attention_heads
    layers = []
    for slot in captured:
        T = len(ids)
        a = slot["attention"].detach().reshape(T, -1).numpy()
        g = slot["attention"].grad.reshape(T, -1).numpy()
        gn = slot["hidden"].grad.reshape(T, -1).numpy()
        hd = a.shape[1] // heads
        plainact = [f64(np.abs((a[:, h * hd:(h + 1) * hd] * g[:, h * hd:(h + 1) * hd]).sum(axis=1)).sum()) for h in range(heads)]
        ag, hg = stats(g, rng), stats(gn, rng)
        del ag["samples"], hg["samples"]
        layers.append({"attention_grad": ag, "hidden_grad": hg, "plainact_heads": plainact})
    return {
        "context": SMOLLM2_CONTEXT, "continuation": SMOLLM2_CONTINUATION,
        "input_ids": ids, "predict_from": predict_from, "loss": f64(loss.item()), "layers": layers,
        "reference": {"torch": torch.__version__, "transformers": transformers.__version__, "compute_dtype": "float64",
                      "storage": "dequantised GGUF weights (make_fixtures.hf_llama_from_gguf)"},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--smollm2", type=Path, help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--only", help="comma-separated checkpoint names to write (default: all)")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    total = 0
    for name in CHECKPOINTS:
        if args.only and name not in args.only.split(","):
            continue
        rng = np.random.default_rng(SEED)
        out = gradients_for(args.fixtures / name, rng)
        path = args.fixtures / name / "gradients.json"
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(out, fh, separators=(",", ":"))
            fh.write("\n")
        size = path.stat().st_size
        total += size
        print(f"{name}: loss {out['loss']:.6f} over {out['predicted_tokens']} tokens, "
              f"{len(out['layers'])} layers -> {path.relative_to(REPO) if path.is_relative_to(REPO) else path} ({size:,} bytes)")
    if args.smollm2:
        out = smollm2_gradients(args.smollm2.resolve())
        path = args.fixtures / "smollm2-gradients.json"
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(out, fh, separators=(",", ":"))
            fh.write("\n")
        total += path.stat().st_size
        print(f"smollm2: loss {out['loss']:.6f} over {len(out['input_ids']) - out['predict_from']} of "
              f"{len(out['input_ids'])} tokens -> {path.name} ({path.stat().st_size:,} bytes)")
    print(f"total {total:,} bytes")


if __name__ == "__main__":
    main()
