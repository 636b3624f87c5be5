"""local.loadgen: unique frames that decode like the original, bounded runs, percentiles."""

from __future__ import annotations

import pytest

from ingest.decode import decode_frame
from local.frames import render_frame
from local.loadgen import LoadGenerator, percentile, ticket_payload, unique_jpeg
from stream.schema import frame_id


def test_unique_jpeg_changes_the_frame_id_but_not_the_codes():
    jpeg = render_frame([ticket_payload(1)], seed=1, size=(320, 240))
    a, b = unique_jpeg(jpeg, "run#1"), unique_jpeg(jpeg, "run#2")
    assert len({frame_id("c", jpeg), frame_id("c", a), frame_id("c", b)}) == 3
    assert [c.text for c in decode_frame(a)] == [c.text for c in decode_frame(jpeg)] == [ticket_payload(1)]
    with pytest.raises(ValueError, match="not a JPEG"):
        unique_jpeg(b"\x89PNG....", "x")


def test_percentile_is_nearest_rank():
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.99) == 99.0 and percentile([], 0.5) == 0.0


def test_a_run_must_be_bounded():
    gen = LoadGenerator("http://127.0.0.1:9", {"c": "k"}, [object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="bounded"):
        gen.run()
