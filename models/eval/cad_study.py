#!/usr/bin/env python3
"""Development study (nab-dev only, Python only): does Numenta NAB's CAD OSE detector
(Contextual Anomaly Detector, Open Source Edition, M. Smirnov 2016; NAB's
nab/detectors/context_ose/{cad_ose.py, context_operator.py, context_ose_detector.py}; 69.9 on
NAB's standard profile), alone or combined with our shipped single-series evidence
(`nab_study.py`, setting {'half':8640,'T':2.7,'R':100}), raise our NAB standard score without
per-file settings and without knowledge a live agent would not have?

CAD OSE here is a transcription of NAB master's code to Python 3 that reproduces NAB's
published results/contextOSE scores to the printed digits (checked on exchange-3_cpc_results
at its first scored rows, 2011-07-05..08, and near its end, 2011-09-02..07): Python 2's tuple
hash (`py2hash`) and dict iteration order (`Py2IntDict`) are reproduced because they decide
ties among active contexts and the ids of new contexts. Per row: value -> bin
q = int((v - lo) / ((hi - lo) / 7)) (3 bits, 8 bins) -> 3 facts {2i + bit_i(q)}; the left facts of the step are those 3 facts plus up
to 15 "neurons" (the most often active contexts of the previous step, 2^31 + id); contexts =
(left semi-context, right semi-context) pairs learnt from the zero-level context (previous left
facts, current facts) and from intersections with it (left part at most 7 facts); score =
(1 - active/selected contexts + new/potential new contexts) / 2; NAB's detector returns 0 for
`probation/5` rows after any raw score >= 0.75 (CAD's own rest period). NAB gives it the WHOLE
file's min/max as (lo, hi) and counts every row with score >= 0.7655 (its corpus-optimised
standard threshold, config/thresholds.json) as a detection.

Range variants (`cad_scores`):
  whole  the file's min/max, as in NAB -- uses the future; REFERENCE ONLY
  prob   min/max of the probation (first 15 %, at most 750 rows), fixed; values outside are
         clipped to the end bins. A live agent gets exactly these scores by buffering the
         probation, then building CAD with its range and replaying it (probation is unscored).
  grow   as prob, and each later value outside the range widens it to that value (margin 0);
         later values are binned with the new step, learnt contexts stay.
Detection rules (`detections`; R = 100 everywhere, T = 2.7 = shipped):
  nab    every row with CAD score >= thr (NAB's own use)
  cad    onsets: CAD score >= thr, at most one alarm per R rows (our refractory)
  or     onsets of (our tail > T) OR (CAD >= thr), one shared refractory
  gate   onsets of our tail > T AND (max CAD of the last w rows >= g OR tail >= Thi)
  sum    onsets of tail + c * (max CAD of the last w rows) > Tsum (CAD as a feature)

Run (single process; prints score, windows found of 86, alarms outside windows per row):

    python3 models/eval/cad_study.py                      # the table below
    python3 models/eval/cad_study.py --cats               # + per category and windows gained /
                                                          #   lost against the shipped setting
    python3 models/eval/cad_study.py "{'kind':['or'],'rng':['prob'],'thr':[0.8,0.9]}" --files

CAD scores are cached under /tmp/cad_study_cache (env CAD_CACHE). Cold: CAD is slow in Python
(about 6 min per range variant, 10 min for 'grow'; art_noisy alone ~3 min, the context memory
grows to ~100k contexts on noise), so the first full run takes ~20-25 min; warm: ~7 s.

Results (2026-12, nab-dev, 86 windows; score / windows found / alarms outside windows):

  62.6 74 276  ours, shipped setting (nab_study.py)
  69.3 67  42  REFERENCE CAD OSE as in NAB: whole-file range, NAB threshold 0.7655
  66.8 65  47    same, onsets + R=100 (thr 0.75)
  39.5 42  88  honest CAD OSE: probation range, NAB threshold
  52.8 58 154    same, best threshold of 9 (0.6..0.85): 0.7
  54.9 64 235    same, onsets + R=100, best of 6 (0.6..0.85): 0.6
  39.1 40  62  honest CAD OSE: growing range, NAB threshold
  48.1 59 254    same, best threshold of 9: 0.6
  50.5 55 144    same, onsets + R=100, best of 6: 0.6
  61.1 73 283  ours OR CAD(prob) >= 0.9, shared R=100         (best of 4: thr 0.75..0.9)
  57.0 65 197  ours gated by CAD(prob) max of 20 rows >= 0.4 unless tail >= 4 (best of 10)
  62.0 73 276  tail + 2 * CAD(prob) max of 5 rows > 3.5      (best of 9: c 1,2,4 x Tsum 3,3.5,4)
  61.3 73 281  ours OR CAD(grow) >= 0.9, shared R=100         (best of 4)
  62.1 72 253  tail + 2 * CAD(grow) max of 5 rows > 3.5      (best of 9)
  64.7 76 281  REFERENCE ours OR CAD(whole) >= 0.85           (best of 4)
  65.3 70 173  REFERENCE tail + 2 * CAD(whole) max of 5 rows > 4 (best of 9)

Settings tried: per CAD range variant 10 NAB thresholds (0.6..0.85 and 0.7655), 12 onset
rules (thr 0.6..0.85 x returned/raw score), 4 OR, 10 gate (w 5,20 x g 0.3..0.6, 2 with Thi=4),
9 sum; 3 range variants (whole, prob, grow) -> ~130 rows, ~90 of them honest (prob, grow).
The best honest gate is far below the others; gate on whole range is no better (<= 62.6).

Whole-range CAD vs shipped by category (69.3 vs 62.6): realTweets +9.4 raw (27/33 windows vs
33/33, 9 false alarms vs 213), realAdExchange +6.5 (+3 windows), realTraffic +2.2,
realKnownCause -4.3 (-4 windows, -30 false alarms), artificialWithAnomaly -1.9 (loses nojump).
Best honest combination (tail + 2*CAD(grow), 62.1) vs shipped: windows +2 (exchange-2_cpm #1,
exchange-4_cpm #3), -4 (exchange-4_cpc #0, rogue_agent_key_updown #0, speed_7578 #0,
Twitter_volume_GOOG #1); false alarms -23 (Twitter -18, realKnownCause -10, others +5).
Reference OR (64.7): +2 windows (exchange-2_cpm #1, machine_temperature #0), +5 false alarms.

Conclusion: CAD OSE's NAB score rests on the whole-file input range. With the file's true
min/max, the 8 bins put almost all of a Twitter series (or an ad exchange series) in the lowest
bin and only the labelled spikes higher, so its contexts see the anomaly as a new value; that
is knowledge of the future extremes, and it is where its whole advantage over ours comes from
(Twitter: 204 fewer false alarms). With a range a live agent can know (probation, fixed or
growing) it falls to 39-55, far below ours, and no combination of it with our evidence beats
the shipped setting: the best honest rows are 62.0-62.1 (72-73 windows, 253-276 false alarms),
i.e. equal to 62.6 within noise and one to two windows fewer. Even the look-ahead CAD combined
with ours reaches only 64.7-65.3. Nothing here is worth porting; CAD OSE is not adopted.
"""
import hashlib, itertools, math, os, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
import refractory as rf  # noqa: E402
import evaluate as ev  # noqa: E402
import nab_study as ns  # noqa: E402


