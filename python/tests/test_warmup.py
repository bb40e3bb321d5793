"""Warm-up from Python: progress, budgets, cancel, resume, errors."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

import lodcache


def test_warm_up_completes_with_progress(big_stack: Path, tmp_path: Path) -> None:
    pyr = lodcache.Pyramid(big_stack, cache_dir=tmp_path / "cache", edge=64)
    w = pyr.warm_up()
    assert w.wait(timeout=120) == "completed"
    assert w.done
    p = w.progress()
    assert p.finished and p.level is None
    total = sum(lvl.shape[0] for lvl in pyr.levels[1:])
    assert p.total == p.done == total and p.already_stored == 0
    assert p.bytes > 0 and p.rate > 0 and p.elapsed > 0
    assert w.wait() == "completed"  # waiting again answers the same
    assert "done=" in repr(w) and "WarmupProgress(" in repr(p)
    # Everything is stored now: a second run has nothing to do.
    again = pyr.warm_up()
    assert again.wait(timeout=60) == "completed"
    assert again.progress().total == 0 and again.progress().already_stored == total


def test_time_budget_of_zero_stops_before_the_first_slice(big_stack: Path, tmp_path: Path) -> None:
    pyr = lodcache.Pyramid(big_stack, cache_dir=tmp_path / "cache", edge=64)
    w = pyr.warm_up(time=0.0)
    assert w.wait(timeout=60) == "budget"
    assert w.progress().done == 0 and w.progress().total > 0


def test_cancel_then_resume(huge_stack: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pyr = lodcache.Pyramid(huge_stack, cache_dir=cache, edge=64)
    # Level 1 alone: 96 slices of 512 x 512, each made from two 2 MiB source slices (hundreds
    # of milliseconds in all); the run is cancelled once it has made a few.
    w = pyr.warm_up(levels=[1])
    deadline = time.monotonic() + 60
    while w.progress().done < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    w.cancel()
    assert w.done
    first = w.progress()
    assert w.wait(timeout=1) == "cancelled", "the run finished before it could be cancelled"
    assert 3 <= first.done < first.total
    del pyr, w
    gc.collect()

    # A new pyramid on the same cache folder resumes: what was made is not made again.
    pyr = lodcache.Pyramid(huge_stack, cache_dir=cache, edge=64)
    w = pyr.warm_up(levels=[1])
    assert w.wait(timeout=120) == "completed"
    second = w.progress()
    assert second.already_stored >= first.done
    assert second.already_stored + second.done == first.total


def test_dropping_the_handle_cancels(huge_stack: Path, tmp_path: Path) -> None:
    pyr = lodcache.Pyramid(huge_stack, cache_dir=tmp_path / "cache", edge=64)
    w = pyr.warm_up(levels=[1])
    while w.progress().done < 1:
        time.sleep(0.001)
    t0 = time.perf_counter()
    del w  # cancels and joins, within one slice of work
    gc.collect()
    assert time.perf_counter() - t0 < 5
    stats = pyr.stats()
    assert stats["generated"] < pyr.levels[1].shape[0]


def test_bad_warm_up_arguments(big_stack: Path, tmp_path: Path) -> None:
    pyr = lodcache.Pyramid(big_stack, cache_dir=tmp_path / "cache", edge=64)
    w = pyr.warm_up(levels=[9])
    with pytest.raises(ValueError, match=r"warm-up level: 9; valid levels: 1..=3"):
        w.wait(timeout=30)
    with pytest.raises(ValueError, match="time must be a non-negative"):
        pyr.warm_up(time=-1.0)
    with pytest.raises(ValueError, match="byte size"):
        pyr.warm_up(bytes="lots")
    w2 = pyr.warm_up(levels=[3])
    with pytest.raises(ValueError, match="timeout"):
        w2.wait(timeout=-1)
    w2.cancel()


def test_wait_with_a_timeout_returns_none_while_running(huge_stack: Path, tmp_path: Path) -> None:
    pyr = lodcache.Pyramid(huge_stack, cache_dir=tmp_path / "cache", edge=64, threads=1)
    with pyr.warm_up(levels=[1]) as w:
        assert w.wait(timeout=0) is None
        assert not w.done
    assert w.done and w.wait() == "cancelled"
