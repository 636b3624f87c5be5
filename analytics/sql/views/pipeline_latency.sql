-- pipeline_latency: per cinema, local day and local hour of capture, over every processed frame
-- (frames_unique: the first copy to reach the lake, so lake_at is when the frame became queryable).
-- Seconds, approximate percentiles:
--   capture_to_receive_*  camera clock -> API server clock (network, camera retries, camera clock skew)
--   receive_to_lake_*     API server -> Parquet in the lake (stream, ETL micro-batch window, write)
--   capture_to_lake_*     end to end
SELECT
    cinema_id,
    day,
    hour,
    frames,
    capture_to_receive[1] AS capture_to_receive_p50,
    capture_to_receive[2] AS capture_to_receive_p95,
    receive_to_lake[1] AS receive_to_lake_p50,
    receive_to_lake[2] AS receive_to_lake_p95,
    capture_to_lake[1] AS capture_to_lake_p50,
    capture_to_lake[2] AS capture_to_lake_p95
FROM (
    -- one digest per measure for both percentiles (the same values as two calls, half the work)
    SELECT
        cinema_id,
        local_day AS day,
        CAST(local_hour AS INTEGER) AS hour,
        count(*) AS frames,
        approx_percentile(capture_to_receive, ARRAY[0.5, 0.95]) AS capture_to_receive,
        approx_percentile(receive_to_lake, ARRAY[0.5, 0.95]) AS receive_to_lake,
        approx_percentile(capture_to_lake, ARRAY[0.5, 0.95]) AS capture_to_lake
    FROM (
        SELECT
            cinema_id,
            local_day,
            local_hour,
            to_unixtime(with_timezone(received_at, 'UTC')) - to_unixtime(with_timezone(captured_at, 'UTC'))
                AS capture_to_receive,
            to_unixtime(with_timezone(lake_at, 'UTC')) - to_unixtime(with_timezone(received_at, 'UTC'))
                AS receive_to_lake,
            to_unixtime(with_timezone(lake_at, 'UTC')) - to_unixtime(with_timezone(captured_at, 'UTC'))
                AS capture_to_lake
        FROM frames_unique
    ) AS f
    GROUP BY cinema_id, local_day, local_hour
) AS p
