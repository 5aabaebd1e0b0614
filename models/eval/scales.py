#!/usr/bin/env python3
"""Development study: how the detector's evidence becomes a score and an alarm.

The detector's combined ratio `c` per tick (max over its components of score / threshold, before
any smoothing) does not depend on how it is post-processed (the replay profile learns its
baselines whatever the alarms say). So this script replays every host once with
`--ratios-out` (a development flag of `examples/replay.rs`), caches `c` for the warm-up and the
replayed ticks, and then compares post-processing rules offline, in seconds:

- `shipped`: the trailing mean of `c` over 12 ticks, divided by its 0.98 warm-up quantile
  (floor 0.2), alarm while the ratio is over 1 (the current replay profile);
- `scales`: several trailing means (e.g. 1, 3, 12 ticks), each divided by its own warm-up
  quantile, the alarm ratio being their maximum, so a short strong incident and a long moderate
  one both cross;
- a separate ranking score: the same scales, each as a tail probability of its warm-up
  distribution, so the score ranks by how unusual the evidence is at its most telling scale.

Figures per development set: point-wise P/R/F1 of the alarms, AUPRC of the score (pooled),
event recall, false alarms per host-day on the train halves (first half warms up, second half
is replayed), synthetic-injection event recall per length (the injections of
`evaluate.py --synthetic`), and the NAB standard score on nab-dev (alarm onsets).

    cargo build --release -p sco-models --example replay
    python models/eval/scales.py --binary $CARGO_TARGET_DIR/release/examples/replay

The ratios are cached in `--cache` (default /tmp/sco-ratios); delete it after changing the
detector. The first run replays everything (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate as ev  # noqa: E402

SETS = ["asd", "jumpstarter/Dataset2", "jumpstarter/Dataset3"]


def replay_ratios(binary: Path, warmup: Path | None, inp: Path, out_dir: Path, key: str) -> dict:
    """`c` of the warm-up ticks and of the input rows, and the shipped alarms (cached)."""
    cache = out_dir / f"{key}.npz"
    if cache.exists():
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    with tempfile.TemporaryDirectory() as d:
        out, rat = Path(d) / "out.csv", Path(d) / "ratios.csv"
        cmd = [str(binary), "replay", "--input", str(inp), "--output", str(out), "--ratios-out", str(rat)]
        if warmup is not None:
            cmd += ["--warmup", str(warmup)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
        lines = out.read_text().splitlines()
        col = 3 if lines[0].startswith("timestamp") else 2
        alarm = np.array([ln.split(",")[col] == "1" for ln in lines[1:]])
        w, x = [], []
        for ln in rat.read_text().splitlines():
            phase, v = ln.split(",")
            (w if phase == "w" else x).append(float(v))
    res = {"w": np.array(w), "x": np.array(x), "alarm": alarm}
    np.savez(cache, **res)
    return res


# ------------------------------------------------------------------------ post-processing


def trailing_mean(v: np.ndarray, k: int) -> np.ndarray:
    v = np.nan_to_num(v, nan=0.0)
    c = np.concatenate([[0.0], np.cumsum(v)])
    t = np.arange(1, v.size + 1)
    lo = np.maximum(t - k, 0)
    return (c[t] - c[lo]) / (t - lo)


def scale_stats(w: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing means over k ticks of the warm-up (where scored) and of the input (the ring
    continues from the warm-up, as in the detector)."""
    scored = ~np.isnan(w)
    mw = trailing_mean(w, k)[scored]
    seq = np.concatenate([np.nan_to_num(w[-k:], nan=0.0), np.nan_to_num(x, nan=0.0)])
    mx = trailing_mean(seq, k)[min(k, w.size):] if w.size else trailing_mean(x, k)
    return mw, mx[-x.size:]


def rule_scales(w, x, scales, floor=0.2):
    """Alarm ratio = max over (k, q) of mean_k / quantile_q(warm-up mean_k)."""
    r = np.zeros(x.size)
    for k, q in scales:
        mw, mx = scale_stats(w, x, k)
        thr = max(float(np.quantile(mw, q)) if mw.size else 0.0, floor, 1e-9)
        r = np.maximum(r, mx / thr)
    return r


