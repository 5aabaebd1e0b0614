-- Remediation requests and what agents reported for them.
CREATE TABLE remediation_actions (
    id            TEXT PRIMARY KEY,
    host_id       TEXT NOT NULL,
    rule          TEXT NOT NULL,
    action        TEXT NOT NULL,
    mode          TEXT NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    requested_by  TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    report        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX remediation_actions_by_host ON remediation_actions (host_id, created_at_ms);
CREATE INDEX remediation_actions_by_state ON remediation_actions (state, host_id);

-- Who did what, when, on which host, with which result.
CREATE TABLE audit_log (
    id       TEXT PRIMARY KEY,
    at_ms    BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    host_id  TEXT NOT NULL DEFAULT '',
    result   TEXT NOT NULL DEFAULT '',
    detail   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_by_time ON audit_log (at_ms);
