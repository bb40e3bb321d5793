"""A drop-in for CTHarvester's ``ct_thumbnail`` Rust module, built on lodcache.

``build_thumbnails(input_dir, py_progress_cb=None, prefix=None, file_type=None,
seq_begin=None, seq_end=None, index_length=None) -> None`` writes the thumbnail pyramid that
CTHarvester reads, ``<input_dir>/.thumbnail/<n>/<i:06>.tif`` (n from 1, i from 0), as
uncompressed single-page TIFFs of the source's sample type, with CTHarvester's level rule
(halve while the width or the height exceeds 500 pixels).

- The stack: when all five pattern arguments are given, exactly the files
  ``f"{prefix}{seq:0{index_length}d}.{file_type}"`` for ``seq`` in ``seq_begin..=seq_end`` that
  exist; otherwise the folder's image files as lodcache finds them.
- ``py_progress_cb(percent)`` gets a float: 0.0 first, 100.0 last, at least once per percent
  of the work in between, always on the calling thread, with the GIL released between calls.
  Returning ``False`` stops the build within one slice of work; it then returns None without
  the final 100.0 call and leaves only complete files (the level folders are replaced only
  when a build finishes). A later call resumes from the cache and finishes. Any other return
  value (None included) goes on. An exception raised by the callback stops the build the same
  way and is re-raised.
- Returns None on success; raises ``OSError`` for I/O failures, ``ValueError`` (or
  ``lodcache.StackError``, a ``ValueError``) for bad arguments and stacks that cannot be read.

Differences from CTHarvester's module (see the README, "ct_thumbnail"): each voxel is the
exact 2x2x2 mean rounded half up, ``(sum + 4) >> 3``, where CTHarvester rounds twice (from
the same level below, values differ by at most 1); an odd last slice is averaged alone instead of being dropped, so a level
has ``ceil(depth / 2)`` files; an exception from the callback is re-raised instead of
swallowed; the build goes through lodcache's cache folder (``<input_dir>/.lodcache``), so
opening the scan later with lodcache is instant.
"""

from lodcache._lodcache import build_thumbnails

__all__ = ["build_thumbnails"]
