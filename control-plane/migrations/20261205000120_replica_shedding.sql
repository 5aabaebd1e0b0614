-- 1 while the replica refuses new agent streams because it is overloaded (its runtime lags over
-- `replicas.max_lag_ms`): a full replica does not name it to the agents it turns away, whatever
-- room its stream count leaves.
ALTER TABLE replicas ADD COLUMN shedding BIGINT NOT NULL DEFAULT 0;
