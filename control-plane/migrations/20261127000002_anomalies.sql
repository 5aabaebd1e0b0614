-- Anomaly events detected on hosts. The id is "<host>:<open_seq>", where
-- open_seq is the sequence number of the agent message that opened it.
CREATE TABLE anomalies (
    id             TEXT PRIMARY KEY,
    host_id        TEXT NOT NULL,
    run_started_ms BIGINT NOT NULL,
    status         TEXT NOT NULL,
    started_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    ended_ms       BIGINT,
    score          DOUBLE PRECISION NOT NULL,
    peak_score     DOUBLE PRECISION NOT NULL,
    severity       TEXT NOT NULL,
    severity_rank  BIGINT NOT NULL,
    top_metric     TEXT NOT NULL,
    contributors   TEXT NOT NULL,
    context        TEXT NOT NULL,
    model          TEXT NOT NULL,
    close_reason   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX anomalies_by_host_time ON anomalies (host_id, started_ms);
CREATE INDEX anomalies_by_time ON anomalies (started_ms);
CREATE INDEX anomalies_open ON anomalies (status, host_id);

ALTER TABLE hosts ADD COLUMN run_started_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN model TEXT NOT NULL DEFAULT '';
