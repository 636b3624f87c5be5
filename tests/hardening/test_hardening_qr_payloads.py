"""Arbitrary bytes inside valid QR codes (binary, near capacity, non-UTF-8, empty-ish) through the handler,
the SQLite stream and the local ETL to Parquet: each payload arrives intact (``raw`` bytes when not UTF-8)
or flagged (``ticket_valid`` false), and never breaks its batch."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.local import LocalEtl
from ingest import handler as ingest_handler
from ingest.settings import Settings
from local.frames import Placement, render_frame
from stream.sqlite import SqliteStore
from tests.events.make_events import build_event
from tests.hardening import hostile
from tests.hardening.conftest import EXAMPLES, body_of, lake_rows

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

QR_BINARY_CAPACITY_M = 2331
"""Bytes a version-40 QR code holds in byte mode at error-correction level M (ISO/IEC 18004 table 7)."""


def qr_frame(payload: bytes | str, seed: int = 0) -> bytes:
    """A PNG frame holding one QR code sized for its payload (lossless: big codes keep sharp modules)."""
    n = len(payload)
    module = 3.0 if n > 600 else 4.0
    size = (720, 660) if n > 600 else (480, 360)
    return render_frame([payload], seed=seed, size=size, placements=[Placement(module_px=module)], fmt="PNG")


def run_through_lake(cameras, tmp_path, frames: list[bytes], form: str = "batch") -> tuple[list[dict], list[dict]]:
    """POST the frames (one JSON batch, or one raw request each), run the local ETL; (responses, read rows)."""
    store = SqliteStore(tmp_path / "stream.db")
    ingest_handler.use(store, store, cameras.registry, Settings(max_clock_skew_seconds=3600))
    key_id = cameras.registry.get("door-1").key_id
    responses = []
    try:
        if form == "batch":
            doc = {"frames": [{"image_base64": hostile.b64(f)} for f in frames]}
            responses.append(ingest_handler.handler(build_event(json.dumps(doc), "application/json", key_id=key_id)))
        else:
            for f in frames:
                responses.append(ingest_handler.handler(build_event(f, "image/png", key_id=key_id)))
    finally:
        ingest_handler.reset()
    assert all(r["statusCode"] == 200 for r in responses), [r["body"][:200] for r in responses]
    etl = LocalEtl(store, tmp_path / "lake", batch_records=10_000)
    etl.process_available()
    assert etl.status().quarantined == 0
    store.close()
    return [body_of(r) for r in responses], lake_rows(tmp_path / "lake", "reads")


def payload_of(row: dict) -> bytes:
    """The payload bytes a lake row carries: ``raw`` when set (non-UTF-8), else ``text`` as UTF-8."""
    return row["raw"] if row["raw"] is not None else row["text"].encode("utf-8")


def assert_arrived(payloads: list[bytes], rows: list[dict]) -> None:
    by_payload = {payload_of(r): r for r in rows}
    for p in payloads:
        assert p in by_payload, f"payload {p[:40]!r} ({len(p)} bytes) did not reach the lake"
        row = by_payload[p]
        try:
            p.decode("utf-8")
            utf8 = True
        except UnicodeDecodeError:
            utf8 = False
        assert (row["raw"] is None) == utf8, "raw must be set exactly when the payload is not UTF-8"
        if not p.startswith(b"TKT:"):
            assert row["ticket_valid"] is False and row["ticket_error"], "a non-ticket must be flagged"


SPECIAL = {
    "all-256-byte-values": bytes(range(256)),
    "invalid-utf8": b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc",
    "cesu-surrogates": b"\xed\xa0\x80\xed\xb0\x80",
    "nul-bytes": b"\x00\x00\x00",
    "one-byte": b"\x01",
    "whitespace": b" \r\n\t ",
    "bom-ticket": "\ufeffTKT:REX:R1:S20261130-2030:T000001:F1".encode(),
    "ticket-with-nul": b"TKT:REX:R1:S20261130-2030:T000002:F2\x00",
    "rtl-override": "TKT:REX:R1:\u202eS20261130-2030:T3".encode(),
    "emoji": "\U0001f3ab\U0001f3ac ticket".encode(),
    "json-truncated": b'{"t": "T1", "c": "REX", "r": 1, "s": "2026',
    "url-2k": ("https://x.example/?" + "a=1&" * 500).encode(),
    "near-capacity-binary": os.urandom(QR_BINARY_CAPACITY_M - 40),
    "near-capacity-text": ("TKT:" + "Z" * (QR_BINARY_CAPACITY_M - 60)).encode(),
}


def test_special_payloads_and_a_valid_ticket_share_one_batch_and_all_arrive(cameras, tmp_path):
    valid = b"TKT:REX:R1:S20261130-2030:T000999:F9"
    payloads = [valid, *SPECIAL.values()]
    frames = [qr_frame(p, seed=i) for i, p in enumerate(payloads)]
    batches = [frames[i : i + 8] for i in range(0, len(frames), 8)]  # the batch byte limit holds ~8 big PNGs
    rows: list[dict] = []
    for k, chunk in enumerate(batches):
        (resp,), got = run_through_lake(cameras, tmp_path / f"b{k}", chunk)
        assert [f["outcome"] for f in resp["frames"]] == ["ok"] * len(chunk), resp
        rows += got
    assert_arrived(payloads, rows)
    (ticket,) = [r for r in rows if payload_of(r) == valid]
    assert ticket["ticket_valid"] is True and ticket["ticket_id"] == "T000999"


@settings(
    max_examples=max(8, EXAMPLES // 3),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    payloads=st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=300),
            st.text(min_size=1, max_size=200).map(lambda s: s.encode("utf-8")),
            st.binary(min_size=900, max_size=QR_BINARY_CAPACITY_M - 40),
        ),
        min_size=1,
        max_size=4,
        unique=True,
    )
)
def test_arbitrary_qr_payloads_reach_parquet_intact_or_flagged(cameras, tmp_path_factory, payloads):
    frames = [qr_frame(p, seed=i) for i, p in enumerate(payloads)]
    resp, rows = run_through_lake(cameras, tmp_path_factory.mktemp("qr"), frames, form="raw")
    assert all(f["outcome"] == "ok" for r in resp for f in r["frames"]), resp
    assert_arrived(payloads, rows)
    assert len(rows) == len(payloads)  # one read per code, no more


def test_payload_bytes_survive_the_wire_codec_into_the_response(cameras, tmp_path):
    """The camera's answer shows the text (U+FFFD for invalid bytes); the lake keeps the exact bytes."""
    p = SPECIAL["invalid-utf8"]
    (resp,), rows = run_through_lake(cameras, tmp_path, [qr_frame(p)], form="raw")
    (code,) = resp["frames"][0]["codes"]
    assert code["text"] == p.decode("utf-8", errors="replace") and code["ticket_valid"] is False
    assert rows[0]["raw"] == p


@pytest.mark.parametrize("t", ["NaN", "1e999999", "true", "1.5"])
def test_json_ticket_ids_must_be_strings(t):
    from ingest.tickets import parse_ticket

    parsed = parse_ticket(f'{{"t": {t}, "c": "REX", "r": 1, "s": "20261130-2030"}}')
    assert not parsed.valid and parsed.error
