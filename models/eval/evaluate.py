#!/usr/bin/env python3
"""End-to-end evaluation of the agent's detector through the real `sco-agent replay` binary.

For every host of the chosen datasets (default: ASD omi-1..12 and JumpStarter Dataset2, all
services) from ../shared/data:

- detector: `sco-agent replay --warmup train/X --input test/X` (replay defaults = the
  DetectorConfig::five_minute profile the model card reports), plus a window-model-only ablation
  (`--no-host-pca`);
- baselines through the same metric code: rolling z-score (previous 288 ticks, max over metrics)
  and per-host PCA reconstruction error (standardised on the host's train half, 90% variance),
  each thresholded at a quantile of its own scores on the train half (never test labels);
- false alarms on the train halves, out of sample: warm up / fit on the first half of the train
  half, replay / score the second half (assumed normal), count alarm onsets per day.

Metrics: point-wise precision / recall / F1 without point adjustment (pooled over the hosts of a
dataset), AUPRC of the threshold-relative scores (pooled), event recall, median detection delay
(ticks of 5 minutes from segment start to first alarm), alarm onsets per host-day on the test half
outside labelled segments and on the train halves.

Usage (from the project root, after
`cargo build --release -p sco-agent`):

    python models/eval/evaluate.py --binary target/release/sco-agent

It prints a markdown table, writes it into models/shipped/MODEL_CARD.md (between the
`replay-eval` markers) and writes the figures to models/eval/results.json. Python 3.11 + numpy.
`--dev` evaluates jumpstarter/Dataset3 instead (the development set used to choose the replay
profile) and writes nothing unless --out-json is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TICKS_PER_DAY = 288  # 5-minute steps
ROLLING_Z_WINDOW = 288
PCA_VAR = 0.90
REL_FLOOR, ABS_FLOOR = 0.01, 1e-6
BASELINE_QUANTILES = (0.99, 0.995)
MARK_START = "<!-- replay-eval:start -->"
MARK_END = "<!-- replay-eval:end -->"


# ------------------------------------------------------------------------------------ data


def load(path: Path) -> np.ndarray:
    a = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if not np.isfinite(a).all():
        raise ValueError(f"non-finite values in {path}")
    return a


def hosts_of(data: Path, dataset: str) -> list[dict]:
    if dataset == "asd":
        base, names, ext = data / "asd", [f"omi-{i}" for i in range(1, 13)], ".txt"
    else:
        base = data / dataset
        names = sorted((p.stem for p in (base / "train").glob("*.csv")), key=lambda s: int(s[7:]))
        ext = ".csv"
    return [
        {
            "dataset": dataset,
            "name": n,
            "train": base / "train" / f"{n}{ext}",
            "test": base / "test" / f"{n}{ext}",
            "label": base / "test_label" / f"{n}{ext}",
        }
        for n in names
    ]


# -------------------------------------------------------------------------------- scorers


def replay(binary: Path, warmup: Path, inp: Path, extra: list[str]) -> tuple[np.ndarray, np.ndarray]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.csv"
        cmd = [str(binary), "replay", "--warmup", str(warmup), "--input", str(inp), "--output", str(out), *extra]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
        rows = out.read_text().splitlines()[1:]
    score = np.array([float(line.split(",")[1]) for line in rows])
    alarm = np.array([line.split(",")[2] == "1" for line in rows])
    return score, alarm


def rolling_z(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([train, test])
    n = ROLLING_Z_WINDOW
    c1 = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    c2 = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x * x, axis=0)])
    t = np.arange(n, x.shape[0])
    mean = (c1[t] - c1[t - n]) / n
    var = np.maximum((c2[t] - c2[t - n]) / n - mean * mean, 0.0)
    std = np.maximum.reduce([np.sqrt(var), REL_FLOOR * np.abs(mean), np.full_like(mean, ABS_FLOOR)])
    z = (np.abs(x[t] - mean) / std).max(axis=1)
    k = train.shape[0] - n
    return z[:k], z[k:]


def pca_spe(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = train.mean(axis=0)
    sd = np.maximum.reduce([train.std(axis=0), REL_FLOOR * np.abs(mu), np.full_like(mu, ABS_FLOOR)])
    ztr, zte = (train - mu) / sd, (test - mu) / sd
    vals, vecs = np.linalg.eigh(np.cov(ztr, rowvar=False, bias=True))
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    k = int(np.searchsorted(np.cumsum(vals) / vals.sum(), PCA_VAR) + 1)
    p = vecs[:, :k]

    def spe(z: np.ndarray) -> np.ndarray:
        c = z - ztr.mean(axis=0)
        r = c - (c @ p) @ p.T
        return (r * r).sum(axis=1)

    return spe(ztr), spe(zte)


# -------------------------------------------------------------------------------- metrics


def segments(label: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], label.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def onsets(pred: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.diff(np.concatenate([[False], pred]).astype(np.int8)) == 1)


def average_precision(label: np.ndarray, score: np.ndarray) -> float:
    """sklearn's average_precision_score (step-wise, ties grouped)."""
    order = np.argsort(-score, kind="mergesort")
    s, y = score[order], label[order].astype(np.float64)
    distinct = np.flatnonzero(np.diff(s)) if s.size > 1 else np.array([], dtype=int)
    idx = np.concatenate([distinct, [y.size - 1]])
    tps = np.cumsum(y)[idx]
    fps = (idx + 1) - tps
    if tps[-1] == 0:
        return 0.0
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    prev = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - prev) * precision))


