-- Alerts to people. One row per (channel, subject, event): an event opening, its reminders,
-- its acknowledgement and its closing, or a remediation outcome, each told to a channel once.
-- The dispatcher claims due rows (claimed_until_ms), so replicas never send one twice.
CREATE TABLE notifications (
    id               TEXT PRIMARY KEY,
    channel          TEXT NOT NULL,
    kind             TEXT NOT NULL,
    subject          TEXT NOT NULL,
    event            TEXT NOT NULL,
    host_id          TEXT NOT NULL,
    severity         TEXT NOT NULL,
    family           TEXT NOT NULL,
    summary          TEXT NOT NULL,
    body             TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    claimed_until_ms BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT NOT NULL DEFAULT '',
    silence_id       TEXT NOT NULL DEFAULT '',
    created_ms       BIGINT NOT NULL,
    sent_ms          BIGINT,
    UNIQUE (channel, subject, event)
);
CREATE INDEX notifications_due ON notifications (state, next_attempt_ms);
CREATE INDEX notifications_by_time ON notifications (created_ms);
CREATE INDEX notifications_by_subject ON notifications (subject);

-- Maintenance windows: matching events are recorded, not sent.
CREATE TABLE silences (
    id         TEXT PRIMARY KEY,
    labels     TEXT NOT NULL,
    hosts      TEXT NOT NULL,
    families   TEXT NOT NULL,
    starts_ms  BIGINT NOT NULL,
    ends_ms    BIGINT NOT NULL,
    comment    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expired_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX silences_by_end ON silences (ends_ms);

ALTER TABLE anomalies ADD COLUMN acked_by TEXT NOT NULL DEFAULT '';
ALTER TABLE anomalies ADD COLUMN acked_ms BIGINT;
ALTER TABLE anomalies ADD COLUMN ack_note TEXT NOT NULL DEFAULT '';
-- The severity rank the router last routed the event at (-1: not yet), and whether its
-- closing was routed. Events stored before this migration count as routed: an upgrade
-- does not page anyone about the past.
ALTER TABLE anomalies ADD COLUMN notified_rank BIGINT NOT NULL DEFAULT -1;
ALTER TABLE anomalies ADD COLUMN close_notified BIGINT NOT NULL DEFAULT 0;
UPDATE anomalies SET notified_rank = 99, close_notified = 1;
CREATE INDEX anomalies_close_unrouted ON anomalies (started_ms) WHERE close_notified = 0;

-- The action state last routed, so each outcome is told once; the partial index holds only
-- the actions whose state changed since.
ALTER TABLE remediation_actions ADD COLUMN notified_state TEXT NOT NULL DEFAULT '';
UPDATE remediation_actions SET notified_state = state;
CREATE INDEX remediation_actions_unrouted ON remediation_actions (updated_at_ms)
    WHERE state <> notified_state;
