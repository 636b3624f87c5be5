"""Ticket payload parsing: the three spellings of the default format, flagged failures, pluggable parsers."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.tickets import DEFAULT_PARSERS, TicketFields, TicketFormatError, parse_ticket

EXPECTED = dict(ticket_id="a1b2", cinema="REX", room="3", session_id="20261130-2015", seat="F12")


@pytest.mark.parametrize(
    ("payload", "fmt"),
    [
        ("TKT:REX:R03:S20261130-2015:a1b2:F12", "tkt"),
        ('{"t":"a1b2","c":"rex","r":3,"s":"20261130-2015","seat":"F12"}', "json"),
        ("https://tickets.example.org/v?c=rex&r=3&s=20261130-2015&t=a1b2&seat=F12", "url"),
    ],
)
def test_default_format_spellings_parse_to_the_same_fields(payload, fmt):
    parsed = parse_ticket(payload)
    assert parsed.valid and parsed.error is None
    f = parsed.fields
    assert f.format == fmt
    assert (f.ticket_id, f.cinema, f.room, f.session_id, f.seat) == tuple(EXPECTED.values())
    assert f.session_start == datetime(2026, 11, 30, 20, 15)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("hello world", "not a known ticket format"),
        ("TKT:REX:R03:S20261330-2015:a1b2:F12", "not a real date"),
        ("TKT:REX:R03:20261130-2015:a1b2:F12", "must start with S"),
        ("TKT:REX:Rx:S20261130-2015:a1b2:F12", "room"),
        ("TKT:REX:R03:S20261130-2015:a1b2", "6 parts"),
        ('{"t":"a1"}', "keys t, c, r and s"),
        ("{not json", "not valid JSON"),
        ("https://x.org/v?c=rex", "query parameters"),
        ("TKT:REX:R03:S20261130-2015:a b:F12", "ticket id"),
    ],
)
def test_bad_payload_is_flagged_with_a_reason_not_raised(payload, reason):
    parsed = parse_ticket(payload)
    assert not parsed.valid
    assert reason in parsed.error


def test_custom_parser_is_tried_before_the_defaults():
    def chain_x(text: str) -> TicketFields:
        if not text.startswith("X|"):
            raise TicketFormatError("not chain X", recognised=False)
        _, tid, cinema, room, sess = text.split("|")
        return TicketFields("chain-x", tid, cinema, room, sess, datetime.strptime(sess, "%Y%m%d-%H%M"))

    parsed = parse_ticket("X|t9|ODEON|2|20261201-1800", parsers=(chain_x, *DEFAULT_PARSERS))
    assert parsed.fields.format == "chain-x" and parsed.fields.ticket_id == "t9"
    assert parse_ticket("TKT:REX:R03:S20261130-2015:a1b2:F12", parsers=(chain_x, *DEFAULT_PARSERS)).valid


@given(st.text(max_size=300))
def test_any_text_parses_or_is_flagged_never_raises(text):
    parsed = parse_ticket(text)
    assert parsed.valid != (parsed.error is not None)
