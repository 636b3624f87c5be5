-- ticket_passages: one row per passage of a valid ticket in front of a room's cameras.
-- A passage is a run of reads of the same ticket (same cinema, room and session) where each read follows the
-- previous one by at most 120 seconds: a ticket held up to the camera for 40 consecutive frames is ONE passage.
-- A gap of more than 120 s starts a new passage. passage_no = 1 is the ticket's ENTRY into that room and
-- session; passage_no > 1 is a re-entry (reported by ticket_anomalies). Reads of every camera of the room
-- count, so two cameras at the same door do not double the entries.
-- gap_seconds: seconds since the previous read of the same ticket (NULL for the entry).
SELECT
    read_id,
    camera_id,
    cinema_id,
    room_id,
    tz,
    ticket_id,
    session_id,
    session_start,
    captured_at,
    local_at,
    local_day,
    local_hour,
    gap_seconds,
    row_number() OVER (
        PARTITION BY cinema_id, room_id, ticket_id, session_id ORDER BY captured_at, read_id
    ) AS passage_no
FROM (
    SELECT
        v.*,
        to_unixtime(with_timezone(v.captured_at, 'UTC')) - to_unixtime(with_timezone(v.prev_at, 'UTC')) AS gap_seconds
    FROM (
        SELECT
            r.*,
            lag(r.captured_at) OVER (
                PARTITION BY r.cinema_id, r.room_id, r.ticket_id, r.session_id ORDER BY r.captured_at, r.read_id
            ) AS prev_at
        FROM reads_unique AS r
        WHERE r.ticket_valid AND r.ticket_id IS NOT NULL
    ) AS v
) AS g
WHERE gap_seconds IS NULL OR gap_seconds > 120
