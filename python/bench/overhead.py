"""Python overhead of lodcache's bindings: median time of a memory-hit ``slice()`` and
``volume()`` from Python, next to the same calls from Rust (``examples/slice_overhead.rs``).

Writes the stack (a 1024 x 1024 x 64 16-bit phantom) if STACK does not exist, then runs
ROUNDS rounds (default 3) of the Rust example (``cargo run --release``) and of the same calls
from Python, alternating, and prints the median of each side's round medians.

    python python/bench/overhead.py [STACK] [REPEATS] [ROUNDS]
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


def rust_round(stack: Path, repeats: int) -> dict[str, float]:
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "-p", "lodcache-python", "--example",
         "slice_overhead", "--", str(stack), str(repeats)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    figures = {}
    for line in out.splitlines():  # "rust slice  level 1: median 226.8 us"
        name, value = line.split(": median ")
        figures[" ".join(name.split()[1:])] = float(value.split()[0])
    return figures


def python_round(pyr: lodcache.Pyramid, repeats: int) -> dict[str, float]:
    figures = {}
    for level in range(1, len(pyr)):
        depth = pyr.levels[level].shape[0]
        times = []
        for i in range(repeats):
            t = time.perf_counter()
            pyr.slice(level, i % depth)
            times.append(time.perf_counter() - t)
        figures[f"slice level {level}"] = statistics.median(times) * 1e6
        times = []
        for _ in range(max(repeats // 50, 5)):
            t = time.perf_counter()
            v = pyr.volume(level)
            times.append(time.perf_counter() - t)
            del v
        figures[f"volume level {level}"] = statistics.median(times) * 1e3
    return figures


def main() -> None:
    tmp = Path(tempfile.gettempdir())
    stack = Path(sys.argv[1]) if len(sys.argv) > 1 else tmp / "lodcache-overhead"
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    if not stack.exists():
        lodcache.write_phantom(stack, (64, 1024, 1024), dtype="uint16", seed=1)
    pyr = lodcache.Pyramid(stack, disk_cache=False)
    for level in range(1, len(pyr)):
        pyr.volume(level)
    pyr.flush()
    # Rust and Python rounds alternate, so that a busy period of the machine hits both.
    rust, py = [], []
    for _ in range(rounds):
        rust.append(rust_round(stack, repeats))
        py.append(python_round(pyr, repeats))
    for name in rust[0]:
        unit = "us" if name.startswith("slice") else "ms"
        r = [f[name] for f in rust]
        p = [f[name] for f in py]
        print(f"{name:15} rust {statistics.median(r):8.2f} {unit}  python "
              f"{statistics.median(p):8.2f} {unit}  ratio {statistics.median(p) / statistics.median(r):.2f}"
              f"  (rounds: rust {[round(x, 1) for x in r]}, python {[round(x, 1) for x in p]})")


if __name__ == "__main__":
    main()
