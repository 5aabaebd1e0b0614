-- Fleet-wide periodic work (judging rollouts, expiring proposals, routing notifications) is
-- done by one replica at a time: the holder of its lease, renewed each tick, taken over by
-- another replica once it has expired.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
