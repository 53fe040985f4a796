"""Writes golden files read by tests/support/golden.hpp: named float64 arrays.

Layout (little endian): b"VQG1", u32 count, then per array: u32 name length,
name (utf-8), u32 rank, rank x i64 dims, numel x f64 data.
"""
import struct
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def write_golden(filename, arrays):
    """arrays: dict name -> array-like (torch tensors are detached to float64)."""
    path = HERE / filename
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(b"VQG1")
        f.write(struct.pack("<I", len(arrays)))
        for name, value in arrays.items():
            if hasattr(value, "detach"):
                value = value.detach().cpu().double().numpy()
            a = np.ascontiguousarray(np.asarray(value, dtype=np.float64))
            raw = name.encode("utf-8")
            f.write(struct.pack("<I", len(raw)))
            f.write(raw)
            f.write(struct.pack("<I", a.ndim))
            f.write(struct.pack("<%dq" % a.ndim, *a.shape))
            f.write(a.astype("<f8").tobytes())
    tmp.replace(path)
    print("wrote", path.relative_to(HERE.parent.parent), "(%d arrays)" % len(arrays))
