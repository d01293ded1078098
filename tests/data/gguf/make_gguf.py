#!/usr/bin/env python3
"""Writes the GGUF files test_gguf reads, with numpy only, following the GGUF specification
(ggml docs/gguf.md) and ggml's block formats (ggml-common.h) -- independently of onebit's reader.

    make_gguf.py OUT_DIR

writes, into OUT_DIR:
  types.gguf        version 3, default alignment 32: metadata of every scalar type and arrays,
                    and tensors of F32, F16, BF16, Q8_0, Q4_0 and Q1_0 (one 3-D)
  types.expected    the dequantised values of every tensor of types.gguf, in file order, as
                    little-endian float32 (computed here, in float32, as ggml defines them)
  layer_v2.gguf     version 2, general.alignment 64: a Q1_0 weight of 5 rows x 384 built from
                    known signs and scales, and an F32 tensor
  layer_v2.signs    its signs as int8 (+1 / -1), 5 x 384, and layer_v2.scales its scales as
                    float16, 5 x 3
Everything is seeded: the output is the same bytes on every run (test_gguf compares them with
the committed copies).
"""
import os
import struct
import sys

import numpy as np

GGUF_TYPES = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7,
              "string": 8, "array": 9, "u64": 10, "i64": 11, "f64": 12}
SCALAR_FORMAT = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i",
                 "f32": "<f", "bool": "<?", "u64": "<Q", "i64": "<q", "f64": "<d"}
GGML = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 8, "BF16": 30, "Q1_0": 41}


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def value_bytes(kind, v):
    if kind == "string":
        return gguf_string(v)
    if isinstance(kind, tuple):  # ("array", element kind)
        el = kind[1]
        out = struct.pack("<IQ", GGUF_TYPES[el], len(v))
        for x in v:
            out += value_bytes(el, x)
        return out
    return struct.pack(SCALAR_FORMAT[kind], v)


def kv_bytes(key, kind, v):
    t = GGUF_TYPES["array"] if isinstance(kind, tuple) else GGUF_TYPES[kind]
    return gguf_string(key) + struct.pack("<I", t) + value_bytes(kind, v)