# --------------------------------------------------------------------------------------------
# CAD OSE (Smirnov 2016), a Python 3 transcription of NAB's nab/detectors/context_ose/
# {cad_ose.py, context_operator.py}: same data structures and arithmetic; differences are only
# those Python 3 forces (integer division written //, cmp-sort written as a key sort, dict
# iteration in insertion order, tuple hashes differ from Python 2 so tie-breaks among equally
# active contexts may pick different neurons). Semi-contexts touched by the current facts are
# visited in creation order, exactly the order of the original's full scan.
# --------------------------------------------------------------------------------------------
M64 = (1 << 64) - 1


def _signed(x):
    x &= M64
    return x - (1 << 64) if x >> 63 else x


def py2hash(t):
    """Python 2.7 (64-bit) hash of a tuple of small non-negative ints: NAB's CAD OSE ranks tied
    contexts by these hashes, so they are reproduced to get the same active neurons."""
    x = 0x345678; mult = 1000003; n = len(t)
    for y in t:
        n -= 1
        x = _signed((x ^ y) * mult)
        mult = _signed(mult + 82520 + n + n)
    x = _signed(x + 97531)
    return -2 if x == -1 else x


class Py2IntDict:
    """Insert-only dict of small non-negative int keys iterating in CPython 2.7's slot order
    (the original iterates `{right semi-context id: context id}` with iteritems(), and that order
    decides the ids of new contexts, which are themselves facts)."""
    __slots__ = ("d", "slots", "mask", "used", "items_list")

    def __init__(self):
        self.d = {}; self.mask = 7; self.slots = [None] * 8; self.used = 0; self.items_list = []

    def _place(self, slots, mask, k):
        i = k & mask; perturb = k
        while slots[i & mask] is not None:
            i = (i << 2) + i + perturb + 1
            perturb >>= 5
        slots[i & mask] = k

    def setdefault(self, k, v):
        if k in self.d:
            return self.d[k]
        self.d[k] = v
        self._place(self.slots, self.mask, k)
        self.used += 1
        if self.used * 3 >= (self.mask + 1) * 2:
            minused = (2 if self.used > 50000 else 4) * self.used
            size = 8
            while size <= minused:
                size <<= 1
            old = self.slots
            self.slots = [None] * size; self.mask = size - 1
            for key in old:
                if key is not None:
                    self._place(self.slots, self.mask, key)
        d = self.d
        self.items_list = [(k, d[k]) for k in self.slots if k is not None]
        return v

    def items(self):
        return self.items_list

    def values(self):
        d = self.d
        return [d[k] for k in self.slots if k is not None]


