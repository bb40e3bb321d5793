"""``pyramid[level]``: one level as a lazy, read-only array-like.

It has ``shape`` ``(z, y, x)``, ``dtype``, ``ndim``, ``size``, ``nbytes``, ``__len__``,
``__getitem__`` with integers, slices (steps and negative indices allowed) and ``...``, and
``__array__``. Nothing is read until it is indexed: each slice of the selection comes from
``Pyramid.region`` (one call per slice, GIL released); a selection of every slice of the level
from ``Pyramid.section`` when it fixes a row or column (an XZ or YZ view), else from
``Pyramid.volume`` (each one streaming pass), so ``dask.array.from_array(pyramid[2])`` and
napari's multiscale image layers read only what they show.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Optional, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from lodcache._lodcache import Pyramid

__all__ = ["LevelArray"]


def _axis(key: object, length: int, name: str) -> Union[int, range]:
    """One axis of a selection: an index in ``0..length`` or a range of indices."""
    if isinstance(key, slice):
        return range(*key.indices(length))
    try:
        i = operator.index(key)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{name} index must be an integer or a slice, got {type(key).__name__}"
        ) from None
    if not -length <= i < length:
        raise IndexError(
            f"{name} index {i} is out of range; valid: {-length}..={length - 1}"
        )
    return i + length if i < 0 else i


class LevelArray:
    """One pyramid level as a lazy, read-only array-like ``(z, y, x)``.

    Made by ``pyramid[level]``. Indexing reads through the pyramid's cache and returns a numpy
    array, as numpy would: integers drop their axis, slices keep it (steps allowed).
    """

    __slots__ = ("_pyramid", "_level", "_shape", "_dtype")

    def __init__(self, pyramid: Pyramid, level: int) -> None:
        info = pyramid.levels[level]
        self._pyramid = pyramid
        self._level = info.level
        self._shape: Tuple[int, int, int] = info.shape
        self._dtype: np.dtype[Any] = np.dtype(info.dtype)

    @property
    def pyramid(self) -> Pyramid:
        """The pyramid this level belongs to."""
        return self._pyramid

    @property
    def level(self) -> int:
        """The level number (0 is the source stack)."""
        return self._level

    @property
    def shape(self) -> Tuple[int, int, int]:
        """``(z, y, x)``: slices, rows, columns."""
        return self._shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """uint8, uint16 or float32."""
        return self._dtype

    @property
    def ndim(self) -> int:
        """Always 3."""
        return 3

    @property
    def size(self) -> int:
        """Number of samples."""
        z, y, x = self._shape
        return z * y * x

    @property
    def nbytes(self) -> int:
        """Bytes of the whole level once read."""
        return self.size * self._dtype.itemsize

    def __len__(self) -> int:
        return self._shape[0]

    def __repr__(self) -> str:
        return f"LevelArray(level={self._level}, shape={self._shape}, dtype={self._dtype})"

    def __array__(
        self, dtype: Optional[DTypeLike] = None, copy: Optional[bool] = None
    ) -> np.ndarray[Any, Any]:
        """The whole level (``Pyramid.volume``), converted to ``dtype`` if given."""
        volume = self._pyramid.volume(self._level)
        if dtype is not None and np.dtype(dtype) != volume.dtype:
            if copy is False:
                raise ValueError(
                    f"cannot convert level {self._level} from {volume.dtype} to "
                    f"{np.dtype(dtype)} without a copy"
                )
            return volume.astype(dtype)
        return volume

    def __getitem__(self, key: Any) -> np.ndarray[Any, Any]:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is None for k in key):
            raise TypeError("LevelArray indexing does not add axes (None / np.newaxis)")
        if sum(k is Ellipsis for k in key) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if Ellipsis in key:
            at = key.index(Ellipsis)
            fill = (slice(None),) * (3 - (len(key) - 1))
            key = key[:at] + fill + key[at + 1 :]
        if len(key) > 3:
            raise IndexError(
                f"too many indices: the level is 3-dimensional (z, y, x), got {len(key)}"
            )
        key = key + (slice(None),) * (3 - len(key))
        depth, height, width = self._shape
        zsel = _axis(key[0], depth, "z")
        ysel = _axis(key[1], height, "y")
        xsel = _axis(key[2], width, "x")

        out_shape = tuple(len(s) for s in (zsel, ysel, xsel) if isinstance(s, range))
        if any(isinstance(s, range) and len(s) == 0 for s in (zsel, ysel, xsel)):
            return np.empty(out_shape, dtype=self._dtype)

        zs = [zsel] if isinstance(zsel, int) else list(zsel)
        if len(zs) == depth and len(zs) > 1:
            # Every slice: one streaming pass over the level, then numpy's own indexing. A
            # fixed row or column is one section (an XZ or YZ plane), the rest the volume.
            selected: np.ndarray[Any, Any]
            if isinstance(ysel, int):
                selected = self._pyramid.section(self._level, "y", ysel)[key[0], key[2]]
            elif isinstance(xsel, int):
                selected = self._pyramid.section(self._level, "x", xsel)[key[0], key[1]]
            else:
                selected = self._pyramid.volume(self._level)[key]
            return selected

        # The bounding box of the rows and columns asked for, then a strided view of it.
        # A range's first and last index are both in the box, so stepping from the first one
        # through the box (either way) picks exactly the range.
        def box(sel: Union[int, range]) -> Tuple[slice, Union[int, slice]]:
            if isinstance(sel, int):
                return slice(sel, sel + 1), 0
            lo, hi = min(sel[0], sel[-1]), max(sel[0], sel[-1]) + 1
            return slice(lo, hi), slice(sel[0] - lo, None, sel.step)

        ybox, ypick = box(ysel)
        xbox, xpick = box(xsel)
        whole = (ybox.stop - ybox.start, xbox.stop - xbox.start) == (height, width)

        def plane(z: int) -> np.ndarray[Any, Any]:
            if whole:
                return self._pyramid.slice(self._level, z)
            return self._pyramid.region(self._level, z, ybox, xbox)

        planes = [plane(z)[ypick, xpick] for z in zs]
        if isinstance(zsel, int):
            # A strided view would keep the whole box alive: hand over a compact copy instead.
            # Three integers give a 0-d array (numpy would give a scalar).
            one = np.asarray(planes[0])
            return one if one.flags.c_contiguous else np.ascontiguousarray(one)
        return np.stack(planes)
