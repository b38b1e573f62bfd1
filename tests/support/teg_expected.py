"""Expected TEG figures computed independently of the package: plain sums of the real CSV."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path


def round_sums(csv_path: Path) -> dict[tuple, list[float]]:
    """(teg, round, player) → [stableford, grossvp], summed with the csv module."""
    out: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
    with csv_path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            key = (int(row["TEGNum"]), int(row["Round"]), row["Player"])
            out[key][0] += float(row["Stableford"])
            out[key][1] += float(row["GrossVP"])
    return out


def totals(sums, teg, upto=99):
    """Per player, Stableford and GrossVP totals of a TEG up to a round."""
    pts, gross = defaultdict(float), defaultdict(float)
    for (t, r, p), (s, g) in sums.items():
        if t == teg and r <= upto:
            pts[p] += s
            gross[p] += g
    return pts, gross


def winner(values: dict, pick) -> str:
    """The player(s) with the best value; ties joined with " & " in name order."""
    best = pick(values.values())
    return " & ".join(sorted(p for p, v in values.items() if v == best))
