-- Fleet policies: immutable signed revisions, rollouts and what each host applied.
CREATE TABLE policies (
    name          TEXT NOT NULL,
    revision      BIGINT NOT NULL,
    document      TEXT NOT NULL,
    signature     TEXT NOT NULL,
    source        TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (name, revision)
);

CREATE TABLE policy_rollouts (
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
CREATE INDEX policy_rollouts_by_name ON policy_rollouts (name, started_at_ms);

CREATE TABLE policy_status (
    name             TEXT NOT NULL,
    host_id          TEXT NOT NULL,
    revision         BIGINT NOT NULL,
    applied_revision BIGINT NOT NULL,
    applied_at_ms    BIGINT NOT NULL,
    error            TEXT NOT NULL DEFAULT '',
    updated_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (name, host_id)
);

-- Proposals from policy rules and their fleet leases.
ALTER TABLE remediation_actions ADD COLUMN policy TEXT NOT NULL DEFAULT '';
ALTER TABLE remediation_actions ADD COLUMN approval TEXT NOT NULL DEFAULT 'manual';
ALTER TABLE remediation_actions ADD COLUMN max_concurrent BIGINT NOT NULL DEFAULT 0;
ALTER TABLE remediation_actions ADD COLUMN expires_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE remediation_actions ADD COLUMN evidence TEXT NOT NULL DEFAULT '';
ALTER TABLE remediation_actions ADD COLUMN decided_by TEXT NOT NULL DEFAULT '';
UPDATE remediation_actions SET state = 'approved' WHERE state = 'pending';
UPDATE remediation_actions SET state = 'running' WHERE state = 'sent';
UPDATE remediation_actions SET state = 'succeeded' WHERE state = 'executed';

-- At most `max_concurrent` hosts hold a slot of a rule at once.
CREATE TABLE remediation_leases (
    rule          TEXT NOT NULL,
    slot          BIGINT NOT NULL,
    action_id     TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (rule, slot)
);
