"""The tensorstore way to make the same OME-Zarr pyramid, for .ci/zarr-export-bench: the source
TIFFs (tifffile) written to a Zarr v3 array by tensorstore, 64 slices at a time, then each level
from the one below with tensorstore's `downsample` driver (method "mean", which rounds half to
even where lodcache rounds half up), same chunks and compression.

    python tensorstore_export.py SCAN OUT.zarr LEVELS CHUNK COMPRESSION(zstd|none)
"""

import os
import sys

import numpy as np
import tensorstore as ts
import tifffile


def create(path, shape, dtype, chunk, compression):
    codecs = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if compression == "zstd":
        codecs.append({"name": "zstd", "configuration": {"level": 1, "checksum": False}})
    return ts.open(
        {
            "driver": "zarr3",
            "kvstore": {"driver": "file", "path": path},
            "metadata": {
                "shape": list(shape),
                "data_type": dtype,
                "chunk_grid": {
                    "name": "regular",
                    "configuration": {"chunk_shape": [min(c, s) for c, s in zip(chunk, shape)]},
                },
                "codecs": codecs,
            },
            "create": True,
            "delete_existing": True,
        }
    ).result()


def main(argv):
    scan, out, levels, chunk, compression = argv[1], argv[2], int(argv[3]), argv[4], argv[5]
    chunk = [int(c) for c in chunk.split(",")]
    names = sorted(n for n in os.listdir(scan) if n.lower().endswith((".tif", ".tiff")))
    first = tifffile.imread(os.path.join(scan, names[0]))
    shape = (len(names), *first.shape)
    dtype = {"uint16": "uint16", "uint8": "uint8"}[str(first.dtype)]
    base = create(os.path.join(out, "0"), shape, dtype, chunk, compression)
    step = chunk[0]
    for z in range(0, len(names), step):
        block = np.stack([tifffile.imread(os.path.join(scan, n)) for n in names[z : z + step]])
        base[z : z + len(block)].write(block).result()
    src = base
    for n in range(1, levels + 1):
        down = ts.downsample(src, [2, 2, 2], "mean")
        dst = create(os.path.join(out, str(n)), down.shape, dtype, chunk, compression)
        for z in range(0, down.shape[0], step):
            end = min(z + step, down.shape[0])
            dst[z:end].write(down[z:end]).result()
        src = dst
    print(f"tensorstore wrote {levels + 1} levels of {shape} to {out}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
