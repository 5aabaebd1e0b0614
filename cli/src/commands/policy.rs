//! `apply -f` (diff, store, roll out) and `rollout status [--watch]`, whose watch
//! `model status --watch` shares.

use std::collections::HashSet;
use std::io::Read as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};

use super::fleet::rollout_summary;
use super::{emit, emit_json, Ctx};
use crate::cli::{ApplyArgs, RolloutStatusArgs, WatchArgs};
use crate::client::{is_status, segment, Api, Body};
use crate::duration::utc;
use crate::render::{cell, unified, Table};

/// The policy as people read it: its canonical JSON (what the server stores and signs),
/// pretty-printed with sorted keys, so the diff shows changes of meaning only.
fn readable(doc: &Value) -> String {
    if doc.is_null() {
        return String::new();
    }
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_default();
    text.push('\n');
    text
}

/// The newest revision in a `GET /policies/{name}` answer.
fn newest_revision(history: &Value) -> Option<&Value> {
    history["revisions"]
        .as_array()?
        .iter()
        .max_by_key(|r| r["revision"].as_i64().unwrap_or(0))
}

pub fn apply(ctx: &Ctx, args: &ApplyArgs) -> anyhow::Result<()> {
    let source = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("read the policy from standard input")?;
        text
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("read {}", args.file.display()))?
    };
    // The parser the server and the agents use: a bad document is refused here, naming
    // the field, before anything is sent.
    let policy = sco_policy::parse(&source).map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
    let name = policy.name.clone();
    let new_doc: Value =
        serde_json::from_str(&policy.canonical_json()).context("encode the policy")?;

    let mut api = ctx.api()?;
    let history = match api.get(&format!("/policies/{}", segment(&name)), &[]) {
        Ok(v) => Some(v),
        Err(e) if is_status(&e, 404) => None,
        Err(e) => return Err(e),
    };
    let current = history.as_ref().and_then(newest_revision);
    let current_revision = current.and_then(|r| r["revision"].as_i64());
    let old_doc = current.map_or(Value::Null, |r| {
        if r["withdrawn"] == true {
            Value::Null
        } else {
            r["document"].clone()
        }
    });
    let diff = unified(&readable(&old_doc), &readable(&new_doc), 3);
    let heading = match current_revision {
        None => format!("policy {name}: new\n"),
        Some(r) if diff.is_empty() => format!("policy {name}: no change from revision {r}\n"),
        Some(r) => format!("policy {name}: changes from revision {r}\n"),
    };

    if args.dry_run {
        if ctx.json() {
            return emit_json(&json!({
                "name": name,
                "current_revision": current_revision,
                "changed": !diff.is_empty(),
                "diff": diff,
            }));
        }
        return emit(&format!("{heading}{diff}(dry run: nothing stored)\n"));
    }
    if !ctx.json() {
        emit(&format!("{heading}{diff}"))?;
    }

    let stored = api.post("/policies", &Body::Yaml(source))?;
    let revision = stored["policy"]["revision"]
        .as_i64()
        .context("the server's answer names no revision")?;
    let created = stored["created"] == true;
    // Storing the same document again returns the newest revision: roll it out only if
    // it is not already rolled out (or rolling out).
    let already = (!created)
        .then(|| {
            history
                .as_ref()
                .and_then(|h| h["rollouts"].as_array())
                .and_then(|r| r.first())
                .filter(|r| r["revision"] == revision && r["state"] != "stopped")
                .cloned()
        })
        .flatten();
    let rollout = match already {
        Some(r) => {
            if !ctx.json() {
                emit(&format!(
                    "revision {revision} is unchanged and already rolled out ({})\n",
                    cell(&r["state"])
                ))?;
            }
            Value::Null
        }
        None => {
            let mut body = json!({ "revision": revision });
            if let Some(p) = args.canary_percent {
                body["canary_percent"] = json!(p);
            }
            if let Some(s) = args.canary_secs {
                body["canary_secs"] = json!(s);
            }
            if let Some(n) = args.max_new_anomalies {
                body["max_new_anomalies"] = json!(n);
            }
            let v = api
                .post(
                    &format!("/policies/{}/rollout", segment(&name)),
                    &Body::Json(body),
                )
                .with_context(|| format!("revision {revision} is stored; its rollout failed"))?;
            if !ctx.json() {
                let r = &v["rollout"];
                let canaries = r["canary_hosts"]
                    .as_array()
                    .map(|h| h.iter().map(cell).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                emit(&format!(
                    "revision {revision} {}; rollout {} {} (canary {}%{})\nfollow it with: scoctl rollout status {name} --watch\n",
                    if created { "stored" } else { "unchanged" },
                    cell(&r["id"]),
                    cell(&r["state"]),
                    cell(&r["canary_percent"]),
                    if canaries.is_empty() {
                        String::new()
                    } else {
                        format!(": {canaries}")
                    },
                ))?;
            }
            v
        }
    };
    if ctx.json() {
        return emit_json(
            &json!({ "policy": stored, "rollout": rollout["rollout"], "diff": diff }),
        );
    }
    Ok(())
}

