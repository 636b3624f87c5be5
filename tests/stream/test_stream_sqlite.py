"""The SQLite stream and queue: durability, checkpoints, FIFO delivery, dead letters, locks, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stream.ports import PublishError, QueueMessage, StreamEntry
from stream.sqlite import DEDUP_WINDOW_S, DataDirLocked, OwnerLock, SqliteStore, StoreError

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    s = SqliteStore(tmp_path / "data" / "store.db", clock=clock, visibility_s=30, max_attempts=3)
    yield s
    s.close()


def msg(body: str, group: str = "cam-1", dedup: str | None = None) -> QueueMessage:
    return QueueMessage(body.encode(), group, dedup or body)


def test_stream_put_read_head_and_reopen(store, tmp_path, clock):
    store.put([StreamEntry("a", b"1"), StreamEntry("b", b"2")])
    store.put([StreamEntry("a", b"3")])
    assert store.head() == 3
    rows = store.read(1, 10)
    assert [(r.seq, r.partition_key, r.data) for r in rows] == [(2, "b", b"2"), (3, "a", b"3")]
    assert rows[0].arrived_at == clock.t
    store.close()
    again = SqliteStore(tmp_path / "data" / "store.db")
    assert [r.data for r in again.read(0, 10)] == [b"1", b"2", b"3"]
    again.trim(2)
    assert again.head() == 3 and [r.seq for r in again.read(0, 10)] == [3]
    again.close()


def test_publish_writes_entries_and_messages_in_one_transaction(store):
    store.publish([StreamEntry("a", b"1")], [msg("m1"), msg("m1")])
    assert store.head() == 1 and store.queue_depth()["ready"] == 1  # the duplicate message is dropped, as by send


def test_publish_is_all_or_nothing_when_the_queue_part_fails(store):
    import sqlite3

    db = sqlite3.connect(store.path, isolation_level=None)
    db.execute("CREATE TRIGGER queue_full BEFORE INSERT ON queue BEGIN SELECT RAISE(ABORT, 'queue full'); END")
    db.close()
    with pytest.raises(PublishError, match="queue full") as raised:
        store.publish([StreamEntry("a", b"1"), StreamEntry("b", b"2")], [msg("m1")])
    assert raised.value.failed == 2
    assert store.head() == 0 and store.read(0, 10) == []  # the stream entries were rolled back with it


def test_checkpoint_intent_and_commit(store):
    assert store.checkpoint("etl").seq == 0
    store.begin_batch("etl", 10)
    assert store.checkpoint("etl").pending_to == 10
    store.commit("etl", 10)
    cp = store.checkpoint("etl")
    assert (cp.seq, cp.pending_to) == (10, None)
    with pytest.raises(StoreError, match="move back"):
        store.commit("etl", 5)


def test_queue_dedups_within_window_only(store, clock):
    store.send([msg("a"), msg("a")])
    store.send([msg("a")])
    assert store.queue_depth()["ready"] == 1
    clock.t += DEDUP_WINDOW_S + 1
    store.send([msg("a")])
    assert store.queue_depth()["ready"] == 2


def test_queue_delivers_one_per_group_in_order_with_visibility_timeout(store, clock):
    store.send([msg("g1-a", "g1"), msg("g1-b", "g1"), msg("g2-a", "g2")])
    got = store.receive(10)
    assert [m.body for m in got] == [b"g1-a", b"g2-a"]  # g1-b waits behind g1-a
    assert store.receive(10) == []
    clock.t += 31  # visibility expired without ack: redelivered, attempt 2
    again = store.receive(10)
    assert [(m.body, m.attempts) for m in again] == [(b"g1-a", 2), (b"g2-a", 2)]
    assert not store.ack(got[0].receipt)  # stale receipt
    assert store.ack(again[0].receipt)
    assert [m.body for m in store.receive(10)] == [b"g1-b"]


def test_nacked_message_goes_dead_after_max_attempts(store, clock):
    store.send([msg("x")])
    for _ in range(3):
        (m,) = store.receive()
        assert store.nack(m.receipt, error="box office 503")
    assert store.receive() == []
    assert store.queue_depth()["dead"] == 1
    dead = store.dead_letters()
    assert dead[0][1] == b"x" and dead[0][3] == 3 and dead[0][4] == "box office 503"
    assert store.redrive() == 1 and store.receive()[0].attempts == 1


def test_nack_with_delay_holds_back_the_group(store, clock):
    store.send([msg("a", "g"), msg("b", "g")])
    (m,) = store.receive()
    store.nack(m.receipt, delay_s=10)
    assert store.receive() == []
    clock.t += 11
    assert [x.body for x in store.receive()] == [b"a"]


def test_writer_process_and_reader_share_the_file(tmp_path):
    db = tmp_path / "store.db"
    reader = SqliteStore(db)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from stream.sqlite import SqliteStore
        from stream.ports import StreamEntry
        s = SqliteStore({str(db)!r})
        for i in range(200):
            s.put([StreamEntry("k", str(i).encode())])
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    seen: list[bytes] = []
    while proc.poll() is None or len(seen) < 200:
        rows = reader.read(len(seen), 50)
        seen += [r.data for r in rows]
        if proc.poll() is not None and not rows and len(seen) < 200:
            break
    assert proc.wait() == 0
    assert seen == [str(i).encode() for i in range(200)]


def test_corrupt_file_raises_clear_error(tmp_path):
    bad = tmp_path / "store.db"
    bad.write_bytes(b"this is not a sqlite database at all" * 100)
    with pytest.raises(StoreError, match="corrupt or not a database"):
        SqliteStore(bad)


def test_put_on_locked_database_raises_publish_error(tmp_path):
    import sqlite3

    db = tmp_path / "store.db"
    store = SqliteStore(db, busy_timeout_s=0.1)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(PublishError, match="locked"):
            store.put([StreamEntry("k", b"x")])
    finally:
        holder.execute("ROLLBACK")
    store.put([StreamEntry("k", b"x")])
    assert store.head() == 1


def test_second_owner_of_data_dir_is_refused_until_the_first_dies(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from stream.sqlite import OwnerLock
        OwnerLock({str(tmp_path)!r}).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(DataDirLocked, match=f"pid {proc.pid}"):
            OwnerLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    with OwnerLock(tmp_path):  # the kernel released the dead owner's lock
        pass


def test_expiring_old_dedup_ids_uses_an_index_not_a_table_scan(store, tmp_path):
    """Every send purges expired dedup ids: without the index that is a full scan of 5 minutes of tickets."""
    import sqlite3

    store.send([msg("a")])
    db = sqlite3.connect(store.path)
    plan = " ".join(r[-1] for r in db.execute("EXPLAIN QUERY PLAN DELETE FROM queue_dedup WHERE sent_at < 0"))
    db.close()
    assert "USING INDEX queue_dedup_sent" in plan or "USING COVERING INDEX queue_dedup_sent" in plan, plan
