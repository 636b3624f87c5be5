"""Local stream retention: entries the ETL has committed to the lake are deleted, so stream.db stays small."""

from __future__ import annotations

import time

from ingest.cameras import Registry
from local.pipeline import LocalPipeline, ServeOptions
from stream.ports import StreamEntry


def _pipeline(tmp_path, retention_s: float) -> LocalPipeline:
    registry = Registry()
    registry.add("door-1", "REX", "1")
    registry.save(tmp_path / "cameras.json")
    return LocalPipeline(ServeOptions(data=tmp_path, port=0, workers=1, etl_batch_seconds=0.1,
                                      stream_retention_s=retention_s))  # fmt: skip


def _wait_committed(pipe: LocalPipeline, seq: int) -> None:
    deadline = time.monotonic() + 20
    while pipe.etl.status().committed_seq < seq and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipe.etl.status().committed_seq == seq


def test_entries_in_the_lake_are_deleted_from_the_stream(tmp_path):
    with _pipeline(tmp_path, retention_s=0.2) as pipe:
        pipe.store.put([StreamEntry("door-1", b'{"not": "a record"}')])  # lands in quarantine
        _wait_committed(pipe, 1)
        assert list((tmp_path / "quarantine").rglob("*.parquet")), "the entry is in the lake"
        deadline = time.monotonic() + 10
        while pipe.store.read(0, 10) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipe.store.read(0, 10) == []
        assert pipe.store.head() == 1  # sequence numbers keep growing after a trim


def test_retention_zero_keeps_the_whole_stream(tmp_path):
    with _pipeline(tmp_path, retention_s=0) as pipe:
        pipe.store.put([StreamEntry("door-1", b'{"not": "a record"}')])
        _wait_committed(pipe, 1)
        time.sleep(0.5)
        assert [r.seq for r in pipe.store.read(0, 10)] == [1]
