"""Loading and validating the scores table, locating it, ranges, and the synthetic sample data set."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tegbatchd.errors import InputError
from tegbatchd.teg import sample
from tegbatchd.teg.data import load_rounds, load_scores, load_table, resolve_rounds_path, resolve_scores_path
from tegbatchd.teg.ranges import describe, parse_numbers, range_from_pair
from tests.conftest import FIXTURES

REAL_CSV = FIXTURES / "teg" / "all-scores.csv"
REAL_PARQUET = FIXTURES / "teg" / "all-scores.parquet"
REAL_ROUNDS = FIXTURES / "teg" / "rounds.csv"
REPO = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


def _write(path: Path, header: list[str], rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_real_csv_loads_every_row():
    holes = load_scores(REAL_CSV)
    _, rows = _rows(REAL_CSV)
    assert len(holes) == len(rows)
    assert {h.teg for h in holes} == set(range(2, 19))
    first = holes[0]
    assert (first.teg, first.round, first.hole, first.player) == (10, 1, 1, "David MULLIN")
    assert isinstance(first.stableford, int) and first.stableford == 3


def test_parquet_gives_the_same_table_as_csv():
    pytest.importorskip("pyarrow")
    assert load_scores(REAL_PARQUET) == load_scores(REAL_CSV)


def test_rounds_table_gives_course_and_date():
    table = load_table(REAL_CSV, REAL_ROUNDS)
    info = table.info(17, 3)
    assert (info.course, info.date, info.year) == ("Royal Óbidos", "07/10/2024", 2024)
    assert table.rounds(2) == [1, 2, 3] and table.planned_rounds(2) == 3


def test_missing_column_is_named(tmp_path):
    header, rows = _rows(REAL_CSV)
    bad = _write(tmp_path / "s.csv", [c for c in header if c != "Stableford"], rows)
    with pytest.raises(InputError) as exc:
        load_scores(bad)
    assert "missing column(s) Stableford" in exc.value.message
    assert exc.value.exit_code == 2


def test_non_numeric_scores_name_their_lines(tmp_path):
    header, rows = _rows(REAL_CSV)
    rows[3]["Sc"] = "x"  # line 5 of the file (header is line 1)
    rows[7]["Stableford"] = ""  # line 9
    with pytest.raises(InputError) as exc:
        load_scores(_write(tmp_path / "s.csv", header, rows))
    msg = exc.value.message
    assert "2 row(s) with non-numeric or blank values" in msg
    assert "line 5 (Sc='x', not a number)" in msg and "line 9 (Stableford=''" in msg


def test_many_bad_rows_show_the_first_few(tmp_path):
    header, rows = _rows(REAL_CSV)
    for row in rows[:12]:
        row["GrossVP"] = "n/a"
    with pytest.raises(InputError) as exc:
        load_scores(_write(tmp_path / "s.csv", header, rows))
    assert "line 2 " in exc.value.message and "(and 7 more)" in exc.value.message


def test_fractional_round_number_is_rejected(tmp_path):
    header, rows = _rows(REAL_CSV)
    rows[0]["Round"] = "1.5"
    with pytest.raises(InputError, match=r"line 2 \(Round='1.5', not a whole number\)"):
        load_scores(_write(tmp_path / "s.csv", header, rows))


def test_duplicate_player_hole_rows_name_both_lines(tmp_path):
    header, rows = _rows(REAL_CSV)
    rows.append(dict(rows[0]))
    with pytest.raises(InputError) as exc:
        load_scores(_write(tmp_path / "s.csv", header, rows))
    assert "1 duplicate player-hole row(s)" in exc.value.message
    assert f"TEG 10 R1 H1 David MULLIN on line 2 and line {len(rows) + 1}" in exc.value.message


def test_bad_parquet_rows_are_numbered(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pq.read_table(REAL_PARQUET)
    sc = table.column("Sc").to_pylist()
    sc[4] = None
    table = table.set_column(table.column_names.index("Sc"), "Sc", pa.array(sc, pa.float64()))
    pq.write_table(table, tmp_path / "s.parquet")
    with pytest.raises(InputError, match=r"row 5 \(Sc=None"):
        load_scores(tmp_path / "s.parquet")


def test_empty_table_is_refused(tmp_path):
    header, _ = _rows(REAL_CSV)
    with pytest.raises(InputError, match="no rows"):
        load_scores(_write(tmp_path / "s.csv", header, []))


def test_rounds_table_with_bad_numbers(tmp_path):
    (tmp_path / "r.csv").write_text("TEGNum,Round,Date,Course\n17,one,05/10/2024,Praia\n")
    with pytest.raises(InputError, match="line 2"):
        load_rounds(tmp_path / "r.csv")


# --- where the scores file is looked for ---------------------------------------------------------------
def test_default_prefers_parquet_then_csv(tmp_path):
    pytest.importorskip("pyarrow")
    shutil.copy(REAL_CSV, tmp_path)
    assert resolve_scores_path(None, tmp_path, None) == (tmp_path / "all-scores.csv").resolve()
    shutil.copy(REAL_PARQUET, tmp_path)
    assert resolve_scores_path(None, tmp_path, None) == (tmp_path / "all-scores.parquet").resolve()


def test_config_scores_file_is_relative_to_the_data_root(tmp_path):
    (tmp_path / "tables").mkdir()
    shutil.copy(REAL_CSV, tmp_path / "tables" / "mine.csv")
    assert resolve_scores_path(None, tmp_path, "tables/mine.csv") == (tmp_path / "tables" / "mine.csv").resolve()
    with pytest.raises(InputError, match=r"config scores_file\) does not exist"):
        resolve_scores_path(None, tmp_path, "tables/other.csv")


def test_no_scores_file_names_where_it_looked(tmp_path):
    with pytest.raises(InputError) as exc:
        resolve_scores_path(None, tmp_path, None)
    assert str(tmp_path / "all-scores.parquet") in exc.value.message
    assert str(tmp_path / "all-scores.csv") in exc.value.message


def test_rounds_file_found_beside_the_scores_file(tmp_path):
    assert resolve_rounds_path(None, tmp_path, None, REAL_CSV) == REAL_ROUNDS.resolve()
    assert resolve_rounds_path(None, tmp_path, None, tmp_path / "x.csv") is None
    with pytest.raises(InputError, match="--rounds"):
        resolve_rounds_path(str(tmp_path / "nope.csv"), tmp_path, None, REAL_CSV)


# --- ranges ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [("17", [17]), ("10-17", list(range(10, 18))), ("10–12", [10, 11, 12]),
                                            ("1,3-4", [1, 3, 4]), (" 3 - 5 ", [3, 4, 5])])
def test_ranges_people_type(text, expected):
    assert parse_numbers(text) == expected


@pytest.mark.parametrize("text", ["17-10", "ten", "", "3-", "1-2-3"])
def test_bad_ranges_are_input_errors(text):
    with pytest.raises(InputError):
        parse_numbers(text)


def test_range_pair_and_description():
    assert range_from_pair("3", "17") == list(range(3, 18))
    with pytest.raises(InputError, match="backwards"):
        range_from_pair(17, 3)
    assert describe([2, 3, 4, 7, 9, 10]) == "2–4, 7, 9–10"


# --- the sample data set --------------------------------------------------------------------------------
def test_sample_is_deterministic_and_committed(tmp_path):
    written = sample.write_sample(tmp_path)
    for path in written:
        assert path.read_bytes() == (REPO / "data" / "sample" / path.name).read_bytes(), path.name
    assert sample.generate() == sample.generate()


def test_sample_has_the_real_schema_and_arithmetic(tmp_path):
    sample.write_sample(tmp_path)
    header, rows = _rows(tmp_path / "all-scores.csv")
    real_header, _ = _rows(REAL_CSV)
    assert header == real_header
    assert list(_rows(tmp_path / "rounds.csv")[0]) == list(_rows(REAL_ROUNDS)[0])
    for r in rows:
        sc, par, hc, si, received = (float(r["Sc"]), int(r["PAR"]), int(float(r["HC"])), int(r["SI"]),
                                     float(r["HCStrokes"]))
        assert received == hc // 18 + (1 if si <= hc % 18 else 0)
        assert float(r["GrossVP"]) == sc - par
        assert float(r["Net"]) == sc - received
        assert float(r["NetVP"]) == sc - received - par
        assert float(r["Stableford"]) == max(0, 2 - (sc - received - par))
        assert r["HoleID"] == f"T{r['TEGNum']}|R{int(r['Round']):02d}|H{int(r['Hole']):02d}"
        assert r["FrontBack"] == ("Front" if int(r["Hole"]) <= 9 else "Back")


def test_sample_passes_the_loader_with_three_tournaments(tmp_path):
    sample.write_sample(tmp_path)
    table = load_table(tmp_path / "all-scores.csv", tmp_path / "rounds.csv")
    assert table.tegs() == [1, 2, 3]
    assert sorted(len(table.rounds(t)) for t in table.tegs()) == [3, 4, 4]
    for t in table.tegs():
        for r in table.rounds(t):
            assert len(table.rows(t, r)) == 5 * 18
    real_players = {h.player for h in load_scores(REAL_CSV)}
    assert not real_players & {h.player for h in table.holes}


def test_sample_runs_as_a_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tegbatchd.teg.sample", str(tmp_path / "out")],
                          capture_output=True, text=True, check=True)
    assert "all-scores.csv" in proc.stdout
    assert (tmp_path / "out" / "all-scores.csv").read_bytes() == (REPO / "data/sample/all-scores.csv").read_bytes()
