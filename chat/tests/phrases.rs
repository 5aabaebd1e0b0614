//! The phrase tables of `tests/phrases/`: the development table must pass whole; the
//! held-back table's score is printed as the parser's accuracy (exact intent and
//! arguments) and must stay above the floor stated in `HELD_BACK_FLOOR`.

use std::collections::BTreeMap;

use sco_chat::{
    parse, ActionState, ExplainTarget, HostRef, Intent, Lexicon, Scope, Selector, TimeRange,
};
use sco_policy::{Action, Consumer, Severity};

/// A regression guard a little under the held-back score first measured (49 of 50,
/// 98%): the parser was written by the same hand as the table, so that figure is an
/// upper estimate for phrasings nobody here thought of (see the crate README).
const HELD_BACK_FLOOR: f64 = 0.95;

struct Fleet {
    now_ms: i64,
    lexicon: Lexicon,
    hosts: BTreeMap<String, HostRef>,
}

fn fleet() -> Fleet {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/phrases/fleet.json"
    ))
    .expect("fleet.json is readable");
    let v: serde_json::Value = serde_json::from_str(&text).expect("fleet.json is JSON");
    let mut lexicon = Lexicon::new();
    let mut hosts = BTreeMap::new();
    for h in v["hosts"].as_array().expect("hosts") {
        let id = h["id"].as_str().expect("id");
        let hostname = h["hostname"].as_str().expect("hostname");
        let labels: BTreeMap<String, String> =
            serde_json::from_value(h["labels"].clone()).expect("labels");
        lexicon.add_host(id, hostname, labels);
        hosts.insert(
            hostname.to_string(),
            HostRef {
                id: id.into(),
                hostname: hostname.into(),
            },
        );
    }
    for p in v["policies"].as_array().expect("policies") {
        lexicon.add_policy(p.as_str().expect("policy name"));
    }
    Fleet {
        now_ms: v["now_ms"].as_i64().expect("now_ms"),
        lexicon,
        hosts,
    }
}

/// `key=value` pairs of an expectation; a value may be double-quoted.
fn pairs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (key, after) = match rest.find(|c: char| c == '=' || c.is_whitespace()) {
            Some(i) if rest[i..].starts_with('=') => (&rest[..i], &rest[i + 1..]),
            Some(i) => {
                out.push((rest[..i].to_string(), String::new()));
                rest = rest[i..].trim_start();
                continue;
            }
            None => {
                out.push((rest.to_string(), String::new()));
                break;
            }
        };
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').expect("closing quote");
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push((key.to_string(), value.to_string()));
        rest = after.trim_start();
    }
    out
}

fn range(spec: &str, now: i64) -> TimeRange {
    if let Some(d) = spec.strip_prefix("last:") {
        let (n, unit) = d.split_at(d.len() - 1);
        let n: i64 = n.parse().expect("amount");
        let unit = match unit {
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            u => panic!("unit {u}"),
        };
        return TimeRange::last(now, n * unit);
    }
    match spec {
        "today" => TimeRange::today(now),
        "yesterday" => TimeRange::yesterday(now),
        "since:yesterday" => TimeRange::since_yesterday(now),
        _ => {
            let clock = spec.strip_prefix("since:").expect("a known range");
            let (h, m) = clock.split_once(':').expect("HH:MM");
            TimeRange::since_clock(now, h.parse().expect("hour"), m.parse().expect("minute"))
        }
    }
}

/// What the table expects: the intent, or for `unknown` and `clarify` only what is fixed.
#[derive(Debug, PartialEq)]
enum Expected {
    Exact(Intent),
    Unknown,
    Clarify(Vec<String>),
}

