"""Security of the camera API and its pipeline: the key is required everywhere and compared in constant time,
a camera cannot speak for another, no ticket payload or key reaches the logs at INFO, and secrets come only
from configuration.  (IAM scope, encryption and TLS-only policies: tests/infra/test_infra_security.py.)"""

from __future__ import annotations

import ast
import inspect
import io
import json
import logging
import re
import subprocess
from pathlib import Path

import pytest

from ingest import cameras as cameras_mod
from ingest import forwarder as ingest_forwarder
from ingest import handler as ingest_handler
from ingest.boxoffice import BoxOfficeConfig
from ingest.cameras import Registry, hash_key
from ingest.settings import Settings
from local.boxoffice_ref import BoxOfficeServer
from local.server import CameraApiServer
from stream.sqlite import SqliteStore
from tests.hardening import hostile
from tests.hardening.conftest import MemoryQueue, MemoryStream, http_request, json_body

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

REPO = Path(__file__).resolve().parents[2]
PUBLIC = {("GET", "/health"), ("GET", "/openapi.yaml")}
"""The only routes answered without a key (spec: /health has ``security: []``)."""


@pytest.fixture(scope="module")
def spied_api(cameras):
    """The camera API in front of the real handler, counting every handler invocation."""
    calls: list[dict] = []
    stream, queue = MemoryStream(), MemoryQueue()
    ingest_handler.use(stream, queue, cameras.registry, Settings(max_clock_skew_seconds=3600))

    def invoke(event: dict) -> dict:
        calls.append(event)
        return ingest_handler.handler(event, None)

    srv = CameraApiServer(("127.0.0.1", 0), invoke, cameras.registry.authenticate)
    srv.start()
    try:
        yield srv, calls, stream, queue
    finally:
        srv.stop()
        ingest_handler.reset()


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "path", ["/upload", "/upload/", "/UPLOAD", "//upload", "/upload?x=1", "/upload/../upload", "/health",
             "/openapi.yaml", "/", "/admin", "/upload%00"],
)  # fmt: skip
@pytest.mark.parametrize("key", [None, "", "mq_wrong", "revoked", "door-1-key-with-suffix", "\u00e9"])
def test_without_a_valid_key_nothing_but_health_and_the_spec_is_served(spied_api, cameras, method, path, key):
    srv, calls, _stream, _queue = spied_api
    before = len(calls)
    headers = {"Content-Type": "image/jpeg"}
    if key == "revoked":
        headers["x-api-key"] = cameras.keys["old-cam"]
    elif key == "door-1-key-with-suffix":
        headers["x-api-key"] = cameras.keys["door-1"] + "x"
    elif key is not None:
        headers["x-api-key"] = key.encode("utf-8").decode("latin-1")
    body = hostile.good_jpeg() if method in ("POST", "PUT", "PATCH") else b""
    status, raw, _ = http_request(srv.server_address[:2], method, path, body, headers)
    assert len(calls) == before, "the handler ran for an unauthenticated request"
    if (method, path.split("?")[0]) in PUBLIC:
        assert status == 200
        return
    assert status in (403, 404, 405), (status, raw[:200])
    assert json_body(raw)["error"]["code"] in ("forbidden", "not_found", "method_not_allowed")


def test_an_unauthenticated_flood_publishes_nothing(spied_api):
    srv, calls, stream, _queue = spied_api
    n0 = len(stream.entries)
    for i in range(50):
        http_request(srv.server_address[:2], "POST", "/upload", hostile.fresh_jpeg(f"flood{i}"), {"x-api-key": f"k{i}"})
    assert len(stream.entries) == n0 and not [c for c in calls if "flood" in json.dumps(c)]


def test_api_keys_are_compared_in_constant_time_against_every_camera(cameras, monkeypatch):
    """``Registry.authenticate`` hashes the key and compares digests with hmac.compare_digest, with no early
    exit: the same number of comparisons whether the key matches the first camera, the last, or none."""
    reg = Registry()
    keys = [reg.add(f"cam-{i}", "REX", "1")[1] for i in range(5)]
    seen: list[tuple[str, str]] = []
    real = cameras_mod.hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(cameras_mod.hmac, "compare_digest", spy)
    for key, expected in [(keys[0], "cam-0"), (keys[-1], "cam-4"), ("mq_nope", None)]:
        seen.clear()
        cam = reg.authenticate(key)
        assert (cam.camera_id if cam else None) == expected
        assert len(seen) == 5, "one constant-time comparison per camera, no early exit"
        assert all(b == hash_key(key) and len(a) == len(b) == 64 for a, b in seen), "digests, never the raw key"


