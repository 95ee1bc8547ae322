-- Every valid click, with where it came from in Kafka.
SELECT
  event_id,
  user_id,
  session_id,
  ts,
  page,
  referrer,
  device,
  tags,
  duration_ms,
  country,
  _partition AS kafka_partition,
  _offset AS kafka_offset
FROM events
