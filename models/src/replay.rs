//! Offline replay: runs the exact [`Detector`] the agent runs live over a CSV file, one row per
//! tick (`sco-agent replay`).
//!
//! Input formats (detected from the first line):
//! - NAB style: a header whose first column is `timestamp` (`timestamp,value`; more value
//!   columns are allowed and named by the header). Timestamps are `YYYY-MM-DD HH:MM:SS[.fff]`
//!   (UTC; a `T` separator also works) or integer epoch seconds / milliseconds.
//! - Headerless multivariate: one column per metric, named `m1..mN`.
//!
//! An empty field is a missing value (a counter gap): the metric skips that tick.
//!
//! Output: for a timestamped single-value input `timestamp,value,anomaly_score,alarm,opened`;
//! otherwise `row,anomaly_score,alarm,top_metric,opened` (`row` counts the input's data rows
//! from 0). `anomaly_score` is the detector's ranking score
//! ([`Tick::rank`](crate::detect::Tick::rank): how anomalous, at several time scales), not the
//! alarm decision's smoothed ratio. Scores are printed with 6 decimals, `alarm` is 0/1 (1 while
//! an event is open and not held after recovering, see `DetectorConfig::merge_ticks`), `opened`
//! is 1 at the tick an event opens (what an operator is told of). With `--warmup`, the
//! warm-up file's rows feed the detector first and are not written.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::detect::{Detector, DetectorConfig, EventKind};
use crate::{Model, ModelError};

/// What to replay and how. `None` options take the defaults of
/// [`DetectorConfig::five_minute`] (the figures in the model card use these).
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub input: PathBuf,
    /// Rows fed first (calibration), not written to the output.
    pub warmup: Option<PathBuf>,
    pub output: PathBuf,
    /// Model manifest; `None` = the shipped model embedded in the binary.
    pub model: Option<PathBuf>,
    /// Default: all rows of `warmup`, or without it 15% of the input, at least 16 rows and at
    /// most 750 (NAB's probation period).
    pub warmup_ticks: Option<usize>,
    pub min_duration: Option<usize>,
    pub quantile: Option<f64>,
    pub sensitivity: Option<f64>,
    /// Ticks the host ratio is averaged over (replay profile: 12, one hour of 5-minute rows;
    /// 1 turns smoothing off).
    pub smooth_ticks: Option<usize>,
    /// Quantile of the smoothed warm-up ratios the alarm threshold sits at (replay profile:
    /// 0.98); `Some(None)` keeps the component thresholds alone (`r = c`).
    pub score_quantile: Option<Option<f64>>,
    /// Disables the host-PCA component (window model only).
    pub no_host_pca: bool,
    /// Progress on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Development: writes the detector's combined ratio before smoothing, `i,<ratio>` for
    /// every input row, then `w,<ratio>` for every warm-up tick (`NaN` = nothing scored), so
    /// that post-processing of the evidence can be studied offline (`models/eval/scales.py`).
    pub ratios_out: Option<PathBuf>,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplaySummary {
    pub input_rows: usize,
    pub warmup_rows: usize,
    pub metrics: usize,
    /// Output rows with `alarm = 1`.
    pub alarm_rows: usize,
    /// Events opened while replaying the input.
    pub events: usize,
    /// Calibrated thresholds `(window model, host PCA)` at the end of the replay.
    pub thresholds: Option<(f64, Option<f64>)>,
    /// Calibrated threshold of the smoothed combined ratio (1.0 without `score_quantile`).
    pub score_threshold: Option<f64>,
    pub config: DetectorConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}, column {column}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{path}: no data rows")]
    Empty { path: PathBuf },
    #[error("warm-up file {warmup} does not match input {input}: {reason}")]
    WarmupMismatch {
        warmup: PathBuf,
        input: PathBuf,
        reason: String,
    },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A parsed CSV file.
#[derive(Debug, Clone, PartialEq)]
struct Table {
    /// Metric names (value columns).
    metrics: Vec<String>,
    /// Timestamp column present (first column).
    timestamped: bool,
    rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    /// Original timestamp text (timestamped files only).
    ts_text: String,
    ts_ms: Option<i64>,
    /// Original value text of the first value column (echoed in NAB output).
    value_text: String,
    /// NaN = missing.
    values: Vec<f64>,
}

