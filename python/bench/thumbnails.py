"""ct_thumbnail.build_thumbnails against the library's export (``examples/export.rs``, what
``lodcache export`` runs) on the same stack: both build every level from the sources through
an empty cache folder and write CTHarvester's layout. Prints the median of RUNS each.

    python python/bench/thumbnails.py [STACK] [RUNS]

Writes the stack (a 1024 x 1024 x 256 16-bit phantom, 512 MiB) if STACK does not exist.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ct_thumbnail
import lodcache

ROOT = Path(__file__).resolve().parents[2]


def clean(stack: Path, out: Path) -> None:
    for p in (stack / ".lodcache", stack / ".thumbnail", out):
        shutil.rmtree(p, ignore_errors=True)


def main() -> None:
    tmp = Path(tempfile.gettempdir())
    stack = Path(sys.argv[1]) if len(sys.argv) > 1 else tmp / "lodcache-thumbnail-bench"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if not stack.exists():
        lodcache.write_phantom(stack, (256, 1024, 1024), dtype="uint16", seed=2)
    out = tmp / "lodcache-thumbnail-bench-out"
    subprocess.run(["cargo", "build", "--quiet", "--release", "--example", "export"],
                   cwd=ROOT, check=True)
    example = Path(
        subprocess.run(["cargo", "metadata", "--format-version=1", "--no-deps"], cwd=ROOT,
                       check=True, capture_output=True, text=True).stdout.split(
            '"target_directory":"')[1].split('"')[0]
    ) / "release" / "examples" / "export"
    # Warm the page cache once, so that both read the sources from memory.
    lodcache.Pyramid(stack, disk_cache=False).volume(0)
    export_times, thumb_times = [], []
    for _ in range(runs):
        clean(stack, out)
        t = time.perf_counter()
        subprocess.run([str(example), str(stack), str(out)], check=True, capture_output=True)
        export_times.append(time.perf_counter() - t)
        clean(stack, out)
        t = time.perf_counter()
        ct_thumbnail.build_thumbnails(str(stack), lambda p: None)
        thumb_times.append(time.perf_counter() - t)
    clean(stack, out)
    print(f"export example (lodcache export): median {statistics.median(export_times):.3f} s "
          f"of {[round(x, 3) for x in export_times]}")
    print(f"ct_thumbnail.build_thumbnails:     median {statistics.median(thumb_times):.3f} s "
          f"of {[round(x, 3) for x in thumb_times]}")


if __name__ == "__main__":
    main()