class ContextOperator:
    """NAB's context_operator.py (the version in NAB master, the one whose output is NAB's
    published results/contextOSE; an intermediate NAB commit had a variant with per-context
    prediction counts, not used here)."""

    def __init__(self, max_left):
        self.max_left = max_left
        self.facts_dics = [{}, {}]            # fact -> list of semi-context records
        self.semi_dics = [{}, {}]             # py2 hash(facts) -> semi-context id
        self.semi_lists = [[], []]            # id -> [facts_seen, n_facts, n_seen, {rid: cid}, id]
        self.crossed = [[], []]
        # context: [n_active, zerolevel, lhash, rhash]
        self.contexts = []
        self.new_context_id = False
        self.ctx_lid = []                     # context id -> its left semi-context id
        self.ZL = 1

    def get_context_by_facts(self, new_contexts, zerolevel=0):
        added = 0
        for left, right in new_contexts:
            lh, rh = py2hash(left), py2hash(right)
            nxt = len(self.semi_dics[0])
            lid = self.semi_dics[0].setdefault(lh, nxt)
            if lid == nxt:
                rec = [[], len(left), 0, Py2IntDict(), lid]
                self.semi_lists[0].append(rec)
                for f in left:
                    self.facts_dics[0].setdefault(f, []).append(rec)
            nxt = len(self.semi_dics[1])
            rid = self.semi_dics[1].setdefault(rh, nxt)
            if rid == nxt:
                rec = [[], len(right), 0, None, rid]
                self.semi_lists[1].append(rec)
                for f in right:
                    self.facts_dics[1].setdefault(f, []).append(rec)
            nxt = len(self.contexts)
            cid = self.semi_lists[0][lid][3].setdefault(rid, nxt)
            if cid == nxt:
                added += 1
                self.contexts.append([0, zerolevel, lh, rh])
                self.ctx_lid.append(lid)
                if zerolevel:
                    self.new_context_id = cid
                    return True
            else:
                if zerolevel:
                    self.contexts[cid][self.ZL] = 1
                    return False
        return added

    def crosser(self, lr, facts, new_flag=False, pot_new=None):
        if lr == 0:
            n_new = self.get_context_by_facts(pot_new) if pot_new else 0
        for rec in self.crossed[lr]:
            rec[0] = []
            rec[2] = 0
        touched = {}
        for f in facts:
            for rec in self.facts_dics[lr].get(f, ()):
                rec[0].append(f)
                touched[rec[4]] = rec
        new_crossed = []
        for i in sorted(touched):             # = the original's full scan in creation order
            rec = touched[i]
            n0 = len(rec[0])
            rec[2] = n0
            new_crossed.append(rec)
        self.crossed[lr] = new_crossed
        if lr:
            return self.update_and_get_active(new_flag)
        return n_new

    def update_and_get_active(self, new_flag):
        """The original visits every (right id, context id) of every crossed left semi-context.
        Same result, faster: when no pair can be proposed (no new zero-level context, or more
        than max_left facts matched) only the right semi-contexts fully matched by the current
        facts (at most 2^bits - 1 of them) are looked up; a context id equal to `skip` is ignored
        as in the original (`newContextID != contextID`, where False counts as 0)."""
        active = []; n_sel = 0; pot = []
        ZL = self.ZL; ncid = self.new_context_id; skip = int(ncid)
        contexts = self.contexts; rights = self.semi_lists[1]; max_left = self.max_left
        ctx_lid = self.ctx_lid
        skip_lid = ctx_lid[skip] if skip < len(ctx_lid) else -1
        full_r = None
        for lrec in self.crossed[0]:
            full = lrec[1] == lrec[2]
            slow = new_flag and lrec[2] <= max_left
            if not slow:
                if not full:
                    continue
                d = lrec[3].d
                n_sel += len(d) - (1 if lrec[4] == skip_lid else 0)
                if full_r is None:
                    full_r = [r[4] for r in self.crossed[1] if r[1] == r[2]]
                for rid in full_r:
                    cid = d.get(rid)
                    if cid is not None and cid != skip:
                        c = contexts[cid]
                        c[0] += 1
                        active.append((cid, c[0], c[2], c[3]))
                continue
            for rid, cid in lrec[3].items_list:
                if cid != skip:
                    c = contexts[cid]
                    r0, r1, r2 = rights[rid][:3]
                    if full:
                        n_sel += 1
                        if r2 > 0:
                            if r1 == r2:
                                c[0] += 1
                                active.append((cid, c[0], c[2], c[3]))
                            elif c[ZL]:
                                pot.append((tuple(lrec[0]), tuple(r0)))
                    elif r2 > 0 and c[ZL]:
                        pot.append((tuple(lrec[0]), tuple(r0)))
        self.new_context_id = False
        return active, n_sel, pot


