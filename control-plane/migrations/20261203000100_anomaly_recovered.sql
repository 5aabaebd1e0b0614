-- When an open event recovered, while its agent holds it open in case it comes back.
ALTER TABLE anomalies ADD COLUMN recovered_ms BIGINT;