def test_no_key_material_is_compared_with_equality_operators():
    """By inspection: the registry's and the local server's key checks use no ==/!= on keys or digests."""
    for fn in (Registry.authenticate, Registry.by_key_id):
        tree = ast.parse(inspect.getsource(fn).strip().replace("\n    ", "\n"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                text = ast.unparse(node)
                assert not re.search(r"key|digest|sha", text), f"{fn.__qualname__}: {text}"
    from local import worker

    # the local server's worker processes check keys with the registry's constant-time authenticate
    assert "registry.authenticate" in inspect.getsource(worker.run)


@pytest.mark.parametrize(
    ("doc", "status"),
    [
        ({"camera_id": "door-2", "image_base64": "B64"}, 403),
        ({"camera_id": "door-2", "frames": [{"image_base64": "B64"}]}, 403),
        ({"frames": [{"image_base64": "B64"}, {"camera_id": "door-2", "image_base64": "B64"}]}, 403),
        ({"camera_id": "door-1", "frames": [{"camera_id": "door-2", "image_base64": "B64"}]}, 400),
        ({"camera_id": "old-cam", "image_base64": "B64"}, 403),
    ],
    ids=["json", "batch", "batch-frame", "batch-frame-vs-batch", "revoked-camera-id"],
)
def test_a_camera_cannot_post_as_another_camera(spied_api, cameras, doc, status):
    srv, _calls, stream, queue = spied_api
    n0, m0 = len(stream.entries), len(queue.messages)
    body = json.dumps(doc).replace("B64", hostile.b64(hostile.fresh_jpeg("impersonate")))
    headers = {"x-api-key": cameras.keys["door-1"], "Content-Type": "application/json"}
    got, raw, _ = http_request(srv.server_address[:2], "POST", "/upload", body.encode(), headers)
    assert got == status and json_body(raw)["error"]["reason"]
    assert (len(stream.entries), len(queue.messages)) == (n0, m0)


def test_the_raw_form_camera_header_cannot_impersonate(spied_api, cameras):
    srv, _calls, stream, _queue = spied_api
    n0 = len(stream.entries)
    headers = {"x-api-key": cameras.keys["door-2"], "Content-Type": "image/jpeg", "X-Camera-Id": "door-1"}
    status, raw, _ = http_request(srv.server_address[:2], "POST", "/upload", hostile.good_jpeg(), headers)
    assert (status, json_body(raw)["error"]["code"]) == (403, "forbidden") and len(stream.entries) == n0


# ------------------------------------------------------------------------------------------- logs


@pytest.fixture
def info_logs():
    """Everything logged at INFO and above by the root logger and the Powertools loggers, as text."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    root = logging.getLogger()
    old_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    powertools = []
    for lg in (ingest_handler.logger, ingest_forwarder.logger):
        h = logging.StreamHandler(buf)
        h.setFormatter(lg.registered_formatter)
        inner = lg._logger
        powertools.append((inner, h, inner.level))
        inner.addHandler(h)
        inner.setLevel(logging.INFO)
    yield buf
    root.removeHandler(handler)
    root.setLevel(old_root)
    for inner, h, level in powertools:
        inner.removeHandler(h)
        inner.setLevel(level)


def test_no_ticket_payload_api_key_or_token_reaches_the_logs_at_info(cameras, tmp_path, info_logs):
    token = "bo-token-5f3c1e2a9d"
    ticket_ids = ["TLOG0001", "TLOG0002"]
    payloads = [f"TKT:REX:R1:S20261130-2030:{t}:F1" for t in ticket_ids]
    store = SqliteStore(tmp_path / "stream.db")
    ingest_handler.use(store, store, cameras.registry, Settings(max_clock_skew_seconds=3600))
    srv = CameraApiServer(("127.0.0.1", 0), lambda e: ingest_handler.handler(e, None), cameras.registry.authenticate)
    srv.start()
    bo = BoxOfficeServer(sold=[ticket_ids[0]], token=token).start()  # the second ticket is unknown (404)
    try:
        addr = srv.server_address[:2]
        for i, p in enumerate(payloads):
            img = hostile.render_ticket(p, seed=i)
            assert http_request(addr, "POST", "/upload", img, {"x-api-key": cameras.keys["door-1"],
                                                               "Content-Type": "image/jpeg"})[0] == 200  # fmt: skip
        http_request(addr, "POST", "/upload", img, {"x-api-key": cameras.keys["door-1"] + "x"})  # refused key
        http_request(addr, "POST", "/upload", img, {"x-api-key": cameras.keys["old-cam"]})  # revoked key
        http_request(addr, "POST", "/upload", b"junk", {"x-api-key": cameras.keys["door-2"],
                                                        "Content-Type": "image/jpeg"})  # fmt: skip
        for cfg in (BoxOfficeConfig(bo.url, token, 3.0), BoxOfficeConfig(bo.url, token + "-wrong", 3.0)):
            ingest_forwarder.use(store, cfg)
            records = [{"messageId": str(m.id), "body": m.body.decode(), "attributes": {"MessageGroupId": m.group_id},
                        "receiptHandle": m.receipt} for m in store.receive(10, visibility_s=0)]  # fmt: skip
            ingest_forwarder.handler({"Records": records})
    finally:
        srv.stop()
        bo.stop()
        ingest_handler.reset()
        ingest_forwarder.reset()
    out = info_logs.getvalue()
    assert "upload processed" in out and "box office" in out, "the logs were captured"
    secrets = [*payloads, *ticket_ids, token, *cameras.keys.values(), hash_key(cameras.keys["door-1"])]
    leaked = [s for s in secrets if s in out]
    assert leaked == [], f"found in INFO logs: {leaked}"


def test_settings_never_show_the_box_office_token():
    assert "s3cr3t-token" not in repr(Settings(box_office_token="s3cr3t-token"))


def test_box_office_config_never_shows_its_token():
    assert "s3cr3t-token" not in repr(BoxOfficeConfig("https://bo.example", "s3cr3t-token"))


# ------------------------------------------------------------------------------------------- secrets


SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key assignment": re.compile(r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}"),
    "private key": re.compile(r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----"),
    "camera API key": re.compile(r"\bmq_[A-Za-z0-9_-]{40,}"),
    "bearer token literal": re.compile(r"Bearer [A-Za-z0-9._~+/-]{24,}"),
    "GitHub/Slack token": re.compile(r"\b(ghp_[A-Za-z0-9]{36}|xox[abp]-[A-Za-z0-9-]{10,})"),
}


def _source_files() -> list[Path]:
    done = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    suffixes = {".py", ".yaml", ".yml", ".json", ".toml", ".md", ".sh", ".cfg", ".ini", ".txt", ".sql", ""}
    return [REPO / p for p in done.stdout.splitlines() if Path(p).suffix in suffixes and (REPO / p).is_file()]


def test_no_secret_is_hard_coded_in_the_repository():
    files = _source_files()
    assert len(files) > 50
    hits = []
    for f in files:
        try:
            text = f.read_text("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for what, rx in SECRET_PATTERNS.items():
            for m in rx.finditer(text):
                hits.append(f"{f.relative_to(REPO)}: {what}: {m.group(0)[:24]}...")
    assert hits == []


def test_secrets_come_only_from_configuration():
    """The box-office token: env (local) or Secrets Manager (cloud), never a literal; the stack keeps it secret."""
    assert Settings.from_env({"BOX_OFFICE_TOKEN": "from-env"}).box_office_token == "from-env"
    assert Settings.from_env({}).box_office_token == ""
    prod = (REPO / "Pulumi.prod.yaml").read_text()
    for line in prod.splitlines():
        if "boxOfficeToken" in line and not line.lstrip().startswith("#"):
            assert "secure:" in line, "the token must be a Pulumi secret in the stack file"
    main = (REPO / "__main__.py").read_text()
    assert 'get_secret("boxOfficeToken")' in main or "require_secret" in main
    registry = json.loads((REPO / "tests/events/cameras.json").read_text())
    assert all(not c["key_sha256"] or len(c["key_sha256"]) == 64 for c in registry["cameras"])
