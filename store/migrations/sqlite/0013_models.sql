-- The model registry: one entry for each completed training job's model,
-- made in the transaction that completes the job, and one for each set of
-- weights an owner registers. An entry names its weights by their hash
-- and carries what a visitor needs to judge and run them.
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    job_id INTEGER UNIQUE REFERENCES jobs (id),
    name TEXT NOT NULL,
    owner TEXT,
    visibility TEXT NOT NULL,
    model TEXT NOT NULL,
    input_shape TEXT NOT NULL,
    classes INTEGER NOT NULL,
    normalization TEXT,
    weights_sha TEXT NOT NULL,
    dataset TEXT NOT NULL,
    accuracy REAL,
    loss REAL,
    epsilon REAL,
    rounds INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX models_by_weights ON models (weights_sha);

-- The models of the training jobs completed before the registry.
INSERT INTO models (job_id, name, owner, visibility, model, input_shape, classes,
    normalization, weights_sha, dataset, accuracy, loss, epsilon, rounds, created_at)
SELECT j.id, j.name, j.creator, j.visibility, j.model, j.input_shape, j.classes,
    j.normalization, j.global_sha, json_extract(j.spec, '$.dataset'), r.accuracy, r.loss,
    r.epsilon, j.round, j.created_at
FROM jobs j JOIN rounds r ON r.job_id = j.id AND r.round = j.round
WHERE j.status = 'completed' AND json_extract(j.spec, '$.task') IS NULL
ORDER BY j.id;
