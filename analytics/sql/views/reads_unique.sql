-- reads_unique: one row per read_id, with the cinema's local time.
-- The lake may hold a read twice (a camera re-sent a frame minutes later and both copies reached the lake
-- in different micro-batches); the copy that reached the lake first is kept.
-- local_at / local_day / local_hour: captured_at (UTC) converted to the cinema's IANA zone (column tz).
-- dt / hour stay the UTC partition columns: filter on them to let Athena prune partitions.
SELECT
    read_id,
    frame_id,
    camera_id,
    cinema_id,
    room_id,
    tz,
    captured_at,
    received_at,
    lake_at,
    text,
    ticket_valid,
    ticket_error,
    ticket_id,
    ticket_cinema,
    ticket_room,
    session_id,
    session_start,
    seat,
    dt,
    hour,
    local_at,
    CAST(local_at AS DATE) AS local_day,
    hour(local_at) AS local_hour
FROM (
    SELECT
        r.*,
        CAST(at_timezone(with_timezone(r.captured_at, 'UTC'), r.tz) AS TIMESTAMP) AS local_at,
        row_number() OVER (PARTITION BY r.read_id ORDER BY r.lake_at, r.received_at) AS copy_no
    FROM reads AS r
) AS copies
WHERE copy_no = 1
