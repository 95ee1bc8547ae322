-- Views of product pages, with the product id pulled out of the path.
SELECT
  event_id,
  ts,
  CAST(split_part(page, '/', 3) AS BIGINT) AS product_id,
  user_id,
  device['mobile'] AS mobile,
  country
FROM events
WHERE page LIKE '/product/%'
