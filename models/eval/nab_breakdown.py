#!/usr/bin/env python3
"""Where a replay's NAB standard-profile points are on nab-dev (development data only).

Runs the replay binary over every nab-dev file as `evaluate.py --nab` does, scores its event
onsets with the same NAB re-implementation (`evaluate.nab_sigmoid`), and splits the raw score
into what the windows found earn (each by how early in its window the first onset came), what the
missed windows cost and what the onsets outside windows cost, for the Twitter files and the rest.

    python3 models/eval/nab_breakdown.py --binary target/release/examples/replay [--replay-arg ARG ...]

The normalised score is 100 * (raw + windows) / (2 * windows), as in `evaluate.py`.
"""
import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate as ev  # noqa: E402


def file_parts(ts, opened, windows):
    """(earned by found windows, positions of their first onsets, missed windows, cost outside)."""
    index = {t: i for i, t in enumerate(ts)}
    wins = [(index[a.split(".")[0]], index[b.split(".")[0]]) for a, b in windows]
    n = len(ts)
    probation = int(min(math.floor(0.15 * n), 0.15 * 5000))
    max_tp = ev.nab_sigmoid(-1.0)
    first = [None] * len(wins)
    tp = outside = 0.0
    for i in np.flatnonzero(opened):
        if i < probation:
            continue
        k = next((k for k, (a, b) in enumerate(wins) if a <= i <= b), None)
        if k is not None:
            if first[k] is None:
                a, b = wins[k]
                first[k] = (i - a) / (b - a + 1)
                tp += ev.nab_sigmoid(-(b - i + 1) / (b - a + 1)) / max_tp
            continue
        before = [(a, b) for a, b in wins if b < i]
        if before:
            a, b = before[-1]
            outside += 0.11 * ev.nab_sigmoid(abs(b - i) / float(max(b - a, 1)))
        else:
            outside -= 0.11
    found = [p for p in first if p is not None]
    return tp, found, len(first) - len(found), outside


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    ap.add_argument("--replay-arg", action="append", default=[])
    args = ap.parse_args()
    extra = [a for arg in args.replay_arg for a in arg.split()]
    nab = Path(args.data) / "nab-dev"
    windows = json.loads((nab / "combined_windows.json").read_text())
    groups = {"Twitter": [0.0, [], 0, 0.0, 0], "other": [0.0, [], 0, 0.0, 0]}
    for name in sorted(windows):
        with open(nab / name) as fh:
            ts = [row[0] for row in list(csv.reader(fh))[1:]]
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "out.csv"
            cmd = [args.binary, "replay", "--input", str(nab / name), "--output", str(out), *extra]
            subprocess.run(cmd, check=True, capture_output=True)
            cols = [line.split(",") for line in out.read_text().splitlines()[1:]]
        opened = np.array([c[4] == "1" for c in cols])
        tp, found, missed, outside = file_parts(ts, opened, windows[name])
        g = groups["Twitter" if "Twitter" in name else "other"]
        g[0] += tp
        g[1] += found
        g[2] += missed
        g[3] += outside
        g[4] += len(windows[name])
    n_win = sum(g[4] for g in groups.values())
    raw = sum(g[0] - g[2] + g[3] for g in groups.values())
    print(f"normalised score {100.0 * (raw + n_win) / (2.0 * n_win):.1f} (raw {raw:.2f}, {n_win} windows)")
    for name, (tp, found, missed, outside, w) in groups.items():
        q = np.round(np.quantile(found, [0.1, 0.5, 0.9]), 2) if found else []
        print(
            f"{name:8s} windows {w:3d}: found {len(found):3d} earning {tp:6.2f} (mean {tp / max(len(found), 1):.3f}, "
            f"first onset at {q} of the window), missed {missed} (-{missed}), outside {outside:+.2f}"
        )


if __name__ == "__main__":
    main()
