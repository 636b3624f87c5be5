"""Benchmark the analytics views on DuckDB over a synthetic month, and estimate Athena's bytes scanned.

    .venv/bin/python bench/bench_views.py                 # 10 million reads, 50 cinemas, 31 days
    .venv/bin/python bench/bench_views.py --reads 200000  # quick run

1. Generates (once, cached under ``bench/.work/``) a lake in the ETL layout with ``stream.schema.arrow_schema``:
   reads (each ticket seen in ~8 consecutive frames, 3 % non-ticket codes, 0.5 % re-sent duplicates), one frame
   per read plus 10 % frames without code, one box-office outcome per entry.  Traffic follows an evening-peaked
   local-time profile in five time zones.
2. Times every analyst view on DuckDB, as ratios to a baseline measured in the same run: a plain
   ``GROUP BY cinema_id`` scan of ``reads``.  First the shared views are materialized on one connection (each
   build timed), then every view's full result is timed on it (``cached``; with ``--one-day`` also one cinema
   and one local day); then every view on a NEW connection (``new conn``: what ``monuv-qr query VIEW`` pays,
   materializing only the shared views it reads); with ``--live VIEW ...`` also without materialization.  A
   query running longer than ``--timeout`` is interrupted and reported as such (the run stays bounded).
3. Estimates the bytes Athena would scan for "one cinema, one local day": the columns each table scan projects
   (DuckDB's plan, a proxy for Trino's column pruning) times their compressed Parquet column-chunk sizes, over
   (a) every partition -- a view has no ``dt`` predicate, so Athena cannot prune -- and (b) the 24 hourly
   partitions of that local day, as a query with ``dt``/``hour`` predicates on the tables would read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analytics.query import run_view
from analytics.sql import ANALYST_VIEWS, load_views, materialize, open_lake, shared_views
from stream.schema import TABLE, arrow_schema

WORK = Path(__file__).resolve().parent / ".work"
ZONES = ("America/Sao_Paulo", "Europe/Lisbon", "Europe/Madrid", "America/New_York", "Asia/Kolkata")
# share of a day's entries per local hour: matinees, evening peak around 19-21 h, late shows
PROFILE = np.array([2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 6, 7, 8, 10, 13, 16, 15, 11, 7, 4], dtype=float)
PROFILE /= PROFILE.sum()
READS_PER_ENTRY = 8.0
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
ATHENA_USD_PER_TB = 5.0
ATHENA_MIN_BYTES = 10 * 1024 * 1024


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def hex_ids(rng: np.random.Generator, n: int, nbytes: int = 16) -> pa.Array:
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    chars = np.empty((n, nbytes * 2), dtype=np.uint8)
    chars[:, 0::2], chars[:, 1::2] = HEX[raw >> 4], HEX[raw & 15]
    return pa.array(chars.view(f"S{nbytes * 2}").ravel()).cast(pa.string())


def pick(values: list[str], idx: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(idx))


def ts(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype("int64"), pa.timestamp("us", tz="UTC"))


def to_table(kind: str, cols: dict[str, pa.Array], n: int) -> pa.Table:
    schema = arrow_schema(kind)
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays([a.cast(f.type) for a, f in zip(arrays, schema, strict=True)], schema=schema)


def write_partitioned(root: Path, kind: str, table: pa.Table, name: str) -> int:
    """Write ``table`` split by UTC dt/hour of ``captured_at``; returns files written."""
    hours = pc.cast(table["captured_at"], pa.int64()).to_numpy() // 3_600_000_000
    order = np.argsort(hours, kind="stable")
    table, hours = table.take(pa.array(order)), hours[order]
    cuts = np.flatnonzero(np.diff(hours)) + 1
    files = 0
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(hours)], strict=True):
        t0 = datetime.fromtimestamp(int(hours[start]) * 3600, UTC)
        d = root / TABLE[kind] / f"dt={t0:%Y-%m-%d}" / f"hour={t0:%H}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(start, stop - start), d / f"{name}.parquet")
        files += 1
    return files


def generate(root: Path, n_reads: int, n_cinemas: int, days: int, first: date, seed: int) -> None:
    """Write the synthetic lake (see the module docstring) under ``root``."""
    rng = np.random.default_rng(seed)
    cinemas = [f"cine-{i:02d}" for i in range(n_cinemas)]
    tzs = [ZONES[i % len(ZONES)] for i in range(n_cinemas)]
    rooms = [int(r) for r in rng.integers(5, 11, n_cinemas)]
    weight = rng.uniform(0.5, 1.5, n_cinemas)
    weight /= weight.sum()
    entries_per_day = n_reads / READS_PER_ENTRY / days
    room_names = [f"R{r}" for r in range(1, 11)]
    cams = [f"{c}-R{r}-cam{k}" for c in cinemas for r in range(1, 11) for k in (1, 2)]
    written = 0
    for day_i in range(days):
        local_day = first + timedelta(days=day_i)
        n_entries = rng.poisson(entries_per_day * weight)
        cin = np.repeat(np.arange(n_cinemas), n_entries)
        e = len(cin)
        room = (rng.random(e) * np.array(rooms)[cin]).astype(int)
        cam = rng.integers(0, 2, e)
        local_hour = rng.choice(24, size=e, p=PROFILE)
        offset_s = np.array(
            [
                ZoneInfo(tz).utcoffset(datetime(local_day.year, local_day.month, local_day.day, 12)).total_seconds()
                for tz in tzs
            ]
        )
        day0 = datetime(local_day.year, local_day.month, local_day.day, tzinfo=UTC).timestamp()
        start_us = ((day0 + local_hour * 3600 + rng.uniform(0, 3600, e) - offset_s[cin]) * 1e6).astype(np.int64)
        valid = rng.random(e) >= 0.03
        ticket_ids = hex_ids(rng, e, 6)
        session_hour = np.minimum(local_hour + 1, 23)
        k = rng.geometric(1 / READS_PER_ENTRY, e)
        ent = np.repeat(np.arange(e), k)
        n = len(ent)
        within = np.arange(n) - np.repeat(np.cumsum(k) - k, k)
        captured = start_us[ent] + within * 500_000
        received = captured + (rng.lognormal(-0.5, 0.6, n) * 1e6).astype(np.int64)
        lake = received + rng.integers(30_000_000, 90_000_000, n)
        where = {
            "cinema_id": pick(cinemas, cin[ent]),
            "room_id": pick(room_names, room[ent]),
            "camera_id": pick(cams, (cin[ent] * 10 + room[ent]) * 2 + cam[ent]),
            "tz": pick(tzs, cin[ent]),
        }
        v = valid[ent]
        tid = ticket_ids.take(pa.array(ent))
        session = pc.binary_join_element_wise(where["cinema_id"], where["room_id"], pa.scalar(f"{local_day}"), "-")
        frame_ids = hex_ids(rng, n)
        start_local = (day0 + session_hour[ent] * 3600) * 1e6
        reads = {
            "schema_version": pa.array(np.ones(n, np.int32)),
            "kind": pick(["read"], np.zeros(n, int)),
            "read_id": hex_ids(rng, n),
            "frame_id": frame_ids,
            **where,
            "captured_at": ts(captured),
            "received_at": ts(received),
            "text": pc.if_else(v, pc.binary_join_element_wise("TKT", tid, session, "|"), "https://promo.example/qr"),
            "symbology": pick(["QRCode"], np.zeros(n, int)),
            "decoder": pick(["zxing"], np.zeros(n, int)),
            "ticket_valid": pa.array(v),
            "ticket_format": pc.if_else(v, "tkt", pa.scalar(None, pa.string())),
            "ticket_error": pc.if_else(v, pa.scalar(None, pa.string()), "not a ticket"),
            "ticket_id": pc.if_else(v, tid, pa.scalar(None, pa.string())),
            "ticket_cinema": pc.if_else(v, where["cinema_id"], pa.scalar(None, pa.string())),
            "ticket_room": pc.if_else(v, where["room_id"], pa.scalar(None, pa.string())),
            "session_id": pc.if_else(v, session, pa.scalar(None, pa.string())),
            "session_start": pc.if_else(
                v, pa.array(start_local.astype(np.int64), pa.timestamp("us")), pa.scalar(None, pa.timestamp("us"))
            ),
            "seat": pc.if_else(v, "H12", pa.scalar(None, pa.string())),
            "lake_at": ts(lake),
        }
        read_table = to_table("read", reads, n)
        # frames: one per read, plus 10 % without any code, 0.2 % rejected
        extra = int(n * 0.1)
        pos = rng.integers(0, n, extra)
        f_captured = np.r_[captured, captured[pos] + 250_000]
        f_n = n + extra
        outcome = np.where(np.arange(f_n) < n, "ok", "no_code").astype(object)
        rejected = rng.random(f_n) < 0.002
        outcome[rejected] = "rejected"
        frames = {
            "schema_version": pa.array(np.ones(f_n, np.int32)),
            "kind": pick(["frame"], np.zeros(f_n, int)),
            "frame_id": pa.concat_arrays([frame_ids, hex_ids(rng, extra)]),
            **{key: pa.concat_arrays([a, a.take(pa.array(pos))]) for key, a in where.items()},
            "captured_at": ts(f_captured),
            "received_at": ts(np.r_[received, received[pos] + 250_000]),
            "image_format": pick(["jpeg"], np.zeros(f_n, int)),
            "image_bytes": pa.array(rng.integers(40_000, 160_000, f_n)),
            "width": pa.array(np.full(f_n, 1280, np.int32)),
            "height": pa.array(np.full(f_n, 720, np.int32)),
            "codes": pa.array((np.arange(f_n) < n).astype(np.int32)),
            "decode_ms": pa.array(rng.gamma(4.0, 5.0, f_n)),
            "outcome": pa.array(outcome.astype(str)),
            "reject_reason": pa.array(np.where(rejected, "too_many_bytes", None).tolist(), pa.string()),
            "lake_at": ts(np.r_[lake, lake[pos] + 250_000]),
        }
        frame_table = to_table("frame", frames, f_n)
        first_read = np.cumsum(k) - k
        b = read_table.take(pa.array(first_read[valid]))
        m = b.num_rows
        out = rng.choice(["accepted", "already_used", "unknown_ticket"], size=m, p=[0.97, 0.02, 0.01])
        box = {
            "schema_version": pa.array(np.ones(m, np.int32)),
            "kind": pick(["box_office"], np.zeros(m, int)),
            "outcome_id": hex_ids(rng, m),
            **{c: b[c] for c in ("read_id", "frame_id", "camera_id", "cinema_id", "room_id", "tz", "ticket_id")},
            "captured_at": b["captured_at"],
            "decided_at": b["received_at"],
            "outcome": pa.array(out),
            "http_status": pa.array(np.where(out == "accepted", 200, 409).astype(np.int32)),
            "lake_at": b["lake_at"],
        }
        box_table = to_table("box_office", box, m)
        name = f"day-{day_i:02d}"
        written += write_partitioned(root, "read", read_table, name)
        written += write_partitioned(root, "frame", frame_table, name)
        written += write_partitioned(root, "box_office", box_table, name)
        dup = np.flatnonzero(rng.random(n) < 0.005)  # camera retries: the same rows again, 5 min later
        again = read_table.take(pa.array(dup)).set_column(
            read_table.schema.get_field_index("lake_at"), "lake_at", ts(lake[dup] + 300_000_000)
        )
        written += write_partitioned(root, "read", again, f"{name}-retry")
        log(f"day {day_i + 1}/{days} {local_day}: {n:,} reads, {f_n:,} frames, {m:,} outcomes ({written} files)")


def column_bytes(root: Path) -> dict[str, dict[tuple[str, int], dict[str, int]]]:
    """table -> (dt, hour) -> column -> compressed bytes, from the Parquet footers."""
    out: dict[str, dict[tuple[str, int], dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for f in root.glob("*/dt=*/hour=*/*.parquet"):
        table, dt, hour = f.parts[-4], f.parts[-3][3:], int(f.parts[-2][5:])
        md = pq.ParquetFile(f).metadata
        for rg in range(md.num_row_groups):
            group = md.row_group(rg)
            for c in range(group.num_columns):
                col = group.column(c)
                out[table][(dt, hour)][col.path_in_schema.split(".")[0]] += col.total_compressed_size
    return out


def scans(con, sql: str, params: list) -> list[tuple[str, list[str]]]:
    """(table, projected columns) of every Parquet scan in DuckDB's physical plan of ``sql``."""
    con.execute("PRAGMA explain_output='physical_only'")
    text = con.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchall()[0][1]
    found: list[tuple[str, list[str]]] = []

    def walk(node: dict) -> None:
        info = node.get("extra_info", {})
        if node.get("name") == "READ_PARQUET":
            cols = [c for c in info.get("Projections", []) if c not in ("dt", "hour")]
            table = "box_office" if "outcome_id" in cols else "reads" if "read_id" in cols else "frames"
            found.append((table, cols))
        for child in node.get("children", []):
            walk(child)

    for root_node in json.loads(text):
        walk(root_node)
    return found


