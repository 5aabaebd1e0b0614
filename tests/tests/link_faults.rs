//! The uplink on a bad link: the agent runs in its own network namespace, joined to the
//! control plane by a veth pair, and nftables in that namespace drops packets at random both
//! ways (a lossy link, 30 %), then none while the agent's address changes, then all of them
//! (a partition longer than the dead-after time, so both ends give the stream up), then none.
//! Every rollup the agent produced must be stored exactly once, in sequence, including those
//! collected during the partition, and the stream must come back by itself. A second drill
//! partitions an agent with a small outbox for longer than it can hold: the oldest messages
//! are dropped and counted, the count reaches the control plane, and the agent's memory stays
//! flat.
//!
//! This machine's kernel has no `netem` queueing discipline, so delay, jitter and reordering
//! come from `sco-link` (`tests/link`): the namespace is joined by two TUN devices instead, and
//! that program forwards the packets between them, delaying, dropping or rushing them ahead as
//! its settings say. A drill on such a link runs an agent over gRPC/TCP and one over QUIC side
//! by side through 300 ms ±100 ms each way, 25 % reordering, 30 % loss with 100 ms delay, 20 %
//! of the packets sent twice, 10 % corrupted past the transport checksum, a 64 kbit/s link,
//! and a partition.
//!
//! A last drill cuts an agent off until its outbox holds a backlog, then gives it back a narrow,
//! lossy link (64 kbit/s, 3 % loss, 50 ms): the backlog must drain through it, each rollup
//! stored once, while live data waits behind it and then catches up.
//!
//! Needs root, `ip`, `nft` and `/dev/net/tun`. Without them the test says so and passes, except
//! under `CI=true`, where it fails. `SCO_LINK_DRILL_SECS` sets the length of the lossy phase
//! and of each phase of the delay drill (default 20 s and 15 s) and `SCO_LINK_PARTITION_SECS`
//! that of the partition (default 12 s; the full drill is 60 s), `SCO_LINK_BACKLOG_SECS` that of
//! the cut before the narrow link (default 30 s; the full drill is 300 s).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use sco_tests::{bin, duplicated_windows, stored_windows, wait_for, wait_until, Db, Proc, Sandbox};

/// Runs a command, panicking with its output when it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn available(wire: Wire) -> Result<(), String> {
    // SAFETY-free check: only root may make namespaces and firewall rules
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Err("not root".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    if matches!(wire, Wire::Tun) && !std::path::Path::new("/dev/net/tun").exists() {
        return Err("no /dev/net/tun".into());
    }
    Ok(())
}

/// How the agent's namespace is joined to the host's.
#[derive(Clone, Copy)]
enum Wire {
    /// A veth pair: [`Link::loss`] drops packets with nftables in the namespace.
    Veth,
    /// Two TUN devices with `sco-link` forwarding between them (the kernel has no `netem`):
    /// [`Link::shape`] sets its loss, delay, jitter and reordering.
    Tun,
}

/// `sco-link` forwarding between the two TUN devices of a link, and its settings file.
struct Relay {
    proc: Proc,
    settings: PathBuf,
    _dir: tempfile::TempDir,
}

/// What `sco-link` counted, both directions together.
#[derive(Clone, Copy, Debug, Default)]
struct RelayCounts {
    forwarded: u64,
    dropped: u64,
    rushed: u64,
    reordered: u64,
    duplicated: u64,
    corrupted: u64,
    paced: u64,
}

impl std::ops::Sub for RelayCounts {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            forwarded: self.forwarded - o.forwarded,
            dropped: self.dropped - o.dropped,
            rushed: self.rushed - o.rushed,
            reordered: self.reordered - o.reordered,
            duplicated: self.duplicated - o.duplicated,
            corrupted: self.corrupted - o.corrupted,
            paced: self.paced - o.paced,
        }
    }
}

impl Relay {
    /// Starts `sco-link`, which makes the TUN devices `a` and `b`, and waits for them.
    fn start(a: &str, b: &str, seed: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = dir.path().join("settings");
        let proc = Proc::spawn(
            "sco-link",
            Command::new(bin("sco-link"))
                .arg("--settings")
                .arg(&settings)
                .args(["--seed", &seed.to_string(), a, b]),
            &dir.path().join("sco-link.log"),
        );
        wait_until("sco-link made its TUN devices", || {
            proc.log_contains("sco-link: forwarding between")
        });
        Self {
            proc,
            settings,
            _dir: dir,
        }
    }

