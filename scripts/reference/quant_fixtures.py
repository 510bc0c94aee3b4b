#!/usr/bin/env python3
"""Writes Tests/ShadowFormatsTests/Fixtures/quants.json: blocks of the ggml K-quant and IQ4 types
and the floats the `gguf` package's numpy dequantisation makes of them.

    pip install gguf==0.19.0
    python3 scripts/reference/quant_fixtures.py      # rewrites the fixture (deterministic)

For each type there are three blocks of 256 elements (IQ4_NL: 24 blocks of 32), stored as a GGUF
tensor of shape ne = [256, 3] (IQ4_NL [128, 6]) would hold them:
  - two blocks of random bytes, whose f16 factors (d, and dmin where there is one) are overwritten
    with finite values in ±2 so that no element is inf or NaN;
  - one block with every other byte 0xFF (the largest codes, scales and mins, every high bit set)
    and factors -1.5 (d) and 0.75 (dmin), the corner random bytes rarely reach together.
Q8_K blocks also get their 16 int16 sums right, though dequantisation never reads them.

`gguf` has no dequantisation for Q8_K (ggml uses it only for activations), so its reference is
written here with numpy as f32 d times each int8, the same single product ggml computes.

JSON layout: {"generator": ..., "types": [{"type": "q4_K", "ne": [256, 3], "bytes": hex,
"values": hex}]}; `values` are the float32 results as little-endian bit patterns in hex, so the
Swift test compares bits, not decimal renderings.
"""
import json
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

OUT = pathlib.Path(__file__).resolve().parents[2] / "Tests" / "ShadowFormatsTests" / "Fixtures" / "quants.json"

# name: (ggml type, elements per block, bytes per block, byte offsets of its f16 factors)
TYPES = {
    "q2_K": (T.Q2_K, 256, 84, [80, 82]),      # 16 scale bytes, 64 quant bytes, d, dmin
    "q3_K": (T.Q3_K, 256, 110, [108]),        # 32 mask bytes, 64 quant bytes, 12 scale bytes, d
    "q4_K": (T.Q4_K, 256, 144, [0, 2]),       # d, dmin, 12 scale bytes, 128 nibble bytes
    "q5_K": (T.Q5_K, 256, 176, [0, 2]),       # d, dmin, 12 scale bytes, 32 fifth-bit bytes, 128 nibble bytes
    "q6_K": (T.Q6_K, 256, 210, [208]),        # 128 nibble bytes, 64 top-bit bytes, 16 int8 scales, d
    "q8_K": (T.Q8_K, 256, 292, []),           # f32 d, 256 int8, 16 int16 sums
    "iq4_nl": (T.IQ4_NL, 32, 18, [0]),        # d, 16 nibble bytes
    "iq4_xs": (T.IQ4_XS, 256, 136, [0]),      # d, u16 scale top bits, 4 scale nibble bytes, 128 nibble bytes
}

ELEMENTS = 768  # three 256-element blocks per type


def make_blocks(name, rng):
    _, block_size, block_bytes, factors = TYPES[name]
    n_blocks = ELEMENTS // block_size
    data = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    extreme = range(n_blocks * 2 // 3, n_blocks)  # the last third: all bits set
    data[list(extreme)] = 0xFF
    for b in range(n_blocks):
        if name == "q8_K":
            d = np.float32(-1.5 if b in extreme else rng.uniform(-2, 2))
            data[b, 0:4] = np.frombuffer(d.tobytes(), dtype=np.uint8)
            sums = data[b, 4:260].view(np.int8).astype(np.int16).reshape(16, 16).sum(axis=1).astype("<i2")
            data[b, 260:292] = np.frombuffer(sums.tobytes(), dtype=np.uint8)
            continue
        for i, offset in enumerate(factors):
            value = (-1.5, 0.75)[i] if b in extreme else rng.uniform(-2, 2)
            data[b, offset:offset + 2] = np.frombuffer(np.float16(value).tobytes(), dtype=np.uint8)
    return data


def reference(name, data):
    ggml_type = TYPES[name][0]
    if name == "q8_K":
        d = data[:, 0:4].copy().view("<f4")                 # (blocks, 1)
        q = data[:, 4:260].view(np.int8).astype(np.float32)  # (blocks, 256)
        return (d * q).reshape(-1)
    return dequantize(data.reshape(-1), ggml_type).astype(np.float32).reshape(-1)


def main():
    rng = np.random.default_rng(20261204)
    entries = []
    for name in TYPES:
        data = make_blocks(name, rng)
        values = reference(name, data)
        assert values.shape == (ELEMENTS,) and np.isfinite(values).all(), name
        block_size = TYPES[name][1]
        ne = [256, 3] if block_size == 256 else [128, 6]
        entries.append({"type": name, "ne": ne, "bytes": data.tobytes().hex(),
                        "values": values.astype("<f4").tobytes().hex()})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fixture = {"generator": "scripts/reference/quant_fixtures.py with gguf 0.19.0, numpy " + np.__version__,
               "types": entries}
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
