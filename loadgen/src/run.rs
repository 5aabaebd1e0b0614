//! A run: issue the identities, start agents step by step (100 → N with a
//! time budget per step, or all at once), print progress, drain every
//! outbox, close the streams, check the database and build the report.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::agent::{now_ms, Agent, Phase, Shared};
use crate::check::{self, Sent};
use crate::endpoint::{Endpoint, Transport};
use crate::identity::Issuer;
use crate::procstat;
use crate::report::{ProcCost, Report, Settings, Step, Totals};
use crate::stats::{counts_text, error_delta, Histogram, Kind, Snapshot, Stats};
use crate::Config;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("database check: {0}")]
    Database(#[from] sqlx::Error),
    #[error("identity issuing stopped: {0}")]
    Join(String),
    #[error("QUIC: {0}")]
    Quic(String),
    #[error("--target: {0}")]
    Target(String),
}

const MIB: f64 = 1024.0 * 1024.0;

/// Samples a process once a second over a step: CPU from first to last
/// sample, the largest RSS.
struct Watch {
    pid: String,
    first: Option<procstat::Sample>,
    last: Option<procstat::Sample>,
    rss_max: u64,
}

impl Watch {
    fn new(pid: String) -> Self {
        let first = procstat::sample(&pid);
        Self {
            pid,
            first,
            last: first,
            rss_max: first.map_or(0, |s| s.rss_bytes),
        }
    }
    fn tick(&mut self) {
        if let Some(s) = procstat::sample(&self.pid) {
            self.rss_max = self.rss_max.max(s.rss_bytes);
            self.last = Some(s);
        }
    }
    fn cost(&self) -> Option<ProcCost> {
        let (first, last) = (self.first?, self.last?);
        Some(ProcCost {
            cpu_pct: (procstat::cpu_pct(&first, &last) * 10.0).round() / 10.0,
            rss_mib_max: (self.rss_max as f64 / MIB * 10.0).round() / 10.0,
            rss_mib_end: (last.rss_bytes as f64 / MIB * 10.0).round() / 10.0,
        })
    }
}

fn steps(c: &Config) -> Vec<(usize, Duration)> {
    match c.ramp_start {
        Some(start) if start < c.agents => {
            let mut out = Vec::new();
            let mut n = start as f64;
            while (n as usize) < c.agents {
                out.push((n as usize, c.step));
                n = (n * c.ramp_factor).max(n + 1.0);
            }
            out.push((c.agents, c.step));
            out
        }
        _ => vec![(c.agents, c.duration)],
    }
}

fn pending(agents: &[Arc<Agent>]) -> u64 {
    agents.iter().map(|a| a.pending()).sum()
}

/// How often the lag probe asks to wake.
const LAG_PERIOD: Duration = Duration::from_millis(50);

/// The load generator's own scheduling delay: a task that asks to wake every [`LAG_PERIOD`]
/// and records how late it woke. A late runtime delays the simulated agents' sends and the
/// reading of their acks alike, so a step's ack latencies are the control plane's only while
/// this stays small against them.
async fn lag_probe(lag: Arc<std::sync::Mutex<Histogram>>) {
    loop {
        let asked = Instant::now();
        tokio::time::sleep(LAG_PERIOD).await;
        let late = asked.elapsed().saturating_sub(LAG_PERIOD);
        // a poisoned lock only means a panic elsewhere while recording: the counts are fine
        lag.lock().unwrap_or_else(|e| e.into_inner()).record(late);
    }
}

/// The lag recorded since the last call.
fn take(lag: &std::sync::Mutex<Histogram>) -> Histogram {
    std::mem::take(&mut *lag.lock().unwrap_or_else(|e| e.into_inner()))
}

fn per_s(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        (n as f64 / s * 10.0).round() / 10.0
    }
}