    fn lines(&self, prefix: &str) -> Vec<String> {
        self.proc
            .log_text()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    /// Gives the link new settings (`sco-link`'s file format) and waits until they apply.
    fn shape(&self, settings: &str) {
        // sco-link acts on a change only (a missing file reads as empty)
        if std::fs::read_to_string(&self.settings).unwrap_or_default() == settings {
            return;
        }
        let applied = self.lines("sco-link: settings").len();
        let tmp = self.settings.with_extension("new");
        std::fs::write(&tmp, settings).expect("write link settings");
        std::fs::rename(&tmp, &self.settings).expect("replace link settings");
        wait_until("sco-link applied its new settings", || {
            self.lines("sco-link: settings").len() > applied
        });
    }

    /// Asks `sco-link` for its counts (SIGUSR1) and reads them from its output.
    fn counts(&self) -> RelayCounts {
        let before = self.lines("sco-link: counts").len();
        self.proc.signal("USR1");
        wait_until("sco-link printed its counts", || {
            self.lines("sco-link: counts").len() > before
        });
        let line = self.lines("sco-link: counts").pop().unwrap_or_default();
        let mut counts = RelayCounts::default();
        for (key, value) in line
            .split_whitespace()
            .filter_map(|w| w.trim_end_matches(';').split_once('='))
        {
            let value: u64 = value.parse().expect("a count");
            match key {
                "forwarded" => counts.forwarded += value,
                "dropped" | "overflow" => counts.dropped += value,
                "rushed" => counts.rushed += value,
                "reordered" => counts.reordered += value,
                "duplicated" => counts.duplicated += value,
                "corrupted" => counts.corrupted += value,
                "paced" => counts.paced += value,
                _ => {}
            }
        }
        counts
    }
}

/// A network namespace joined to this one by a veth pair; removed when dropped.
struct Link {
    ns: String,
    host_if: String,
    agent_if: String,
    net: u8,
    host_ip: Ipv4Addr,
    /// The forwarder of a [`Wire::Tun`] link.
    relay: Option<Relay>,
}

impl Link {
    fn new(which: u32, wire: Wire) -> Self {
        let tag = (std::process::id() % 10_000) * 10 + which;
        let ns = format!("sco-link-{tag}");
        let host_if = format!("scoh{tag}");
        let agent_if = format!("scoa{tag}");
        let net = (tag % 250) as u8 + 1;
        let agent_if_name = agent_if.clone();
        // leftovers of a killed earlier run with the same pid
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        run(&["ip", "netns", "add", &ns]);
        let mut link = Self {
            ns,
            host_if,
            agent_if: agent_if_name,
            net,
            host_ip: Ipv4Addr::new(10, 231, net, 1),
            relay: None,
        };
        // each end's address as `ip addr add` takes it
        let (host_addr, agent_addr) = match wire {
            Wire::Veth => {
                run(&[
                    "ip",
                    "link",
                    "add",
                    &link.host_if,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &agent_if,
                ]);
                (format!("{}/24", link.host_ip), format!("10.231.{net}.2/24"))
            }
            Wire::Tun => {
                // a /30 of its own, point to point: the forwarder is the wire between the ends
                link.host_ip = Ipv4Addr::new(10, 232, net, 1);
                link.relay = Some(Relay::start(&link.host_if, &agent_if, tag));
                (
                    format!("10.232.{net}.1 peer 10.232.{net}.2"),
                    format!("10.232.{net}.2 peer 10.232.{net}.1"),
                )
            }
        };
        // the forwarder's file stays attached to the TUN device in its new namespace
        run(&["ip", "link", "set", &agent_if, "netns", &link.ns]);
        let mut add = vec!["ip", "addr", "add"];
        add.extend(host_addr.split(' '));
        add.extend(["dev", &link.host_if]);
        run(&add);
        run(&["ip", "link", "set", &link.host_if, "up"]);
        let mut add = vec!["ip", "addr", "add"];
        add.extend(agent_addr.split(' '));
        add.extend(["dev", &agent_if]);
        link.exec(&add);
        link.exec(&["ip", "link", "set", &agent_if, "up"]);
        link.exec(&["ip", "link", "set", "lo", "up"]);
        link.exec(&["nft", "add", "table", "inet", "sco"]);
        for (chain, hook) in [("up", "output"), ("down", "input")] {
            link.exec(&[
                "nft",
                "add",
                "chain",
                "inet",
                "sco",
                chain,
                &format!("{{ type filter hook {hook} priority 0; }}"),
            ]);
        }
        link
    }

    fn exec(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.ns];
        all.extend_from_slice(args);
        run(&all);
    }

    /// Drops `percent` of the packets (TCP and UDP, so QUIC too) each way on the agent's side
    /// (0: none).
    fn loss(&self, percent: u32) {
        for chain in ["up", "down"] {
            self.exec(&["nft", "flush", "chain", "inet", "sco", chain]);
            if percent >= 100 {
                self.exec(&[
                    "nft",
                    "add",
                    "rule",
                    "inet",
                    "sco",
                    chain,
                    "meta",
                    "l4proto",
                    "{ tcp, udp }",
                    "drop",
                ]);
            } else if percent > 0 {
                self.exec(&[
                    "nft",
                    "add",
                    "rule",
                    "inet",
                    "sco",
                    chain,
                    "meta",
                    "l4proto",
                    "{ tcp, udp }",
                    "numgen",
                    "random",
                    "mod",
                    "100",
                    "<",
                    &percent.to_string(),
                    "counter",
                    "drop",
                ]);
            }
        }
    }

    /// Gives a [`Wire::Tun`] link new settings (`sco-link`'s format; empty: a clean link).
    fn shape(&self, settings: &str) {
        self.relay().shape(settings);
    }

    fn relay(&self) -> &Relay {
        self.relay.as_ref().expect("a link through sco-link")
    }

    /// Moves the agent's end to another address; its connection is left dangling.
    fn change_agent_address(&self) {
        let net = self.net;
        // without this, removing the first address of a subnet removes the second too
        let promote = format!(
            "echo 1 > /proc/sys/net/ipv4/conf/{}/promote_secondaries",
            self.agent_if
        );
        self.exec(&["sh", "-c", &promote]);
        self.exec(&[
            "ip",
            "addr",
            "add",
            &format!("10.231.{net}.3/24"),
            "dev",
            &self.agent_if,
        ]);
        self.exec(&[
            "ip",
            "addr",
            "del",
            &format!("10.231.{net}.2/24"),
            "dev",
            &self.agent_if,
        ]);
    }

