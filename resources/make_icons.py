"""Draw Potluck's icon set with QPainter and write every file the packages need.

Run from anywhere:  python resources/make_icons.py   (needs PySide6; no display: it uses the offscreen platform)

Writes, next to this script:
  icons/potluck-<size>.png           the app icon (a lidded pot)
  icons/potluck-<state>-<size>.png   one per tray state: the pot with a state badge in the bottom-right corner
  potluck.svg                        the app icon as a vector (Linux hicolor "scalable")
  potluck.ico                        Windows, PNG-compressed entries 16..256
  potluck.icns                       macOS, PNG entries 16..1024

Everything is drawn on a 256-unit canvas and scaled. Sizes up to 24 px use a simplified glyph (no highlight,
thicker outline, bigger badge) so that the pot and the badge stay readable in a 16 px tray.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, QRectF, QSize, Qt  # noqa: E402
from PySide6.QtGui import QBrush, QColor, QGuiApplication, QImage, QPainter, QPainterPath, QPen  # noqa: E402
from PySide6.QtSvg import QSvgGenerator  # noqa: E402

SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
STATES = ("serving", "paused", "draining", "starting", "error")
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# icns element type -> pixel size of the PNG it holds (the @2x types reuse the bigger renderings)
ICNS_TYPES = (
    (b"icp4", 16), (b"icp5", 32), (b"icp6", 64), (b"ic07", 128), (b"ic08", 256), (b"ic09", 512),
    (b"ic10", 1024), (b"ic11", 32), (b"ic12", 64), (b"ic13", 256), (b"ic14", 512),
)
# PySide6 6.12.0 on Python < 3.12 drops a reference to None on every call of a method that returns nothing (None
# became immortal only in 3.12), and the interpreter aborts once None's count reaches zero. Drawing the whole set
# makes a few thousand such calls, so hold spare references to None in a list that is deliberately never freed
# (not even at interpreter exit, when the debt would otherwise come due).
if sys.version_info < (3, 12):
    import ctypes

    _spare_none_refs = [None] * 200_000
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_spare_none_refs))
CANVAS = 256.0
SMALL_MAX_PX = 24  # at or below this size the simplified glyph is drawn

OUTLINE = QColor("#4a2510")
POT_COLOURS = {  # body, lid, rim/knob
    "warm": (QColor("#e8772e"), QColor("#f5a04f"), QColor("#c25a17")),
    "grey": (QColor("#9a9a9a"), QColor("#c2c2c2"), QColor("#7a7a7a")),
}


@dataclass(frozen=True)
class Badge:
    colour: str
    glyph: str  # play | pause | down | arc | bang
    grey_pot: bool = False


BADGES = {
    "serving": Badge("#23a04a", "play"),
    "paused": Badge("#d98e04", "pause", grey_pot=True),
    "draining": Badge("#1479b8", "down"),
    "starting": Badge("#6b7280", "arc"),
    "error": Badge("#d93025", "bang"),
}


def _pot_paths(small: bool) -> dict[str, QPainterPath]:
    """The pot's parts in canvas units; the small variant has chunkier handles and knob."""
    parts: dict[str, QPainterPath] = {}
    knob = QPainterPath()
    knob_r = 22 if small else 16
    knob.addEllipse(QPointF(128, 50), knob_r, knob_r)
    parts["knob"] = knob

    lid = QPainterPath()
    lid.moveTo(46, 102)
    lid.cubicTo(54, 52, 202, 52, 210, 102)
    lid.closeSubpath()
    parts["lid"] = lid

    body = QPainterPath()
    body.moveTo(40, 120)
    body.lineTo(216, 120)
    body.lineTo(210, 178)
    body.cubicTo(206, 212, 186, 230, 154, 230)
    body.lineTo(102, 230)
    body.cubicTo(70, 230, 50, 212, 46, 178)
    body.closeSubpath()
    parts["body"] = body

    handles = QPainterPath()
    top, height = (124, 38) if small else (130, 26)
    handles.addRoundedRect(QRectF(4, top, 48, height), height / 2, height / 2)
    handles.addRoundedRect(QRectF(204, top, 48, height), height / 2, height / 2)
    parts["handles"] = handles

    rim = QPainterPath()
    rim.addRoundedRect(QRectF(22, 94, 212, 32), 16, 16)
    parts["rim"] = rim
    return parts


