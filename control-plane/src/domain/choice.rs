//! Which of a rule's candidate actions runs: a bandit over their verified outcomes, kept
//! per rule and context (the incident's metric family and severity), with a prior that
//! favours the order the operator wrote.
//!
//! The choice is deterministic, so an operator can predict it and a test can pin it: the
//! candidate with the highest posterior mean of success wins, ties go to the one written
//! first. Candidate `i` of `n` (from 0) starts as if it had `n - i` verified successes and
//! one failure, so the first is preferred until its failures bring its mean below the
//! prior of the next, and a candidate never tried keeps an optimistic prior (at least 1/2)
//! that makes it tried once the ones before it fail more often than not. Means are compared
//! as exact fractions: no rounding decides a tie.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::remediation::ActionState;
use sco_policy::{Family, Severity};

/// Verified outcomes of one candidate in one context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub successes: i64,
    pub failures: i64,
}

/// The prior of the candidate written at `position` (from 0) of `of`, as pseudo-counts
/// (successes, failures).
pub fn prior(position: usize, of: usize) -> (i64, i64) {
    let ahead = of.saturating_sub(position).max(1);
    (i64::try_from(ahead).unwrap_or(i64::MAX), 1)
}

/// The posterior mean of success as an exact fraction (numerator, denominator).
fn posterior(position: usize, of: usize, t: Tally) -> (i128, i128) {
    let (a, b) = prior(position, of);
    let (s, f) = (
        i128::from(t.successes.max(0)),
        i128::from(t.failures.max(0)),
    );
    (i128::from(a) + s, i128::from(a) + i128::from(b) + s + f)
}

/// The posterior mean of success of the candidate at `position` of `of`.
pub fn score(position: usize, of: usize, t: Tally) -> f64 {
    let (num, den) = posterior(position, of, t);
    num as f64 / den as f64
}

/// The candidate to run, given each candidate's tally in the order written: the highest
/// posterior mean, ties to the earlier. `None` only for no candidates.
pub fn choose(tallies: &[Tally]) -> Option<usize> {
    choose_among(tallies, &[])
}

/// [`choose`] among the candidates `allowed` marks (by position; one missing from it counts
/// as allowed); among all of them when it allows none.
pub fn choose_among(tallies: &[Tally], allowed: &[bool]) -> Option<usize> {
    let of = tallies.len();
    let ok = |i: usize| allowed.get(i).copied().unwrap_or(true);
    let any = (0..of).any(ok);
    let mut best: Option<(usize, (i128, i128))> = None;
    for (i, t) in tallies.iter().enumerate() {
        if any && !ok(i) {
            continue;
        }
        let (num, den) = posterior(i, of, *t);
        // strictly better only: an equal mean keeps the earlier candidate
        let better = best.is_none_or(|(_, (bn, bd))| num * bd > bn * den);
        if better {
            best = Some((i, (num, den)));
        }
    }
    best.map(|(i, _)| i)
}

/// The context an incident is learnt in, from the evidence of the rule that fired:
/// `family/severity` of its anomaly event, or `family/state` (the family of its first
/// state condition's metric) for a rule on metric values only. Only names of the shared
/// vocabulary come out of it, whatever the evidence holds.
pub fn context_of(evidence: Option<&serde_json::Value>) -> String {
    let anomaly = evidence.and_then(|e| e.get("anomaly"));
    if let Some(a) = anomaly {
        let family = a["family"]
            .as_str()
            .and_then(Family::parse)
            .unwrap_or(Family::Host);
        let severity = a["severity"]
            .as_str()
            .and_then(Severity::parse)
            .map_or("unknown", Severity::as_str);
        return format!("{family}/{severity}");
    }
    let metric = evidence
        .and_then(|e| e["state"][0]["condition"].as_str())
        .and_then(|c| c.split(['<', '>']).next())
        .map(str::trim)
        .filter(|m| !m.is_empty());
    match metric {
        Some(m) => format!("{}/state", Family::of(m)),
        None => format!("{}/state", Family::Host),
    }
}

