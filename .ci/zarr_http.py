"""Reads the stores a running `lodcache serve` answers over HTTP with the clients people use,
and compares every voxel of every level with the pyramid as the source TIFFs (level 0) and
lodcache's CTHarvester-layout export (levels 1..) give it (read with tifffile, no lodcache
code):

    python zarr_http.py BASE_URL SOURCE_DIR CTH_DIR

- /zarr/ (Zarr v2, OME-NGFF 0.4): ome-zarr-py's Reader, zarr-python 3 (fsspec HTTP),
  tensorstore's zarr driver;
- /zarr3/ (Zarr v3, OME-Zarr 0.5): zarr-python 3, tensorstore's zarr3 driver;
- /precomputed/: tensorstore's neuroglancer_precomputed driver.

Exits non-zero naming the store, client, level and first differing voxel.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zarr_clients import compare, expected_levels  # noqa: E402


def zarr_python(url, zarr_format, count):
    import zarr

    group = zarr.open_group(url, mode="r", zarr_format=zarr_format)
    return [np.asarray(group[str(n)][...]) for n in range(count)]


def tensorstore_zarr(url, driver, count):
    import tensorstore as ts

    out = []
    for n in range(count):
        spec = {"driver": driver, "kvstore": f"{url}{n}/"}
        out.append(ts.open(spec, read=True).result().read().result())
    return out


def tensorstore_precomputed(url, count):
    import tensorstore as ts

    out = []
    for n in range(count):
        spec = {
            "driver": "neuroglancer_precomputed",
            "kvstore": url,
            "scale_index": n,
        }
        a = ts.open(spec, read=True).result().read().result()
        # x, y, z, channel -> z, y, x
        out.append(np.ascontiguousarray(np.asarray(a)[..., 0].transpose(2, 1, 0)))
    return out


def ome_zarr_reader(url, count):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    location = parse_url(url, mode="r")
    if location is None:
        raise RuntimeError("ome-zarr did not recognise the store")
    nodes = list(Reader(location)())
    image = nodes[0]
    if len(image.data) != count:
        raise RuntimeError(f"ome-zarr sees {len(image.data)} levels, expected {count}")
    axes = [a["name"] if isinstance(a, dict) else a for a in image.metadata.get("axes", [])]
    if axes and axes != ["z", "y", "x"]:
        raise RuntimeError(f"ome-zarr axes {axes}")
    return [np.asarray(d) for d in image.data]


def main(argv):
    base, source_dir, cth_dir = argv[1:4]
    base = base.rstrip("/") + "/"
    want = expected_levels(source_dir, cth_dir)
    n = len(want)
    v2, v3, pre = base + "zarr/", base + "zarr3/", base + "precomputed/"
    readers = [
        ("/zarr/", "ome-zarr", lambda: ome_zarr_reader(v2, n)),
        ("/zarr/", "zarr-python", lambda: zarr_python(v2, 2, n)),
        ("/zarr/", "tensorstore-zarr", lambda: tensorstore_zarr(v2, "zarr", n)),
        ("/zarr3/", "zarr-python", lambda: zarr_python(v3, 3, n)),
        ("/zarr3/", "tensorstore-zarr3", lambda: tensorstore_zarr(v3, "zarr3", n)),
        ("/precomputed/", "tensorstore-precomputed", lambda: tensorstore_precomputed(pre, n)),
    ]
    failures = []
    for store, client, read in readers:
        what = f"{os.path.basename(source_dir.rstrip('/'))} {store}"
        try:
            levels = read()
        except Exception as e:  # a client that cannot read the store is a failure, named
            failures.append(f"{what}: {client}: {type(e).__name__}: {e}")
            continue
        problem = compare(what, client, levels, want)
        if problem:
            failures.append(problem)
        else:
            shapes = " ".join("x".join(map(str, l.shape)) for l in levels)
            print(f"ok {client:24} {what}: {shapes}")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
