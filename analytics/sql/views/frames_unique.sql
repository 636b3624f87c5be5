-- frames_unique: one row per frame_id, with the cinema's local time.
-- A re-sent frame has the same frame_id; the copy that reached the lake first is kept (so lake_at is the
-- moment the frame first became queryable).
SELECT
    frame_id,
    camera_id,
    cinema_id,
    room_id,
    tz,
    captured_at,
    received_at,
    lake_at,
    image_format,
    image_bytes,
    codes,
    decode_ms,
    outcome,
    reject_reason,
    dt,
    hour,
    local_at,
    CAST(local_at AS DATE) AS local_day,
    hour(local_at) AS local_hour
FROM (
    SELECT
        f.*,
        CAST(at_timezone(with_timezone(f.captured_at, 'UTC'), f.tz) AS TIMESTAMP) AS local_at,
        row_number() OVER (PARTITION BY f.frame_id ORDER BY f.lake_at, f.received_at) AS copy_no
    FROM frames AS f
) AS copies
WHERE copy_no = 1
