"""Loading and validating the hole-by-hole scores table (CSV or Parquet) and the optional rounds table."""

from __future__ import annotations

import csv
import math
import operator
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tegbatchd.errors import InputError
from tegbatchd.teg.ranges import describe

# Columns the facts are computed from; the other columns of the real table (TEG, SI, HC, HCStrokes, Net,
# NetVP, HoleID, FrontBack) are welcome but not needed.
REQUIRED_COLUMNS = ("TEGNum", "Round", "Hole", "PAR", "Pl", "Player", "Sc", "GrossVP", "Stableford")
WHOLE_COLUMNS = ("TEGNum", "Round", "Hole", "PAR")
NUMBER_COLUMNS = ("Sc", "GrossVP", "Stableford")
ROUNDS_COLUMNS = ("TEGNum", "Round", "Date", "Course")
SHOWN_PROBLEMS = 5
PARQUET_HINT = "pip install 'tegbatchd[parquet]' (or use the CSV file)"


@dataclass(frozen=True)
class HoleScore:
    teg: int
    round: int
    hole: int
    par: int
    initials: str
    player: str
    strokes: int | float
    gross_vp: int | float
    stableford: int | float

    @property
    def front(self) -> bool:
        return self.hole <= 9


@dataclass(frozen=True)
class RoundInfo:
    teg: int
    round: int
    date: str
    course: str
    year: int | None


@dataclass
class ScoreTable:
    """All hole scores, indexed by TEG, plus round metadata (date, course) where known."""

    holes: list[HoleScore]
    source: Path
    round_infos: dict[tuple[int, int], RoundInfo] = field(default_factory=dict)
    rounds_source: Path | None = None

    def __post_init__(self) -> None:
        by_teg: dict[int, list[HoleScore]] = defaultdict(list)
        for h in self.holes:
            by_teg[h.teg].append(h)
        self._by_teg = {t: sorted(rows, key=lambda h: (h.round, h.hole, h.player)) for t, rows in by_teg.items()}

    def tegs(self) -> list[int]:
        return sorted(self._by_teg)

    def rounds(self, teg: int) -> list[int]:
        return sorted({h.round for h in self._by_teg.get(teg, [])})

    def rows(self, teg: int, round_no: int | None = None) -> list[HoleScore]:
        rows = self._by_teg.get(teg, [])
        return rows if round_no is None else [h for h in rows if h.round == round_no]

    def info(self, teg: int, round_no: int) -> RoundInfo | None:
        return self.round_infos.get((teg, round_no))

    def planned_rounds(self, teg: int) -> int:
        """Rounds of the tournament: the rounds table's count when it lists the TEG, else those played."""
        listed = [r for (t, r) in self.round_infos if t == teg]
        return max(listed + self.rounds(teg) + [0])

    def require_teg(self, teg: int) -> None:
        """Raise InputError naming the TEGs in the data when `teg` is not one of them."""
        if teg not in self._by_teg:
            raise InputError(f"TEG {teg} is not in {self.source.name} (available: TEG {describe(self.tegs())})",
                             next_step="pick one of the available TEGs or update the scores file")

    def require_round(self, teg: int, round_no: int) -> None:
        self.require_teg(teg)
        if round_no not in self.rounds(teg):
            raise InputError(f"TEG {teg} has no round {round_no} in {self.source.name} "
                             f"(available: round {describe(self.rounds(teg))})",
                             next_step="pick one of the available rounds")


# --- locating the files ---------------------------------------------------------------------------------
def _pyarrow_available() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _named_path(value: str, data_root: Path, explicit: bool, where: str) -> Path:
    """The absolute path of a file named by a flag (from the working folder) or the config (from the data
    root). Raise InputError for an unknown `~user` or a symlink loop."""
    try:
        path = Path(value).expanduser()
        return (path if explicit else data_root / path).resolve()
    except (RuntimeError, OSError) as exc:  # pathlib: "Symlink loop from ...", "Could not determine home"
        raise InputError(f"{where} {value!r} cannot be resolved ({str(exc).rstrip('.')})",
                         next_step=f"fix {where}") from None


def resolve_scores_path(explicit: str | None, data_root: Path, configured: str | None) -> Path:
    """Return the absolute scores file: `--scores`, else config scores_file (relative to the data root),
    else all-scores.parquet then all-scores.csv in the data root (the Parquet file is passed over for the
    CSV when pyarrow is missing). Raise InputError naming where it looked when nothing is there.
    """
    if explicit or configured:
        where = "--scores" if explicit else "config scores_file"
        path = _named_path(explicit or configured or "", data_root, bool(explicit), where)
        if not path.is_file():
            raise InputError(f"scores file {path} ({where}) does not exist",
                             next_step="check the path, or pass --scores FILE")
        return path
    parquet, csv_file = data_root / "all-scores.parquet", data_root / "all-scores.csv"
    if parquet.is_file() and (not csv_file.is_file() or _pyarrow_available()):
        return parquet.resolve()
    if csv_file.is_file():
        return csv_file.resolve()
    raise InputError(f"no scores file found: looked for {parquet} and {csv_file}",
                     next_step="pass --scores FILE, set scores_file in the config, or use --data-dir DIR")


