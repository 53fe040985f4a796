#!/usr/bin/env python3
"""For each generated slice, its highest SSIM to any training slice (are samples copies?).

    /usr/bin/python3 tools/nearest_train_ssim.py GENERATED_DIR OASIS_ROOT [--candidates 32]

SSIM is scikit-image's (7x7 uniform window, data_range 255, as vqvae2_reconstruct scores).
The full SSIM is computed against the --candidates training slices nearest in pixel
distance (SSIM's maximum lies among them in practice), not against all of them.
Prints one line per sample and the largest value; exit status 0.
"""
import argparse
import glob
import os
import sys

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity


def load(paths):
    return np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.uint8) for p in paths])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generated")
    ap.add_argument("oasis_root")
    ap.add_argument("--candidates", type=int, default=32)
    a = ap.parse_args()
    samples = sorted(glob.glob(os.path.join(a.generated, "sample_*.png")))
    train = sorted(glob.glob(os.path.join(a.oasis_root, "keras_png_slices_train", "*.png")))
    if not samples or not train:
        sys.exit(f"nearest_train_ssim: no sample_*.png in {a.generated} or no training PNGs under {a.oasis_root}.")
    s, t = load(samples), load(train)
    tf = t.reshape(len(t), -1).astype(np.float32)
    best_all = 0.0
    for i, img in enumerate(s):
        d = ((tf - img.reshape(-1).astype(np.float32)) ** 2).sum(1)
        idx = np.argsort(d)[: a.candidates]
        scores = [structural_similarity(img, t[j], data_range=255) for j in idx]
        k = int(np.argmax(scores))
        best_all = max(best_all, scores[k])
        print(f"{os.path.basename(samples[i])}: highest SSIM {scores[k]:.4f} to {os.path.basename(train[idx[k]])}")
    print(f"largest over all samples: {best_all:.4f}")


if __name__ == "__main__":
    main()
