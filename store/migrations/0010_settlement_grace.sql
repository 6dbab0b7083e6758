-- A settlement records when it was issued (chain time): the escrow lets
-- anyone send it a grace period later. A deposit the coordinator refused
-- (a deadline too near, too small, another spec) says why.
ALTER TABLE settlements ADD COLUMN issued_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN refusal TEXT;
