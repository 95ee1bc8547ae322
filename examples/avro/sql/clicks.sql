-- Every field of the click, with where it came from in the log.
SELECT
  id,
  ts,
  user,
  kind,
  session,
  amount,
  quantity,
  score,
  day,
  seen_at,
  tags,
  attrs,
  raw,
  referrer,
  _partition AS kafka_partition,
  _offset AS kafka_offset
FROM clicks
