-- daily_summary: per cinema and local day.
--   entries / reentries / reads / invalid_reads  totals of hourly_entries over the day
--   invalid_share         share of reads whose payload is not a valid ticket (NULL when no read)
--   peak_hour, peak_entries  the cinema's peak hour (all rooms together), as in hourly_peak
--   busiest_room          room with the most entries (ties: lowest room_id; NULL when no entry)
--   busiest_room_entries  its entries
--   rooms                 rooms with any read or frame that day
WITH totals AS (
    SELECT
        cinema_id,
        day,
        sum(entries) AS entries,
        sum(reentries) AS reentries,
        sum(reads) AS reads,
        sum(invalid_reads) AS invalid_reads,
        count(DISTINCT room_id) AS rooms
    FROM hourly_entries
    GROUP BY cinema_id, day
),
room_days AS (
    SELECT
        cinema_id,
        room_id,
        day,
        sum(entries) AS entries
    FROM hourly_entries
    GROUP BY cinema_id, room_id, day
),
busiest AS (
    SELECT
        cinema_id,
        day,
        room_id,
        entries,
        row_number() OVER (PARTITION BY cinema_id, day ORDER BY entries DESC, room_id) AS rank_in_day
    FROM room_days
)
SELECT
    t.cinema_id,
    t.day,
    CAST(t.entries AS BIGINT) AS entries,
    CAST(t.reentries AS BIGINT) AS reentries,
    CAST(t.reads AS BIGINT) AS reads,
    CAST(t.invalid_reads AS BIGINT) AS invalid_reads,
    CASE WHEN t.reads > 0 THEN CAST(t.invalid_reads AS DOUBLE) / t.reads END AS invalid_share,
    p.peak_hour,
    p.peak_entries,
    CASE WHEN b.entries > 0 THEN b.room_id END AS busiest_room,
    CAST(b.entries AS BIGINT) AS busiest_room_entries,
    CAST(t.rooms AS BIGINT) AS rooms
FROM totals AS t
JOIN hourly_peak AS p
    ON p.cinema_id = t.cinema_id AND p.day = t.day AND p.room_id IS NULL
JOIN busiest AS b
    ON b.cinema_id = t.cinema_id AND b.day = t.day AND b.rank_in_day = 1