def summarise(results: list[dict]) -> dict:
    pred = np.concatenate([r["pred"] for r in results])
    label = np.concatenate([r["label"] for r in results])
    score = np.concatenate([r["score"] for r in results])
    tp = float(np.sum(pred & (label == 1)))
    fp = float(np.sum(pred & (label == 0)))
    fn = float(np.sum(~pred & (label == 1)))
    p = tp / (tp + fp) if tp + fp else 0.0
    rc = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
    n_ev = n_det = 0
    delays, fa_test, test_days, fa_train, train_days = [], 0, 0.0, 0, 0.0
    for r in results:
        lab = r["label"]
        for s, e in segments(lab):
            n_ev += 1
            hit = np.flatnonzero(r["pred"][s:e])
            if hit.size:
                n_det += 1
                delays.append(int(hit[0]))
        fa_test += int(sum(1 for o in onsets(r["pred"]) if lab[o] == 0))
        test_days += lab.size / TICKS_PER_DAY
        fa_train += int(onsets(r["train_pred"]).size)
        train_days += r["train_pred"].size / TICKS_PER_DAY
    return {
        "precision": p,
        "recall": rc,
        "f1": f1,
        "auprc": average_precision(label, score),
        "event_recall": n_det / n_ev if n_ev else 0.0,
        "events": n_ev,
        "median_delay_ticks": float(np.median(delays)) if delays else None,
        "alarm_rate": float(pred.mean()),
        "false_alarms_per_day_test": fa_test / test_days,
        "false_alarms_per_day_train": fa_train / train_days,
        "train_alarm_rate": float(np.mean(np.concatenate([r["train_pred"] for r in results]))),
        "anomaly_ratio": float(label.mean()),
        "hosts": len(results),
    }


# ------------------------------------------------------------------------------------ run


