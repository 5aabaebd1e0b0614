-- Events per metric family with the processes behind them, and the
-- detector's state per host (from heartbeats).
ALTER TABLE anomalies ADD COLUMN family TEXT NOT NULL DEFAULT '';
ALTER TABLE anomalies ADD COLUMN culprits TEXT NOT NULL DEFAULT '[]';
ALTER TABLE hosts ADD COLUMN detector_state TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN detector_warm_until_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN detector_calibrated_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN detector_restored BIGINT NOT NULL DEFAULT 0;
