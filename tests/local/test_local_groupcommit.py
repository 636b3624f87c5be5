"""local.groupcommit: concurrent requests share one durable transaction; failures answer 503."""

from __future__ import annotations

import threading
import time

import pytest

from local.groupcommit import CommittingStream, GroupCommitter, RecordingPorts, unavailable_response
from stream.ports import PublishError, QueueMessage, StreamEntry
from stream.sqlite import SqliteStore


class SlowStore:
    """Records each transaction (entries, messages); each takes 50 ms (an fsync) so that requests pile up."""

    def __init__(self, fail: bool = False) -> None:
        self.puts: list[int] = []
        self.sends: list[int] = []
        self.fail = fail

    def publish(self, entries, messages) -> None:
        time.sleep(0.05)
        if self.fail:
            raise PublishError("disk full", failed=len(entries))
        self.puts.append(len(entries))
        self.sends.append(len(messages))


def _commit_concurrently(committer: GroupCommitter, n: int) -> list[BaseException | None]:
    errors: list[BaseException | None] = [None] * n

    def one(i: int) -> None:
        try:
            committer.commit([StreamEntry(f"k{i}", b"x")], [QueueMessage(b"m", "g", f"d{i}")])
        except BaseException as e:
            errors[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return errors


def test_concurrent_commits_are_grouped_into_few_transactions_and_all_succeed():
    # one transaction per group holds both the stream entries and the queue messages
    store = SlowStore()
    committer = GroupCommitter(store).start()
    errors = _commit_concurrently(committer, 20)
    committer.stop()
    assert errors == [None] * 20
    assert sum(store.puts) == 20 and sum(store.sends) == 20
    assert len(store.puts) < 20  # grouped: fewer transactions than requests
    assert committer.requests == 20 and committer.groups == len(store.puts)


def test_a_failed_group_raises_publish_error_in_every_request_of_it():
    committer = GroupCommitter(SlowStore(fail=True)).start()
    errors = _commit_concurrently(committer, 5)
    committer.stop()
    assert all(isinstance(e, PublishError) for e in errors)
    answer = unavailable_response(errors[0])
    assert answer["statusCode"] == 503 and answer["headers"]["Retry-After"]


def test_commit_after_stop_is_refused_instead_of_hanging():
    committer = GroupCommitter(SlowStore()).start()
    committer.stop()
    with pytest.raises(PublishError, match="stopping"):
        committer.commit([StreamEntry("k", b"x")], [])


def test_committed_records_are_in_the_sqlite_store(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    committer = GroupCommitter(SqliteStore(tmp_path / "s.db")).start()
    ports = RecordingPorts()
    ports.put([StreamEntry("cam", b"r1"), StreamEntry("cam", b"r2")])
    ports.send([QueueMessage(b"m", "cam", "d1")])
    committer.commit(*ports.take())
    CommittingStream(committer).put([StreamEntry("cam", b"outcome")])
    committer.stop()
    assert ports.take() == ([], [])
    assert [r.data for r in store.read(0)] == [b"r1", b"r2", b"outcome"]
    assert store.queue_depth()["ready"] == 1


def test_submit_resolves_only_after_the_records_are_written_and_empty_submits_are_done_at_once():
    store = SlowStore()
    committer = GroupCommitter(store).start()
    try:
        assert committer.submit([], []).done()
        fut = committer.submit([StreamEntry("k", b"x")], [])
        assert not fut.done()  # the store takes 50 ms
        assert fut.result(5) is None and store.puts == [1]
    finally:
        committer.stop()
