"""Makes docs/napari.png: a real napari window (Qt, under Xvfb) showing a scan opened with the
lodcache reader.

    pip install pyqt6          # plus ./python[napari]; Debian: xvfb and Qt's xcb libraries
    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1280x1024x24" \\
        python python/tools/napari_screenshot.py SCAN docs/napari.png
"""

from __future__ import annotations

import sys
import time

import napari
from qtpy.QtWidgets import QApplication


def main() -> None:
    scan, out = sys.argv[1], sys.argv[2]
    viewer = napari.Viewer(show=True)
    layers = viewer.open(scan, plugin="lodcache")
    viewer.window.resize(1100, 800)
    viewer.reset_view()
    viewer.dims.set_point(0, layers[0].data[0].shape[0] // 2)
    for _ in range(60):  # let napari load what it shows
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.window.screenshot(out, canvas_only=False, flash=False)
    viewer.close()


if __name__ == "__main__":
    main()