class CadOse:
    """cad_ose.py. `lo`, `hi`: the input range (NAB: the whole file's min and max)."""

    def __init__(self, lo, hi, base_threshold=0.75, rest_period=30, max_left=7, max_active=15,
                 bits=3):
        self.rest = int(rest_period); self.base = base_threshold
        self.max_active = max_active; self.bits = bits
        self.max_bin = 2 ** bits - 1.0
        self.set_range(lo, hi)
        self.left_group = tuple()
        self.op = ContextOperator(max_left)
        self.hist = [1.0]

    def set_range(self, lo, hi):
        self.lo = float(lo); rng = float(hi) - float(lo)
        if rng == 0.0:
            rng = self.max_bin
        self.step_size = rng / self.max_bin

    def step(self, facts):
        cur = tuple(sorted(set(facts)))
        uniq = set()
        if self.left_group and cur:
            z = (self.left_group, cur)
            uniq.add(z)
            new_flag = self.op.get_context_by_facts([z], zerolevel=1)
        else:
            new_flag = False
        active, n_sel, pot = self.op.crosser(1, cur, new_flag=new_flag)
        uniq.update(pot)
        a1 = len(active) / float(n_sel) if n_sel > 0 else 0.0
        active.sort(key=lambda x: (x[1], x[2], x[3]))
        neurons = [x[0] for x in active[-self.max_active:]]
        g = set(cur); g.update(2 ** 31 + c for c in neurons)
        self.left_group = tuple(sorted(g))
        n_new = self.op.crosser(0, self.left_group, pot_new=pot)
        n_new += 1 if new_flag else 0
        a2 = n_new / float(len(uniq)) if new_flag and uniq else 0.0
        return a1, a2

    def score(self, value):
        """Returns (raw score, the score NAB's detector returns: 0 within `rest` rows after a raw
        score >= 0.75)."""
        q = int((value - self.lo) / self.step_size)
        q = min(max(q, 0), 2 ** self.bits - 1)    # only matters out of range (honest variants)
        facts = set(i * 2 + ((q >> i) & 1) for i in range(self.bits))
        a1, a2 = self.step(facts)
        cur = (1.0 - a1 + a2) / 2.0
        ret = cur if max(self.hist[-self.rest:]) < self.base else 0.0
        self.hist.append(cur)
        return cur, ret


# --------------------------------------------------------------------------------------------
# CAD scores per file (cached under /tmp)
# --------------------------------------------------------------------------------------------
CACHE_DIR = Path(os.environ.get("CAD_CACHE", "/tmp/cad_study_cache"))


def probation(n):
    return int(min(math.floor(0.15 * n), 750))


