"""Type stubs of the extension module ``lodcache._lodcache`` (re-exported by ``lodcache``).

Checked against the built module by ``python -m mypy.stubtest lodcache._lodcache`` in CI.
"""

import builtins
import os
import pathlib
from typing import Any, Callable, List, Literal, final, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

from lodcache._array import LevelArray

from typing_extensions import Self

__version__: str

_StrPath = Union[str, "os.PathLike[str]"]
#: A byte count: an int, or a string with a binary unit such as ``"512M"`` or ``"1.5GiB"``.
_ByteSize = Union[int, str]
#: An axis of a ``(z, y, x)`` volume: a name or a numpy axis number (0 = z, 1 = y, 2 = x).
_AxisLike = Union[Literal["z", "y", "x", "Z", "Y", "X"], int]
#: The samples of a level: uint8, uint16 or float32.
_Samples = npt.NDArray[Union[np.uint8, np.uint16, np.float32]]

class StackError(ValueError):
    """A stack lodcache cannot read (no images, a damaged slice, a size or type mismatch).

    ``path`` is the file or folder concerned; the message names it.
    """

    path: str

@final
class Level:
    """The size, sample type and voxel size of one pyramid level."""

    @property
    def level(self) -> int:
        """Level number; 0 is the source stack."""
    @property
    def shape(self) -> Tuple[int, int, int]:
        """``(z, y, x)``: slices, rows, columns."""
    @property
    def dtype(self) -> np.dtype[Any]:
        """uint8, uint16 or float32."""
    @property
    def voxel_size(self) -> Optional[Tuple[float, float, float]]:
        """``(z, y, x)`` size of a voxel of this level in micrometres (level n's is 2**n times
        level 0's), or None when unknown. Read from a scanner log beside the slices (Bruker
        SkyScan), ImageJ's description or the TIFF resolution tags, or given as
        ``Pyramid(..., voxel_size=)``."""

class _ExportReport(TypedDict):
    levels: List[int]
    files: int
    bytes: int
    source_bytes: int

class _MemoryStats(TypedDict):
    hits: int
    misses: int
    insertions: int
    evictions: int
    bytes: int
    entries: int
    #: None: unlimited.
    budget: Optional[int]

class _DiskStats(TypedDict):
    hits: int
    misses: int
    corrupt: int
    writes: int
    write_errors: int
    evictions: int
    invalidated: int
    bytes: int
    blobs: int
    #: None: unlimited.
    budget: Optional[int]
    mode: str

class _Stats(TypedDict):
    memory: _MemoryStats
    disk: _DiskStats
    generated: int
    coalesced: int
    stream_builds: int
    source_slices: int
    source_bytes: int
    stored_bytes: int
    generating: float
    requests: List[int]

class _LevelDemand(TypedDict):
    level: int
    score: float
    share: float

class _Demand(TypedDict):
    levels: List[_LevelDemand]
    slices: List[Tuple[Tuple[int, int], float]]

@final
class WarmupProgress:
    """Where a warm-up run stands."""

    @property
    def level(self) -> Optional[int]:
        """The level being built (None before the first slice and after the last)."""
    @property
    def done(self) -> int:
        """Slices made by this run so far."""
    @property
    def total(self) -> int:
        """Slices this run has to make (those not stored when it started)."""
    @property
    def already_stored(self) -> int:
        """Slices of the chosen levels already stored when it started."""
    @property
    def bytes(self) -> int:
        """Bytes of blobs stored into the cache while it ran."""
    @property
    def elapsed(self) -> float:
        """Seconds since it started."""
    @property
    def rate(self) -> float:
        """Slices per second so far."""
    @property
    def eta(self) -> Optional[float]:
        """Estimated seconds to finish (None before the first slice)."""
    @property
    def finished(self) -> bool:
        """Whether it has ended."""

