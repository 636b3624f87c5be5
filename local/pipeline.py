"""The local pipeline: every part of the cloud pipeline, embedded, in one process tree.

=================  ==========================================  ==================================
cloud              local                                       code that runs (the same in both)
=================  ==========================================  ==================================
API Gateway        ``local.server`` (key check, 10 MB limit)   --
decoding Lambda    worker processes (``--workers``)            ``ingest.handler.handler``
Kinesis + SQS      ``stream.sqlite.SqliteStore`` (WAL), one    ``stream.aggregate``, ports
                   group commit for concurrent requests
                   (``local.groupcommit``)
forwarder Lambda   a thread polling the SQLite queue           ``ingest.forwarder.forward``
Glue streaming     a thread running ``etl.local.LocalEtl``     ``etl.transforms``
Athena             DuckDB over ``<data>``                      ``analytics/sql/views/*.sql``
=================  ==========================================  ==================================

Layout of the data directory: ``LOCK`` (one owner at a time), ``cameras.json`` (registry, unless
``--cameras`` points elsewhere), ``stream.db`` (stream + queue), and the lake tables ``reads/``,
``frames/``, ``box_office/``, ``quarantine/``.

Shutdown (SIGINT/SIGTERM): stop accepting, finish in-flight requests, stop the workers, let the ETL
write everything already on the stream, stop the forwarder (undelivered messages stay queued), release
the lock.  A restart resumes from the checkpoints.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from etl.local import LocalEtl
from ingest.boxoffice import DELIVERED, PERMANENT
from ingest.cameras import Registry
from local.groupcommit import CommittingStream, GroupCommitter, RecordingPorts, unavailable_response
from local.server import CameraApiServer
from stream.ports import PublishError, QueueMessage, StreamEntry
from stream.sqlite import OwnerLock, SqliteStore

log = logging.getLogger(__name__)

STREAM_DB = "stream.db"
FORWARD_RETRY_S = 2.0


@dataclass(frozen=True)
class ServeOptions:
    """How to run the local pipeline (the ``serve`` command's options)."""

    data: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8080
    cameras: Path | None = None
    workers: int = (os.cpu_count() or 1) + 1  # one more than cores: hides the hand-offs between processes
    box_office_url: str = ""
    box_office_token: str = ""
    etl_batch_seconds: float = 2.0
    max_in_flight: int = 0  # 0 = 8 per worker
    stream_retention_s: float = 60.0
    """How often stream entries already in the lake are deleted; 0 keeps the whole stream (for inspection)."""

    @property
    def registry_path(self) -> Path:
        return self.cameras or self.data / "cameras.json"


class LiveRegistry(Registry):
    """A registry file re-read when it changes, so ``monuv-qr cameras add`` applies to a running server."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        with self._lock:
            if stamp != self._stamp:
                self._cameras = Registry.load(self.path)._cameras
                self._stamp = stamp

    def by_key_id(self, key_id):
        self.refresh()
        return super().by_key_id(key_id)

    def authenticate(self, key):
        self.refresh()
        return super().authenticate(key)


# ------------------------------------------------------------------------------------------- workers
# Decoding is CPU-bound: each worker process runs the Lambda handler.  Its ports only *record* what
# the handler publishes; the parent commits the records of many concurrent requests in one SQLite
# transaction (``local.groupcommit``) before it answers 200.


_ports = RecordingPorts()


def _init_worker(registry_path: str) -> None:
    import ingest.handler

    logging.getLogger().setLevel(logging.WARNING)
    ingest.handler.use(_ports, _ports, LiveRegistry(Path(registry_path)))


def _invoke(event: dict) -> tuple[dict, list[StreamEntry], list[QueueMessage]]:
    import ingest.handler

    _ports.take()
    response = ingest.handler.handler(event, None)  # metrics are disabled locally (see _start_parts)
    return (response, *_ports.take())


def _warm(_: int) -> int:
    time.sleep(0.3)  # long enough that each worker process takes one
    return os.getpid()


# ------------------------------------------------------------------------------------------- pipeline


class Counters:
    """Request counters for the status line and /health (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = self.frames = self.reads = self.errors = self.busy = 0
        self.started = time.monotonic()

    def add(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def snapshot(self) -> dict:
        with self._lock:
            up = time.monotonic() - self.started
            return {
                "requests": self.requests,
                "frames": self.frames,
                "reads": self.reads,
                "errors_4xx_5xx": self.errors,
                "throttled": self.busy,
                "uptime_s": round(up, 1),
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
        self.pool: ProcessPoolExecutor | None = None
        self.server: CameraApiServer | None = None
        self.etl: LocalEtl | None = None
        self.registry: LiveRegistry | None = None
        self.committer: GroupCommitter | None = None
        self.forwarded = {"delivered": 0, "retried": 0, "dead": 0, "last_error": None}
        self._in_flight = threading.BoundedSemaphore(opts.max_in_flight or 8 * opts.workers)

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
        ctx = multiprocessing.get_context("spawn")
        # the committer has its own connection: its fsyncs never hold up the ETL, forwarder or /health
        self.committer = GroupCommitter(SqliteStore(db)).start()
        self.pool = ProcessPoolExecutor(
            self.opts.workers, mp_context=ctx, initializer=_init_worker, initargs=(str(self.registry.path),)
        )
        # start every worker now (a spawn costs ~1 s of imports) so the first frames are not slow
        list(self.pool.map(_warm, range(self.opts.workers)))
        self._configure_forwarder()
        self._spawn(self.etl.run, self._stop, name="etl")
        self._spawn(self._forward_loop, name="forwarder")
        if self.opts.stream_retention_s > 0:
            self._spawn(self._retention_loop, name="retention")
        self.server = CameraApiServer(
            (self.opts.host, self.opts.port), self.invoke, self.registry.authenticate, self.health
        )
        self.server.block_on_close = True
        self.server.daemon_threads = False
        self.server.start()
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
            self.server.stop()  # waits for in-flight requests (block_on_close)
            self.server = None
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=False)
            self.pool = None
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

    # -- request path --------------------------------------------------------------------------
    def invoke(self, event: dict) -> dict:
        """Run the handler in a worker; 429 when too many requests are already in flight."""
        if not self._in_flight.acquire(timeout=5.0):
            self.counters.add(requests=1, busy=1)
            body = json.dumps({"error": {"code": "too_many_requests", "reason": "server busy; retry in a second"}})
            return {"statusCode": 429, "headers": {"Retry-After": "1"}, "body": body}
        try:
            assert self.pool is not None and self.committer is not None
            response, entries, messages = self.pool.submit(_invoke, event).result(timeout=60)
            try:
                self.committer.commit(entries, messages)
            except PublishError as e:
                response = unavailable_response(e)
        finally:
            self._in_flight.release()
        self._count(response)
        return response

    def _count(self, response: dict) -> None:
        status = int(response.get("statusCode", 500))
        if status != 200:
            self.counters.add(requests=1, errors=1)
            return
        try:
            frames = json.loads(response.get("body") or "{}").get("frames", [])
        except ValueError:
            frames = []
        self.counters.add(requests=1, frames=len(frames), reads=sum(len(f.get("codes", [])) for f in frames))

    # -- box-office forwarder ------------------------------------------------------------------
    def _configure_forwarder(self) -> None:
        import ingest.forwarder
        from ingest.boxoffice import BoxOfficeConfig

        assert self.committer is not None
        ingest.forwarder.use(
            CommittingStream(self.committer), BoxOfficeConfig(self.opts.box_office_url, self.opts.box_office_token)
        )

    def _forward_loop(self) -> None:
        import ingest.forwarder
        from ingest.forwarder import PoisonMessage

        assert self.store is not None
        while not self._stop.is_set():
            try:
                messages = self.store.receive(10)
            except Exception as e:  # database trouble: report in /health, keep trying
                self.forwarded["last_error"] = str(e)
                self._stop.wait(FORWARD_RETRY_S)
                continue
            if not messages:
                self._stop.wait(0.2)
                continue
            for m in messages:
                try:
                    delivery = ingest.forwarder.forward(m.body)
                except PoisonMessage as e:
                    self.store.nack(m.receipt, error=str(e))
                    self.forwarded["dead"] += 1
                    continue
                except Exception as e:  # publish failure: retry later
                    self.store.nack(m.receipt, delay_s=FORWARD_RETRY_S, error=str(e))
                    self.forwarded["retried"] += 1
                    self.forwarded["last_error"] = str(e)
                    continue
                if delivery.disposition == DELIVERED:
                    self.store.ack(m.receipt)
                    self.forwarded["delivered"] += 1
                elif delivery.disposition == PERMANENT:
                    self.store.nack(m.receipt, error=delivery.detail)
                    self.forwarded["dead"] += 1
                else:
                    self.store.nack(m.receipt, delay_s=FORWARD_RETRY_S, error=delivery.detail)
                    self.forwarded["retried"] += 1
                    self.forwarded["last_error"] = delivery.detail

    # -- status --------------------------------------------------------------------------------
    def health(self) -> dict:
        """State and lag of each part (``GET /health``)."""
        etl = self.etl.status().as_dict() if self.etl else {}
        queue = self.store.queue_depth() if self.store else {}
        threads = {t.name: t.is_alive() for t in self._threads}
        committer = self.committer
        ok = bool(self.pool) and all(threads.values()) and not etl.get("last_error")
        ok = ok and committer is not None and committer.alive()
        return {
            "status": "ok" if ok else "degraded",
            "api": self.counters.snapshot(),
            "workers": {"processes": self.opts.workers, "alive": self.pool is not None},
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