/// What the final state of an executed request teaches: `Some(true)` when its verification
/// held, `Some(false)` when it failed (the action or its verification), `None` for
/// anything else (refused by the agent's safety rules, a dry run, lost): no outcome of
/// the action itself.
pub fn outcome(state: ActionState) -> Option<bool> {
    match state {
        ActionState::Succeeded => Some(true),
        ActionState::Failed => Some(false),
        _ => None,
    }
}

/// The choice made for one request, kept in its evidence (`evidence.choice`) so a
/// request shows why it runs what it runs, and its report is learnt in the same context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub context: String,
    /// Position of the chosen candidate in the rule as written.
    pub candidate: usize,
    /// How many candidates the rule has.
    pub of: usize,
    /// Posterior mean of each candidate when the choice was made, in written order.
    pub scores: Vec<f64>,
    /// Whether the outcome is learnt: false for a dry run, which only records what it
    /// would have chosen.
    pub learns: bool,
    /// Positions the host's own checks refused when it proposed (its dry run or pre-check of
    /// each candidate): not chosen while another was allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_here: Vec<usize>,
}

impl Choice {
    /// Chooses among candidates with these tallies (written order), among those `allowed`
    /// marks (see [`choose_among`]).
    pub fn make(
        context: String,
        tallies: &[Tally],
        allowed: &[bool],
        learns: bool,
    ) -> Option<Choice> {
        let candidate = choose_among(tallies, allowed)?;
        let of = tallies.len();
        Some(Choice {
            refused_here: (0..of)
                .filter(|&i| !allowed.get(i).copied().unwrap_or(true))
                .collect(),
            context,
            candidate,
            of,
            scores: tallies
                .iter()
                .enumerate()
                .map(|(i, t)| score(i, of, *t))
                .collect(),
            learns,
        })
    }
}

/// One stored tally: a candidate of a rule in a context.
#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceRow {
    /// `policy/rule`.
    pub rule: String,
    pub context: String,
    pub action: serde_json::Value,
    /// Position in the rule as last written, and how many candidates it had.
    pub position: i64,
    pub of: i64,
    pub tally: Tally,
    pub updated_at_ms: i64,
}

/// One candidate as `GET /remediation/preferences` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateView {
    pub position: i64,
    pub action: serde_json::Value,
    pub successes: i64,
    pub failures: i64,
    /// Posterior mean of success.
    pub score: f64,
}

/// What was learnt for one rule in one context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preference {
    pub rule: String,
    pub context: String,
    /// The action the next incident in this context would run.
    pub preferred: serde_json::Value,
    /// In the order written.
    pub candidates: Vec<CandidateView>,
    pub updated_at_ms: i64,
}

/// Groups stored rows by rule and context, each with the candidate it would choose now.
pub fn preferences(rows: Vec<PreferenceRow>) -> Vec<Preference> {
    let mut groups: BTreeMap<(String, String), Vec<PreferenceRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.rule.clone(), r.context.clone()))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .filter_map(|((rule, context), mut rows)| {
            rows.sort_by_key(|r| r.position);
            let of = rows.len();
            let tallies: Vec<Tally> = rows.iter().map(|r| r.tally).collect();
            let preferred = rows.get(choose(&tallies)?)?.action.clone();
            Some(Preference {
                rule,
                context,
                preferred,
                updated_at_ms: rows.iter().map(|r| r.updated_at_ms).max().unwrap_or(0),
                candidates: rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| CandidateView {
                        position: r.position,
                        score: score(i, of, r.tally),
                        action: r.action,
                        successes: r.tally.successes,
                        failures: r.tally.failures,
                    })
                    .collect(),
            })
        })
        .collect()
}

