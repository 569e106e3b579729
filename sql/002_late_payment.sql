-- 002_late_payment.sql: late payments (issue 16). A confirm that arrives after its hold expired
-- is recorded, never turned into a ticket: the purchase stays expired and keeps the payment
-- reference to refund. NULL for every other purchase.
ALTER TABLE purchases ADD COLUMN payment_ref text;
-- GET /v1/events/{event}/refunds reads only these rows.
CREATE INDEX purchases_refund_due ON purchases (event, id) WHERE payment_ref IS NOT NULL;
-- events.counts now holds per category seven little-endian uint32 counters (the seventh:
-- tickets of holds that expired or were cancelled) and available_again_at_ms (int64); rows
-- written before hold six counters, and both forms are read.
