//! The batching of the ingest path, where the fleet's size shows: agents' heartbeats kept in
//! memory and written for all hosts in one transaction every few seconds, and rollups (and
//! policy statuses, which a rollout makes the whole fleet send at once) of all streams written
//! together by a group commit.
//!
//! Neither changes what an acknowledgement means. A message is acknowledged after the
//! transaction that stored it committed (its stream waits for its writer's answer), a storage
//! failure answers an error and no ack, and the (host, seq) claim keeps replays out. A
//! heartbeat was never acknowledged nor durable: losing the last few seconds of them in a
//! crash loses only how recently a host was heard.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::domain::{now_ms, AnomalyChange, HostBeat, Ingested, RollupBatch};
use prometheus_client::metrics::counter::Counter;

use crate::store::{Backend, Store, StoreError};

/// How often the heartbeats heard are written. Well under the staleness after which REST shows
/// a host disconnected (twice the dead-after time, 40 s by default).
pub const HEARTBEAT_FLUSH_EVERY: Duration = Duration::from_secs(2);

/// The newest heartbeat state per host not yet written.
#[derive(Default)]
pub(crate) struct Heartbeats {
    dirty: Mutex<HashMap<String, HostBeat>>,
}

impl Heartbeats {
    fn dirty(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostBeat>> {
        // A poisoned lock only means a task panicked while holding it; the map is still whole.
        self.dirty.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps what `beat` says over what an older one said: the newest time heard, the largest
    /// drop count, a certificate expiry and a detector state when given.
    pub(crate) fn record(&self, beat: HostBeat) {
        let mut dirty = self.dirty();
        match dirty.get_mut(&beat.host_id) {
            Some(b) => merge(b, beat),
            None => {
                dirty.insert(beat.host_id.clone(), beat);
            }
        }
    }

    pub(super) fn take(&self) -> Vec<HostBeat> {
        self.dirty().drain().map(|(_, b)| b).collect()
    }

    /// Puts back beats whose write failed, under any newer ones heard since.
    pub(super) fn restore(&self, beats: Vec<HostBeat>) {
        let mut dirty = self.dirty();
        for old in beats {
            match dirty.remove(&old.host_id) {
                Some(newer) => {
                    let mut b = old;
                    merge(&mut b, newer);
                    dirty.insert(b.host_id.clone(), b);
                }
                None => {
                    dirty.insert(old.host_id.clone(), old);
                }
            }
        }
    }
}

fn merge(b: &mut HostBeat, newer: HostBeat) {
    b.seen_ms = b.seen_ms.max(newer.seen_ms);
    b.outbox_dropped_total = b.outbox_dropped_total.max(newer.outbox_dropped_total);
    if newer.cert_not_after_ms > 0 {
        b.cert_not_after_ms = newer.cert_not_after_ms;
    }
    if newer.detector.is_some() {
        b.detector = newer.detector;
    }
}

/// A durable message of one kind that many streams send at once, stored by groups: one
/// transaction for whatever is queued. [`GroupWriter`] runs it.
pub(crate) trait Grouped: Send + Sync + Sized + 'static {
    /// The kind, for logs.
    const KIND: &'static str;
    /// Stores `items` (of any agents) in one transaction, each exactly once per (agent id,
    /// sequence number); the results in the order of `items`; on an error nothing is stored.
    fn store_group<'a>(
        store: &'a Store,
        items: &'a [(&'a str, &'a Self)],
        now_ms: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Ingested>, StoreError>> + Send + 'a;
}

impl Grouped for RollupBatch {
    const KIND: &'static str = "rollup";
    fn store_group<'a>(
        store: &'a Store,
        items: &'a [(&'a str, &'a Self)],
        now_ms: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Ingested>, StoreError>> + Send + 'a {
        store.ingest_rollups(items, now_ms)
    }
}

/// An anomaly change: a fleet whose hosts share a failing dependency opens thousands of events
/// within seconds.
impl Grouped for AnomalyChange {
    const KIND: &'static str = "anomaly";
    fn store_group<'a>(
        store: &'a Store,
        items: &'a [(&'a str, &'a Self)],
        now_ms: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Ingested>, StoreError>> + Send + 'a {
        store.ingest_anomalies(items, now_ms)
    }
}

