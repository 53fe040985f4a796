"""Golden SSIM/PSNR values for tests/test_metrics.cpp, computed by scikit-image.

Run with /usr/bin/python3 (Debian's numpy, scipy, scikit-image 0.19, Pillow).
Writes two goldens:
  ssim_ch2bet.bin  from the committed fixtures tests/golden/ssim_ch2bet/*.png:
                   slices the project's NIfTI importer (data/nifti_import.hpp, as run
                   by test_nifti) made from Debian's ch2bet.nii.gz, so that the test
                   runs on every clone;
  ssim.bin         from ../shared/data (skipped when it is absent).
The images are NOT stored in the goldens: they hold only indices into the file
lists (the same lists are in the C++ test), a per-file pixel sum that proves both
sides read the same file, the pair descriptions and the expected metric values.

Degradations of image B are integer-only so the C++ test can redo them exactly:
  0 none; 1 3x3 box blur, edges clamped, (sum + 4) // 9; 2 quantise v & 0xF0;
  3 affine float map of A in [-1, 1] converted to bytes as a saved PNG:
    u = (A / 127.5 - 1) * 0.8 + 0.1, byte = floor((clip(u, -1, 1) + 1) * 127.5 + 0.5)
"""
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from golden_io import write_golden

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data"
CH2BET_FILES = [
    "ssim_ch2bet/case_901_slice_60.png",
    "ssim_ch2bet/case_901_slice_61.png",
    "ssim_ch2bet/case_901_slice_89.png",
]
# The same kinds of pairs on the fixtures: neighbouring slices, every degradation, crops.
CH2BET_PAIRS = [
    (0, 1, 0, 0, 0, 256, 256),
    (0, -1, 1, 0, 0, 256, 256),
    (1, -1, 2, 0, 0, 256, 256),
    (2, -1, 3, 0, 0, 256, 256),
    (0, 1, 0, 37, 11, 150, 201),  # non-square crop catches a transposed loop
    (2, -1, 1, 60, 90, 23, 12),
]
FILES = [
    "kaggle_alz_mri_nondemented_oasislike/keras_png_slices_test/case_2881_slice_0.nii.png",
    "kaggle_alz_mri_nondemented_oasislike/keras_png_slices_test/case_2882_slice_0.nii.png",
    "kaggle_alz_mri_nondemented_oasislike/keras_png_slices_validate/case_2600_slice_0.nii.png",
    "colin27_ch2bet/keras_png_slices_test/case_901_slice_89.nii.png",
    "colin27_ch2bet/keras_png_slices_validate/case_901_slice_88.nii.png",
]
# (file A, file B or -1 for a degraded copy of A, degradation, crop y0, x0, h, w)
PAIRS = [
    (0, 1, 0, 0, 0, 256, 256),
    (3, 4, 0, 0, 0, 256, 256),
    (0, -1, 1, 0, 0, 256, 256),
    (3, -1, 1, 0, 0, 256, 256),
    (2, -1, 2, 0, 0, 256, 256),
    (4, -1, 3, 0, 0, 256, 256),
    (3, 4, 0, 37, 11, 150, 201),  # non-square crop catches a transposed loop
    (2, -1, 1, 60, 90, 23, 12),
]


def degrade(a, kind):
    a = a.astype(np.int64)
    if kind == 0:
        return a
    if kind == 1:
        p = np.pad(a, 1, mode="edge")
        s = sum(p[dy:dy + a.shape[0], dx:dx + a.shape[1]] for dy in range(3) for dx in range(3))
        return (s + 4) // 9
    if kind == 2:
        return a & 0xF0
    if kind == 3:
        u = (a / 127.5 - 1.0) * 0.8 + 0.1
        return np.floor((np.clip(u, -1.0, 1.0) + 1.0) * 127.5 + 0.5).astype(np.int64)
    raise ValueError(kind)


def make_golden(root, files, pairs, out):
    imgs = [np.asarray(Image.open(root / f)) for f in files]
    for f, im in zip(files, imgs):
        assert im.dtype == np.uint8 and im.ndim == 2, f
    sums = [float(im.astype(np.int64).sum()) for im in imgs]
    su, sg, ps = [], [], []
    for ia, ib, kind, y0, x0, h, w in pairs:
        a = imgs[ia]
        b = imgs[ib] if ib >= 0 else degrade(a, kind).astype(np.uint8)
        a = a[y0:y0 + h, x0:x0 + w]
        b = b[y0:y0 + h, x0:x0 + w]
        su.append(structural_similarity(a, b))  # uint8 -> data_range 255, 7x7 uniform, sample covariance
        sg.append(structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
        ps.append(peak_signal_noise_ratio(a, b, data_range=255))
        print(files[ia].split("/")[-1], ib, kind, (h, w), "ssim %.6f gauss %.6f psnr %.3f" % (su[-1], sg[-1], ps[-1]))
    write_golden(out, {
        "file_sums": np.array(sums),
        "pairs": np.array(pairs, dtype=np.float64),
        "ssim_uniform": np.array(su),
        "ssim_gaussian": np.array(sg),
        "psnr": np.array(ps),
    })


def main():
    make_golden(HERE, CH2BET_FILES, CH2BET_PAIRS, "ssim_ch2bet.bin")
    if not DATA.is_dir():
        print("gen_ssim.py: %s is missing; ssim.bin (the shared slices' golden) left as it is." % DATA)
        return
    make_golden(DATA, FILES, PAIRS, "ssim.bin")


if __name__ == "__main__":
    main()
