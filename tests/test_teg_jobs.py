"""TEG jobs end to end on the real data: stages chained by `poll --once` alone, files at their documented
paths, each holding its own request's answer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import assert_own_answer, untagged

RR = "commentary/round_reports"




def archived_params() -> dict[str, dict]:
    """custom_id (readable: its intent tag taken off) → params of every request this job sent (from the state
    dir's archive)."""
    out = {}
    for archive in (Path(os.environ["TEGBATCHD_HOME"]) / "state" / "requests").glob("*.jsonl"):
        for line in archive.read_text().splitlines():
            obj = json.loads(line)
            out[untagged(obj["custom_id"])] = obj["params"]
    return out


def test_round_reports_chain_by_themselves(api_cli, real_data):
    cli, emu = api_cli("--process-seconds", "0")
    sub = cli("submit", "round-reports", "--teg", "17", "--round", "1-4", "--json", check=True).json()
    assert sub["requests"] == 4 and len(sub["batch_ids"]) == 1
    first = cli("poll", "--once", "--json", check=True).json()
    assert any("submitted stage narrative" in c for c in first["changes"])  # the next stage, by itself
    assert emu.stats()["calls"]["create"] == 2
    cli("poll", "--once", check=True)
    params = archived_params()
    assert sorted(params) == sorted([f"TEG17_R{r}_story_notes" for r in range(1, 5)]
                                    + [f"TEG17_R{r}_narrative" for r in range(1, 5)])
    for r in range(1, 5):
        notes = (real_data / RR / f"TEG17_R{r}_story_notes.md").read_text()
        report = (real_data / RR / f"TEG17_R{r}_report.md").read_text()
        assert_own_answer(notes, f"TEG17_R{r}_story_notes", params[f"TEG17_R{r}_story_notes"])
        assert_own_answer(report, f"TEG17_R{r}_narrative", params[f"TEG17_R{r}_narrative"])
        # the narrative request was built from that round's notes, as written by the first stage
        assert notes.strip() in params[f"TEG17_R{r}_narrative"]["messages"][0]["content"]
        combined = (real_data / RR / f"teg_17_round_{r}_report.md").read_text()
        assert notes.strip() in combined and report.strip() in combined
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert job["state"] == "done" and [s["state"] for s in job["stages"]] == ["done", "done"]
    system = params["TEG17_R1_story_notes"]["system"]
    assert len(system) == 1 and system[0]["cache_control"] == {"type": "ephemeral"}


def test_story_notes_are_reused_and_reports_only_needs_them(api_cli, real_data):
    cli, emu = api_cli("--process-seconds", "0")
    missing = cli("submit", "round-reports", "--teg", "16", "--round", "1-2", "--reports-only")
    assert missing.code == 2 and "TEG16_R1_story_notes.md" in missing.err
    assert emu.stats()["calls"]["create"] == 0
    cli("submit", "round-reports", "--teg", "16", "--round", "1-2", "--story-notes-only", check=True)
    cli("poll", "--once", check=True)
    notes = {r: (real_data / RR / f"TEG16_R{r}_story_notes.md").read_bytes() for r in (1, 2)}
    assert not (real_data / RR / "TEG16_R1_report.md").exists()
    sub = cli("submit", "round-reports", "--teg", "16", "--round", "1-2", "--reports-only", "--json",
              check=True).json()
    assert sub["requests"] == 2  # only the narratives: the notes are reused
    cli("poll", "--once", check=True)
    assert (real_data / RR / "TEG16_R2_report.md").exists() and (real_data / RR / "teg_16_round_2_report.md").exists()
    assert {r: (real_data / RR / f"TEG16_R{r}_story_notes.md").read_bytes() for r in (1, 2)} == notes


def test_tournament_job_for_two_tegs(api_cli, real_data):
    cli, emu = api_cli("--process-seconds", "0")
    sub = cli("submit", "tournament", "--range", "2", "3", "--satire", "--json", check=True).json()
    assert sub["requests"] == 3 + 4  # TEG 2 had 3 rounds, TEG 3 four: one round story each
    for _ in range(3):
        cli("poll", "--once", check=True)
    params = archived_params()
    for n in (2, 3):
        assembled = (real_data / "commentary" / f"teg_{n}_story_notes.md").read_text()
        synthesis = (real_data / "commentary" / "tournament_notes" / f"TEG{n}_synthesis.md").read_text()
        assert_own_answer(synthesis, f"TEG{n}_synthesis", params[f"TEG{n}_synthesis"])
        assert synthesis.strip() in assembled
        satire = (real_data / "commentary" / "drafts" / f"teg_{n}_satire.md").read_text()
        assert_own_answer(satire, f"TEG{n}_satire", params[f"TEG{n}_satire"])
    summary = cli("teg", "summary", "--teg", "3", "--json", check=True).json()
    assert summary["tournament"]["trophy"] in (real_data / "commentary" / "teg_3_story_notes.md").read_text()
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert job["state"] == "done" and len(job["stages"]) == 3


def test_failed_item_does_not_block_the_others(api_cli, real_data):
    cli, emu = api_cli("--process-seconds", "0", "--error-rate", "0.5", "--seed", "3")
    cli("submit", "round-reports", "--teg", "15-16", "--round", "1-4", check=True)
    for _ in range(8):  # failures are resubmitted once by themselves (retry.max_attempts 2)
        cli("poll", "--once", check=True)
        job = cli("list", "--json", check=True).json()["jobs"][0]
        if job["state"] != "active":
            break
    assert job["state"] == "partial" and job["failed"]
    reports = list((real_data / RR).glob("TEG*_report.md"))
    notes = list((real_data / RR).glob("TEG*_story_notes.md"))
    assert 0 < len(reports) <= len(notes) < 8  # --seed makes which ones fail reproducible
    from tegbatchd.store import Store

    store = Store.open(Path(os.environ["TEGBATCHD_HOME"]) / "state" / "state.db")
    partial = [n for n in store.notices() if n["kind"] == "job_partial"]
    assert len(partial) == 1 and "files ready" in partial[0]["title"] and "failed after" in partial[0]["body"]
    assert f"tegbatchd retry {job['id']}" in partial[0]["body"] and "msgbatch_" not in partial[0]["body"]


@pytest.mark.parametrize("args, expected", [
    (["--teg", "17-10"], "backwards"),
    (["--teg", "40-45"], "TEG"),
])
def test_bad_ranges_are_refused_before_anything_is_sent(api_cli, real_data, args, expected):
    cli, emu = api_cli()
    result = cli("submit", "round-reports", *args, "--round", "1-4")
    assert result.code == 2 and expected in result.err
    assert emu.stats()["calls"]["create"] == 0


def test_a_reopened_stage_waits_for_its_requests_in_flight_instead_of_ending_the_job(api_cli, real_data):
    """Issue 10/1: a stage rebuilt while its recorded requests are still running must wait for them, not be
    marked done with nothing (every later stage skipped, "ready — 0 files")."""
    cli, emu = api_cli("--process-seconds", "100000")
    sub = cli("submit", "round-reports", "--teg", "17", "--round", "1-2", "--json", check=True).json()
    emu.finish(sub["batch_ids"][0])
    cli("poll", "--once", check=True)          # story notes retrieved, narratives submitted
    from tegbatchd.store import Store

    store = Store.open(Path(os.environ["TEGBATCHD_HOME"]) / "state" / "state.db")
    job = store.list_jobs()[0]
    narrative = store.stages(job["id"])[1]
    with store.tx() as c:  # as a process that died while rebuilding it would leave it
        c.execute("UPDATE stages SET state='waiting' WHERE id=?", (narrative["id"],))
    cli("poll", "--once", check=True)
    assert cli("list", "--json", check=True).json()["jobs"][0]["state"] == "active"
    assert store.stages(job["id"])[1]["state"] == "submitted"
    (running,) = [b for b in store.batches_of_job(job["id"]) if b["api_status"] != "ended"]
    emu.finish(running["id"])
    cli("poll", "--once", check=True)
    assert (real_data / RR / "TEG17_R1_report.md").exists() and (real_data / RR / "TEG17_R2_report.md").exists()
    listed = cli("list", "--json", check=True).json()["jobs"][0]
    assert listed["state"] == "done" and listed["written"] == 6   # 2 notes, 2 reports, 2 combined files
    assert emu.stats()["calls"]["create"] == 2  # nothing sent twice
