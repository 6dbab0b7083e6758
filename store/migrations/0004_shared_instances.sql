-- Several instances serving together: each publishes the workers connected
-- to it (so every instance can show the whole network), and a worker's
-- token is known to all (so any instance takes its update).
ALTER TABLE instances ADD COLUMN workers TEXT;
ALTER TABLE workers ADD COLUMN token_hash TEXT;
ALTER TABLE workers ADD COLUMN instance TEXT;
