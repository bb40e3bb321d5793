"""Python overhead of lodcache's bindings: median time of a memory-hit ``slice()`` and
``volume()`` from Python, next to the same calls from Rust (``examples/slice_overhead.rs``).

    python python/bench/overhead.py [STACK] [REPEATS]

Writes the stack (a 1024 x 1024 x 64 16-bit phantom) if STACK does not exist, runs the Rust
example on it (``cargo run --release``), then the same calls from Python, and prints both.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lodcache

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    stack = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.gettempdir()) / "lodcache-overhead"
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    if not stack.exists():
        lodcache.write_phantom(stack, (64, 1024, 1024), dtype="uint16", seed=1)
    rust = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "-p", "lodcache-python", "--example",
         "slice_overhead", "--", str(stack), str(repeats)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    print(rust, end="")

    pyr = lodcache.Pyramid(stack, disk_cache=False)
    for level in range(1, len(pyr)):
        pyr.volume(level)
    pyr.flush()
    for level in range(1, len(pyr)):
        depth = pyr.levels[level].shape[0]
        times = []
        for i in range(repeats):
            t = time.perf_counter()
            pyr.slice(level, i % depth)
            times.append(time.perf_counter() - t)
        print(f"python slice  level {level}: median {statistics.median(times) * 1e6:.1f} us")
        times = []
        for _ in range(max(repeats // 50, 5)):
            t = time.perf_counter()
            v = pyr.volume(level)
            times.append(time.perf_counter() - t)
            del v
        print(f"python volume level {level}: median {statistics.median(times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
