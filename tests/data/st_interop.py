#!/usr/bin/python3
"""Cross-checks nnscope's safetensors files with Python.

usage: st_interop.py TEST_SAFETENSORS_EXE WORKDIR MODE

MODE json: needs only the standard library. Reads the C-written sample with json/struct and
           checks it against the recipe; builds the same file with a port of the reference
           writer (huggingface/safetensors `prepare()`) and requires identical bytes; writes
           non-canonical files (unsorted, unpadded, escaped) and checks the C reader's dump.
MODE pkg:  needs the `safetensors` package and numpy (exit 77 when missing). C file ->
           safetensors.numpy.load_file / safe_open metadata; safetensors.numpy.save_file ->
           C reader; and save_file's bytes must equal the C writer's for the same content.
"""
import json
import math
import os
import struct
import subprocess
import sys


def f32(x):
    """x rounded to float32, as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


# The sample written by `test_safetensors --write-sample` (keep in step with sample() there).
SAMPLE = {
    "layer.weight": ([3, 4], [f32((k - 5) * 0.375) for k in range(12)]),
    "layer.bias": ([3], [-0.0, struct.unpack("<f", struct.pack("<I", 1))[0], f32(3.4028235e38)]),
    "bn.num_batches": ([], [7.0]),
    "empty": ([0, 3], []),
    "x4": ([2, 1, 2, 2], [f32(1.0 / (k + 1)) for k in range(8)]),
    "n\u00e4me": ([1], [math.inf]),
}
META = {"format": "pt", "epoch": "3", "note": 'quote" backslash\\ tab\t newline\n \u00fc'}


def pack(values):
    return struct.pack("<%df" % len(values), *values)


def reference_bytes(tensors, metadata):
    """The reference writer: sort by (dtype alignment desc, name) -- all F32 here, so by name
    in byte order --, data in that order, serde_json compact header with __metadata__ first,
    padded with spaces to a multiple of 8."""
    names = sorted(tensors, key=lambda n: n.encode())
    header = {}
    if metadata is not None:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata, key=str.encode)}
    offset, blobs = 0, []
    for n in names:
        shape, values = tensors[n]
        blob = pack(values)
        header[n] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def read_plain(path):
    """Independent reader: json + struct."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        count = (e - b) // 4
        out[name] = (info["shape"], list(struct.unpack("<%df" % count, data[b:e])))
    return out, meta, n


def c_dump(exe, path):
    """The C reader's view of a file: {name: (shape, [bits])}, {key: value}."""
    r = subprocess.run([exe, "--dump", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("C reader rejected %s: %s" % (path, r.stderr.strip()))
    tensors, meta = {}, {}
    for line in r.stdout.splitlines():
        kind, rest = line.split(" ", 1)
        unhex = lambda h: "" if h == "-" else bytes.fromhex(h).decode("utf-8")
        if kind == "T":
            head, vals = rest.split(":")
            f = head.split()
            ndim = int(f[1])
            tensors[unhex(f[0])] = ([int(d) for d in f[2 : 2 + ndim]], [int(v, 16) for v in vals.split()])
        else:
            k, v = rest.split(" ")
            meta[unhex(k)] = unhex(v)
    return tensors, meta


def same_bits(a, b):
    return [bits(x) for x in a] == [bits(x) for x in b]


def check(cond, what):
    if not cond:
        raise SystemExit("FAIL: " + what)
    print("ok:", what)


def run_json(exe, work):
    c_path = os.path.join(work, "c.safetensors")
    subprocess.run([exe, "--write-sample", c_path], check=True)
    tensors, meta, n = read_plain(c_path)
    check(n % 8 == 0, "C header length is a multiple of 8")
    check(set(tensors) == set(SAMPLE), "C file has the sample's tensor names")
    for name, (shape, values) in SAMPLE.items():
        check(tensors[name][0] == shape and same_bits(tensors[name][1], values),
              "C tensor %r: shape and values (bit-exact) read by Python" % name)
    check(meta == META, "C metadata read by Python json")
    check(open(c_path, "rb").read() == reference_bytes(SAMPLE, META),
          "C file is byte-identical to the reference writer's layout")

    # Python-written, non-canonical: tensors unsorted, header unpadded, pretty JSON, \u escapes.
    py_path = os.path.join(work, "py.safetensors")
    names = ["x4", "layer.weight", "n\u00e4me", "empty", "bn.num_batches", "layer.bias"]
    header, blobs, off = {}, [], 0
    for name in names:
        shape, values = SAMPLE[name]
        blob = pack(values)
        header[name] = {"shape": shape, "data_offsets": [off, off + len(blob)], "dtype": "F32"}
        off += len(blob)
        blobs.append(blob)
    header = {"__metadata__": META, **header}
    text = json.dumps(header, indent=1, ensure_ascii=True).encode()
    open(py_path, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    ct, cm = c_dump(exe, py_path)
    for name, (shape, values) in SAMPLE.items():
        check(ct[name][0] == shape and ct[name][1] == [bits(v) for v in values],
              "Python tensor %r read by C" % name)
    check(cm == META, "Python metadata (escaped, unsorted) read by C")


def run_pkg(exe, work):
    try:
        import numpy as np
        from safetensors import safe_open
        from safetensors.numpy import load_file, save_file
    except ImportError as e:
        print("skip: /usr/bin/python3 lacks the safetensors package or numpy (%s)" % e)
        sys.exit(77)
    c_path = os.path.join(work, "c.safetensors")
    subprocess.run([exe, "--write-sample", c_path], check=True)
    loaded = load_file(c_path)
    for name, (shape, values) in SAMPLE.items():
        a = loaded[name]
        check(a.dtype == np.float32 and list(a.shape) == shape, "safetensors: %r dtype/shape" % name)
        check(same_bits(a.reshape(-1).tolist(), values), "safetensors: %r values" % name)
    with safe_open(c_path, framework="np") as f:
        check(f.metadata() == META, "safetensors: metadata of the C file")

    py_path = os.path.join(work, "pkg.safetensors")
    arrays = {n: np.array(v, dtype=np.float32).reshape(s) for n, (s, v) in SAMPLE.items()}
    save_file(arrays, py_path, metadata={"format": "pt"})
    ct, cm = c_dump(exe, py_path)
    for name, (shape, values) in SAMPLE.items():
        check(ct[name][0] == shape and ct[name][1] == [bits(v) for v in values],
              "C reads save_file's %r" % name)
    check(cm == {"format": "pt"}, "C reads save_file's metadata")
    check(open(py_path, "rb").read() == reference_bytes(SAMPLE, {"format": "pt"}),
          "save_file's bytes equal the reference-layout port (so equal the C writer's)")


def main():
    exe, work, mode = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    (run_json if mode == "json" else run_pkg)(exe, work)


if __name__ == "__main__":
    main()
