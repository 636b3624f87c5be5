"""Decoding core: round trips through rendered frames, input modes, the enhancement pass, bad input."""

from __future__ import annotations

import contextlib
import io
import struct
import time
import tracemalloc
import zlib
from types import SimpleNamespace

import pytest
import segno
import zxingcpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from ingest import decode, enhance
from ingest.decode import MAX_IMAGE_BYTES, MAX_PIXELS, decode_frame, decode_image
from ingest.errors import (
    BadImage,
    EmptyImage,
    NotAnImage,
    TooManyBytes,
    TooManyPixels,
    TruncatedImage,
    UnsupportedFormat,
)
from local.frames import Placement, background, render_frame

TICKET = "TKT:ODEON-14:R03:S20260114-2030:4f1c2d3e-0000-4000-8000-123456789abc:F12"


def texts(data: bytes) -> list[str]:
    return sorted(c.text for c in decode_frame(data))


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def frame_image(seed: int = 3) -> Image.Image:
    return Image.open(io.BytesIO(render_frame([TICKET], seed=seed, fmt="PNG")))


# --- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module_px", "angle", "blur"),
    [(3.0, 0, 0), (5.0, 0, 0), (8.0, 0, 0), (5.0, 33, 0), (5.0, 90, 0), (4.0, 17, 0.8), (6.0, -45, 1.0)],
)
def test_round_trip_reads_payload_at_size_rotation_and_blur(module_px: float, angle: float, blur: float) -> None:
    payload = f"TKT:REX:R01:{module_px}:{angle}:{blur}"
    data = render_frame([payload], seed=int(module_px * 10 + angle), placements=[Placement(module_px, angle, blur)])
    codes = decode_frame(data)
    assert [c.text for c in codes] == [payload]
    assert codes[0].decoder.startswith("zxing-cpp")
    assert len(codes[0].corners) == 4


def test_round_trip_with_independent_encoder_segno() -> None:
    frame = background(1280, 720, seed=11).convert("L")
    qr = segno.make(TICKET, error="q", micro=False)
    out = io.BytesIO()
    qr.save(out, kind="png", scale=5, border=4)
    code = Image.open(io.BytesIO(out.getvalue())).convert("L")
    frame.paste(code.rotate(12, expand=True, fillcolor=255), (400, 150))
    assert texts(encode(frame, "JPEG", quality=80)) == [TICKET]


