-- camera_health: per camera, local day and local hour (cinema's time zone).
-- Rows: every hour in which the camera's CINEMA sent any frame, from the camera's first frame on; an hour in
-- which the cinema's other cameras sent frames but this one did not shows frames = 0, so a camera that went
-- silent stands out (silent = true).
--   frames, ok_frames, empty_frames, rejected_frames  frames by outcome (ok | no_code | rejected)
--   empty_ratio        empty_frames / (ok_frames + empty_frames): decoded frames without any code
--   rejects_by_reason  'reason=count, ...' sorted by reason; NULL when nothing was rejected
--   decode_ms_p50/p95  approximate percentiles of decode time of the decoded (not rejected) frames, ms
--   last_frame_at      local time of the camera's last frame in this hour (NULL when none)
--   camera_last_frame_at  local time of the camera's last frame up to the end of this hour
--   silent_minutes     whole minutes between camera_last_frame_at and the cinema's last frame in this hour
--   silent             silent_minutes >= 15
WITH frame_stats AS (
    SELECT
        camera_id,
        local_day,
        local_hour,
        count(*) AS frames,
        count_if(outcome = 'ok') AS ok_frames,
        count_if(outcome = 'no_code') AS empty_frames,
        count_if(outcome = 'rejected') AS rejected_frames,
        -- one digest for both percentiles (the same values as two calls, half the work)
        approx_percentile(CASE WHEN outcome <> 'rejected' THEN decode_ms END, ARRAY[0.5, 0.95]) AS decode_ms_pct,
        max(local_at) AS last_frame_at,
        max(captured_at) AS last_frame_utc
    FROM frames_unique
    GROUP BY camera_id, local_day, local_hour
),
reject_counts AS (
    SELECT camera_id, local_day, local_hour, reject_reason, count(*) AS n
    FROM frames_unique
    WHERE outcome = 'rejected'
    GROUP BY camera_id, local_day, local_hour, reject_reason
),
reject_lists AS (
    SELECT
        camera_id,
        local_day,
        local_hour,
        array_join(
            array_sort(array_agg(coalesce(reject_reason, 'unknown') || '=' || CAST(n AS VARCHAR))), ', '
        ) AS rejects_by_reason
    FROM reject_counts
    GROUP BY camera_id, local_day, local_hour
),
cinema_hours AS (
    SELECT cinema_id, local_day, local_hour, max(captured_at) AS cinema_last_utc
    FROM frames_unique
    GROUP BY cinema_id, local_day, local_hour
),
cameras AS (
    SELECT camera_id, cinema_id, room_id, first_day, hour(first_at) AS first_hour
    FROM (
        SELECT
            camera_id,
            cinema_id,
            max_by(room_id, captured_at) AS room_id,
            min(local_at) AS first_at,
            CAST(min(local_at) AS DATE) AS first_day
        FROM frames_unique
        GROUP BY camera_id, cinema_id
    ) AS c
),
grid AS (
    SELECT c.cinema_id, c.room_id, c.camera_id, h.local_day, h.local_hour, h.cinema_last_utc
    FROM cameras AS c
    JOIN cinema_hours AS h
        ON h.cinema_id = c.cinema_id
        AND (h.local_day > c.first_day OR (h.local_day = c.first_day AND h.local_hour >= c.first_hour))
),
filled AS (
    SELECT
        g.cinema_id,
        g.room_id,
        g.camera_id,
        g.local_day,
        g.local_hour,
        g.cinema_last_utc,
        coalesce(s.frames, 0) AS frames,
        coalesce(s.ok_frames, 0) AS ok_frames,
        coalesce(s.empty_frames, 0) AS empty_frames,
        coalesce(s.rejected_frames, 0) AS rejected_frames,
        rl.rejects_by_reason,
        s.decode_ms_pct[1] AS decode_ms_p50,
        s.decode_ms_pct[2] AS decode_ms_p95,
        s.last_frame_at,
        max(s.last_frame_at) OVER (
            PARTITION BY g.camera_id ORDER BY g.local_day, g.local_hour ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS camera_last_frame_at,
        max(s.last_frame_utc) OVER (
            PARTITION BY g.camera_id ORDER BY g.local_day, g.local_hour ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS camera_last_utc
    FROM grid AS g
    LEFT JOIN frame_stats AS s
        ON s.camera_id = g.camera_id AND s.local_day = g.local_day AND s.local_hour = g.local_hour
    LEFT JOIN reject_lists AS rl
        ON rl.camera_id = g.camera_id AND rl.local_day = g.local_day AND rl.local_hour = g.local_hour
)
SELECT
    cinema_id,
    room_id,
    camera_id,
    local_day AS day,
    CAST(local_hour AS INTEGER) AS hour,
    CAST(frames AS BIGINT) AS frames,
    CAST(ok_frames AS BIGINT) AS ok_frames,
    CAST(empty_frames AS BIGINT) AS empty_frames,
    CAST(rejected_frames AS BIGINT) AS rejected_frames,
    CASE WHEN ok_frames + empty_frames > 0 THEN CAST(empty_frames AS DOUBLE) / (ok_frames + empty_frames) END
        AS empty_ratio,
    rejects_by_reason,
    decode_ms_p50,
    decode_ms_p95,
    last_frame_at,
    camera_last_frame_at,
    CAST(
        floor((to_unixtime(with_timezone(cinema_last_utc, 'UTC')) - to_unixtime(with_timezone(camera_last_utc, 'UTC'))) / 60)
        AS BIGINT
    ) AS silent_minutes,
    (to_unixtime(with_timezone(cinema_last_utc, 'UTC')) - to_unixtime(with_timezone(camera_last_utc, 'UTC'))) >= 900
        AS silent
FROM filled
