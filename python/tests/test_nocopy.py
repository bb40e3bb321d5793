"""Arrays are handed over without a copy: the Rust buffer becomes the array's memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import lodcache


def test_arrays_are_backed_by_the_rust_buffer(big_stack: Path, tmp_path: Path) -> None:
    pyr = lodcache.Pyramid(big_stack, cache_dir=tmp_path / "cache", edge=64)
    for array in (
        pyr.slice(1, 3),
        pyr.slice(0, 3),
        pyr.region(2, 1, slice(2, 9), slice(4, 60)),
        pyr.volume(2),
        pyr.section(1, "y", 7),
    ):
        # The memory belongs to the base object that holds the Rust Vec, not to numpy, and no
        # other ndarray sits in between (a copy would own its data; a view of a copy would
        # have an ndarray base).
        assert not array.flags.owndata
        assert array.base is not None and not isinstance(array.base, np.ndarray)
        assert type(array.base).__name__ == "PySliceContainer"
        assert array.flags.c_contiguous and array.flags.writeable
        array[...] = 0  # writable, and ours alone: the cache is not touched
    np.testing.assert_array_equal(pyr.slice(1, 3), lodcache.Pyramid(big_stack, edge=64,
                                  disk_cache=False).slice(1, 3))


MEASURE = """
import json, resource, sys
import lodcache
pyr = lodcache.Pyramid(sys.argv[1], cache_dir=sys.argv[2], edge=64)
pyr.slice(0, 0)  # warm the code paths; what remains to grow is the volume
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
v = pyr.volume(0)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kib": before, "after_kib": after, "nbytes": v.nbytes}))
"""


def test_volume_peak_memory_is_one_buffer(big_stack: Path, tmp_path: Path) -> None:
    # Level 0 is decoded slice by slice into one buffer of 80 MiB; a copy into numpy's own
    # memory would need a second one at the moment of the copy (peak 160 MiB).
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(big_stack), str(tmp_path / "cache")],
        check=True,
        capture_output=True,
        text=True,
    )
    m = json.loads(out.stdout)
    grown = (m["after_kib"] - m["before_kib"]) * 1024
    assert m["nbytes"] == 160 * 512 * 512 * 2
    assert grown < 1.25 * m["nbytes"], (
        f"peak memory grew by {grown / 2**20:.0f} MiB for a {m['nbytes'] / 2**20:.0f} MiB volume"
    )