def cad_scores(name, v, rng="whole", margin=0.0):
    """(raw, returned) CAD OSE scores per row.
    rng='whole': the whole file's min/max (NAB; not available to a live agent, reference only)
    rng='prob':  min/max of the probation (first 15 %, at most 750 rows) widened by `margin` times
                 that range on each side, fixed afterwards (values outside are clipped to the end
                 bins). Live: the agent buffers the probation rows, then builds CAD with that range
                 and replays them -- the same state as computed here; probation rows are unscored.
    rng='grow':  as 'prob', and each value outside the current range widens it to that value plus
                 `margin` times the current range (the bins of later values change; contexts learnt
                 stay as they are)."""
    key = f"{name}|{rng}|{margin}"
    f = CACHE_DIR / (hashlib.md5(key.encode()).hexdigest() + ".npz")
    if f.exists():
        z = np.load(f)
        return z["raw"], z["ret"]
    n = len(v); P = probation(n)
    if rng == "whole":
        lo, hi = v.min(), v.max()
    else:
        lo, hi = v[:P].min(), v[:P].max()
        w = hi - lo
        lo, hi = lo - margin * w, hi + margin * w
    c = CadOse(lo, hi, rest_period=P / 5.0)
    raw = np.zeros(n); ret = np.zeros(n)
    for i, x in enumerate(v):
        if rng == "grow" and i >= P and (x < lo or x > hi):
            w = hi - lo
            if x > hi:
                hi = x + margin * w
            else:
                lo = x - margin * w
            c.set_range(lo, hi)
        raw[i], ret[i] = c.score(x)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(f, raw=raw, ret=ret)
    return raw, ret


# --------------------------------------------------------------------------------------------
# Detections and scoring
# --------------------------------------------------------------------------------------------
SHIPPED = dict(ns.DEFAULT); SHIPPED.update(half=8640, T=2.7, R=100)
NAB_THR = 0.7655273437500002   # NAB config/thresholds.json, contextOSE, standard profile


def onsets(cand, R):
    """Alarm onsets: a candidate row becomes an alarm when more than R rows have passed since
    the previous alarm (our shipped refractory rule)."""
    out = np.zeros(len(cand), bool); last = -10**9
    for t in np.flatnonzero(cand):
        if t - last > R:
            out[t] = True; last = t
    return out


def runmax(x, w):
    """max of x over the last w rows (this row included)."""
    if w <= 1:
        return x
    out = x.copy()
    for j in range(1, w):
        out[j:] = np.maximum(out[j:], x[:-j])
    return out


def windows_hit(ts, det, windows):
    index = {t: i for i, t in enumerate(ts)}
    wins = [(index[a.split(".")[0]], index[b.split(".")[0]]) for a, b in windows]
    P = probation(len(ts))
    idx = np.flatnonzero(det); idx = idx[idx >= P]
    return [bool(((idx >= a) & (idx <= b)).any()) for a, b in wins]


def detections(name, v, r):
    """Boolean detections of one rule dict `r` on one file."""
    kind = r["kind"]
    if kind in ("ours", "or", "gate", "sum"):
        tail = ns.evidence(name, v, SHIPPED)
    if kind == "ours":
        return ns.alarms(tail, SHIPPED)
    raw, ret = cad_scores(name, v, r.get("rng", "whole"), r.get("margin", 0.0))
    s = ret if r.get("src", "ret") == "ret" else raw
    if kind == "nab":                    # NAB: every row at or over the threshold is a detection
        return s >= r["thr"]
    R = r.get("R", 100)
    if kind == "cad":                    # onsets of the CAD score with our refractory
        return onsets(s >= r["thr"], R)
    T = r.get("T", SHIPPED["T"])
    if kind == "or":                     # ours OR CAD's, one shared refractory
        return onsets((tail > T) | (s >= r["thr"]), R)
    if kind == "gate":                   # ours, but only when CAD also saw something recently
        m = runmax(s, r.get("w", 5))
        return onsets((tail > T) & ((m >= r["g"]) | (tail >= r.get("Thi", 1e9))), R)
    if kind == "sum":                    # CAD as a feature: tail + c * (max CAD of last w rows)
        m = runmax(s, r.get("w", 5))
        return onsets(tail + r["c"] * m > r["Tsum"], R)
    raise ValueError(kind)


def run(r):
    raw = nw = hit = fp = 0
    rows = {}
    for name, ts, v in rf.FILES:
        det = detections(name, v, r)
        s, w, h, f = ev.nab_file_score(ts, det, rf.WIN[name])
        raw += s; nw += w; hit += h; fp += f
        rows[name] = (s, w, h, f, windows_hit(ts, det, rf.WIN[name]))
    return 100 * (raw + nw) / (2 * nw), hit, nw, fp, rows


def categories(rows):
    cat = {}
    for name, (s, w, h, f, _) in rows.items():
        c = cat.setdefault(name.split("/")[0], [0.0, 0, 0, 0])
        c[0] += s; c[1] += w; c[2] += h; c[3] += f
    return cat


