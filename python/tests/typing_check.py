"""Not a test: typical uses of the API, type-checked by mypy --strict (tests/test_typing.py)
against the stubs, so a stub that disagrees with how the API is documented fails CI."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

import ct_thumbnail
import lodcache


def use(path: str) -> Tuple[int, float]:
    with lodcache.Pyramid(path, memory_budget="256M", edge=250, threads=2) as pyr:
        shapes: List[Tuple[int, int, int]] = [lvl.shape for lvl in pyr.levels]
        dtype: np.dtype[Any] = pyr.levels[0].dtype
        voxel: Optional[Tuple[float, float, float]] = pyr.levels[0].voxel_size
        s: npt.NDArray[np.generic] = pyr.slice(1, 0)
        r = pyr.region(1, 0, slice(0, 10), slice(None))
        v = pyr.volume(len(pyr) - 1)
        xz = pyr.section(1, "y", 3)
        lazy: lodcache.LevelArray = pyr[1]
        part = lazy[0:4, ::2, 3]
        report = pyr.export_ctharvester(path + "/out", levels=[1])
        files: int = report["files"]
        hits: int = pyr.stats()["memory"]["hits"]
        share: float = pyr.demand()["levels"][0]["share"]
        w = pyr.warm_up(levels=[1], time=1.5, bytes="1G")
        p = w.progress()
        eta: Optional[float] = p.eta
        how = w.wait(timeout=1.0)
        if how is not None and how != "completed":
            w.cancel()
        pyr.flush()
        del shapes, dtype, voxel, s, r, v, xz, part, files, hits, share, eta
        return lazy.ndim, p.rate


def thumbnails(path: str) -> None:
    def progress(percent: float) -> bool:
        return percent < 50.0

    ct_thumbnail.build_thumbnails(path, progress, "scan_", "tif", 0, 99, 4)
    ct_thumbnail.build_thumbnails(path, py_progress_cb=None)


def errors(path: str) -> str:
    try:
        lodcache.Pyramid(path)
    except lodcache.StackError as e:
        return e.path
    except FileNotFoundError as e:
        return str(e)
    return ""
