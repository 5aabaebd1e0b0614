//! `sco_models::replay`: byte-identical output for the same input; bad input names file, line
//! and column. Fixtures are generated here, not copied from ../shared/data.

use std::fmt::Write as _;
use std::path::Path;

use sco_models::replay::{run, ReplayError, ReplayOptions};

fn write_multivariate(path: &Path, rows: usize, seed: u64) {
    let mut s = String::new();
    let mut x = seed;
    for r in 0..rows {
        let mut fields = Vec::new();
        for m in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x >> 40) as f64 / (1u64 << 24) as f64;
            let level = if m == 1 && (300..330).contains(&r) {
                90.0
            } else {
                10.0 * (m + 1) as f64
            };
            fields.push(format!("{:.4}", level + noise));
        }
        let _ = writeln!(s, "{}", fields.join(","));
    }
    std::fs::write(path, s).expect("fixture");
}

fn write_nab(path: &Path, rows: usize) {
    let mut s = String::from("timestamp,value\n");
    for r in 0..rows {
        let v = if (200..215).contains(&r) {
            500.0
        } else {
            100.0 + (r % 7) as f64
        };
        let _ = writeln!(s, "2014-04-01 {:02}:{:02}:00,{v}", r / 60 % 24, r % 60);
    }
    std::fs::write(path, s).expect("fixture");
}

#[test]
fn same_input_gives_byte_identical_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (train, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    write_multivariate(&train, 400, 1);
    write_multivariate(&test, 400, 2);
    let nab = dir.path().join("nab.csv");
    write_nab(&nab, 400);
    // (input, warmup, header)
    let cases = [
        (
            &test,
            Some(&train),
            "row,anomaly_score,alarm,top_metric,opened",
        ),
        (&nab, None, "timestamp,value,anomaly_score,alarm,opened"),
    ];
    for (i, (input, warmup, header)) in cases.iter().enumerate() {
        let outs: Vec<Vec<u8>> = (0..2)
            .map(|k| {
                let output = dir.path().join(format!("out{i}_{k}.csv"));
                let summary = run(&ReplayOptions {
                    input: input.to_path_buf(),
                    warmup: warmup.map(|w| w.to_path_buf()),
                    output: output.clone(),
                    ..ReplayOptions::default()
                })
                .expect("replay");
                assert_eq!(summary.input_rows, 400);
                std::fs::read(output).expect("output")
            })
            .collect();
        assert_eq!(outs[0], outs[1], "case {i}: outputs differ");
        let text = String::from_utf8(outs[0].clone()).expect("utf8");
        assert_eq!(text.lines().next(), Some(*header));
        assert_eq!(text.lines().count(), 401);
    }
}

#[test]
fn malformed_csv_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (content, line, column)
    let cases = [
        ("1,2,3\n4,5,6\n7,oops,9\n", 3, 2),
        ("1,2,3\n4,5\n", 2, 3),
        (
            "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,NaN\n",
            3,
            2,
        ),
    ];
    for (i, (content, line, column)) in cases.iter().enumerate() {
        let input = dir.path().join(format!("bad{i}.csv"));
        std::fs::write(&input, content).expect("fixture");
        let err = run(&ReplayOptions {
            input: input.clone(),
            output: dir.path().join("out.csv"),
            ..ReplayOptions::default()
        })
        .expect_err("malformed input");
        assert!(
            matches!(err, ReplayError::Parse { line: l, column: c, .. } if l == *line && c == *column),
            "case {i}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&format!("bad{i}.csv")), "{msg}");
        assert!(
            msg.contains(&format!("line {line}, column {column}")),
            "{msg}"
        );
    }
}

#[test]
fn smoothing_options_reach_the_detector_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (train, test) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    write_multivariate(&train, 400, 1);
    write_multivariate(&test, 400, 2);
    let opts = |smooth_ticks, score_quantile, out: &str| ReplayOptions {
        input: test.clone(),
        warmup: Some(train.clone()),
        output: dir.path().join(out),
        smooth_ticks,
        score_quantile,
        ..ReplayOptions::default()
    };
    let default = run(&opts(None, None, "default.csv")).expect("default");
    assert_eq!(default.config.smooth_ticks, 12);
    assert_eq!(default.config.score_quantile, Some(0.98));
    let raw = run(&opts(Some(1), Some(None), "raw.csv")).expect("no smoothing");
    assert_eq!(raw.config.smooth_ticks, 1);
    assert_eq!(raw.config.score_quantile, None);
    assert_eq!(raw.score_threshold, Some(1.0));
    let tight = run(&opts(Some(3), Some(Some(0.9)), "tight.csv")).expect("custom");
    assert_eq!(
        (tight.config.smooth_ticks, tight.config.score_quantile),
        (3, Some(0.9))
    );
    for (smooth, quantile, what) in [
        (Some(0), None, "smooth-ticks"),
        (None, Some(Some(1.0)), "score-quantile"),
        (None, Some(Some(f64::NAN)), "score-quantile"),
    ] {
        let err = run(&opts(smooth, quantile, "bad.csv")).expect_err(what);
        assert!(
            matches!(&err, ReplayError::InvalidOption(m) if m.contains(what)),
            "{err}"
        );
    }
}
