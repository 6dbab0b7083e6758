-- Coordinator instances sharing this database, each seen recently while it
-- lives; the leases and aggregation claims of one not seen for a while are
-- ended and released by the others.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    started_at {float} NOT NULL,
    seen_at {float} NOT NULL
);
CREATE INDEX leases_active_by_instance ON leases (instance) WHERE status = 'active';
