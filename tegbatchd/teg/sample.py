"""A deterministic synthetic TEG data set: fictional players and courses, same columns as the real table.

Three tournaments (TEG 1 and TEG 3 with four rounds, TEG 2 with three), five players each, with the real
arithmetic: HCStrokes from handicap and stroke index, GrossVP = Sc - PAR, Net = Sc - HCStrokes,
NetVP = Net - PAR, Stableford = max(0, 2 - NetVP). Run `python -m tegbatchd.teg.sample DIR` to write
DIR/all-scores.csv and DIR/rounds.csv; the same files come out every time.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
from pathlib import Path

SEED = 20240517
COLUMNS = ["TEG", "Round", "Hole", "PAR", "SI", "Pl", "Sc", "HC", "HCStrokes", "GrossVP", "Net", "NetVP",
           "Stableford", "TEGNum", "HoleID", "Player", "FrontBack"]
ROUNDS_COLUMNS = ["TEGNum", "TEG", "Round", "Date", "Course", "Year"]
PLAYERS = {"Callum BRENNAN": "CB", "Fergus DOYLE": "FD", "Marcus ELLERY": "ME", "Owen HARTLEY": "OH",
           "Rupert QUINN": "RQ", "Tobias WREN": "TW"}
BASE_HANDICAP = {"Callum BRENNAN": 12, "Fergus DOYLE": 18, "Marcus ELLERY": 9, "Owen HARTLEY": 24,
                 "Rupert QUINN": 15, "Tobias WREN": 28}
# (TEG number, year, first day (dd/mm), players, courses per round)
TOURNAMENTS = [
    (1, 2021, (14, 10), ["Callum BRENNAN", "Fergus DOYLE", "Marcus ELLERY", "Owen HARTLEY", "Rupert QUINN"],
     ["Gorse Hill", "Saltmarsh Links", "Gorse Hill", "Heron Bay"]),
    (2, 2022, (6, 10), ["Callum BRENNAN", "Fergus DOYLE", "Marcus ELLERY", "Owen HARTLEY", "Tobias WREN"],
     ["Quarry Wood", "Quarry Wood", "Kestrel Downs"]),
    (3, 2023, (19, 10), ["Callum BRENNAN", "Fergus DOYLE", "Marcus ELLERY", "Rupert QUINN", "Tobias WREN"],
     ["Heron Bay", "Saltmarsh Links", "Kestrel Downs", "Heron Bay"]),
]
OVER_PAR = [-2, -1, 0, 1, 2, 3, 4, 5]


def _course(name: str) -> list[tuple[int, int]]:
    """(par, stroke index) for holes 1..18 of a fictional course, derived from its name."""
    rng = random.Random(f"{SEED}-{name}")
    pars = [3] * 4 + [5] * 4 + [4] * 10
    rng.shuffle(pars)
    indexes = list(range(1, 19))
    rng.shuffle(indexes)
    return list(zip(pars, indexes, strict=True))


def _weights(handicap: int) -> list[float]:
    raw = [0.005, max(0.02, 0.15 - handicap * 0.004), max(0.12, 0.45 - handicap * 0.012), 0.35,
           0.10 + handicap * 0.006, 0.02 + handicap * 0.004, 0.005 + handicap * 0.002, handicap * 0.001]
    total = sum(raw)
    return [w / total for w in raw]


def _strokes(rng: random.Random, par: int, handicap: int) -> int:
    draw, acc = rng.random(), 0.0
    for over, weight in zip(OVER_PAR, _weights(handicap), strict=True):
        acc += weight
        if draw < acc:
            return max(1, par + over)
    return par + OVER_PAR[-1]


def hole_row(teg: int, round_no: int, hole: int, par: int, si: int, player: str, strokes: int, hc: int) -> list:
    """One scores row with the real table's columns and arithmetic."""
    received = hc // 18 + (1 if si <= hc % 18 else 0)
    net = strokes - received
    net_vp = net - par
    points = max(0, 2 - net_vp)
    return [f"TEG {teg}", round_no, hole, par, si, PLAYERS[player], float(strokes), float(hc), float(received),
            float(strokes - par), float(net), float(net_vp), float(points), teg,
            f"T{teg}|R{round_no:02d}|H{hole:02d}", player, "Front" if hole <= 9 else "Back"]


def generate() -> tuple[list[list], list[list]]:
    """Return (scores rows, rounds rows) of the sample data set, without headers."""
    rng = random.Random(SEED)
    scores, rounds = [], []
    for teg, year, (day, month), players, courses in TOURNAMENTS:
        handicaps = {p: BASE_HANDICAP[p] + rng.randint(-2, 2) for p in players}
        for round_no, course in enumerate(courses, start=1):
            rounds.append([teg, f"TEG {teg}", round_no, f"{day + round_no - 1:02d}/{month:02d}/{year}", course, year])
            layout = _course(course)
            for player in players:
                for hole, (par, si) in enumerate(layout, start=1):
                    strokes = _strokes(rng, par, handicaps[player])
                    scores.append(hole_row(teg, round_no, hole, par, si, player, strokes, handicaps[player]))
    return scores, rounds


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def sample_texts() -> dict[str, str]:
    """The sample data set as file name -> CSV text (all-scores.csv, rounds.csv)."""
    scores, rounds = generate()
    return {"all-scores.csv": _csv_text(COLUMNS, scores), "rounds.csv": _csv_text(ROUNDS_COLUMNS, rounds)}


def write_sample(directory: Path) -> list[Path]:
    """Write all-scores.csv and rounds.csv into directory (created if needed); return the two paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sample_texts().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tegbatchd.teg.sample",
                                     description="Write a synthetic TEG data set (fictional players).")
    parser.add_argument("directory", help="folder to write all-scores.csv and rounds.csv into")
    args = parser.parse_args(argv)
    for path in write_sample(Path(args.directory)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