/// A message waiting for its group, and where its result goes.
struct Job<T> {
    agent_id: String,
    item: T,
    reply: oneshot::Sender<Result<Ingested, StoreError>>,
}

/// The group commit: streams queue their messages here (a bounded queue: when the writers fall
/// behind, streams wait, which is the back-pressure) and writer tasks store what is queued, up
/// to [`GroupWriter::MAX_GROUP`] at a time, in one transaction each.
pub(crate) struct GroupWriter<T> {
    queue: mpsc::Sender<Job<T>>,
}

/// The group commit of rollups.
pub(crate) type RollupWriter = GroupWriter<RollupBatch>;
/// The group commit of anomaly changes.
pub(crate) type AnomalyWriter = GroupWriter<AnomalyChange>;

impl<T: Grouped> GroupWriter<T> {
    /// Messages in one transaction, at most: a rollup is one packed row, so a group stays a
    /// short write.
    const MAX_GROUP: usize = 256;
    /// Messages waiting for a writer, at most.
    const QUEUE: usize = 4096;
    /// A writer starts a transaction no sooner than this after its previous one started, and
    /// takes what queued meanwhile: a busy fleet's messages go by the group instead of one
    /// or two per transaction (each costs a commit and a round of database statements), for
    /// at most this much more ack latency; a writer idle longer than this starts at once.
    const PACE: Duration = Duration::from_millis(10);

    /// Starts the writers: one on SQLite (it has one writer at a time; a second would only wait
    /// for the lock), a few on PostgreSQL, whose commits can overlap. `groups` counts the
    /// transactions that stored something.
    pub(crate) fn start(store: Store, groups: Option<Counter>) -> Self {
        let writers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        Self::start_writers(store, groups, writers)
    }

