-- How the host's current or last stream reached the control plane: 'grpc' (HTTP/2 over TCP and
-- TLS) or 'quic'; empty for hosts not seen since this column was added.
ALTER TABLE hosts ADD COLUMN transport TEXT NOT NULL DEFAULT '';