fn parse_file(path: &Path) -> Result<Table, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_table(path, &text)
}

fn parse_table(path: &Path, text: &str) -> Result<Table, ReplayError> {
    let err = |line: usize, column: usize, reason: String| ReplayError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((first_no, first)) = lines.next() else {
        return Err(ReplayError::Empty {
            path: path.to_path_buf(),
        });
    };
    let first_fields: Vec<&str> = first.split(',').map(str::trim).collect();
    let numeric = first_fields.iter().all(|f| f.parse::<f64>().is_ok());
    let (metrics, timestamped, pending) = if numeric {
        let names: Vec<String> = (1..=first_fields.len()).map(|i| format!("m{i}")).collect();
        (names, false, Some((first_no, first)))
    } else if first_fields[0].eq_ignore_ascii_case("timestamp") {
        if first_fields.len() < 2 {
            return Err(err(
                first_no,
                2,
                "header has a timestamp but no value column".into(),
            ));
        }
        let names = first_fields[1..].iter().map(|s| s.to_string()).collect();
        (names, true, None)
    } else {
        if let Some(j) = first_fields.iter().position(|f| f.is_empty()) {
            return Err(err(first_no, j + 1, "empty column name in header".into()));
        }
        let names = first_fields.iter().map(|s| s.to_string()).collect();
        (names, false, None)
    };
    let width = metrics.len() + usize::from(timestamped);
    let mut rows = Vec::new();
    for (line_no, line) in pending.into_iter().chain(lines) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != width {
            return Err(err(
                line_no,
                fields.len().min(width) + 1,
                format!("expected {width} columns, found {}", fields.len()),
            ));
        }
        let mut row = Row {
            ts_text: String::new(),
            ts_ms: None,
            value_text: String::new(),
            values: Vec::with_capacity(metrics.len()),
        };
        let mut vals = fields.iter().enumerate();
        if timestamped {
            if let Some((_, ts)) = vals.next() {
                let ts = ts.trim();
                row.ts_ms = Some(parse_timestamp(ts).ok_or_else(|| {
                    err(
                        line_no,
                        1,
                        format!("cannot parse timestamp \"{ts}\" (expected YYYY-MM-DD HH:MM:SS or epoch)"),
                    )
                })?);
                row.ts_text = ts.to_string();
            }
        }
        for (j, field) in vals {
            let f = field.trim();
            if row.value_text.is_empty() && row.values.is_empty() {
                row.value_text = f.to_string();
            }
            if f.is_empty() {
                row.values.push(f64::NAN);
                continue;
            }
            match f.parse::<f64>() {
                Ok(v) if v.is_finite() => row.values.push(v),
                Ok(_) => {
                    return Err(err(
                        line_no,
                        j + 1,
                        format!("value \"{f}\" is not a finite number"),
                    ))
                }
                Err(_) => {
                    return Err(err(
                        line_no,
                        j + 1,
                        format!("cannot parse \"{f}\" as a number"),
                    ))
                }
            }
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(ReplayError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Table {
        metrics,
        timestamped,
        rows,
    })
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.fff]` (UTC) or integer epoch seconds (< 1e11) / milliseconds.
fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(if n.abs() < 100_000_000_000 {
            n * 1000
        } else {
            n
        });
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut t = time.split(':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let sec_text = t.next().unwrap_or("0");
    if t.next().is_some() || !(0..24).contains(&hour) || !(0..60).contains(&minute) {
        return None;
    }
    let (sec, frac) = sec_text.split_once('.').unwrap_or((sec_text, ""));
    let sec: i64 = sec.parse().ok()?;
    if !(0..=60).contains(&sec) {
        return None;
    }
    let ms: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        digits.parse().ok()?
    };
    // days from civil (Howard Hinnant's algorithm)
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + sec * 1000 + ms)
}

/// Runs the detector over `opts.input` (after `opts.warmup`) and writes `opts.output`.
pub fn run(opts: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    run_with(opts, |_| {})
}

/// [`run`] with a last change to the detector configuration after the options are applied
/// (development flags of `examples/replay.rs`).
pub fn run_with(
    opts: &ReplayOptions,
    tweak: impl FnOnce(&mut DetectorConfig),
) -> Result<ReplaySummary, ReplayError> {
    let model = match &opts.model {
        Some(path) => Model::load(path)?,
        None => Model::shipped()?,
    };
    let input = parse_file(&opts.input)?;
    let warm = opts.warmup.as_deref().map(parse_file).transpose()?;
    if let (Some(w), Some(path)) = (&warm, &opts.warmup) {
        let mismatch = |reason: String| ReplayError::WarmupMismatch {
            warmup: path.clone(),
            input: opts.input.clone(),
            reason,
        };
        if w.metrics != input.metrics {
            return Err(mismatch(format!(
                "columns {:?} vs {:?}",
                w.metrics, input.metrics
            )));
        }
        if w.timestamped != input.timestamped {
            return Err(mismatch(
                "one file has a timestamp column, the other not".into(),
            ));
        }
    }
    let warm_rows = warm.as_ref().map_or(0, |w| w.rows.len());
    let warmup_ticks = match (opts.warmup_ticks, warm_rows) {
        (Some(n), _) => n,
        // NAB's probation period: 15 % of the file, at most 750 rows
        (None, 0) => (input.rows.len() * 15 / 100).clamp(16, 750),
        (None, n) => n,
    };
    let mut config = DetectorConfig::five_minute(warmup_ticks);
    if let Some(d) = opts.min_duration {
        config.min_duration_ticks = d;
    }
    if let Some(q) = opts.quantile {
        if !(0.0..=1.0).contains(&q) {
            return Err(ReplayError::InvalidOption(format!(
                "quantile {q} is not in [0, 1]"
            )));
        }
        config.threshold_quantile = q;
    }
    if let Some(s) = opts.sensitivity {
        if !(s.is_finite() && s > 0.0) {
            return Err(ReplayError::InvalidOption(format!(
                "sensitivity {s} must be a positive number"
            )));
        }
        config.sensitivity = s;
    }
    if let Some(n) = opts.smooth_ticks {
        if n == 0 {
            return Err(ReplayError::InvalidOption(
                "smooth-ticks must be at least 1 (1 = no smoothing)".into(),
            ));
        }
        config.smooth_ticks = n;
    }
    if let Some(q) = opts.score_quantile {
        if let Some(q) = q.filter(|q| !(q.is_finite() && *q > 0.0 && *q < 1.0)) {
            return Err(ReplayError::InvalidOption(format!(
                "score-quantile {q} is not in (0, 1)"
            )));
        }
        config.score_quantile = q;
    }
    if opts.smooth_ticks.is_some() || opts.score_quantile.is_some() {
        // the flags describe the whole alarm: one mean against one fixed quantile, no other
        // scales
        config.alarm_quantile_scales.clear();
        config.alarm_scales.clear();
    }
    if opts.no_host_pca {
        config.host_pca = false;
    }
    tweak(&mut config);

    let mut detector = Detector::new(Arc::new(model), config.clone());
    let names: Vec<&str> = input.metrics.iter().map(String::as_str).collect();
    let mut values: Vec<(&str, f64)> = Vec::with_capacity(names.len());
    let step_ms = 1000i64;
    let mut tick_no = 0i64;
    let mut feed = |detector: &mut Detector, row: &Row| {
        tick_no += 1;
        values.clear();
        values.extend(
            names
                .iter()
                .zip(&row.values)
                .filter(|(_, v)| !v.is_nan())
                .map(|(n, v)| (*n, *v)),
        );
        detector.tick(row.ts_ms.unwrap_or(tick_no * step_ms), &values)
    };
    if let Some(w) = &warm {
        for row in &w.rows {
            feed(&mut detector, row)?;
        }
    }

    let nab = input.timestamped && input.metrics.len() == 1;
    let mut out = String::with_capacity(input.rows.len() * 48);
    if nab {
        out.push_str("timestamp,value,anomaly_score,alarm,opened\n");
    } else {
        out.push_str("row,anomaly_score,alarm,top_metric,opened\n");
    }
    let show = opts.progress && std::io::stderr().is_terminal();
    let total = input.rows.len();
    let mut last_pct = usize::MAX;
    let (mut alarm_rows, mut events) = (0usize, 0usize);
    let mut ratios = String::new();
    for (i, row) in input.rows.iter().enumerate() {
        let tick = feed(&mut detector, row)?;
        if opts.ratios_out.is_some() {
            let _ = writeln!(ratios, "i,{}", detector.combined_ratio());
        }
        if tick.alarm {
            alarm_rows += 1;
        }
        let opened = tick.changes.iter().any(|c| c.kind == EventKind::Opened);
        events += usize::from(opened);
        let opened = u8::from(opened);
        let alarm = u8::from(tick.alarm);
        // writing to a String cannot fail
        let _ = if nab {
            writeln!(
                out,
                "{},{},{:.6},{alarm},{opened}",
                row.ts_text, row.value_text, tick.rank
            )
        } else {
            writeln!(
                out,
                "{i},{:.6},{alarm},{},{opened}",
                tick.rank,
                tick.top_metric.as_deref().unwrap_or("")
            )
        };
        if show {
            let pct = (i + 1) * 100 / total.max(1);
            if pct != last_pct {
                last_pct = pct;
                let bar = "#".repeat(pct / 4);
                eprint!("\rreplay [{bar:<25}] {pct:3}% ({}/{total} rows)", i + 1);
            }
        }
    }
    if show {
        eprintln!();
    }
    let write_err = |source| ReplayError::Write {
        path: opts.output.clone(),
        source,
    };
    let mut file = std::fs::File::create(&opts.output).map_err(write_err)?;
    file.write_all(out.as_bytes()).map_err(write_err)?;
    file.flush().map_err(write_err)?;
    if let Some(path) = &opts.ratios_out {
        for r in detector.warmup_ratios() {
            let _ = writeln!(ratios, "w,{r}");
        }
        std::fs::write(path, ratios).map_err(|source| ReplayError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(ReplaySummary {
        input_rows: total,
        warmup_rows: warm_rows,
        metrics: input.metrics.len(),
        alarm_rows,
        events,
        thresholds: detector.thresholds(),
        score_threshold: detector.score_threshold(),
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01 00:00:00", Some(0)),
            ("2014-04-01 00:05:00", Some(1_396_310_700_000)),
            ("2000-02-29T12:00:00.5", Some(951_825_600_500)),
            ("1396310700", Some(1_396_310_700_000)),
            ("2014-13-01 00:00:00", None),
            ("yesterday", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timestamp(text), *want, "{text}");
        }
    }

    #[test]
    fn formats_are_detected() {
        let p = Path::new("x.csv");
        let nab = parse_table(p, "timestamp,value\n2014-04-01 00:00:00,1.5\n").expect("nab");
        assert!(nab.timestamped);
        assert_eq!(nab.metrics, vec!["value"]);
        let multi = parse_table(p, "1,2,3\n4,,6\n").expect("multi");
        assert!(!multi.timestamped);
        assert_eq!(multi.metrics, vec!["m1", "m2", "m3"]);
        assert_eq!(multi.rows.len(), 2);
        assert!(multi.rows[1].values[1].is_nan());
    }

    #[test]
    fn bad_input_names_line_and_column() {
        let p = Path::new("bad.csv");
        let cases: &[(&str, usize, usize)] = &[
            ("1,2,3\n4,x,6\n", 2, 2),
            ("1,2,3\n4,5\n", 2, 3),
            (
                "timestamp,value\n2014-04-01 00:00:00,1\nnot a time,2\n",
                3,
                1,
            ),
            ("1,2\n\n3,inf\n", 3, 2),
        ];
        for (text, line, column) in cases {
            match parse_table(p, text) {
                Err(ReplayError::Parse {
                    line: l, column: c, ..
                }) => assert_eq!((l, c), (*line, *column), "{text:?}"),
                other => panic!("{text:?}: expected a parse error, got {other:?}"),
            }
        }
    }
}