fn expected(spec: &str, f: &Fleet) -> Expected {
    let (name, args) = spec.split_once(' ').unwrap_or((spec, ""));
    let kv: BTreeMap<String, String> = pairs(args).into_iter().collect();
    let get = |k: &str| kv.get(k).cloned();
    let host = |k: &str| {
        get(k).map(|h| {
            f.hosts
                .get(&h)
                .unwrap_or_else(|| panic!("host {h} is not in fleet.json"))
                .clone()
        })
    };
    let selector = || -> Selector {
        get("selector")
            .map(|s| {
                s.split(',')
                    .map(|p| {
                        let (k, v) = p.split_once('=').expect("k=v");
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let now = f.now_ms;
    let intent = match name {
        "fleet_status" => Intent::FleetStatus {
            selector: selector(),
        },
        "host_status" => Intent::HostStatus {
            host: host("host").expect("host"),
        },
        "anomalies" => {
            let sel = selector();
            let scope = match host("host") {
                Some(host) => Scope::Host { host },
                None if !sel.is_empty() => Scope::Selector { labels: sel },
                None => Scope::Fleet,
            };
            Intent::Anomalies {
                scope,
                min_severity: get("severity").map(|s| Severity::parse(&s).expect("severity")),
                range: get("range").map(|r| range(&r, now)),
                open_only: kv.contains_key("open"),
            }
        }
        "explain" => Intent::Explain {
            target: match get("event") {
                Some(id) => ExplainTarget::Event { id },
                None => ExplainTarget::Host {
                    host: host("host").expect("host or event"),
                },
            },
        },
        "metric" => Intent::MetricHistory {
            host: host("host").expect("host"),
            metrics: get("metric")
                .expect("metric")
                .split(',')
                .map(String::from)
                .collect(),
            range: range(&get("range").expect("range"), now),
        },
        "top_processes" => Intent::TopProcesses {
            host: host("host").expect("host"),
            by: consumer(&get("by").expect("by")),
        },
        "actions" => Intent::Actions {
            host: host("host"),
            state: get("state").map(|s| ActionState::parse(&s).expect("state")),
            range: get("range").map(|r| range(&r, now)),
        },
        "policy_status" => Intent::PolicyStatus {
            policy: get("policy"),
        },
        "approve" => Intent::Approve {
            action_id: get("action").expect("action"),
        },
        "reject" => Intent::Reject {
            action_id: get("action").expect("action"),
            reason: get("reason"),
        },
        "trigger" => {
            let action = match get("kind").expect("kind").as_str() {
                "restart_service" => Action::RestartService {
                    unit: get("unit").expect("unit"),
                },
                "kill_process" => Action::KillProcess {
                    name: get("name"),
                    pattern: get("pattern"),
                    pid: get("pid").map(|p| p.parse().expect("pid")),
                    top_consumer: get("top").map(|c| consumer(&c)),
                    grace_secs: 10,
                },
                "journal_vacuum" => Action::JournalVacuum {
                    max_size_mb: get("size_mb").expect("size_mb").parse().expect("number"),
                },
                k => panic!("kind {k}"),
            };
            Intent::Trigger {
                host: host("host").expect("host"),
                action,
                dry_run: kv.contains_key("dry_run"),
            }
        }
        "confirm" => Intent::Confirm {
            confirmation_id: get("id").expect("id"),
        },
        "runbooks" => Intent::Runbooks {
            query: get("query").expect("query"),
        },
        "help" => Intent::Help,
        "unknown" => return Expected::Unknown,
        "clarify" => {
            return Expected::Clarify(
                get("candidates")
                    .map(|c| c.split(',').map(String::from).collect())
                    .unwrap_or_default(),
            )
        }
        other => panic!("unknown intent {other} in a table"),
    };
    Expected::Exact(intent)
}

fn consumer(s: &str) -> Consumer {
    match s {
        "cpu" => Consumer::Cpu,
        "memory" => Consumer::Memory,
        "io" => Consumer::Io,
        other => panic!("consumer {other}"),
    }
}

fn matches(got: &Intent, want: &Expected) -> bool {
    match (want, got) {
        (Expected::Exact(w), g) => w == g,
        (Expected::Unknown, Intent::Unknown { suggestions, .. }) => !suggestions.is_empty(),
        (Expected::Clarify(c), Intent::Clarify { candidates, .. }) => c == candidates,
        _ => false,
    }
}

/// Scores a table: (passed, total, failure descriptions).
fn score(file: &str) -> (usize, usize, Vec<String>) {
    let f = fleet();
    let path = format!("{}/tests/phrases/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("table is readable");
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (phrase, spec) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("no tab in {line:?}"));
        let want = expected(spec.trim(), &f);
        let got = parse(phrase, &f.lexicon, f.now_ms);
        total += 1;
        if matches(&got, &want) {
            passed += 1;
        } else {
            failures.push(format!(
                "{phrase:?}\n    want {spec}\n    got  {}",
                serde_json::to_string(&got).expect("serializes")
            ));
        }
    }
    (passed, total, failures)
}

#[test]
fn development_table_passes_whole() {
    let (passed, total, failures) = score("dev.tsv");
    println!("development table: {passed}/{total}");
    assert!(total >= 90, "the development table has {total} rows");
    assert!(
        failures.is_empty(),
        "{} of {total} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn held_back_accuracy() {
    let (passed, total, failures) = score("heldback.tsv");
    let accuracy = passed as f64 / total as f64;
    println!(
        "held-back accuracy: {passed}/{total} = {:.1}% (exact intent and arguments)",
        accuracy * 100.0
    );
    for f in &failures {
        println!("  miss: {f}");
    }
    assert!(total >= 40, "the held-back table has {total} rows");
    assert!(
        accuracy >= HELD_BACK_FLOOR,
        "held-back accuracy {accuracy:.3} is below the floor {HELD_BACK_FLOOR}"
    );
}