def rule_scales_adaptive(w, x, scales, window, every=12, floor=0.2, guard=1.0):
    """Like `rule_scales`, but each scale's threshold is the quantile of a rolling buffer of its
    last `window` values that were judged normal (alarm ratio under `guard` at that tick),
    seeded with the warm-up and recomputed every `every` ticks: a host whose normal changes
    stops alarming once the new level fills the buffer's tail, while an ongoing incident never
    enters it."""
    means = []
    bufs = []
    for k, q in scales:
        mw, mx = scale_stats(w, x, k)
        means.append(mx)
        bufs.append(list(mw[-window:]))
    thr = [max(float(np.quantile(b, q)) if b else 0.0, floor, 1e-9) for b, (k, q) in zip(bufs, scales)]
    r = np.zeros(x.size)
    for t in range(x.size):
        rt = max(m[t] / th for m, th in zip(means, thr))
        r[t] = rt
        if rt < guard:
            for b, m in zip(bufs, means):
                b.append(m[t])
                if len(b) > window:
                    del b[0]
        if (t + 1) % every == 0:
            thr = [max(float(np.quantile(b, q)) if b else 0.0, floor, 1e-9) for b, (k, q) in zip(bufs, scales)]
    return r


def geo_ratio(w, x, scales, aq, floor=0.2):
    """Geometric mean over scales of mean_k / quantile_q(warm-up mean_k), divided by the `aq`
    quantile of the same geometric mean over the warm-up ticks."""
    lw, lx = [], []
    scored = ~np.isnan(w)
    for k, q in scales:
        mw, mx = scale_stats(w, x, k)
        thr = max(float(np.quantile(mw, q)) if mw.size else 0.0, 1e-9)
        lw.append(np.log(np.maximum(mw / thr, 1e-6)))
        lx.append(np.log(np.maximum(mx / thr, 1e-6)))
    gw, gx = np.exp(np.mean(lw, axis=0)), np.exp(np.mean(lx, axis=0))
    thr = max(float(np.quantile(gw, aq)) if gw.size else 0.0, 1e-9)
    return gx / thr


def tail_score(w, x, scales):
    """Ranking score: max over scales of -log10 of the warm-up tail probability of mean_k,
    extended past the largest warm-up value by the ratio to it."""
    best = np.zeros(x.size)
    for k in scales:
        mw, mx = scale_stats(w, x, k)
        if mw.size == 0:
            continue
        s = np.sort(mw)
        n = s.size
        above = n - np.searchsorted(s, mx, side="left")
        p = (above + 1) / (n + 1)
        sc = -np.log10(p)
        top = max(s[-1], 1e-9)
        sc = sc + np.where(mx > top, np.log10(np.maximum(mx / top, 1.0)), 0.0)
        best = np.maximum(best, sc)
    return best


RULES = {}


def rule(name):
    def deco(f):
        RULES[name] = f
        return f
    return deco


def hysteresis(r: np.ndarray, clear: int, min_dur: int = 1, cf: float = 1.0) -> np.ndarray:
    """Alarm once r > 1 for `min_dur` ticks; it stays on until r <= cf for `clear` ticks."""
    out = np.zeros(r.size, bool)
    on, over, under = False, 0, 0
    for t, v in enumerate(r):
        over = over + 1 if v > 1.0 else 0
        under = 0 if v > cf else under + 1
        if not on and over >= min_dur:
            on = True
        elif on and under >= clear:
            on = False
        out[t] = on
    return out


def merged_opened(alarm: np.ndarray, merge: int) -> np.ndarray:
    """Ticks an event opens when an alarm that comes back within `merge` ticks of its
    recovery (the tick after its last alarm tick) goes on as the same event
    (`DetectorConfig::merge_ticks`; 0 = every alarm onset is an event)."""
    opened = np.zeros(alarm.size, bool)
    last = -(10**9)
    for t in np.flatnonzero(alarm):
        if t - last > merge + 1:
            opened[t] = True
        last = t
    return opened


def parse_scales(text: str):
    return [(int(a), float(b)) for a, b in (p.split("@") for p in text.split(","))]


