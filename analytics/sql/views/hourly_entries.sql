-- hourly_entries: per cinema, room, local day and local hour: entries, reads and cameras.
-- Full days: every (cinema, room, local day) with any read or frame gets all 24 local hours 0..23; hours
-- without activity show 0. (On a daylight-saving day the repeated hour is merged and the skipped hour is 0.)
--   entries       tickets whose ENTRY (first read in this room and session, see ticket_passages) fell in the hour
--   reentries     later passages of a ticket already entered (same room and session)
--   reads         every read (valid tickets and other codes), de-duplicated by read_id
--   invalid_reads reads whose payload is not a valid ticket
--   tickets       distinct valid tickets read in the hour
--   cameras       distinct cameras that read at least one code in the hour
WITH active_days AS (
    SELECT cinema_id, room_id, local_day FROM reads_unique
    UNION
    SELECT cinema_id, room_id, local_day FROM frames_unique
),
grid AS (
    SELECT d.cinema_id, d.room_id, d.local_day, h.local_hour
    FROM active_days AS d
    CROSS JOIN UNNEST(sequence(0, 23)) AS h (local_hour)
),
read_counts AS (
    SELECT
        cinema_id,
        room_id,
        local_day,
        local_hour,
        count(*) AS reads,
        count_if(NOT ticket_valid) AS invalid_reads,
        count(DISTINCT CASE WHEN ticket_valid THEN ticket_id END) AS tickets,
        count(DISTINCT camera_id) AS cameras
    FROM reads_unique
    GROUP BY cinema_id, room_id, local_day, local_hour
),
passage_counts AS (
    SELECT
        cinema_id,
        room_id,
        local_day,
        local_hour,
        count_if(passage_no = 1) AS entries,
        count_if(passage_no > 1) AS reentries
    FROM ticket_passages
    GROUP BY cinema_id, room_id, local_day, local_hour
)
SELECT
    g.cinema_id,
    g.room_id,
    g.local_day AS day,
    CAST(g.local_hour AS INTEGER) AS hour,
    CAST(coalesce(p.entries, 0) AS BIGINT) AS entries,
    CAST(coalesce(p.reentries, 0) AS BIGINT) AS reentries,
    CAST(coalesce(r.reads, 0) AS BIGINT) AS reads,
    CAST(coalesce(r.invalid_reads, 0) AS BIGINT) AS invalid_reads,
    CAST(coalesce(r.tickets, 0) AS BIGINT) AS tickets,
    CAST(coalesce(r.cameras, 0) AS BIGINT) AS cameras
FROM grid AS g
LEFT JOIN read_counts AS r
    ON r.cinema_id = g.cinema_id AND r.room_id = g.room_id AND r.local_day = g.local_day
    AND r.local_hour = g.local_hour
LEFT JOIN passage_counts AS p
    ON p.cinema_id = g.cinema_id AND p.room_id = g.room_id AND p.local_day = g.local_day
    AND p.local_hour = g.local_hour
