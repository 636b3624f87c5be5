"""Decoding core: image bytes -> the QR codes in them.

``decode_frame(data)`` validates the bytes (size, format, header dimensions -- *before* any pixel is
decoded, so a decompression bomb costs nothing), decodes the pixels to grayscale and reads every
QR code in the frame.  A frame without a code is a normal, empty result; bad input raises a
:class:`~ingest.errors.BadImage` subclass naming what was wrong.

Strategy (chosen by measurement, see docs/decode.md and docs/bench-decode.md):

1. Pillow decodes the frame straight to 8-bit grayscale (JPEG draft mode: libjpeg skips the colour
   conversion);
2. zxing-cpp reads the whole frame once (QR only, no down-scaled re-scans: they read nothing more on
   camera frames and cost a quarter of the pass) and also reports symbols it located but could not
   decode;
3. only for those located-but-unread symbols, :mod:`ingest.enhance` re-reads an upscaled, sharpened
   crop, then the whole frame is sharpened and read once more (a frame with one degraded code often
   holds others too blurred to be located).
   Empty frames -- most of a camera's traffic -- never reach step 3 (nothing is located on them).

Needs only Pillow and zxing-cpp (no numpy, no OpenCV).

Thread-safety: ``decode_frame`` keeps no state; it is safe to call from many threads.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from dataclasses import dataclass

import zxingcpp
from PIL import Image

from ingest import enhance
from ingest.errors import (
    EmptyImage,
    NotAnImage,
    TooManyBytes,
    TooManyPixels,
    TruncatedImage,
    UnsupportedFormat,
)

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 4_400_000
"""Largest accepted image: the 6 MB Lambda sync payload less base64 overhead (4/3) and JSON framing.
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"""

MAX_SIDE = 8192
"""Longest accepted width or height (zxing-cpp refuses sides over 65 535; no camera sends a 1-pixel-wide strip)."""

MAX_PIXELS = 4096 * 3072
"""Largest accepted width x height (12.6 MP; a 1080p frame is 2.1 MP)."""

SUPPORTED_FORMATS = ("JPEG", "PNG")

Image.MAX_IMAGE_PIXELS = None  # our own limit (checked from the header) applies, not Pillow's warning


@dataclass(frozen=True)
class Code:
    """One QR code read in a frame.

    ``raw`` holds the payload bytes; ``text`` is their UTF-8 reading (invalid bytes replaced by
    U+FFFD -- check ``raw`` when ``text_is_utf8`` is false).  ``corners`` are 4 (x, y) pixel
    points, clockwise from the code's top-left.  ``decoder`` names the library and pass that read it.
    """

    text: str
    raw: bytes
    corners: tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]
    decoder: str
    symbology: str = "QRCode"

    @property
    def text_is_utf8(self) -> bool:
        try:
            self.raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True


@dataclass(frozen=True)
class ImageInfo:
    """What the header says about an image: format (``jpeg``/``png``), width, height, Pillow mode."""

    format: str
    width: int
    height: int
    mode: str


@dataclass(frozen=True)
class DecodeResult:
    """Codes of one frame plus what the camera-health analytics need."""

    codes: list[Code]
    info: ImageInfo
    decode_ms: float


def probe_image(data: bytes) -> tuple[Image.Image, ImageInfo]:
    """Check size, format and header dimensions without decoding pixels.

    Raises:
        EmptyImage, TooManyBytes, NotAnImage, UnsupportedFormat, TooManyPixels, TruncatedImage.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise NotAnImage(f"expected image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise EmptyImage("the image is empty (0 bytes)")
    if len(data) > MAX_IMAGE_BYTES:
        raise TooManyBytes(f"the image is {len(data):,} bytes; the limit is {MAX_IMAGE_BYTES:,} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:  # pragma: no cover - disabled above, kept for safety
        raise TooManyPixels(str(e)) from None
    except (OSError, SyntaxError, ValueError):
        if data[:2] == b"\xff\xd8" or data[:8] == b"\x89PNG\r\n\x1a\n":
            raise TruncatedImage("the image header is truncated or corrupt") from None
        raise NotAnImage("the bytes are not a recognised image (expected JPEG or PNG)") from None
    if img.format not in SUPPORTED_FORMATS:
        raise UnsupportedFormat(f"{img.format} images are not supported; send JPEG or PNG")
    w, h = img.size
    if w <= 0 or h <= 0:
        raise EmptyImage(f"the image has no pixels ({w}x{h})")
    if w > MAX_SIDE or h > MAX_SIDE:
        raise TooManyPixels(f"the image is {w}x{h}; the longest side allowed is {MAX_SIDE:,} pixels")
    if w * h > MAX_PIXELS:
        raise TooManyPixels(f"the image is {w}x{h} = {w * h:,} pixels; the limit is {MAX_PIXELS:,}")
    return img, ImageInfo(img.format.lower(), w, h, img.mode)


def load_gray(img: Image.Image) -> Image.Image:
    """Decode the pixels of a probed image to 8-bit grayscale (mode ``L``).

    Colour, CMYK and palette images are converted; transparent pixels are laid on white (a code on a
    transparent PNG stays dark-on-light); 16-bit images are scaled from their own min..max range.

    Raises:
        TruncatedImage: the pixel data ends early or is corrupt.
    """
    try:
        if img.format == "JPEG":
            img.draft("L", img.size)  # let libjpeg skip the colour conversion (no-op for CMYK)
        img.load()
        return _to_gray(img)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise TruncatedImage(f"the image data is truncated or corrupt ({e}); re-send the whole file") from None


def _to_gray(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "L":
        return img
    if mode.startswith("I"):  # I, I;16, I;16B, I;16L ...
        wide = img.convert("I") if mode != "I" else img
        lo, hi = wide.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 1.0
        return wide.point(lambda v: v * scale - lo * scale).convert("L")
    if mode == "F":
        lo, hi = img.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 1.0
        return img.point(lambda v: v * scale - lo * scale).convert("L")
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    return img.convert("L")  # RGB, CMYK, YCbCr, 1, ...


def _corners(q: enhance.Quad) -> tuple[tuple[int, int], ...]:
    return tuple((round(x), round(y)) for x, y in q)


def read_codes(gray: Image.Image) -> list[Code]:
    """Read every QR code of an 8-bit grayscale image; identical payloads are reported once.

    ``Code.decoder`` is ``"zxing-cpp"`` for the first pass and ``"zxing-cpp+<variant>"`` for a code
    re-read from an enhanced crop (see :mod:`ingest.enhance`).
    """
    results = zxingcpp.read_barcodes(
        enhance.gray_view(gray), formats=enhance.QR_FORMATS, try_downscale=False, return_errors=True
    )
    found: dict[bytes, Code] = {}
    read_quads: list[enhance.Quad] = []

    def add(b: zxingcpp.Barcode, quad: enhance.Quad, decoder: str) -> None:
        raw = bytes(b.bytes)
        read_quads.append(quad)
        if raw not in found:
            text = raw.decode("utf-8", errors="replace")
            found[raw] = Code(text=text, raw=raw, corners=_corners(quad), decoder=decoder)  # type: ignore[arg-type]

    for b in results:
        if b.valid:
            add(b, enhance.quad_of(b.position), "zxing-cpp")
    located = enhance.unread_quads((b for b in results if not b.valid), read_quads)
    for quad in located:
        for r in enhance.reread(gray, quad):
            add(r.barcode, r.corners, f"zxing-cpp+{r.variant}")
    if located:  # a degraded frame: its other codes may be too blurred to be located at all
        for r in enhance.sharpened_frame(gray):
            add(r.barcode, r.corners, f"zxing-cpp+{r.variant}")
    return list(found.values())


def decode_image(data: bytes) -> DecodeResult:
    """Validate and decode one frame; the result carries image info and decode time.

    Raises:
        BadImage: a subclass naming what was wrong with the bytes.
    """
    t0 = time.perf_counter()
    img, info = probe_image(bytes(data))
    codes = read_codes(load_gray(img))
    return DecodeResult(codes, info, (time.perf_counter() - t0) * 1000.0)


def decode_frame(data: bytes) -> list[Code]:
    """Read the QR codes in one JPEG/PNG frame; ``[]`` when it holds none.

    Raises:
        BadImage: empty, not an image, truncated, unsupported format, too many pixels or bytes.
    """
    return decode_image(data).codes
