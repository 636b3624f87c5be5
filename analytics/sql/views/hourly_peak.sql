-- hourly_peak: per cinema and local day (room_id NULL) and per room and local day: the peak hour.
--   peak_hour     local hour (0..23) with the most entries; the earliest such hour on a tie;
--                 NULL when the day had no entry at all
--   peak_entries  entries in that hour (0 when the day had none)
--   day_entries   entries over the whole local day
--   peak_share    peak_entries / day_entries (NULL when the day had none)
WITH cinema_hours AS (
    SELECT cinema_id, CAST(NULL AS VARCHAR) AS room_id, day, hour, sum(entries) AS entries
    FROM hourly_entries
    GROUP BY cinema_id, day, hour
),
room_hours AS (
    SELECT cinema_id, room_id, day, hour, entries
    FROM hourly_entries
),
all_hours AS (
    SELECT * FROM cinema_hours
    UNION ALL
    SELECT * FROM room_hours
),
ranked AS (
    SELECT
        cinema_id,
        room_id,
        day,
        hour,
        entries,
        sum(entries) OVER (PARTITION BY cinema_id, room_id, day) AS day_entries,
        row_number() OVER (PARTITION BY cinema_id, room_id, day ORDER BY entries DESC, hour) AS rank_in_day
    FROM all_hours
)
SELECT
    cinema_id,
    room_id,
    day,
    CASE WHEN entries > 0 THEN hour END AS peak_hour,
    CAST(entries AS BIGINT) AS peak_entries,
    CAST(day_entries AS BIGINT) AS day_entries,
    CASE WHEN day_entries > 0 THEN CAST(entries AS DOUBLE) / day_entries END AS peak_share
FROM ranked
WHERE rank_in_day = 1
