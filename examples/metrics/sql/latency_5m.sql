-- Per service, the last five minutes of requests, every minute: each request counts in the
-- five windows that cover it. A window is written once the watermark passes its end plus
-- the allowed lateness.
SELECT
  window_start,
  window_end,
  service,
  count(*) AS requests,
  count(*) FILTER (WHERE status >= 500) AS errors,
  round(avg(latency_ms), 1) AS avg_latency_ms,
  max(latency_ms) AS max_latency_ms
FROM requests
GROUP BY hop(ts, INTERVAL '1 minute', INTERVAL '5 minutes'), service
