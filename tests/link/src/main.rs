//! `sco-link`: a link made in userspace, for the link drills of `tests/tests/link_faults.rs` on
//! kernels without the `netem` queueing discipline. It attaches to two TUN devices (creating
//! them when absent; they go away with it) and forwards every IP packet read from one to the
//! other, each direction dropping, delaying (with uniform jitter, which lets packets overtake
//! each other as netem does), rushing packets ahead (explicit reordering), sending them twice,
//! corrupting them past the transport checksum, or holding them to a rate, as its settings say.
//!
//! ```text
//! sco-link [--settings FILE] [--seed N] DEV_A DEV_B
//! ```
//!
//! The settings file (see [`shape::Settings::parse`]) is read again whenever it changes (polled
//! every 100 ms), so a drill moves through its phases by rewriting it; a missing file is a clean
//! link. The counts of each direction (packets forwarded, dropped, rushed ahead, that arrived
//! after a later one, sent twice, corrupted, held back by the rate, dropped for a full queue,
//! failed writes) are printed on stdout after each
//! change of settings, on SIGUSR1, and on SIGTERM or SIGINT, which end it.

mod packet;
mod shape;
mod sys;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shape::{Fate, Rng, Settings, Shape};

/// Packets held at most per direction, as netem's default `limit`; more are dropped.
const QUEUE_LIMIT: usize = 1000;

#[derive(Default)]
struct Counts {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    rushed: AtomicU64,
    reordered: AtomicU64,
    duplicated: AtomicU64,
    corrupted: AtomicU64,
    paced: AtomicU64,
    overflow: AtomicU64,
    errors: AtomicU64,
}

/// A packet held: when to send it, its place in the order of arrival, its bytes.
type Held = Reverse<(Instant, u64, Vec<u8>)>;

/// One direction: its settings, the packets it holds (by time to send, then arrival), counts.
struct Direction {
    name: &'static str,
    shape: Mutex<Shape>,
    queue: Mutex<BinaryHeap<Held>>,
    due: Condvar,
    counts: Counts,
}

impl Direction {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            shape: Mutex::default(),
            queue: Mutex::default(),
            due: Condvar::new(),
            counts: Counts::default(),
        }
    }

    fn counts(&self) -> String {
        let c = &self.counts;
        format!(
            "{} forwarded={} dropped={} rushed={} reordered={} duplicated={} corrupted={} \
             paced={} overflow={} errors={}",
            self.name,
            c.forwarded.load(Relaxed),
            c.dropped.load(Relaxed),
            c.rushed.load(Relaxed),
            c.reordered.load(Relaxed),
            c.duplicated.load(Relaxed),
            c.corrupted.load(Relaxed),
            c.paced.load(Relaxed),
            c.overflow.load(Relaxed),
            c.errors.load(Relaxed),
        )
    }

    /// Reads packets from `from` and decides their fate, for ever.
    fn take_in(&self, mut from: File, mut rng: Rng) {
        let mut buf = vec![0u8; 65_536];
        // the order packets are queued in (a copy counts as one more), and when the wire is
        // free again at the link's rate
        let mut seq = 0u64;
        let mut wire_free = Instant::now();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => continue,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // e.g. the device is being moved or deleted: wait rather than spin
                    self.counts.errors.fetch_add(1, Relaxed);
                    eprintln!("sco-link: {}: read: {e}", self.name);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let shape = *self.shape.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let at = match shape.fate(&mut rng) {
                Fate::Drop => {
                    self.counts.dropped.fetch_add(1, Relaxed);
                    continue;
                }
                Fate::Rush => {
                    self.counts.rushed.fetch_add(1, Relaxed);
                    now
                }
                Fate::Hold(d) => now + d,
            };
            let mut packet = buf[..n].to_vec();
            if shape.corrupts(&mut rng) && packet::corrupt(&mut packet, &mut rng) {
                self.counts.corrupted.fetch_add(1, Relaxed);
            }
            let copies = if shape.duplicates(&mut rng) {
                self.counts.duplicated.fetch_add(1, Relaxed);
                2
            } else {
                1
            };
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            for _ in 0..copies {
                if queue.len() >= QUEUE_LIMIT {
                    self.counts.overflow.fetch_add(1, Relaxed);
                    continue;
                }
                let mut leaves = at;
                if shape.rate_kbit > 0 {
                    if wire_free > at {
                        leaves = wire_free;
                        self.counts.paced.fetch_add(1, Relaxed);
                    }
                    wire_free = leaves + shape.wire_time(n);
                }
                queue.push(Reverse((leaves, seq, packet.clone())));
                seq += 1;
            }
            self.due.notify_one();
        }
    }

    /// Writes each held packet to `to` once its time has come, for ever.
    fn send_out(&self, mut to: File) {
        let mut newest_sent = None;
        loop {
            let (seq, packet) = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    let now = Instant::now();
                    let wait = match queue.peek() {
                        Some(Reverse((at, _, _))) if *at <= now => break,
                        Some(Reverse((at, _, _))) => *at - now,
                        None => Duration::from_secs(1),
                    };
                    queue = self
                        .due
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                let Some(Reverse((_, seq, packet))) = queue.pop() else {
                    continue;
                };
                (seq, packet)
            };
            // a packet that arrives after one read later than it was overtaken
            if newest_sent.is_some_and(|newest| seq < newest) {
                self.counts.reordered.fetch_add(1, Relaxed);
            }
            newest_sent = newest_sent.max(Some(seq));
            // the kernel refuses what is not an IP packet (EINVAL): counted, not fatal
            // (a TUN device takes a packet whole or not at all)
            match to.write(&packet) {
                Ok(n) if n == packet.len() => self.counts.forwarded.fetch_add(1, Relaxed),
                _ => self.counts.errors.fetch_add(1, Relaxed),
            };
        }
    }
}