def grid_rules(grid):
    keys = list(grid)
    for combo in itertools.product(*[grid[k] for k in keys]):
        yield dict(zip(keys, combo))


def show(label, r, base_rows=None, files=False, cats=False):
    s, h, w, f, rows = run(r)
    print(f"{s:6.1f} {h:3d}/{w} fp={f:4d}  {label or r}", flush=True)
    if cats:
        c0 = categories(base_rows) if base_rows else None
        for c, (raw, nw, nh, nf) in sorted(categories(rows).items()):
            extra = ""
            if c0:
                extra = f"   vs shipped: win {nh - c0[c][2]:+d} fp {nf - c0[c][3]:+d} raw {raw - c0[c][0]:+.2f}"
            print(f"      {c:22s} raw={raw:7.2f} win={nh}/{nw} fp={nf}{extra}")
        if base_rows:
            for name in rows:
                a, b = base_rows[name][4], rows[name][4]
                gained = [i for i in range(len(a)) if b[i] and not a[i]]
                lost = [i for i in range(len(a)) if a[i] and not b[i]]
                if gained or lost:
                    print(f"      {name}: windows gained {gained} lost {lost} (index in file)")
    if files:
        for name, (raw, nw, nh, nf, _) in rows.items():
            extra = ""
            if base_rows:
                r0, _, h0, f0, _ = base_rows[name]
                extra = f"  d_raw={raw - r0:+6.2f} d_win={nh - h0:+d} d_fp={nf - f0:+d}"
            print(f"    {name:60s} raw={raw:7.2f} win={nh}/{nw} fp={nf}{extra}")
    return s, h, w, f, rows


# the rows of the docstring's table, in order (label, rule)
TABLE = [
    ("ours, shipped setting (nab_study.py)", {"kind": "ours"}),
    ("REFERENCE CAD OSE as in NAB: whole-file range, NAB threshold",
     {"kind": "nab", "rng": "whole", "thr": NAB_THR}),
    ("  same, onsets + R=100", {"kind": "cad", "rng": "whole", "thr": 0.75}),
    ("honest CAD OSE: probation range, NAB threshold", {"kind": "nab", "rng": "prob", "thr": NAB_THR}),
    ("  same, best threshold of 9 (0.6..0.85)", {"kind": "nab", "rng": "prob", "thr": 0.7}),
    ("  same, onsets + R=100, best of 6", {"kind": "cad", "rng": "prob", "thr": 0.6}),
    ("honest CAD OSE: growing range, NAB threshold", {"kind": "nab", "rng": "grow", "thr": NAB_THR}),
    ("  same, best threshold of 9 (0.6..0.85)", {"kind": "nab", "rng": "grow", "thr": 0.6}),
    ("  same, onsets + R=100, best of 6", {"kind": "cad", "rng": "grow", "thr": 0.6}),
    ("ours OR CAD(prob) >= 0.9, shared R=100", {"kind": "or", "rng": "prob", "thr": 0.9}),
    ("ours gated by CAD(prob) max of 20 rows >= 0.4 unless tail >= 4",
     {"kind": "gate", "rng": "prob", "w": 20, "g": 0.4, "Thi": 4}),
    ("tail + 2 * CAD(prob) max of 5 rows > 3.5", {"kind": "sum", "rng": "prob", "w": 5, "c": 2, "Tsum": 3.5}),
    ("ours OR CAD(grow) >= 0.9, shared R=100", {"kind": "or", "rng": "grow", "thr": 0.9}),
    ("tail + 2 * CAD(grow) max of 5 rows > 3.5", {"kind": "sum", "rng": "grow", "w": 5, "c": 2, "Tsum": 3.5}),
    ("REFERENCE ours OR CAD(whole) >= 0.85", {"kind": "or", "rng": "whole", "thr": 0.85}),
    ("REFERENCE tail + 2 * CAD(whole) max of 5 rows > 4", {"kind": "sum", "rng": "whole", "w": 5, "c": 2, "Tsum": 4.0}),
]


def main():
    t0 = time.time()
    args = sys.argv[1:]
    files, cats = "--files" in args, "--cats" in args
    grid = next((a for a in args if a.startswith("{")), None)
    base = run({"kind": "ours"})[4] if (files or cats) else None
    if grid:
        for r in grid_rules(eval(grid)):
            show(None, r, base, files, cats)
    else:
        for label, r in TABLE:
            show(label, r, base, files, cats)
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
