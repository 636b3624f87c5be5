"""Hostile inputs for the camera API: crafted images (decompression bombs, zero-size, odd modes, corrupt
headers), corrupt copies of real frames, and hypothesis strategies for request envelopes."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from functools import cache

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from local.frames import Placement, render_frame

TICKET = "TKT:REX:R1:S20261130-2030:T000777:F7"
"""The valid ticket drawn in :func:`good_jpeg` / :func:`good_png`."""
SIZE = (400, 240)


@cache
def good_jpeg(seed: int = 3) -> bytes:
    """A small JPEG holding one readable ticket QR code."""
    return render_frame([TICKET], seed=seed, size=SIZE, placements=[Placement(module_px=3.0)])


@cache
def good_png(seed: int = 4) -> bytes:
    return render_frame([TICKET], seed=seed, size=SIZE, placements=[Placement(module_px=3.0)], fmt="PNG")


def render_ticket(payload: str | bytes, seed: int = 0) -> bytes:
    """A small JPEG holding one QR code with ``payload``."""
    return render_frame([payload], seed=seed, size=SIZE, placements=[Placement(module_px=3.0)])


def fresh_jpeg(tag: str) -> bytes:
    """``good_jpeg()`` with a JPEG comment holding ``tag``: same pixels and code, new bytes (new frame id)."""
    data = tag.encode()
    j = good_jpeg()
    return j[:2] + b"\xff\xfe" + struct.pack(">H", len(data) + 2) + data + j[2:]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, idat: bytes | None = None, bit_depth: int = 8, color_type: int = 0) -> bytes:
    """A PNG whose (valid, CRC-correct) header claims ``width`` x ``height``; ``idat`` defaults to a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = idat if idat is not None else zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header is patched to claim ``width`` x ``height``."""
    j = bytearray(_encode(Image.new("RGB", (32, 32), (90, 90, 90)), "JPEG"))
    i = j.find(b"\xff\xc0")
    j[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(j)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def refused_images() -> dict[str, tuple[bytes, set[int]]]:
    """Images the API must refuse: name -> (bytes, acceptable 4xx statuses)."""
    jpeg = good_jpeg()
    return {
        "png-bomb-50000x50000": (png_claiming(50_000, 50_000), {413}),
        "png-bomb-65535x65535-zlib": (png_claiming(65_535, 65_535, zlib.compress(b"\x00" * 1_000_000, 9)), {413}),
        "jpeg-bomb-65000x65000": (jpeg_claiming(65_000, 65_000), {413}),
        "png-0x0": (png_claiming(0, 0), {400}),
        "jpeg-0x0": (jpeg_claiming(0, 0), {400}),
        "png-bad-colour-type": (png_claiming(8, 8, color_type=7), {400}),
        "png-bad-crc": (_flip(good_png(), 29), {400}),
        "png-signature-only": (b"\x89PNG\r\n\x1a\n", {400}),
        "jpeg-soi-only": (b"\xff\xd8", {400}),
        "jpeg-truncated-half": (jpeg[: len(jpeg) // 2], {400}),
        "jpeg-header-only": (jpeg[:200], {400}),
        "png-truncated-idat": (png_claiming(4096, 3072), {400}),
        "gif": (_encode(Image.new("P", (8, 8)), "GIF"), {415}),
        "bmp": (_encode(Image.new("RGB", (8, 8)), "BMP"), {415}),
        "webp": (_encode(Image.new("RGB", (8, 8)), "WEBP"), {415}),
        "tiff": (_encode(Image.new("RGB", (8, 8)), "TIFF"), {415}),
        "text": (b"hello, this is not an image", {415}),
        "zeros": (b"\x00" * 1024, {415}),
        "png-1x12000000": (png_claiming(1, 12_000_000, zlib.compress(b"\x00\x00" * 12_000_000, 9)), {400, 413}),
    }


def odd_but_valid_images() -> dict[str, bytes]:
    """Unusual but legal JPEG/PNG images: must be decoded (200, ``no_code``), never a 5xx."""
    arr = np.random.default_rng(0).integers(0, 65535, (48, 48)).astype(np.uint16)
    return {
        "png-16bit-gray": _encode(Image.frombytes("I;16", (48, 48), arr.tobytes()), "PNG"),
        "png-1bit": _encode(Image.new("1", (48, 48)), "PNG"),
        "png-palette": _encode(Image.new("P", (48, 48)), "PNG"),
        "png-gray-alpha": _encode(Image.new("LA", (48, 48)), "PNG"),
        "png-rgba": _encode(Image.new("RGBA", (48, 48)), "PNG"),
        "png-1x1": _encode(Image.new("L", (1, 1)), "PNG"),
        "jpeg-cmyk": _encode(Image.new("CMYK", (48, 48)), "JPEG"),
        "jpeg-progressive": _encode(Image.new("RGB", (48, 48)), "JPEG", progressive=True),
        "jpeg-gray": _encode(Image.new("L", (48, 48)), "JPEG"),
        "png-max-pixels-blank": png_claiming(4096, 3072, zlib.compress(b"\x00" * (4097 * 3072), 9)),
    }


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    b = bytearray(data)
    b[index] ^= 1 << bit
    return bytes(b)


def corrupted(base: bytes) -> st.SearchStrategy[bytes]:
    """Truncations, bit flips (1-8 anywhere) and byte-range overwrites of ``base``."""
    n = len(base)
    flips = st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 7)), min_size=1, max_size=8)

    def apply_flips(fs):
        b = bytearray(base)
        for i, bit in fs:
            b[i] ^= 1 << bit
        return bytes(b)

    def overwrite(t):
        start, junk = t
        return base[:start] + junk + base[start + len(junk) :]

    return st.one_of(
        st.integers(0, n - 1).map(lambda k: base[:k]),
        flips.map(apply_flips),
        st.tuples(st.integers(0, n - 1), st.binary(min_size=1, max_size=64)).map(overwrite),
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8", categories=("Cc", "Cf", "Zl", "Zp", "Co", "Mn")), max_size=20),
    st.sampled_from(["door-1\x00", "door-1\n", "door-2", "DOOR-1", "door-1 ", "\u202edoor-1", "door-1\ufeff", "../"]),
)
"""Strings with control, format, private-use and combining characters, and near-miss camera ids."""

timestamps = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-30T20:15:03",  # no zone
            "2026-11-30T20:15:03+25:00",
            "NaN",
            "",
            "+275760-09-13T00:00:00Z",
        ]
    ),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.integers(),
    st.floats(allow_nan=True),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
"""Timestamps far in the past/future, malformed, zone-less, or of the wrong JSON type."""


def deep_json(depth: int, kind: str = "list") -> str:
    """JSON nested ``depth`` levels (lists or objects)."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth
