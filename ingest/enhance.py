"""Second pass of the decoder: re-read QR symbols that zxing-cpp *located* but could not decode.

zxing-cpp's ``read_barcodes(..., return_errors=True)`` also returns symbols whose finder patterns
were found but whose error correction failed (``Barcode.valid`` is false), with their position.
On camera frames these are mostly small, blurred or low-contrast codes.  For each of them we cut a
crop around the symbol (half a symbol of margin), upscale it, sharpen it (unsharp mask) and read the
crop again, trying a short, fixed list of enhancement variants until one decodes.

Why this shape (measured, see docs/bench-decode.md): full-frame preprocessing costs several times
the first pass and would be paid on every empty frame; other libraries (pyzbar, OpenCV) read none of
these crops that zxing-cpp could not.  Crops are only made where a symbol was located, and zxing-cpp
located nothing on any of the empty benchmark frames, so empty frames pay nothing for this pass.

Pure Pillow + zxing-cpp (no numpy).  Thread-safety: no shared state; safe from many threads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import zxingcpp
from PIL import Image, ImageFilter, ImageOps

log = logging.getLogger(__name__)

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]

QR_FORMATS = zxingcpp.BarcodeFormat.QRCode

MAX_SYMBOLS = 3
"""At most this many located-but-unread symbols are re-read per frame (bounds the worst case)."""

CROP_MARGIN = 0.5
"""Margin around a located symbol, as a fraction of its side (covers a mis-sized detection)."""

MIN_SIDE_PX = 12
"""Located symbols smaller than this (pixels) are ignored: no enhancement can read them."""

MAX_CROP_PX = 1200
"""Upscaled crops are capped at this many pixels per side, to bound the cost of one variant."""


@dataclass(frozen=True)
class Variant:
    """One enhancement of a crop: upscale factor, unsharp-mask radius (in upscaled pixels) and strength."""

    name: str
    scale: float
    radius: float
    percent: int
    autocontrast: bool = False


VARIANTS: tuple[Variant, ...] = (
    Variant("crop-up3-sharpen", 3.0, 9.0, 150),
    Variant("crop-up2-sharpen-strong", 2.0, 4.0, 300),
)
"""Tried in order, first success wins.  Chosen by measurement on the shared frame set (see
docs/decode.md); each of the first three alone recovers most of what the whole list recovers."""


@dataclass(frozen=True)
class Reread:
    """A symbol read from an enhanced crop: the zxing-cpp result, its corners in frame pixels, the variant."""

    barcode: zxingcpp.Barcode
    corners: Quad
    variant: str


def quad_of(position: zxingcpp.Position) -> Quad:
    """The 4 corners of a zxing-cpp position, clockwise from the symbol's top-left, in pixels."""
    pts = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    return tuple((float(p.x), float(p.y)) for p in pts)  # type: ignore[return-value]


def _centre_side(q: Quad) -> tuple[float, float, float]:
    xs = [p[0] for p in q]
    ys = [p[1] for p in q]
    return sum(xs) / 4.0, sum(ys) / 4.0, max(max(xs) - min(xs), max(ys) - min(ys))


def _overlaps(a: Quad, b: Quad) -> bool:
    """True when the centre of one quad lies inside the middle of the other (same symbol)."""
    ax, ay, aside = _centre_side(a)
    bx, by, bside = _centre_side(b)
    reach = max(aside, bside) / 3
    return abs(ax - bx) < reach and abs(ay - by) < reach


def _near(a: Quad, b: Quad) -> bool:
    """True when the centres of two quads are closer than their larger side (a read of a located symbol)."""
    ax, ay, aside = _centre_side(a)
    bx, by, bside = _centre_side(b)
    return (ax - bx) ** 2 + (ay - by) ** 2 < max(aside, bside) ** 2


