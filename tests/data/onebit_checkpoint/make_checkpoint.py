#!/usr/bin/python3
"""Writes a small OneBit inference checkpoint the way OneBit's authors lay it out
(github xuyuzhuang11/OneBit, scripts/convert_llama_to_infer_ckpt.py, BitLinearInf), with numpy
only, independently of onebit, plus what a correct reader must make of it.

Usage: make_checkpoint.py OUT_DIR   (writes OUT_DIR/checkpoint.safetensors and
                                     OUT_DIR/expected.safetensors; exit 3 without numpy)

The rules followed here, from the paper's code: each 1-bit module NAME (Hugging Face Llama
names) of `out` outputs and `in` inputs is NAME.weight, int8 [out, in/8]: the sign w = +-1 is
stored as bit = (1 - w) / 2, eight per byte, input i in bit i % 8 of byte i // 8 (least
significant first); NAME.input_factor (g) and NAME.weight_scale (h), float16. The module
computes LayerNorm(((x * g) @ sign(W).T) * h) over the out features, no affine, eps 1e-5,
biased variance. expected.safetensors holds, per module, the signs unpacked again from the
packed bytes with the same shifts (w = -2 * bit + 1) as int8, an input batch x and that
LayerNorm output y (float32, computed in float64).
"""
import json
import os
import struct
import sys

try:
    import numpy as np
except ImportError:
    sys.exit(3)

HIDDEN, INTERMEDIATE, LAYERS, VOCAB, BATCH = 16, 24, 2, 11, 3
EPS = 1e-5


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, dtype string, numpy array); written in that order, back to back."""
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name, dtype, array in tensors:
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def pack_signs(w):
    """w: [out, in] of +-1 -> int8 [out, in/8], bit = (1 - w)/2, LSB first."""
    out, n = w.shape
    bits = ((1 - w) // 2).astype(np.uint32)
    packed = np.zeros((out, n // 8), dtype=np.uint32)
    for b in range(8):
        packed |= bits[:, b::8] << b
    return packed.astype(np.uint8).view(np.int8)


def unpack_signs(packed, n):
    raw = packed.view(np.uint8).astype(np.int32)
    w = np.zeros((raw.shape[0], n), dtype=np.int32)
    for i in range(n):
        bit = (raw[:, i // 8] >> (i % 8)) & 1
        w[:, i] = -2 * bit + 1
    return w


def layer_norm(p):
    mean = p.mean(axis=1, keepdims=True)
    var = ((p - mean) ** 2).mean(axis=1, keepdims=True)
    return (p - mean) / np.sqrt(var + EPS)


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.RandomState(20261205)
    shapes = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (HIDDEN, HIDDEN),
              "self_attn.v_proj": (HIDDEN, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
              "mlp.gate_proj": (INTERMEDIATE, HIDDEN), "mlp.up_proj": (INTERMEDIATE, HIDDEN),
              "mlp.down_proj": (HIDDEN, INTERMEDIATE)}
    checkpoint = [("model.embed_tokens.weight", "F16",
                   rng.standard_normal((VOCAB, HIDDEN)).astype(np.float16))]
    expected = []
    for layer in range(LAYERS):
        for module, (out, n) in shapes.items():
            name = "model.layers.%d.%s" % (layer, module)
            w = np.where(rng.standard_normal((out, n)) < 0, -1, 1).astype(np.int32)
            g = (rng.lognormal(-1.0, 0.5, n) * np.where(rng.rand(n) < 0.1, -1, 1)).astype(np.float16)
            h = rng.lognormal(-2.0, 0.5, out).astype(np.float16)
            packed = pack_signs(w)
            signs = unpack_signs(packed, n)
            assert (signs == w).all()
            x = rng.standard_normal((BATCH, n)).astype(np.float32)
            p = ((x.astype(np.float64) * g.astype(np.float64)) @ signs.T.astype(np.float64)) * \
                h.astype(np.float64)
            y = layer_norm(p).astype(np.float32)
            checkpoint += [(name + ".weight", "I8", packed), (name + ".input_factor", "F16", g),
                           (name + ".weight_scale", "F16", h)]
            expected += [(name + ".signs", "I8", signs.astype(np.int8)), (name + ".x", "F32", x),
                         (name + ".y", "F32", y)]
        checkpoint.append(("model.layers.%d.input_layernorm.weight" % layer, "F16",
                           np.ones(HIDDEN, dtype=np.float16)))
    checkpoint.append(("model.norm.weight", "F16", np.ones(HIDDEN, dtype=np.float16)))
    write_safetensors(os.path.join(out_dir, "checkpoint.safetensors"), checkpoint, {"format": "pt"})
    write_safetensors(os.path.join(out_dir, "expected.safetensors"), expected, {"format": "pt"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
