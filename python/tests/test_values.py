"""The values served to Python equal a numpy reference pyramid and the Rust pyramid's own
CTHarvester export, on phantoms (u8, u16, f32) and the real scans of ../shared/data."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import tifffile

import lodcache

PyrRef = Tuple[lodcache.Pyramid, List[np.ndarray]]


def test_levels_describe_the_reference(pyramid_and_reference: PyrRef) -> None:
    pyr, ref = pyramid_and_reference
    assert len(pyr) == len(pyr.levels) == len(ref) >= 2
    for info, r in zip(pyr.levels, ref):
        assert info.shape == r.shape
        assert info.dtype == r.dtype
        assert info.voxel_size is None  # the phantom's TIFFs carry no resolution
    assert [lvl.level for lvl in pyr.levels] == list(range(len(ref)))


def test_volumes_equal_the_reference(pyramid_and_reference: PyrRef) -> None:
    pyr, ref = pyramid_and_reference
    # Coarsest first, then the others: lazily made levels and streamed ones must agree.
    for level in reversed(range(len(ref))):
        got = pyr.volume(level)
        assert got.dtype == ref[level].dtype and got.shape == ref[level].shape
        np.testing.assert_array_equal(got, ref[level], err_msg=f"level {level}")


def test_slices_regions_sections_equal_the_reference(pyramid_and_reference: PyrRef) -> None:
    pyr, ref = pyramid_and_reference
    rng = np.random.default_rng(1)
    for level, r in enumerate(ref):
        d, h, w = r.shape
        for z in {0, d - 1, int(rng.integers(d))}:
            np.testing.assert_array_equal(pyr.slice(level, z), r[z])
            y0, x0 = int(rng.integers(h)), int(rng.integers(w))
            y1, x1 = int(rng.integers(y0, h)) + 1, int(rng.integers(x0, w)) + 1
            np.testing.assert_array_equal(
                pyr.region(level, z, slice(y0, y1), slice(x0, x1)), r[z, y0:y1, x0:x1]
            )
            np.testing.assert_array_equal(pyr.region(level, z, y0, slice(None)), r[z, y0])
            np.testing.assert_array_equal(pyr.region(level, z, slice(-3, None), -1), r[z, -3:, -1])
            np.testing.assert_array_equal(
                pyr.region(level, z, np.int64(y0), slice(x0, x1)), r[z, y0, x0:x1]
            )
        y, x = int(rng.integers(h)), int(rng.integers(w))
        np.testing.assert_array_equal(pyr.section(level, "y", y), r[:, y, :])
        np.testing.assert_array_equal(pyr.section(level, 1, y), r[:, y, :])
        np.testing.assert_array_equal(pyr.section(level, "x", x), r[:, :, x])
        np.testing.assert_array_equal(pyr.section(level, -1, x), r[:, :, x])
        np.testing.assert_array_equal(pyr.section(level, "Z", d - 1), r[d - 1])


def test_export_equals_the_reference(pyramid_and_reference: PyrRef, tmp_path: Path) -> None:
    pyr, ref = pyramid_and_reference
    report = pyr.export_ctharvester(tmp_path / "out")
    assert report["levels"] == list(range(1, len(ref)))
    assert report["files"] == sum(r.shape[0] for r in ref[1:])
    for level in range(1, len(ref)):
        folder = tmp_path / "out" / str(level)
        files = sorted(folder.iterdir())
        assert [f.name for f in files] == [f"{i:06}.tif" for i in range(ref[level].shape[0])]
        got = np.stack([tifffile.imread(f) for f in files])
        assert got.dtype == ref[level].dtype
        np.testing.assert_array_equal(got, ref[level], err_msg=f"level {level}")


KEYS = [
    (),
    0,
    -1,
    (slice(None),),
    (1, 2, 3),
    (-1, -2, -3),
    (slice(1, 5), slice(None), 4),
    (slice(None, None, 2), slice(3, 20, 3), slice(None, None, -2)),
    (slice(None, None, -1), 0),
    (slice(None), 3),
    (slice(None), slice(2, 9), -2),
    (slice(None, None, 2), slice(None), 1),
    (Ellipsis, 3),
    (2, Ellipsis),
    (slice(2, 3), Ellipsis, slice(1, 2)),
    (slice(5, 2), slice(None), slice(None)),  # empty
    (slice(0, 0), slice(0, 0), slice(0, 0)),  # what dask asks for its meta
    (np.int64(1), slice(None), np.int32(2)),
]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_level_array_indexes_like_numpy(pyramid_and_reference: PyrRef, key: object) -> None:
    pyr, ref = pyramid_and_reference
    for level in (1, len(ref) - 1):
        lazy = pyr[level]
        try:
            expected = np.asarray(ref[level][key])  # type: ignore[index]
        except IndexError:
            with pytest.raises(IndexError):
                lazy[key]
            continue
        got = lazy[key]
        assert isinstance(got, np.ndarray)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_level_array_properties(pyramid_and_reference: PyrRef) -> None:
    pyr, ref = pyramid_and_reference
    lazy = pyr[1]
    assert isinstance(lazy, lodcache.LevelArray)
    assert lazy.shape == ref[1].shape and lazy.ndim == 3 and len(lazy) == ref[1].shape[0]
    assert lazy.dtype == ref[1].dtype and lazy.size == ref[1].size
    assert lazy.nbytes == ref[1].nbytes
    np.testing.assert_array_equal(np.asarray(lazy), ref[1])
    assert np.asarray(lazy, dtype=np.float64).dtype == np.float64
    with pytest.raises(IndexError, match="out of range"):
        lazy[ref[1].shape[0]]
    with pytest.raises(IndexError, match="too many indices"):
        lazy[0, 0, 0, 0]
    with pytest.raises(ValueError, match=f"levels 0..={len(ref) - 1}"):
        pyr[len(ref)]


def test_voxel_size_from_a_scanner_log_and_given(tmp_path: Path) -> None:
    scan = tmp_path / "scan"
    lodcache.write_phantom(scan, (8, 40, 1100), dtype="uint8")
    (scan / "scan_rec.log").write_text(
        "[System]\nScanner=Skyscan1272\n[Reconstruction]\nPixel Size (um)=4.500000\n"
    )
    pyr = lodcache.Pyramid(scan, disk_cache=False)
    assert len(pyr.levels) >= 2
    for info in pyr.levels:
        f = 2.0**info.level
        assert info.voxel_size == pytest.approx((4.5 * f, 4.5 * f, 4.5 * f))
    given = lodcache.Pyramid(scan, disk_cache=False, voxel_size=(10.0, 2.0, 3.0))
    assert given.levels[0].voxel_size == pytest.approx((10.0, 2.0, 3.0))
    assert given.levels[1].voxel_size == pytest.approx((20.0, 4.0, 6.0))
    with pytest.raises(ValueError, match="voxel"):
        lodcache.Pyramid(scan, disk_cache=False, voxel_size=(0.0, 1.0, 1.0))
