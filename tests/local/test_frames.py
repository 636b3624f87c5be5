"""Synthetic frames: deterministic by seed, codes readable, sizes respected."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from ingest.decode import decode_frame
from local.frames import Placement, render_frame


def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    a = render_frame(["TKT:REX:R01:S20261130-2000:t1:A1"], seed=7, size=(640, 360))
    assert a == render_frame(["TKT:REX:R01:S20261130-2000:t1:A1"], seed=7, size=(640, 360))
    assert a != render_frame(["TKT:REX:R01:S20261130-2000:t1:A1"], seed=8, size=(640, 360))


def test_rendered_codes_are_readable_and_frame_has_requested_size():
    payloads = ["TKT:REX:R01:S20261130-2000:t1:A1", "TKT:REX:R01:S20261130-2000:t2:A2"]
    data = render_frame(payloads, seed=1, size=(960, 540), placements=[Placement(4), Placement(4, angle=15)])
    assert Image.open(io.BytesIO(data)).size == (960, 540)
    assert sorted(c.text for c in decode_frame(data)) == payloads


def test_code_too_big_for_its_slot_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        render_frame(["x" * 50] * 4, size=(320, 240), placements=[Placement(10)] * 4)
