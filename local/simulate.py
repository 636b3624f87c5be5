"""An evening at a few cinemas, simulated: which frames each camera sends, and the ground truth.

Pure and deterministic (a seed decides everything).  The scenario has what a real evening has:
rushes before each session and quiet gaps, each ticket seen in several consecutive frames, groups
showing two tickets in one frame, frames with no code, codes that are not tickets, tickets the box
office never sold, and re-used tickets (the same ticket entering again later).  The ground truth
is computed from the scenario with the product's definitions (an entry is a valid ticket's first
read in a room and session; hours are the cinema's local hours).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ingest.records import time_bucket

CINEMAS = (
    ("PALACE", "America/Sao_Paulo", ("1", "2")),
    ("ODEON", "America/Manaus", ("1", "2")),
    ("LUMIERE", "Europe/Lisbon", ("1",)),
)
SESSIONS = (time(19, 0), time(21, 30), time(23, 15))


@dataclass(frozen=True)
class SimFrame:
    """One frame to send: camera, capture time (UTC), payloads visible (none = empty frame)."""

    camera_id: str
    captured_at: datetime
    payloads: tuple[str, ...]
    seed: int


@dataclass
class Scenario:
    """Frames to send, tickets sold, and the ground truth the pipeline must reproduce."""

    cameras: list[tuple[str, str, str, str]]  # camera_id, cinema, room, tz
    frames: list[SimFrame]
    sold: set[str]
    entries: Counter = field(default_factory=Counter)  # (cinema, local date, local hour) -> entries
    room_entries: Counter = field(default_factory=Counter)  # (cinema, room, local date, hour) -> entries
    box_office: Counter = field(default_factory=Counter)  # expected outcome -> count
    invalid_reads: int = 0

    def peaks(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(cinema, local date) -> (peak local hour, entries); ties go to the earliest hour."""
        best: dict[tuple[str, str], tuple[int, int]] = {}
        for (cinema, day, hour), n in sorted(self.entries.items()):
            cur = best.get((cinema, day))
            if cur is None or n > cur[1]:
                best[(cinema, day)] = (hour, n)
        return best


def payload(style: int, ticket: str, cinema: str, room: str, session: str, seat: str) -> str:
    """A ticket QR payload in one of the default format's three spellings."""
    if style == 0:
        return f"TKT:{cinema}:R{int(room):02d}:S{session}:{ticket}:{seat}"
    if style == 1:
        return json.dumps({"t": ticket, "c": cinema, "r": int(room), "s": session, "seat": seat}, separators=(",", ":"))
    return f"https://tickets.example.org/v?c={cinema.lower()}&r={room}&s={session}&t={ticket}&seat={seat}"


def build(evening: date, seed: int = 7, tickets_per_session: int = 24, dedup_window_s: int = 300) -> Scenario:
    """The scenario of one evening (local dates of ``evening``), deterministic for a seed."""
    rng = random.Random(seed)
    cameras = [(f"{c.lower()}-{r}-door", c, r, tz) for c, tz, rooms in CINEMAS for r in rooms]
    frames: list[SimFrame] = []
    sold: set[str] = set()
    sc = Scenario(cameras, frames, sold)
    first_seen: dict[tuple[str, str, str], datetime] = {}  # (ticket, room-key, session) -> first capture
    entered: set[str] = set()  # sold tickets the box office has accepted
    n = 0

    def emit(cam: str, at: datetime, payloads: tuple[str, ...]) -> None:
        nonlocal n
        n += 1
        frames.append(SimFrame(cam, at, payloads, seed * 100_000 + n))

    for cam, cinema, room, tz in cameras:
        zone = ZoneInfo(tz)
        for si, start in enumerate(SESSIONS):
            session = evening.strftime("%Y%m%d") + "-" + start.strftime("%H%M")
            t0 = datetime.combine(evening, start, zone)
            arrivals = sorted(t0 - timedelta(minutes=rng.triangular(-8, 35, 12)) for _ in range(tickets_per_session))
            for k, at in enumerate(arrivals):
                ticket = f"{cinema[:2]}{room}{si}{k:03d}{rng.randrange(16**4):04x}"
                unknown = rng.random() < 0.04
                if not unknown:
                    sold.add(ticket)
                seat = f"{'ABCDEFGH'[k % 8]}{k // 8 + 1}"
                text = payload(rng.randrange(3), ticket, cinema, room, session, seat)
                visits = [at]
                if rng.random() < 0.05:  # the same ticket shown again later: re-use
                    visits.append(at + timedelta(minutes=rng.uniform(20, 40)))
                for visit in visits:
                    shots = [visit + timedelta(milliseconds=400 * j) for j in range(rng.randint(3, 7))]
                    for shot in shots:  # consecutive frames while walking past
                        emit(cam, shot.astimezone(UTC), (text,))
                    first_seen.setdefault((ticket, f"{cinema}/{room}", session), visit)
                    # one box-office message per (camera, ticket, dedup bucket): see ingest.records
                    for _ in {time_bucket(shot, dedup_window_s) for shot in shots}:
                        if unknown:
                            sc.box_office["unknown_ticket"] += 1
                        else:
                            sc.box_office["already_used" if ticket in entered else "accepted"] += 1
                            entered.add(ticket)
            # quiet gap: empty frames, and a few codes that are not tickets (posters, phones)
            for _ in range(12):
                at = t0 + timedelta(minutes=rng.uniform(5, 80))
                emit(cam, at.astimezone(UTC), ())
            for _ in range(2):
                at = t0 - timedelta(minutes=rng.uniform(0, 40))
                emit(cam, at.astimezone(UTC), (f"https://promo.example.org/popcorn?c={rng.randrange(10**6)}",))
                sc.invalid_reads += 1

    zones = {f"{c}/{r}": ZoneInfo(tz) for _, c, r, tz in cameras}
    for (_ticket, room_key, _session), at in first_seen.items():
        local = at.astimezone(zones[room_key])
        cinema, room = room_key.split("/")
        sc.entries[(cinema, local.date().isoformat(), local.hour)] += 1
        sc.room_entries[(cinema, room, local.date().isoformat(), local.hour)] += 1
    frames.sort(key=lambda f: (f.captured_at, f.camera_id))
    return sc
