-- box_office_unique: one row per outcome_id (the box office's answer to one read), with local time.
SELECT
    outcome_id,
    read_id,
    frame_id,
    camera_id,
    cinema_id,
    room_id,
    tz,
    ticket_id,
    captured_at,
    decided_at,
    lake_at,
    outcome,
    http_status,
    detail,
    dt,
    hour,
    local_at,
    CAST(local_at AS DATE) AS local_day,
    hour(local_at) AS local_hour
FROM (
    SELECT
        b.*,
        CAST(at_timezone(with_timezone(b.captured_at, 'UTC'), b.tz) AS TIMESTAMP) AS local_at,
        row_number() OVER (PARTITION BY b.outcome_id ORDER BY b.lake_at, b.decided_at) AS copy_no
    FROM box_office AS b
) AS copies
WHERE copy_no = 1
