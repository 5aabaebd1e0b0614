//! This control plane among the replicas sharing one database: its id (the holder name of its
//! leases), the agent streams it admits up to its limit and while its runtime keeps time
//! (`load.rs`), and its entry in the registry of live replicas (where agents reach it, how many
//! streams it holds), renewed each tick like a lease, from which a full or overloaded replica
//! names the others with room to the agents it turns away.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{new_id, now_ms};
use crate::load::Load;
use crate::store::{ReplicaEntry, Store, StoreError};
use crate::telemetry::{RefusedLabels, Telemetry};

/// Addresses named to a refused agent, at most (the header stays small).
const MAX_ELSEWHERE: usize = 8;

/// How this replica takes part among the others.
#[derive(Debug, Clone, Default)]
pub struct ReplicaOptions {
    /// `host:port` agents reach this replica at over TCP; `None`: never named to agents.
    pub advertise: Option<String>,
    /// `host:port` agents reach this replica at over QUIC; `None`: agents that came over
    /// QUIC are sent here over TCP.
    pub advertise_quic: Option<String>,
    /// Agent streams held at most; 0: no limit.
    pub max_streams: usize,
    /// New agent streams are refused while the runtime lags more than this (`load.rs`);
    /// zero: never.
    pub max_lag: Duration,
    /// How long a lease (and this replica's registry entry) outlives its last renewal.
    pub lease_ttl: Duration,
}

pub struct Replicas {
    store: Store,
    telemetry: Arc<Telemetry>,
    id: String,
    options: ReplicaOptions,
    /// Streams admitted and not yet ended.
    streams: Arc<AtomicUsize>,
    /// Whether the runtime is late, as the probe (`load::watch`) last decided.
    load: Arc<Load>,
}

/// One admitted stream; dropping it frees its place.
pub struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a stream was turned away (`why`); `elsewhere` are live replicas with room, the emptiest
/// first (empty when none is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    pub why: Crowded,
    pub elsewhere: Vec<String>,
}

/// What keeps a new stream out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crowded {
    /// This replica holds its limit of streams already.
    Limit(usize),
    /// Its runtime lags `lag_ms`, over `max_lag_ms` (until under half of it).
    Lag { lag_ms: u64, max_lag_ms: u64 },
}

impl Crowded {
    /// The label of the refusal in the metrics (`sco_streams_refused_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Limit(_) => "limit",
            Self::Lag { .. } => "lag",
        }
    }
}

