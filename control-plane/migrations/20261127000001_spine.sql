-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Integers are BIGINT (bound as i64), times are Unix milliseconds, and
-- booleans are 0/1 BIGINTs so both backends decode them the same way.

CREATE TABLE hosts (
    id                   TEXT PRIMARY KEY,
    hostname             TEXT NOT NULL DEFAULT '',
    os                   TEXT NOT NULL DEFAULT '',
    kernel               TEXT NOT NULL DEFAULT '',
    agent_version        TEXT NOT NULL DEFAULT '',
    labels               TEXT NOT NULL DEFAULT '{}',
    interval_ms          BIGINT NOT NULL DEFAULT 0,
    first_seen_ms        BIGINT NOT NULL,
    last_seen_ms         BIGINT NOT NULL,
    connected            BIGINT NOT NULL DEFAULT 0,
    last_seq             BIGINT NOT NULL DEFAULT 0,
    outbox_dropped_total BIGINT NOT NULL DEFAULT 0,
    top_processes        TEXT NOT NULL DEFAULT '[]',
    top_processes_ms     BIGINT NOT NULL DEFAULT 0
);

-- One row per durable agent message: the idempotency key of ingest.
CREATE TABLE agent_messages (
    host_id        TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    produced_at_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (host_id, seq)
);

CREATE TABLE rollups (
    host_id         TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    metric          TEXT NOT NULL,
    device          TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    window_end_ms   BIGINT NOT NULL,
    v_min           DOUBLE PRECISION NOT NULL,
    v_mean          DOUBLE PRECISION NOT NULL,
    v_max           DOUBLE PRECISION NOT NULL,
    v_last          DOUBLE PRECISION NOT NULL,
    sample_count    BIGINT NOT NULL,
    PRIMARY KEY (host_id, seq, metric, device)
);
CREATE INDEX rollups_by_metric_time ON rollups (host_id, metric, window_start_ms);

-- Latest value of every metric of every host, for host pages without scans.
CREATE TABLE latest_values (
    host_id TEXT NOT NULL,
    metric  TEXT NOT NULL,
    device  TEXT NOT NULL,
    ts_ms   BIGINT NOT NULL,
    value   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (host_id, metric, device)
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
