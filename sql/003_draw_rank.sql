-- 003_draw_rank.sql: a scheduled sale's pre-queue draw decides its entries in the draw's order,
-- not in seq order. draw_rank is 0, or the 1-based place the draw decided the purchase at (kept
-- once set). A waiting purchase with a rank stands behind the ranked ones with a smaller rank;
-- any later arrival stands behind every ranked one (its seq is greater), as before.
ALTER TABLE purchases ADD COLUMN draw_rank integer NOT NULL DEFAULT 0;
CREATE INDEX purchases_drawn ON purchases (event, category, draw_rank) WHERE draw_rank > 0;
