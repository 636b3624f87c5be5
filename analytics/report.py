"""The peak report: one self-contained HTML page with the hourly entries chart of every room.

For each cinema: a bar chart per room of the entries in each LOCAL hour (summed over the selected days), the
peak hour drawn in a contrasting colour and labelled; then the day summary and the peak table
(``daily_summary`` and ``hourly_peak``).  Charts are PNG images rendered by matplotlib and embedded as
``data:`` URIs: the page needs no network, no JavaScript and no other file.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analytics.query import QueryResult, run_view

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

BAR_COLOUR = "#8fb3d9"
PEAK_COLOUR = "#d62728"
"""Colour of the peak hour's bar (tests look for it in a browser screenshot)."""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.5rem; border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
p.meta { color: #666; }
img.chart { max-width: 100%; height: auto; display: block; margin: 1rem 0; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .9rem; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #e5e5e5; text-align: right; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
tr.cinema td { font-weight: 600; background: #fafafa; }
.peak { color: #d62728; font-weight: 600; }
"""


def _hour_label(hour: int | None) -> str:
    return "—" if hour is None else f"{hour:02d}:00–{(hour + 1) % 24:02d}:00"


def _chart_png(cinema: str, rooms: dict[str, list[int]], days: int) -> bytes:
    """PNG of one bar chart per room (entries per local hour), peak hour(s) highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    names = sorted(rooms)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.4 * len(names) + 0.6), squeeze=False, sharex=True)
    for ax, room in zip(axes[:, 0], names, strict=True):
        counts = rooms[room]
        peak = max(counts)
        colours = [PEAK_COLOUR if peak > 0 and c == peak else BAR_COLOUR for c in counts]
        ax.bar(range(24), counts, color=colours, width=0.8)
        for h, c in enumerate(counts):
            if peak > 0 and c == peak:
                ax.annotate(str(c), (h, c), ha="center", va="bottom", fontsize=9, color=PEAK_COLOUR)
        ax.set_title(f"{cinema} · room {room}", loc="left", fontsize=11)
        ax.set_ylabel("entries" if days == 1 else f"entries\n({days} days)")
        ax.set_ylim(0, max(1, peak) * 1.25)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.spines[["top", "right"]].set_visible(False)
    axes[0, 0].legend(
        handles=[Patch(color=PEAK_COLOUR, label="peak hour"), Patch(color=BAR_COLOUR, label="other hours")],
        loc="upper left",
        fontsize=8,
        frameon=False,
    )
    axes[-1, 0].set_xticks(range(24), [f"{h:02d}" for h in range(24)])
    axes[-1, 0].set_xlabel("local hour")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _table(headers: list[str], rows: list[list[str]], text_columns: set[int], row_classes: list[str]) -> str:
    def cell(tag: str, i: int, v: str) -> str:
        cls = ' class="text"' if i in text_columns else ""
        return f"<{tag}{cls}>{v}</{tag}>"

    head = "".join(cell("th", i, html.escape(h)) for i, h in enumerate(headers))
    body = "".join(
        f'<tr class="{c}">' + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>"
        for r, c in zip(rows, row_classes, strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _peak_table(rows: list[dict[str, Any]]) -> str:
    headers = ["Day", "Room", "Peak hour", "Peak entries", "Day entries", "Share of day"]
    cells, classes = [], []
    for r in rows:
        share = "—" if r["peak_share"] is None else f"{100 * r['peak_share']:.0f}%"
        cells.append(
            [
                html.escape(str(r["day"])),
                "all rooms" if r["room_id"] is None else html.escape(r["room_id"]),
                f'<span class="peak">{_hour_label(r["peak_hour"])}</span>',
                str(r["peak_entries"]),
                str(r["day_entries"]),
                share,
            ]
        )
        classes.append("cinema" if r["room_id"] is None else "room")
    return _table(headers, cells, {0, 1, 2}, classes)


def _summary_table(rows: list[dict[str, Any]]) -> str:
    headers = ["Day", "Entries", "Re-entries", "Reads", "Not valid tickets", "Peak hour", "Busiest room"]
    cells = []
    for r in rows:
        share = "—" if r["invalid_share"] is None else f"{100 * r['invalid_share']:.1f}%"
        room = "—" if r["busiest_room"] is None else f"{html.escape(r['busiest_room'])} ({r['busiest_room_entries']})"
        cells.append(
            [
                html.escape(str(r["day"])),
                str(r["entries"]),
                str(r["reentries"]),
                str(r["reads"]),
                share,
                _hour_label(r["peak_hour"]),
                room,
            ]
        )
    return _table(headers, cells, {0, 5, 6}, ["day"] * len(cells))


def build_report(
    con: duckdb.DuckDBPyConnection,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    cinema: str | None = None,
) -> str:
    """HTML of the peak report over local days ``date_from``..``date_to`` (inclusive) and optionally one cinema."""
    filters = {"date_from": date_from, "date_to": date_to, "cinema": cinema}
    hourly: QueryResult = run_view(con, "hourly_entries", **filters)
    peaks = run_view(con, "hourly_peak", **filters).as_dicts()
    summary = run_view(con, "daily_summary", **filters).as_dicts()
    profile: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0] * 24))
    days: dict[str, set[date]] = defaultdict(set)
    for r in hourly.as_dicts():
        profile[r["cinema_id"]][r["room_id"]][r["hour"]] += r["entries"]
        days[r["cinema_id"]].add(r["day"])
    all_days = sorted(set().union(*days.values())) if days else []
    period = f"{all_days[0]} to {all_days[-1]}" if all_days else "no data"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Monuv QR · room peaks</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Room peaks: entries per local hour</h1>",
        f'<p class="meta">Local days {html.escape(period)} · generated {datetime.now():%Y-%m-%d %H:%M} · '
        "an entry is a ticket's first read in a room and session · times in each cinema's local time zone</p>",
    ]
    if not profile:
        parts.append('<p class="empty">No activity in the selected period.</p>')
    for cin in sorted(profile):
        n_days = len(days[cin])
        png = _chart_png(cin, profile[cin], n_days)
        alt = f"Entries per local hour for each room of cinema {cin}, peak hour highlighted"
        parts += [
            f'<section class="cinema" id="cinema-{html.escape(cin)}">',
            f"<h2>Cinema {html.escape(cin)}</h2>",
            f'<img class="chart" alt="{html.escape(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode("ascii")}">',
            "<h3>Days</h3>",
            _summary_table([r for r in summary if r["cinema_id"] == cin]),
            "<h3>Peak hours</h3>",
            _peak_table([r for r in peaks if r["cinema_id"] == cin]),
            "</section>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    con: duckdb.DuckDBPyConnection,
    out: Path,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    cinema: str | None = None,
) -> Path:
    """Write the report to ``out`` (parent directories created); returns ``out``."""
    page = build_report(con, date_from=date_from, date_to=date_to, cinema=cinema)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    log.info("wrote report %s (%d bytes)", out, len(page))
    return out
