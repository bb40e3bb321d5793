"""Neuroglancer itself (the client bundled in the `neuroglancer` PyPI package) shows a volume
served by `lodcache serve`: the viewer opens `zarr://BASE/zarr/` (`zarr3://BASE/zarr3/`,
`precomputed://BASE/precomputed/`) in
headless Chromium, the screenshot is taken once every visible chunk is loaded (Neuroglancer's
own screenshot machinery waits for that), saved, and its pixel statistics are checked: the image
area must not be blank.

    python neuroglancer_shot.py BASE_URL zarr|zarr3|precomputed OUT.png

(NODE_PATH must find playwright-core; .ci/neuroglancer-open.js opens the viewer.)
"""

import json
import os
import subprocess
import urllib.request
import sys
import time

import numpy as np


def main(argv):
    base, scheme, out = argv[1].rstrip("/"), argv[2], argv[3]
    import neuroglancer

    # Zoomed to fit level 0 when the axes are in voxels (no voxel size known).
    with urllib.request.urlopen(f"{base}/api/levels") as r:
        levels = json.load(r)
    l0 = levels["levels"][0]
    fit = None
    if levels.get("voxel_size") is None:
        fit = max(l0["width"] / 800, l0["height"] / 600) * 1.05

    neuroglancer.set_server_bind_address("127.0.0.1", 0)
    viewer = neuroglancer.Viewer()
    path = {"zarr": "/zarr/", "zarr3": "/zarr3/", "precomputed": "/precomputed/"}[scheme]
    source = f"{scheme}://{base}{path}"
    with viewer.txn() as s:
        s.layers["ct"] = neuroglancer.ImageLayer(source=source)
        s.layout = "xy"
        # The XY plane of the z, y, x arrays from the start (Neuroglancer shows the first two
        # axes otherwise): in metres when the voxel size is known, else in voxels (which the
        # precomputed `info` gives as 1 nm).
        voxel = levels.get("voxel_size")
        if voxel:
            units, scales = "m", [v * 1e-6 for v in voxel]
        elif scheme == "precomputed":
            units, scales = "m", [1e-9] * 3
        else:
            units, scales = "", [1, 1, 1]
        s.dimensions = neuroglancer.CoordinateSpace(
            names=["x", "y", "z"], units=units, scales=scales
        )
        s.show_default_annotations = False
    here = os.path.dirname(os.path.abspath(__file__))
    browser = subprocess.Popen(
        ["node", os.path.join(here, "neuroglancer-open.js"), viewer.get_viewer_url()],
        stdin=subprocess.PIPE,
    )
    try:
        started = time.monotonic()
        shot = viewer.screenshot(size=[800, 600])
        took = time.monotonic() - started
        # Then zoomed to fit (the first view is Neuroglancer's default zoom).
        if fit:
            with viewer.txn() as s:
                s.cross_section_scale = fit
            shot = viewer.screenshot(size=[800, 600])
    finally:
        browser.stdin.close()
        browser.wait(timeout=30)
    s = shot.screenshot
    with open(out, "wb") as f:
        f.write(s.image)
    pixels = s.image_pixels[..., :3].astype(np.float64)
    gray = pixels.mean(axis=2)
    # The image area: the middle of the canvas (no UI controls are shown in a sized shot).
    h, w = gray.shape
    area = gray[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    lit = float((area > 10).mean())
    distinct = len(np.unique(area.astype(np.uint8)))
    print(
        f"neuroglancer {source}: first complete view (every visible chunk loaded) {took:.1f} s "
        f"after the viewer opened; {w}x{h} image area mean {area.mean():.1f}, std {area.std():.1f}, lit {lit:.0%}, "
        f"{distinct} gray levels -> {out}"
    )
    if area.std() < 5 or lit < 0.05 or distinct < 16:
        print(f"FAIL: the image area of {out} is blank", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
