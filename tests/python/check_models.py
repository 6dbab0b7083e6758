"""Cross-checks exported models against the project's own predictions.

Usage: check_models.py DIR --input-shape 1,28,28 --classes 10

DIR holds model.onnx, model.safetensors, inputs.f32 (float32 samples) and
logits.f32 (the project's logits for them). Runs the ONNX model in
onnxruntime and the safetensors weights in plain numpy (following the
layout documented in the file's metadata), and prints how many argmax
predictions agree with the project's; exits 1 on any disagreement or a
logit difference above 1e-3.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file
from safetensors import safe_open


def conv_same(x, w, b):
    """2-D convolution, stride 1, 'same' padding: x [N,C,H,W], w [O,C,k,k]."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))  # N,C,H,W,k,k
    out = np.einsum("nchwij,ocij->nohw", cols, w, optimize=True)
    return out + b[None, :, None, None]


def maxpool2(x):
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    x = x[:, :, : h2 * 2, : w2 * 2].reshape(n, c, h2, 2, w2, 2)
    return x.max(axis=(3, 5))


def numpy_forward(path, x):
    tensors = load_file(path)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    model = json.loads(meta["oblivion.model"])
    if "normalization.mean" in tensors:
        x = (x - tensors["normalization.mean"]) / tensors["normalization.std"]
    if model["kind"] == "cnn":
        for i in range(2):
            x = maxpool2(np.maximum(conv_same(x, tensors[f"convs.{i}.weight"], tensors[f"convs.{i}.bias"]), 0))
    x = x.reshape(x.shape[0], -1)
    i = 0
    while f"dense.{i}.weight" in tensors:
        x = x @ tensors[f"dense.{i}.weight"] + tensors[f"dense.{i}.bias"]
        i += 1
        if f"dense.{i}.weight" in tensors:
            x = np.maximum(x, 0)
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--input-shape", required=True)
    ap.add_argument("--classes", type=int, required=True)
    args = ap.parse_args()
    shape = [int(s) for s in args.input_shape.split(",")]
    x = np.fromfile(args.dir / "inputs.f32", dtype="<f4").reshape([-1] + shape)
    expected = np.fromfile(args.dir / "logits.f32", dtype="<f4").reshape(-1, args.classes)
    ok = True
    session = ort.InferenceSession(str(args.dir / "model.onnx"), providers=["CPUExecutionProvider"])
    results = {
        "onnx": session.run(["logits"], {"input": x})[0],
        "safetensors": numpy_forward(str(args.dir / "model.safetensors"), x),
    }
    for name, logits in results.items():
        agree = int((logits.argmax(1) == expected.argmax(1)).sum())
        diff = float(np.abs(logits - expected).max())
        print(f"{name}: {agree}/{len(x)} predictions agree, max logit difference {diff:.2e}")
        ok &= agree == len(x) and diff < 1e-3
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
