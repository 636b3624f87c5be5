"""The real local pipeline (``local.pipeline.LocalPipeline``: server, worker process, SQLite stream, ETL) against
its OpenAPI description (schemathesis), plus hostile input through it: no 5xx, nothing published for a
refusal, still healthy afterwards.

The API key is supplied through the spec's ``cameraKey`` security scheme (schemathesis' OpenAPI auth
configuration), so the generated requests carry it exactly where the spec says.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    positive_data_acceptance,
    unsupported_method,
)

from local.pipeline import LocalPipeline, ServeOptions
from local.server import OPENAPI_PATH
from stream.aggregate import deaggregate_many
from stream.schema import from_bytes
from tests.hardening import hostile
from tests.hardening.conftest import EXAMPLES, KEYS, assert_refusal, http_request, json_body

_ENV = ("BOX_OFFICE_URL", "BOX_OFFICE_TOKEN", "POWERTOOLS_LOG_LEVEL")


@pytest.fixture(scope="module")
def pipeline(cameras, tmp_path_factory) -> Iterator[LocalPipeline]:
    """One worker, on a free loopback port, with its own data directory."""
    saved = {k: os.environ.get(k) for k in _ENV}
    data = tmp_path_factory.mktemp("contract-data")
    pipe = LocalPipeline(
        ServeOptions(data=data, port=0, cameras=cameras.path, workers=1, etl_batch_seconds=0.2, stream_retention_s=0)
    ).start()
    try:
        yield pipe
    finally:
        pipe.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def stored_records(pipe: LocalPipeline, after: int = 0) -> list:
    assert pipe.store is not None
    rows = pipe.store.read(after, 100_000)
    return [from_bytes(b) for b in deaggregate_many(r.data for r in rows)]


# Loaded at import (a file, no server needed).  ``schemathesis.pytest.from_fixture`` would be the lazy way,
# but schemathesis 4.32 sets ``request.node._nodeid``, which pytest 9 no longer has.
# 413 is a documented refusal (size limits) that schemathesis' negative-data check does not expect by default.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 403, 404, 405, 413, 415, 422]}}}
)
schema = schemathesis.openapi.from_path(OPENAPI_PATH, config=CONFIG)


@schema.auth()
class CameraKey:
    """Supplies the camera's API key through the ``cameraKey`` scheme of the spec (header x-api-key)."""

    def get(self, case, context):
        return KEYS["door-1"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "x-api-key": data}


@schema.parametrize()
@settings(max_examples=max(10, EXAMPLES // 2), deadline=None, suppress_health_check=list(HealthCheck))
def test_local_server_honours_its_openapi_contract(case, pipeline):
    """Responses have documented statuses, documented bodies, and the spec's content types; never a 5xx."""
    response = case.call(base_url=pipeline.url, timeout=60)
    assert response.status_code < 500, response.text[:300]
    # positive_data_acceptance: any string is a schema-valid image_base64, but only base64 of a JPEG/PNG is
    # accepted; the spec cannot say "a decodable image", so schema-valid requests are rightly refused 4xx.
    excluded = [unsupported_method, positive_data_acceptance]
    case.validate_response(response, excluded_checks=excluded)


def test_an_empty_capture_time_header_is_refused_like_any_malformed_time(pipeline, cameras):
    hdrs = {"x-api-key": cameras.keys["door-1"], "Content-Type": "image/jpeg", "X-Captured-At": ""}
    status, raw, _ = http_request(pipeline.server.server_address[:2], "POST", "/upload", hostile.good_jpeg(), hdrs)
    assert status == 422, raw[:300]


@pytest.mark.parametrize(("method", "path", "allow"), [("PUT", "/health", "GET, HEAD"), ("GET", "/upload", "POST")])
def test_405_answers_name_the_allowed_methods(pipeline, method, path, allow):
    status, _raw, hdrs = http_request(pipeline.server.server_address[:2], method, path)
    assert status == 405 and hdrs.get("allow") == allow


# ------------------------------------------------------------------------------------------- hostile


CASES = {
    "bomb": (hostile.png_claiming(50_000, 50_000), "image/png", 413),
    "truncated": (hostile.good_jpeg()[:300], "image/jpeg", 400),
    "not-an-image": (b"GIF89a" + b"\x00" * 100, "image/jpeg", 415),
    "empty": (b"", "image/jpeg", 400),
    "wrong-type": (hostile.good_jpeg(), "text/plain", 415),
    "deep-json": (hostile.deep_json(100_000).encode(), "application/json", 400),
    "bad-base64": (b'{"image_base64": "%%%"}', "application/json", 400),
    "far-future": (
        b'{"image_base64": "'
        + hostile.b64(hostile.good_jpeg()).encode()
        + b'", "captured_at": "2999-01-01T00:00:00Z"}',
        "application/json",
        422,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_requests_through_the_real_pipeline_publish_no_read_and_leave_it_healthy(pipeline, cameras, name):
    body, ctype, expected = CASES[name]
    address = pipeline.server.server_address[:2]
    before = pipeline.store.head()
    hdrs = {"x-api-key": cameras.keys["door-1"], "Content-Type": ctype}
    status, raw, _ = http_request(address, "POST", "/upload", body, hdrs)
    err = assert_refusal(status, raw)
    assert status == expected, err
    time.sleep(0.05)
    new = stored_records(pipeline, before)
    assert [r for r in new if r.kind == "read"] == []  # (box-office outcomes of earlier good frames may arrive)
    frames = [r for r in new if r.kind == "frame"]
    assert all(r.outcome == "rejected" and r.reject_reason == err["code"] for r in frames) and len(frames) <= 1
    # still healthy: a good frame gets its ticket, /health is ok
    status, raw, _ = http_request(
        address, "POST", "/upload", hostile.fresh_jpeg(f"pipe-{name}"), {**hdrs, "Content-Type": "image/jpeg"}
    )
    assert status == 200 and json_body(raw)["frames"][0]["codes"][0]["text"] == hostile.TICKET
    status, raw, _ = http_request(address, "GET", "/health")
    assert status == 200 and json_body(raw)["status"] == "ok", raw[:500]


def test_refusals_reach_the_lake_only_as_rejected_frame_summaries(pipeline):
    """After the hostile run: every read in the lake is the good ticket; rejections are frame rows."""
    import duckdb

    deadline = time.monotonic() + 30
    while pipeline.etl.status().lag_records and time.monotonic() < deadline:
        time.sleep(0.1)
    data = Path(pipeline.opts.data)
    texts = duckdb.sql(f"SELECT DISTINCT text FROM read_parquet('{data}/reads/*/*/*.parquet')").fetchall()
    assert texts == [(hostile.TICKET,)]
    outcomes = dict(
        duckdb.sql(
            f"SELECT outcome, count(*) FROM read_parquet('{data}/frames/*/*/*.parquet') GROUP BY outcome"
        ).fetchall()
    )
    assert outcomes.get("ok", 0) >= len(CASES) and set(outcomes) <= {"ok", "no_code", "rejected"}
