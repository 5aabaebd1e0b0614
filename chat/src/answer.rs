//! The answers that need no data from the fleet: help, a question back when a name was
//! ambiguous or unknown, and "not understood" with the closest things the chat can do.
//! Every other intent is answered by the control plane from its services.

use crate::intent::Intent;
use crate::lexicon::Lexicon;

/// What the chat can do, with an example of each (using a host of the fleet).
pub fn help_text(lex: &Lexicon) -> String {
    let host = lex.hosts().first().map_or("web-1", |h| h.hostname.as_str());
    let lines = [
        ("the fleet", "fleet status · how are the web servers doing".to_string()),
        ("a host", format!("status of {host} · what's wrong with {host}?")),
        (
            "anomalies",
            format!("open anomalies on {host} · critical alerts since 9:00 · anomalies on role=db in the last 2 hours"),
        ),
        ("why one fired", format!("why did {host}-0a1b2c3d:88 fire?")),
        (
            "a metric",
            format!("cpu on {host} last hour · memory, disk, load, network, io, swap, pressure"),
        ),
        ("processes", format!("top processes by memory on {host}")),
        ("remediation", "pending proposals · failed actions today".to_string()),
        ("policies", "policy rollout status · how is cpu-guard rolling out".to_string()),
        (
            "decide (operators)",
            "approve act-… · reject act-… because …".to_string(),
        ),
        (
            "act (operators)",
            format!("restart nginx on {host} · kill the burner on {host} · vacuum the journal on {host} · add \"dry run\" to only try; then confirm cf-…"),
        ),
        ("runbooks", "runbooks for disk full".to_string()),
    ];
    let mut out = String::from("I can answer questions about the fleet and act under your role:\n");
    for (what, examples) in lines {
        out.push_str(&format!("• {what}: {examples}\n"));
    }
    out.pop();
    out
}

/// The answer to help, clarify and unknown intents; `None` for the intents whose answer
/// needs the fleet's data.
pub fn plain_answer(intent: &Intent, lex: &Lexicon) -> Option<String> {
    match intent {
        Intent::Help => Some(help_text(lex)),
        Intent::Clarify {
            question,
            candidates,
        } => Some(if candidates.is_empty() {
            question.clone()
        } else {
            format!("{question} ({})", candidates.join(", "))
        }),
        Intent::Unknown {
            reason,
            suggestions,
        } => {
            let mut out = format!("I did not understand that ({reason}).");
            if !suggestions.is_empty() {
                out.push_str(" Closest things I can do: ");
                out.push_str(
                    &suggestions
                        .iter()
                        .map(|s| format!("\"{}\"", s.example))
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                out.push_str(". Ask \"help\" for everything.");
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    #[test]
    fn answers_without_fleet_data() {
        let lex = Lexicon::new();
        let help = plain_answer(&Intent::Help, &lex).expect("help");
        assert!(help.contains("restart nginx on web-1"), "{help}");
        let unknown = parse("order me a pizza", &lex, 0);
        let text = plain_answer(&unknown, &lex).expect("unknown");
        assert!(text.starts_with("I did not understand that"), "{text}");
        assert!(text.contains("Closest things I can do"), "{text}");
        assert_eq!(
            plain_answer(
                &Intent::FleetStatus {
                    selector: Default::default()
                },
                &lex
            ),
            None
        );
    }
}