/// Where a rollout is, from its status and the set of connected hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The policy has never been rolled out.
    None,
    /// In its canary phase, or complete with connected hosts yet to apply it.
    Running,
    /// Complete, and every connected host runs the revision meant for it or refused it.
    Done { refused: Vec<String> },
    /// Stopped: everyone is back on the previous revision.
    Stopped { reason: String },
}

pub fn progress(status: &Value, connected: &HashSet<String>) -> Progress {
    let rollout = &status["rollout"];
    match rollout["state"].as_str() {
        None => return Progress::None,
        Some("stopped") => {
            return Progress::Stopped {
                reason: cell(&rollout["reason"]),
            }
        }
        Some("complete") => {}
        Some(_) => return Progress::Running,
    }
    let hosts = status["hosts"].as_array().map_or(&[][..], Vec::as_slice);
    let mut refused = Vec::new();
    for h in hosts {
        let id = cell(&h["host_id"]);
        let error = cell(&h["error"]);
        if !error.is_empty() {
            refused.push(id);
        } else if h["in_sync"] != true && connected.contains(&id) {
            return Progress::Running;
        }
    }
    Progress::Done { refused }
}

/// Why a rollout stopped, or when its canary phase ends: `": ..."`, or nothing.
pub(crate) fn rollout_note(r: &Value) -> String {
    let reason = cell(&r["reason"]);
    if !reason.is_empty() {
        format!(": {reason}")
    } else if r["state"] == "canary" {
        let ends = r["started_at_ms"].as_i64().unwrap_or(0)
            + r["canary_secs"].as_i64().unwrap_or(0) * 1000;
        format!(
            ": every targeted host gets it at {} unless it stops",
            utc(ends)
        )
    } else {
        String::new()
    }
}

fn status_text(status: &Value, connected: &HashSet<String>) -> String {
    let r = &status["rollout"];
    let mut out = if r.is_null() {
        format!("policy {}: never rolled out\n", cell(&status["name"]))
    } else {
        let note = rollout_note(r);
        format!(
            "policy {}: rollout {} of {} (previous revision {}){note}\n",
            cell(&status["name"]),
            cell(&r["id"]),
            rollout_summary(r),
            cell(&r["previous_revision"]),
        )
    };
    let mut t = Table::new(&[
        "HOST",
        "CONNECTED",
        "CANARY",
        "DESIRED",
        "APPLIED",
        "IN SYNC",
        "ERROR",
    ]);
    for h in status["hosts"].as_array().map_or(&[][..], Vec::as_slice) {
        let id = cell(&h["host_id"]);
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        t.row([
            id.clone(),
            yes_no(connected.contains(&id)).into(),
            yes_no(h["canary"] == true).into(),
            cell(&h["desired_revision"]),
            cell(&h["applied_revision"]),
            yes_no(h["in_sync"] == true).into(),
            cell(&h["error"]),
        ]);
    }
    out.push_str(&t.render());
    out
}