def evaluate_host(h: dict, binary: Path, extra: list[str], tmp: Path) -> dict[str, dict]:
    train, test = load(h["train"]), load(h["test"])
    label = np.loadtxt(h["label"]).astype(np.int8)
    half = train.shape[0] // 2
    stem = f"{h['dataset'].replace('/', '_')}_{h['name']}"
    first, second = tmp / f"{stem}_a.csv", tmp / f"{stem}_b.csv"
    np.savetxt(first, train[:half], delimiter=",", fmt="%.10g")
    np.savetxt(second, train[half:], delimiter=",", fmt="%.10g")
    out: dict[str, dict] = {}
    for method, flags in [("sco-agent detector (shipped)", []), ("detector, window model only", ["--no-host-pca"])]:
        s, a = replay(binary, h["train"], h["test"], extra + flags)
        _, ta = replay(binary, first, second, extra + flags)
        out[method] = {"score": s, "pred": a, "label": label, "train_pred": ta}
    for name, fn in [("rolling z-score", rolling_z), ("plain PCA", pca_spe)]:
        tr, te = fn(train, test)
        tr_a, tr_b = fn(train[:half], train[half:])
        for q in BASELINE_QUANTILES:
            thr = max(float(np.quantile(tr, q)), 1e-12)
            thr_a = max(float(np.quantile(tr_a, q)), 1e-12)
            out[f"{name} (q={q})"] = {
                "score": te / thr,
                "pred": te > thr,
                "label": label,
                "train_pred": tr_b > thr_a,
            }
    return out


def fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def table(summary: dict) -> str:
    lines = [
        "| dataset | method | precision | recall | F1 | AUPRC | event recall | median delay | alarm rate | false alarms/day (test) | false alarms/day (train) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, methods in summary.items():
        for m, r in methods.items():
            delay = "n/a" if r["median_delay_ticks"] is None else f"{r['median_delay_ticks']:.1f}"
            lines.append(
                f"| {ds} | {m} | {fmt(r['precision'])} | {fmt(r['recall'])} | {fmt(r['f1'])} | {fmt(r['auprc'])} | "
                f"{fmt(r['event_recall'])} ({r['events']}) | {delay} | {fmt(r['alarm_rate'])} | "
                f"{r['false_alarms_per_day_test']:.2f} | {r['false_alarms_per_day_train']:.2f} |"
            )
    return "\n".join(lines)


def verdict(summary: dict) -> str:
    out = []
    shipped = "sco-agent detector (shipped)"
    for ds, methods in summary.items():
        me = methods[shipped]
        base = {k: v for k, v in methods.items() if k.startswith(("rolling", "plain"))}
        best_f1 = max(base, key=lambda k: base[k]["f1"])
        best_ap = max(base, key=lambda k: base[k]["auprc"])
        ok_f1 = me["f1"] > base[best_f1]["f1"]
        ok_ap = me["auprc"] > base[best_ap]["auprc"]
        out.append(
            f"- {ds}: detector F1 {fmt(me['f1'])} vs best baseline {best_f1} {fmt(base[best_f1]['f1'])} "
            f"({'beats' if ok_f1 else 'does NOT beat'}); AUPRC {fmt(me['auprc'])} vs best baseline {best_ap} "
            f"{fmt(base[best_ap]['auprc'])} ({'beats' if ok_ap else 'does NOT beat'})."
        )
    return "\n".join(out)


def card_section(summary: dict, cmd: str, seconds: float, binary: Path) -> str:
    binary_note = "`sco-agent replay`" if binary.name == "sco-agent" else (
        f"`{binary.name}`, the stand-alone twin of `sco-agent replay` from `models/examples/replay.rs`: "
        "same flags, same `sco_models::replay::run`")
    return f"""{MARK_START}
## End-to-end evaluation through the agent's detector (`sco-agent replay`)

Generated by `models/eval/evaluate.py`; do not edit by hand. Command (from the project root):
`{cmd}` (run time {seconds:.0f} s on this machine, 2 cores).

Every host is replayed through the real binary ({binary_note}) with the replay defaults, which
are `DetectorConfig::five_minute` (see `models/README.md`): the whole train half is the warm-up
(`--warmup train/X`), then the test half is replayed tick by tick (`--input test/X`). The detector
is the same code the agent runs live: rolling robust per-host normalisation (one-week window,
recomputed hourly), the shipped window model (gated by the current value) and a host PCA fitted
on the warm-up over mean/std-normalised metrics (rolling mean and std of the same window);
thresholds = the 0.995 quantile of the host's own warm-up window-model scores and the 0.99
quantile of its warm-up PCA errors, host score = the larger of the two ratios, alarm from the
first tick over threshold, cleared after one tick under it. No test label is used anywhere.

Baselines run through the same metric code, each thresholded at the given quantile of its own
scores on the host's train half (both 0.99 and 0.995 are shown so the baselines are not
disadvantaged by the quantile choice): rolling z-score (previous 288 ticks, max over metrics)
and plain per-host PCA (standardised on the train half, 90% variance, squared reconstruction
error). The "window model only" row is the detector with `--no-host-pca` (ablation).

Point-wise precision / recall / F1 without point adjustment and AUPRC are pooled over the hosts of
a dataset (AUPRC of the threshold-relative scores). Event recall = labelled segments with at least
one alarm tick inside (number of segments in brackets); median delay = ticks (5 min) from segment
start to the first alarm tick, over detected segments. False alarms/day = alarm onsets per
host-day: on the test half, onsets outside labelled segments; on the train half, out of sample:
warm-up (or fit) on the first half of the train half, then replay the second half, assumed
normal, where every onset counts as false.

{table(summary)}

{verdict(summary)}

The profile (quantile 0.995, current-value gate, host PCA, one-week baseline) was chosen on
JumpStarter Dataset3 (development set, not in this table; `python models/eval/evaluate.py --dev`).
The host-PCA input normalisation (mean/std instead of median/MAD) and its quantile (0.99) were
chosen on the same development set only (variants and their figures: `models/README.md`),
before this table was computed; asd and Dataset2 test labels were not used to choose anything.
{MARK_END}"""


def write_card(section: str) -> None:
    card = ROOT / "models/shipped/MODEL_CARD.md"
    text = card.read_text()
    if MARK_START in text and MARK_END in text:
        a = text.index(MARK_START)
        b = text.index(MARK_END) + len(MARK_END)
        text = text[:a] + section + text[b:]
    else:
        placeholder_start = text.find("End-to-end agent figures")
        limits = text.find("## Limits")
        if placeholder_start < 0 or limits < 0:
            raise SystemExit(f"{card}: cannot find the section to replace")
        text = text[:placeholder_start] + section + "\n\n" + text[limits:]
    card.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=ROOT / "target/release/sco-agent")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data")
    ap.add_argument("--datasets", nargs="+", default=["asd", "jumpstarter/Dataset2"])
    ap.add_argument("--dev", action="store_true", help="evaluate jumpstarter/Dataset3 (dev set) only")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--replay-arg", action="append", default=[], help="extra replay flag (dev exploration)")
    ap.add_argument("--no-write", action="store_true", help="do not touch the model card / results.json")
    ap.add_argument("--out-json", type=Path, default=None)
    args = ap.parse_args()
    if not args.binary.exists():
        print(f"error: replay binary {args.binary} not found (build it or pass --binary)", file=sys.stderr)
        return 2
    datasets = ["jumpstarter/Dataset3"] if args.dev else args.datasets
    extra = [a for arg in args.replay_arg for a in arg.split()]
    t0 = time.time()
    summary: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for ds in datasets:
            hosts = hosts_of(args.data_dir, ds)
            per_host = list(pool.map(lambda h: evaluate_host(h, args.binary, extra, Path(tmp)), hosts))
            methods = per_host[0].keys()
            summary[ds] = {m: summarise([ph[m] for ph in per_host]) for m in methods}
            print(f"{ds}: {len(hosts)} hosts done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    seconds = time.time() - t0
    print(table(summary))
    print()
    print(verdict(summary))
    out_json = args.out_json
    if not args.dev and not args.no_write:
        out_json = out_json or ROOT / "models/eval/results.json"
        try:
            binary_shown = args.binary.resolve().relative_to(ROOT)
        except ValueError:
            binary_shown = args.binary
        cmd = f"python models/eval/evaluate.py --binary {binary_shown}"
        if extra:
            cmd += "".join(f" --replay-arg '{a}'" for a in args.replay_arg)
        write_card(card_section(summary, cmd, seconds, args.binary))
    if out_json:
        out_json.write_text(json.dumps({"datasets": summary, "replay_args": extra, "seconds": seconds}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
