-- One-time enrollment tokens. The secret is stored as its SHA-256; the
-- token shown once is "<id>.<secret>".
CREATE TABLE enrollment_tokens (
    id            TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    labels        TEXT NOT NULL DEFAULT '{}',
    max_uses      BIGINT NOT NULL,
    uses          BIGINT NOT NULL DEFAULT 0,
    expires_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked       BIGINT NOT NULL DEFAULT 0
);

-- Agents known to the PKI: created at enrollment, before the first stream.
ALTER TABLE hosts ADD COLUMN revoked_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN cert_not_after_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN enrolled_with TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN enrolled_labels TEXT NOT NULL DEFAULT '{}';
CREATE INDEX hosts_revoked ON hosts (revoked_at_ms);