def parse_rule(spec: str):
    """`shipped` or `scales:1@0.999,3@0.995,12@0.98`, then `/`-separated options:
    `clear=N`, `min=N`, `merge=N` (events held N ticks after recovering), `adapt=N` (rolling thresholds), `score=tail:1,3,12` (tail-probability
    score), `score=ratio:1@0.99,12@0.98` (a separate ratio score), `floor=F`."""
    parts = spec.split("/")
    alarm_spec, opts = parts[0], parts[1:]
    scales = [(12, 0.98)] if alarm_spec == "shipped" else parse_scales(alarm_spec.split(":")[1])
    geo_alarm = alarm_spec.startswith("geo:")
    score_kind, score_arg, adapt, clear, min_dur, floor, aq = None, None, None, 1, 1, 0.2, 0.99
    cf, merge = 1.0, 0
    for part in opts:
        key, _, val = part.partition("=")
        if key == "score":
            score_kind, _, arg = val.partition(":")
            score_arg = [int(k) for k in arg.split(",")] if score_kind == "tail" else parse_scales(arg)
        elif key == "adapt":
            adapt = int(val)
        elif key == "clear":
            clear = int(val)
        elif key == "min":
            min_dur = int(val)
        elif key == "floor":
            floor = float(val)
        elif key == "cf":
            cf = float(val)
        elif key == "merge":
            merge = int(val)
        elif key == "aq":
            aq = float(val)
        else:
            raise SystemExit(f"unknown option {part}")

    def apply(d):
        if geo_alarm:
            r = geo_ratio(d["w"], d["x"], scales, aq, floor=floor)
        elif adapt:
            r = rule_scales_adaptive(d["w"], d["x"], scales, adapt, floor=floor)
        else:
            r = rule_scales(d["w"], d["x"], scales, floor=floor)
        alarm = r > 1.0 if clear == 1 and min_dur == 1 and cf == 1.0 else hysteresis(r, clear, min_dur, cf)
        if score_kind == "tail":
            score = tail_score(d["w"], d["x"], score_arg)
        elif score_kind == "ratio":
            score = rule_scales(d["w"], d["x"], score_arg, floor=floor)
        elif score_kind in ("sum", "geo"):
            parts_ = [rule_scales(d["w"], d["x"], [sc], floor=floor) for sc in score_arg]
            if score_kind == "sum":
                score = np.sum(parts_, axis=0)
            else:
                score = np.exp(np.mean(np.log(np.maximum(parts_, 1e-6)), axis=0))
        else:
            score = r
        return score, alarm, merged_opened(alarm, merge)
    return apply


# ------------------------------------------------------------------------------ the sets


def collect(binary: Path, data: Path, cache: Path, jobs: int) -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    work = []
    tmp = cache / "halves"
    tmp.mkdir(exist_ok=True)
    for ds in SETS:
        for h in ev.hosts_of(data, ds):
            stem = f"{ds.replace('/', '_')}_{h['name']}"
            a, b = tmp / f"{stem}_a.csv", tmp / f"{stem}_b.csv"
            if not a.exists():
                train = ev.load(h["train"])
                half = train.shape[0] // 2
                np.savetxt(a, train[:half], delimiter=",", fmt="%.10g")
                np.savetxt(b, train[half:], delimiter=",", fmt="%.10g")
            work.append((ds, h, stem, a, b))

    def run(item):
        ds, h, stem, a, b = item
        full = replay_ratios(binary, h["train"], h["test"], cache, stem + "_full")
        half = replay_ratios(binary, a, b, cache, stem + "_half")
        label = np.loadtxt(h["label"]).astype(np.int8)
        return ds, {"full": full, "half": half, "label": label}

    out: dict = {ds: [] for ds in SETS}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for ds, r in pool.map(run, work):
            out[ds].append(r)
    return out


def collect_synthetic(binary: Path, data: Path, cache: Path, jobs: int, magnitude: float, n_metrics: int):
    cases = ev.synthetic_cases(data, magnitude, n_metrics)

    def run(case):
        name, warm, inp, segs = case
        key = f"synth_{magnitude}_{n_metrics}_{name}"
        a, b = cache / "halves" / f"{key}_a.csv", cache / "halves" / f"{key}_b.csv"
        if not (cache / f"{key}.npz").exists():
            np.savetxt(a, warm, delimiter=",", fmt="%.10g")
            np.savetxt(b, inp, delimiter=",", fmt="%.10g")
        return replay_ratios(binary, a, b, cache, key), segs

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run, cases))


