#!/usr/bin/python3
"""Independent check of a safetensors file onebit wrote, with numpy alone (no onebit code, no
`safetensors` package):

    /usr/bin/python3 scripts/check_safetensors.py FILE [EXPECTED]

1. The file is what the reference implementation (the Python `safetensors` package) accepts:
   8-byte little-endian header length (at most 100,000,000), a JSON object header starting with
   '{' with no duplicate keys, string-only __metadata__, known dtypes, offsets back to back from 0
   to the end of the file, each tensor exactly shape x dtype bytes long.
2. What onebit promises on top: the data region and every OneBit layer's W start 64-byte
   aligned; W is U8 [out, row_bytes] with row_bytes a multiple of 64 holding ceil(in/8) bytes of
   signs, padding bits 0; g and h are F16 [in], [out]; the metadata names format, version, layout;
   a low-bit matrix's planes are U8 [k, rows, row_bytes] likewise, with F32 scales (and zeros).
3. With EXPECTED (written by test_safetensors's "files for the independent Python check"): every
   tensor's values as numpy decodes them equal what onebit's reader gave; every layer's signs,
   decoded here from the bits (LSB first, 1 = -1), equal onebit's; g and h equal; and
   y = ((x * g) @ W.T) * h computed here in float64 equals onebit's gemv to float rounding; every
   low-bit matrix's s * (q - z), decoded here from its bit-planes, equals onebit's dequantized().

Exit status: 0 all checks pass, 1 a check failed (each failure printed), 2 usage or unreadable.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {  # name: (numpy dtype or None, bits)
    "BOOL": (np.bool_, 8), "U8": (np.uint8, 8), "I8": (np.int8, 8), "I16": (np.int16, 16),
    "U16": (np.uint16, 16), "F16": (np.float16, 16), "BF16": (None, 16), "I32": (np.int32, 32),
    "U32": (np.uint32, 32), "F32": (np.float32, 32), "F64": (np.float64, 64),
    "I64": (np.int64, 64), "U64": (np.uint64, 64), "F8_E4M3": (None, 8), "F8_E5M2": (None, 8),
    "F8_E8M0": (None, 8), "C64": (np.complex64, 64), "F4": (None, 4), "F6_E2M3": (None, 6),
    "F6_E3M2": (None, 6),
}
LAYOUT = "signs-rowmajor-lsb1neg-rows64"

failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message)


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys in the header: %r" % sorted({k for k in keys if keys.count(k) > 1}))
    return dict(pairs)


def decode(dtype, raw, shape):
    """Values as float64 (BF16 by hand: numpy has no bfloat16)."""
    numpy_type, _ = DTYPES[dtype]
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64).reshape(shape)
    if numpy_type is None:
        return None
    return np.frombuffer(raw, dtype=np.dtype(numpy_type).newbyteorder("<")).astype(np.float64).reshape(shape)


def read_file(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if n > 100_000_000:
        raise ValueError("header length %d is over 100,000,000" % n)
    if 8 + n > len(data):
        raise ValueError("header length %d runs past the end of the file" % n)
    text = data[8:8 + n].decode("utf-8")
    if not text.startswith("{"):
        fail("the header does not start with '{'")
    header = json.loads(text, object_pairs_hook=no_duplicates)
    metadata = header.pop("__metadata__", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        fail("__metadata__ holds a value that is not a string")
    buffer = data[8 + n:]
    tensors = {}
    end = 0
    for name, info in sorted(header.items(), key=lambda item: tuple(item[1]["data_offsets"])):
        begin, stop = info["data_offsets"]
        if set(info) != {"dtype", "shape", "data_offsets"}:
            fail("%r has fields %s" % (name, sorted(info)))
        if info["dtype"] not in DTYPES:
            fail("%r has the unknown dtype %r" % (name, info["dtype"]))
            continue
        if begin != end:
            fail("%r begins at %d, not where the tensor before it ends (%d)" % (name, begin, end))
        end = stop
        count = int(np.prod(info["shape"], dtype=object)) if info["shape"] else 1
        bits = count * DTYPES[info["dtype"]][1]
        if bits % 8 != 0 or stop - begin != bits // 8:
            fail("%r: [%d, %d) is not the %s bits of %s %s" % (name, begin, stop, bits, info["dtype"], info["shape"]))
        tensors[name] = (info["dtype"], list(info["shape"]), buffer[begin:stop], 8 + n + begin)
    if end != len(buffer):
        fail("the tensors end at %d but the data region is %d bytes" % (end, len(buffer)))
    return metadata, tensors, 8 + n


def _finite_eps(text):
    try:
        eps = float(text)
    except ValueError:
        return False
    return np.isfinite(eps) and eps >= 0


def check_onebit(metadata, tensors, data_offset):
    layers = {}
    if metadata.get("format") != "onebit":
        return layers
    if metadata.get("onebit.version") != "1":
        fail("onebit.version is %r" % metadata.get("onebit.version"))
    if metadata.get("onebit.layout") != LAYOUT:
        fail("onebit.layout is %r" % metadata.get("onebit.layout"))
    if data_offset % 64 != 0:
        fail("the data region starts at %d, not a multiple of 64" % data_offset)
    for key, kind in metadata.items():
        if not key.startswith("onebit.layer."):
            continue
        name = key[len("onebit.layer."):]
        if kind.startswith("lowbit "):
            lowbit = check_lowbit(name, kind, tensors)
            if lowbit is not None:
                layers[name] = lowbit
            continue
        if kind != "linear" and not (kind.startswith("linear norm=layernorm eps=") and
                                     _finite_eps(kind[len("linear norm=layernorm eps="):])):
            fail("layer %r has kind %r" % (name, kind))
            continue
        try:
            w_type, w_shape, w_raw, w_at = tensors[name + ".W"]
            g_type, g_shape, g_raw, _ = tensors[name + ".g"]
            h_type, h_shape, h_raw, _ = tensors[name + ".h"]
        except KeyError as missing:
            fail("layer %r lacks tensor %s" % (name, missing))
            continue
        if (w_type, g_type, h_type) != ("U8", "F16", "F16") or len(w_shape) != 2:
            fail("layer %r has dtypes %s" % (name, (w_type, g_type, h_type)))
            continue
        out, row_bytes = w_shape
        inputs = g_shape[0]
        if h_shape != [out] or row_bytes % 64 != 0 or row_bytes < (inputs + 7) // 8:
            fail("layer %r: W %s, g %s, h %s do not fit together" % (name, w_shape, g_shape, h_shape))
            continue
        if w_at % 64 != 0:
            fail("layer %r: W starts at byte %d of the file, not 64-aligned" % (name, w_at))
        bits = np.unpackbits(np.frombuffer(w_raw, dtype=np.uint8).reshape(out, row_bytes), axis=1,
                             bitorder="little")
        if bits[:, inputs:].any():
            fail("layer %r: padding bits past column %d are not 0" % (name, inputs))
        signs = 1.0 - 2.0 * bits[:, :inputs].astype(np.float64)
        layers[name] = (signs, decode("F16", g_raw, [inputs]), decode("F16", h_raw, [out]))
    return layers


def check_lowbit(name, kind, tensors):
    """A k-bit matrix: its dequantised values s * (q - z), as float64 rows x cols."""
    fields = dict(item.split("=", 1) for item in kind.split(" ")[1:])
    bits, cols, group, symmetric = (int(fields[k]) for k in ("bits", "cols", "group", "symmetric"))
    p_type, p_shape, p_raw, p_at = tensors[name + ".planes"]
    s_type, s_shape, s_raw, _ = tensors[name + ".scales"]
    if p_type != "U8" or s_type != "F32" or len(p_shape) != 3 or p_shape[0] != bits:
        fail("low-bit %r: planes %s %s, scales %s" % (name, p_type, p_shape, s_type))
        return None
    _, rows, row_bytes = p_shape
    size = group or cols
    groups = -(-cols // size)
    if row_bytes % 64 != 0 or row_bytes < (cols + 7) // 8 or s_shape != [rows, groups] or p_at % 64 != 0:
        fail("low-bit %r: planes %s at %d, scales %s do not fit cols=%d group=%d" % (name, p_shape, p_at, s_shape, cols, group))
        return None
    bits_array = np.unpackbits(np.frombuffer(p_raw, dtype=np.uint8).reshape(bits, rows, row_bytes), axis=2,
                               bitorder="little")
    if bits_array[:, :, cols:].any():
        fail("low-bit %r: padding bits past column %d are not 0" % (name, cols))
    q = np.zeros((rows, cols), dtype=np.float64)
    for b in range(bits):
        q += bits_array[b, :, :cols].astype(np.float64) * (1 << b)
    scales = decode("F32", s_raw, [rows, groups])
    if symmetric:
        if name + ".zeros" in tensors:
            fail("low-bit %r is symmetric but has zeros" % name)
        zeros = np.full((rows, groups), float(1 << (bits - 1)))
    else:
        z_type, z_shape, z_raw, _ = tensors[name + ".zeros"]
        if z_type != "F32" or z_shape != [rows, groups]:
            fail("low-bit %r: zeros %s %s" % (name, z_type, z_shape))
            return None
        zeros = decode("F32", z_raw, [rows, groups])
    column_group = np.arange(cols) // size
    return scales[:, column_group] * (q - zeros[:, column_group])


def parse_floats(words):
    return np.array([float.fromhex(w) for w in words], dtype=np.float64)


def check_expected(path, tensors, layers):
    with open(path) as f:
        lines = [line.rstrip("\n") for line in f]
    if not lines or lines[0] != "onebit-expected 1":
        raise ValueError("%s is not an onebit-expected file" % path)
    checked_tensors = checked_layers = 0
    current = None
    for line in lines[1:]:
        words = line.split(" ")
        kind = words[0]
        if kind == "tensor":
            name = bytes.fromhex(words[1]).decode("utf-8")
            shape = [] if words[3] == "-" else [int(d) for d in words[3].split(",")]
            if name not in tensors:
                fail("tensor %r is missing" % name)
                continue
            dtype, file_shape, raw, _ = tensors[name]
            if (dtype, file_shape) != (words[2], shape):
                fail("tensor %r is %s %s, onebit says %s %s" % (name, dtype, file_shape, words[2], shape))
                continue
            values = decode(dtype, raw, shape)
            expected = parse_floats(words[4:]).astype(np.float32).reshape(shape)
            if values is None or not np.array_equal(values.astype(np.float32), expected):
                fail("tensor %r: numpy reads %s, onebit read %s" % (name, values, expected))
            checked_tensors += 1
        elif kind == "lowbit":
            name = bytes.fromhex(words[1]).decode("utf-8")
            rows, cols = int(words[2]), int(words[3])
            expected = parse_floats(words[4:]).reshape(rows, cols)
            values = layers.get(name)
            if values is None or values.shape != (rows, cols):
                fail("low-bit %r is missing or not %dx%d" % (name, rows, cols))
            elif not np.array_equal(values.astype(np.float32), expected.astype(np.float32)):
                fail("low-bit %r: the values decoded here differ from onebit's dequantized()" % name)
            else:
                checked_layers += 1
        elif kind == "layer":
            name = bytes.fromhex(words[1]).decode("utf-8")
            current = {"name": name, "out": int(words[2]), "in": int(words[3]), "signs": []}
            if not isinstance(layers.get(name), tuple):
                fail("layer %r is missing" % name)
                current = None
        elif current is None:
            continue
        elif kind == "signs":
            current["signs"].append([-1.0 if c == "-" else 1.0 for c in words[1]])
        elif kind in ("g", "h", "x"):
            current[kind] = parse_floats(words[1:])
        elif kind == "y":
            name = current["name"]
            signs, g, h = layers[name]
            if signs.shape != (current["out"], current["in"]):
                fail("layer %r is %s, onebit says %dx%d" % (name, signs.shape, current["out"], current["in"]))
                continue
            if not np.array_equal(signs, np.array(current["signs"])):
                fail("layer %r: the signs decoded here differ from onebit's" % name)
            if not (np.array_equal(g, current["g"]) and np.array_equal(h, current["h"])):
                fail("layer %r: g or h differ" % name)
            x = current["x"]
            y = ((x * g) @ signs.T) * h
            scale = (np.abs(x * g) @ np.abs(signs.T)) * np.abs(h)
            y_onebit = parse_floats(words[1:])
            error = np.max(np.abs(y - y_onebit) / np.maximum(scale, 1e-30))
            if not error < 1e-5:
                fail("layer %r: y here %s, onebit's gemv %s (relative error %g)" % (name, y, y_onebit, error))
            checked_layers += 1
    return checked_tensors, checked_layers


def main(argv):
    if len(argv) not in (2, 3) or argv[1] in ("-h", "--help"):
        print(__doc__.strip().split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    try:
        metadata, tensors, data_offset = read_file(argv[1])
        layers = check_onebit(metadata, tensors, data_offset)
        lowbits = sum(1 for v in layers.values() if not isinstance(v, tuple))
        summary = "%d tensors, %d OneBit layers, %d low-bit matrices" % (len(tensors), len(layers) - lowbits, lowbits)
        if len(argv) == 3:
            t, l = check_expected(argv[2], tensors, layers)
            summary += "; %d tensors and %d layers equal onebit's" % (t, l)
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        print("check_safetensors: %s: %s" % (argv[1], e), file=sys.stderr)
        return 2
    if failures:
        print("check_safetensors: %s: %d checks FAILED" % (argv[1], len(failures)))
        return 1
    print("check_safetensors: %s: %s: ok" % (argv[1], summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
