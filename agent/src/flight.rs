//! How much of the outbox the uplink keeps on the wire unacknowledged.
//!
//! Without a limit, a backlog goes out as fast as the transport takes it: HTTP/2 accepts a
//! megabyte per stream and the socket more, so on a slow link the agent's own data queues
//! for minutes in front of everything sent after it, keep-alive pings and heartbeats
//! included. Either end then calls a stream that is still delivering dead, and the agent
//! reconnects and sends everything unacknowledged again.
//!
//! So the uplink sends a durable message only while the bytes in flight (sent, not yet
//! acknowledged) are under a window of what the link delivers in a quarter of the dead-after
//! time ([`Flight::new`]): a ping then waits behind about that much of the agent's own data,
//! on any link. The delivery rate is the bytes acknowledged over the last such quarter (at
//! least a second) over the time it spans, so that acknowledgements that come in bursts (group
//! commits, a retransmission that held the stream) average out, and so that a control plane
//! slow to commit, which delays acknowledgements but not the link, does not shrink the window.
//! The window follows the rate at once when it falls, but only on a message sent with the
//! window at least half used (an agent with little to send says nothing of the link), and
//! at most doubles per acknowledgement when it rises, so a fast link opens it in a few round
//! trips.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window a stream starts with and never goes under: about three rollups, which a
/// 64 kbit/s link carries in a second.
pub const MIN_WINDOW: u64 = 8 * 1024;

/// The largest window: well under the control plane's HTTP/2 stream window (1 MiB), so that
/// sending never waits on the transport.
pub const MAX_WINDOW: u64 = 512 * 1024;

/// Messages in flight at most, whatever their size.
pub const MAX_MESSAGES: usize = 1024;

struct Sent {
    seq: u64,
    bytes: u64,
    /// Whether the window was at least half used once it was sent.
    full: bool,
}

pub struct Flight {
    target: Duration,
    /// How far back the delivery rate looks.
    span: Duration,
    window: u64,
    sent: VecDeque<Sent>,
    bytes: u64,
    delivered: u64,
    /// (when, bytes acknowledged by then) over the last `span`, and one before it; the first
    /// is the first send of the stream.
    history: VecDeque<(Instant, u64)>,
}

impl Flight {
    /// A stream's flight, for a transport called dead after `dead_after` of silence.
    pub fn new(dead_after: Duration) -> Self {
        let target = dead_after / 4;
        Self {
            target,
            span: target.max(Duration::from_secs(1)),
            window: MIN_WINDOW,
            sent: VecDeque::new(),
            bytes: 0,
            delivered: 0,
            history: VecDeque::new(),
        }
    }

    /// Whether another message may go: always when nothing is in flight, so that a message
    /// larger than the window still goes, alone.
    pub fn has_room(&self) -> bool {
        self.sent.is_empty() || (self.bytes < self.window && self.sent.len() < MAX_MESSAGES)
    }

    pub fn sent(&mut self, seq: u64, bytes: u64, now: Instant) {
        if self.history.is_empty() {
            self.history.push_back((now, 0));
        }
        self.bytes += bytes;
        self.sent.push_back(Sent {
            seq,
            bytes,
            full: self.bytes * 2 >= self.window,
        });
    }

