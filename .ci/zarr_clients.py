"""Reads OME-Zarr stores written by lodcache with the clients people use, and compares every
voxel of every level with the pyramid as lodcache's CTHarvester-layout export and the source
TIFFs give it (read with tifffile, no lodcache code).

    python zarr_clients.py STORE SOURCE_DIR CTH_DIR [--clients zarr,tensorstore,ome-zarr]

Each client is one function, so the HTTP checks can reuse them on a served store's URL.
Exits non-zero naming the store, client, level and first differing voxel.
"""

import json
import os
import sys

import numpy as np
import tifffile


def expected_levels(source_dir, cth_dir):
    """Level 0 from the source slices, levels 1.. from the CTHarvester export."""
    names = sorted(n for n in os.listdir(source_dir) if n.lower().endswith((".tif", ".tiff")))
    levels = [np.stack([tifffile.imread(os.path.join(source_dir, n)) for n in names])]
    n = 1
    while cth_dir and os.path.isdir(os.path.join(cth_dir, str(n))):
        d = os.path.join(cth_dir, str(n))
        files = sorted(os.listdir(d))
        levels.append(np.stack([tifffile.imread(os.path.join(d, f)) for f in files]))
        n += 1
    return levels


def zarr_format(store):
    return 2 if os.path.exists(os.path.join(store, ".zgroup")) else 3


def read_zarr_python(store, count):
    import zarr

    group = zarr.open_group(store, mode="r", zarr_format=zarr_format(store))
    return [np.asarray(group[str(n)][...]) for n in range(count)]


def read_tensorstore(store, count):
    import tensorstore as ts

    driver = "zarr" if zarr_format(store) == 2 else "zarr3"
    out = []
    for n in range(count):
        spec = {
            "driver": driver,
            "kvstore": {"driver": "file", "path": os.path.join(os.path.abspath(store), str(n))},
        }
        out.append(ts.open(spec, read=True).result().read().result())
    return out


def read_ome_zarr(store, count):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    location = parse_url(store, mode="r")
    if location is None:
        raise RuntimeError("ome-zarr did not recognise the store")
    nodes = list(Reader(location)())
    image = nodes[0]
    data = image.data
    if len(data) != count:
        raise RuntimeError(f"ome-zarr sees {len(data)} levels, expected {count}")
    meta = image.metadata
    axes = [a["name"] if isinstance(a, dict) else a for a in meta.get("axes", [])]
    if axes and axes != ["z", "y", "x"]:
        raise RuntimeError(f"ome-zarr axes {axes}")
    return [np.asarray(d) for d in data]


CLIENTS = {
    "zarr": read_zarr_python,
    "tensorstore": read_tensorstore,
    "ome-zarr": read_ome_zarr,
}


def compare(store, client, levels, want):
    for n, (got, exp) in enumerate(zip(levels, want)):
        if got.shape != exp.shape or got.dtype != exp.dtype:
            return f"{store}: {client}: level {n} is {got.shape} {got.dtype}, expected {exp.shape} {exp.dtype}"
        if not np.array_equal(got, exp):
            at = tuple(int(i) for i in np.argwhere(got != exp)[0])
            return f"{store}: {client}: level {n} differs at {at}: {got[at]} != {exp[at]}"
    return None


def main(argv):
    store, source_dir, cth_dir = argv[1:4]
    clients = list(CLIENTS)
    if "--clients" in argv:
        clients = argv[argv.index("--clients") + 1].split(",")
    want = expected_levels(source_dir, cth_dir)
    failures = []
    for client in clients:
        try:
            levels = CLIENTS[client](store, len(want))
        except Exception as e:  # a client that cannot read the store is a failure, named
            failures.append(f"{store}: {client}: {type(e).__name__}: {e}")
            continue
        problem = compare(store, client, levels, want)
        if problem:
            failures.append(problem)
        else:
            shapes = " ".join("x".join(map(str, l.shape)) for l in levels)
            print(f"ok {client:12} {os.path.basename(store)}: {shapes}")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