    fn start_writers(store: Store, groups: Option<Counter>, writers: usize) -> Self {
        let (queue, rx) = mpsc::channel(Self::QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..writers {
            tokio::spawn(write_groups(store.clone(), rx.clone(), groups.clone()));
        }
        Self { queue }
    }

    /// Stores `item` with the next group; returns once the group committed (or failed).
    pub(crate) async fn write(&self, agent_id: &str, item: T) -> Result<Ingested, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            agent_id: agent_id.to_string(),
            item,
            reply,
        };
        let stopped = || StoreError::Db(format!("the {} writer stopped", T::KIND));
        self.queue.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One writer: takes what is queued (waiting only when nothing is), stores it, answers each
/// message's stream. Ends when the service owning the writer (every sender) is gone.
async fn write_groups<T: Grouped>(
    store: Store,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job<T>>>>,
    groups: Option<Counter>,
) {
    let counted = || {
        if let Some(c) = &groups {
            c.inc();
        }
    };
    let max = GroupWriter::<T>::MAX_GROUP;
    let mut jobs = Vec::with_capacity(max);
    let mut started: Option<Instant> = None;
    loop {
        jobs.clear();
        let received = rx.lock().await.recv_many(&mut jobs, max).await;
        if received == 0 {
            return;
        }
        // Paced: the rest of the group arrives while the writer waits (the queue is not held
        // meanwhile, so other writers go on with what they took). Then it takes what queued
        // unless another writer holds the queue: that one is waiting in `recv_many` for the
        // next message, so nothing is queued, and waiting for the lock would hold this group
        // until more traffic came (at the end of a burst, forever).
        let due = started.map(|at| at + GroupWriter::<T>::PACE);
        if let Some(due) = due.filter(|&due| jobs.len() < max && Instant::now() < due) {
            tokio::time::sleep_until(due.into()).await;
            if let Ok(mut rx) = rx.try_lock() {
                while jobs.len() < max {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
            }
        }
        started = Some(Instant::now());
        let items: Vec<(&str, &T)> = jobs
            .iter()
            .map(|j| (j.agent_id.as_str(), &j.item))
            .collect();
        let result = T::store_group(&store, &items, now_ms()).await;
        drop(items);
        match result {
            Ok(results) => {
                counted();
                for (job, r) in jobs.drain(..).zip(results) {
                    let _ = job.reply.send(Ok(r));
                }
            }
            Err(e) if jobs.len() == 1 => {
                if let Some(job) = jobs.pop() {
                    let _ = job.reply.send(Err(e));
                }
            }
            // One message the database refuses must not fail the others of its group: each is
            // written alone. Two failures in a row say the database itself is failing; the
            // rest are answered with its error rather than waited on one by one.
            Err(e) => {
                tracing::warn!(error = %e, kind = T::KIND, messages = jobs.len(), "group write failed; writing each message alone");
                let mut failures = 0;
                let mut last_error = e.to_string();
                for job in jobs.drain(..) {
                    if failures >= 2 {
                        let _ = job.reply.send(Err(StoreError::Db(last_error.clone())));
                        continue;
                    }
                    let one = [(job.agent_id.as_str(), &job.item)];
                    let r = T::store_group(&store, &one, now_ms())
                        .await
                        .and_then(|mut v| {
                            v.pop().ok_or_else(|| {
                                StoreError::Db(format!("no result for the one {} written", T::KIND))
                            })
                        });
                    match &r {
                        Ok(_) => {
                            counted();
                            failures = 0;
                        }
                        Err(e) => {
                            failures += 1;
                            last_error = e.to_string();
                        }
                    }
                    let _ = job.reply.send(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DetectorStatus;

    /// Stored without a database: each item is new.
    struct Nothing;

    impl Grouped for Nothing {
        const KIND: &'static str = "nothing";
        async fn store_group<'a>(
            _: &'a Store,
            items: &'a [(&'a str, &'a Self)],
            _: i64,
        ) -> Result<Vec<Ingested>, StoreError> {
            Ok(items.iter().map(|_| Ingested::Stored).collect())
        }
    }

    /// Several writers (PostgreSQL's four): a message that comes within the pace of the one
    /// before is paced, and answered even though no more traffic follows, while an idle writer
    /// holds the queue waiting for the next message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paced_group_is_stored_when_no_more_messages_come() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}/t.db?mode=rwc", dir.path().display()))
            .await
            .expect("store");
        let writer = GroupWriter::<Nothing>::start_writers(store, None, 4);
        for n in 0..20 {
            let answer =
                tokio::time::timeout(Duration::from_secs(5), writer.write("h1", Nothing)).await;
            assert!(
                matches!(answer, Ok(Ok(Ingested::Stored))),
                "message {n} not answered"
            );
        }
    }

    fn beat(id: &str, seen: i64, dropped: i64, cert: i64, state: Option<&str>) -> HostBeat {
        HostBeat {
            host_id: id.into(),
            seen_ms: seen,
            outbox_dropped_total: dropped,
            cert_not_after_ms: cert,
            detector: state.map(|s| DetectorStatus {
                state: s.into(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_newer_beat_keeps_what_an_older_one_said_unless_it_says_more() {
        let h = Heartbeats::default();
        h.record(beat("a", 10, 5, 100, Some("calibrated")));
        h.record(beat("a", 20, 3, 0, None));
        h.record(beat("b", 15, 0, 0, None));
        let mut beats = h.take();
        beats.sort_by(|x, y| x.host_id.cmp(&y.host_id));
        assert_eq!(
            beats,
            [
                beat("a", 20, 5, 100, Some("calibrated")),
                beat("b", 15, 0, 0, None)
            ]
        );
        assert!(h.take().is_empty(), "taking empties the book");
    }

    #[test]
    fn beats_put_back_after_a_failed_write_stay_under_newer_ones() {
        let h = Heartbeats::default();
        h.record(beat("a", 10, 7, 100, Some("warming_up")));
        let taken = h.take();
        h.record(beat("a", 30, 2, 0, Some("calibrated")));
        h.restore(taken);
        assert_eq!(h.take(), [beat("a", 30, 7, 100, Some("calibrated"))]);
    }
}
