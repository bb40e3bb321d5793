"""ct_thumbnail.build_thumbnails: CTHarvester's contract (layout, levels, pattern, callback,
cancel and resume, errors), with lodcache's exact values."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest
import tifffile

import ct_thumbnail
import lodcache

from conftest import read_stack, reference_pyramid, write_stack
from test_concurrency import longest_silence


def thumbnails(folder: Path) -> List[np.ndarray]:
    """The levels written under folder/.thumbnail, level 1 first, checking the layout."""
    root = folder / ".thumbnail"
    levels = []
    n = 1
    while (root / str(n)).is_dir():
        files = sorted((root / str(n)).iterdir())
        assert [f.name for f in files] == [f"{i:06}.tif" for i in range(len(files))]
        for f in files[:2]:
            with tifffile.TiffFile(f) as tif:
                assert len(tif.pages) == 1
                assert tif.pages[0].compression == 1  # uncompressed
        levels.append(np.stack([tifffile.imread(f) for f in files]))
        n += 1
    # Beside the levels, only lodcache's export marker (a hidden file CTHarvester never lists:
    # it reads .thumbnail/<n>/ folders), which lets a later run replace these levels safely.
    names = sorted(p.name for p in root.iterdir() if p.name != ".lodcache-export.json")
    assert names == [str(i) for i in range(1, n)]
    assert (root / ".lodcache-export.json").is_file()
    return levels


def ctharvester_level_count(width: int, height: int) -> int:
    """CTHarvester's rule: halve while the width or the height exceeds 500."""
    n = 0
    while width > 500 or height > 500:
        width, height, n = width // 2, height // 2, n + 1
    return n


@pytest.mark.parametrize("dtype, shape", [("uint16", (21, 600, 1100)), ("uint8", (9, 1030, 70))])
def test_writes_ctharvesters_layout_with_exact_values(
    tmp_path: Path, dtype: str, shape: tuple[int, int, int]
) -> None:
    scan = tmp_path / "scan"
    lodcache.write_phantom(scan, shape, dtype=dtype)  # type: ignore[arg-type]
    assert ct_thumbnail.build_thumbnails(str(scan)) is None
    got = thumbnails(scan)
    d, h, w = shape
    assert len(got) == ctharvester_level_count(w, h) >= 1
    ref = reference_pyramid(read_stack(scan), len(got) + 1)
    for n, level in enumerate(got, start=1):
        assert level.dtype == np.dtype(dtype)
        # No dropped tail slice: ceil(depth / 2) files per level.
        assert level.shape[0] == ref[n].shape[0] == -(-ref[n - 1].shape[0] // 2)
        np.testing.assert_array_equal(level, ref[n], err_msg=f"level {n}")


@pytest.fixture
def patterned(tmp_path: Path) -> Path:
    """scan_0000..scan_0030 without scan_0005 (21..30 lie beyond seq_end), plus files of
    another prefix and with the wrong number of digits, that the pattern must leave out."""
    folder = tmp_path / "scan"
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 4000, size=(31, 40, 1000), dtype=np.uint16)
    write_stack(folder, vol, prefix="scan_")
    (folder / "scan_0005.tif").unlink()
    write_stack(tmp_path / "other", vol[:3], prefix="other_")
    for f in (tmp_path / "other").iterdir():
        f.rename(folder / f.name)
    (folder / "scan_01.tif").write_bytes(b"")  # the wrong number of digits
    return folder


def test_pattern_arguments_pick_exactly_the_existing_files(patterned: Path) -> None:
    calls: List[float] = []
    ct_thumbnail.build_thumbnails(str(patterned), calls.append, "scan_", "tif", 0, 20, 4)
    wanted = [patterned / f"scan_{i:04d}.tif" for i in range(0, 21) if i != 5]
    ref = reference_pyramid(np.stack([tifffile.imread(f) for f in wanted]), 2)
    (level1,) = thumbnails(patterned)
    assert level1.shape[0] == 10
    np.testing.assert_array_equal(level1, ref[1])
    assert calls[0] == 0.0 and calls[-1] == 100.0


