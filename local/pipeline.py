"""The local pipeline: every part of the cloud pipeline, embedded, in one process tree.

=================  ==========================================  ==================================
cloud              local                                       code that runs (the same in both)
=================  ==========================================  ==================================
API Gateway        ``local.server`` in each worker process     --
                   (key check, 10 MB limit)
decoding Lambda    the same worker processes (``--workers``,   ``ingest.handler.handler``
                   ``local.prefork`` / ``local.worker``)
Kinesis + SQS      ``stream.sqlite.SqliteStore`` (WAL), one    ``stream.aggregate``, ports
                   group commit in the main process for
                   every worker's requests
                   (``local.groupcommit``)
forwarder Lambda   a thread polling the SQLite queue           ``ingest.forwarder.forward``
Glue streaming     a thread running ``etl.local.LocalEtl``     ``etl.transforms``
Athena             DuckDB over ``<data>``                      ``analytics/sql/views/*.sql``
=================  ==========================================  ==================================

Layout of the data directory: ``LOCK`` (one owner at a time), ``cameras.json`` (registry, unless
``--cameras`` points elsewhere), ``stream.db`` (stream + queue), and the lake tables ``reads/``,
``frames/``, ``box_office/``, ``quarantine/``.

Processes: the main process owns the data directory lock, the group committer, the ETL, forwarder
and retention threads and supervises the workers; each worker process accepts HTTP connections on
the shared listening socket and runs the handler in-process (no image crosses a process boundary).

Shutdown (SIGINT/SIGTERM): stop accepting, finish in-flight requests, stop the workers, let the ETL
write everything already on the stream, stop the forwarder (undelivered messages stay queued), release
the lock.  A restart resumes from the checkpoints.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from etl.local import LocalEtl
from ingest.boxoffice import DELIVERED, PERMANENT
from local.groupcommit import CommittingStream, GroupCommitter
from local.live_registry import LiveRegistry
from local.prefork import PreforkServer
from local.worker import COUNTERS
from stream.sqlite import OwnerLock, SqliteStore

log = logging.getLogger(__name__)

STREAM_DB = "stream.db"
FORWARD_RETRY_S = 2.0
FORWARD_BATCH = 10
"""Messages received (and forwarded concurrently) at a time; at most one per camera."""


@dataclass(frozen=True)
class ServeOptions:
    """How to run the local pipeline (the ``serve`` command's options)."""

    data: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8080
    cameras: Path | None = None
    workers: int = os.cpu_count() or 1  # one worker process per core: each decodes one frame at a time
    box_office_url: str = ""
    box_office_token: str = ""
    etl_batch_seconds: float = 2.0
    max_in_flight: int = 8
    """Requests one worker process takes at once (decoding or waiting for their commit); more get 429."""
    stream_retention_s: float = 60.0
    """How often stream entries already in the lake are deleted; 0 keeps the whole stream (for inspection)."""

    @property
    def registry_path(self) -> Path:
        return self.cameras or self.data / "cameras.json"


class Counters:
    """Request counters of every worker (shared memory), for the status line and /health."""

    def __init__(self, server: PreforkServer | None = None) -> None:
        self.server = server
        self.started = time.monotonic()

    def snapshot(self) -> dict:
        c = self.server.counters() if self.server else dict.fromkeys(COUNTERS, 0)
        return {
            "requests": c["requests"],
            "frames": c["frames"],
            "reads": c["reads"],
            "errors_4xx_5xx": c["errors"],
            "throttled": c["busy"],
            "uptime_s": round(time.monotonic() - self.started, 1),
        }


class LocalPipeline:
    """Starts and stops every part of the local pipeline.  Use as a context manager or start()/stop()."""

    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        self.counters = Counters()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.lock: OwnerLock | None = None
        self.store: SqliteStore | None = None
        self.server: PreforkServer | None = None
        self.etl: LocalEtl | None = None
        self.registry: LiveRegistry | None = None
        self.committer: GroupCommitter | None = None
        self.forwarded = {"delivered": 0, "retried": 0, "dead": 0, "last_error": None}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> LocalPipeline:
        """Start all parts; raises ``stream.sqlite.DataDirLocked`` if another server owns the data dir."""
        data = self.opts.data
        self.lock = OwnerLock(data).acquire()
        try:
            self._start_parts(data)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_parts(self, data: Path) -> None:
        from ingest import settings as env_names

        os.environ[env_names.BOX_OFFICE_URL] = self.opts.box_office_url
        os.environ[env_names.BOX_OFFICE_TOKEN] = self.opts.box_office_token
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        db = data / STREAM_DB
        self.store = SqliteStore(db)
        self.registry = LiveRegistry(self.opts.registry_path)
        self.etl = LocalEtl(self.store, data, batch_seconds=self.opts.etl_batch_seconds)
        self.etl.recover()
        # the committer has its own connection: its fsyncs never hold up the ETL, forwarder or /health
        self.committer = GroupCommitter(SqliteStore(db)).start()
        # workers are spawned (not forked), so starting them after the committer thread is safe; each
        # checks API keys with a LiveRegistry of the same file (constant-time Registry.authenticate)
        self.server = PreforkServer(
            (self.opts.host, self.opts.port),
            self.opts.workers,
            str(self.registry.path),
            self.committer,
            self.health,
            max_in_flight=self.opts.max_in_flight,
        )
        self.counters = Counters(self.server)
        self.server.start()
        self._configure_forwarder()
        self._spawn(self.etl.run, self._stop, name="etl")
        self._spawn(self._forward_loop, name="forwarder")
        if self.opts.stream_retention_s > 0:
            self._spawn(self._retention_loop, name="retention")
        log.info("camera API listening on %s (data in %s)", self.server.url, data)

    def _retention_loop(self) -> None:
        """Delete stream entries the ETL has committed to the lake (Kinesis' retention, locally)."""
        from etl.local import CONSUMER

        while not self._stop.wait(self.opts.stream_retention_s):
            try:
                assert self.store is not None
                trimmed = self.store.trim(self.store.checkpoint(CONSUMER).seq)
                if trimmed:
                    log.debug("trimmed %d stream entries already in the lake", trimmed)
            except Exception as e:  # a busy database: try again next round, report in /health
                self.forwarded["last_error"] = f"stream retention: {e}"

    def _spawn(self, target, *args, name: str) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Graceful stop: drain requests, then workers, then the ETL; forwarder stops; lock released."""
        if self.server:
            self.server.stop()  # the workers finish (and commit) their in-flight requests, then exit
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        self._threads.clear()
        if self.committer:  # after the forwarder: it publishes box-office outcomes through the committer
            self.committer.stop()
            self.committer.store.close()
            self.committer = None
        if self.store:
            self.store.close()
            self.store = None
        if self.lock:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    # -- box-office forwarder ------------------------------------------------------------------
    def _configure_forwarder(self) -> None:
        import ingest.forwarder
        from ingest.boxoffice import BoxOfficeConfig

        assert self.committer is not None
        ingest.forwarder.use(
            CommittingStream(self.committer), BoxOfficeConfig(self.opts.box_office_url, self.opts.box_office_token)
        )

    def _forward_loop(self) -> None:
        """Deliver queued reads to the box office, a received batch at a time.

        ``receive`` returns at most one message per camera (FIFO group), so the messages of one batch
        are independent: they are forwarded concurrently (the box office's latency overlaps, and
        their outcome records share one group commit), then the delivered ones are deleted in one
        transaction (``ack_many``).
        """
        from concurrent.futures import ThreadPoolExecutor

        assert self.store is not None
        with ThreadPoolExecutor(FORWARD_BATCH, thread_name_prefix="forward") as pool:
            while not self._stop.is_set():
                try:
                    messages = self.store.receive(FORWARD_BATCH)
                except Exception as e:  # database trouble: report in /health, keep trying
                    self.forwarded["last_error"] = str(e)
                    self._stop.wait(FORWARD_RETRY_S)
                    continue
                if not messages:
                    self._stop.wait(0.2)
                    continue
                settled = list(pool.map(self._forward_one, messages))
                for outcome, error in settled:
                    if outcome != DELIVERED:
                        self.forwarded[outcome] += 1
                    if error:
                        self.forwarded["last_error"] = error
                delivered = [m.receipt for m, (out, _e) in zip(messages, settled, strict=True) if out == DELIVERED]
                try:
                    self.store.ack_many(delivered)
                    self.forwarded["delivered"] += len(delivered)
                except Exception as e:  # not acknowledged: redelivered after the visibility timeout
                    self.forwarded["last_error"] = f"acknowledging deliveries: {e}"

    def _forward_one(self, m) -> tuple[str, str | None]:
        """Forward one message (a pool thread): ``(DELIVERED, None)`` to be acked, or ``("dead" |
        "retried", error)`` after giving it back to the queue."""
        import ingest.forwarder
        from ingest.forwarder import PoisonMessage

        assert self.store is not None
        try:
            delivery = ingest.forwarder.forward(m.body)
        except PoisonMessage as e:
            self.store.nack(m.receipt, error=str(e))
            return "dead", None
        except Exception as e:  # publish failure: retry later
            self.store.nack(m.receipt, delay_s=FORWARD_RETRY_S, error=str(e))
            return "retried", str(e)
        if delivery.disposition == DELIVERED:
            return DELIVERED, None
        if delivery.disposition == PERMANENT:
            self.store.nack(m.receipt, error=delivery.detail)
            return "dead", None
        self.store.nack(m.receipt, delay_s=FORWARD_RETRY_S, error=delivery.detail)
        return "retried", delivery.detail

    # -- status --------------------------------------------------------------------------------
    def health(self) -> dict:
        """State and lag of each part (``GET /health``)."""
        etl = self.etl.status().as_dict() if self.etl else {}
        queue = self.store.queue_depth() if self.store else {}
        threads = {t.name: t.is_alive() for t in self._threads}
        committer = self.committer
        server = self.server
        alive = server.alive() if server else 0
        ok = alive == self.opts.workers and all(threads.values()) and not etl.get("last_error")
        ok = ok and committer is not None and committer.alive()
        return {
            "status": "ok" if ok else "degraded",
            "api": self.counters.snapshot(),
            "workers": {
                "processes": self.opts.workers,
                "alive": alive,
                "restarts": server.restarts if server else 0,
                "requests_per_worker": server.per_worker("requests") if server else [],
                "connections_per_worker": server.per_worker("connections") if server else [],
            },
            "group_commit": {
                "alive": bool(committer and committer.alive()),
                "groups": committer.groups if committer else 0,
                "requests": committer.requests if committer else 0,
            },
            "stream": {"head_seq": etl.get("head_seq")},
            "etl": etl,
            "queue": queue,
            "forwarder": {**self.forwarded, "box_office": self.opts.box_office_url or "not configured"},
            "threads": threads,
        }

    def status_line(self) -> str:
        c = self.counters.snapshot()
        etl = self.etl.status() if self.etl else None
        rate = c["frames"] / c["uptime_s"] if c["uptime_s"] else 0.0
        lag = f"lake lag {etl.lag_records} rec / {etl.lag_seconds:.1f} s" if etl else ""
        q = self.store.queue_depth() if self.store else {}
        return (
            f"frames {c['frames']} ({rate:.1f}/s) · reads {c['reads']} · refused {c['errors_4xx_5xx']} · "
            f"box office {self.forwarded['delivered']} sent, {q.get('ready', 0) + q.get('inflight', 0)} queued · {lag}"
        )
