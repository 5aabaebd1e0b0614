-- The live control-plane replicas on this database: where agents reach each one, how many
-- agent streams it holds and may hold (0: no limit), and until when the entry holds (renewed
-- each tick, like a lease). A full replica names the others with room to the agents it turns
-- away.
CREATE TABLE replicas (
    id          TEXT PRIMARY KEY,
    grpc_addr   TEXT NOT NULL,
    streams     BIGINT NOT NULL,
    max_streams BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);