pub async fn run(c: Config) -> Result<Report, RunError> {
    let stats = Arc::new(Stats::default());
    let run_started_ms = now_ms();
    let plan = steps(&c);

    let issued_at = Instant::now();
    let issuer = Issuer::load(&c.ca_cert, &c.ca_key)?;
    let ca_pem = issuer.ca_pem.clone().into_bytes();
    let (ids_prefix, n, hours) = (c.id_prefix.clone(), c.agents, c.cert_hours);
    // Key generation and signing are CPU work: off the async threads.
    let credentials = tokio::task::spawn_blocking(move || {
        (1..=n)
            .map(|i| issuer.issue(&format!("{ids_prefix}{i:06}"), time::Duration::hours(hours)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| RunError::Join(e.to_string()))??;
    eprintln!(
        "sco-loadgen: issued {} identities ({}*) in {:.1} s",
        credentials.len(),
        c.id_prefix,
        issued_at.elapsed().as_secs_f64()
    );

    let bare = if c.quic {
        Transport::Quic
    } else {
        Transport::Tcp
    };
    let mut targets = Vec::new();
    for t in &c.targets {
        let mut e = Endpoint::parse(t, bare, c.server_name.as_deref()).map_err(RunError::Target)?;
        if c.quic {
            e.addr = Some(
                tokio::net::lookup_host(t)
                    .await
                    .map_err(|e| RunError::Quic(format!("resolving {t}: {e}")))?
                    .next()
                    .ok_or_else(|| RunError::Quic(format!("{t} resolves to no address")))?,
            );
        }
        targets.push(e);
    }
    let quic = match targets.first().and_then(|e| e.addr) {
        Some(addr) => Some(crate::quic::Sockets::bind(c.agents, addr).map_err(RunError::Quic)?),
        None => None,
    };
    let shared = Arc::new(Shared {
        quic,
        targets,
        server_name: c.server_name.clone(),
        ca_pem,
        window_ms: i64::try_from(c.window.as_millis()).unwrap_or(10_000).max(1),
        spread_ms: u64::try_from(c.spread.as_millis()).unwrap_or(0),
        interval_ms: c.interval_ms,
        heartbeat: c.heartbeat,
        dead_after: c.dead_after,
        backoff_initial: c.backoff_initial,
        backoff_max: c.backoff_max,
        events_per_hour: c.events_per_hour,
        event_storm: c.event_storm.map(|(at, span)| {
            (
                run_started_ms.saturating_add(i64::try_from(at.as_millis()).unwrap_or(i64::MAX)),
                i64::try_from(span.as_millis()).unwrap_or(1),
            )
        }),
        metrics: crate::speak::metric_set(c.metrics),
        stats: stats.clone(),
    });
    let metrics_per_rollup = shared.metrics.len();
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let mut credentials = credentials.into_iter();
    let mut agents: Vec<Arc<Agent>> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut report_steps = Vec::new();
    let mut all = Histogram::default();
    let lag = Arc::new(std::sync::Mutex::new(Histogram::default()));
    let probe = tokio::spawn(lag_probe(lag.clone()));
    let started = Instant::now();
    let cp_pid = c.control_plane_pid.map(|p| p.to_string());
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    for (index, (target, budget)) in plan.iter().enumerate() {
        let step_start = Instant::now();
        let before: Snapshot = stats.snapshot();
        stats.take_step_histogram();
        take(&lag);
        let mut cp = cp_pid.clone().map(Watch::new);
        let mut own = Watch::new("self".into());
        let mut connected_min = u64::MAX;
        // When every agent of the step was connected at once for the first time.
        let mut all_up: Option<Duration> = None;
        let mut next_progress = step_start + c.progress;
        let mut last_progress = (Instant::now(), stats.snapshot());
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let to_start = target.saturating_sub(agents.len());
        let spawn_every = Duration::from_secs_f64(1.0 / c.connect_rate);
        let mut next_spawn = Instant::now();
        let mut started_here = 0usize;
        eprintln!(
            "sco-loadgen: step {}/{}: {} agents for {:.0} s",
            index + 1,
            plan.len(),
            target,
            budget.as_secs_f64()
        );
        while step_start.elapsed() < *budget {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut ctrl_c, if !interrupted => {
                    eprintln!("sco-loadgen: interrupted; draining");
                    interrupted = true;
                }
            }
            if interrupted {
                break;
            }
            if all_up.is_none()
                && started_here >= to_start
                && stats.connected.load(Ordering::Relaxed).max(0) as usize >= *target
            {
                all_up = Some(step_start.elapsed());
            }
            while started_here < to_start && Instant::now() >= next_spawn {
                let Some(cred) = credentials.next() else {
                    break;
                };
                let quic = match &shared.quic {
                    Some(sockets) => Some((
                        sco_proto::quic::client_config(
                            &shared.ca_pem,
                            cred.cert_pem.as_bytes(),
                            cred.key_pem.as_bytes(),
                            shared.heartbeat,
                            shared.dead_after,
                        )
                        .map_err(RunError::Quic)?,
                        sockets.for_agent(agents.len()),
                    )),
                    None => None,
                };
                let agent = Arc::new(Agent::new(cred, c.labels.clone(), run_started_ms, quic));
                tasks.spawn(agent.clone().produce(shared.clone(), phase_rx.clone()));
                tasks.spawn(agent.clone().uplink(shared.clone(), phase_rx.clone()));
                agents.push(agent);
                started_here += 1;
                next_spawn += spawn_every;
            }
            if Instant::now() >= next_progress {
                next_progress += c.progress;
                if let Some(w) = cp.as_mut() {
                    w.tick();
                }
                own.tick();
                let connected = stats.connected.load(Ordering::Relaxed).max(0) as u64;
                if all_up.is_some() {
                    connected_min = connected_min.min(connected);
                }
                let now = stats.snapshot();
                let dt = last_progress.0.elapsed();
                let h = stats.step_histogram();
                eprintln!(
                    "[{:>5.0}s] step {}/{} agents {}/{} connected {} | {:.1} acked/s ({:.1} rollups/s) | ack p50 {:.1} ms p99 {:.1} ms | errors {} refused {}{} redirects {} reconnects {} | pending {}",
                    started.elapsed().as_secs_f64(),
                    index + 1,
                    plan.len(),
                    agents.len(),
                    target,
                    connected,
                    per_s(now.acked_total() - last_progress.1.acked_total(), dt),
                    per_s(now.acked[Kind::Rollup as usize] - last_progress.1.acked[Kind::Rollup as usize], dt),
                    h.quantile_ms(0.5),
                    h.quantile_ms(0.99),
                    now.error_total(),
                    now.refused_total(),
                    if now.refused.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", counts_text(&now.refused))
                    },
                    now.redirects,
                    now.reconnects,
                    pending(&agents),
                );
                last_progress = (Instant::now(), now);
            }
        }
        if let Some(w) = cp.as_mut() {
            w.tick();
        }
        own.tick();
        let after = stats.snapshot();
        let h = stats.take_step_histogram();
        all.merge(&h);
        let d = step_start.elapsed();
        let connected = stats.connected.load(Ordering::Relaxed).max(0) as u64;
        let step = Step {
            agents: agents.len() as u64,
            secs: (d.as_secs_f64() * 10.0).round() / 10.0,
            connected_at_end: connected,
            connected_min: connected_min.min(connected),
            all_connected_after_secs: all_up.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
            acked_per_s: per_s(after.acked_total() - before.acked_total(), d),
            rollups_per_s: per_s(
                after.acked[Kind::Rollup as usize] - before.acked[Kind::Rollup as usize],
                d,
            ),
            heartbeats_per_s: per_s(after.heartbeats - before.heartbeats, d),
            acked: after.acked_total() - before.acked_total(),
            produced: after.produced_total() - before.produced_total(),
            resent: after.resent - before.resent,
            ack: h.summary(),
            errors: error_delta(&after.errors, &before.errors),
            refused: error_delta(&after.refused, &before.refused),
            redirects: after.redirects - before.redirects,
            reconnects: after.reconnects - before.reconnects,
            pending_at_end: pending(&agents),
            control_plane: cp.as_ref().and_then(Watch::cost),
            loadgen: own.cost(),
            loadgen_lag: take(&lag).summary(),
        };
        let over = c.stop_p99_ms.is_some_and(|limit| step.ack.p99_ms > limit);
        report_steps.push(step);
        if interrupted {
            break;
        }
        if over {
            eprintln!("sco-loadgen: ack p99 over --stop-p99-ms; ramp stopped");
            break;
        }
    }

    // Drain: no new data; the streams stay until every outbox is empty.
    let _ = phase_tx.send(Phase::Drain);
    let drain_start = Instant::now();
    let mut drained = false;
    while drain_start.elapsed() < c.drain {
        // A producer that was mid-turn when the phase changed may still push one message.
        let producing = agents.iter().any(|a| a.producing.load(Ordering::Acquire));
        if !producing && pending(&agents) == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    // Acks that arrived while draining count in the run's figures.
    all.merge(&stats.take_step_histogram());
    let _ = phase_tx.send(Phase::Stop);
    probe.abort();
    let close = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if close.is_err() {
        tasks.abort_all();
    }

    let end = stats.snapshot();
    let ever = agents
        .iter()
        .filter(|a| a.ever_connected.load(Ordering::Relaxed))
        .count() as u64;
    let refused_agents = agents
        .iter()
        .filter(|a| a.ever_refused.load(Ordering::Relaxed));
    let mut agents_by_endpoint = BTreeMap::<String, u64>::new();
    for a in &agents {
        let last = a.last_endpoint.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = last.as_ref() {
            *agents_by_endpoint.entry(e.clone()).or_default() += 1;
        }
    }
    let totals = Totals {
        agents: agents.len() as u64,
        agents_ever_connected: ever,
        all_connected: ever == c.agents as u64 && agents.len() == c.agents,
        produced: end.produced_total(),
        acked: end.acked_total(),
        acked_by_kind: Kind::ALL
            .iter()
            .map(|k| (k.stored_as().to_string(), end.acked[*k as usize]))
            .collect::<BTreeMap<_, _>>(),
        sent: end.sent,
        resent: end.resent,
        heartbeats: end.heartbeats,
        policies_received: stats.policies_received.load(Ordering::Relaxed),
        commands_received: stats.commands_received.load(Ordering::Relaxed),
        connects: end.connects,
        reconnects: end.reconnects,
        errors: end.errors.clone(),
        refused: end.refused.clone(),
        redirects: end.redirects,
        agents_refused: refused_agents.clone().count() as u64,
        agents_refused_never_connected: refused_agents
            .filter(|a| !a.ever_connected.load(Ordering::Relaxed))
            .count() as u64,
        agents_by_endpoint,
        pending_at_end: pending(&agents),
        drained,
        drain_secs: (drain_secs * 10.0).round() / 10.0,
    };

    let database = match &c.database_url {
        None => None,
        Some(url) => {
            let sent: Vec<Sent> = agents
                .iter()
                .map(|a| {
                    let o = a.outbox.lock().unwrap_or_else(|e| e.into_inner());
                    Sent {
                        id: a.id.clone(),
                        last_seq: o.last_seq(),
                        max_acked: o.max_acked(),
                        kinds: (1..=o.last_seq())
                            .map(|s| o.kind_of(s).map_or("?", Kind::stored_as))
                            .collect(),
                        opened: o.opened().to_vec(),
                    }
                })
                .collect();
            Some(check::check(url, &c.id_prefix, &sent, metrics_per_rollup).await?)
        }
    };
    // A refusal is no failure when the agent got a stream in the end (elsewhere or later); an
    // agent that never had one by the end is.
    let passed =
        totals.all_connected && totals.acked > 0 && database.as_ref().is_none_or(|d| d.passed);
    Ok(Report {
        settings: Settings {
            target: c.target.clone(),
            transport: if c.quic { "quic" } else { "grpc" }.into(),
            identities: "issued by the fleet CA from its files".into(),
            id_prefix: c.id_prefix.clone(),
            metrics_per_rollup: metrics_per_rollup as u64,
            window_secs: c.window.as_secs_f64(),
            spread_secs: c.spread.as_secs_f64(),
            heartbeat_secs: c.heartbeat.as_secs_f64(),
            events_per_hour: c.events_per_hour,
            event_storm_at_secs: c.event_storm.map(|(at, _)| at.as_secs_f64()),
            connect_rate: c.connect_rate,
        },
        steps: report_steps,
        totals,
        ack: all.summary(),
        policies: stats.policy_receipts(),
        database,
        passed,
    })
}
