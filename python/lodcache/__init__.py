"""lodcache: lazy level-of-detail pyramids of CT image stacks, made on demand and cached.

A CT scan is a folder of slices (TIFF, BMP, PNG or JPEG; 8- or 16-bit gray, or 32-bit float
TIFF). Level ``n`` of its pyramid halves the width, height and slice count of level ``n - 1``
with an exact 2x2x2 mean, until the larger side is at most ``edge`` (500) pixels.
:class:`Pyramid` serves any slice, region, volume or section of any level as a numpy array,
making only what is asked for and keeping it in a memory tier and a cache folder::

    import lodcache

    with lodcache.Pyramid("scan/") as pyr:
        print(pyr.levels)              # [Level(level=0, shape=(z, y, x), dtype=uint16, ...)]
        coarse = pyr.volume(len(pyr) - 1)   # the smallest level, whole: (z, y, x)
        s = pyr.slice(1, 40)           # slice 40 of level 1: (y, x)
        lazy = pyr[2]                  # a lazy array-like for dask and napari
        part = lazy[10:20, ::2, 100:200]

Every call that reads or computes releases the GIL, and arrays are handed over without a copy
(the Rust buffer becomes the array's memory). Errors: ``FileNotFoundError`` for a missing
folder, ``ValueError`` for bad arguments, :class:`StackError` (a ``ValueError``) for stacks
that cannot be read, naming the file, ``OSError`` for I/O.
"""

from lodcache._array import LevelArray
from lodcache._lodcache import (
    Level,
    Pyramid,
    StackError,
    WarmUp,
    WarmupProgress,
    __version__,
    write_phantom,
)

__all__ = [
    "Level",
    "LevelArray",
    "Pyramid",
    "StackError",
    "WarmUp",
    "WarmupProgress",
    "__version__",
    "write_phantom",
]
