"""The icon set: one per state, packaged copies in step with the sources, renders and containers sound."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from PySide6.QtGui import QImageReader
from pytestqt.qtbot import QtBot

from m6t.ui.icons import APP_ICON, ICON_FILES, SIZES, render_svg, state_icon, svg_source
from m6t.ui.state import TrayState

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def test_every_state_has_an_icon() -> None:
    assert set(ICON_FILES) == set(TrayState)
    assert len(set(ICON_FILES.values())) == len(TrayState), "two states must never look the same"


@pytest.mark.parametrize("name", [*ICON_FILES.values(), APP_ICON])
def test_packaged_svg_is_the_asset_source(name: str) -> None:
    # assets/render.py copies the sources into the package; editing one without re-rendering is caught here.
    assert svg_source(name) == (ASSETS / f"{name}.svg").read_bytes()


@pytest.mark.parametrize("name", [*ICON_FILES.values(), APP_ICON])
def test_rendered_pngs_exist_for_every_size(name: str) -> None:
    for size in SIZES:
        reader = QImageReader(str(ASSETS / "png" / f"{name}-{size}.png"))
        image = reader.read()
        assert (image.width(), image.height()) == (size, size), reader.errorString()


def test_render_draws_opaque_pixels_and_transparent_corners(qtbot: QtBot) -> None:
    for name in ICON_FILES.values():
        image = render_svg(svg_source(name), 32)
        assert image.pixelColor(16, 8).alpha() == 255, name
        assert image.pixelColor(0, 0).alpha() == 0, name


def test_state_icons_offer_every_size(qtbot: QtBot) -> None:
    for state in TrayState:
        sizes = {(s.width(), s.height()) for s in state_icon(state).availableSizes()}
        assert {(n, n) for n in SIZES} <= sizes


def test_ico_holds_every_size_up_to_256() -> None:
    data = (ASSETS / "m6t.ico").read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind) == (0, 1)
    sizes = {struct.unpack_from("<B", data, 6 + 16 * i)[0] or 256 for i in range(count)}
    assert sizes == {16, 24, 32, 48, 64, 128, 256}
    assert QImageReader(str(ASSETS / "m6t.ico")).imageCount() == count


def test_icns_chunks_are_consistent(qtbot: QtBot) -> None:
    data = (ASSETS / "m6t.icns").read_bytes()
    assert data[:4] == b"icns"
    assert struct.unpack_from(">I", data, 4)[0] == len(data)
    offset, kinds = 8, []
    while offset < len(data):
        kind, length = data[offset : offset + 4], struct.unpack_from(">I", data, offset + 4)[0]
        assert data[offset + 8 : offset + 16] == b"\x89PNG\r\n\x1a\n"
        kinds.append(kind)
        offset += length
    assert offset == len(data)
    assert {b"icp4", b"ic07", b"ic08", b"ic09", b"ic10"} <= set(kinds)
    assert QImageReader(str(ASSETS / "m6t.icns")).canRead()
