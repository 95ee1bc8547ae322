-- Views and distinct visitors per page and minute of event time. Each minute is written
-- once, when the watermark has passed its end plus the allowed lateness.
SELECT
  window_start,
  window_end,
  page,
  count(*) AS views,
  count(DISTINCT user_id) AS visitors,
  avg(duration_ms) AS avg_duration_ms
FROM events
GROUP BY tumble(ts, INTERVAL '1 minute'), page
