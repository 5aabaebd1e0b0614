#!/usr/bin/env python3
"""Development study: a per-metric "surprise" evidence beside the detector's combined ratio.

For every metric, the raw surprise of a tick is `s = max(|z|, min(|v - v_prev| / scale, 10))`:
`z` the value's robust z against the metric's rolling baseline (median / scale over the last
2016 values, recomputed every 12 ticks, as the five-minute profile does) and the jump since the
previous value in the same scale (no extra state). The evidence is Numenta's anomaly-likelihood
idea with O(1) state per metric: the mean of the last `k` surprises against an exponentially
weighted mean and standard deviation of the surprise (half-life `half`, plain running moments
until then, sd floor `sdfloor`, nothing before `min` observations), as a Gaussian tail z
`(mean_k - mu) / sd`; a host's surprise is the largest over its metrics.

The detector's own combined ratio comes from `scales.py` (one replay per host with
`--ratios-out`, cached). Variants (`surprise.py --binary B SPEC...`), SPEC = `k=5/T=4/...`:
  k      short mean length (ticks)
  T      tail z that is one unit of ratio (the surprise ratio is tail / T)
  q      if given, T is raised to the q quantile of the host's warm-up surprise tails (second
         half of the warm-up, after the moments settled) -- per-host calibration
  half   half-life of the moments, ticks
  freeze 1 = the moments do not learn from a metric while its own ratio is over 1
  mode   `alarm`: alarm ratio = max(shipped ratio, surprise ratio); `c`: the surprise ratio
         joins the combined ratio before the shipped 12-tick mean and its warm-up quantile;
         `only`: the surprise ratio alone
  clear  ticks under `cf` before an event closes
  cf     level under which an event closes (fraction of the threshold; default 1)

Prints, per spec, the nab-dev score and per set (asd, Dataset2, Dataset3) F1 / AUPRC of the
alarm ratio / event recall / false alarms per host-day on the train half, then the synthetic
injections' recall at 1 / 2 / 3 ticks. `--only nab` scores nab-dev alone (minutes, not a
quarter of an hour). The surprise series are cached under `--cache`/surprise.

    cargo build --release -p sco-models --example replay
    python models/eval/surprise.py --binary $CARGO_TARGET_DIR/release/examples/replay k=5/T=3/mode=c
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate as ev  # noqa: E402
import scales as sc  # noqa: E402

CLIP = 10.0
CACHE = Path("/tmp/sco-ratios")


def rolling_baseline(v: np.ndarray, win: int = 2016, every: int = 12):
    n, m = v.shape
    med = np.full((n, m), np.nan)
    scl = np.full((n, m), np.nan)
    for i in range(every, n + every, every):
        h = v[max(0, i - win):i]
        md = np.median(h, axis=0)
        mad = np.median(np.abs(h - md), axis=0)
        s = np.maximum.reduce([1.4826 * mad, 0.5 * h.std(axis=0), 0.01 * np.abs(md), np.full(m, 0.01)])
        med[i:i + every] = md
        scl[i:i + every] = s
    return med, scl


def surprise(rows: np.ndarray, n_warm: int, p: dict) -> np.ndarray:
    """Per tick (all rows: warm-up then input) and metric: the tail z of the short mean."""
    k, half, freeze, T = p["k"], p["half"], p["freeze"], p["T"]
    n, m = rows.shape
    med, scl = rolling_baseline(rows)
    z = np.clip((rows - med) / scl, -CLIP, CLIP)
    a_floor = 1.0 - 0.5 ** (1.0 / half)
    prev = rows[0].copy()
    mu = np.zeros(m)
    var = np.zeros(m)
    count = 0
    ring = np.zeros((k, m))
    seen = 0
    out = np.zeros((n, m))
    for t in range(n):
        d = rows[t] - prev
        prev = rows[t]
        scale_t = np.nan_to_num(scl[t], nan=np.inf)
        zd = np.minimum(np.abs(d) / scale_t, CLIP)
        s = np.nan_to_num(np.maximum(np.abs(z[t]), zd), nan=0.0)
        if not np.isfinite(scl[t]).any():
            continue  # no baseline yet: nothing observed by the evidence
        ring[seen % k if seen < k else t % k] = s
        seen += 1
        w = ring[:min(seen, k)]
        mean = w.mean(axis=0)
        sd = np.maximum(np.sqrt(var), p.get("sdfloor", 0.1))
        tail = (mean - mu) / sd if count >= p.get("min", 24) else np.zeros(m)
        out[t] = tail
        learn = np.ones(m, bool) if not freeze or t < n_warm else tail < T
        count += 1
        a = max(1.0 / count, a_floor)
        dl = s - mu
        mu = np.where(learn, mu + a * dl, mu)
        var = np.where(learn, (1 - a) * (var + a * dl * dl), var)
    return out


def host_surprise(warm: np.ndarray | None, inp: np.ndarray, p: dict, n_warm: int):
    rows = inp if warm is None else np.vstack([warm, inp])
    nw = n_warm if warm is None else warm.shape[0]
    tails = surprise(rows, nw, p).max(axis=1)
    return tails[:nw], tails[nw:] if warm is not None else tails


def parse(spec: str) -> dict:
    p = {"k": 5, "T": 4.0, "q": None, "half": 2016, "freeze": 0, "mode": "alarm", "clear": 1}
    for part in spec.split("/"):
        key, _, val = part.partition("=")
        p[key] = val if key == "mode" else (float(val) if key in ("T", "q", "sdfloor", "cf") else int(val))
    return p


def end_of(a: np.ndarray) -> int:
    """Address of the last element: the same for an array and its tail slices."""
    return a.__array_interface__["data"][0] + (a.size - 1) * a.itemsize


def make_apply(p: dict, raw_of):
    """raw_of(d) -> (warm rows or None, input rows, n_warm) for a cached replay `d`."""
    cache: dict = {}

    def apply(d):
        key = end_of(d["x"])
        if key not in cache:
            warm, inp, n_warm, name = raw_of(key)
            tag = f"{p['k']}_{p['half']}_{p['freeze']}_{p['T'] if p['freeze'] else 0}"
            path = CACHE / "surprise" / f"{name}_{tag}.npz"
            if path.exists():
                z = np.load(path)
                cache[key] = (z["w"], z["x"])
            else:
                cache[key] = host_surprise(warm, inp, p, n_warm)
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, w=cache[key][0], x=cache[key][1])
        sw, sx = cache[key]
        if sx.size != d["x"].size:  # NAB: scales.score_nab passes the input without the warm-up
            sx = sx[-d["x"].size:]
        settled = sw[sw.size // 2:]
        T = p["T"]
        if p["q"] is not None and settled.size:
            T = max(T, float(np.quantile(settled, p["q"])))
        s_ratio = sx / T
        if p["mode"] == "c":
            w = np.maximum(np.nan_to_num(d["w"], nan=np.nan), sw / T)
            x = np.maximum(d["x"], s_ratio)
            r = sc.rule_scales(w, x, [(12, 0.98)])
        elif p["mode"] == "only":
            r = s_ratio
        else:
            r = np.maximum(sc.rule_scales(d["w"], d["x"], [(12, 0.98)]), s_ratio)
        cf = p.get("cf", 1.0)
        alarm = r > 1.0 if p["clear"] == 1 and cf == 1.0 else sc.hysteresis(r, p["clear"], 1, cf)
        return r, alarm, sc.merged_opened(alarm, p.get("merge", 0))

    return apply


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, default=ev.ROOT.parent / "shared/data")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/sco-ratios"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", choices=["nab", "sets", "all"], default="all")
    ap.add_argument("specs", nargs="+")
    args = ap.parse_args()
    global CACHE
    CACHE = args.cache

    nab = sc.collect_nab(args.binary, args.data_dir, args.cache, args.jobs)
    nab_raw = {}
    for name, ts, d in nab[1]:
        vals = np.loadtxt(args.data_dir / "nab-dev" / name, delimiter=",", skiprows=1, usecols=1, ndmin=2,
                          dtype=np.float64)
        nab_raw[end_of(d["x"])] = (None, vals, d["w"].size, "nab_" + name.replace("/", "_"))
    if args.only != "nab":
        sets = sc.collect(args.binary, args.data_dir, args.cache, args.jobs)
        raw = {}
        for ds, hosts in sets.items():
            for h, meta in zip(hosts, ev.hosts_of(args.data_dir, ds)):
                train = ev.load(meta["train"])
                half = train.shape[0] // 2
                stem = f"{ds.replace('/', '_')}_{meta['name']}"
                raw[end_of(h["full"]["x"])] = (train, ev.load(meta["test"]), None, stem + "_full")
                raw[end_of(h["half"]["x"])] = (train[:half], train[half:], None, stem + "_half")
        synth = sc.collect_synthetic(args.binary, args.data_dir, args.cache, args.jobs, 2.5, 2)
        for (d, _), case in zip(synth, ev.synthetic_cases(args.data_dir, 2.5, 2)):
            raw[end_of(d["x"])] = (case[1], case[2], None, "synth_" + case[0])
        raw.update(nab_raw)
    else:
        raw = nab_raw
    for spec in args.specs:
        p = parse(spec)
        apply = make_apply(p, lambda key: raw[key])
        line = f"{spec:40s} | NAB {sc.score_nab(nab, apply):.1f}"
        if args.only != "nab":
            r = sc.score_sets(sets, apply)
            sy = sc.score_synthetic(synth, apply)
            cells = [f"{r[ds]['f1']:.3f}/{r[ds]['auprc']:.3f}/{r[ds]['event_recall']:.2f}/"
                     f"{r[ds]['false_alarms_per_day_train']:.2f}" for ds in sc.SETS]
            line += f" | {' | '.join(cells)} | synth {'/'.join(f'{v:.2f}' for v in sy['recall'][:3])}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
