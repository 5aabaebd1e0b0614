-- Where agents reach a replica over QUIC (`replicas.advertise_quic`, `host:port`); empty: not
-- over QUIC. A full replica names it to agents that came over QUIC.
ALTER TABLE replicas ADD COLUMN quic_addr TEXT NOT NULL DEFAULT '';
