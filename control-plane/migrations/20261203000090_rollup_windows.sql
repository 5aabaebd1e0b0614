-- One row per stored rollup, its metric rows packed into one value (store/packed.rs), instead of
-- one row per metric in `rollups` and one upsert per metric in `latest_values`: ingest writes
-- one row and two index entries per rollup where it wrote ~60 rows, ~120 index entries and ~60
-- upserts. `metric_count` is the number of rows packed (audits read it without unpacking).
-- Rows stored before this migration stay in `rollups` and `latest_values`, read as before.
CREATE TABLE rollup_windows (
    host_id         TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    window_end_ms   BIGINT NOT NULL,
    metric_count    BIGINT NOT NULL,
    metrics         BYTEA NOT NULL,
    PRIMARY KEY (host_id, seq)
);
CREATE INDEX rollup_windows_by_time ON rollup_windows (host_id, window_start_ms);

-- Which stored rollup is each host's newest (the greatest window end): the host page's and the
-- fleet view's latest values are that row of `rollup_windows`. One small upsert per host per
-- group commit.
CREATE TABLE host_latest (
    host_id       TEXT PRIMARY KEY,
    seq           BIGINT NOT NULL,
    window_end_ms BIGINT NOT NULL
);
