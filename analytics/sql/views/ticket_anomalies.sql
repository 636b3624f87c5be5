-- ticket_anomalies: one row per suspicious ticket event, in the cinema's local time.
--   anomaly = 'reentry'       the ticket came back to the same room and session after more than 120 s without a
--                             read (a new passage, see ticket_passages); detail gives the gap in seconds
--             'two_rooms'     the ticket entered a second room for the same session; one row per entry into a
--                             room other than the first one; detail names the first room
--             'wrong_day'     the ticket entered on a local day other than the day of its session_start
--                             (session_start is the cinema's local wall time printed on the ticket)
--             'box_office_already_used' | 'box_office_unknown_ticket' | 'box_office_refused'
--                             the box office refused the forwarded read; detail is its message
--   day / local_at: local date and time of the event (of the passage's first read, or of the refused read)
WITH entries AS (
    SELECT
        p.*,
        first_value(p.room_id) OVER (
            PARTITION BY p.cinema_id, p.ticket_id, p.session_id ORDER BY p.captured_at, p.room_id
        ) AS first_room
    FROM ticket_passages AS p
    WHERE p.passage_no = 1
)
SELECT
    'reentry' AS anomaly,
    cinema_id,
    room_id,
    local_day AS day,
    local_at,
    ticket_id,
    session_id,
    session_start,
    camera_id,
    read_id,
    'seen again ' || CAST(CAST(floor(gap_seconds) AS BIGINT) AS VARCHAR) || ' s after its previous read' AS detail
FROM ticket_passages
WHERE passage_no > 1
UNION ALL
SELECT
    'two_rooms' AS anomaly,
    cinema_id,
    room_id,
    local_day AS day,
    local_at,
    ticket_id,
    session_id,
    session_start,
    camera_id,
    read_id,
    'first entered room ' || first_room AS detail
FROM entries
WHERE room_id <> first_room
UNION ALL
SELECT
    'wrong_day' AS anomaly,
    cinema_id,
    room_id,
    local_day AS day,
    local_at,
    ticket_id,
    session_id,
    session_start,
    camera_id,
    read_id,
    'session day is ' || CAST(CAST(session_start AS DATE) AS VARCHAR) AS detail
FROM entries
WHERE session_start IS NOT NULL AND CAST(session_start AS DATE) <> local_day
UNION ALL
SELECT
    'box_office_' || b.outcome AS anomaly,
    b.cinema_id,
    b.room_id,
    b.local_day AS day,
    b.local_at,
    coalesce(b.ticket_id, r.ticket_id) AS ticket_id,
    r.session_id,
    r.session_start,
    b.camera_id,
    b.read_id,
    coalesce(b.detail, b.outcome) AS detail
FROM box_office_unique AS b
LEFT JOIN reads_unique AS r ON r.read_id = b.read_id
WHERE b.outcome IN ('already_used', 'unknown_ticket', 'refused')
