"""The converters users run today, making the same OME-Zarr pyramid as
`lodcache export --format ome-zarr`, for .ci/zarr-export-bench: the source TIFFs read by
tifffile into one array, then the converter writes level 0 and LEVELS levels of 2 x 2 x 2 means
(Zarr v3, OME-Zarr 0.5, CHUNK chunks, zstd level 1 or uncompressed).

    python converters_export.py TOOL SCAN OUT.zarr LEVELS CHUNK COMPRESSION(zstd|none)
    python converters_export.py compare REFERENCE.zarr OTHER.zarr

TOOL is `ngff-zarr` (to_multiscales with the dask bin-shrink method, which is the box mean,
then to_ngff_zarr) or `ome-zarr` (ome-zarr-py's write_image with the local-mean method and
scale factors on z, y and x). Prints what it wrote and the time spent reading the TIFFs.
`compare` reads every level of two stores (the paths of their OME multiscales, else "0",
"1", ...) and prints, per level, how many voxels differ from the reference and by how much.
"""

import os
import sys
import time

import numpy as np
import tifffile


def read_stack(scan):
    names = sorted(n for n in os.listdir(scan) if n.lower().endswith((".tif", ".tiff")))
    if not names:
        raise SystemExit(f"no TIFF slices in {scan!r}")
    first = tifffile.imread(os.path.join(scan, names[0]))
    stack = np.empty((len(names), *first.shape), dtype=first.dtype)
    stack[0] = first
    for z, name in enumerate(names[1:], start=1):
        stack[z] = tifffile.imread(os.path.join(scan, name))
    return stack


def ngff_zarr_export(stack, out, levels, chunk, compression):
    import ngff_zarr as nz
    from zarr.codecs import ZstdCodec

    image = nz.to_ngff_image(stack, dims=["z", "y", "x"])
    multiscales = nz.to_multiscales(
        image,
        scale_factors=[2**n for n in range(1, levels + 1)],
        method=nz.Methods.DASK_BIN_SHRINK,
        chunks=chunk[0] if len(set(chunk)) == 1 else tuple(chunk),
    )
    kwargs = {}
    if compression == "zstd":
        kwargs["compressors"] = [ZstdCodec(level=1)]
    else:
        kwargs["compressors"] = None
    nz.to_ngff_zarr(out, multiscales, version="0.5", **kwargs)
    return len(multiscales.images)


def ome_zarr_export(stack, out, levels, chunk, compression):
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.scale import Methods
    from ome_zarr.writer import write_image
    from zarr.codecs import ZstdCodec

    root = zarr.open_group(out, mode="w", zarr_format=3)
    options = {"chunks": tuple(chunk)}
    options["compressors"] = [ZstdCodec(level=1)] if compression == "zstd" else None
    factors = [{"z": 2**n, "y": 2**n, "x": 2**n} for n in range(1, levels + 1)]
    datasets = write_image(
        stack,
        root,
        scale_factors=factors,
        method=Methods.LOCAL_MEAN,
        fmt=FormatV05(),
        axes="zyx",
        storage_options=options,
    )
    return levels + 1 if datasets is not None else levels + 1


def levels_of(store):
    """The level arrays of a store: its OME multiscales' datasets, else the arrays "0", "1",
    ... (tensorstore's store has no group metadata)."""
    import zarr

    try:
        group = zarr.open_group(store, mode="r")
        ome = dict(group.attrs).get("ome", dict(group.attrs))
        datasets = ome["multiscales"][0]["datasets"]
        return [group[d["path"]] for d in datasets]
    except (zarr.errors.GroupNotFoundError, KeyError):
        arrays = []
        while os.path.isdir(os.path.join(store, str(len(arrays)))):
            arrays.append(zarr.open_array(os.path.join(store, str(len(arrays))), mode="r"))
        return arrays


def compare(reference, other):
    """Voxel-for-voxel comparison, level by level, in slabs of 64 slices (a whole level 0 of
    a 2 GiB scan as int64 twice would not fit in memory)."""
    for n, (a, b) in enumerate(zip(levels_of(reference), levels_of(other))):
        if a.shape != b.shape:
            print(f"{other}: level {n} is {b.shape}, the reference's is {a.shape}")
            continue
        differ = worst = total = 0
        size = 0
        for z in range(0, a.shape[0], 64):
            d = b[z : z + 64].astype(np.int64) - a[z : z + 64].astype(np.int64)
            nonzero = int(np.count_nonzero(d))
            differ += nonzero
            if nonzero:
                worst = max(worst, int(np.abs(d).max()))
            total += int(d.sum())
            size += d.size
        print(
            f"{os.path.basename(other)}: level {n}: {differ} of {size} voxels differ "
            f"(largest {worst}, mean difference {total / size:+.3f})"
        )


def main(argv):
    if len(argv) == 4 and argv[1] == "compare":
        return compare(argv[2], argv[3])
    if len(argv) != 7:
        raise SystemExit(__doc__)
    tool, scan, out, levels, chunk, compression = argv[1:]
    levels = int(levels)
    chunk = [int(c) for c in chunk.split(",")]
    if compression not in ("zstd", "none"):
        raise SystemExit(f"compression {compression!r}: use zstd or none")
    started = time.perf_counter()
    stack = read_stack(scan)
    read = time.perf_counter() - started
    export = {"ngff-zarr": ngff_zarr_export, "ome-zarr": ome_zarr_export}.get(tool)
    if export is None:
        raise SystemExit(f"tool {tool!r}: use ngff-zarr or ome-zarr")
    written = export(stack, out, levels, chunk, compression)
    print(f"{tool} wrote {written} levels of {stack.shape} to {out} (TIFFs read in {read:.2f} s)")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
