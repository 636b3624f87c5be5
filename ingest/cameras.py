"""The camera registry: which camera an API key belongs to, and where that camera is.

One JSON file format feeds local mode (``monuv-qr cameras ...``, ``serve --cameras``) and the
Pulumi stack (one API Gateway key per camera)::

    {"cameras": [{"camera_id": "rex-1-door", "cinema_id": "REX", "room_id": "1",
                  "tz": "America/Sao_Paulo", "key_id": "ck_4f1c...", "key_sha256": "9a0b...",
                  "revoked": false, "created_at": "2026-11-30T20:00:00.000000Z"}]}

Keys are shown once when created and only their SHA-256 is stored.  A request is authenticated
either by the API key itself (local server: :meth:`Registry.authenticate`, constant-time) or by the
key *id* API Gateway has already validated (cloud: :meth:`Registry.by_key_id`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream.schema import format_ts, now_utc

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


class RegistryError(ValueError):
    """The registry file or an argument is invalid; the message says what to fix."""


@dataclass(frozen=True)
class Camera:
    camera_id: str
    cinema_id: str
    room_id: str
    tz: str = "UTC"
    key_id: str = ""
    key_sha256: str = ""
    revoked: bool = False
    created_at: str = ""


def hash_key(key: str) -> str:
    """SHA-256 hex of an API key (what the registry stores)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def validate_id(what: str, value: str) -> str:
    """Check a camera/cinema/room id: 1-64 of letters, digits, ``.``, ``_``, ``-``.

    Raises:
        RegistryError: naming the id and the rule.
    """
    if not isinstance(value, str) or not _ID.match(value):
        raise RegistryError(f"{what} {value!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return value


def validate_tz(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RegistryError(f"time zone {tz!r} is not an IANA zone name (e.g. America/Sao_Paulo)") from None
    return tz


class Registry:
    """An in-memory camera registry.  Not thread-safe for writes; reads are safe once loaded."""

    def __init__(self, cameras: list[Camera] | None = None) -> None:
        self._cameras: dict[str, Camera] = {}
        for c in cameras or []:
            self._put(c)

    def _put(self, cam: Camera) -> None:
        validate_id("camera_id", cam.camera_id)
        validate_id("cinema_id", cam.cinema_id)
        validate_id("room_id", cam.room_id)
        validate_tz(cam.tz)
        self._cameras[cam.camera_id] = cam

    # -- lookups -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Camera]:
        return iter(sorted(self._cameras.values(), key=lambda c: c.camera_id))

    def __len__(self) -> int:
        return len(self._cameras)

    def get(self, camera_id: str) -> Camera | None:
        return self._cameras.get(camera_id)

    def by_key_id(self, key_id: str | None) -> Camera | None:
        """The active camera whose API key has this id (API Gateway's ``apiKeyId``)."""
        if not key_id:
            return None
        for cam in self._cameras.values():
            if cam.key_id and hmac.compare_digest(cam.key_id, key_id) and not cam.revoked:
                return cam
        return None

    def authenticate(self, key: str | None) -> Camera | None:
        """The active camera owning this API key, compared in constant time; None if none does."""
        if not key:
            return None
        digest = hash_key(key)
        match = None
        for cam in self._cameras.values():  # no early exit: time does not depend on which matched
            if cam.key_sha256 and hmac.compare_digest(cam.key_sha256, digest) and not cam.revoked:
                match = cam
        return match

    # -- changes -------------------------------------------------------------------------------
    def add(self, camera_id: str, cinema_id: str, room_id: str, tz: str = "UTC") -> tuple[Camera, str]:
        """Register a camera; returns it and its new API key (shown once, only the hash is kept).

        Raises:
            RegistryError: bad id or zone, or the camera exists (revoke it first to replace it).
        """
        existing = self._cameras.get(camera_id)
        if existing and not existing.revoked:
            raise RegistryError(f"camera {camera_id!r} already exists; revoke it first to issue a new key")
        key = "mq_" + secrets.token_urlsafe(32)
        cam = Camera(
            camera_id=camera_id,
            cinema_id=cinema_id,
            room_id=room_id,
            tz=tz,
            key_id="ck_" + secrets.token_hex(8),
            key_sha256=hash_key(key),
            created_at=format_ts(now_utc()),
        )
        self._put(cam)
        return cam, key

    def revoke(self, camera_id: str) -> Camera:
        """Revoke a camera's key (the camera stays listed, marked revoked).

        Raises:
            RegistryError: no such camera.
        """
        cam = self._cameras.get(camera_id)
        if cam is None:
            raise RegistryError(f"no camera {camera_id!r} in the registry")
        cam = replace(cam, revoked=True)
        self._cameras[camera_id] = cam
        return cam

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"cameras": [asdict(c) for c in self]}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "registry") -> Registry:
        """Parse a registry document.

        Raises:
            RegistryError: naming the source, the entry and the problem.
        """
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise RegistryError(f"{source}: not valid JSON ({e})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("cameras"), list):
            raise RegistryError(f'{source}: expected {{"cameras": [...]}}')
        cams = []
        known = set(Camera.__dataclass_fields__)
        for i, entry in enumerate(doc["cameras"]):
            if not isinstance(entry, dict):
                raise RegistryError(f"{source}: cameras[{i}] is not an object")
            missing = {"camera_id", "cinema_id", "room_id"} - entry.keys()
            if missing:
                raise RegistryError(f"{source}: cameras[{i}] lacks {', '.join(sorted(missing))}")
            try:
                cams.append(Camera(**{k: v for k, v in entry.items() if k in known}))
            except TypeError as e:
                raise RegistryError(f"{source}: cameras[{i}]: {e}") from None
        try:
            return cls(cams)
        except RegistryError as e:
            raise RegistryError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Registry:
        """Load a registry file; a missing file is an empty registry."""
        p = Path(path)
        if not p.exists():
            return cls()
        return cls.from_json(p.read_text("utf-8"), str(p))

    @classmethod
    def from_setting(cls, value: str) -> Registry:
        """Registry from the ``CAMERA_REGISTRY`` setting: inline JSON, or ``file://PATH``."""
        if value.startswith("file://"):
            return cls.load(value[len("file://") :])
        return cls.from_json(value or '{"cameras": []}', "CAMERA_REGISTRY")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temp file + rename), readable only by the owner."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".cameras-", dir=p.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