/// A rule key (`policy/rule`) or a context as a filter: `^[A-Za-z0-9@._:/-]{1,128}$`.
pub fn check_key(field: &str, value: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:/-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: {:?} does not match ^[A-Za-z0-9@._:/-]{{1,128}}$",
            value.chars().take(140).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(successes: i64, failures: i64) -> Tally {
        Tally {
            successes,
            failures,
        }
    }

    #[test]
    fn choices_from_tallies() {
        // (tallies in written order, chosen)
        let cases: &[(&[Tally], Option<usize>)] = &[
            (&[], None),
            (&[t(0, 0)], Some(0)),
            (&[t(0, 50)], Some(0)),
            // written order with no evidence
            (&[t(0, 0), t(0, 0), t(0, 0)], Some(0)),
            // 2/4 against 1/2: a tie, the first written keeps it
            (&[t(0, 1), t(0, 0)], Some(0)),
            // 2/5 against 1/2
            (&[t(0, 2), t(0, 0)], Some(1)),
            // the second has worked; the first's one old success does not win it back
            (&[t(1, 2), t(1, 0)], Some(1)),
            // the first works most of the time: kept, the others never tried
            (&[t(8, 2), t(0, 0), t(0, 0)], Some(0)),
            // the second failed once it was tried: back to the first
            (&[t(0, 2), t(0, 1)], Some(0)),
            // three candidates, the first two fail: the third's optimistic prior wins
            (&[t(0, 4), t(0, 3), t(0, 0)], Some(2)),
            // counts below zero are read as none
            (&[t(-5, -5), t(0, 0)], Some(0)),
        ];
        for (tallies, want) in cases {
            assert_eq!(choose(tallies), *want, "{tallies:?}");
        }
    }

    #[test]
    fn a_candidate_the_host_refused_is_passed_over_while_another_is_allowed() {
        // (tallies, allowed, chosen)
        let cases: &[(&[Tally], &[bool], Option<usize>)] = &[
            // the first is preferred but refused on the host: the second runs
            (&[t(0, 0), t(0, 0)], &[false, true], Some(1)),
            // the learnt favourite refused: the best of the rest
            (&[t(0, 3), t(5, 0), t(0, 0)], &[true, false, true], Some(2)),
            // nothing allowed: the choice is as if all were (the agent refused the proposal)
            (&[t(0, 0), t(0, 0)], &[false, false], Some(0)),
            // positions the list does not reach count as allowed
            (&[t(0, 0), t(0, 0)], &[false], Some(1)),
            (&[t(0, 0), t(0, 0)], &[], Some(0)),
        ];
        for (tallies, allowed, want) in cases {
            assert_eq!(
                choose_among(tallies, allowed),
                *want,
                "{tallies:?} {allowed:?}"
            );
        }
        let c = Choice::make(
            "memory/high".into(),
            &[t(0, 0), t(0, 0)],
            &[false, true],
            true,
        )
        .expect("one");
        assert_eq!((c.candidate, c.refused_here.clone()), (1, vec![0]));
        let back: Choice =
            serde_json::from_value(serde_json::to_value(&c).expect("json")).expect("reads back");
        assert_eq!(back, c);
    }

    #[test]
    fn priors_favour_the_written_order() {
        assert_eq!(prior(0, 3), (3, 1));
        assert_eq!(prior(2, 3), (1, 1));
        // out of range: the weakest prior, never zero
        assert_eq!(prior(5, 3), (1, 1));
        assert_eq!(score(0, 2, t(0, 0)), 2.0 / 3.0);
        assert_eq!(score(1, 2, t(0, 0)), 0.5);
        assert_eq!(score(1, 2, t(3, 0)), 0.8);
    }

    /// Replays incidents where only one candidate's verification ever holds: the choice
    /// reaches it within a bound and stays there.
    #[test]
    fn the_choice_moves_to_the_candidate_that_works_and_stays() {
        for (of, works, by) in [(2, 1, 3), (3, 2, 6), (3, 1, 3), (2, 0, 1)] {
            let mut tallies = vec![Tally::default(); of];
            let mut chosen = Vec::new();
            for _ in 0..20 {
                let c = choose(&tallies).expect("candidates");
                chosen.push(c);
                if c == works {
                    tallies[c].successes += 1;
                } else {
                    tallies[c].failures += 1;
                }
            }
            let first = chosen.iter().position(|&c| c == works).expect("reached");
            assert!(first < by, "{of} candidates, #{works} works: {chosen:?}");
            assert!(
                chosen[first..].iter().all(|&c| c == works),
                "{of} candidates, #{works} works: {chosen:?}"
            );
        }
        // The exact sequence for two candidates, the first never verifying: the first
        // twice (the written order holds through one failure), then the second for good.
        let mut tallies = [Tally::default(); 2];
        let mut chosen = Vec::new();
        for _ in 0..5 {
            let c = choose(&tallies).expect("candidates");
            chosen.push(c);
            if c == 1 {
                tallies[1].successes += 1;
            } else {
                tallies[0].failures += 1;
            }
        }
        assert_eq!(chosen, [0, 0, 1, 1, 1]);
    }

    #[test]
    fn contexts_come_from_the_evidence() {
        let cases = [
            (
                json!({"anomaly": {"family": "cpu", "severity": "high"}, "state": [{"condition": "mem.used_pct > 3", "value": 5}]}),
                "cpu/high",
            ),
            (
                json!({"state": [{"condition": "disk.used_pct:/var >= 90", "value": 95}]}),
                "disk_space/state",
            ),
            (
                json!({"state": [{"condition": "mem.used_pct >= 0", "value": 40}]}),
                "memory/state",
            ),
            // what the vocabulary does not know does not become a key
            (
                json!({"anomaly": {"family": "x'; drop", "severity": "apocalyptic"}}),
                "host/unknown",
            ),
            (json!({}), "host/state"),
            (json!("nonsense"), "host/state"),
        ];
        for (evidence, want) in cases {
            assert_eq!(context_of(Some(&evidence)), want, "{evidence}");
        }
        assert_eq!(context_of(None), "host/state");
    }

    #[test]
    fn only_executed_outcomes_teach() {
        assert_eq!(outcome(ActionState::Succeeded), Some(true));
        assert_eq!(outcome(ActionState::Failed), Some(false));
        for s in [
            ActionState::Refused,
            ActionState::DryRun,
            ActionState::Expired,
            ActionState::Rejected,
            ActionState::Running,
        ] {
            assert_eq!(outcome(s), None, "{s:?}");
        }
    }

    #[test]
    fn stored_rows_group_by_rule_and_context() {
        let row = |rule: &str, context: &str, position, tally| PreferenceRow {
            rule: rule.into(),
            context: context.into(),
            action: json!({"type": "restart_service", "unit": format!("u{position}.service")}),
            position,
            of: 2,
            tally,
            updated_at_ms: 10 + position,
        };
        let got = preferences(vec![
            row("p/r", "memory/state", 1, t(2, 0)),
            row("p/r", "memory/state", 0, t(0, 2)),
            row("p/r", "cpu/high", 0, t(0, 0)),
            row("p/r", "cpu/high", 1, t(0, 0)),
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].context, "cpu/high");
        assert_eq!(got[0].preferred["unit"], "u0.service");
        assert_eq!(got[1].context, "memory/state");
        assert_eq!(got[1].preferred["unit"], "u1.service");
        assert_eq!(
            got[1]
                .candidates
                .iter()
                .map(|c| (c.position, c.failures))
                .collect::<Vec<_>>(),
            [(0, 2), (1, 0)]
        );
        assert_eq!(got[1].updated_at_ms, 11);
        let c = Choice::make("memory/state".into(), &[t(0, 2), t(2, 0)], &[], false).expect("one");
        assert_eq!((c.candidate, c.of, c.learns), (1, 2, false));
        assert_eq!(c.scores, [0.4, 0.75]);
    }

    #[test]
    fn keys_are_checked() {
        check_key("rule", "web-cpu/stop-runaway").expect("valid");
        check_key("context", "disk_space/state").expect("valid");
        for bad in ["", "a b", "x;drop", &"a".repeat(129)] {
            let e = check_key("rule", bad).expect_err(bad);
            assert!(e.starts_with("rule: "), "{e}");
        }
    }
}