def _same(a: Quad, b: Quad) -> bool:
    """True when two detections have nearly the same centre and size (a repeat, not a new guess)."""
    ax, ay, aside = _centre_side(a)
    bx, by, bside = _centre_side(b)
    tol = 0.15 * max(aside, bside)
    return abs(ax - bx) < tol and abs(ay - by) < tol and abs(aside - bside) < tol


def unread_quads(failed: Iterable[zxingcpp.Barcode], read: Sequence[Quad]) -> list[Quad]:
    """Positions worth re-reading: located-but-invalid symbols not on a read code, repeats dropped.

    Overlapping but differently placed detections are all kept (one of them is often better aligned).
    Degenerate positions (smaller than ``MIN_SIDE_PX``) are dropped; at most ``MAX_SYMBOLS`` are kept.
    """
    out: list[Quad] = []
    for b in failed:
        q = quad_of(b.position)
        if _centre_side(q)[2] < MIN_SIDE_PX:
            continue
        if any(_overlaps(q, r) for r in read) or any(_same(q, o) for o in out):
            continue
        out.append(q)
        if len(out) == MAX_SYMBOLS:
            break
    return out


def _enhance(crop: Image.Image, v: Variant) -> tuple[Image.Image, float]:
    scale = min(v.scale, MAX_CROP_PX / max(crop.width, crop.height))
    img = crop
    if scale > 1.0:
        img = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.BICUBIC)
    else:
        scale = 1.0
    if v.autocontrast:
        img = ImageOps.autocontrast(img, cutoff=1)
    img = img.filter(ImageFilter.UnsharpMask(radius=v.radius * scale / v.scale, percent=v.percent, threshold=0))
    return img, scale


def gray_view(img: Image.Image) -> memoryview:
    """A (height, width) byte view of an 8-bit grayscale image, the fastest input zxing-cpp takes.

    (Passing the Pillow image object itself measured about 5 % slower per 1080p frame.)
    """
    return memoryview(img.tobytes()).cast("B", (img.height, img.width))


def reread(gray: Image.Image, quad: Quad) -> list[Reread]:
    """Read the symbol located at ``quad`` from enhanced crops of ``gray``.

    Returns every code the first successful variant read in the crop (the located one among them),
    or ``[]`` if no variant reads a code at ``quad``.
    """
    cx, cy, side = _centre_side(quad)
    half = side / 2 + side * CROP_MARGIN + 8
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(gray.width, int(cx + half) + 1), min(gray.height, int(cy + half) + 1)
    if x1 - x0 < MIN_SIDE_PX or y1 - y0 < MIN_SIDE_PX:
        return []
    crop = gray.crop((x0, y0, x1, y1))
    for v in VARIANTS:
        img, scale = _enhance(crop, v)
        found = [
            Reread(b, tuple((x0 + x / scale, y0 + y / scale) for x, y in quad_of(b.position)), v.name)  # type: ignore[arg-type]
            for b in zxingcpp.read_barcodes(gray_view(img), formats=QR_FORMATS, try_downscale=False)
        ]
        if any(_near(r.corners, quad) for r in found):
            log.debug("re-read a located symbol at (%.0f, %.0f) with %s", cx, cy, v.name)
            return found
    return []


FRAME_SHARPEN = Variant("frame-sharpen", 1.0, 3.0, 250)
"""Last resort, run only on frames where the first pass located a symbol it could not read: the whole
frame, sharpened.  It catches codes located at the wrong size, and degraded neighbours never located."""


def sharpened_frame(gray: Image.Image) -> list[Reread]:
    """Read every code of the whole frame after an unsharp mask (costs several first passes; use sparingly)."""
    v = FRAME_SHARPEN
    img = gray.filter(ImageFilter.UnsharpMask(radius=v.radius, percent=v.percent, threshold=0))
    return [
        Reread(b, quad_of(b.position), v.name)
        for b in zxingcpp.read_barcodes(gray_view(img), formats=QR_FORMATS, try_downscale=False)
    ]
