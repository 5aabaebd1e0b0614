-- Hardened API auth: revocable access tokens and rotating refresh tokens.

-- Every access token carries the user's token_version; logout and password
-- changes increment it, which invalidates every token issued before.
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;

-- Refresh tokens are stored only as SHA-256 hashes. Each login starts a
-- family; each use rotates the token (used_at_ms is set on the old one and a
-- new one is issued in the same family). Presenting a used token again is
-- reuse: the whole family is revoked.
CREATE TABLE refresh_tokens (
    token_hash    TEXT PRIMARY KEY,
    family_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    issued_at_ms  BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms    BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
