#!/usr/bin/python3
"""Writes the seed corpus of fuzz_safetensors into fuzz/corpus/ (committed; rerun to remake it).

Small valid files (OneBit layers as onebit's writer lays them out, plain tensors of every dtype,
metadata) and small invalid ones (one per kind of hostile file the reader must refuse), so that
the fuzzer starts from every branch of the reader. Standard library only.
"""
import json
import os
import random
import struct
import sys

LAYOUT = "signs-rowmajor-lsb1neg-rows64"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def file_bytes(header, data, pad=True, length=None):
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((64 - (8 + len(text)) % 64) % 64)
    n = len(text) if length is None else length
    return struct.pack("<Q", n) + text + bytes(data)


def onebit_file(layers, extra=None, align=True):
    """layers: name -> (out, in). W first (64-byte rows), then F32 extras, then g and h."""
    rng = random.Random(len(layers))
    header = {"__metadata__": {"format": "onebit", "onebit.version": "1", "onebit.layout": LAYOUT}}
    blobs = []
    offset = 0

    def put(name, dtype, shape, blob):
        nonlocal offset
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)

    for name, (out, inp) in sorted(layers.items()):
        header["__metadata__"]["onebit.layer." + name] = "linear"
        row = -(-((inp + 7) // 8) // 64) * 64
        w = bytearray()
        for _ in range(out):
            bits = bytearray(rng.getrandbits(8) for _ in range((inp + 7) // 8))
            if inp % 8:
                bits[-1] &= (1 << (inp % 8)) - 1
            w += bits + bytes(row - len(bits))
        put(name + ".W", "U8", [out, row], w)
    for name, values in (extra or {}).items():
        put(name, "F32", [len(values)], struct.pack("<%df" % len(values), *values))
    for name, (out, inp) in sorted(layers.items()):
        put(name + ".g", "F16", [inp], struct.pack("<%de" % inp, *[0.5 + i / 64 for i in range(inp)]))
        put(name + ".h", "F16", [out], struct.pack("<%de" % out, *[1.0 - j / 8 for j in range(out)]))
    return file_bytes(header, b"".join(blobs), pad=align)


def plain_file():
    header, data = {"__metadata__": {"format": "pt", "note": "every dtype"}}, bytearray()
    for name, bits, count in [("F64", 64, 2), ("I64", 64, 1), ("U64", 64, 1), ("C64", 64, 1),
                              ("F32", 32, 3), ("I32", 32, 1), ("U32", 32, 1), ("F16", 16, 2),
                              ("BF16", 16, 2), ("I16", 16, 1), ("U16", 16, 1), ("U8", 8, 3),
                              ("I8", 8, 2), ("BOOL", 8, 2), ("F8_E4M3", 8, 4), ("F8_E5M2", 8, 4),
                              ("F8_E8M0", 8, 2), ("F4", 4, 4), ("F6_E2M3", 6, 4), ("F6_E3M2", 6, 4)]:
        size = bits * count // 8
        header["t_" + name.lower()] = {"dtype": name, "shape": [count], "data_offsets": [len(data), len(data) + size]}
        data += bytes((7 * i + 3) & 255 for i in range(size))
    header["scalar"] = {"dtype": "U8", "shape": [], "data_offsets": [len(data), len(data) + 1]}
    data += b"\x2a"
    header["empty"] = {"dtype": "F32", "shape": [0, 5], "data_offsets": [len(data), len(data)]}
    return file_bytes(header, data)


def raw(text, data=b"", length=None):
    return file_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text, data,
                      pad=False, length=length)


def main():
    os.makedirs(OUT, exist_ok=True)
    two = onebit_file({"a": (3, 70), "b": (2, 9)}, extra={"norm": [1.0, 0.5, -2.0]})
    seeds = {
        "valid_onebit_two_layers": two,
        "valid_onebit_one_layer_64": onebit_file({"q": (4, 64)}),
        "valid_plain_every_dtype": plain_file(),
        "valid_metadata_only": file_bytes({"__metadata__": {"k": "v", "format": "pt"}}, b""),
        "valid_empty": file_bytes({}, b""),
        "valid_gap_lenient": raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\0\5"),
        "misaligned_w_unpadded_header": onebit_file({"m": (2, 100)}, align=False),
        "rows_13_bytes": raw(json.dumps({
            "__metadata__": {"format": "onebit", "onebit.version": "1", "onebit.layout": LAYOUT,
                             "onebit.layer.r": "linear"},
            "r.W": {"dtype": "U8", "shape": [2, 13], "data_offsets": [0, 26]},
            "r.g": {"dtype": "F16", "shape": [100], "data_offsets": [26, 226]},
            "r.h": {"dtype": "F16", "shape": [2], "data_offsets": [226, 230]}}), bytes(230)),
        "valid_lowbit_2bit_groups": raw(json.dumps({
            "__metadata__": {"format": "onebit", "onebit.version": "1", "onebit.layout": LAYOUT,
                             "onebit.layer.m": "lowbit bits=2 cols=10 group=4 symmetric=0"},
            "m.planes": {"dtype": "U8", "shape": [2, 2, 64], "data_offsets": [0, 256]},
            "m.scales": {"dtype": "F32", "shape": [2, 3], "data_offsets": [256, 280]},
            "m.zeros": {"dtype": "F32", "shape": [2, 3], "data_offsets": [280, 304]}}),
            bytes([0x35, 0x02] + [0] * 62 + [0x1f, 0x03] + [0] * 126 + [0xff, 0x01] + [0] * 62)
            + struct.pack("<6f", 0.5, 0.25, 1.0, 2.0, 0.125, 4.0) + struct.pack("<6f", 1, 0, 2, 3, 1, 0)),
        "valid_lowbit_symmetric": raw(json.dumps({
            "__metadata__": {"format": "onebit", "onebit.version": "1", "onebit.layout": LAYOUT,
                             "onebit.layer.s": "lowbit bits=3 cols=5 group=0 symmetric=1"},
            "s.planes": {"dtype": "U8", "shape": [3, 1, 64], "data_offsets": [0, 192]},
            "s.scales": {"dtype": "F32", "shape": [1, 1], "data_offsets": [192, 196]}}),
            bytes([0x15] + [0] * 63 + [0x0a] + [0] * 63 + [0x1f] + [0] * 63) + struct.pack("<f", 0.75)),
        "truncated": two[: len(two) - 7],
        "header_length_lies": raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\1", length=1 << 40),
        "offsets_past_end": raw('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}', b"\1\2"),
        "shape_bytes_mismatch": raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', bytes(4)),
        "overlap": raw('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
                       '"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}', bytes(4)),
        "huge_shape": raw('{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}'),
        "non_utf8_name": raw(b'{"a\xff":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\1"),
        "lone_surrogate": raw('{"\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\1"),
        "duplicate_names": raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                               '"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\1\2"),
        "layer_g_f32": raw(json.dumps({
            "__metadata__": {"format": "onebit", "onebit.version": "1", "onebit.layout": LAYOUT,
                             "onebit.layer.x": "linear"},
            "x.W": {"dtype": "U8", "shape": [1, 64], "data_offsets": [0, 64]},
            "x.g": {"dtype": "F32", "shape": [8], "data_offsets": [64, 96]},
            "x.h": {"dtype": "F16", "shape": [1], "data_offsets": [96, 98]}}), bytes(98)),
        "layer_missing_h": raw(json.dumps({
            "__metadata__": {"format": "onebit", "onebit.version": "1", "onebit.layout": LAYOUT,
                             "onebit.layer.x": "linear"},
            "x.W": {"dtype": "U8", "shape": [1, 64], "data_offsets": [0, 64]},
            "x.g": {"dtype": "F16", "shape": [8], "data_offsets": [64, 80]}}), bytes(80)),
        "not_an_object": raw("[1,2,3]"),
        "deep_nesting": raw("[" * 200),
        "metadata_not_string": raw('{"__metadata__":{"k":1}}'),
        "short_file": b"\x10\0\0",
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