/// The policy whose rollout started last.
fn latest_rolled_out(api: &mut Api) -> anyhow::Result<String> {
    let v = api.get("/policies", &[])?;
    v["policies"]
        .as_array()
        .and_then(|p| {
            p.iter()
                .filter(|p| !p["rollout"].is_null())
                .max_by_key(|p| p["rollout"]["started_at_ms"].as_i64().unwrap_or(0))
        })
        .map(|p| cell(&p["name"]))
        .ok_or_else(|| anyhow!("no policy has been rolled out yet"))
}

pub(super) fn connected_hosts(api: &mut Api) -> anyhow::Result<HashSet<String>> {
    let v = api.get("/hosts", &[])?;
    Ok(v["hosts"]
        .as_array()
        .map(|hosts| {
            hosts
                .iter()
                .filter(|h| h["connected"] == true)
                .map(|h| cell(&h["id"]))
                .collect()
        })
        .unwrap_or_default())
}

pub fn rollout_status(ctx: &Ctx, args: &RolloutStatusArgs) -> anyhow::Result<()> {
    let mut api = ctx.api()?;
    let name = match &args.policy {
        Some(n) => n.clone(),
        None => latest_rolled_out(&mut api)?,
    };
    let path = format!("/policies/{}/status", segment(&name));
    follow(
        ctx,
        &mut api,
        &args.watch,
        &Followed {
            subject: name.clone(),
            never: format!("policy {name} has never been rolled out"),
            previous: "revision",
        },
        |api| api.get(&path, &[]),
        status_text,
        |status, connected| Ok(progress(status, connected)),
    )
}

/// What a watched rollout is called in the messages that end the watch.
pub(super) struct Followed {
    /// `cleanup`, `model 1.1.0`.
    pub subject: String,
    /// Why there is nothing to watch.
    pub never: String,
    /// What hosts go back to when it stops: `revision`, `model`.
    pub previous: &'static str,
}

