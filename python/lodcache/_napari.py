"""The napari reader: a CT stack folder as a lazy multiscale image layer.

``napari SCAN --plugin lodcache`` (or ``viewer.open(SCAN, plugin="lodcache")``) gives one image
layer whose data is every pyramid level as a lazy :class:`~lodcache.LevelArray`, full
resolution first as napari's multiscale layers require; napari shows the coarsest level that
fits the view, so a zoomed-out scan appears from the smallest level, made first. Contrast
limits are the 0.5 and 99.5 percentiles of the smallest level (read whole); ``scale`` is the
voxel size ``(z, y, x)`` in micrometres, ``(1, 1, 1)`` when the scan does not say.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from lodcache._lodcache import Pyramid, StackError

LayerData = Tuple[Any, Dict[str, Any], str]
PathOrPaths = Union[str, Sequence[str]]

#: Percentiles of the smallest level used as contrast limits.
CONTRAST_PERCENTILES = (0.5, 99.5)


def get_reader(path: PathOrPaths) -> Optional[Callable[[PathOrPaths], List[LayerData]]]:
    """The reader for ``path`` when it is one folder holding a stack of slices, else None."""
    if not isinstance(path, (str, os.PathLike)):
        if len(path) != 1:
            return None
        path = path[0]
    if not os.path.isdir(path):
        return None
    return read_scan


def read_scan(path: PathOrPaths) -> List[LayerData]:
    """Opens the stack folder ``path`` as one lazy multiscale image layer."""
    if not isinstance(path, (str, os.PathLike)):
        path = path[0]
    try:
        pyramid = Pyramid(path)
    except (FileNotFoundError, StackError) as e:
        raise ValueError(f"lodcache cannot open {os.fspath(path)!r} as a stack: {e}") from e
    levels = [pyramid[level] for level in range(len(pyramid))]
    coarsest = pyramid.volume(len(pyramid) - 1)
    lo, hi = (float(v) for v in np.percentile(coarsest, CONTRAST_PERCENTILES))
    if hi <= lo:
        hi = lo + 1.0
    voxel = pyramid.levels[0].voxel_size or (1.0, 1.0, 1.0)
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    meta: Dict[str, Any] = {
        "name": name,
        "multiscale": True,
        "contrast_limits": [lo, hi],
        "scale": list(voxel),
        "metadata": {"lodcache_path": os.fspath(path)},
    }
    return [(levels, meta, "image")]