def _draw_pot(p: QPainter, size: int, grey: bool) -> None:
    small = size <= SMALL_MAX_PX
    body_c, lid_c, rim_c = POT_COLOURS["grey" if grey else "warm"]
    px = CANVAS / size  # one device pixel in canvas units
    parts = _pot_paths(small)
    order = (("handles", rim_c), ("body", body_c), ("lid", lid_c), ("knob", rim_c), ("rim", rim_c))
    if small:
        # Outline only the silhouette: inner lines would turn a 16 px lid and rim into a brown smudge.
        silhouette = QPainterPath()
        for name, _ in order:
            silhouette = silhouette.united(parts[name])
        outline = QPen(OUTLINE, 2 * px * 0.8)
        outline.setJoinStyle(Qt.RoundJoin)
        p.setPen(outline)
        p.setBrush(OUTLINE)
        p.drawPath(silhouette)
        p.setPen(Qt.NoPen)
    else:
        pen = QPen(OUTLINE, max(7.0, px * 1.1))
        pen.setJoinStyle(Qt.RoundJoin)
        p.setPen(pen)
    for name, colour in order:
        p.setBrush(colour)
        p.drawPath(parts[name])
    if not small:  # a soft highlight on the body's left side
        shine = QPainterPath()
        shine.moveTo(68, 142)
        shine.cubicTo(66, 176, 74, 196, 92, 208)
        p.setPen(QPen(QColor(255, 255, 255, 110), 12, Qt.SolidLine, Qt.RoundCap))
        p.setBrush(Qt.NoBrush)
        p.drawPath(shine)


def _draw_badge(p: QPainter, size: int, badge: Badge) -> None:
    small = size <= SMALL_MAX_PX
    cx, cy, r = (182.0, 182.0, 74.0) if small else (196.0, 196.0, 56.0)
    gap = max(12.0, CANVAS / size * 1.2)  # transparent ring that separates badge from pot
    p.save()
    p.setCompositionMode(QPainter.CompositionMode_Clear)
    p.setPen(Qt.NoPen)
    p.setBrush(QColor(0, 0, 0))
    p.drawEllipse(QPointF(cx, cy), r + gap, r + gap)
    p.restore()
    p.setPen(Qt.NoPen)
    p.setBrush(QColor(badge.colour))
    p.drawEllipse(QPointF(cx, cy), r, r)

    white = QColor("#ffffff")
    u = r / 10.0  # glyph unit: the badge is 20 u across
    if badge.glyph == "play":
        tri = QPainterPath()
        tri.moveTo(cx - 3.2 * u, cy - 5.2 * u)
        tri.lineTo(cx + 5.6 * u, cy)
        tri.lineTo(cx - 3.2 * u, cy + 5.2 * u)
        tri.closeSubpath()
        p.setBrush(white)
        p.drawPath(tri)
    elif badge.glyph == "pause":
        p.setBrush(white)
        p.drawRect(QRectF(cx - 4.6 * u, cy - 5.2 * u, 3.4 * u, 10.4 * u))
        p.drawRect(QRectF(cx + 1.2 * u, cy - 5.2 * u, 3.4 * u, 10.4 * u))
    elif badge.glyph == "down":
        arrow = QPainterPath()
        arrow.moveTo(cx - 1.8 * u, cy - 6.0 * u)
        arrow.lineTo(cx + 1.8 * u, cy - 6.0 * u)
        arrow.lineTo(cx + 1.8 * u, cy - 0.2 * u)
        arrow.lineTo(cx + 5.4 * u, cy - 0.2 * u)
        arrow.lineTo(cx, cy + 6.2 * u)
        arrow.lineTo(cx - 5.4 * u, cy - 0.2 * u)
        arrow.lineTo(cx - 1.8 * u, cy - 0.2 * u)
        arrow.closeSubpath()
        p.setBrush(white)
        p.drawPath(arrow)
    elif badge.glyph == "arc":  # three quarters of a ring: "working on it"
        p.setBrush(Qt.NoBrush)
        p.setPen(QPen(white, 3.0 * u, Qt.SolidLine, Qt.RoundCap if not small else Qt.FlatCap))
        rr = 4.8 * u
        p.drawArc(QRectF(cx - rr, cy - rr, 2 * rr, 2 * rr), 90 * 16, 270 * 16)
    elif badge.glyph == "bang":
        p.setBrush(white)
        p.drawRoundedRect(QRectF(cx - 1.7 * u, cy - 6.4 * u, 3.4 * u, 8.2 * u), 1.0 * u, 1.0 * u)
        p.drawRect(QRectF(cx - 1.7 * u, cy + 3.2 * u, 3.4 * u, 3.2 * u))
    else:
        raise ValueError(f"unknown badge glyph {badge.glyph!r}")


