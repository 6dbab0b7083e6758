-- Inference jobs. A job's architecture is a column of its own: a training
-- job's is its spec's model, an inference job's that of the model it runs.
ALTER TABLE jobs ADD COLUMN model TEXT NOT NULL DEFAULT '';
UPDATE jobs SET model = json_extract(spec, '$.model');

-- An inference job's assembled outputs, recorded with its one round: the
-- blob of every row's class probabilities and predicted class, in row
-- order, and, when its rows are labelled, how the predictions fared.
CREATE TABLE inference_results (
    job_id INTEGER PRIMARY KEY REFERENCES jobs (id),
    outputs_sha TEXT NOT NULL,
    rows INTEGER NOT NULL,
    classes INTEGER NOT NULL,
    accuracy REAL,
    confusion TEXT
);
CREATE INDEX inference_results_by_outputs ON inference_results (outputs_sha);