@final
class WarmUp:
    """A background warm-up run. Dropping it cancels the run (within one slice of work)."""

    def progress(self) -> WarmupProgress:
        """Where the run stands."""
    def cancel(self) -> None:
        """Stops the run within one slice of work and returns once it has stopped."""
    def wait(
        self, timeout: Optional[float] = None
    ) -> Optional[Literal["completed", "cancelled", "budget"]]:
        """Waits for the end (at most ``timeout`` seconds); None if still running.

        Raises the run's error if it failed.
        """
    @property
    def done(self) -> bool:
        """Whether the run has ended."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        *_args: object,
    ) -> Literal[False]:
        """Cancels the run."""

@final
class Pyramid:
    """The lazy level-of-detail pyramid of a CT stack folder.

    ``memory_budget`` and ``disk_budget`` take bytes or strings such as ``"512M"`` (binary
    units). ``threads``: the size of this pyramid's own thread pool (default: the shared one).
    ``voxel_size``: ``(z, y, x)`` of a level-0 voxel in micrometres, overriding what the stack
    says (a scanner log, ImageJ's description, the TIFF resolution tags).
    Raises ``FileNotFoundError`` for a missing folder, :class:`StackError` for a folder whose
    stack cannot be read, ``ValueError`` for bad arguments.
    """

    def __new__(
        cls,
        path: _StrPath,
        *,
        cache_dir: Optional[_StrPath] = None,
        disk_cache: bool = True,
        memory_budget: _ByteSize = "512M",
        disk_budget: Optional[_ByteSize] = None,
        edge: int = 500,
        max_levels: Optional[int] = None,
        threads: Optional[int] = None,
        voxel_size: Optional[Tuple[float, float, float]] = None,
    ) -> Self: ...
    @property
    def levels(self) -> List[Level]:
        """Every level, level 0 (the source stack) first."""
    @property
    def path(self) -> pathlib.Path:
        """The stack folder."""
    @property
    def warnings(self) -> List[str]:
        """Warnings about the cache (read-only or unusable folder, damaged blobs found)."""
    def slice(self, level: int, z: int) -> _Samples:
        """Slice ``z`` of ``level``, shape ``(y, x)``."""
    def region(
        self,
        level: int,
        z: int,
        y: Union[builtins.slice, int],
        x: Union[builtins.slice, int],
    ) -> _Samples:
        """Rows ``y`` and columns ``x`` of slice ``z`` (slices with step 1, or ints)."""
    def volume(self, level: int) -> _Samples:
        """The whole of ``level``, shape ``(z, y, x)``."""
    def section(self, level: int, axis: _AxisLike, index: int) -> _Samples:
        """The plane at ``index`` across ``axis``: ``(y, x)``, ``(z, x)`` or ``(z, y)``."""
    def export_ctharvester(
        self, out: _StrPath, levels: Optional[Sequence[int]] = None
    ) -> _ExportReport:
        """Writes ``out/<n>/<i:06>.tif`` for ``levels`` (every level >= 1 when None)."""
    def warm_up(
        self,
        levels: Optional[Sequence[int]] = None,
        time: Optional[float] = None,
        bytes: Optional[_ByteSize] = None,
        threads: int = 1,
    ) -> WarmUp:
        """Starts building what users will ask for, in the background."""
    def stats(self) -> _Stats:
        """The counters so far."""
    def demand(self) -> _Demand:
        """What users have asked for, most requested level first."""
    def flush(self) -> None:
        """Waits until every generated slice is stored and saves the request statistics."""
    def __getitem__(self, level: int, /) -> LevelArray:
        """A lazy array-like of ``level``."""
    def __len__(self) -> int:
        """The number of levels, level 0 included."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        *_args: object,
    ) -> Literal[False]:
        """Flushes; the pyramid stays usable."""

def write_phantom(
    path: _StrPath,
    shape: Tuple[int, int, int],
    *,
    dtype: Literal["uint8", "uint16", "u8", "u16"] = "uint16",
    seed: int = 1,
    noise: float = 0.02,
) -> None:
    """Writes a synthetic CT stack ``(z, y, x)`` as TIFF slices into ``path``."""

def build_thumbnails(
    input_dir: _StrPath,
    py_progress_cb: Optional[Callable[[float], object]] = None,
    prefix: Optional[str] = None,
    file_type: Optional[str] = None,
    seq_begin: Optional[int] = None,
    seq_end: Optional[int] = None,
    index_length: Optional[int] = None,
) -> None:
    """CTHarvester's thumbnail pyramid of ``input_dir`` (see ``ct_thumbnail``)."""
