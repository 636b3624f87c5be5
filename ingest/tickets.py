"""Ticket payloads: QR text -> ticket fields.  Pure; a payload that does not parse is flagged, never dropped.

Default format (documented in README "Ticket QR payloads"), three spellings of the same fields:

* ``TKT:<cinema>:R<room>:S<YYYYMMDD-HHMM>:<ticket id>:<seat>``   (compact, preferred)
* ``{"t": "<ticket id>", "c": "<cinema>", "r": <room>, "s": "<YYYYMMDD-HHMM>", "seat": "<seat>"}``
* ``https://<any host>/<path>?c=<cinema>&r=<room>&s=<YYYYMMDD-HHMM>&t=<ticket id>&seat=<seat>``

The session time is the cinema's local wall time.  Other chains plug in their own parser:
any callable ``(text) -> TicketFields`` that raises :class:`TicketFormatError` when the payload is
not its format; :func:`parse_ticket` tries the parsers in order and keeps the first match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

MAX_FIELD_LEN = 128


class TicketFormatError(ValueError):
    """The payload is not in a parser's format (the reason says why).

    ``recognised`` is true when the payload *is* the parser's format but a field is wrong; that
    specific reason is what :func:`parse_ticket` reports.
    """

    def __init__(self, reason: str, recognised: bool = True) -> None:
        super().__init__(reason)
        self.recognised = recognised


@dataclass(frozen=True)
class TicketFields:
    """Fields of a valid ticket payload.  ``session_start`` is cinema-local wall time (naive)."""

    format: str
    ticket_id: str
    cinema: str
    room: str
    session_id: str
    session_start: datetime
    seat: str | None = None


@dataclass(frozen=True)
class TicketParse:
    """Outcome of parsing one payload: ``fields`` when valid, else ``error``."""

    fields: TicketFields | None
    error: str | None

    @property
    def valid(self) -> bool:
        return self.fields is not None


TicketParser = Callable[[str], TicketFields]

_SESSION = re.compile(r"^(\d{8})-(\d{4})$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


def _session(value: object) -> tuple[str, datetime]:
    s = str(value)
    if not _SESSION.match(s):
        raise TicketFormatError(f"session {s[:20]!r} is not YYYYMMDD-HHMM")
    try:  # the pattern guarantees the digits; datetime() checks the calendar (5x cheaper than strptime)
        return s, datetime(int(s[:4]), int(s[4:6]), int(s[6:8]), int(s[9:11]), int(s[11:13]))
    except ValueError:
        raise TicketFormatError(f"session {s!r} is not a real date and time") from None


def _ident(name: str, value: object) -> str:
    s = str(value).strip()
    if not s or len(s) > MAX_FIELD_LEN or not _ID.match(s):
        raise TicketFormatError(f"{name} {s[:20]!r} is empty, too long or has unexpected characters")
    return s


def _room(value: object) -> str:
    s = str(value).strip()
    s = s[1:] if s[:1] in ("R", "r") else s
    if not s.isdigit():
        raise TicketFormatError(f"room {str(value)[:20]!r} is not a number")
    return str(int(s))


def _build(fmt: str, t: object, c: object, r: object, s: object, seat: object | None) -> TicketFields:
    sid, start = _session(s)
    return TicketFields(
        format=fmt,
        ticket_id=_ident("ticket id", t),
        cinema=_ident("cinema", c).upper(),
        room=_room(r),
        session_id=sid,
        session_start=start,
        seat=_ident("seat", seat) if seat not in (None, "") else None,
    )


def parse_tkt(text: str) -> TicketFields:
    """``TKT:<cinema>:R<room>:S<session>:<ticket>:<seat>``."""
    parts = text.split(":")
    if len(parts) != 6 or parts[0] != "TKT":
        if parts[0] != "TKT":
            raise TicketFormatError("not a TKT payload", recognised=False)
        raise TicketFormatError("TKT payload needs 6 parts: TKT:cinema:Rroom:Ssession:ticket:seat")
    _, cinema, room, session, ticket, seat = parts
    if not session.startswith("S"):
        raise TicketFormatError("session part must start with S")
    return _build("tkt", ticket, cinema, room, session[1:], seat)


def parse_json(text: str) -> TicketFields:
    """``{"t", "c", "r", "s", "seat"}`` compact JSON."""
    if not text.startswith("{"):
        raise TicketFormatError("not a JSON object", recognised=False)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        raise TicketFormatError("not valid JSON") from None
    if not isinstance(obj, dict) or not {"t", "c", "r", "s"} <= obj.keys():
        raise TicketFormatError("JSON ticket needs keys t, c, r and s")
    for key in ("t", "c", "s"):
        if type(obj[key]) is not str:
            raise TicketFormatError(f"JSON ticket key {key!r} must be a string")
    if type(obj["r"]) not in (int, str):
        raise TicketFormatError("JSON ticket key 'r' must be a room number or string")
    if obj.get("seat") is not None and type(obj["seat"]) is not str:
        raise TicketFormatError("JSON ticket key 'seat' must be a string")
    return _build("json", obj["t"], obj["c"], obj["r"], obj["s"], obj.get("seat"))


def parse_url(text: str) -> TicketFields:
    """``https://host/path?c=&r=&s=&t=&seat=``."""
    if not text.startswith(("https://", "http://")):
        raise TicketFormatError("not an http(s) URL", recognised=False)
    q = parse_qs(urlsplit(text).query)
    if not {"c", "r", "s", "t"} <= q.keys():
        raise TicketFormatError("ticket URL needs query parameters c, r, s and t")
    return _build("url", q["t"][0], q["c"][0], q["r"][0], q["s"][0], q.get("seat", [None])[0])


DEFAULT_PARSERS: tuple[TicketParser, ...] = (parse_tkt, parse_json, parse_url)


def parse_ticket(text: str, parsers: Sequence[TicketParser] = DEFAULT_PARSERS) -> TicketParse:
    """Parse a payload with the first parser that accepts it; never raises for bad payloads."""
    for parser in parsers:
        try:
            return TicketParse(parser(text), None)
        except TicketFormatError as e:
            if e.recognised:
                return TicketParse(None, str(e))
    return TicketParse(None, "not a known ticket format")
