-- When each record's first result came: an account's results refute
-- others' only once it is old enough (and has enough agreed results).
ALTER TABLE reputations ADD COLUMN since {float};
