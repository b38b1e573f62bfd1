"""Request specs and stages on the real data: custom_ids, output paths, skips, and local assembly."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from tegbatchd.cli.teg import add_round_reports_args, add_tournament_args
from tegbatchd.config import load_config
from tegbatchd.errors import InputError
from tegbatchd.teg.data import load_table
from tegbatchd.teg.pipelines import (
    PIPELINES,
    missing_story_notes,
    parse_round_reports_args,
    parse_tournament_args,
)
from tegbatchd.teg.specs import spec_from_args
from tests.conftest import FIXTURES

REAL = FIXTURES / "teg"


@pytest.fixture
def root(tmp_path) -> Path:
    """A data root holding copies of the real scores and rounds tables."""
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(REAL / "all-scores.csv", root)
    shutil.copy(REAL / "rounds.csv", root)
    return root


@pytest.fixture
def config():
    return load_config(None)


def _round_spec(root, config, *argv):
    parser = argparse.ArgumentParser()
    add_round_reports_args(parser)
    return spec_from_args("round-reports", parser.parse_args(list(argv)), root, config)


def _tournament_spec(root, config, *argv):
    parser = argparse.ArgumentParser()
    add_tournament_args(parser)
    return spec_from_args("tournament", parser.parse_args(list(argv)), root, config)


def _write_outputs(root: Path, plan, text=lambda r: f"Text of {r.custom_id}\n"):
    for req in plan.requests:
        path = root / req.output
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text(req))


def _user(req) -> str:
    return req.params["messages"][0]["content"]


def _json_line(message: str) -> dict:
    return json.loads(next(line for line in message.splitlines() if line.startswith("{")))


def test_round_reports_teg_10_17_rounds_1_4(root, config):
    spec = _round_spec(root, config, "--teg", "10-17", "--round", "1-4")
    json.dumps(spec)  # serializable
    assert spec["scores_file"] == str((root / "all-scores.csv").resolve())
    assert spec["rounds_file"] == str((root / "rounds.csv").resolve())
    pipe = PIPELINES["round-reports"]
    assert pipe.title(spec) == "TEG 10–17 round reports"
    assert pipe.stages(spec) == ["story_notes", "narrative"]
    plan = pipe.build_stage(spec, 0, root, config)
    expected = [(t, r) for t in range(10, 18) for r in range(1, 5)]
    assert [r.custom_id for r in plan.requests] == [f"TEG{t}_R{r}_story_notes" for t, r in expected]
    assert [r.output for r in plan.requests] == [f"commentary/round_reports/TEG{t}_R{r}_story_notes.md"
                                                 for t, r in expected]
    body = plan.requests[0].params
    assert body["model"] == config.stage("story_notes")["model"]
    assert body["max_tokens"] == config.stage("story_notes")["max_tokens"]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"} and len(body["system"]) == 1
    assert plan.notes == []


def test_story_notes_message_holds_that_rounds_facts(root, config):
    spec = _round_spec(root, config, "--teg", "17", "--round", "3")
    (req,) = PIPELINES["round-reports"].build_stage(spec, 0, root, config).requests
    facts = _json_line(_user(req))
    sums = defaultdict(float)
    with (REAL / "all-scores.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["TEGNum"] == "17" and row["Round"] == "3":
                sums[row["Player"]] += float(row["Stableford"])
    assert (facts["round"]["teg"], facts["round"]["round"], facts["round"]["course"]) == (17, 3, "Royal Óbidos")
    assert {p["name"]: p["round_stableford"] for p in facts["players"]} == sums


def test_rounds_missing_from_a_teg_are_skipped_with_a_note(root, config):
    spec = _round_spec(root, config, "--teg", "1-3", "--round", "3-4")
    plan = PIPELINES["round-reports"].build_stage(spec, 0, root, config)
    assert [r.custom_id for r in plan.requests] == ["TEG2_R3_story_notes", "TEG3_R3_story_notes",
                                                    "TEG3_R4_story_notes"]
    assert "TEG1: not in the data, skipped" in plan.notes
    assert "TEG2 R4: not in the data, skipped" in plan.notes
    assert PIPELINES["round-reports"].title(spec) == "TEG 2–3 R3–4 round reports"


@pytest.mark.parametrize("argv, message", [
    (["--teg", "17-10"], "backwards"),
    (["--teg", "30-31"], r"TEG 30–31 is not in all-scores.csv \(available: TEG 2–18\)"),
    (["--teg", "10-17", "--round", "5"], "round 5 is not in the data"),
    (["--teg", "10", "--round", "4-1"], "backwards"),
    (["--teg", "x"], "not a number"),
])
def test_bad_ranges_are_refused_before_anything_is_sent(root, config, argv, message):
    with pytest.raises(InputError, match=message) as exc:
        _round_spec(root, config, *argv)
    assert exc.value.exit_code == 2


def test_existing_notes_are_reused_unless_forced(root, config):
    spec = _round_spec(root, config, "--teg", "17")
    pipe = PIPELINES["round-reports"]
    first = pipe.build_stage(spec, 0, root, config)
    _write_outputs(root, first)
    again = pipe.build_stage(spec, 0, root, config)
    assert again.requests == [] and "TEG17 R2: story notes exist, reused (--force rewrites them)" in again.notes
    forced = _round_spec(root, config, "--teg", "17", "--force")
    assert len(pipe.build_stage(forced, 0, root, config).requests) == 4


def test_story_notes_only_has_one_stage(root, config):
    spec = _round_spec(root, config, "--teg", "17", "--story-notes-only")
    assert PIPELINES["round-reports"].stages(spec) == ["story_notes"]
    assert PIPELINES["round-reports"].title(spec) == "TEG 17 round story notes"


def test_reports_only_refuses_when_notes_are_missing(root, config):
    notes = root / "commentary" / "round_reports"
    notes.mkdir(parents=True)
    (notes / "TEG17_R1_story_notes.md").write_text("notes")
    with pytest.raises(InputError) as exc:
        _round_spec(root, config, "--teg", "17", "--reports-only")
    assert "3 story notes file(s) that are missing" in exc.value.message
    assert exc.value.details == [f"commentary/round_reports/TEG17_R{r}_story_notes.md" for r in (2, 3, 4)]


def test_reports_only_uses_notes_on_disk(root, config):
    table = load_table(root / "all-scores.csv", root / "rounds.csv")
    spec = parse_round_reports_args(table, "17", "1-2", reports_only=True)
    assert missing_story_notes(spec, root) == [f"commentary/round_reports/TEG17_R{r}_story_notes.md" for r in (1, 2)]
    for r in (1, 2):
        path = root / f"commentary/round_reports/TEG17_R{r}_story_notes.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"notes R{r}")
    pipe = PIPELINES["round-reports"]
    stage0 = pipe.build_stage(spec, 0, root, config)
    assert stage0.requests == [] and stage0.notes == ["reports only: existing story notes are used"]
    stage1 = pipe.build_stage(spec, 1, root, config)
    assert [r.custom_id for r in stage1.requests] == ["TEG17_R1_narrative", "TEG17_R2_narrative"]


def test_both_only_flags_are_refused(root):
    table = load_table(root / "all-scores.csv")
    with pytest.raises(InputError, match="exclude each other"):
        parse_round_reports_args(table, "17", story_notes_only=True, reports_only=True)


def test_narrative_uses_notes_from_disk_and_skips_missing_ones(root, config):
    spec = _round_spec(root, config, "--teg", "17")
    pipe = PIPELINES["round-reports"]
    _write_outputs(root, pipe.build_stage(spec, 0, root, config))
    (root / "commentary/round_reports/TEG17_R3_story_notes.md").unlink()
    plan = pipe.build_stage(spec, 1, root, config)
    assert [r.custom_id for r in plan.requests] == ["TEG17_R1_narrative", "TEG17_R2_narrative", "TEG17_R4_narrative"]
    assert [r.output for r in plan.requests][1] == "commentary/round_reports/TEG17_R2_report.md"
    assert plan.notes == ["TEG17 R3: story notes missing, report skipped"]
    message = _user(plan.requests[1])
    assert "Text of TEG17_R2_story_notes" in message
    context = _json_line(message)
    assert context["projection"]["rounds_remaining"] == 2 and context["leader"] == "Jon BAKER"
    assert plan.requests[1].params["max_tokens"] == config.stage("narrative")["max_tokens"]


def test_after_narrative_the_combined_files_are_written(root, config):
    spec = _round_spec(root, config, "--teg", "17", "--round", "2")
    pipe = PIPELINES["round-reports"]
    _write_outputs(root, pipe.build_stage(spec, 0, root, config))
    assert pipe.after_stage(spec, 0, root, config) == []
    _write_outputs(root, pipe.build_stage(spec, 1, root, config), text=lambda r: "## The report\nBody.\n")
    written = pipe.after_stage(spec, 1, root, config)
    target = root / "commentary/round_reports/teg_17_round_2_report.md"
    assert [Path(w.path) for w in written] == [target] and not written[0].beside
    text = target.read_text()
    assert text.startswith("# TEG 17 – Round 2 report\n")
    assert "West Cliffs · 06/10/2024" in text
    assert text.index("## Story notes") < text.index("Text of TEG17_R2_story_notes") < text.index("## The report")
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_requests_are_deterministic(root, config):
    spec = _round_spec(root, config, "--teg", "3")
    a = PIPELINES["round-reports"].build_stage(spec, 0, root, config)
    b = PIPELINES["round-reports"].build_stage(spec, 0, root, config)
    assert a == b


# --- tournament ------------------------------------------------------------------------------------------
def test_tournament_range_with_batch_reports(root, config):
    spec = _tournament_spec(root, config, "--range", "2", "4", "--batch-reports")
    json.dumps(spec)
    pipe = PIPELINES["tournament"]
    assert pipe.title(spec) == "TEG 2–4 tournament story notes and reports"
    assert pipe.stages(spec) == ["round_story", "synthesis", "reports"]
    plan = pipe.build_stage(spec, 0, root, config)
    expected = [(2, r) for r in (1, 2, 3)] + [(t, r) for t in (3, 4) for r in (1, 2, 3, 4)]
    assert [r.custom_id for r in plan.requests] == [f"TEG{t}_round_{r}" for t, r in expected]
    assert [r.output for r in plan.requests] == [f"commentary/tournament_notes/TEG{t}_round_{r}.md" for t, r in expected]
    assert plan.requests[0].params["max_tokens"] == config.stage("round_story")["max_tokens"]


def test_tournament_without_reports_is_two_stages(root, config):
    spec = _tournament_spec(root, config, "--teg", "3-17")
    assert PIPELINES["tournament"].stages(spec) == ["round_story", "synthesis"]
    assert PIPELINES["tournament"].title(spec) == "TEG 3–17 tournament story notes"
    spec = _tournament_spec(root, config, "--teg", "5", "--satire")
    assert spec["reports"] == ["satire"]


def test_synthesis_assembly_and_reports(root, config):
    spec = _tournament_spec(root, config, "--teg", "2-3", "--batch-reports")
    pipe = PIPELINES["tournament"]
    _write_outputs(root, pipe.build_stage(spec, 0, root, config))
    (root / "commentary/tournament_notes/TEG3_round_4.md").unlink()

    synthesis = pipe.build_stage(spec, 1, root, config)
    assert [r.custom_id for r in synthesis.requests] == ["TEG2_synthesis"]
    assert synthesis.requests[0].output == "commentary/tournament_notes/TEG2_synthesis.md"
    assert synthesis.notes == ["TEG3: round story for R4 missing, synthesis skipped"]
    message = _user(synthesis.requests[0])
    assert "Text of TEG2_round_3" in message and _json_line(message)["tournament"]["trophy"] == "David MULLIN"

    _write_outputs(root, synthesis, text=lambda r: "### The story in brief\nA tale.\n")
    written = pipe.after_stage(spec, 1, root, config)
    assert [Path(w.path) for w in written] == [root / "commentary/teg_2_story_notes.md"]
    notes = Path(written[0].path).read_text()
    assert notes.startswith("# TEG 2 story notes")
    assert "**TEG Trophy**: David MULLIN, 103 pts, by 5 from Jon BAKER (98 pts)" in notes
    assert "**Green Jacket**: David MULLIN, +66" in notes
    assert "**Wooden Spoon**: Henry MELLER, 75 pts" in notes
    assert "2009 · Boavista · 16/05/2009–18/05/2009 · 3 rounds" in notes
    assert notes.index("## Facts") < notes.index("## Story") < notes.index("A tale.")

    reports = pipe.build_stage(spec, 2, root, config)
    assert [r.custom_id for r in reports.requests] == ["TEG2_main_report", "TEG2_brief_summary", "TEG2_satire"]
    assert [r.output for r in reports.requests] == ["commentary/drafts/teg_2_main_report.md",
                                                    "commentary/drafts/teg_2_brief_summary.md",
                                                    "commentary/drafts/teg_2_satire.md"]
    assert reports.notes == ["TEG3: story notes missing (commentary/teg_3_story_notes.md), reports skipped"]
    assert [r.params["max_tokens"] for r in reports.requests] == [
        config.stage(k)["max_tokens"] for k in ("main_report", "brief_summary", "satire")]
    assert "A tale." in _user(reports.requests[0]) and "David MULLIN, 103 pts" in _user(reports.requests[0])
    assert len({r.params["system"][0]["text"] for r in reports.requests}) == 3


def test_tournament_reports_only(root, config):
    with pytest.raises(InputError) as exc:
        _tournament_spec(root, config, "--teg", "5", "--reports-only")
    assert exc.value.details == ["commentary/teg_5_story_notes.md"]
    (root / "commentary").mkdir()
    (root / "commentary/teg_5_story_notes.md").write_text("# TEG 5 story notes\n")
    spec = _tournament_spec(root, config, "--teg", "5", "--reports-only")
    pipe = PIPELINES["tournament"]
    assert spec["reports"] == ["main_report", "brief_summary", "satire"]
    assert pipe.stages(spec) == ["reports"] and pipe.title(spec) == "TEG 5 tournament reports"
    assert len(pipe.build_stage(spec, 0, root, config).requests) == 3
    assert pipe.after_stage(spec, 0, root, config) == []


def test_tournament_round_stories_are_reused_unless_forced(root, config):
    spec = _tournament_spec(root, config, "--teg", "2")
    pipe = PIPELINES["tournament"]
    _write_outputs(root, pipe.build_stage(spec, 0, root, config))
    assert pipe.build_stage(spec, 0, root, config).requests == []
    forced = _tournament_spec(root, config, "--teg", "2", "--force")
    assert len(pipe.build_stage(forced, 0, root, config).requests) == 3


def test_tournament_argument_errors(root, config):
    table = load_table(root / "all-scores.csv")
    with pytest.raises(InputError, match="either --teg"):
        parse_tournament_args(table)
    with pytest.raises(InputError, match="backwards"):
        parse_tournament_args(table, range_=("17", "3"))
    with pytest.raises(InputError, match="unknown report kind"):
        parse_tournament_args(table, teg="3", reports=["poem"])
    with pytest.raises(InputError, match="excludes the report flags"):
        _tournament_spec(root, config, "--teg", "3", "--story-notes-only", "--satire")
    with pytest.raises(SystemExit):
        _tournament_spec(root, config, "--teg", "3", "--range", "3", "4")
