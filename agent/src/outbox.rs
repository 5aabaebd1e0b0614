//! Durable outbox in sled.
//!
//! A durable message gets its sequence number and is written (and flushed)
//! here *before* it is sent; it is removed only when the control plane
//! acknowledges it. The sequence counter lives in the same database, so a
//! number is never reused, also after a crash. The outbox is bounded: beyond
//! `max_bytes` the oldest messages are dropped and counted, and that count is
//! reported to the control plane.

use std::path::Path;

use prost::Message;
use sco_proto::v1::AgentMessage;

const NEXT_SEQ: &[u8] = b"next_seq";
const DROPPED: &[u8] = b"dropped_total";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("outbox entry {seq} is corrupt: {source}")]
    Corrupt {
        seq: u64,
        source: prost::DecodeError,
    },
}

pub struct Outbox {
    db: sled::Db,
    messages: sled::Tree,
    meta: sled::Tree,
    max_bytes: u64,
    bytes: u64,
}

fn be(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<u64, sled::Error> {
    Ok(tree
        .get(key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

impl Outbox {
    pub fn open(dir: &Path, max_bytes: u64, cache_bytes: u64) -> Result<Self, OutboxError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // We flush explicitly after every durable write.
            .flush_every_ms(None)
            .open()?;
        let messages = db.open_tree("outbox")?;
        let meta = db.open_tree("meta")?;
        let mut bytes = 0;
        for entry in messages.iter() {
            let (_, v) = entry?;
            bytes += v.len() as u64;
        }
        Ok(Self {
            db,
            messages,
            meta,
            max_bytes,
            bytes,
        })
    }

    /// Assigns the next sequence number, stores the message durably and
    /// returns its number.
    pub async fn push(&mut self, message: AgentMessage) -> Result<u64, OutboxError> {
        self.push_with(|_| message).await
    }

    /// Like [`Outbox::push`], for messages that must carry their own sequence
    /// number in their body (an anomaly event names its opening message).
    pub async fn push_with(
        &mut self,
        build: impl FnOnce(u64) -> AgentMessage,
    ) -> Result<u64, OutboxError> {
        // The stored counter and the newest key are written together, but
        // taking the larger one keeps numbers unique even if they were not.
        let newest = self
            .messages
            .last()?
            .and_then(|(k, _)| <[u8; 8]>::try_from(k.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let seq = read_u64(&self.meta, NEXT_SEQ)?.max(newest + 1).max(1);
        let mut message = build(seq);
        message.seq = seq;
        let encoded = message.encode_to_vec();
        let len = encoded.len() as u64;
        let mut batch = sled::Batch::default();
        batch.insert(&be(seq), encoded);
        self.messages.apply_batch(batch)?;
        self.meta.insert(NEXT_SEQ, &be(seq + 1))?;
        self.bytes += len;
        self.enforce_bound()?;
        self.db.flush_async().await?;
        Ok(seq)
    }

    fn enforce_bound(&mut self) -> Result<(), OutboxError> {
        let mut dropped = 0;
        // Keep at least the newest message, whatever its size.
        while self.bytes > self.max_bytes && self.messages.len() > 1 {
            let Some((_, v)) = self.messages.pop_min()? else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(v.len() as u64);
            dropped += 1;
        }
        if dropped > 0 {
            let total = read_u64(&self.meta, DROPPED)? + dropped;
            self.meta.insert(DROPPED, &be(total))?;
            tracing::warn!(dropped, total, "outbox full: dropped the oldest messages");
        }
        Ok(())
    }

    /// Removes every message with a sequence number up to `seq`.
    pub fn ack(&mut self, seq: u64) -> Result<usize, OutboxError> {
        let mut removed = 0;
        while let Some((k, v)) = self.messages.first()? {
            let key = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if key > seq {
                break;
            }
            self.messages.remove(k)?;
            self.bytes = self.bytes.saturating_sub(v.len() as u64);
            removed += 1;
        }
        Ok(removed)
    }

    /// Messages with a sequence number above `after`, oldest first, at most
    /// `limit` of them.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<AgentMessage>, OutboxError> {
        let mut out = Vec::new();
        for entry in self
            .messages
            .range(be(after.saturating_add(1))..)
            .take(limit)
        {
            let (k, v) = entry?;
            let seq = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let msg = AgentMessage::decode(v.as_ref())
                .map_err(|source| OutboxError::Corrupt { seq, source })?;
            out.push(msg);
        }
        Ok(out)
    }

    /// The underlying database, for other local state that should share
    /// its process-wide cache and flushes.
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    pub fn pending(&self) -> u64 {
        self.messages.len() as u64
    }

    pub fn dropped_total(&self) -> u64 {
        read_u64(&self.meta, DROPPED).unwrap_or(0)
    }

    /// Highest sequence number assigned so far (0 when none).
    pub fn last_seq(&self) -> u64 {
        read_u64(&self.meta, NEXT_SEQ)
            .unwrap_or(1)
            .saturating_sub(1)
    }

    pub async fn flush(&self) -> Result<(), OutboxError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sco_proto::v1::{agent_message::Body, Heartbeat};

    fn msg(n: u64) -> AgentMessage {
        AgentMessage {
            seq: 0,
            produced_at_ms: n as i64,
            body: Some(Body::Heartbeat(Heartbeat {
                outbox_pending: n,
                outbox_dropped_total: 0,
                cert_not_after_ms: 0,
                detector: None,
            })),
        }
    }

    /// sled releases its file lock a moment after the last handle is
    /// dropped; a restarted agent is a new process and never sees this.
    fn reopen(path: &Path) -> Outbox {
        for _ in 0..40 {
            if let Ok(o) = Outbox::open(path, 1 << 20, 1 << 20) {
                return o;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Outbox::open(path, 1 << 20, 1 << 20).expect("reopen")
    }

    #[tokio::test]
    async fn sequence_survives_reopen_and_ack_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut o = Outbox::open(dir.path(), 1 << 20, 1 << 20).expect("open");
            for n in 0..5 {
                assert_eq!(o.push(msg(n)).await.expect("push"), n + 1);
            }
            assert_eq!(o.ack(2).expect("ack"), 2);
        }
        let mut o = reopen(dir.path());
        let seqs: Vec<u64> = o
            .after(0, 100)
            .expect("read")
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(
            o.push(msg(9)).await.expect("push"),
            6,
            "numbers are never reused"
        );
        assert_eq!(o.last_seq(), 6);
        let seqs: Vec<u64> = o
            .after(4, 100)
            .expect("read")
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, vec![5, 6]);
    }

    #[tokio::test]
    async fn bound_drops_oldest_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = msg(1).encoded_len() as u64 + 2;
        let mut o = Outbox::open(dir.path(), size * 3, 1 << 20).expect("open");
        for n in 0..10 {
            o.push(msg(n)).await.expect("push");
        }
        assert!(o.pending() <= 3);
        assert_eq!(o.dropped_total() + o.pending(), 10);
        let first = o.after(0, 1).expect("read")[0].seq;
        assert_eq!(first, 10 - o.pending() + 1, "the oldest were dropped");
    }
}
