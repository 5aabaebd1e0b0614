//! A simulated agent's outbox, with the agent's semantics (`agent/src/outbox.rs`)
//! kept in memory: every durable message gets the next sequence number and
//! stays until an ack covers it; after a reconnect everything unacked is sent
//! again, oldest first. Memory instead of sled because a simulated agent
//! lives only as long as the load generator; what is measured is the control
//! plane, not the agent's disk.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sco_proto::v1::AgentMessage;

use crate::stats::Kind;

struct Pending {
    seq: u64,
    kind: Kind,
    message: AgentMessage,
    /// When it was last handed to a stream.
    sent_at: Option<Instant>,
}

/// What an ack removed.
#[derive(Debug, Default, PartialEq)]
pub struct Acked {
    pub kinds: Vec<Kind>,
    /// Latency of each removed message that had been sent.
    pub latencies: Vec<Duration>,
}

#[derive(Default)]
pub struct Outbox {
    last_seq: u64,
    max_acked: u64,
    pending: VecDeque<Pending>,
    /// Kind of every assigned sequence number (index = seq - 1), for the
    /// database check at the end.
    kinds: Vec<Kind>,
    /// Sequence numbers of the messages that opened anomaly events.
    opened: Vec<u64>,
}

impl Outbox {
    /// Assigns the next sequence number to the message `build` makes for it.
    pub fn push_with(&mut self, kind: Kind, build: impl FnOnce(u64) -> AgentMessage) -> u64 {
        self.last_seq += 1;
        let seq = self.last_seq;
        let mut message = build(seq);
        message.seq = seq;
        self.pending.push_back(Pending {
            seq,
            kind,
            message,
            sent_at: None,
        });
        self.kinds.push(kind);
        seq
    }

    /// Up to `limit` messages after `after`, oldest first, marked as sent
    /// now, and how many of them had been sent before (resends).
    pub fn take_after(
        &mut self,
        after: u64,
        limit: usize,
        now: Instant,
    ) -> (Vec<AgentMessage>, u64) {
        let start = self.pending.partition_point(|p| p.seq <= after);
        let mut resends = 0;
        let batch = self
            .pending
            .range_mut(start..)
            .take(limit)
            .map(|p| {
                if p.sent_at.replace(now).is_some() {
                    resends += 1;
                }
                p.message.clone()
            })
            .collect();
        (batch, resends)
    }

    /// Removes every message up to `seq`.
    pub fn ack(&mut self, seq: u64, now: Instant) -> Acked {
        let mut acked = Acked::default();
        while self.pending.front().is_some_and(|p| p.seq <= seq) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            acked.kinds.push(p.kind);
            if let Some(at) = p.sent_at {
                acked.latencies.push(now.saturating_duration_since(at));
            }
        }
        self.max_acked = self.max_acked.max(seq.min(self.last_seq));
        acked
    }

    pub fn note_opened(&mut self, seq: u64) {
        self.opened.push(seq);
    }

    pub fn opened(&self) -> &[u64] {
        &self.opened
    }

    pub fn pending(&self) -> u64 {
        self.pending.len() as u64
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Highest sequence number acknowledged (every one below it was too).
    pub fn max_acked(&self) -> u64 {
        self.max_acked
    }

    pub fn kind_of(&self, seq: u64) -> Option<Kind> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.kinds.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(_seq: u64) -> AgentMessage {
        AgentMessage::default()
    }

    #[test]
    fn resends_unacked_in_order_and_acks_cumulatively() {
        let mut o = Outbox::default();
        let t = Instant::now();
        for _ in 0..5 {
            o.push_with(Kind::Rollup, msg);
        }
        let (first, resends) = o.take_after(0, 3, t);
        let first: Vec<u64> = first.iter().map(|m| m.seq).collect();
        assert_eq!((first.as_slice(), resends), ([1, 2, 3].as_slice(), 0));
        let acked = o.ack(2, t);
        assert_eq!(acked.kinds.len(), 2);
        assert_eq!(acked.latencies.len(), 2);
        // A new connection starts from 0 again: everything unacked, in order.
        let (again, resends) = o.take_after(0, 10, t);
        let again: Vec<u64> = again.iter().map(|m| m.seq).collect();
        assert_eq!((again.as_slice(), resends), ([3, 4, 5].as_slice(), 1));
        assert_eq!(o.ack(4, t).kinds.len(), 2);
        assert_eq!((o.pending(), o.max_acked(), o.last_seq()), (1, 4, 5));
        assert_eq!(o.ack(3, t), Acked::default(), "a stale ack removes nothing");
        assert_eq!(o.kind_of(5), Some(Kind::Rollup));
        assert_eq!(o.kind_of(0), None);
    }
}
