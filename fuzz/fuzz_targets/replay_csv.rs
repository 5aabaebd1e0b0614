//! The replay CSV reader. Its parser (`parse_table`) is private, so this
//! drives the public `sco_models::replay::run` on a temporary file: any
//! input must give `Ok` or a `ReplayError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sco_models::replay::{run, ReplayOptions};

fuzz_target!(|data: &[u8]| {
    // Large inputs only make the detector slower, not the parser deeper.
    if data.len() > 8 * 1024 {
        return;
    }
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let input = dir.path().join("in.csv");
    if std::fs::write(&input, data).is_err() {
        return;
    }
    let opts = ReplayOptions {
        input,
        output: dir.path().join("out.csv"),
        ..Default::default()
    };
    let _ = run(&opts);
});
