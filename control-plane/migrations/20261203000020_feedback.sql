-- Operators' verdicts on anomaly events, and the policy each one generated.
CREATE TABLE anomaly_feedback (
    id                 TEXT PRIMARY KEY,
    anomaly_id         TEXT NOT NULL,
    host_id            TEXT NOT NULL,
    verdict            TEXT NOT NULL,
    note               TEXT NOT NULL DEFAULT '',
    scope              TEXT NOT NULL DEFAULT '{}',
    -- the generated policy ('' for a verdict that changes nothing) and what it set
    policy             TEXT NOT NULL DEFAULT '',
    policy_revision    BIGINT NOT NULL DEFAULT 0,
    target             TEXT NOT NULL DEFAULT '',
    detection          TEXT NOT NULL DEFAULT '',
    created_by         TEXT NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    undone_by          TEXT NOT NULL DEFAULT '',
    undone_at_ms       BIGINT NOT NULL DEFAULT 0,
    withdrawn_revision BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX anomaly_feedback_by_anomaly ON anomaly_feedback (anomaly_id);
CREATE INDEX anomaly_feedback_by_time ON anomaly_feedback (created_at_ms);
