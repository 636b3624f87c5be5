"""local.live_registry: cameras added or revoked in the registry file apply to a running server."""

from __future__ import annotations

import time

from ingest.cameras import Registry
from local.live_registry import LiveRegistry


def test_an_added_camera_authenticates_and_a_revoked_one_is_refused_within_the_check_interval(tmp_path):
    path = tmp_path / "cameras.json"
    registry = Registry()
    _cam, key1 = registry.add("door-1", "REX", "1")
    registry.save(path)
    live = LiveRegistry(path, check_every_s=0.2)
    assert live.authenticate(key1).camera_id == "door-1"

    cam2, key2 = registry.add("door-2", "REX", "2")
    registry.revoke("door-1")
    registry.save(path)
    deadline = time.monotonic() + 5
    while live.authenticate(key2) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.authenticate(key2).camera_id == "door-2" and live.by_key_id(cam2.key_id).camera_id == "door-2"
    assert live.authenticate(key1) is None


def test_lookups_within_the_interval_do_not_touch_the_file(tmp_path, monkeypatch):
    path = tmp_path / "cameras.json"
    registry = Registry()
    _cam, key = registry.add("door-1", "REX", "1")
    registry.save(path)
    live = LiveRegistry(path, check_every_s=60)
    stats = []
    real_stat = type(path).stat
    monkeypatch.setattr(type(path), "stat", lambda self, **kw: stats.append(self) or real_stat(self, **kw))
    for _ in range(100):
        assert live.authenticate(key) is not None
    assert stats == []
    live.refresh()  # an explicit refresh always looks
    assert stats == [path]