impl Replicas {
    pub fn new(store: Store, telemetry: Arc<Telemetry>, options: ReplicaOptions) -> Self {
        Self {
            store,
            telemetry,
            id: new_id("replica"),
            load: Arc::new(Load::new(options.max_lag)),
            options,
            streams: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether the runtime is late: set by the probe ([`Replicas::watch_load`]), read by
    /// [`Replicas::admit`] and `GET /status`.
    pub fn load(&self) -> &Arc<Load> {
        &self.load
    }

    /// Measures the runtime's lag until `stop` ([`crate::load::watch`]): the task that
    /// decides whether new streams are refused for it.
    pub async fn watch_load(&self, stop: tokio::sync::watch::Receiver<bool>) {
        crate::load::watch(self.load.clone(), self.telemetry.clone(), stop).await;
    }

    /// This replica's id: the holder name of its leases.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn lease_ttl(&self) -> Duration {
        self.options.lease_ttl
    }

    /// Agent streams held now.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    /// The stream limit (0: none).
    pub fn max_streams(&self) -> usize {
        self.options.max_streams
    }

    pub fn advertise(&self) -> Option<&str> {
        self.options.advertise.as_deref()
    }

    pub fn advertise_quic(&self) -> Option<&str> {
        self.options.advertise_quic.as_deref()
    }

    /// A place for one more stream, or why there is none (the limit, or a late runtime: the
    /// streams held go on either way) and which replicas have room, named for the transport
    /// the stream came over (`over_quic`: by their QUIC address where they have one).
    pub async fn admit(&self, over_quic: bool) -> Result<StreamSlot, Full> {
        let limit = self.options.max_streams;
        let why = if self.load.shedding() {
            Crowded::Lag {
                lag_ms: self.load.lag_ms(),
                max_lag_ms: self.load.limit_ms(),
            }
        } else {
            let taken = self
                .streams
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (limit == 0 || n < limit).then_some(n + 1)
                });
            if taken.is_ok() {
                return Ok(StreamSlot(self.streams.clone()));
            }
            Crowded::Limit(limit)
        };
        self.telemetry
            .streams_refused
            .get_or_create(&RefusedLabels {
                reason: why.reason(),
            })
            .inc();
        let elsewhere = match self
            .store
            .replicas_with_room(&self.id, now_ms(), over_quic)
            .await
        {
            Ok(mut a) => {
                a.truncate(MAX_ELSEWHERE);
                a
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the other replicas; refusing without a hint");
                Vec::new()
            }
        };
        Err(Full { why, elsewhere })
    }

    /// Renews this replica's registry entry (each tick), overloaded or not as of now.
    pub async fn renew(&self) -> Result<(), StoreError> {
        let ttl = self.options.lease_ttl.as_millis().min(i64::MAX as u128) as i64;
        let entry = ReplicaEntry {
            grpc_addr: self.options.advertise.as_deref().unwrap_or_default(),
            quic_addr: self.options.advertise_quic.as_deref().unwrap_or_default(),
            streams: i64::try_from(self.streams()).unwrap_or(i64::MAX),
            max_streams: i64::try_from(self.options.max_streams).unwrap_or(i64::MAX),
            shedding: self.load.shedding(),
        };
        self.store
            .register_replica(&self.id, &entry, now_ms().saturating_add(ttl))
            .await
    }

    /// The leases on fleet-wide work this replica holds now, by name.
    pub async fn held_leases(&self) -> Result<Vec<String>, StoreError> {
        self.store.leases_of(&self.id, now_ms()).await
    }

    /// Leaves the registry and gives up this replica's leases (at shutdown), so that agents
    /// are no longer sent here and another replica takes over the work at once.
    pub async fn leave(&self) {
        if let Err(e) = self.store.unregister_replica(&self.id).await {
            tracing::warn!(error = %e, "cannot leave the registry of replicas; the entry expires by itself");
        }
        if let Err(e) = self.store.release_leases(&self.id).await {
            tracing::warn!(error = %e, "cannot give up the leases; they expire by themselves");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica on a SQLite file in a directory that lives as long as the returned guard.
    async fn replicas(max_streams: usize) -> (tempfile::TempDir, Replicas) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&crate::store::sqlite_url(dir.path()))
            .await
            .expect("store");
        let r = Replicas::new(
            store,
            Arc::new(Telemetry::default()),
            ReplicaOptions {
                advertise: Some("127.0.0.1:7443".into()),
                advertise_quic: Some("127.0.0.1:7443".into()),
                max_streams,
                max_lag: Duration::from_millis(250),
                lease_ttl: Duration::from_secs(5),
            },
        );
        (dir, r)
    }

    #[tokio::test]
    async fn admits_up_to_the_limit_and_frees_places() {
        let (_dir, r) = replicas(2).await;
        let a = r.admit(false).await.expect("first");
        let _b = r.admit(true).await.expect("second");
        let full = r.admit(false).await.err().expect("third refused");
        assert_eq!(full.why, Crowded::Limit(2));
        assert!(full.elsewhere.is_empty(), "{full:?}");
        drop(a);
        assert_eq!(r.streams(), 1);
        let _c = r.admit(false).await.expect("a place freed");
        let (_dir0, unlimited) = replicas(0).await;
        let held: Vec<_> = futures::future::join_all((0..50).map(|_| unlimited.admit(false))).await;
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(unlimited.streams(), 50);
    }

    #[tokio::test]
    async fn a_late_runtime_refuses_new_streams_until_it_catches_up() {
        let (_dir, r) = replicas(0).await;
        let held = r.admit(true).await.expect("on time");
        let mut lag = crate::load::Lag::new(Duration::from_millis(250));
        lag.observe(Duration::from_millis(400));
        r.load().publish(&lag);
        let refused = r.admit(false).await.err().expect("late: refused");
        assert_eq!(
            refused.why,
            Crowded::Lag {
                lag_ms: 400,
                max_lag_ms: 250
            }
        );
        assert_eq!(refused.why.reason(), "lag");
        assert!(r
            .telemetry
            .encode()
            .contains("sco_streams_refused_total{reason=\"lag\"} 1"));
        // the stream held is not touched, and a refusal takes no place
        assert_eq!(r.streams(), 1);
        for _ in 0..crate::load::WINDOW {
            lag.observe(Duration::from_millis(3));
        }
        r.load().publish(&lag);
        let _second = r.admit(false).await.expect("caught up: admitted");
        assert_eq!(r.streams(), 2);
        drop(held);
    }

    #[tokio::test]
    async fn names_live_replicas_with_room_emptiest_first() {
        let (_dir, r) = replicas(1).await;
        let now = now_ms();
        let s = &r.store;
        for (id, grpc_addr, quic_addr, streams, max_streams, shedding, expires) in [
            ("busy", "b:1", "", 9, 10, false, now + 5000),
            ("idle", "i:1", "i:2", 1, 0, false, now + 5000),
            ("full", "f:1", "f:2", 10, 10, false, now + 5000),
            ("dead", "d:1", "d:2", 0, 0, false, now - 1),
            ("hidden", "", "", 0, 0, false, now + 5000),
            ("quic-only", "", "q:2", 5, 0, false, now + 5000),
            ("overloaded", "o:1", "o:2", 0, 0, true, now + 5000),
        ] {
            let entry = ReplicaEntry {
                grpc_addr,
                quic_addr,
                streams,
                max_streams,
                shedding,
            };
            s.register_replica(id, &entry, expires).await.expect("reg");
        }
        r.renew().await.expect("renew");
        let held = r.admit(false).await.expect("first");
        let full = r.admit(false).await.err().expect("refused");
        // over TCP, the replicas with a TCP address
        assert_eq!(full.elsewhere, ["i:1", "b:1"]);
        // over QUIC, by their QUIC address where they have one, else over TCP
        let full = r.admit(true).await.err().expect("refused");
        assert_eq!(full.elsewhere, ["quic://i:2", "quic://q:2", "b:1"]);
        s.unregister_replica("idle").await.expect("unregister");
        assert_eq!(
            s.replicas_with_room(r.id(), now, false)
                .await
                .expect("read"),
            ["b:1"]
        );
        // an overloaded replica is named again once its entry says it caught up
        let entry = ReplicaEntry {
            grpc_addr: "o:1",
            ..ReplicaEntry::default()
        };
        s.register_replica("overloaded", &entry, now + 5000)
            .await
            .expect("reg");
        let named = s.replicas_with_room(r.id(), now, false).await;
        assert_eq!(named.expect("read"), ["o:1", "b:1"]);
        // and this replica's own entry (with room: its one stream ended) says whether it is
        // overloaded, as of its renewal
        drop(held);
        let seen_by_another = || s.replicas_with_room("another", now, false);
        s.unregister_replica("overloaded")
            .await
            .expect("unregister");
        s.unregister_replica("busy").await.expect("unregister");
        r.load().publish(&{
            let mut lag = crate::load::Lag::new(Duration::from_millis(250));
            lag.observe(Duration::from_millis(300));
            lag
        });
        r.renew().await.expect("renew");
        assert!(seen_by_another().await.expect("read").is_empty());
        r.load()
            .publish(&crate::load::Lag::new(Duration::from_millis(250)));
        r.renew().await.expect("renew");
        assert_eq!(seen_by_another().await.expect("read"), ["127.0.0.1:7443"]);
    }
}