/// Shows a rollout's status once, or with `--watch` each time it changes until it is
/// done (exit 0) or stopped, refused or timed out (an error, exit 1).
pub(super) fn follow(
    ctx: &Ctx,
    api: &mut Api,
    args: &WatchArgs,
    what: &Followed,
    mut fetch: impl FnMut(&mut Api) -> anyhow::Result<Value>,
    render: impl Fn(&Value, &HashSet<String>) -> String,
    check: impl Fn(&Value, &HashSet<String>) -> anyhow::Result<Progress>,
) -> anyhow::Result<()> {
    let name = &what.subject;
    let started = Instant::now();
    let mut last_printed = String::new();
    loop {
        let status = fetch(api)?;
        let connected = connected_hosts(api)?;
        let text = if ctx.json() {
            // One JSON document per change (the server's status), one per line.
            format!("{}\n", serde_json::to_string(&status).unwrap_or_default())
        } else {
            render(&status, &connected)
        };
        if text != last_printed {
            if args.watch && !last_printed.is_empty() && !ctx.json() {
                emit("\n")?;
            }
            emit(&text)?;
            last_printed = text;
        }
        if !args.watch {
            return Ok(());
        }
        match check(&status, &connected)? {
            Progress::None => bail!("{}", what.never),
            Progress::Stopped { reason } => bail!(
                "the rollout of {name} stopped ({reason}): every host is back on the previous {}",
                what.previous
            ),
            Progress::Done { refused } if refused.is_empty() => {
                if !ctx.json() {
                    emit(&format!(
                        "rollout of {name} complete: every connected host runs it\n"
                    ))?;
                }
                return Ok(());
            }
            Progress::Done { refused } => bail!(
                "the rollout of {name} is complete but {} refused it: {}",
                if refused.len() == 1 {
                    "one host"
                } else {
                    "hosts"
                },
                refused.join(", ")
            ),
            Progress::Running => {}
        }
        if let Some(limit) = args.timeout {
            if started.elapsed() >= Duration::from_secs(limit) {
                bail!("the rollout of {name} is not done after {limit} s (--timeout)");
            }
        }
        std::thread::sleep(Duration::from_secs(args.interval.max(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: Option<&str>, hosts: Value) -> Value {
        let rollout = match state {
            Some(s) => {
                json!({"id": "r1", "revision": 2, "previous_revision": 1, "state": s, "reason": "why"})
            }
            None => Value::Null,
        };
        json!({"name": "p", "rollout": rollout, "hosts": hosts})
    }

    fn host(id: &str, in_sync: bool, error: &str) -> Value {
        json!({"host_id": id, "desired_revision": 2, "canary": false, "reported_revision": 2,
               "applied_revision": if in_sync { 2 } else { 1 }, "error": error, "in_sync": in_sync})
    }

    #[test]
    fn progress_of_a_rollout() {
        let up: HashSet<String> = ["a".to_string(), "b".to_string()].into();
        let cases = [
            (status(None, json!([])), Progress::None),
            (
                status(Some("canary"), json!([host("a", true, "")])),
                Progress::Running,
            ),
            (
                status(Some("stopped"), json!([])),
                Progress::Stopped {
                    reason: "why".into(),
                },
            ),
            (
                status(
                    Some("complete"),
                    json!([host("a", true, ""), host("b", false, "")]),
                ),
                Progress::Running,
            ),
            // a disconnected host that has not applied it does not hold the watch
            (
                status(
                    Some("complete"),
                    json!([host("a", true, ""), host("c", false, "")]),
                ),
                Progress::Done { refused: vec![] },
            ),
            (
                status(
                    Some("complete"),
                    json!([host("a", true, ""), host("b", false, "bad signature")]),
                ),
                Progress::Done {
                    refused: vec!["b".into()],
                },
            ),
        ];
        for (i, (s, want)) in cases.into_iter().enumerate() {
            assert_eq!(progress(&s, &up), want, "case {i}: {s}");
        }
    }

    #[test]
    fn a_canary_says_when_everyone_gets_it() {
        let mut s = status(Some("canary"), json!([]));
        s["rollout"]["reason"] = json!("");
        s["rollout"]["started_at_ms"] = json!(1_796_212_800_000_i64);
        s["rollout"]["canary_secs"] = json!(300);
        let text = status_text(&s, &HashSet::new());
        assert!(
            text.starts_with(
                "policy p: rollout r1 of revision 2 canary (previous revision 1): \
                 every targeted host gets it at 2026-12-02 12:05:00 UTC unless it stops\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn status_text_lists_every_host() {
        let up: HashSet<String> = ["a".to_string()].into();
        let text = status_text(
            &status(
                Some("complete"),
                json!([host("a", true, ""), host("b", false, "")]),
            ),
            &up,
        );
        assert_eq!(
            text,
            "policy p: rollout r1 of revision 2 complete (previous revision 1): why\n\
             HOST  CONNECTED  CANARY  DESIRED  APPLIED  IN SYNC  ERROR\n\
             a     yes        no      2        2        yes\n\
             b     no         no      2        1        no\n"
        );
    }

    #[test]
    fn the_diff_compares_canonical_documents() {
        let old = json!({"name": "p", "rules": [{"mode": "dry_run"}]});
        let new = json!({"rules": [{"mode": "approve"}], "name": "p"});
        let d = unified(&readable(&old), &readable(&new), 3);
        assert!(
            d.contains("-       \"mode\": \"dry_run\"")
                && d.contains("+       \"mode\": \"approve\""),
            "{d}"
        );
        assert_eq!(unified(&readable(&old), &readable(&old), 3), "");
        assert!(unified("", &readable(&new), 3).starts_with("+ {"));
        let history = json!({"revisions": [{"revision": 1}, {"revision": 3}, {"revision": 2}]});
        assert_eq!(
            newest_revision(&history).map(|r| r["revision"].clone()),
            Some(json!(3))
        );
    }
}
