"""The GIL is released while the library works, and one Pyramid serves many Python threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

import lodcache


class Ticker(threading.Thread):
    """A pure-Python thread that notes the time every 256 steps of a counting loop, as often as
    the GIL lets it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.ticks: List[float] = []
        self.running = True

    def run(self) -> None:
        n = 0
        while self.running:
            n += 1
            if n % 256 == 0:
                self.ticks.append(time.perf_counter())


def longest_silence(call: Callable[[], object]) -> Tuple[float, float]:
    """The longest time a ticker thread went without a tick while `call` ran on this thread,
    and how long the call took."""
    ticker = Ticker()
    ticker.start()
    while not ticker.ticks:
        time.sleep(0.001)
    t0 = time.perf_counter()
    call()
    t1 = time.perf_counter()
    ticker.running = False
    ticker.join()
    marks = [t0] + [t for t in ticker.ticks if t0 < t < t1] + [t1]
    return max(b - a for a, b in zip(marks, marks[1:])), t1 - t0


@pytest.mark.parametrize("what", ["volume", "section", "export", "warm_up_wait"])
def test_a_python_thread_runs_while_the_library_works(
    huge_stack: Path, tmp_path: Path, what: str
) -> None:
    seen = []
    # Up to three tries, each on a fresh cache: on two cores shared with the library's own
    # threads (and whatever else runs), the OS may leave the ticker unscheduled for a while
    # once; with the GIL held it is silent through every try.
    for attempt in range(3):
        # A fresh cache and one kernel thread: each call is one native call that builds level
        # 1 from 384 MiB of sources, a good fraction of a second.
        pyr = lodcache.Pyramid(
            huge_stack, cache_dir=tmp_path / f"cache{attempt}", edge=64, threads=1
        )
        calls: Dict[str, Callable[[], object]] = {
            "volume": lambda: pyr.volume(1),
            "section": lambda: pyr.section(1, "x", 100),
            "export": lambda: pyr.export_ctharvester(tmp_path / f"out{attempt}", levels=[1]),
            "warm_up_wait": lambda: pyr.warm_up(levels=[1]).wait(),
        }
        silence, elapsed = longest_silence(calls[what])
        assert elapsed > 0.04, f"{what} took {elapsed:.3f} s: too short to show anything"
        seen.append(f"silent {silence:.3f} s of {elapsed:.3f} s")
        # With the GIL held while the library works, the ticker is silent for nearly the
        # whole call (it may tick only while the result is converted at the end); released,
        # it ticks every few microseconds, with pauses only where the OS runs other threads.
        if silence < 0.5 * elapsed:
            return
    pytest.fail(f"the ticker thread was silent during {what}(): {'; '.join(seen)}")


def test_eight_threads_share_one_pyramid(big_stack: Path, tmp_path: Path) -> None:
    pyr = lodcache.Pyramid(big_stack, cache_dir=tmp_path / "cache", edge=64)
    truth = [pyr.volume(level) for level in range(1, len(pyr))]
    pyr2 = lodcache.Pyramid(big_stack, cache_dir=tmp_path / "cache2", edge=64)  # cold: races
    errors: List[BaseException] = []
    barrier = threading.Barrier(8)

    def work(seed: int) -> None:
        try:
            rng = np.random.default_rng(seed)
            barrier.wait()
            for _ in range(30):
                level = int(rng.integers(1, len(pyr2)))
                ref = truth[level - 1]
                z = int(rng.integers(ref.shape[0]))
                kind = int(rng.integers(4))
                if kind == 0:
                    np.testing.assert_array_equal(pyr2.slice(level, z), ref[z])
                elif kind == 1:
                    np.testing.assert_array_equal(
                        pyr2.region(level, z, slice(3, 40), slice(5, 17)), ref[z, 3:40, 5:17]
                    )
                elif kind == 2:
                    np.testing.assert_array_equal(pyr2[level][z, ::3, 1::2], ref[z, ::3, 1::2])
                else:
                    np.testing.assert_array_equal(pyr2.volume(level), ref)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[0]
    assert sum(pyr2.stats()["requests"]) >= 8 * 30
