"""The naive pyramid of a scan (DESIGN.md section 2) and a voxel-for-voxel comparison with a
CTHarvester-layout export, for .ci/scale-test.

    scale_reference.py reference SCAN REF EDGE    # REF/<n>.npy for every level n >= 1
    scale_reference.py compare REF OUT [LEVEL...] # OUT/<n>/<i:06>.tif equal to REF/<n>.npy
"""
import pathlib
import re
import sys

import numpy as np
import tifffile


def source(scan):
    files = [p for p in pathlib.Path(scan).iterdir() if re.fullmatch(r".*?\d+\.tiff?", p.name)]
    files.sort(key=lambda p: int(re.search(r"(\d+)\.tiff?$", p.name).group(1)))
    return np.stack([tifffile.imread(p) for p in files])


def reduce(v):
    d, h, w = v.shape
    v = v[:, : h // 2 * 2, : w // 2 * 2].astype(np.uint64)
    xy = v[:, 0::2, 0::2] + v[:, 1::2, 0::2] + v[:, 0::2, 1::2] + v[:, 1::2, 1::2]
    pairs = xy[: d // 2 * 2]
    out = (pairs[0::2] + pairs[1::2] + 4) >> 3
    if d % 2:
        out = np.concatenate([out, (xy[-1:] + 2) >> 2])
    return out


def reference(scan, ref, edge):
    v = source(scan)
    dtype = v.dtype
    ref = pathlib.Path(ref)
    ref.mkdir(parents=True, exist_ok=True)
    n = 0
    while max(v.shape[1], v.shape[2]) > edge:
        n += 1
        v = reduce(v).astype(dtype)
        np.save(ref / f"{n}.npy", v)
    print(f"  reference: {n} levels")


def compare(ref, out, levels):
    ref, out = pathlib.Path(ref), pathlib.Path(out)
    names = levels or sorted(p.stem for p in ref.glob("*.npy"))
    for name in names:
        want = np.load(ref / f"{name}.npy")
        files = sorted((out / name).glob("*.tif"))
        if len(files) != want.shape[0]:
            sys.exit(f"level {name}: {len(files)} slices exported, {want.shape[0]} expected")
        got = np.stack([tifffile.imread(p) for p in files])
        if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
            bad = np.argwhere(got != want)[:3] if got.shape == want.shape else got.shape
            sys.exit(f"level {name} differs from the naive reference: {bad}")
    print(f"  levels {', '.join(names)} equal the naive reference")


if __name__ == "__main__":
    if sys.argv[1] == "reference":
        reference(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        compare(sys.argv[2], sys.argv[3], sys.argv[4:])
