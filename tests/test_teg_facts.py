"""Facts from the scores: checked against simple sums made here with the csv module, and small made-up rounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tegbatchd.errors import InputError
from tegbatchd.teg.data import HoleScore, ScoreTable, load_table
from tegbatchd.teg.facts import (
    competition,
    count_lead_changes,
    lead_history,
    rank,
    round_facts,
    streaks,
    tournament_facts,
)
from tests.conftest import FIXTURES
from tests.support.teg_expected import round_sums
from tests.support.teg_expected import totals as _totals
from tests.support.teg_expected import winner as _winner

REAL_CSV = FIXTURES / "teg" / "all-scores.csv"
REAL_ROUNDS = FIXTURES / "teg" / "rounds.csv"


@pytest.fixture(scope="module")
def table() -> ScoreTable:
    return load_table(REAL_CSV, REAL_ROUNDS)


@pytest.fixture(scope="module")
def sums():
    return round_sums(REAL_CSV)


@pytest.mark.parametrize("teg", range(2, 19))
def test_tournament_winners_and_totals(table, sums, teg):
    facts = tournament_facts(table, teg)
    pts, gross = _totals(sums, teg)
    t = facts["tournament"]
    assert t["trophy"] == _winner(pts, max)
    assert t["green_jacket"] == _winner(gross, min)
    assert t["wooden_spoon"] == _winner(pts, min)
    assert {p["name"]: (p["stableford"], p["gross_vs_par"]) for p in facts["players"]} == \
        {p: (pts[p], gross[p]) for p in pts}
    ordered = sorted(pts.values(), reverse=True)
    assert t["competitions"]["trophy"]["margin"] == ordered[0] - next(v for v in ordered if v != ordered[0])


@pytest.mark.parametrize("teg", range(2, 19))
def test_leader_after_every_round(table, sums, teg):
    rounds = sorted({r for (t, r, _) in sums if t == teg})
    summary = tournament_facts(table, teg)["tournament"]["leader_after_round"]
    assert [x["round"] for x in summary] == rounds
    for entry in summary:
        pts, gross = _totals(sums, teg, entry["round"])
        rf = round_facts(table, teg, entry["round"])
        assert rf["leader"] == entry["leader"] == _winner(pts, max)
        assert rf["gross_leader"] == entry["gross_leader"] == _winner(gross, min)
        for p in rf["players"]:
            assert p["cumulative_stableford"] == pts[p["name"]]
            assert p["round_stableford"] == sums[(teg, entry["round"], p["name"])][0]
            assert p["front_stableford"] + p["back_stableford"] == p["round_stableford"]
            assert p["front_gross_vs_par"] + p["back_gross_vs_par"] == p["round_gross_vs_par"]
            assert sum(p["points_by_hole"]) == p["round_stableford"]


def test_round_facts_know_nothing_of_later_rounds(table):
    rf = round_facts(table, 17, 2)
    assert rf["round"]["of"] == 4 and rf["round"]["rounds_remaining"] == 2
    final = {p["name"]: p["stableford"] for p in tournament_facts(table, 17)["players"]}
    assert all(p["cumulative_stableford"] < final[p["name"]] for p in rf["players"])


def test_projection_is_gap_over_rounds_remaining(table):
    rf = round_facts(table, 17, 2)
    proj = rf["projection"]
    leader_pts = max(p["cumulative_stableford"] for p in rf["players"])
    for chaser in proj["chasers"]:
        player = next(p for p in rf["players"] if p["name"] == chaser["name"])
        assert chaser["gap"] == leader_pts - player["cumulative_stableford"] == player["gap_to_leader"]
        assert chaser["extra_points_per_round"] == round(chaser["gap"] / 2, 1)
    assert round_facts(table, 17, 4)["projection"]["final"] is True


def test_positions_before_and_after(table):
    rf = round_facts(table, 17, 2)
    first = round_facts(table, 17, 1)
    before = {p["name"]: p["position"] for p in first["players"]}
    for p in rf["players"]:
        assert p["position_before"] == before[p["name"]]
    assert all(p["position_before"] is None for p in first["players"])


def test_unknown_teg_and_round_list_what_exists(table):
    with pytest.raises(InputError, match=r"TEG 1 is not in all-scores.csv \(available: TEG 2–18\)"):
        tournament_facts(table, 1)
    with pytest.raises(InputError, match=r"TEG 2 has no round 4 .*available: round 1–3"):
        round_facts(table, 2, 4)


# --- small made-up data ---------------------------------------------------------------------------------
def _hole(player, hole, points, gross_vp=0, round_no=1, teg=1, par=4):
    return HoleScore(teg, round_no, hole, par, player[:2].upper(), player, par + gross_vp, gross_vp, points)


def test_ties_share_a_position_and_winners_are_joined():
    assert rank({"A": 40, "B": 38, "C": 38, "D": 30}) == {"A": (1, "1"), "B": (2, "T2"), "C": (2, "T2"),
                                                          "D": (4, "4")}
    tied = competition({"Zed": 40, "Amy": 40, "Bob": 35}, True)
    assert tied["winner"] == "Amy & Zed" and tied["winners"] == ["Amy", "Zed"] and tied["tied"]
    assert (tied["next"], tied["margin"]) == ("Bob", 5)
    sole = competition({"Zed": 70, "Amy": 72}, False)
    assert sole["winner"] == "Zed" and not sole["tied"]


def test_tied_tournament_in_json_facts():
    holes = [_hole(p, h, 2) for p in ("Amy", "Bob") for h in range(1, 19)]
    holes += [_hole("Cat", h, 1) for h in range(1, 19)]
    facts = tournament_facts(ScoreTable(holes, Path("x.csv")), 1)
    assert facts["tournament"]["trophy"] == "Amy & Bob"
    assert [p["position"] for p in facts["players"]] == ["T1", "T1", "3"]


def test_streaks_of_three_or_more():
    points = [3, 2, 2, 0, 0, 0, 1, 2, 2, 4, 2, 1, 0, 0, 2, 2, 2, 2]
    holes = [_hole("Amy", i + 1, pts, gross_vp=2 - pts) for i, pts in enumerate(points)]
    found = {(s["kind"], s["from_hole"], s["to_hole"]) for s in streaks(holes)}
    assert ("scoring", 1, 3) in found and ("scoring", 8, 11) in found and ("scoring", 15, 18) in found
    assert ("zero_points", 4, 6) in found
    assert not any(k == "zero_points" and a == 13 for k, a, _ in found)  # only two in a row
    assert ("par_or_better", 8, 11) in found


def test_lead_changes_hole_by_hole_across_rounds():
    holes = [_hole("Amy", 1, 3), _hole("Bob", 1, 2), _hole("Amy", 2, 0), _hole("Bob", 2, 2),
             _hole("Amy", 1, 2, round_no=2), _hole("Bob", 1, 1, round_no=2),
             _hole("Amy", 2, 3, round_no=2), _hole("Bob", 2, 2, round_no=2)]
    events = lead_history(holes)
    assert [(e["round"], e["hole"], e["leaders"]) for e in events] == [
        (1, 1, ["Amy"]), (1, 2, ["Bob"]), (2, 1, ["Amy", "Bob"]), (2, 2, ["Amy"])]
    assert count_lead_changes(events) == 2
    facts = round_facts(ScoreTable(holes, Path("x.csv")), 1, 2)
    assert [e["hole"] for e in facts["round"]["lead_changes"]] == [1, 2]


def test_eagles_birdies_and_zero_point_holes():
    holes = [_hole("Amy", 1, 4, gross_vp=-2), _hole("Amy", 2, 3, gross_vp=-1), _hole("Amy", 3, 0, gross_vp=3)]
    player = round_facts(ScoreTable(holes, Path("x.csv")), 1, 1)["players"][0]
    assert (player["eagles"], player["birdies"], player["zero_point_holes"]) == ([1], [2], [3])
    assert player["strokes_by_hole"][:3] == [2, 3, 7] and player["strokes_by_hole"][3] is None


def test_hole_difficulty_names_hardest_and_easiest(table):
    rf = round_facts(table, 17, 2)
    holes = rf["round"]["holes"]
    assert len(holes) == 18
    assert rf["round"]["hardest_hole"]["avg_vs_par"] == max(h["avg_vs_par"] for h in holes)
    assert rf["round"]["easiest_hole"]["avg_vs_par"] == min(h["avg_vs_par"] for h in holes)
