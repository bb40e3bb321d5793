"""Shared fixtures: synthetic stacks, the real scans of ../shared/data, and a numpy reference
pyramid that follows the contract in the README (exact 2x2x2 means, rounded half up; a lone
last slice is the 2x2 mean; odd last rows and columns dropped)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import tifffile

import lodcache

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
REAL_SCANS = ["heudiconv_siemens_b0_mosaic", "niivue_mni152_2009_t1"]


def reduce_level(v: np.ndarray) -> np.ndarray:
    """Level n + 1 from level n (z, y, x), by the pyramid contract."""
    d, h, w = v.shape
    h2, w2 = h // 2, w // 2
    if v.dtype.kind == "f":
        s = v[:, : 2 * h2, : 2 * w2].astype(np.float64).reshape(d, h2, 2, w2, 2).sum(axis=(2, 4))
        out = np.empty(((d + 1) // 2, h2, w2), dtype=np.float64)
        pairs = d // 2
        out[:pairs] = (s[0 : 2 * pairs : 2] + s[1 : 2 * pairs : 2]) / 8.0
        if d % 2:
            out[-1] = s[-1] / 4.0
        return out.astype(np.float32)
    s = v[:, : 2 * h2, : 2 * w2].astype(np.uint64).reshape(d, h2, 2, w2, 2).sum(axis=(2, 4))
    out = np.empty(((d + 1) // 2, h2, w2), dtype=np.uint64)
    pairs = d // 2
    out[:pairs] = (s[0 : 2 * pairs : 2] + s[1 : 2 * pairs : 2] + 4) >> 3
    if d % 2:
        out[-1] = (s[-1] + 2) >> 2
    return out.astype(v.dtype)


def reference_pyramid(level0: np.ndarray, count: int) -> List[np.ndarray]:
    levels = [level0]
    while len(levels) < count:
        levels.append(reduce_level(levels[-1]))
    return levels


def read_stack(folder: Path) -> np.ndarray:
    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff") and p.is_file()
    )
    return np.stack([tifffile.imread(p) for p in files])


def write_stack(folder: Path, volume: np.ndarray, prefix: str = "slice_") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for z, plane in enumerate(volume):
        tifffile.imwrite(folder / f"{prefix}{z:04d}.tif", plane)
    return folder


class Stack:
    """A stack folder and its reference pyramid."""

    def __init__(self, path: Path, levels: List[np.ndarray]) -> None:
        self.path = path
        self.levels = levels


@pytest.fixture(scope="session")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Tuple[Path, int]]:
    """Synthetic stacks (folder, edge): lodcache's phantoms (u8, u16, odd sizes) and a float32
    stack written with tifffile."""
    root = tmp_path_factory.mktemp("stacks")
    made: Dict[str, Tuple[Path, int]] = {}
    lodcache.write_phantom(root / "u16", (37, 90, 75), dtype="uint16", seed=3)
    made["u16"] = (root / "u16", 16)
    lodcache.write_phantom(root / "u8", (20, 64, 81), dtype="uint8", seed=5)
    made["u8"] = (root / "u8", 16)
    rng = np.random.default_rng(7)
    write_stack(root / "f32", rng.normal(100.0, 30.0, size=(11, 40, 33)).astype(np.float32))
    made["f32"] = (root / "f32", 8)
    return made


def stack_params() -> List[str]:
    return ["u16", "u8", "f32"] + [f"real:{n}" for n in REAL_SCANS]


def open_stack(
    name: str, stacks: Dict[str, Tuple[Path, int]], cache: Path
) -> Tuple[lodcache.Pyramid, List[np.ndarray]]:
    """The pyramid of stack `name` with its cache in `cache`, and the reference levels."""
    if name.startswith("real:"):
        folder = SHARED_DATA / name[5:]
        if not folder.is_dir():
            pytest.skip(f"real scan {folder} is absent (see ../shared/data/README.md)")
        edge = 40
    else:
        folder, edge = stacks[name]
    pyr = lodcache.Pyramid(folder, cache_dir=cache, edge=edge)
    ref = reference_pyramid(read_stack(folder), len(pyr.levels))
    return pyr, ref


@pytest.fixture(params=stack_params())
def pyramid_and_reference(
    request: pytest.FixtureRequest,
    stacks: Dict[str, Tuple[Path, int]],
    tmp_path: Path,
) -> Tuple[lodcache.Pyramid, List[np.ndarray]]:
    return open_stack(request.param, stacks, tmp_path / "cache")


@pytest.fixture(scope="session")
def big_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-bit phantom large enough that whole-level work takes a noticeable time:
    160 slices of 512 x 512 (80 MiB)."""
    path = tmp_path_factory.mktemp("big") / "scan"
    lodcache.write_phantom(path, (160, 512, 512), dtype="uint16", seed=11)
    return path


@pytest.fixture(scope="session")
def huge_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-bit phantom whose level-1 build takes a good fraction of a second even on a fast
    machine: 192 slices of 1024 x 1024 (384 MiB)."""
    path = tmp_path_factory.mktemp("huge") / "scan"
    lodcache.write_phantom(path, (192, 1024, 1024), dtype="uint16", seed=13)
    return path


def pytest_report_header() -> str:
    return f"lodcache {lodcache.__version__} from {os.path.dirname(lodcache.__file__)}"