    /// Everything up to `seq` is acknowledged.
    pub fn acked(&mut self, seq: u64, now: Instant) {
        let mut newest = None;
        while self.sent.front().is_some_and(|s| s.seq <= seq) {
            let Some(s) = self.sent.pop_front() else {
                break;
            };
            self.bytes -= s.bytes;
            self.delivered += s.bytes;
            newest = Some(s);
        }
        let Some(s) = newest else {
            return;
        };
        // the oldest point still at least `span` ago is the base
        while self
            .history
            .get(1)
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) >= self.span)
        {
            self.history.pop_front();
        }
        let Some(&(base_at, base)) = self.history.front() else {
            return;
        };
        self.history.push_back((now, self.delivered));
        let over = now.saturating_duration_since(base_at);
        if over < Duration::from_millis(1) {
            return;
        }
        let rate = (self.delivered - base) as f64 / over.as_secs_f64();
        let wanted = ((rate * self.target.as_secs_f64()) as u64).clamp(MIN_WINDOW, MAX_WINDOW);
        if wanted > self.window {
            self.window = wanted.min(self.window * 2);
        } else if s.full && over * 2 >= self.span {
            self.window = wanted;
        }
    }

    pub fn window(&self) -> u64 {
        self.window
    }

    pub fn in_flight(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link carrying `bytes_per_sec` with `rtt`, fed `size`-byte messages for as long as
    /// the window lets them go, for `secs`: the window at the end and the longest any message
    /// waited between send and acknowledgement.
    /// Acknowledgements come in bursts, every `burst` (a stream held by a lost packet, group
    /// commits): everything through by then at once.
    fn drive(
        bytes_per_sec: f64,
        rtt: Duration,
        size: u64,
        secs: u64,
        burst: Duration,
        dead_after: Duration,
    ) -> (u64, Duration) {
        let start = Instant::now();
        let mut f = Flight::new(dead_after);
        let mut seq = 0;
        // when the link finishes carrying each message in flight (it carries them in order)
        let mut arrivals: VecDeque<(u64, Duration, Duration)> = VecDeque::new();
        let mut link_free = Duration::ZERO;
        let mut now = Duration::ZERO;
        let mut longest = Duration::ZERO;
        let step = Duration::from_millis(10);
        while now < Duration::from_secs(secs) {
            // (bounded, so that a flight that always had room fails the checks below)
            for _ in 0..10_000 {
                if !f.has_room() {
                    break;
                }
                seq += 1;
                f.sent(seq, size, start + now);
                let on_wire = Duration::from_secs_f64(size as f64 / bytes_per_sec);
                link_free = link_free.max(now) + on_wire;
                arrivals.push_back((seq, now, link_free + rtt));
            }
            now += step;
            if !now.as_millis().is_multiple_of(burst.as_millis()) {
                continue;
            }
            while arrivals.front().is_some_and(|a| a.2 <= now) {
                let Some((s, sent_at, _)) = arrivals.pop_front() else {
                    break;
                };
                longest = longest.max(now - sent_at);
                f.acked(s, start + now);
            }
        }
        (f.window(), longest)
    }

    #[test]
    fn a_narrow_link_keeps_about_a_quarter_of_dead_after_in_flight() {
        // 64 kbit/s, 100 ms round trip, rollups of 2.5 kB; dead after 4 s: a target of 1 s
        for burst in [10, 500, 1_000].map(Duration::from_millis) {
            let (window, longest) = drive(
                8_000.0,
                Duration::from_millis(100),
                2_500,
                120,
                burst,
                Duration::from_secs(4),
            );
            assert!(
                window <= 2 * 8_000 + MIN_WINDOW,
                "window {window}, bursts {burst:?}"
            );
            assert!(
                longest < Duration::from_secs(4),
                "a message waited {longest:?} for its acknowledgement, bursts {burst:?}"
            );
        }
    }

    #[test]
    fn at_the_shipped_times_a_message_waits_about_a_quarter_of_dead_after() {
        // dead after 20 s: a 5 s target, which 8 kB/s fills with 40 kB
        for burst in [10, 1_000, 3_000].map(Duration::from_millis) {
            let (window, longest) = drive(
                8_000.0,
                Duration::from_millis(100),
                2_500,
                300,
                burst,
                Duration::from_secs(20),
            );
            assert!(
                (16_000..=48_000).contains(&window),
                "window {window}, bursts {burst:?}"
            );
            assert!(
                longest < Duration::from_secs(10),
                "a message waited {longest:?}, bursts {burst:?}"
            );
        }
    }

    #[test]
    fn a_fast_link_opens_the_window_to_its_largest() {
        // 100 Mbit/s, 50 ms round trip: the window is what bounds it
        let (window, _) = drive(
            12_500_000.0,
            Duration::from_millis(50),
            2_500,
            10,
            Duration::from_millis(10),
            Duration::from_secs(20),
        );
        assert_eq!(window, MAX_WINDOW);
    }

    #[test]
    fn a_link_that_slows_shrinks_the_window_within_a_few_seconds() {
        let start = Instant::now();
        let mut f = Flight::new(Duration::from_secs(20));
        // fast: acked 20 ms after sending, window full
        let mut seq = 0;
        let mut t = Duration::ZERO;
        for _ in 0..200 {
            while f.has_room() {
                seq += 1;
                f.sent(seq, 2_500, start + t);
            }
            t += Duration::from_millis(20);
            f.acked(seq, start + t);
        }
        assert_eq!(f.window(), MAX_WINDOW);
        // then 8 kB/s: each 2.5 kB takes 0.31 s and the window stays full
        let mut acked = seq;
        for _ in 0..400 {
            while f.has_room() {
                seq += 1;
                f.sent(seq, 2_500, start + t);
            }
            t += Duration::from_millis(312);
            acked += 1;
            f.acked(acked, start + t);
        }
        // 8 kB/s times a 5 s target
        assert!(f.window() <= 48 * 1024, "window {}", f.window());
        assert!(f.window() >= MIN_WINDOW);
    }

    #[test]
    fn a_message_larger_than_the_window_goes_alone() {
        let mut f = Flight::new(Duration::from_secs(20));
        let now = Instant::now();
        assert!(f.has_room());
        f.sent(1, 4 * MAX_WINDOW, now);
        assert!(!f.has_room());
        f.acked(1, now + Duration::from_secs(1));
        assert!(f.has_room());
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn little_to_send_leaves_the_window_alone() {
        let start = Instant::now();
        let mut f = Flight::new(Duration::from_secs(20));
        let mut t = Duration::ZERO;
        let mut seq = 0;
        // a backlog on a fast link opens the window
        for _ in 0..20 {
            while f.has_room() {
                seq += 1;
                f.sent(seq, 2_500, start + t);
            }
            t += Duration::from_millis(20);
            f.acked(seq, start + t);
        }
        let open = f.window();
        assert!(open > 8 * MIN_WINDOW, "window {open}");
        // then one rollup at a time, some acknowledged slowly (the database was busy), some
        // fast: neither is the link's answer to a full window
        for i in 0..50 {
            seq += 1;
            f.sent(seq, 2_500, start + t);
            t += Duration::from_millis(if i % 2 == 0 { 30_000 } else { 5 });
            f.acked(seq, start + t);
        }
        assert_eq!(f.window(), open);
        // acks of something never sent, or sent in another session, change nothing
        f.acked(10_000, start + t);
        assert_eq!(f.window(), open);
    }
}
