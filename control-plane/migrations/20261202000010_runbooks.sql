-- The knowledge base: the current revision of every runbook, and every revision ever stored
-- (a deleted runbook's revisions stay). Full-text search is set up per backend after the
-- migrations (SQLite FTS5 table, PostgreSQL expression index): see store/runbooks.rs.
CREATE TABLE runbooks (
    id          TEXT PRIMARY KEY,
    revision    BIGINT NOT NULL,
    title       TEXT NOT NULL,
    tags        TEXT NOT NULL,
    conditions  TEXT NOT NULL,
    body        TEXT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);

CREATE TABLE runbook_revisions (
    id          TEXT NOT NULL,
    revision    BIGINT NOT NULL,
    title       TEXT NOT NULL,
    tags        TEXT NOT NULL,
    conditions  TEXT NOT NULL,
    body        TEXT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (id, revision)
);
