"""`tegbatchd teg summary` as a person runs it: real data, bad files, unknown TEGs and rounds."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest

from tegbatchd.cli import main
from tests.conftest import FIXTURES
from tests.support.teg_expected import round_sums
from tests.support.teg_expected import totals as _totals
from tests.support.teg_expected import winner as _winner

REAL = FIXTURES / "teg"
# Run the CLI with pyarrow made unimportable (as when the `parquet` extra is not installed).
NO_PYARROW = ("import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None; "
              "from tegbatchd.cli import main; raise SystemExit(main(sys.argv[1:]))")


@pytest.fixture(scope="module")
def sums():
    return round_sums(REAL / "all-scores.csv")


@pytest.fixture
def with_real_data(data_root):
    shutil.copy(REAL / "all-scores.csv", data_root)
    shutil.copy(REAL / "rounds.csv", data_root)
    return data_root


def _run_json(capsys, *argv) -> dict:
    assert main(["teg", "summary", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("teg", range(2, 19))
def test_summary_of_every_teg_matches_simple_sums(capsys, sums, teg):
    payload = _run_json(capsys, "--teg", str(teg), "--scores", str(REAL / "all-scores.csv"))
    pts, gross = _totals(sums, teg)
    t = payload["tournament"]
    assert (t["trophy"], t["green_jacket"], t["wooden_spoon"]) == (
        _winner(pts, max), _winner(gross, min), _winner(pts, min))
    assert {p["name"]: (p["stableford"], p["gross_vs_par"]) for p in payload["players"]} == \
        {p: (pts[p], gross[p]) for p in pts}
    rounds = sorted({r for (x, r, _) in sums if x == teg})
    assert [(x["round"], x["leader"]) for x in t["leader_after_round"]] == \
        [(r, _winner(_totals(sums, teg, r)[0], max)) for r in rounds]


@pytest.mark.parametrize("teg", [2, 10, 17])
def test_round_summary_leader_and_positions_after_every_round(capsys, sums, teg):
    pts, gross = _totals(sums, teg)
    for round_no in sorted({r for (x, r, _) in sums if x == teg}):
        rp = _run_json(capsys, "--teg", str(teg), "--round", str(round_no), "--scores", str(REAL / "all-scores.csv"))
        upto, _ = _totals(sums, teg, round_no)
        assert rp["leader"] == _winner(upto, max)
        for p in rp["players"]:
            assert p["round_stableford"] == sums[(teg, round_no, p["name"])][0]
            assert p["cumulative_stableford"] == upto[p["name"]]
            assert (p["stableford"], p["gross_vs_par"]) == (pts[p["name"]], gross[p["name"]])
            better = sum(1 for v in upto.values() if v > upto[p["name"]])
            tied = sum(1 for v in upto.values() if v == upto[p["name"]]) > 1
            assert p["position"] == f"{'T' if tied else ''}{better + 1}"


def test_summary_as_a_subprocess_finds_the_data_root(cli, with_real_data):
    result = cli("teg", "summary", "--teg", "2", "--json")
    assert result.code == 0, result.err
    payload = result.json()
    assert payload["tournament"]["rounds_played"] == 3
    assert payload["scores_file"] == str((with_real_data / "all-scores.csv").resolve())
    assert payload["tournament"]["courses"] == ["Boavista"]


def test_summary_text_is_a_readable_table(cli, with_real_data):
    result = cli("teg", "summary", "--teg", "17")
    assert result.code == 0, result.err
    out = result.out
    assert out.startswith("TEG 17 · 2024 · Praia D'El Rey, West Cliffs, Royal Óbidos")
    assert "Pos  Player" in out and "Points  Gross" in out
    assert "TEG Trophy: Jon BAKER, 166 pts, by 18 from David MULLIN (148 pts)" in out
    assert "Wooden Spoon: Gregg WILLIAMS, 123 pts, 12 behind Alex BAKER & John PATTERSON (135 pts)" in out
    assert "T3   Alex BAKER" in out

    rnd = cli("teg", "summary", "--teg", "17", "--round", "2")
    assert rnd.code == 0, rnd.err
    assert rnd.out.startswith("TEG 17 round 2 of 4 · West Cliffs · 06/10/2024")
    assert "Leader after round 2: Jon BAKER by 2 (before: John PATTERSON)" in rnd.out
    assert "Rounds remaining: 2" in rnd.out


def test_ties_show_in_json_and_text(cli, data_root):
    from tegbatchd.teg.sample import write_sample

    write_sample(data_root)  # the sample's TEG 2 ends in a tie for the Trophy
    payload = cli("teg", "summary", "--teg", "2", "--json").json()
    assert payload["tournament"]["trophy"] == "Callum BRENNAN & Marcus ELLERY"
    assert payload["tournament"]["competitions"]["trophy"]["winners"] == ["Callum BRENNAN", "Marcus ELLERY"]
    assert [p["position"] for p in payload["players"]][:2] == ["T1", "T1"]
    text = cli("teg", "summary", "--teg", "2").out
    assert "TEG Trophy: Callum BRENNAN & Marcus ELLERY, 105 pts (tied)" in text


def test_unknown_teg_and_round_list_the_available_ones(cli, with_real_data):
    result = cli("teg", "summary", "--teg", "19")
    assert result.code == 2
    assert "TEG 19 is not in all-scores.csv (available: TEG 2–18)" in result.err
    result = cli("teg", "summary", "--teg", "2", "--round", "4")
    assert result.code == 2
    assert "TEG 2 has no round 4 in all-scores.csv (available: round 1–3)" in result.err
    result = cli("teg", "summary", "--teg", "10-12")
    assert result.code == 2 and "takes one number" in result.err


def test_no_scores_file_says_where_it_looked(cli, data_root):
    result = cli("teg", "summary", "--teg", "17")
    assert result.code == 2
    assert f"no scores file found: looked for {data_root / 'all-scores.parquet'} and " in result.err
    assert "--scores FILE" in result.err
    assert "Traceback" not in result.err


def _bad_copy(tmp_path, change):
    with (REAL / "all-scores.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = list(reader.fieldnames), list(reader)
    header = change(header, rows) or header
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _drop_column(header, rows):
    return [c for c in header if c != "GrossVP"]


def _letter_score(header, rows):
    rows[10]["Sc"] = "four"


def _duplicate(header, rows):
    rows.insert(3, dict(rows[2]))


@pytest.mark.parametrize("change, message", [
    (_drop_column, "bad.csv: missing column(s) GrossVP"),
    (_letter_score, "1 row(s) with non-numeric or blank values: line 12 (Sc='four', not a number)"),
    (_duplicate, "1 duplicate player-hole row(s): TEG 10 R1 H3 David MULLIN on line 4 and line 5"),
])
def test_bad_scores_files_exit_2_with_a_clear_message(cli, tmp_path, change, message):
    bad = _bad_copy(tmp_path, change)
    result = cli("teg", "summary", "--teg", "10", "--scores", str(bad))
    assert result.code == 2
    assert message in result.err
    assert result.err.startswith("error: ") and "Traceback" not in result.err


def test_parquet_without_pyarrow_says_what_to_install(cli, tmp_path):
    shutil.copy(REAL / "all-scores.parquet", tmp_path)
    proc = subprocess.run([sys.executable, "-c", NO_PYARROW, "teg", "summary", "--teg", "17",
                           "--scores", str(tmp_path / "all-scores.parquet")],
                          capture_output=True, text=True, env=cli.env, cwd=cli.cwd)
    assert proc.returncode == 2
    assert "is a Parquet file and pyarrow is not installed" in proc.stderr
    assert "pip install 'tegbatchd[parquet]'" in proc.stderr


def test_without_pyarrow_the_csv_beside_the_parquet_is_used(cli, data_root):
    shutil.copy(REAL / "all-scores.parquet", data_root)
    shutil.copy(REAL / "all-scores.csv", data_root)
    proc = subprocess.run([sys.executable, "-c", NO_PYARROW, "teg", "summary", "--teg", "17", "--json"],
                          capture_output=True, text=True, env=cli.env, cwd=cli.cwd)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["scores_file"].endswith("all-scores.csv")


def test_parquet_is_preferred_when_pyarrow_is_there(cli, data_root):
    pytest.importorskip("pyarrow")
    shutil.copy(REAL / "all-scores.parquet", data_root)
    shutil.copy(REAL / "all-scores.csv", data_root)
    payload = cli("teg", "summary", "--teg", "17", "--json").json()
    assert payload["scores_file"].endswith("all-scores.parquet")
    assert payload["tournament"]["trophy"] == "Jon BAKER"