def write_gguf(path, version, metadata, tensors, alignment=32):
    """tensors: list of (name, ne (innermost first), ggml type name, raw bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, kind, v in metadata:
        head += kv_bytes(key, kind, v)
    offsets, offset = [], 0
    for _, _, _, raw in tensors:
        offsets.append(offset)
        offset += (len(raw) + alignment - 1) // alignment * alignment
    for (name, ne, t, _), off in zip(tensors, offsets):
        head += gguf_string(name) + struct.pack("<I", len(ne))
        head += b"".join(struct.pack("<Q", n) for n in ne)
        head += struct.pack("<IQ", GGML[t], off)
    head += b"\0" * ((-len(head)) % alignment)
    data = b""
    for (_, _, _, raw), off in zip(tensors, offsets):
        data += b"\0" * (off - len(data)) + raw
    with open(path, "wb") as f:
        f.write(head + data)


def q8_0(q, d):
    """q: int8 [blocks, 32], d: float16 [blocks] -> bytes, dequantised float32."""
    raw = b"".join(d[b].tobytes() + q[b].astype(np.int8).tobytes() for b in range(len(d)))
    return raw, (d.astype(np.float32)[:, None] * q.astype(np.float32)).ravel()


def q4_0(q, d):
    """q: 0..15 [blocks, 32], d: float16 [blocks]."""
    raw = b""
    for b in range(len(d)):
        packed = (q[b, :16] | (q[b, 16:] << 4)).astype(np.uint8)
        raw += d[b].tobytes() + packed.tobytes()
    return raw, (d.astype(np.float32)[:, None] * (q.astype(np.float32) - 8)).ravel()


def q1_0(signs, d):
    """signs: +1/-1 [blocks, 128], d: float16 [blocks]; bit j of the block is 1 for +d."""
    raw = b""
    for b in range(len(d)):
        bits = (signs[b] > 0).astype(np.uint8)
        qs = np.packbits(bits, bitorder="little")  # bit j % 8 of byte j / 8
        raw += d[b].tobytes() + qs.tobytes()
    return raw, (d.astype(np.float32)[:, None] * signs.astype(np.float32)).ravel()


def main(out):
    rng = np.random.default_rng(20261205)
    os.makedirs(out, exist_ok=True)
    tensors, expected = [], []

    f32 = rng.standard_normal((3, 7)).astype(np.float32)  # ne = [7, 3]
    tensors.append(("t.f32", [7, 3], "F32", f32.tobytes()))
    expected.append(f32.ravel())

    f16 = (rng.standard_normal(5) * 4).astype(np.float16)
    tensors.append(("t.f16", [5], "F16", f16.tobytes()))
    expected.append(f16.astype(np.float32))

    bf = rng.standard_normal((2, 4)).astype(np.float32)
    bf_bits = (bf.view(np.uint32) >> 16).astype(np.uint16)
    tensors.append(("t.bf16", [4, 2], "BF16", bf_bits.tobytes()))
    expected.append((bf_bits.astype(np.uint32) << 16).view(np.float32).ravel())

    q = rng.integers(-127, 128, size=(4, 32))
    d = (rng.random(4) * 0.1 + 0.01).astype(np.float16)
    raw, deq = q8_0(q, d)
    tensors.append(("t.q8_0", [64, 2], "Q8_0", raw))
    expected.append(deq)

    q = rng.integers(0, 16, size=(3, 32))
    d = (rng.random(3) * 0.5 - 0.25).astype(np.float16)
    raw, deq = q4_0(q, d)
    tensors.append(("t.q4_0", [32, 3], "Q4_0", raw))
    expected.append(deq)

    s = rng.choice([-1, 1], size=(12, 128))
    d = (rng.random(12) * 2 - 1).astype(np.float16)
    raw, deq = q1_0(s, d)
    tensors.append(("t.q1_0", [256, 3, 2], "Q1_0", raw))  # 2 x 3 rows of 2 blocks
    expected.append(deq)

    metadata = [
        ("general.architecture", "string", "llama"),
        ("general.name", "string", "onebit gguf test \u00e9"),
        ("test.u8", "u8", 200), ("test.i8", "i8", -100), ("test.u16", "u16", 60000),
        ("test.i16", "i16", -30000), ("test.u32", "u32", 4000000000), ("test.i32", "i32", -2000000000),
        ("test.f32", "f32", 0.5), ("test.bool", "bool", True), ("test.u64", "u64", 2**63 + 5),
        ("test.i64", "i64", -(2**40)), ("test.f64", "f64", 3.25),
        ("test.strings", ("array", "string"), ["a", "", "three words here"]),
        ("test.ints", ("array", "i32"), [1, -2, 3]),
        ("test.floats", ("array", "f32"), [0.25, -1.5]),
        ("test.bools", ("array", "bool"), [True, False]),
        ("test.empty", ("array", "u8"), []),
    ]
    write_gguf(os.path.join(out, "types.gguf"), 3, metadata, tensors)
    np.concatenate(expected).astype("<f4").tofile(os.path.join(out, "types.expected"))

    # A layer: 5 outputs x 384 inputs, 3 groups of 128 per row (row-major blocks, as ggml).
    s = rng.choice([-1, 1], size=(5, 384)).astype(np.int8)
    d = (rng.random((5, 3)) * 2 - 1).astype(np.float16)
    d[1, 2] = np.float16(0.0)
    raw, _ = q1_0(s.reshape(15, 128), d.reshape(15))
    extra = rng.standard_normal(6).astype(np.float32)
    write_gguf(os.path.join(out, "layer_v2.gguf"), 2,
               [("general.alignment", "u32", 64), ("general.architecture", "string", "test")],
               [("blk.0.ffn_down.weight", [384, 5], "Q1_0", raw),
                ("extra", [6], "F32", extra.tobytes())], alignment=64)
    s.tofile(os.path.join(out, "layer_v2.signs"))
    d.astype("<f2").tofile(os.path.join(out, "layer_v2.scales"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_gguf.py OUT_DIR")
    main(sys.argv[1])
