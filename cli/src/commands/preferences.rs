//! `get preferences` and `reset preferences`: what was learnt about rules' candidate
//! actions from their verified outcomes.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{bail, Context as _};
use serde_json::Value;

use super::{emit, emit_json, Ctx};
use crate::cli::{PreferenceFilter, ResetPreferencesArgs};
use crate::client::Api;
use crate::render::{cell, Table};

fn query(f: &PreferenceFilter) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(r) = &f.rule {
        q.push(("rule", r.clone()));
    }
    if let Some(c) = &f.context {
        q.push(("context", c.clone()));
    }
    q
}

/// `rule web/fix-memory, context memory/high`, or `every rule and context`.
fn scope(f: &PreferenceFilter) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &f.rule {
        parts.push(format!("rule {r}"));
    }
    if let Some(c) = &f.context {
        parts.push(format!("context {c}"));
    }
    if parts.is_empty() {
        "every rule and context".into()
    } else {
        parts.join(", ")
    }
}

pub fn fetch(api: &mut Api, f: &PreferenceFilter) -> anyhow::Result<Value> {
    api.get("/remediation/preferences", &query(f))
}

/// An action in one cell: its type, then its other fields as `key=value`.
pub fn action_text(a: &Value) -> String {
    let Some(fields) = a.as_object() else {
        return cell(a);
    };
    let mut out = cell(&a["type"]);
    for (k, v) in fields {
        if k != "type" {
            out.push_str(&format!(" {k}={}", cell(v)));
        }
    }
    out
}

/// One row per candidate, in written order, grouped by rule and context.
pub fn table(v: &Value) -> Table {
    let mut t = Table::new(&[
        "RULE",
        "CONTEXT",
        "CANDIDATE",
        "SUCCESSES",
        "FAILURES",
        "SCORE",
        "NEXT",
    ]);
    for p in v["preferences"].as_array().map_or(&[][..], Vec::as_slice) {
        for c in p["candidates"].as_array().map_or(&[][..], Vec::as_slice) {
            t.row([
                cell(&p["rule"]),
                cell(&p["context"]),
                action_text(&c["action"]),
                cell(&c["successes"]),
                cell(&c["failures"]),
                c["score"]
                    .as_f64()
                    .map(|s| format!("{s:.2}"))
                    .unwrap_or_default(),
                if c["action"] == p["preferred"] {
                    "yes"
                } else {
                    ""
                }
                .into(),
            ]);
        }
    }
    t
}

/// What `get preferences` says when there is nothing to show.
pub fn nothing_learnt(f: &PreferenceFilter) -> String {
    format!(
        "nothing learnt yet for {}: rules with `candidates` learn from their verified outcomes\n",
        scope(f)
    )
}

/// Asks on the terminal; without one, `--yes` is needed.
fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question}: pass --yes to confirm (standard input is not a terminal)");
    }
    let mut err = std::io::stderr().lock();
    write!(err, "{question}? [y/N] ")
        .and_then(|()| err.flush())
        .context("write to standard error")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub fn reset(ctx: &Ctx, args: &ResetPreferencesArgs) -> anyhow::Result<()> {
    let f = &args.filter;
    let mut api = ctx.api()?;
    if !args.yes
        && !confirm(&format!(
            "forget what was learnt about {} on {}",
            scope(f),
            api.client.base()
        ))?
    {
        bail!("nothing reset");
    }
    let v = api.delete("/remediation/preferences", &query(f))?;
    if ctx.json() {
        return emit_json(&v);
    }
    emit(&format!(
        "forgot {} candidate tallies of {}: the next incidents run the candidates in their written order\n",
        cell(&v["deleted"]),
        scope(f)
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn one_row_per_candidate_marking_the_next_one() {
        let v = json!({"count": 1, "preferences": [{
            "rule": "web/fix-memory", "context": "memory/high",
            "preferred": {"type": "kill_process", "top_consumer": "memory", "pattern": "*hog*"},
            "candidates": [
                {"position": 0, "action": {"type": "journal_vacuum", "max_size_mb": 100},
                 "successes": 0, "failures": 2, "score": 0.4},
                {"position": 1, "action": {"type": "kill_process", "top_consumer": "memory", "pattern": "*hog*"},
                 "successes": 1, "failures": 0, "score": 0.6666},
            ],
            "updated_at_ms": 1
        }]});
        assert_eq!(
            table(&v).render(),
            "RULE            CONTEXT      CANDIDATE                                       SUCCESSES  FAILURES  SCORE  NEXT\n\
             web/fix-memory  memory/high  journal_vacuum max_size_mb=100                  0          2         0.40\n\
             web/fix-memory  memory/high  kill_process pattern=*hog* top_consumer=memory  1          0         0.67   yes\n"
        );
        assert!(table(&json!({"count": 0, "preferences": []})).is_empty());
    }

    #[test]
    fn the_scope_says_what_is_concerned() {
        let mut f = PreferenceFilter {
            rule: None,
            context: None,
        };
        assert_eq!(scope(&f), "every rule and context");
        assert!(query(&f).is_empty());
        f.rule = Some("p/r".into());
        f.context = Some("cpu/high".into());
        assert_eq!(scope(&f), "rule p/r, context cpu/high");
        assert_eq!(
            query(&f),
            vec![
                ("rule", "p/r".to_string()),
                ("context", "cpu/high".to_string())
            ]
        );
    }
}
