//! Text for people: tables with aligned columns, a line diff, and cells made safe to
//! print (server data never reaches the terminal with control characters in it).

use std::fmt::Write as _;

/// A table: a header row and rows of cells, rendered with columns aligned and two spaces
/// between them.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra ones are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.header.len())
            .map(|c| clean(c.as_ref()))
            .collect();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < columns {
                    line.push_str(&" ".repeat(widths[i] - width(cell) + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let _ = writeln!(out, "{k}:{}{}", " ".repeat(w - width(k) + 1), clean(v));
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// One line with control characters (escape sequences, newlines, tabs) replaced by
/// spaces or `?`, so that server data cannot move the cursor or break a row.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

/// A cell from a JSON value: strings as they are, `null` as empty, others as JSON.
pub fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `role=web,env=prod` from a JSON object of labels.
pub fn labels(v: &serde_json::Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", cell(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Same,
    Removed,
    Added,
}

/// The line diff of `old` and `new` (a longest common subsequence): every line of both,
/// in order, marked as kept, removed or added.
pub fn diff_lines<'a>(old: &'a str, new: &'a str) -> Vec<(Change, &'a str)> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Policy documents are small; past this the quadratic table is not worth it and
    // the whole document is shown as replaced.
    const MAX_CELLS: usize = 4_000_000;
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        return a
            .iter()
            .map(|l| (Change::Removed, *l))
            .chain(b.iter().map(|l| (Change::Added, *l)))
            .collect();
    }
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push((Change::Same, a[i]));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push((Change::Removed, a[i]));
            i += 1;
        } else {
            out.push((Change::Added, b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| (Change::Removed, *l)));
    out.extend(b[j..].iter().map(|l| (Change::Added, *l)));
    out
}

/// The diff as text: `-` and `+` lines with `context` unchanged lines around each change,
/// longer unchanged runs folded into one `@@ n unchanged lines @@` line. Empty when
/// nothing changed.
pub fn unified(old: &str, new: &str, context: usize) -> String {
    let lines = diff_lines(old, new);
    if lines.iter().all(|(c, _)| *c == Change::Same) {
        return String::new();
    }
    let changed: Vec<bool> = lines.iter().map(|(c, _)| *c != Change::Same).collect();
    let near_change = |i: usize| {
        let lo = i.saturating_sub(context);
        let hi = (i + context + 1).min(lines.len());
        changed[lo..hi].iter().any(|c| *c)
    };
    let mut out = String::new();
    let mut folded = 0;
    for (i, (change, line)) in lines.iter().enumerate() {
        if *change == Change::Same && !near_change(i) {
            folded += 1;
            continue;
        }
        if folded > 0 {
            let _ = writeln!(out, "@@ {folded} unchanged lines @@");
            folded = 0;
        }
        let mark = match change {
            Change::Same => ' ',
            Change::Removed => '-',
            Change::Added => '+',
        };
        let _ = writeln!(out, "{mark} {}", clean(line));
    }
    if folded > 0 {
        let _ = writeln!(out, "@@ {folded} unchanged lines @@");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let mut t = Table::new(&["ID", "STATE", "REASON"]);
        t.row(["a-1", "proposed", ""]);
        t.row(["host-long-id", "ok", "a reason"]);
        assert_eq!(
            t.render(),
            "ID            STATE     REASON\n\
             a-1           proposed\n\
             host-long-id  ok        a reason\n"
        );
    }

    #[test]
    fn rows_are_padded_cut_and_cleaned() {
        let mut t = Table::new(&["A", "B"]);
        t.row(["x"]);
        t.row(["1", "2", "3"]);
        t.row(["é\u{1b}[31m", "two\nlines"]);
        assert_eq!(t.render(), "A       B\nx\n1       2\né?[31m  two lines\n");
        assert!(!t.is_empty());
        assert!(Table::new(&["A"]).is_empty());
    }

    #[test]
    fn fields_align_values() {
        assert_eq!(
            fields(&[("id", "h-1".into()), ("hostname", "web\t1".into())]),
            "id:       h-1\nhostname: web 1\n"
        );
    }

    #[test]
    fn json_cells_and_labels() {
        let v =
            serde_json::json!({"s": "x", "n": 3, "null": null, "l": {"role": "web", "env": "t"}});
        assert_eq!(cell(&v["s"]), "x");
        assert_eq!(cell(&v["n"]), "3");
        assert_eq!(cell(&v["null"]), "");
        assert_eq!(labels(&v["l"]), "env=t,role=web");
        assert_eq!(labels(&v["missing"]), "");
    }

    #[test]
    fn diff_marks_removed_and_added_lines() {
        use Change::*;
        let old = "a\nb\nc\nd\n";
        let new = "a\nc\nd2\nd\ne\n";
        assert_eq!(
            diff_lines(old, new),
            vec![
                (Same, "a"),
                (Removed, "b"),
                (Same, "c"),
                (Added, "d2"),
                (Same, "d"),
                (Added, "e"),
            ]
        );
        assert_eq!(diff_lines("", "x"), vec![(Added, "x")]);
        assert_eq!(diff_lines("x", ""), vec![(Removed, "x")]);
        assert!(diff_lines("", "").is_empty());
    }

    #[test]
    fn unified_folds_unchanged_runs_and_is_empty_without_changes() {
        let old: String = (1..=10).map(|i| format!("{i}\n")).collect();
        let new = old.replace("5\n", "five\n");
        assert_eq!(
            unified(&old, &new, 1),
            "@@ 3 unchanged lines @@\n  4\n- 5\n+ five\n  6\n@@ 4 unchanged lines @@\n"
        );
        assert_eq!(unified(&old, &old, 3), "");
        assert_eq!(unified("", "a\nb\n", 3), "+ a\n+ b\n");
    }
}
