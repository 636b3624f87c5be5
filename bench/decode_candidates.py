"""Decoder candidates for the benchmark: each one maps frame bytes to the set of payload texts it read.

Every candidate includes its own image decoding, so timings compare whole frame costs.  Libraries
that are not installed (pyzbar without libzbar, OpenCV) are skipped with a note, not a crash.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import zxingcpp
from PIL import Image

from ingest import enhance
from ingest.decode import decode_frame

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], set[str]]
QR = zxingcpp.BarcodeFormat.QRCode


def pillow_gray(data: bytes) -> Image.Image:
    """Decode JPEG/PNG bytes to 8-bit grayscale with Pillow (JPEG draft mode)."""
    img = Image.open(io.BytesIO(data))
    img.draft("L", img.size)
    img.load()
    return img if img.mode == "L" else img.convert("L")


def _texts(results: list[zxingcpp.Barcode]) -> set[str]:
    return {r.text for r in results if r.valid}


def zxing_default(data: bytes) -> set[str]:
    """zxing-cpp alone, default options, on a Pillow-decoded grayscale buffer."""
    return _texts(zxingcpp.read_barcodes(enhance.gray_view(pillow_gray(data)), formats=QR))


def zxing_pil_object(data: bytes) -> set[str]:
    """zxing-cpp alone, default options, given the Pillow image object itself (slower conversion path)."""
    return _texts(zxingcpp.read_barcodes(pillow_gray(data), formats=QR))


def zxing_no_downscale(data: bytes) -> set[str]:
    """zxing-cpp alone, ``try_downscale=False`` (the production first pass without its second stage)."""
    return _texts(zxingcpp.read_barcodes(enhance.gray_view(pillow_gray(data)), formats=QR, try_downscale=False))


def production(data: bytes) -> set[str]:
    """The shipped strategy: ``ingest.decode.decode_frame``."""
    return {c.text for c in decode_frame(data)}


def production_plus_frame_sharpen_always(data: bytes) -> set[str]:
    """Production, plus the sharpened full-frame pass on *every* frame where nothing was read."""
    texts = production(data)
    if not texts:
        gray = pillow_gray(data)
        texts = {r.barcode.text for r in enhance.sharpened_frame(gray)}
    return texts


def _optional() -> dict[str, Decoder]:
    out: dict[str, Decoder] = {}
    try:
        from pyzbar import pyzbar

        def zbar(data: bytes) -> set[str]:
            try:
                found = pyzbar.decode(pillow_gray(data), symbols=[pyzbar.ZBarSymbol.QRCODE])
            except ValueError:  # structured-append codes: pyzbar issue #139 loses the whole call
                return set()
            return {r.data.decode("utf-8", "replace") for r in found}

        def zxing_then_zbar(data: bytes) -> set[str]:
            return zxing_default(data) or zbar(data)

        out["pyzbar"] = zbar
        out["zxing-cpp -> pyzbar if nothing"] = zxing_then_zbar
    except (ImportError, OSError) as e:  # libzbar0 missing
        log.warning("pyzbar unavailable (%s): apt-get install -y libzbar0", e)
    try:
        import cv2
        import numpy as np

        cv2.setNumThreads(1)

        def opencv(make: Callable[[], object]) -> Decoder:
            detector = make()

            def run(data: bytes) -> set[str]:
                gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
                try:
                    ok, texts, _, _ = detector.detectAndDecodeMulti(gray)  # type: ignore[attr-defined]
                except (UnicodeDecodeError, cv2.error):  # non-UTF-8 payloads break the bindings
                    return set()
                return {t for t in texts if t} if ok else set()

            return run

        def zxing_cv2(data: bytes) -> set[str]:
            gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
            return _texts(zxingcpp.read_barcodes(gray, formats=QR))

        out["zxing-cpp (OpenCV imdecode)"] = zxing_cv2
        out["opencv QRCodeDetector"] = opencv(cv2.QRCodeDetector)
        out["opencv QRCodeDetectorAruco"] = opencv(cv2.QRCodeDetectorAruco)
    except ImportError as e:
        log.warning("OpenCV unavailable (%s)", e)
    return out


def candidates() -> dict[str, Decoder]:
    """All candidates, baselines first: name -> decoder.  ``zxing-cpp`` and ``pyzbar`` are the ratio baselines."""
    out: dict[str, Decoder] = {
        "zxing-cpp": zxing_default,
        "zxing-cpp (Pillow image object)": zxing_pil_object,
        "zxing-cpp no-downscale": zxing_no_downscale,
    }
    out.update(_optional())
    out["monuv: zxing + crops + frame-sharpen (shipped)"] = production
    out["monuv + frame-sharpen on every empty result"] = production_plus_frame_sharpen_always
    return out
