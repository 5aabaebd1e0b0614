//! The Prometheus text exposition format (version 0.0.4), written by hand: a family is its
//! `# HELP` and `# TYPE` lines followed by its samples, one `name{label="value",...} value`
//! line each. The format is small enough that a crate would cost more than it saves.

use std::fmt::Write as _;

/// The content type of what [`Text`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
    /// Families written so far: a name may appear once.
    names: Vec<&'static str>,
}

impl Text {
    /// Starts a family; its HELP and TYPE lines are written with its first sample, so a
    /// family without samples leaves no trace.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) -> Family<'_> {
        debug_assert!(!self.names.contains(&name), "family {name} written twice");
        Family {
            text: self,
            name,
            kind,
            help,
            started: false,
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// One family's samples.
pub struct Family<'a> {
    text: &'a mut Text,
    name: &'static str,
    kind: Kind,
    help: &'static str,
    started: bool,
}

impl Family<'_> {
    /// A sample with an exact integer value (counters of bytes exceed f64's 2^53).
    pub fn int(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        self.line(labels);
        let _ = writeln!(self.text.out, " {value}");
        self
    }

    pub fn float(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.line(labels);
        let out = &mut self.text.out;
        if value.is_nan() {
            out.push_str(" NaN\n");
        } else if value.is_infinite() {
            out.push_str(if value > 0.0 { " +Inf\n" } else { " -Inf\n" });
        } else {
            let _ = writeln!(out, " {value}");
        }
        self
    }

    /// Header (once), then the name and labels of a sample.
    fn line(&mut self, labels: &[(&str, &str)]) {
        let out = &mut self.text.out;
        if !self.started {
            self.started = true;
            self.text.names.push(self.name);
            let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
            let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.as_str());
        }
        out.push_str(self.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape_label(v));
            }
            out.push('}');
        }
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value may hold anything (a mount point with a quote in it): backslash, double
/// quote and newline are escaped.
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes() {
        let mut t = Text::default();
        t.family("node_load1", Kind::Gauge, "1m load average.")
            .float(&[], 0.5);
        t.family(
            "node_network_receive_bytes_total",
            Kind::Counter,
            "Network device statistic receive_bytes.",
        )
        .int(&[("device", "eth0")], u64::MAX)
        .int(&[("device", "wlan0")], 0);
        t.family("never_sampled", Kind::Gauge, "leaves no trace");
        t.family("odd", Kind::Gauge, "back\\slash\nnewline")
            .float(&[("a", "q\"uo\\te\nd"), ("b", "")], f64::NAN)
            .float(&[], f64::INFINITY)
            .float(&[], f64::NEG_INFINITY)
            .float(&[], 1e-3);
        assert_eq!(
            t.finish(),
            "# HELP node_load1 1m load average.\n\
             # TYPE node_load1 gauge\n\
             node_load1 0.5\n\
             # HELP node_network_receive_bytes_total Network device statistic receive_bytes.\n\
             # TYPE node_network_receive_bytes_total counter\n\
             node_network_receive_bytes_total{device=\"eth0\"} 18446744073709551615\n\
             node_network_receive_bytes_total{device=\"wlan0\"} 0\n\
             # HELP odd back\\\\slash\\nnewline\n\
             # TYPE odd gauge\n\
             odd{a=\"q\\\"uo\\\\te\\nd\",b=\"\"} NaN\n\
             odd +Inf\n\
             odd -Inf\n\
             odd 0.001\n"
        );
    }
}
