-- ChatOps: every question asked and what it was answered, and the action requests
-- waiting for their confirmation (one use each; shared by every replica).
CREATE TABLE chat_exchanges (
    id              TEXT PRIMARY KEY,
    at_ms           BIGINT NOT NULL,
    username        TEXT NOT NULL,
    role            TEXT NOT NULL,
    source          TEXT NOT NULL,
    text            TEXT NOT NULL,
    intent          TEXT NOT NULL,
    answer          TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    confirmation_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX chat_exchanges_by_user ON chat_exchanges (username, at_ms);
CREATE INDEX chat_exchanges_by_time ON chat_exchanges (at_ms);

CREATE TABLE chat_pending (
    confirmation_id TEXT PRIMARY KEY,
    username        TEXT NOT NULL,
    intent          TEXT NOT NULL,
    text            TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    expires_ms      BIGINT NOT NULL
);
CREATE INDEX chat_pending_by_expiry ON chat_pending (expires_ms);
