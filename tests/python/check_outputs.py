"""Cross-checks an inference job's outputs against the ONNX export.

Usage: check_outputs.py DIR --input-shape 1,28,28 --classes 10

DIR holds model.onnx, inputs.f32 (the rows, float32, in order),
outputs.npy (the job's class probabilities, as downloaded) and
outputs.csv (its predicted classes and probabilities). Runs the ONNX model
in onnxruntime on the rows, takes the softmax of its logits, and prints how
many rows agree with the job's outputs (the same predicted class in the
file and in onnxruntime, every probability within 1e-4); exits 1 on any
disagreement.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--input-shape", required=True)
    ap.add_argument("--classes", type=int, required=True)
    args = ap.parse_args()
    shape = [int(s) for s in args.input_shape.split(",")]
    x = np.fromfile(args.dir / "inputs.f32", dtype="<f4").reshape([-1] + shape)
    probabilities = np.load(args.dir / "outputs.npy")
    csv = np.loadtxt(args.dir / "outputs.csv", delimiter=",", comments="#", skiprows=4)
    assert probabilities.shape == (len(x), args.classes), probabilities.shape
    assert csv.shape == (len(x), 2 + args.classes), csv.shape
    session = ort.InferenceSession(str(args.dir / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": x})[0].astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected = exp / exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(x))
    same_class = (csv[:, 1].astype(int) == expected.argmax(1)) & (probabilities.argmax(1) == expected.argmax(1))
    npy_diff = np.abs(probabilities - expected).max(axis=1)
    csv_diff = np.abs(csv[:, 2:] - expected).max(axis=1)
    close = (npy_diff <= 1e-4) & (csv_diff <= 1e-4) & (csv[:, 0].astype(int) == rows)
    agree = int((same_class & close).sum())
    print(
        f"onnx: {agree}/{len(x)} rows agree, max probability difference "
        f"{max(npy_diff.max(), csv_diff.max()):.2e}"
    )
    sys.exit(0 if agree == len(x) else 1)


if __name__ == "__main__":
    main()
