#!/usr/bin/env python3
"""Development study (nab-dev only): how far a per-series tail evidence gets on NAB's standard
profile when each alarm is followed by a refractory period, one global setting for all files.

Per file, streaming: the value's robust z against a rolling median / scale (`win` values,
recomputed every 12), the jump since the previous value in the same scale (`jump=own`), or
over a robust baseline of the jumps (`jump=dbase`), and the distance outside the window's
range (`wn`); raw surprise s = min(max(wz * |z|, wj * jump, wn * outside), 10); evidence = tail
z of the mean of the last `k` surprises over exponentially weighted moments (half-life `half`);
an alarm when it is over `T`, at most one per `R` ticks (`gap=1`: R counted from the last tick
over `T`, i.e. a flapping alarm is one). Scored with `evaluate.py`'s NAB scorer.

    python models/eval/refractory.py "{'k':[5],'T':[3],'R':[100],'wz':[0.5]}"

Each key of the dict is a list of values; every combination is printed: score, windows found,
alarms outside windows.

Seasonal term (`ws` > 0): where the file's probation period has a period (`period`: the lag of
its largest autocorrelation peak, at least `acf`), the surprise also takes `ws` times the value's
distance from the median of the same phase in the last `sk` periods, in the rolling scale of
those residuals (`seasonal`).
"""
import csv, json, math, sys, itertools
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate as ev  # noqa: E402

NAB = Path(__file__).resolve().parents[2].parent / "shared/data/nab-dev"
WIN = json.loads((NAB / "combined_windows.json").read_text())
FILES = []
for name in sorted(WIN):
    rows = list(csv.reader(open(NAB / name)))[1:]
    ts = [r[0] for r in rows]
    v = np.array([float(r[1]) for r in rows])
    FILES.append((name, ts, v))

def baseline(v, win=2016, every=12, lag=True):
    global HI, LO
    n = len(v); med = np.full(n, np.nan); scl = np.full(n, np.nan); HI = np.full(n, np.nan); LO = np.full(n, np.nan)
    for i in range(every, n + every, every):
        h = v[max(0, i - win):i]
        md = np.median(h); mad = np.median(np.abs(h - md))
        s = max(1.4826 * mad, 0.5 * h.std(), 0.01 * abs(md), 0.01)
        med[i:i + every] = md; scl[i:i + every] = s
        HI[i:i + every] = h.max(); LO[i:i + every] = h.min()
    return med, scl, HI.copy(), LO.copy()

CACHE = {}
def features(name, v, win):
    key = (name, win)
    if key not in CACHE:
        med, scl, hi, lo = baseline(v, win)
        d = np.abs(np.diff(v, prepend=v[0]))
        dmed, dscl, _, _ = baseline(d, win)
        CACHE[key] = (med, scl, d, dmed, dscl, hi, lo)
    return CACHE[key]

def period(v, lo=12, min_acf=0.5):
    """The lag in lo..len/2 with the largest autocorrelation of the warm-up (NAB's probation:
    15 %, at most 750 values) if that is at least min_acf and a local peak; else None."""
    w = v[:int(min(math.floor(0.15 * len(v)), 750))]
    w = w - w.mean()
    den = float((w * w).sum())
    if den <= 0 or len(w) < 2 * lo:
        return None
    acf = np.array([float((w[:-L] * w[L:]).sum()) / den for L in range(1, len(w) // 2)])
    best, val = None, min_acf
    for L in range(lo, len(acf) - 1):
        if acf[L - 1] >= val and acf[L - 1] >= acf[L - 2] and acf[L - 1] >= acf[L] \
                and acf[L - 1] - acf[:L - 1].min() >= PROMINENCE:
            best, val = L, acf[L - 1]
    return best

# how far the autocorrelation must rise again after its dip for a lag to be a period (0.2 to
# 0.8 tried: only the ambient temperature and one Twitter file lose their period, 57.8 -> 57.5)
PROMINENCE = 0.0

SEAS = {}
def seasonal(name, v, p):
    """|residual against the same phase of the last `sk` periods| in the residuals' robust scale."""
    key = (name, p.get("sk", 1), p.get("acf", 0.5))
    if key not in SEAS:
        P = period(v, min_acf=p.get("acf", 0.5))
        n = len(v)
        if P is None:
            SEAS[key] = np.zeros(n)
        else:
            sk = p.get("sk", 1)
            ref = np.full(n, np.nan)
            for t in range(P, n):
                lags = [v[t - j * P] for j in range(1, sk + 1) if t - j * P >= 0]
                ref[t] = np.median(lags)
            res = np.nan_to_num(v - ref, nan=0.0)
            rmed, rscl, _, _ = baseline(res, p.get("win", 2016))
            SEAS[key] = np.nan_to_num(np.abs(res - rmed) / rscl, nan=0.0)
            SEAS[key][:P] = 0.0
        print(name, P, file=sys.stderr) if p.get("show") else None
    return SEAS[key]

def detect(name, v, p):
    med, scl, d, dmed, dscl, hi, lo = features(name, v, p.get("win", 2016))
    n = len(v)
    z = np.nan_to_num(np.abs(v - med) / scl, nan=0.0)
    if p.get("jump", "own") == "own":
        zj = np.nan_to_num(d / scl, nan=0.0)
    elif p["jump"] == "dbase":
        zj = np.nan_to_num(np.maximum(d - dmed, 0) / dscl, nan=0.0)
    else:
        zj = np.zeros(n)
    nov = np.nan_to_num(np.maximum(np.maximum(v - hi, lo - v), 0) / scl, nan=0.0)
    zs = seasonal(name, v, p) if p.get("ws", 0.0) > 0 else np.zeros(n)
    s = np.minimum(np.maximum.reduce([z * p.get("wz", 1.0), zj * p.get("wj", 1.0), nov * p.get("wn", 0.0),
                                      zs * p.get("ws", 0.0)]), 10.0)
    k, T, half, R = p["k"], p["T"], p.get("half", 2016), p["R"]
    a_floor = 1 - 0.5 ** (1 / half)
    cs = np.cumsum(np.concatenate([[0.0], s]))
    mu = var = 0.0; cnt = 0
    alarm = np.zeros(n, bool); last = -10**9
    started = False
    for t in range(n):
        if not np.isfinite(scl[t]):
            continue
        lo = max(0, t - k + 1)
        mean = (cs[t + 1] - cs[lo]) / (t + 1 - lo)
        sd = max(math.sqrt(var), p.get("sdfloor", 0.1))
        tail = (mean - mu) / sd if cnt >= 24 else 0.0
        fire = tail > T
        if fire:
            if t - last > R:
                alarm[t] = True
            if p.get("gap", 0) or t - last > R:
                last = t
        cnt += 1
        a = max(1.0 / cnt, a_floor)
        if not (p.get("freeze") and tail > T):
            dl = s[t] - mu; mu += a * dl; var = (1 - a) * (var + a * dl * dl)
    return alarm

def score(p):
    raw = nw = hit = fp = 0
    for name, ts, v in FILES:
        det = detect(name, v, p)
        r, w, h, f = ev.nab_file_score(ts, det, WIN[name])
        raw += r; nw += w; hit += h; fp += f
    return 100 * (raw + nw) / (2 * nw), hit, nw, fp

if __name__ == "__main__":
    grid = eval(sys.argv[1])
    keys = list(grid)
    for combo in itertools.product(*[grid[k] for k in keys]):
        p = dict(zip(keys, combo))
        s, h, w, f = score(p)
        print(f"{s:6.1f} {h}/{w} fp={f} {p}", flush=True)
