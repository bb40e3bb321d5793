"""Errors reach Python as the documented exception types, with the Rust message."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import tifffile

import lodcache

from conftest import write_stack


@pytest.fixture
def small(tmp_path: Path) -> lodcache.Pyramid:
    lodcache.write_phantom(tmp_path / "scan", (9, 40, 30))
    return lodcache.Pyramid(tmp_path / "scan", cache_dir=tmp_path / "cache", edge=8)


def test_missing_folder_is_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "no such scan"
    with pytest.raises(FileNotFoundError) as e:
        lodcache.Pyramid(missing)
    assert e.value.errno == errno.ENOENT
    assert str(missing) in str(e.value) and "does not exist" in str(e.value)


def test_folder_without_images_is_file_not_found(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a slice")
    with pytest.raises(FileNotFoundError, match="no image slices in") as e:
        lodcache.Pyramid(tmp_path)
    assert e.value.errno == errno.ENOENT and str(tmp_path) in str(e.value)


def test_a_slice_of_another_size_is_a_stack_error_naming_it(tmp_path: Path) -> None:
    vol = np.zeros((4, 30, 20), dtype=np.uint16)
    write_stack(tmp_path / "scan", vol)
    odd = tmp_path / "scan" / "slice_0002.tif"
    tifffile.imwrite(odd, np.zeros((31, 20), dtype=np.uint16))
    pyr = lodcache.Pyramid(tmp_path / "scan", cache_dir=tmp_path / "cache", edge=8)
    with pytest.raises(lodcache.StackError) as e:
        pyr.volume(1)
    assert "slice_0002.tif" in str(e.value) and "20 x 31" in str(e.value)
    assert e.value.path == str(odd)
    with pytest.raises(lodcache.StackError, match="slice_0002.tif"):
        pyr.slice(0, 2)


def test_a_damaged_slice_is_a_stack_error_naming_it(tmp_path: Path) -> None:
    write_stack(tmp_path / "scan", np.zeros((4, 30, 20), dtype=np.uint8))
    bad = tmp_path / "scan" / "slice_0001.tif"
    bad.write_bytes(b"II*\x00garbage")
    pyr = lodcache.Pyramid(tmp_path / "scan", cache_dir=tmp_path / "cache", edge=8)
    with pytest.raises(lodcache.StackError, match="slice_0001.tif"):
        pyr.slice(1, 0)


def test_out_of_range_arguments_name_the_valid_range(small: lodcache.Pyramid) -> None:
    with pytest.raises(ValueError, match=r"invalid level: 4; this pyramid has levels 0..=3"):
        small.slice(4, 0)
    with pytest.raises(ValueError, match=r"levels 0..=3"):
        small.volume(-1)
    with pytest.raises(ValueError, match=r"invalid slice index: 5 at level 1; valid: 0..=4"):
        small.slice(1, 5)
    with pytest.raises(ValueError, match=r"section index: 20 across Y at level 1; valid: 0..=19"):
        small.section(1, "y", 20)
    with pytest.raises(ValueError, match=r"axis 3 is out of range"):
        small.section(1, 3, 0)
    with pytest.raises(ValueError, match=r"axis \"w\" is not one of"):
        small.section(1, "w", 0)
    with pytest.raises(ValueError, match=r"region y 25 is out of range; valid: 0..=19"):
        small.region(1, 0, 25, slice(None))
    with pytest.raises(ValueError, match=r"region x 10:3 is empty"):
        small.region(1, 0, slice(None), slice(10, 3))
    with pytest.raises(ValueError, match=r"step 1"):
        small.region(1, 0, slice(None, None, 2), slice(None))
    with pytest.raises(ValueError, match=r"export level: 7; valid levels: 1..=3"):
        small.export_ctharvester(small.path.parent / "out", levels=[7])


def test_bad_settings_are_value_errors(tmp_path: Path) -> None:
    lodcache.write_phantom(tmp_path / "scan", (3, 20, 20))
    with pytest.raises(ValueError, match=r"\"12 parsecs\" is not a byte size"):
        lodcache.Pyramid(tmp_path / "scan", memory_budget="12 parsecs")
    with pytest.raises(ValueError, match="must not be negative"):
        lodcache.Pyramid(tmp_path / "scan", disk_budget=-5)
    with pytest.raises(ValueError, match="level edge"):
        lodcache.Pyramid(tmp_path / "scan", edge=0)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        lodcache.Pyramid(tmp_path / "scan", threads=0)
    with pytest.raises(TypeError):
        lodcache.Pyramid(tmp_path / "scan", edge="big")  # type: ignore[arg-type]
    pyr = lodcache.Pyramid(tmp_path / "scan", memory_budget="64M", disk_budget=1 << 30)
    assert pyr.stats()["memory"]["budget"] == 64 << 20
    assert pyr.stats()["disk"]["budget"] == 1 << 30


def test_writing_where_a_file_is_is_an_os_error(small: lodcache.Pyramid, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OSError) as e:
        small.export_ctharvester(blocker / "out")
    assert not isinstance(e.value, ValueError)
    assert str(blocker) in str(e.value)
    assert e.value.errno in (errno.ENOTDIR, errno.EEXIST)
