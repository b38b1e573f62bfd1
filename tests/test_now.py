"""`submit ... --now`: the standard Messages API at once, end to end against the emulator."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from tegbatchd.emulator.answers import canonical_sha256
from tegbatchd.pacing import TokenBudget, estimate_tokens
from tegbatchd.store import Store
from tests.conftest import untagged

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
ROUNDS = "commentary/round_reports"
SMALL_STAGES = {name: {"max_tokens": 400} for name in ("story_notes", "narrative")}  # answers fit


def _setup(cli, data_root: Path, **now) -> None:
    """Copy the sample data in and write a config with small max_tokens and the given `now:` settings."""
    for name in ("all-scores.csv", "rounds.csv"):
        shutil.copy(SAMPLE / name, data_root)
    config = Path(cli.env["TEGBATCHD_HOME"]) / "config" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump({"stages": SMALL_STAGES,
                                      "now": {"tokens_per_minute": 10_000_000, **now}}))


def _sent_params(cli) -> dict[str, dict]:
    """custom_id (readable) → params of every request archived in the state dir."""
    out = {}
    for archive in (Path(cli.env["TEGBATCHD_HOME"]) / "state").rglob("*.jsonl"):
        for line in archive.read_text().splitlines():
            obj = json.loads(line)
            out[untagged(obj["custom_id"])] = obj["params"]
    return out


def _assert_own_message(text: str, params: dict) -> None:
    """A Messages API answer of the emulator names the sha256 of the params it answered."""
    assert f"params-sha256: {canonical_sha256(params)}" in text, text[:300]


SAMPLE_ROUNDS = [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3), (3, 4)]


def _job(cli) -> dict:
    (job,) = cli("list", "--json", check=True).json()["jobs"]
    return job


def test_now_round_reports_write_every_file_with_its_own_answer(api_cli, data_root):
    cli, emu = api_cli()
    _setup(cli, data_root)
    run = cli("submit", "round-reports", "--teg", "1-3", "--now", check=True)
    params = _sent_params(cli)
    assert len(params) == 2 * len(SAMPLE_ROUNDS)
    for t, r in SAMPLE_ROUNDS:
        notes = (data_root / ROUNDS / f"TEG{t}_R{r}_story_notes.md").read_text()
        report = (data_root / ROUNDS / f"TEG{t}_R{r}_report.md").read_text()
        _assert_own_message(notes, params[f"TEG{t}_R{r}_story_notes"])
        _assert_own_message(report, params[f"TEG{t}_R{r}_narrative"])
        combined = (data_root / ROUNDS / f"teg_{t}_round_{r}_report.md").read_text()
        assert notes.strip() in combined and report.strip() in combined
        assert f"  ✓ TEG{t}_R{r}_story_notes → {ROUNDS}/TEG{t}_R{r}_story_notes.md (" in run.out
    assert "22 of 22 written, 0 failed" in run.out and "at the standard API price" in run.out
    calls = emu.stats()["calls"]
    assert calls["messages"] == 22 and calls["create"] == 0
    job = _job(cli)
    assert job["state"] == "done" and job["mode"] == "now" and job["written"] == 33 and job["batches"] == []
    assert job["cost_usd"] == job["standard_cost_usd"] > 0  # full price: no batch discount
    assert "(--now)  [done]" in cli("list", check=True).out
    assert "Nothing pending" in cli("poll", "--once", check=True).out
    assert emu.stats()["calls"] == calls  # the poller leaves a --now job alone


def test_now_retries_injected_faults_and_completes(api_cli, data_root):
    cli, emu = api_cli("--fault-rate", "0.3", "--seed", "5")
    _setup(cli, data_root)
    summary = cli("submit", "round-reports", "--teg", "3", "--now", "--json", check=True).json()
    stats = emu.stats()
    assert summary["state"] == "done" and summary["succeeded"] == 8 and summary["failed"] == []
    assert stats["calls"]["messages"] > 8 and summary["retries"] == stats["faults_injected"] > 0
    params = _sent_params(cli)
    for r in (1, 2, 3, 4):
        _assert_own_message((data_root / ROUNDS / f"TEG3_R{r}_story_notes.md").read_text(),
                            params[f"TEG3_R{r}_story_notes"])
        _assert_own_message((data_root / ROUNDS / f"TEG3_R{r}_report.md").read_text(), params[f"TEG3_R{r}_narrative"])
        assert (data_root / ROUNDS / f"teg_3_round_{r}_report.md").exists()


def _first_stage(cli, data_root: Path, *argv: str):
    """The story-notes requests `--now` builds for these round-reports arguments (the same plan)."""
    from tegbatchd.cli.teg import add_round_reports_args
    from tegbatchd.config import load_config
    from tegbatchd.teg.pipelines import PIPELINES
    from tegbatchd.teg.specs import spec_from_args

    config = load_config(Path(cli.env["TEGBATCHD_HOME"]) / "config" / "config.yaml")
    parser = argparse.ArgumentParser()
    add_round_reports_args(parser)
    spec = spec_from_args("round-reports", parser.parse_args(list(argv)), data_root, config)
    return PIPELINES["round-reports"].build_stage(spec, 0, data_root, config).requests


def test_now_within_a_budget_smaller_than_the_job_waits_and_completes(api_cli, data_root):
    from tegbatchd.submission import items_from_plan

    cli, emu = api_cli()
    _setup(cli, data_root)
    items = items_from_plan(_first_stage(cli, data_root, "--teg", "1-3"), data_root)
    needed = sum(estimate_tokens(len(i.line), i.max_tokens) for i in items)
    _setup(cli, data_root, tokens_per_minute=int(needed * 0.97))  # a few seconds short
    summary = cli("submit", "round-reports", "--teg", "1-3", "--story-notes-only", "--now", "--json",
                  check=True).json()
    assert summary["state"] == "done" and summary["succeeded"] == 11
    assert summary["token_budget_waits"] >= 1
    assert len(list((data_root / ROUNDS).glob("*_story_notes.md"))) == 11


def test_definite_refusal_fails_only_that_request(cli, api_cli, data_root):
    _setup(cli, data_root)
    sizes = {r.custom_id: len(json.dumps(r.params).encode()) for r in _first_stage(cli, data_root, "--teg", "1")}
    largest, second = sorted(sizes.values())[-2:][::-1]
    refused = max(sizes, key=sizes.get)
    cli, emu = api_cli("--max-messages-body-bytes", str((largest + second) // 2))  # 413 for the largest only
    run = cli("submit", "round-reports", "--teg", "1", "--now")
    assert run.code == 1
    assert f"  ✗ {refused}: request_too_large" in run.out
    assert "story notes missing, report skipped" in run.out
    job = _job(cli)
    assert job["state"] == "partial" and job["failed"] == [refused] and job["written"] == 3 + 3 + 3  # notes, reports, combined files
    assert emu.stats()["calls"]["messages"] == 4 + 3  # refused once, never retried


def test_rejected_key_stops_with_one_line(api_cli, data_root):
    cli, emu = api_cli("--api-key", "other")
    _setup(cli, data_root)
    run = cli("submit", "round-reports", "--teg", "1-3", "--now")
    assert run.code != 0
    assert run.err.strip().splitlines() == [
        "error: the API key was rejected — check ANTHROPIC_API_KEY or your api_key_file; nothing more was sent"]
    assert not (data_root / "commentary").exists()
    assert emu.stats()["calls"]["messages"] == 0  # refused by the preflight's models lookup: nothing sent
    assert cli("list", "--json", check=True).json()["jobs"] == []   # and nothing recorded


def test_killed_run_is_settled_and_rerun_reuses_written_notes(api_cli, data_root):
    cli, emu = api_cli()
    _setup(cli, data_root, tokens_per_minute=1000, concurrency=2)  # one request, then minutes of waiting
    proc = subprocess.Popen([sys.executable, "-m", "tegbatchd", "submit", "round-reports", "--teg", "1-3", "--now"],
                            stdout=subprocess.PIPE, text=True, env=cli.env, cwd=cli.cwd)
    try:
        first = next(line for line in proc.stdout if line.startswith("  ✓"))
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    written = first.split()[1]
    store = Store.open(Path(cli.env["TEGBATCHD_HOME"]) / "state" / "state.db")
    assert [j["state"] for j in store.list_jobs()] == ["active"]  # until the next --now run settles it
    store.close()
    before = emu.stats()["calls"]
    assert cli("poll", "--once", "--json", check=True).json()["pending_before"] == 0
    assert emu.stats()["calls"] == before  # a killed --now job is never batched by the poller
    _setup(cli, data_root)
    rerun = cli("submit", "round-reports", "--teg", "1-3", "--now", check=True)
    assert "story notes exist, reused" in rerun.out and f"✓ {written}" not in rerun.out
    assert emu.stats()["calls"]["messages"] - before["messages"] == 21
    states = sorted(j["state"] for j in cli("list", "--json", check=True).json()["jobs"])
    assert states == ["canceled", "done"]
    assert len(list((data_root / ROUNDS).glob("teg_*_round_*_report.md"))) == 11


def test_token_budget_lets_a_request_larger_than_the_budget_go_alone():
    now = [0.0]
    budget = TokenBudget(1200, clock=lambda: now[0])  # 20 tokens a second
    assert budget.take(5000) == 0  # a full bucket lets it go, alone
    assert budget.take(10) > 0  # the debt is repaid before anything else starts
    now[0] = (5000 - 1200 + 10) / 20
    assert budget.take(10) == 0
    stop = threading.Event()
    stop.set()
    assert budget.acquire(10_000, stop) is None  # a stopped job never waits
