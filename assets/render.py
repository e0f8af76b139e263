"""Render the SVG sources in this directory into what the installers and the tray need.

    python assets/render.py            # from the repository root, with the gui extra installed

Writes ``png/<name>-<size>.png`` for every SVG and size, ``m6t.ico`` and ``m6t.icns`` for the application
icon, and copies the SVGs into ``m6t/ui/icons/`` so the installed package can draw its tray icons.
Rendering uses the tray's own renderer (:func:`m6t.ui.icons.render_svg`), so what installers ship and what
the tray shows cannot drift apart.  The ICO and ICNS containers are written here rather than by Qt's image
plugins because those write one image per file, and both formats want every size in one file.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ASSETS = Path(__file__).resolve().parent
ROOT = ASSETS.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QBuffer, QIODevice  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage  # noqa: E402

from m6t.ui.icons import APP_ICON, SIZES, render_svg  # noqa: E402

PACKAGE_ICONS = ROOT / "m6t" / "ui" / "icons"

# ICNS chunk types holding PNG data, by pixel size (Apple's iconutil names: icon_16x16 ... icon_512x512@2x).
ICNS_TYPES: tuple[tuple[bytes, int], ...] = (
    (b"icp4", 16),
    (b"ic11", 32),
    (b"icp5", 32),
    (b"ic12", 64),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic13", 256),
    (b"ic08", 256),
    (b"ic14", 512),
    (b"ic09", 512),
    (b"ic10", 1024),
)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def png_bytes(image: QImage) -> bytes:
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, b"PNG"):
        raise RuntimeError("Qt could not encode a PNG")
    return bytes(buffer.data().data())


def ico(pngs: dict[int, bytes]) -> bytes:
    """An ICO holding PNG-compressed entries (read by Windows since Vista, and by Qt)."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = len(header) + 16 * len(pngs)
    entries, blobs = b"", b""
    for size, data in sorted(pngs.items()):
        # A width/height byte of 0 means 256.
        entries += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(data), offset)
        blobs += data
        offset += len(data)
    return header + entries + blobs


def icns(pngs: dict[int, bytes]) -> bytes:
    chunks = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(chunks)) + chunks


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    sources = sorted(ASSETS.glob("*.svg"))
    png_dir = ASSETS / "png"
    png_dir.mkdir(exist_ok=True)
    PACKAGE_ICONS.mkdir(exist_ok=True)
    for source in sources:
        svg = source.read_bytes()
        for size in SIZES:
            (png_dir / f"{source.stem}-{size}.png").write_bytes(png_bytes(render_svg(svg, size)))
        shutil.copyfile(source, PACKAGE_ICONS / source.name)
    app_svg = (ASSETS / f"{APP_ICON}.svg").read_bytes()
    app_pngs = {size: png_bytes(render_svg(app_svg, size)) for size in {*ICO_SIZES, *(s for _, s in ICNS_TYPES)}}
    (ASSETS / f"{APP_ICON}.ico").write_bytes(ico({size: app_pngs[size] for size in ICO_SIZES}))
    (ASSETS / f"{APP_ICON}.icns").write_bytes(icns(app_pngs))
    print(f"rendered {len(sources)} icons at {len(SIZES)} sizes into {png_dir}, {APP_ICON}.ico, {APP_ICON}.icns")
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
