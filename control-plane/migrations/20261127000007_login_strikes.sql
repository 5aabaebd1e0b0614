-- Failed logins per account and per client address, shared by every replica.
CREATE TABLE login_strikes (
    key             TEXT PRIMARY KEY,
    failures        BIGINT NOT NULL,
    last_failure_ms BIGINT NOT NULL,
    locked_until_ms BIGINT NOT NULL
);