def collect_nab(binary: Path, data: Path, cache: Path, jobs: int):
    nab = data / "nab-dev"
    windows = json.loads((nab / "combined_windows.json").read_text())

    def run(name):
        with open(nab / name) as fh:
            ts = [row[0] for row in list(csv.reader(fh))[1:]]
        key = "nab_" + name.replace("/", "_").removesuffix(".csv")
        return name, ts, replay_ratios(binary, None, nab / name, cache, key)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return windows, list(pool.map(run, sorted(windows)))


# ------------------------------------------------------------------------------ scoring


def score_sets(sets: dict, apply) -> dict:
    res = {}
    for ds, hosts in sets.items():
        rows = []
        for h in hosts:
            s, a, o = apply(h["full"])
            _, ta, to = apply(h["half"])
            rows.append({"score": s, "pred": a, "label": h["label"], "train_pred": ta,
                         "opened": o, "train_opened": to})
        res[ds] = ev.summarise(rows)
    return res


def score_synthetic(cases, apply) -> dict:
    hits = {n: [0, 0] for n in ev.SYNTH_LENGTHS}
    false_onsets, days = 0, 0.0
    for d, segs in cases:
        _, alarm, opened = apply(d)
        for s, e, n in segs:
            hits[n][1] += 1
            hits[n][0] += int(alarm[s:e].any())
        false_onsets += sum(1 for o in ev.onsets(alarm, opened) if not any(s <= o < e + 24 for s, e, _ in segs))
        days += alarm.size / ev.TICKS_PER_DAY
    return {"recall": [h / t for h, t in hits.values()], "fa_day": false_onsets / days}


def score_nab(nab, apply) -> float:
    windows, files = nab
    raw = n_win = 0
    for name, ts, d in files:
        # NAB files warm up inside the input: the ratios are 0 until calibration
        n_warm = d["w"].size
        x = d["x"][n_warm:]
        _, _, opened = apply({"w": d["w"], "x": x})
        opened = np.concatenate([np.zeros(n_warm, bool), opened])
        s, w, _, _ = ev.nab_file_score(ts, opened, windows[name])
        raw, n_win = raw + s, n_win + w
    return 100.0 * (raw + n_win) / (2.0 * n_win)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, default=ev.ROOT.parent / "shared/data")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/sco-ratios"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--check", action="store_true", help="check `shipped` reproduces the replay's alarms")
    ap.add_argument("rules", nargs="*", default=["shipped"])
    args = ap.parse_args()

    sets = collect(args.binary, args.data_dir, args.cache, args.jobs)
    synth = collect_synthetic(args.binary, args.data_dir, args.cache, args.jobs, 2.5, 2)
    synth15 = collect_synthetic(args.binary, args.data_dir, args.cache, args.jobs, 1.5, 3)
    nab = collect_nab(args.binary, args.data_dir, args.cache, args.jobs)
    if args.check:
        apply = parse_rule("shipped")
        bad = 0
        for ds, hosts in sets.items():
            for h in hosts:
                for part in ("full", "half"):
                    _, a, _ = apply(h[part])
                    bad += int((a != h[part]["alarm"]).sum())
        print(f"shipped rule vs replay alarms: {bad} ticks differ")
    for spec in args.rules:
        apply = parse_rule(spec)
        r = score_sets(sets, apply)
        sy, sy15 = score_synthetic(synth, apply), score_synthetic(synth15, apply)
        cells = []
        for ds in SETS:
            m = r[ds]
            cells.append(f"{m['f1']:.3f}/{m['auprc']:.3f}/{m['event_recall']:.2f}/{m['false_alarms_per_day_train']:.2f}")
        rec = "/".join(f"{v:.2f}" for v in sy["recall"][:3])
        rec15 = "/".join(f"{v:.2f}" for v in sy15["recall"][:3])
        print(f"{spec:40s} | {' | '.join(cells)} | synth {rec} fa {sy['fa_day']:.2f} | "
              f"synth1.5 {rec15} fa {sy15['fa_day']:.2f} | NAB {score_nab(nab, apply):.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