def resolve_rounds_path(explicit: str | None, data_root: Path, configured: str | None,
                        scores_path: Path) -> Path | None:
    """Return the absolute rounds table, or None: `--rounds`, else config rounds_file (relative to the data
    root), else rounds.csv in the data root, else rounds.csv beside the scores file. A named file that is
    missing raises InputError; a missing default is fine (no dates or courses then).
    """
    if explicit or configured:
        where = "--rounds" if explicit else "config rounds_file"
        path = _named_path(explicit or configured or "", data_root, bool(explicit), where)
        if not path.is_file():
            raise InputError(f"rounds file {path} ({where}) does not exist",
                             next_step="check the path, or leave it out (dates and courses are optional)")
        return path
    for candidate in (data_root / "rounds.csv", scores_path.parent / "rounds.csv"):
        if candidate.is_file():
            return candidate.resolve()
    return None


# --- reading --------------------------------------------------------------------------------------------
def _read_csv(path: Path) -> tuple[list[str], list[dict], str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            records = list(reader)
            return list(reader.fieldnames or []), records, "line"
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text CSV file", next_step="export the table as UTF-8 CSV") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _read_csv_columns(path: Path, wanted: tuple[str, ...]) -> tuple[list[str], list[tuple], str]:
    """The CSV's header and, per record, the `wanted` cells as a tuple (None where a row is short or the
    column is absent): what csv.DictReader would give for those keys (blank lines skipped, the last of
    repeated header names), without a dict per row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            where = {name: i for i, name in enumerate(header)}
            index = [where.get(name, -1) for name in wanted]
            width = len(header)
            rows: list[tuple] = []
            append = rows.append
            absent = -1 in index
            pick = operator.itemgetter(*index) if len(index) > 1 else (lambda row: (row[index[0]],))
            for row in reader:
                if not row:
                    continue
                if len(row) < width or absent:
                    padded: list[str | None] = [*row, *[None] * (width - len(row))]
                    append(tuple(padded[i] if i >= 0 else None for i in index))
                else:
                    append(pick(row))
            return header, rows, "line"
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text CSV file", next_step="export the table as UTF-8 CSV") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _read_parquet(path: Path) -> tuple[list[str], list[dict], str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path} is a Parquet file and pyarrow is not installed", next_step=PARQUET_HINT) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{path}: cannot read the Parquet file ({exc})") from None
    return list(table.column_names), table.to_pylist(), "row"


def _row_label(unit: str, index: int) -> str:
    # CSV: the line a text editor shows (header is line 1); Parquet: the 1-based row number.
    return f"{unit} {index + 2 if unit == 'line' else index + 1}"


def _number(value) -> int | float | None:
    """A finite number from a CSV string or a Parquet value (whole numbers become int), else None."""
    if isinstance(value, str):
        try:
            number = float(value)  # accepts surrounding whitespace
        except ValueError:
            return None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


def _summarise(problems: list[str]) -> str:
    shown = ", ".join(problems[:SHOWN_PROBLEMS])
    more = len(problems) - SHOWN_PROBLEMS
    return shown + (f" (and {more} more)" if more > 0 else "")


def _check_columns(path: Path, columns: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}",
                         next_step=f"the table needs {', '.join(required)} (found: {', '.join(columns) or 'none'})")


def _whole(value) -> int | None:
    """_number for a whole-number column: the int, or None when it is not a finite whole number."""
    if type(value) is str:
        try:
            return int(value)  # the common case ("3"); "3.0", "3e0" and the like go the long way
        except ValueError:
            pass
    number = _number(value)
    return number if isinstance(number, int) else None


def _parse_holes(path: Path, records: list[tuple], unit: str) -> list[HoleScore]:
    """Hole scores from records holding the REQUIRED_COLUMNS cells in that order."""
    holes: list[HoleScore] = []
    append = holes.append
    bad: list[str] = []
    isfinite = math.isfinite
    for index, rec in enumerate(records):
        teg_s, round_s, hole_s, par_s, initials, player, sc_s, vp_s, pts_s = rec
        try:  # the fast path: every value a plain whole or finite number as text, the player named
            if (type(teg_s) is str and type(round_s) is str and type(hole_s) is str and type(par_s) is str
                    and type(sc_s) is str and type(vp_s) is str and type(pts_s) is str and type(player) is str):
                teg, round_no, hole, par = int(teg_s), int(round_s), int(hole_s), int(par_s)
                sc, vp, pts = float(sc_s), float(vp_s), float(pts_s)
                name = player.strip()
                if name and isfinite(sc + vp + pts):
                    append(HoleScore(teg, round_no, hole, par, str(initials or "").strip(), name,
                                     int(sc) if sc.is_integer() else sc, int(vp) if vp.is_integer() else vp,
                                     int(pts) if pts.is_integer() else pts))
                    continue
        except ValueError:
            pass
        values = {}  # the careful path: the same checks, one column at a time, naming what is wrong
        cells = dict(zip(REQUIRED_COLUMNS, rec, strict=True))
        for col in WHOLE_COLUMNS + NUMBER_COLUMNS:
            number = _whole(cells[col]) if col in WHOLE_COLUMNS else _number(cells[col])
            if number is None:
                kind = "whole number" if col in WHOLE_COLUMNS else "number"
                bad.append(f"{_row_label(unit, index)} ({col}={cells[col]!r}, not a {kind})")
                break
            values[col] = number
        else:
            name = str(player or "").strip()
            if not name:
                bad.append(f"{_row_label(unit, index)} (Player is blank)")
                continue
            append(HoleScore(int(values["TEGNum"]), int(values["Round"]), int(values["Hole"]),
                             int(values["PAR"]), str(initials or "").strip(), name,
                             values["Sc"], values["GrossVP"], values["Stableford"]))
    if bad:
        raise InputError(f"{path}: {len(bad)} row(s) with non-numeric or blank values: {_summarise(bad)}",
                         next_step="fix those rows in the scores file")
    return holes


def _check_duplicates(path: Path, holes: list[HoleScore], unit: str) -> None:
    if len({(h.teg, h.round, h.hole, h.player) for h in holes}) == len(holes):
        return
    seen: dict[tuple, list[int]] = defaultdict(list)
    for index, h in enumerate(holes):
        seen[(h.teg, h.round, h.hole, h.player)].append(index)
    dups = [(key, idx) for key, idx in seen.items() if len(idx) > 1]
    if dups:
        described = [f"TEG {t} R{r} H{hole} {player} on {' and '.join(_row_label(unit, i) for i in idx)}"
                     for (t, r, hole, player), idx in dups]
        raise InputError(f"{path}: {len(dups)} duplicate player-hole row(s): {_summarise(described)}",
                         next_step="keep one row per player per hole")


def load_scores(path: Path) -> list[HoleScore]:
    """Given a CSV or Parquet scores file, return its hole scores.

    Raise InputError for an unreadable file, missing columns, non-numeric values or duplicate player-hole
    rows, naming the first few rows (CSV: line numbers; Parquet: row numbers).
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        columns, dicts, unit = _read_parquet(path)
        records = [tuple(d.get(c) for c in REQUIRED_COLUMNS) for d in dicts]
    else:
        columns, records, unit = _read_csv_columns(path, REQUIRED_COLUMNS)
    _check_columns(path, columns, REQUIRED_COLUMNS)
    if not records:
        raise InputError(f"{path}: the table has no rows", next_step="check that it is the right file")
    holes = _parse_holes(path, records, unit)
    _check_duplicates(path, holes, unit)
    return holes


def load_rounds(path: Path | None) -> dict[tuple[int, int], RoundInfo]:
    """Given the optional rounds table (TEGNum, Round, Date, Course[, Year]), return it by (TEG, round)."""
    if path is None:
        return {}
    columns, records, unit = _read_csv(Path(path))
    _check_columns(path, columns, ROUNDS_COLUMNS)
    infos: dict[tuple[int, int], RoundInfo] = {}
    bad: list[str] = []
    for index, rec in enumerate(records):
        teg, round_no = _number(rec.get("TEGNum")), _number(rec.get("Round"))
        if not isinstance(teg, int) or not isinstance(round_no, int):
            bad.append(_row_label(unit, index))
            continue
        year = _number(rec.get("Year"))
        infos[(teg, round_no)] = RoundInfo(teg, round_no, str(rec.get("Date") or "").strip(),
                                           str(rec.get("Course") or "").strip(),
                                           year if isinstance(year, int) else None)
    if bad:
        raise InputError(f"{path}: TEGNum or Round is not a whole number on {_summarise(bad)}",
                         next_step="fix those rows in the rounds file")
    return infos


def load_table(scores_path: Path, rounds_path: Path | None = None) -> ScoreTable:
    """Load and validate the scores table and the optional rounds table. Raise InputError on bad input."""
    return ScoreTable(load_scores(scores_path), Path(scores_path), load_rounds(rounds_path),
                      Path(rounds_path) if rounds_path else None)
