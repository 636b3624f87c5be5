"""The ingest service: records per frame, rejected frames, box-office messages and their de-duplication."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.decode import DecodeResult, ImageInfo
from ingest.errors import Forbidden
from ingest.records import box_office_dedup_id, time_bucket
from ingest.request import FrameInput, UploadRequest
from ingest.service import IngestService, authorize
from stream.schema import FrameSummary, Read, frame_id, from_bytes, read_id
from tests.events.make_events import NOT_A_TICKET, NOW, TICKET_1, TICKET_2, frame

T0 = NOW - timedelta(seconds=2)


def upload(*images: bytes, form: str = "batch", at: datetime = T0, declared: str | None = None) -> UploadRequest:
    return UploadRequest(form, tuple(FrameInput(i, at, True, declared) for i in images))


@pytest.fixture
def cam(registry):
    return registry.get("rex-1-door")


def test_a_frame_with_codes_gives_a_summary_and_one_read_per_code(ports, cam):
    stream, queue = ports
    img = frame([TICKET_2, NOT_A_TICKET], seed=2)
    result = IngestService(stream, queue).ingest(cam, upload(img, form="json"), NOW)
    recs = stream.records()
    summaries = [r for r in recs if isinstance(r, FrameSummary)]
    reads = sorted((r for r in recs if isinstance(r, Read)), key=lambda r: r.text)
    fid = frame_id("rex-1-door", img)
    assert [(s.frame_id, s.outcome, s.codes, s.image_format, s.width) for s in summaries] == [
        (fid, "ok", 2, "jpeg", 400)
    ]
    assert [r.text for r in reads] == sorted([TICKET_2, NOT_A_TICKET])
    valid = next(r for r in reads if r.ticket_valid)
    invalid = next(r for r in reads if not r.ticket_valid)
    assert (valid.ticket_id, valid.ticket_cinema, valid.seat, valid.cinema_id, valid.tz) == (
        "T000124", "REX", "F13", "REX", "America/Sao_Paulo")  # fmt: skip
    assert invalid.ticket_error and invalid.ticket_id is None
    assert {r.read_id for r in reads} == {read_id(fid, TICKET_2.encode()), read_id(fid, NOT_A_TICKET.encode())}
    assert all(r.captured_at == T0 and r.received_at == NOW for r in reads)
    assert {e.partition_key for e in stream.entries} == {"rex-1-door"}
    # only the valid ticket goes to the box office
    assert [from_bytes(m.body).read_id for m in queue.messages] == [valid.read_id]
    assert result.frames[0].outcome == "ok" and result.error is None


def test_an_empty_frame_is_a_normal_no_code_result(ports, cam):
    stream, queue = ports
    result = IngestService(stream, queue).ingest(cam, upload(frame([], seed=3)), NOW)
    assert [(r.kind, r.outcome) for r in stream.records()] == [("frame", "no_code")]
    assert result.frames[0].codes == () and queue.messages == []


def test_bad_images_become_rejected_summaries_and_single_frame_requests_carry_the_error(ports, cam):
    stream, queue = ports
    good = frame([TICKET_1], seed=1)
    result = IngestService(stream, queue).ingest(cam, upload(good[: len(good) // 2], b"not an image", good), NOW)
    outcomes = [(f.outcome, f.error.code if f.error else None) for f in result.frames]
    assert outcomes == [("rejected", "truncated_image"), ("rejected", "not_an_image"), ("ok", None)]
    assert result.error is None  # a batch answers 200 with per-frame outcomes
    rejected = [r for r in stream.records() if r.kind == "frame" and r.outcome == "rejected"]
    assert sorted(r.reject_reason for r in rejected) == ["not_an_image", "truncated_image"]
    single = IngestService(stream, queue).ingest(cam, upload(b"not an image", form="raw"), NOW)
    assert single.error is not None and single.error.status == 415


def test_same_frame_sent_twice_gives_the_same_ids_and_dedup_ids(ports, cam):
    stream, queue = ports
    img = frame([TICKET_1], seed=1)
    svc = IngestService(stream, queue)
    a = svc.ingest(cam, upload(img, form="raw"), NOW)
    b = svc.ingest(cam, upload(img, form="raw"), NOW + timedelta(seconds=30))
    assert a.to_json() == b.to_json()
    assert len(queue.sent) == 2 and queue.sent[0].dedup_id == queue.sent[1].dedup_id
    assert len(queue.messages) == 1
    ids = [r.record_id for r in stream.records()]
    assert len(ids) == 4 and len(set(ids)) == 2  # summary + read, twice, same ids


def test_the_same_image_twice_in_a_batch_is_processed_once(ports, cam):
    stream, queue = ports
    img = frame([TICKET_1], seed=1)
    result = IngestService(stream, queue).ingest(cam, upload(img, img), NOW)
    assert result.frames[0] == result.frames[1]
    assert len(stream.records()) == 2 and len(queue.sent) == 1


def test_the_same_ticket_in_consecutive_frames_is_one_box_office_message(ports, cam):
    stream, queue = ports
    frames = [frame([TICKET_1], seed=s) for s in (1, 5, 6)]
    IngestService(stream, queue).ingest(cam, upload(*frames), NOW)
    assert len([r for r in stream.records() if r.kind == "read"]) == 3  # analytics sees every sighting
    assert len(queue.sent) == 1  # de-duplicated inside the request too


def test_dedup_id_is_stable_within_a_bucket_and_changes_across_buckets_and_cameras():
    t = datetime(2026, 11, 30, 20, 0, 0, tzinfo=UTC)  # on a 300 s boundary
    a = box_office_dedup_id("cam", "T1", t, 300)
    assert box_office_dedup_id("cam", "T1", t + timedelta(seconds=299), 300) == a
    assert box_office_dedup_id("cam", "T1", t - timedelta(seconds=1), 300) != a  # the straddling edge
    assert box_office_dedup_id("cam2", "T1", t, 300) != a
    assert box_office_dedup_id("cam", "T2", t, 300) != a
    assert len(a) <= 128
    assert time_bucket(t, 300) == int(t.timestamp()) // 300
    with pytest.raises(ValueError):
        time_bucket(t, 0)


def test_a_declared_camera_other_than_the_keys_is_forbidden_and_nothing_is_published(ports, cam):
    stream, queue = ports
    with pytest.raises(Forbidden):
        IngestService(stream, queue).ingest(cam, upload(frame([TICKET_1]), declared="rex-2-door"), NOW)
    assert stream.calls == 0 and queue.sent == []


def test_authorize_refuses_missing_unknown_and_revoked_keys(registry):
    assert authorize(registry, "ck_rex1door00001").camera_id == "rex-1-door"
    for key in (None, "", "ck_nope", "ck_revoked000003"):
        with pytest.raises(Forbidden):
            authorize(registry, key)


def _decoder_raising(exc: BaseException):
    def decode(_data: bytes) -> DecodeResult:
        raise exc

    return decode


@pytest.mark.parametrize("exc", [OSError("bad"), SyntaxError("bad"), ValueError("bad"), EOFError()])
def test_input_errors_escaping_the_decoder_reject_the_frame(ports, cam, exc):
    stream, queue = ports
    result = IngestService(stream, queue, decoder=_decoder_raising(exc)).ingest(cam, upload(b"x", form="raw"), NOW)
    assert result.error is not None and result.error.code == "truncated_image"


def test_other_decoder_exceptions_are_bugs_and_propagate(ports, cam):
    stream, queue = ports
    with pytest.raises(RuntimeError):
        IngestService(stream, queue, decoder=_decoder_raising(RuntimeError("bug"))).ingest(cam, upload(b"x"), NOW)
    assert stream.calls == 0


def test_stream_goes_first_and_a_queue_failure_propagates(ports, cam):
    stream, queue = ports
    queue.fail = True
    from stream.ports import PublishError

    with pytest.raises(PublishError):
        IngestService(stream, queue).ingest(cam, upload(frame([TICKET_1])), NOW)
    assert stream.calls == 1


def test_aggregation_off_publishes_one_plain_entry_per_record(ports, cam):
    stream, queue = ports
    IngestService(stream, queue, aggregate=False).ingest(cam, upload(frame([TICKET_2, NOT_A_TICKET], seed=2)), NOW)
    assert len(stream.entries) == 3
    assert all(e.data.startswith(b"{") for e in stream.entries)


def test_decode_time_and_image_info_reach_the_summary(ports, cam):
    stream, queue = ports
    info = ImageInfo("png", 10, 20, "L")
    svc = IngestService(stream, queue, decoder=lambda _d: DecodeResult([], info, 12.3456))
    svc.ingest(cam, upload(b"png bytes"), NOW)
    (summary,) = stream.records()
    assert (summary.image_format, summary.width, summary.height, summary.decode_ms, summary.image_bytes) == (
        "png", 10, 20, 12.346, 9)  # fmt: skip
