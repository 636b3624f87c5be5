"""Camera registry: keys shown once and stored hashed, authentication, revocation, file format errors."""

from __future__ import annotations

import json
import stat

import pytest

from ingest.cameras import Registry, RegistryError, hash_key


def test_added_camera_authenticates_with_its_key_and_only_the_hash_is_saved(tmp_path):
    reg = Registry()
    cam, key = reg.add("rex-1-door", "REX", "1", "America/Sao_Paulo")
    path = tmp_path / "cameras.json"
    reg.save(path)
    text = path.read_text()
    assert key not in text and hash_key(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Registry.load(path)
    assert loaded.authenticate(key) == cam
    assert loaded.by_key_id(cam.key_id) == cam
    assert loaded.authenticate(key + "x") is None
    assert loaded.authenticate(None) is None and loaded.by_key_id("") is None


def test_keys_are_unique_per_camera():
    reg = Registry()
    _, k1 = reg.add("a", "REX", "1")
    _, k2 = reg.add("b", "REX", "2")
    assert k1 != k2
    assert reg.authenticate(k1).camera_id == "a" and reg.authenticate(k2).camera_id == "b"


def test_revoked_camera_no_longer_authenticates_and_can_be_reissued():
    reg = Registry()
    cam, key = reg.add("a", "REX", "1")
    reg.revoke("a")
    assert reg.authenticate(key) is None and reg.by_key_id(cam.key_id) is None
    with pytest.raises(RegistryError, match="no camera"):
        reg.revoke("zzz")
    cam2, key2 = reg.add("a", "REX", "1")
    assert reg.authenticate(key2) == cam2 and cam2.key_id != cam.key_id


def test_adding_an_active_camera_twice_is_refused():
    reg = Registry()
    reg.add("a", "REX", "1")
    with pytest.raises(RegistryError, match="already exists"):
        reg.add("a", "REX", "1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bad id", "REX", "1"), "camera_id"),
        (("a", "", "1"), "cinema_id"),
        (("a", "REX", "1", "Mars/Olympus"), "time zone"),
    ],
)
def test_invalid_ids_and_zones_are_refused_with_the_rule(args, message):
    with pytest.raises(RegistryError, match=message):
        Registry().add(*args)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{", "not valid JSON"),
        ('{"cams": []}', "expected"),
        ('{"cameras": [{"camera_id": "a"}]}', "lacks cinema_id, room_id"),
        ('{"cameras": [{"camera_id": "a", "cinema_id": "R", "room_id": "1", "tz": "Nowhere"}]}', "time zone"),
    ],
)
def test_bad_registry_documents_name_the_problem(doc, message):
    with pytest.raises(RegistryError, match=message):
        Registry.from_json(doc, "cams.json")


def test_registry_setting_accepts_inline_json_or_a_file(tmp_path):
    reg = Registry()
    cam, _ = reg.add("a", "REX", "1")
    path = tmp_path / "c.json"
    reg.save(path)
    assert Registry.from_setting(f"file://{path}").get("a") == cam
    assert Registry.from_setting(reg.to_json()).get("a") == cam
    assert len(Registry.from_setting("")) == 0
    # unknown keys in entries are ignored (the Pulumi stack may add its own)
    doc = json.loads(reg.to_json())
    doc["cameras"][0]["note"] = "door"
    assert Registry.from_json(json.dumps(doc)).get("a") == cam
