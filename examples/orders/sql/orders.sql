-- Valid orders, with personal data pseudonymised or masked and the amount in euros.
SELECT
  order_id,
  -- The same customer gets the same pseudonym: counts and joins by customer still work.
  keyed_hash(customer_email, 'customers') AS customer,
  mask_email(customer_email) AS customer_email_masked,
  mask_ip(customer_ip) AS customer_network,
  amount,
  currency,
  round(amount * CASE currency
    WHEN 'EUR' THEN 1.0
    WHEN 'USD' THEN 0.92
    WHEN 'GBP' THEN 1.17
  END, 2) AS amount_eur,
  CASE
    WHEN amount >= 500 THEN 'large'
    WHEN amount >= 50 THEN 'medium'
    ELSE 'small'
  END AS size,
  items,
  redact(note) AS note,
  ts,
  _partition AS kafka_partition,
  _offset AS kafka_offset
FROM orders