struct Args {
    settings: Option<PathBuf>,
    seed: u64,
    devices: [String; 2],
}

fn parse_args() -> Result<Args, String> {
    let mut settings = None;
    let mut seed = 1;
    let mut devices = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--settings" => settings = Some(args.next().ok_or("--settings needs a file")?.into()),
            "--seed" => {
                let value = args.next().ok_or("--seed needs a number")?;
                seed = value
                    .parse()
                    .map_err(|_| format!("--seed is not a number: {value:?}"))?;
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            _ => devices.push(arg),
        }
    }
    let devices: [String; 2] = devices
        .try_into()
        .map_err(|d: Vec<String>| format!("expected two TUN devices, got {}", d.len()))?;
    Ok(Args {
        settings,
        seed,
        devices,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sco-link: {e}\nusage: sco-link [--settings FILE] [--seed N] DEV_A DEV_B");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sco-link: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    sys::catch(&[libc::SIGTERM, libc::SIGINT, libc::SIGUSR1])
        .map_err(|e| format!("signal handlers: {e}"))?;
    let [a, b] = &args.devices;
    let open = |name: &str| sys::open_tun(name).map_err(|e| format!("TUN device {name}: {e}"));
    let (dev_a, dev_b) = (open(a)?, open(b)?);
    let clone = |f: &File| f.try_clone().map_err(|e| format!("TUN file: {e}"));
    let directions = [
        Arc::new(Direction::new("ab")),
        Arc::new(Direction::new("ba")),
    ];
    let ends = [
        (clone(&dev_a)?, clone(&dev_b)?),
        (clone(&dev_b)?, clone(&dev_a)?),
    ];
    for (i, (dir, (from, to))) in directions.iter().zip(ends).enumerate() {
        let rng = Rng::new(args.seed.wrapping_add(i as u64));
        let reader = Arc::clone(dir);
        std::thread::spawn(move || reader.take_in(from, rng));
        let writer = Arc::clone(dir);
        std::thread::spawn(move || writer.send_out(to));
    }
    say(&format!("forwarding between {a} (a) and {b} (b)"));

    let print_counts = || {
        say(&format!(
            "counts {}; {}",
            directions[0].counts(),
            directions[1].counts()
        ))
    };
    let mut applied: Option<String> = None;
    loop {
        if sys::take_signal(libc::SIGTERM) || sys::take_signal(libc::SIGINT) {
            print_counts();
            return Ok(());
        }
        if sys::take_signal(libc::SIGUSR1) {
            print_counts();
        }
        if let Some(path) = &args.settings {
            // a missing file is a clean link
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if applied.as_deref() != Some(text.as_str()) {
                match Settings::parse(&text) {
                    Ok(s) => {
                        print_counts();
                        for (dir, shape) in directions.iter().zip([s.ab, s.ba]) {
                            *dir.shape.lock().unwrap_or_else(PoisonError::into_inner) = shape;
                        }
                        say(&format!("settings ab {:?}; ba {:?}", s.ab, s.ba));
                    }
                    Err(e) => eprintln!("sco-link: {}: {e} (settings kept)", path.display()),
                }
                applied = Some(text);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A line on stdout, written at once (a drill reads it from a file).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "sco-link: {line}");
    let _ = out.flush();
}