    /// The agent's `GET /health` (its exporter on, as [`EXPORTER`] sets it), asked inside the
    /// namespace, so it answers whatever the link does; None while nothing answers.
    fn agent_health(&self) -> Option<serde_json::Value> {
        // bash's /dev/tcp: no HTTP client need be installed
        let request = "exec 3<>/dev/tcp/127.0.0.1/9101 && printf 'GET /health HTTP/1.1\\r\\n\
                       Host: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && cat <&3";
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "timeout", "5", "bash", "-c", request,
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (_, body) = text.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }

    /// Bytes that crossed the link from the agent's end to the host's so far (what the host's
    /// end received: every IP packet, headers and retransmissions included).
    fn bytes_from_agent(&self) -> u64 {
        std::fs::read_to_string(format!(
            "/sys/class/net/{}/statistics/rx_bytes",
            self.host_if
        ))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("the host end's byte count")
    }

    /// Packets the random-drop rules dropped so far, both ways.
    fn dropped(&self) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "nft", "list", "table", "inet", "sco",
            ])
            .output()
            .expect("nft list");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "packets")
            .filter_map(|w| w[1].parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // the forwarder's TUN devices go away with it
        drop(self.relay.take());
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// Every sequence number up to the newest stored is stored once: as one of `windows` (the
/// rollups) or as another durable message of the agent (an anomaly change, an action's
/// outcome), which takes a number of its own; no gap.
async fn assert_contiguous(pool: &sqlx::AnyPool, windows: &[(i64, i64, i64)]) {
    let others = sqlx::query(
        "SELECT seq FROM agent_messages WHERE host_id = 'agent-1' AND kind <> 'rollup'",
    )
    .fetch_all(pool)
    .await
    .expect("agent messages");
    let mut seqs: Vec<i64> = windows.iter().map(|w| w.0).collect();
    seqs.extend(others.iter().map(|r| sqlx::Row::get::<i64, _>(r, "seq")));
    seqs.sort_unstable();
    for (i, seq) in seqs.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1, "gap in sequence numbers at {i}");
    }
}

/// A control plane on the host's end of a link and `agent-1` on the other end, streaming.
struct Drill {
    link: Link,
    _cp: Proc,
    agent: Proc,
    pool: sqlx::AnyPool,
    /// The sandbox (its files), kept for its lifetime; dropped last, so the processes above
    /// can still print their logs when a test fails.
    sb: Sandbox,
}

/// Sets the drill up (`which` tells two drills of one test run apart), the agent's config
/// with `extra` appended; None when it cannot run here (and need not: not in CI).
async fn drill(which: u32, extra: &str) -> Option<Drill> {
    drill_over(which, extra, None, Wire::Veth, QUICK).await
}

/// How often both ends send heartbeats and how long a silent stream lives, in seconds.
#[derive(Clone, Copy)]
struct Timings {
    heartbeat_secs: u64,
    dead_after_secs: u64,
}

/// The sandbox's: a cut is noticed within seconds.
const QUICK: Timings = Timings {
    heartbeat_secs: 1,
    dead_after_secs: 4,
};