def test_corners_lie_on_the_code() -> None:
    data = render_frame([TICKET], seed=5, placements=[Placement(6.0)])
    (code,) = decode_frame(data)
    xs = [x for x, _ in code.corners]
    side = max(xs) - min(xs)
    modules = (
        zxingcpp.create_barcode(TICKET, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
        .to_image(scale=1, add_quiet_zones=False)
        .shape[0]
    )
    assert abs(side - modules * 6.0) < 12  # symbol side without quiet zone, +-2 modules


def test_several_codes_in_one_frame_are_all_read() -> None:
    payloads = [f"TKT:CINE:{i}" for i in range(3)]
    data = render_frame(payloads, seed=7, placements=[Placement(5.0, 10 * i) for i in range(3)])
    assert texts(data) == sorted(payloads)


def test_identical_codes_in_one_frame_are_reported_once() -> None:
    data = render_frame([TICKET, TICKET], seed=8, placements=[Placement(4.0), Placement(4.0, 20)])
    assert texts(data) == [TICKET]


def test_non_utf8_payload_keeps_raw_bytes() -> None:
    raw = b"\xff\xfe\x00TKT\x80\x81"
    (code,) = decode_frame(render_frame([raw], seed=9))
    assert code.raw == raw
    assert not code.text_is_utf8
    assert "\ufffd" in code.text


def test_empty_frame_returns_no_code() -> None:
    assert decode_frame(render_frame([], seed=12)) == []


def test_decode_image_reports_size_format_and_time() -> None:
    result = decode_image(render_frame([TICKET], seed=4, size=(1024, 576)))
    assert (result.info.format, result.info.width, result.info.height) == ("jpeg", 1024, 576)
    assert result.decode_ms > 0 and [c.text for c in result.codes] == [TICKET]


# --- input modes -----------------------------------------------------------------------------------


def test_grayscale_jpeg() -> None:
    assert texts(encode(frame_image().convert("L"), "JPEG")) == [TICKET]


def test_cmyk_jpeg() -> None:
    img = frame_image().convert("CMYK")
    data = encode(img, "JPEG", quality=90)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert texts(data) == [TICKET]


def test_16_bit_grayscale_png_uses_its_full_range() -> None:
    gray = frame_image().convert("L")
    wide = gray.point(lambda v: v * 4 + 1000, "I").convert("I;16")  # 12-bit range, offset
    data = encode(wide, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert texts(data) == [TICKET]


def test_rgba_png_with_transparent_background_reads_dark_on_white() -> None:
    qr = zxingcpp.create_barcode(TICKET, zxingcpp.BarcodeFormat.QRCode).to_image(scale=5, add_quiet_zones=True)
    mask = Image.fromarray(qr).point(lambda v: 255 - v)  # opaque where dark, transparent elsewhere
    img = Image.new("RGBA", mask.size, (0, 0, 0, 0))
    img.putalpha(mask)
    assert texts(encode(img, "PNG")) == [TICKET]


def test_palette_png() -> None:
    assert texts(encode(frame_image().convert("P"), "PNG")) == [TICKET]


# --- the enhancement pass --------------------------------------------------------------------------


def test_blurred_small_code_is_read_by_the_enhancement_pass_only() -> None:
    data = render_frame([TICKET], seed=1, placements=[Placement(3.5, 20, 1.5)], quality=80)
    gray = decode.load_gray(decode.probe_image(data)[0])
    first = zxingcpp.read_barcodes(enhance.gray_view(gray), formats=enhance.QR_FORMATS, try_downscale=False)
    assert first == []  # the plain pass cannot read it ...
    (code,) = decode_frame(data)  # ... the enhancement pass can, and says so
    assert code.text == TICKET
    assert code.decoder.startswith("zxing-cpp+")


def symbol_at(x: float, y: float, side: float) -> SimpleNamespace:
    """A stand-in for a located zxing-cpp symbol: only ``position`` is used."""
    p = SimpleNamespace
    return SimpleNamespace(
        position=SimpleNamespace(
            top_left=p(x=x, y=y),
            top_right=p(x=x + side, y=y),
            bottom_right=p(x=x + side, y=y + side),
            bottom_left=p(x=x, y=y + side),
        )
    )


def test_unread_quads_drop_repeats_tiny_detections_and_read_codes() -> None:
    read = [((500.0, 500.0), (600.0, 500.0), (600.0, 600.0), (500.0, 600.0))]
    syms = [
        symbol_at(100, 100, 80),
        symbol_at(102, 101, 80),
        symbol_at(505, 505, 90),
        symbol_at(900, 100, 5),
        symbol_at(300, 300, 60),
        symbol_at(310, 310, 120),
    ]
    quads = enhance.unread_quads(syms, read)  # type: ignore[arg-type]
    # the near-identical repeat, the read code and the 5 px speck are dropped; a differently sized guess is kept
    assert [q[0] for q in quads] == [(100.0, 100.0), (300.0, 300.0), (310.0, 310.0)]


def test_located_symbols_are_re_read_at_most_max_symbols_times() -> None:
    syms = [symbol_at(100 * i, 0, 50) for i in range(10)]
    assert len(enhance.unread_quads(syms, [])) == enhance.MAX_SYMBOLS  # type: ignore[arg-type]


def test_reread_maps_corners_back_to_frame_pixels() -> None:
    frame = Image.new("L", (800, 600), 200)
    qr = Image.fromarray(
        zxingcpp.create_barcode(TICKET, zxingcpp.BarcodeFormat.QRCode).to_image(scale=3, add_quiet_zones=True)
    ).filter(ImageFilter.GaussianBlur(1.0))
    frame.paste(qr, (300, 200))
    side = qr.width - 8 * 3
    quad = ((312.0, 212.0), (312.0 + side, 212.0), (312.0 + side, 212.0 + side), (312.0, 212.0 + side))
    (hit,) = enhance.reread(frame, quad)
    assert hit.barcode.text == TICKET
    assert all(abs(a - b) < 6 for p, q in zip(hit.corners, quad, strict=True) for a, b in zip(p, q, strict=True))


# --- bad input -------------------------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` 8-bit gray pixels, followed by a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def jpeg_header(width: int, height: int) -> bytes:
    sof = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (b"", EmptyImage, "empty"),
        (b"hello, this is not a picture", NotAnImage, "not a recognised image"),
        (encode(Image.new("L", (40, 40), 255), "GIF"), UnsupportedFormat, "GIF"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", TruncatedImage, "truncated"),
        (b"\x00" * (MAX_IMAGE_BYTES + 1), TooManyBytes, "limit"),
    ],
    ids=["empty", "not-an-image", "unsupported-gif", "truncated-header", "too-many-bytes"],
)
def test_bad_input_raises_typed_error_with_reason(data: bytes, error: type[BadImage], reason: str) -> None:
    with pytest.raises(error, match=reason) as exc:
        decode_frame(data)
    assert isinstance(exc.value, ValueError)
    assert exc.value.reason and exc.value.code != BadImage.code


def test_bmp_is_an_unsupported_format() -> None:
    with pytest.raises(UnsupportedFormat, match="BMP"):
        decode_frame(encode(Image.new("L", (40, 40), 255), "BMP"))


def test_truncated_pixel_data_is_reported_as_truncated() -> None:
    data = render_frame([TICKET], seed=2)
    with pytest.raises(TruncatedImage, match="truncated"):
        decode_frame(data[: len(data) // 2])


@pytest.mark.parametrize("header", [png_header(60000, 60000), jpeg_header(60000, 60000)], ids=["png", "jpeg"])
def test_decompression_bomb_header_fails_fast_without_allocating(header: bytes) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(TooManyPixels, match="60000x60000"):
            decode_frame(header + b"\x00" * 64)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 5_000_000  # 3.6 GB of pixels were claimed; nothing near that was allocated


def test_pixel_limit_is_checked_from_the_header() -> None:
    assert MAX_PIXELS < 60000 * 60000
    with pytest.raises(TooManyPixels):
        decode.probe_image(png_header(MAX_PIXELS // 1000 + 1, 1001))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise_anything_but_bad_image(data: bytes) -> None:
    with contextlib.suppress(BadImage):
        assert isinstance(decode_frame(data), list)


_SMALL_JPEG = render_frame([TICKET], seed=6, size=(320, 240), placements=[Placement(2.0)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_SMALL_JPEG) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_jpeg_never_raises_anything_but_bad_image(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_SMALL_JPEG)
    for pos, value in edits:
        data[pos] = value
    with contextlib.suppress(BadImage):
        assert isinstance(decode_frame(bytes(data)), list)