def local_day_partitions(day: date, tz: str) -> set[tuple[str, int]]:
    zone = ZoneInfo(tz)
    parts = set()
    for h in range(24):
        t = datetime(day.year, day.month, day.day, h, tzinfo=zone).astimezone(UTC)
        parts.add((f"{t:%Y-%m-%d}", t.hour))
        parts.add((f"{t + timedelta(minutes=59):%Y-%m-%d}", (t + timedelta(minutes=59)).hour))
    return parts


def timed(con, fn, repeat: int, timeout: float) -> float | None:
    """Median wall time of ``fn`` over ``repeat`` runs; None when a run exceeded ``timeout`` (interrupted)."""
    runs = []
    for _ in range(repeat):
        timer = threading.Timer(timeout, con.interrupt)
        timer.start()
        t = time.perf_counter()
        try:
            fn()
        except duckdb.InterruptException:
            log(f"  interrupted after {timeout:.0f} s")
            return None
        finally:
            timer.cancel()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=10_000_000, help="synthetic reads (default 10 million)")
    ap.add_argument("--cinemas", type=int, default=50)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--repeat", type=int, default=1, help="runs per query (median)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=900, help="give up on a query after this many seconds")
    ap.add_argument("--one-day", action="store_true", help="also time each view filtered to one cinema and day")
    ap.add_argument("--no-timing", action="store_true", help="only the baseline and the Athena byte estimates")
    ap.add_argument(
        "--live",
        nargs="*",
        default=[],
        choices=ANALYST_VIEWS,
        metavar="VIEW",
        help="also time these views without materialization (every view inlined; slow at 10 M)",
    )
    ap.add_argument("--out", type=Path, help="write results as JSON here too")
    args = ap.parse_args()
    first = date(2026, 10, 1)
    root = WORK / f"lake-r{args.reads}-c{args.cinemas}-d{args.days}-s{args.seed}"
    if not (root / "DONE").exists():
        log(f"generating {args.reads:,} reads into {root} (cached for later runs)")
        t = time.perf_counter()
        generate(root, args.reads, args.cinemas, args.days, first, args.seed)
        (root / "DONE").write_text("ok\n")
        log(f"generated in {time.perf_counter() - t:.0f} s")
    size = sum(f.stat().st_size for f in root.rglob("*.parquet"))
    con = open_lake(root)
    n_reads = con.sql("SELECT count(*) FROM reads").fetchall()[0][0]
    log(f"lake: {n_reads:,} read rows, {size / 1e6:,.0f} MB of Parquet")
    cinema, tz = con.sql("SELECT cinema_id, any_value(tz) FROM reads GROUP BY 1 ORDER BY 1 LIMIT 1").fetchall()[0]
    day = first + timedelta(days=args.days // 2)
    log("baseline: SELECT cinema_id, count(*) FROM reads GROUP BY cinema_id")
    base = timed(con, lambda: con.sql("SELECT cinema_id, count(*) FROM reads GROUP BY cinema_id").fetchall(), 3, 600)
    count_star = timed(con, lambda: con.sql("SELECT count(*) FROM reads").fetchall(), 3, 600)
    sizes = column_bytes(root)
    pruned = local_day_partitions(day, tz)
    results = {
        "reads": n_reads,
        "parquet_bytes": size,
        "baseline_s": base,
        "count_star_s": count_star,
        "cinema": cinema,
        "day": str(day),
        "timeout_s": args.timeout,
        "views": {},
    }
    for view in ANALYST_VIEWS:  # Athena estimate first: cheap (plan + Parquet footers)
        plan = scans(con, f"SELECT * FROM {view} WHERE cinema_id = ? AND day = ?", [cinema, day])
        results["views"][view] = {
            "scans": len(plan),
            "athena_bytes_no_pruning": sum(sizes[t][p].get(c, 0) for t, cols in plan for p in sizes[t] for c in cols),
            "athena_bytes_day_partitions": sum(
                sizes[t][p].get(c, 0) for t, cols in plan for p in pruned if p in sizes[t] for c in cols
            ),
        }
    results["load_before"] = os.getloadavg()[0]
    results["builds"] = {}
    for view in (v.name for v in load_views() if v.name in shared_views()) if not args.no_timing else ():
        log(f"materialize {view} (once per connection)")
        t = time.perf_counter()
        materialize(con, [view])
        results["builds"][view] = time.perf_counter() - t
    for view in ANALYST_VIEWS if not args.no_timing else ():
        r = results["views"][view]
        log(f"view {view}: full result, shared views already materialized")
        r["warm_s"] = timed(con, lambda v=view: run_view(con, v), args.repeat, args.timeout)
        if args.one_day:
            log(f"view {view}: one cinema, one local day, shared views already materialized")
            r["one_day_s"] = timed(
                con, lambda v=view: run_view(con, v, date_from=day, date_to=day, cinema=cinema), args.repeat, 600
            )
    for view in ANALYST_VIEWS if not args.no_timing else ():
        log(f"view {view}: full result on a new connection (materializes what it reads)")
        fresh = open_lake(root)
        results["views"][view]["cold_s"] = timed(fresh, lambda v=view, c=fresh: run_view(c, v), 1, args.timeout)
        fresh.close()
    for view in args.live:
        log(f"view {view}: full result without materialization (every view inlined, as before)")
        live = open_lake(root)
        results["views"][view]["live_s"] = timed(
            live, lambda v=view, c=live: run_view(c, v, cache=False), 1, args.timeout
        )
        live.close()
    results["load_after"] = os.getloadavg()[0]
    print()
    print(f"DuckDB {n_reads:,} reads, {args.cinemas} cinemas, {args.days} days; {size / 1e6:,.0f} MB Parquet")
    print(f"baseline GROUP BY scan of reads: {base:.2f} s   (count(*): {count_star:.3f} s)")
    print(f"load average (1 min): {results['load_before']:.1f} before timing, {results['load_after']:.1f} after")
    print(f"one cinema / one local day: {cinema} ({tz}) on {day}: {len(pruned)} hourly partitions of the lake")
    print()
    if results["builds"]:
        print("materialize once per connection:")
        for view, secs_ in results["builds"].items():
            print(f"  {view:<18}{secs_:>8.2f} s{secs_ / base:>7.1f} x base")
        print()

    def secs(r: dict, key: str) -> str:
        if key not in r:
            return "-"
        return f"> {args.timeout:.0f}" if r[key] is None else f"{r[key]:.2f}"

    def ratio(r: dict, key: str) -> str:
        return "-" if r.get(key) is None else f"{r[key] / base:.1f}"

    head = [("new conn s", "cold_s"), ("cached s", "warm_s"), ("1 day s", "one_day_s"), ("live s", "live_s")]
    print(f"{'view':<18}" + "".join(f"{h:>11}{'x base':>8}" for h, _ in head), end="")
    print(f"{'scans':>6}{'Athena MB, view':>17}{'Athena MB, dt/hour':>20}{'ratio':>7}")
    for view, r in results["views"].items():
        a, d = r["athena_bytes_no_pruning"], r["athena_bytes_day_partitions"]
        print(f"{view:<18}" + "".join(f"{secs(r, k):>11}{ratio(r, k):>8}" for _, k in head), end="")
        print(f"{r['scans']:>6}{a / 1e6:>17.1f}{d / 1e6:>20.2f}{a / max(d, 1):>7.0f}")
    print(f"\nAthena: ${ATHENA_USD_PER_TB}/TB scanned, at least 10 MB per query")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
