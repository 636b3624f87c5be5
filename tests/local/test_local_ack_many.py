"""stream.sqlite.SqliteStore.ack_many: the local forwarder settles a delivered batch in one transaction."""

from __future__ import annotations

from stream.ports import QueueMessage
from stream.sqlite import SqliteStore


def test_ack_many_deletes_every_delivered_message_and_ignores_stale_receipts(tmp_path):
    store = SqliteStore(tmp_path / "stream.db", visibility_s=0.0)
    store.send([QueueMessage(f"m{i}".encode(), f"cam-{i}", f"d{i}") for i in range(3)])
    first = store.receive(10)
    assert len(first) == 3  # one per group
    again = store.receive(10)  # visibility 0: received again, the first receipts are now stale
    assert store.ack_many([m.receipt for m in first]) == 0
    assert store.ack_many([again[0].receipt, again[1].receipt]) == 2
    assert store.ack_many([]) == 0
    assert store.queue_depth() == {"ready": 0, "inflight": 1, "dead": 0}
    store.close()