def test_keywords_and_a_partial_pattern_fall_back_to_detection(tmp_path: Path) -> None:
    scan = tmp_path / "scan"
    vol = np.random.default_rng(4).integers(0, 255, size=(7, 20, 1000), dtype=np.uint8)
    write_stack(scan, vol, prefix="img")
    (scan / "notes.txt").write_text("not a slice")
    # Four of five pattern arguments: ignored, as CTHarvester's module does.
    ct_thumbnail.build_thumbnails(
        input_dir=str(scan), py_progress_cb=None, prefix="nothing_", file_type="png",
        seq_begin=0, seq_end=3, index_length=None,
    )
    (level1,) = thumbnails(scan)
    np.testing.assert_array_equal(level1, reference_pyramid(vol, 2)[1])


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 slices of 300 x 520 (u8): 120 level-1 slices, so progress comes in steps below 1%."""
    path = tmp_path_factory.mktemp("deep") / "scan"
    lodcache.write_phantom(path, (240, 300, 520), dtype="uint8", seed=21)
    return path


def fresh_copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_callback_sequence_and_thread(deep: Path, tmp_path: Path) -> None:
    scan = fresh_copy(deep, tmp_path / "scan")
    calls: List[float] = []
    threads: set[int] = set()

    def cb(percent: float) -> None:
        assert isinstance(percent, float)
        calls.append(percent)
        threads.add(threading.get_ident())

    # Called from a worker thread: the callback must run on that thread.
    worker = threading.Thread(target=ct_thumbnail.build_thumbnails, args=(str(scan), cb))
    worker.start()
    worker.join(timeout=120)
    assert threads == {worker.ident}
    assert calls[0] == 0.0 and calls[-1] == 100.0
    assert calls.count(0.0) == 1 and calls.count(100.0) == 1
    assert all(a < b for a, b in zip(calls, calls[1:])), "not increasing"
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert max(gaps) <= 1.0 + 1e-9, f"a gap of {max(gaps):.2f}% between two calls"
    assert len(thumbnails(scan)) == 1


def test_the_gil_is_released_between_calls(deep: Path, tmp_path: Path) -> None:
    scan = fresh_copy(deep, tmp_path / "scan")
    silence, elapsed = longest_silence(lambda: ct_thumbnail.build_thumbnails(str(scan)))
    assert elapsed > 0.04
    assert silence < 0.5 * elapsed, f"silent for {silence:.3f} s of {elapsed:.3f} s"


def test_returning_false_stops_and_a_later_call_resumes(deep: Path, tmp_path: Path) -> None:
    scan = fresh_copy(deep, tmp_path / "scan")
    calls: List[float] = []

    def stop_at_30(percent: float) -> Optional[bool]:
        calls.append(percent)
        return False if percent >= 30.0 else None  # None means go on

    assert ct_thumbnail.build_thumbnails(str(scan), stop_at_30) is None
    assert calls[-1] >= 30.0 and 100.0 not in calls
    assert [c for c in calls if c >= 30.0] == [calls[-1]], "called again after False"
    # Only complete files: no level folder appears before the whole build succeeded.
    thumbs = scan / ".thumbnail"
    assert not thumbs.exists() or not any(p.name.isdigit() for p in thumbs.iterdir())
    # What was made before the stop is in the cache folder.
    with lodcache.Pyramid(scan) as pyr:
        progress = pyr.warm_up(levels=[1], time=0.0)
        progress.wait(timeout=30)
        stored = progress.progress().already_stored
    assert 0 < stored < 120

    again: List[float] = []
    ct_thumbnail.build_thumbnails(str(scan), again.append)
    assert again[0] == 0.0 and again[-1] == 100.0
    (level1,) = thumbnails(scan)
    np.testing.assert_array_equal(level1, reference_pyramid(read_stack(deep), 2)[1])


def test_an_exception_in_the_callback_stops_and_is_reraised(deep: Path, tmp_path: Path) -> None:
    scan = fresh_copy(deep, tmp_path / "scan")
    calls: List[float] = []

    class Stop(Exception):
        pass

    def boom(percent: float) -> None:
        calls.append(percent)
        if percent > 10.0:
            raise Stop(f"user closed the window at {percent:.1f}%")

    with pytest.raises(Stop, match="user closed the window"):
        ct_thumbnail.build_thumbnails(str(scan), boom)
    assert 100.0 not in calls and calls[-1] > 10.0
    assert [c for c in calls if c > 10.0] == [calls[-1]]
    assert not (scan / ".thumbnail" / "1").exists()


def test_false_at_the_first_call_builds_nothing(deep: Path, tmp_path: Path) -> None:
    scan = fresh_copy(deep, tmp_path / "scan")
    calls: List[float] = []
    t0 = time.perf_counter()
    ct_thumbnail.build_thumbnails(str(scan), lambda p: calls.append(p) or False)
    assert calls == [0.0] and time.perf_counter() - t0 < 5
    assert not (scan / ".thumbnail").exists()


def test_a_later_viewer_opens_the_scan_from_the_cache(tmp_path: Path) -> None:
    scan = tmp_path / "scan"
    lodcache.write_phantom(scan, (12, 520, 520))
    ct_thumbnail.build_thumbnails(str(scan))
    with lodcache.Pyramid(scan) as pyr:
        w = pyr.warm_up()
        assert w.wait(timeout=30) == "completed"
        assert w.progress().total == 0  # everything was stored by build_thumbnails
        assert pyr.volume(1).shape == (6, 260, 260)
        assert pyr.stats()["generated"] == 0


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ct_thumbnail.build_thumbnails(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image slices"):
        ct_thumbnail.build_thumbnails(str(tmp_path / "empty"))
    scan = tmp_path / "scan"
    write_stack(scan, np.zeros((4, 10, 1002), dtype=np.uint16), prefix="s")
    with pytest.raises(ValueError, match="seq_begin 3 is after seq_end 1"):
        ct_thumbnail.build_thumbnails(str(scan), None, "s", "tif", 3, 1, 4)
    with pytest.raises(ValueError, match="seq_begin must not be negative"):
        ct_thumbnail.build_thumbnails(str(scan), None, "s", "tif", -1, 1, 4)
    with pytest.raises(FileNotFoundError, match="no image slices"):
        ct_thumbnail.build_thumbnails(str(scan), None, "t", "tif", 0, 3, 4)
    tifffile.imwrite(scan / "s0002.tif", np.zeros((11, 1002), dtype=np.uint16))
    with pytest.raises(lodcache.StackError, match="s0002.tif") as e:
        ct_thumbnail.build_thumbnails(str(scan))
    assert isinstance(e.value, ValueError)
    tifffile.imwrite(scan / "s0002.tif", np.zeros((10, 1002), dtype=np.uint16))
    shutil.rmtree(scan / ".thumbnail", ignore_errors=True)
    (scan / ".thumbnail").write_text("a file where the folder goes")
    with pytest.raises(OSError) as os_err:
        ct_thumbnail.build_thumbnails(str(scan))
    assert ".thumbnail" in str(os_err.value)


def test_values_are_within_one_of_ctharvesters_double_rounding(tmp_path: Path) -> None:
    # A model of CTHarvester's reduction: each slice's 2x2 mean rounded, then the mean of two
    # such slices rounded again; an odd last slice dropped. Ours is the exact mean of 8,
    # rounded once: from the same level below, the two differ by at most 1.
    scan = tmp_path / "scan"
    lodcache.write_phantom(scan, (17, 40, 1010), dtype="uint16", seed=8, noise=0.2)
    ct_thumbnail.build_thumbnails(str(scan))
    ours = thumbnails(scan)
    below = read_stack(scan).astype(np.int64)
    for level in ours:
        d, h, w = below.shape
        planes = below[:, : h // 2 * 2, : w // 2 * 2].reshape(d, h // 2, 2, w // 2, 2)
        in_plane = (planes.sum(axis=(2, 4)) + 2) >> 2
        pairs = d // 2
        theirs = (in_plane[0 : 2 * pairs : 2] + in_plane[1 : 2 * pairs : 2] + 1) >> 1
        diff = np.abs(level[:pairs].astype(np.int64) - theirs)
        assert diff.max() <= 1
        assert 0 < np.count_nonzero(diff) < diff.size  # they do differ, sometimes
        below = level.astype(np.int64)
