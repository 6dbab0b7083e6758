-- The model market: the listings the coordinator signed, and what the
-- chain showed of them. Amounts are decimal wei (text); sums are made in
-- the coordinator, in 256-bit arithmetic.

CREATE TABLE listings (
    listing_key TEXT PRIMARY KEY,
    model_id {bigint} NOT NULL REFERENCES models(id),
    owner TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    shares_root TEXT NOT NULL,
    -- JSON list of leaves (index, account, weight): fixed once listed, as on chain.
    shares TEXT NOT NULL,
    -- The latest signed terms.
    price TEXT NOT NULL,
    contributors_bps INTEGER NOT NULL CHECK (contributors_bps BETWEEN 0 AND 5000),
    nonce {bigint} NOT NULL,
    signature TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'offered' CHECK (state IN ('offered', 'listed', 'delisted')),
    -- The price on chain, from its last Listed event.
    listed_price TEXT,
    created_at {float} NOT NULL
);
CREATE INDEX listings_model ON listings (model_id);
CREATE INDEX listings_owner ON listings (owner);

-- One row per Purchased event; the escrow sells a listing once per buyer.
CREATE TABLE purchases (
    listing_key TEXT NOT NULL REFERENCES listings (listing_key),
    buyer TEXT NOT NULL,
    model_id {bigint} NOT NULL REFERENCES models (id),
    price TEXT NOT NULL,
    owner_part TEXT NOT NULL,
    contributors_part TEXT NOT NULL,
    tx TEXT NOT NULL,
    block {bigint} NOT NULL,
    seen_at {float} NOT NULL,
    PRIMARY KEY (listing_key, buyer)
);
CREATE INDEX purchases_buyer ON purchases (buyer, model_id);

-- One row per ShareClaimed or Withdrawn event, keyed by the log, so that
-- reading a range of blocks again adds nothing.
CREATE TABLE market_payouts (
    tx TEXT NOT NULL,
    log_index {bigint} NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('share', 'withdrawal')),
    listing_key TEXT,
    idx {bigint},
    account TEXT NOT NULL,
    amount TEXT NOT NULL,
    block {bigint} NOT NULL,
    PRIMARY KEY (tx, log_index)
);
CREATE INDEX market_payouts_account ON market_payouts (account);
CREATE INDEX market_payouts_listing ON market_payouts (listing_key, idx);