/// [`drill`] with the agent over QUIC (`Some(true)`), over TCP (`Some(false)`), or over the
/// run's transport (`None`, `SCO_TEST_TRANSPORT`), on a link of the given wire, both ends with
/// the given timings.
async fn drill_over(
    which: u32,
    extra: &str,
    quic: Option<bool>,
    wire: Wire,
    timings: Timings,
) -> Option<Drill> {
    if let Err(why) = available(wire) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the link drill must run in CI: {why}"
        );
        eprintln!("skipped: {why}");
        return None;
    }
    let link = Link::new(which, wire);
    let mut sb = Sandbox::new(Db::Sqlite).await?;
    sb.control_plane_env = vec![
        (
            "SCO_CP__AGENTS__HEARTBEAT_SECS".into(),
            timings.heartbeat_secs.to_string(),
        ),
        (
            "SCO_CP__AGENTS__DEAD_AFTER_SECS".into(),
            timings.dead_after_secs.to_string(),
        ),
    ];
    // the control plane listens on the host's end of the link
    sb.grpc_addr = SocketAddr::from((link.host_ip, sco_tests::free_addr().port()));
    let cp = sb.start_control_plane();
    let agent = start_agent_in(&sb, &link, extra, quic, timings);
    let pool = sb.db().await;
    wait_for("five rollups over the clean link", || async {
        (stored_windows(&pool, "agent-1").await.len() >= 5).then_some(())
    })
    .await;
    Some(Drill {
        link,
        _cp: cp,
        agent,
        pool,
        sb,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lossy_then_cut_link_loses_and_duplicates_nothing() {
    let lossy_secs = env_secs("SCO_LINK_DRILL_SECS", 20);
    let partition_secs = env_secs("SCO_LINK_PARTITION_SECS", 12);
    let Some(d) = drill(1, "").await else {
        return;
    };
    let (link, pool) = (&d.link, &d.pool);

    // A lossy link: 30 % of the packets each way.
    let before = stored_windows(pool, "agent-1").await.len();
    link.loss(30);
    tokio::time::sleep(Duration::from_secs(lossy_secs)).await;
    let during_loss = stored_windows(pool, "agent-1").await.len() - before;
    let dropped = link.dropped();
    assert!(dropped > 0, "the rules dropped nothing");
    link.loss(0);
    let lossy_end_ms = now_ms();
    wait_for("the backlog of the lossy phase drained", || async {
        let w = stored_windows(pool, "agent-1").await;
        (w.last().map_or(0, |x| x.2) >= lossy_end_ms).then_some(())
    })
    .await;
    eprintln!(
        "lossy link ({lossy_secs} s, 30 % each way): {during_loss} rollups stored meanwhile, {dropped} packets dropped"
    );

    // The agent's address changes: TCP cannot follow, so the stream is given up after the
    // dead-after time and the agent connects again from its new address (a QUIC connection
    // migrates instead: `an_address_change_keeps_a_quic_stream_and_makes_tcp_reconnect`).
    link.change_agent_address();
    let moved_ms = now_ms();
    let moved = Instant::now();
    let back_after = wait_for("rollups again after the address change", || async {
        let w = stored_windows(pool, "agent-1").await;
        (w.last().map_or(0, |x| x.1) >= moved_ms).then_some(moved.elapsed())
    })
    .await;
    eprintln!(
        "address change: newest rollup stored {:.1} s after the move",
        back_after.as_secs_f64()
    );

    // A partition: nothing gets through for longer than the dead-after time (4 s).
    link.loss(100);
    let cut_started_ms = now_ms();
    tokio::time::sleep(Duration::from_secs(partition_secs)).await;
    let cut_ended_ms = now_ms();
    link.loss(0);
    let restored = Instant::now();

    // Everything collected during the partition arrives once the link is back.
    let caught_up = wait_for("the rollups of the partition delivered", || async {
        let w = stored_windows(pool, "agent-1").await;
        let last_end = w.last().map_or(0, |x| x.2);
        (last_end >= cut_ended_ms).then_some(restored.elapsed())
    })
    .await;
    let windows = stored_windows(pool, "agent-1").await;
    assert_contiguous(pool, &windows).await;
    assert!(duplicated_windows(pool, "agent-1").await.is_empty());
    let during_cut = windows
        .iter()
        .filter(|(_, s, e)| *s >= cut_started_ms && *e <= cut_ended_ms)
        .count() as u64;
    assert!(
        during_cut + 2 >= partition_secs,
        "only {during_cut} of the ~{partition_secs} rollups collected during the partition were delivered"
    );
    eprintln!(
        "partition {partition_secs} s: {during_cut} rollups of it delivered, caught up {:.1} s after the link came back; {} rollups in all, contiguous, none duplicated",
        caught_up.as_secs_f64(),
        windows.len()
    );
}

/// Starts `agent-1` inside the link's namespace, its config with `extra` appended, over QUIC
/// or TCP when `quic` says so, with the given timings.
fn start_agent_in(
    sb: &Sandbox,
    link: &Link,
    extra: &str,
    quic: Option<bool>,
    timings: Timings,
) -> Proc {
    let config = sb.agent_config("agent-1");
    let mut text = std::fs::read_to_string(&config).expect("read agent config");
    let endpoint = match quic {
        Some(true) => Some(sco_tests::quic_endpoint(sb.grpc_addr)),
        Some(false) => Some(sb.grpc_addr.to_string()),
        None => None,
    };
    if let Some(endpoint) = endpoint {
        text = text.replace(
            &format!(
                "endpoints = [\"{}\"]",
                sco_tests::agent_endpoint(sb.grpc_addr)
            ),
            &format!("endpoints = [\"{endpoint}\"]"),
        );
        assert!(text.contains(&endpoint), "{text}");
    }
    text.push_str(extra);
    std::fs::write(&config, text).expect("write agent config");
    Proc::spawn(
        "agent agent-1 (in its namespace)",
        Command::new("ip")
            .args(["netns", "exec", &link.ns])
            .arg(bin("sco-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env(
                "SCO_AGENT__SERVER__HEARTBEAT_SECS",
                timings.heartbeat_secs.to_string(),
            )
            .env(
                "SCO_AGENT__SERVER__DEAD_AFTER_SECS",
                timings.dead_after_secs.to_string(),
            ),
        &sb.path().join("agent-agent-1.log"),
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_longer_than_the_outbox_holds_drops_the_oldest_and_says_so() {
    // the smallest outbox the agent accepts
    let Some(d) = drill(2, "[outbox]\nmax_bytes = 65536\n").await else {
        return;
    };
    let (link, agent, pool) = (&d.link, &d.agent, &d.pool);
    let rss_before = rss_kib(agent.pid());
    link.loss(100);
    let mut rss_peak = rss_before;
    let cut = Instant::now();
    while cut.elapsed() < Duration::from_secs(45) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_peak = rss_peak.max(rss_kib(agent.pid()));
    }
    link.loss(0);
    let restored_ms = now_ms();
    wait_for("the rest of the outbox delivered", || async {
        let w = stored_windows(pool, "agent-1").await;
        (w.last().map_or(0, |x| x.2) >= restored_ms).then_some(())
    })
    .await;
    let windows = stored_windows(pool, "agent-1").await;
    assert!(duplicated_windows(pool, "agent-1").await.is_empty());
    // one gap: the dropped messages, oldest first
    let gaps: Vec<(i64, i64)> = windows
        .windows(2)
        .filter(|w| w[1].0 != w[0].0 + 1)
        .map(|w| (w[0].0, w[1].0))
        .collect();
    assert_eq!(gaps.len(), 1, "one run of dropped messages: {gaps:?}");
    let missing = gaps[0].1 - gaps[0].0 - 1;
    assert!(missing > 0);
    // the count travels with the agent's heartbeats: every drop is reported, no more
    let reported = wait_for("every drop reported to the control plane", || async {
        let row = sqlx::query("SELECT outbox_dropped_total FROM hosts WHERE id = 'agent-1'")
            .fetch_one(pool)
            .await
            .ok()?;
        let n: i64 = sqlx::Row::get(&row, "outbox_dropped_total");
        (n == missing).then_some(n)
    })
    .await;
    let grew_kib = rss_peak.saturating_sub(rss_before);
    eprintln!(
        "outbox of 64 KiB, partition 45 s: {reported} messages dropped and reported, {missing} rollups missing; \
         agent RSS {} KiB before, peak {} KiB during (+{grew_kib} KiB)",
        rss_before, rss_peak
    );
    assert!(
        grew_kib < 8 * 1024,
        "the agent grew {grew_kib} KiB while its outbox was full"
    );
}

/// The agent's address changes under a live stream: over QUIC the connection migrates and the
/// stream goes on (no new connection, no new stream on the control plane); over TCP the stream
/// is given up after the dead-after time and the agent connects again from its new address.
/// Both figures are printed.
#[tokio::test(flavor = "multi_thread")]
async fn an_address_change_keeps_a_quic_stream_and_makes_tcp_reconnect() {
    for (which, quic) in [(3, true), (4, false)] {
        let name = if quic { "QUIC" } else { "TCP" };
        let Some(d) = drill_over(which, "", Some(quic), Wire::Veth, QUICK).await else {
            return;
        };
        let (link, agent, pool) = (&d.link, &d.agent, &d.pool);
        let cp_log = d.sb.path().join("control-plane.log");
        let streams_opened = || {
            std::fs::read_to_string(&cp_log)
                .unwrap_or_default()
                .matches("agent stream opened")
                .count()
        };
        let connections = || connections(agent);
        let transport = format!("transport=\"{}\"", if quic { "quic" } else { "grpc" });
        assert!(
            agent.log_contains(&transport),
            "{name}: {}",
            agent.log_text()
        );
        let (streams_before, connections_before) = (streams_opened(), connections());
        link.change_agent_address();
        let moved_ms = now_ms();
        let moved = Instant::now();
        let back_after = wait_for("rollups again after the address change", || async {
            let w = stored_windows(pool, "agent-1").await;
            (w.last().map_or(0, |x| x.1) >= moved_ms).then_some(moved.elapsed())
        })
        .await;
        // a few more seconds on the new address: past the dead-after time (4 s) of the old one
        tokio::time::sleep(Duration::from_secs(6)).await;
        let windows = stored_windows(pool, "agent-1").await;
        assert_contiguous(pool, &windows).await;
        assert!(duplicated_windows(pool, "agent-1").await.is_empty());
        let (new_streams, reconnects) = (
            streams_opened() - streams_before,
            connections() - connections_before,
        );
        eprintln!(
            "{name}, address change: newest rollup stored {:.1} s after the move; {reconnects} \
             reconnection(s) of the agent, {new_streams} new stream(s) on the control plane",
            back_after.as_secs_f64()
        );
        if quic {
            assert_eq!(
                (reconnects, new_streams),
                (0, 0),
                "the QUIC connection migrates: {}",
                agent.log_text()
            );
        } else {
            assert!(
                reconnects >= 1 && new_streams >= 1,
                "TCP cannot follow a move: {}",
                agent.log_text()
            );
        }
    }
}

/// Seconds from the environment variable `var`, or `default` when it is unset or not a number.
fn env_secs(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// How many times the agent has connected to the control plane so far.
fn connections(agent: &Proc) -> usize {
    agent
        .log_text()
        .matches("connected to control plane")
        .count()
}

/// How long after `since` each agent's newest stored rollup ended at `since_ms` or later (its
/// backlog drained), all of them watched at once.
async fn drain_times(pools: &[&sqlx::AnyPool], since_ms: i64, since: Instant) -> Vec<Duration> {
    let deadline = Instant::now() + sco_tests::patience();
    let mut times = vec![None; pools.len()];
    while times.iter().any(Option::is_none) {
        for (pool, time) in pools.iter().zip(times.iter_mut()) {
            let newest_end = stored_windows(pool, "agent-1")
                .await
                .last()
                .map_or(0, |w| w.2);
            if time.is_none() && newest_end >= since_ms {
                *time = Some(since.elapsed());
            }
        }
        assert!(
            Instant::now() < deadline,
            "a backlog did not drain after the link came back: {times:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    times.into_iter().flatten().collect()
}

/// A link with delay, jitter and reordering (`sco-link` between two TUN devices), the agent over
/// gRPC on TCP and another over QUIC side by side, each with its own control plane, through the
/// same phases at the same time: 300 ms each way with ±100 ms of jitter, 25 % of the packets
/// rushed ahead of the rest (delayed 50 ms), 30 % loss with 100 ms ±20 ms, a partition (every
/// packet dropped), each followed by a clean link. After each phase every rollup must be stored once, in sequence, and the newest
/// one must arrive; the rollups stored during the phase, the reconnections and the time to drain
/// the backlog are printed.
#[tokio::test(flavor = "multi_thread")]
async fn delay_jitter_reordering_and_loss_lose_and_duplicate_nothing_over_tcp_and_quic() {
    let (phase_secs, partition_secs) = (
        env_secs("SCO_LINK_DRILL_SECS", 15),
        env_secs("SCO_LINK_PARTITION_SECS", 12),
    );
    let faults = [
        (
            "300 ms ±100 ms each way",
            "both delay=300 jitter=100\n",
            phase_secs,
        ),
        (
            "25 % reordered, 50 ms on the rest",
            "both delay=50 reorder=25\n",
            phase_secs,
        ),
        (
            "30 % loss, 100 ms ±20 ms",
            "both loss=30 delay=100 jitter=20\n",
            phase_secs,
        ),
        ("20 % duplicated", "both duplicate=20\n", phase_secs),
        // past the transport checksum: TLS must catch it over TCP, QUIC's own AEAD over QUIC
        (
            "10 % corrupted past the checksum",
            "both corrupt=10\n",
            phase_secs,
        ),
        ("64 kbit/s, 50 ms", "both rate=64 delay=50\n", phase_secs),
        ("partition", "both loss=100\n", partition_secs),
    ];
    let mut drills = Vec::new();
    for (which, quic) in [(5, false), (6, true)] {
        let Some(d) = drill_over(which, "", Some(quic), Wire::Tun, QUICK).await else {
            return;
        };
        drills.push((if quic { "QUIC" } else { "TCP" }, d));
    }
    let pools: Vec<&sqlx::AnyPool> = drills.iter().map(|(_, d)| &d.pool).collect();
    for (fault, settings, secs) in faults {
        let mut before = Vec::new();
        for (_, d) in &drills {
            let stored = stored_windows(&d.pool, "agent-1").await.len();
            before.push((stored, connections(&d.agent), d.link.relay().counts()));
        }
        for (_, d) in &drills {
            d.link.shape(settings);
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let mut during = Vec::new();
        for (_, d) in &drills {
            during.push(stored_windows(&d.pool, "agent-1").await.len());
        }
        for (_, d) in &drills {
            d.link.shape("");
        }
        let (cleared, cleared_ms) = (Instant::now(), now_ms());
        let drained = drain_times(&pools, cleared_ms, cleared).await;
        for (i, (name, d)) in drills.iter().enumerate() {
            let windows = stored_windows(&d.pool, "agent-1").await;
            assert_contiguous(&d.pool, &windows).await;
            assert!(duplicated_windows(&d.pool, "agent-1").await.is_empty());
            let (stored_before, connections_before, counts_before) = before[i];
            let link = d.link.relay().counts() - counts_before;
            let reconnects = connections(&d.agent) - connections_before;
            eprintln!(
                "{name}, {fault} ({secs} s): {} rollups stored during the fault, {reconnects} \
                 reconnection(s), backlog drained {:.1} s after the link was restored; {} in all, \
                 contiguous, none duplicated; link: {} packets forwarded, {} dropped, {} rushed \
                 ahead, {} arrived after a later one, {} sent twice, {} corrupted, {} held back \
                 by the rate",
                during[i] - stored_before,
                drained[i].as_secs_f64(),
                windows.len(),
                link.forwarded,
                link.dropped,
                link.rushed,
                link.reordered,
                link.duplicated,
                link.corrupted,
                link.paced,
            );
            if reconnects > 0 {
                let log = d.agent.log_text();
                let why = log
                    .lines()
                    .rev()
                    .find(|l| l.contains("connection to control plane lost"))
                    .unwrap_or_default();
                eprintln!(
                    "  {name}: last stream lost: {}",
                    why.chars().take(300).collect::<String>()
                );
            }
            // the fault was there
            if settings.contains("loss=") {
                assert!(link.dropped > 0, "{name}: nothing dropped: {link:?}");
            }
            if settings.contains("reorder=") {
                assert!(link.rushed > 0, "{name}: nothing rushed ahead: {link:?}");
            }
            if settings.contains("jitter=") || settings.contains("reorder=") {
                assert!(link.reordered > 0, "{name}: nothing reordered: {link:?}");
            }
            if settings.contains("duplicate=") {
                assert!(link.duplicated > 0, "{name}: nothing sent twice: {link:?}");
            }
            if settings.contains("corrupt=") {
                assert!(link.corrupted > 0, "{name}: nothing corrupted: {link:?}");
            }
            if settings.contains("rate=") {
                assert!(
                    link.paced > 0,
                    "{name}: nothing held back by the rate: {link:?}"
                );
            }
        }
    }
}

/// The agent's local health endpoint, on the loopback of its namespace
/// ([`Link::agent_health`]).
const EXPORTER: &str = "[exporter]\nenabled = true\nlisten = \"127.0.0.1:9101\"\n";

/// An agent cut off for a while comes back over a narrow, lossy link: `SCO_LINK_BACKLOG_SECS`
/// (30 s; the full drill is 300 s) of every packet dropped, so its outbox holds that many
/// rollups, then 64 kbit/s with 3 % loss and 50 ms each way, over gRPC/TCP and QUIC side by
/// side, both ends with the sandbox's heartbeat and dead-after times (1 s and 4 s, a quarter
/// of the shipped ones, so that the 30 s backlog weighs on the stream's liveness checks as a
/// 120 s one does at the shipped times; others from
/// `SCO_LINK_BACKLOG_TIMINGS=HEARTBEAT,DEAD_AFTER`). The backlog must drain within a bound
/// derived from its volume and the link's rate on the one stream opened after the cut (a
/// stream called dead while it delivers the backlog is the failure this drill found), every
/// rollup of the cut must be stored once (contiguous sequence numbers and back-to-back
/// windows), and live rollups, which the agent sends after the backlog (its outbox goes
/// oldest first), must catch up. The backlog, the drain time, how far behind live data fell
/// and the agent's send window are printed.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_drains_through_a_narrow_lossy_link_once_each_while_live_data_flows() {
    let cut_secs = env_secs("SCO_LINK_BACKLOG_SECS", 30);
    const NARROW: &str = "both rate=64 loss=3 delay=50\n";
    let (rate_kbit, loss) = (64.0, 0.03);
    // how long the live stream's size is measured, and live data watched after the drain
    const STEADY_SECS: u64 = 5;
    const AFTER_SECS: u64 = 5;
    // Detection off: an anomaly event would take a sequence number of its own (the full drill
    // outlasts the detector's warm-up), and the drain is judged below by the newest rollup's.
    let extra = format!("{EXPORTER}[detect]\nenabled = false\n");
    // `SCO_LINK_BACKLOG_TIMINGS=H,D`: other heartbeat and dead-after times, in seconds
    let timings = std::env::var("SCO_LINK_BACKLOG_TIMINGS")
        .ok()
        .and_then(|t| {
            let (h, d) = t.split_once(',')?;
            Some(Timings {
                heartbeat_secs: h.trim().parse().ok()?,
                dead_after_secs: d.trim().parse().ok()?,
            })
        })
        .unwrap_or(QUICK);
    let mut drills = Vec::new();
    for (which, quic) in [(7, false), (8, true)] {
        let Some(d) = drill_over(which, &extra, Some(quic), Wire::Tun, timings).await else {
            return;
        };
        drills.push((if quic { "QUIC" } else { "TCP" }, d));
    }

    // The live stream on the wire, agent to control plane (rollups, heartbeats, TLS or QUIC
    // and IP): a backlog is the same stream held back, so its volume is this rate times the cut.
    let start: Vec<u64> = drills
        .iter()
        .map(|(_, d)| d.link.bytes_from_agent())
        .collect();
    tokio::time::sleep(Duration::from_secs(STEADY_SECS)).await;
    let stream_bps: Vec<f64> = drills
        .iter()
        .zip(&start)
        .map(|((_, d), b)| (d.link.bytes_from_agent() - b) as f64 / STEADY_SECS as f64)
        .collect();

    // The cut.
    for (_, d) in &drills {
        d.link.shape("both loss=100\n");
    }
    let cut_ms = now_ms();
    tokio::time::sleep(Duration::from_secs(cut_secs)).await;
    let mut backlog = Vec::new();
    for (name, d) in &drills {
        let health = d.link.agent_health().expect("the agent's health endpoint");
        let waiting = health["outbox"]["messages"]
            .as_u64()
            .expect("outbox messages");
        assert!(
            waiting + 2 >= cut_secs,
            "{name}: {waiting} messages in the outbox after a {cut_secs} s cut: {health}"
        );
        let newest_end = stored_windows(&d.pool, "agent-1")
            .await
            .last()
            .map_or(0, |w| w.2);
        assert!(
            newest_end <= cut_ms + 2_000,
            "{name}: a rollup of the cut got through"
        );
        backlog.push(waiting);
    }

    // Back, as a narrow lossy link.
    for (_, d) in &drills {
        d.link.shape(NARROW);
    }
    let (restored, restored_ms) = (Instant::now(), now_ms());
    let at_restore: Vec<(u64, usize, RelayCounts)> = drills
        .iter()
        .map(|(_, d)| {
            (
                d.link.bytes_from_agent(),
                connections(&d.agent),
                d.link.relay().counts(),
            )
        })
        .collect();
    // The bound: the backlog's volume over what the link leaves for it once the live stream
    // has its share, three times over (loss-based congestion control at 3 % loss keeps the
    // window small and backs off on each loss), plus 10 s to connect again (the agent retries
    // every second at most; a lost SYN or handshake packet costs a 1 s timeout).
    let capacity = rate_kbit * 1000.0 / 8.0 * (1.0 - loss);
    let bounds: Vec<Duration> = stream_bps
        .iter()
        .map(|bps| {
            assert!(
                capacity > 1.5 * bps,
                "the live stream ({bps:.0} B/s) nearly fills the link ({capacity:.0} B/s)"
            );
            let ideal = bps * cut_secs as f64 / (capacity - bps);
            Duration::from_secs_f64(3.0 * ideal + 10.0)
        })
        .collect();

    // Watch the drain: when each rollup was first seen stored (polled every 0.1 s), when the
    // last rollup of the cut was (the backlog is through), and when the newest stored rollup
    // was again at most CAUGHT_UP_MS old (live again).
    const CAUGHT_UP_MS: i64 = 3_000;
    let mut seen: Vec<std::collections::BTreeMap<i64, i64>> = vec![Default::default(); 2];
    let mut through: Vec<Option<Duration>> = vec![None; 2];
    let mut caught_up: Vec<Option<(Duration, i64, u64)>> = vec![None; 2];
    let mut watch_until = None;
    loop {
        for (i, (_, d)) in drills.iter().enumerate() {
            let windows = stored_windows(&d.pool, "agent-1").await;
            let now = now_ms();
            for w in &windows {
                seen[i].entry(w.0).or_insert(now);
            }
            let newest_end = windows.last().map_or(0, |w| w.2);
            if through[i].is_none() && newest_end >= restored_ms {
                through[i] = Some(restored.elapsed());
            }
            if caught_up[i].is_none() && newest_end >= now - CAUGHT_UP_MS {
                caught_up[i] = Some((restored.elapsed(), now, d.link.bytes_from_agent()));
            }
        }
        match watch_until {
            Some(until) if Instant::now() >= until => break,
            None if caught_up.iter().all(Option::is_some) => {
                watch_until = Some(Instant::now() + Duration::from_secs(AFTER_SECS));
            }
            _ => {}
        }
        for (i, (name, d)) in drills.iter().enumerate() {
            if caught_up[i].is_none() && restored.elapsed() > bounds[i] {
                let stored = stored_windows(&d.pool, "agent-1").await.len();
                panic!(
                    "{name}: the backlog of {} messages did not drain in {:.1} s: {stored} \
                     rollups stored, the outbox: {}; {} reconnection(s) since the link came back",
                    backlog[i],
                    bounds[i].as_secs_f64(),
                    d.link.agent_health().unwrap_or_default()["outbox"],
                    connections(&d.agent) - at_restore[i].1
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (i, (name, d)) in drills.iter().enumerate() {
        let windows = stored_windows(&d.pool, "agent-1").await;
        assert_contiguous(&d.pool, &windows).await;
        assert!(duplicated_windows(&d.pool, "agent-1").await.is_empty());
        for pair in windows.windows(2) {
            assert_eq!(
                pair[1].1, pair[0].2,
                "{name}: windows not back to back: {pair:?}"
            );
        }
        let of_cut = windows
            .iter()
            .filter(|w| w.1 >= cut_ms && w.2 <= restored_ms)
            .count() as u64;
        assert!(
            of_cut + 1 >= cut_secs,
            "{name}: {of_cut} rollups of the {cut_secs} s cut stored"
        );
        // Nothing left behind or sent again for ever: the outbox is empty but for what is in
        // flight, and the newest sequence number assigned is stored.
        let health = d.link.agent_health().expect("the agent's health endpoint");
        let waiting = health["outbox"]["messages"].as_u64().unwrap_or(u64::MAX);
        let last_seq = health["outbox"]["last_seq"].as_i64().unwrap_or(0);
        let stored_seq = windows.last().map_or(0, |w| w.0);
        // How far behind live data fell: from a rollup's window end to its storage, for those
        // of windows that ended after the link came back, and after the drain.
        let now = now_ms();
        let lag = |from_ms: i64| {
            windows
                .iter()
                .filter(|w| w.2 > from_ms)
                .map(|w| seen[i].get(&w.0).copied().unwrap_or(now) - w.2)
                .max()
                .unwrap_or(0)
        };
        let (drain, caught_up_ms, bytes_at_drain) = caught_up[i].expect("caught up");
        let live_lag = lag(restored_ms);
        let after_lag = lag(caught_up_ms);
        let (bytes0, connections0, counts0) = at_restore[i];
        let link = d.link.relay().counts() - counts0;
        let sent_kbit = (bytes_at_drain - bytes0) as f64 * 8.0 / 1000.0;
        eprintln!(
            "{name}, heartbeat {} s, dead after {} s: cut {cut_secs} s: outbox held {} messages ({of_cut} rollups of the cut stored \
             in the end, contiguous, none duplicated); live stream {:.0} B/s on the wire, so a \
             backlog of ~{:.0} KB; over {NARROW:?} the cut's rollups were through in {:.1} s and \
             the newest stored rollup within {:.0} s of now in {:.1} s (bound {:.1} s), \
             {sent_kbit:.0} kbit sent meanwhile ({:.1} kbit/s of {rate_kbit}), {} reconnection(s), \
             {} packets dropped; live rollups stored up to {:.1} s after their window ended during \
             the drain, at most {:.1} s after it",
            timings.heartbeat_secs,
            timings.dead_after_secs,
            backlog[i],
            stream_bps[i],
            stream_bps[i] * cut_secs as f64 / 1000.0,
            through[i].map_or(f64::NAN, |t| t.as_secs_f64()),
            CAUGHT_UP_MS as f64 / 1000.0,
            drain.as_secs_f64(),
            bounds[i].as_secs_f64(),
            sent_kbit / drain.as_secs_f64(),
            connections(&d.agent) - connections0,
            link.dropped,
            live_lag as f64 / 1000.0,
            after_lag as f64 / 1000.0,
        );
        eprintln!(
            "{name}: {AFTER_SECS} s after the drain {waiting} messages wait in the outbox, seq \
             {last_seq} assigned, {stored_seq} stored; the agent's uplink: {}",
            health["uplink"]
        );
        let reconnections = connections(&d.agent) - connections0;
        assert_eq!(
            reconnections, 1,
            "{name}: {reconnections} connections since the link came back: streams were \
             called dead while they delivered the backlog"
        );
        assert!(
            waiting <= 3 && last_seq - stored_seq <= 3,
            "{name}: the outbox did not empty after the drain"
        );
        assert!(
            after_lag <= 5_000,
            "{name}: live rollups still {after_lag} ms behind after the drain"
        );
    }
}
