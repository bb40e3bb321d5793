"""The lazy levels work as dask arrays and as napari's multiscale data; the napari reader
(npe2 manifest) opens a scan folder as one lazy multiscale layer, tested headless."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lodcache

from conftest import read_stack, reference_pyramid


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    lodcache.write_phantom(tmp_path / "scan", (33, 120, 90), dtype="uint16", seed=9)
    return tmp_path / "scan"


def test_dask_from_array_reads_lazily_and_right(scan: Path, tmp_path: Path) -> None:
    da = pytest.importorskip("dask.array")
    pyr = lodcache.Pyramid(scan, cache_dir=tmp_path / "cache", edge=20)
    ref = reference_pyramid(read_stack(scan), len(pyr))
    lazy = da.from_array(pyr[1], chunks=(4, 32, 32))
    assert lazy.shape == ref[1].shape and lazy.dtype == ref[1].dtype
    assert pyr.stats()["generated"] == 0  # nothing read yet
    np.testing.assert_array_equal(lazy.compute(), ref[1])
    np.testing.assert_array_equal(lazy[3:9:2, ::3, 5].compute(), ref[1][3:9:2, ::3, 5])
    assert float(lazy.mean().compute()) == pytest.approx(float(ref[1].mean()))
    # A dask array of every level, as multiscale tools build it.
    pyramid = [da.from_array(pyr[level]) for level in range(len(pyr))]
    for level, arr in enumerate(pyramid):
        np.testing.assert_array_equal(arr[-1].compute(), ref[level][-1])


def test_napari_multiscale_image_accepts_the_levels(scan: Path, tmp_path: Path) -> None:
    pytest.importorskip("napari")
    from napari.layers import Image

    pyr = lodcache.Pyramid(scan, cache_dir=tmp_path / "cache", edge=20)
    layer = Image([pyr[level] for level in range(len(pyr))], multiscale=True,
                  contrast_limits=[0, 65535])
    assert layer.multiscale and len(layer.data) == len(pyr)
    assert layer.level_shapes.tolist() == [list(lvl.shape) for lvl in pyr.levels]


def test_npe2_validates_the_manifest() -> None:
    pytest.importorskip("npe2")
    npe2 = shutil.which("npe2") or str(Path(sys.executable).parent / "npe2")
    out = subprocess.run([npe2, "validate", "lodcache"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in (out.stdout + out.stderr).lower()


def test_the_reader_gives_a_lazy_multiscale_layer(scan: Path) -> None:
    pytest.importorskip("napari")
    from napari.components import ViewerModel
    from npe2 import PluginManager

    # napari.Viewer discovers plugins when it starts; the Qt-free ViewerModel does not.
    PluginManager.instance().discover()
    viewer = ViewerModel()
    layers = viewer.open(str(scan), plugin="lodcache")
    assert len(layers) == 1
    layer = layers[0]
    pyr = lodcache.Pyramid(scan)
    assert layer.multiscale
    assert [tuple(d.shape) for d in layer.data] == [lvl.shape for lvl in pyr.levels]
    assert all(isinstance(d, lodcache.LevelArray) for d in layer.data)
    assert layer.name == "scan"
    ref = reference_pyramid(read_stack(scan), len(pyr))
    lo, hi = np.percentile(ref[-1], [0.5, 99.5])
    assert layer.contrast_limits == pytest.approx([lo, hi])
    assert list(layer.scale) == [1.0, 1.0, 1.0]
    # What napari shows is read through the pyramid: the coarsest level's data is right.
    np.testing.assert_array_equal(np.asarray(layer.data[-1]), ref[-1])
    # With a scanner log beside the slices, the layer's scale is its voxel size in µm.
    (scan / "scan_rec.log").write_text("[Reconstruction]\nPixel Size (um)=12.5\n")
    (layer,) = ViewerModel().open(str(scan), plugin="lodcache")
    assert list(layer.scale) == pytest.approx([12.5, 12.5, 12.5])


def test_the_reader_declines_what_is_not_a_folder(tmp_path: Path) -> None:
    from lodcache._napari import get_reader

    (tmp_path / "file.tif").write_bytes(b"")
    assert get_reader(str(tmp_path / "file.tif")) is None
    assert get_reader([str(tmp_path), str(tmp_path)]) is None
    assert get_reader(str(tmp_path)) is not None
