-- The model registry: immutable, signed model versions, their rollouts (same columns and
-- rules as policy rollouts) and what each host runs.
CREATE TABLE models (
    number        BIGINT PRIMARY KEY,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL UNIQUE,
    manifest      TEXT NOT NULL,
    -- The ONNX file, base64 (portable between SQLite and PostgreSQL).
    onnx_base64   TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    signature     TEXT NOT NULL,
    golden        TEXT NOT NULL,
    card          TEXT NOT NULL DEFAULT '',
    evaluation    TEXT NOT NULL DEFAULT '',
    created_by    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE model_rollouts (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    revision           BIGINT NOT NULL,
    previous_revision  BIGINT NOT NULL,
    canary_percent     BIGINT NOT NULL,
    canary_hosts       TEXT NOT NULL,
    canary_secs        BIGINT NOT NULL,
    max_new_anomalies  BIGINT NOT NULL,
    baseline_anomalies BIGINT NOT NULL,
    state              TEXT NOT NULL,
    reason             TEXT NOT NULL DEFAULT '',
    started_by         TEXT NOT NULL,
    started_at_ms      BIGINT NOT NULL,
    updated_at_ms      BIGINT NOT NULL
);
CREATE INDEX model_rollouts_by_start ON model_rollouts (started_at_ms);

CREATE TABLE model_status (
    host_id        TEXT PRIMARY KEY,
    number         BIGINT NOT NULL,
    applied_number BIGINT NOT NULL,
    applied_model  TEXT NOT NULL DEFAULT '',
    applied_at_ms  BIGINT NOT NULL,
    error          TEXT NOT NULL DEFAULT '',
    updated_at_ms  BIGINT NOT NULL
);