def paint_icon(p: QPainter, size: int, state: str | None) -> None:
    """Paint one icon for a `size`-pixel target; `p` must already map the 256-unit canvas onto the target."""
    p.setRenderHint(QPainter.Antialiasing, True)
    badge = BADGES[state] if state else None
    _draw_pot(p, size, grey=bool(badge and badge.grey_pot))
    if badge:
        _draw_badge(p, size, badge)


def render(size: int, state: str | None) -> QImage:
    image = QImage(QSize(size, size), QImage.Format_ARGB32_Premultiplied)
    image.fill(Qt.transparent)
    p = QPainter(image)
    p.scale(size / CANVAS, size / CANVAS)
    paint_icon(p, size, state)
    p.end()
    return image


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.WriteOnly)
    if not image.save(buf, "PNG"):
        raise RuntimeError("Qt could not encode a PNG")
    buf.close()
    return bytes(data)


def ico_container(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico holding PNG-compressed images (supported since Vista); a 256 px entry is written as 0."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    directory, blobs = b"", b""
    for s in sizes:
        blob = pngs[s]
        dim = 0 if s >= 256 else s
        directory += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(blob), offset)
        offset += len(blob)
        blobs += blob
    return header + directory + blobs


def icns_container(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns: 'icns', total length, then (type, length incl. 8-byte header, PNG data) elements."""
    elements = b"".join(t + struct.pack(">I", 8 + len(pngs[s])) + pngs[s] for t, s in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(elements)) + elements


def write_svg(path: Path) -> None:
    gen = QSvgGenerator()
    gen.setFileName(str(path))
    gen.setSize(QSize(256, 256))
    gen.setViewBox(QRectF(0, 0, CANVAS, CANVAS))
    gen.setTitle("Potluck")
    gen.setDescription("Potluck app icon")
    p = QPainter(gen)
    paint_icon(p, 256, None)
    p.end()
    # Qt writes the size in millimetres; icon themes expect plain pixel units.
    text = path.read_text(encoding="utf-8")
    text = re.sub(r'<svg width="[^"]*" height="[^"]*"', '<svg width="256" height="256"', text, count=1)
    path.write_text(text, encoding="utf-8")


def main(out_dir: Path | None = None) -> int:
    out_dir = out_dir or Path(__file__).resolve().parent
    icons = out_dir / "icons"
    icons.mkdir(parents=True, exist_ok=True)
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - fonts/painting need one
    written = 0
    for size in SIZES:
        if not render(size, None).save(str(icons / f"potluck-{size}.png")):
            raise RuntimeError(f"could not write potluck-{size}.png")
        written += 1
        for state in STATES:
            if not render(size, state).save(str(icons / f"potluck-{state}-{size}.png")):
                raise RuntimeError(f"could not write potluck-{state}-{size}.png")
            written += 1
    app_pngs = {s: png_bytes(render(s, None)) for s in sorted(set(ICO_SIZES) | {s for _, s in ICNS_TYPES})}
    (out_dir / "potluck.ico").write_bytes(ico_container({s: app_pngs[s] for s in ICO_SIZES}))
    (out_dir / "potluck.icns").write_bytes(icns_container(app_pngs))
    write_svg(out_dir / "potluck.svg")
    print(f"wrote {written} PNGs to {icons}, plus potluck.ico, potluck.icns and potluck.svg in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
