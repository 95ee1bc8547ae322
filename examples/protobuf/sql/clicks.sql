-- Every field of the click, with where it came from in the log.
SELECT
  id,
  ts,
  user,
  kind,
  quantity,
  score,
  ratio,
  flagged,
  big,
  tags,
  attrs,
  raw,
  items,
  note,
  amount_cents,
  seen_at,
  web,
  app,
  referrer,
  _partition AS kafka_partition,
  _offset AS kafka_offset
FROM clicks
