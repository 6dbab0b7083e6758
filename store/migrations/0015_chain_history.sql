-- The transactions that settled a job and claimed each payout, for the
-- accounts' on-chain history (a deposit's was kept from the start).
ALTER TABLE payments ADD COLUMN settled_tx TEXT;
ALTER TABLE payments ADD COLUMN settled_block {bigint};
ALTER TABLE payouts ADD COLUMN claimed_tx TEXT;
ALTER TABLE payouts ADD COLUMN claimed_block {bigint};
-- A listing's part as the chain holds it, from its last Listed event.
ALTER TABLE listings ADD COLUMN listed_bps INTEGER;
