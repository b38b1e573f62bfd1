"""Issue 15 end to end through the daemon (its scheduler, its config reloads, its polls when due): a TEG job
primed stage by stage, held by a budget lowered after submit, released by `resume`, its receipts within the
whole-job estimate's stated margin and its notice ending with what it cost and saved."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY

RR = Path("commentary") / "round_reports"


def _config(text: str) -> None:
    path = Path(os.environ["TEGBATCHD_HOME"]) / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _store():
    from tegbatchd.store import Store

    return Store.open(Path(os.environ["TEGBATCHD_HOME"]) / "state" / "state.db")


async def _until(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def test_the_daemon_primes_holds_at_the_budget_resumes_and_stays_within_the_estimate(
        api_cli, real_data, monkeypatch):
    from tegbatchd.daemon import Daemon
    from tegbatchd.teg.prompts import SHIPPED_DIR

    prompts = real_data / "prompts"   # the real workflow's prompts run to ~2,500 tokens: each stage is primed
    prompts.mkdir()
    for stage in ("story_notes", "narrative"):
        text = (SHIPPED_DIR / f"{stage}.md").read_text()
        (prompts / f"{stage}.md").write_text(text + "\n\nStyle notes:\n" + "Keep the tone warm and exact. " * 150)
    base = "prompts_dir: prompts\npoll_interval_minutes: 0.005\nmax_poll_interval_minutes: 0.005\n"
    _config(base)
    cli, emu = api_cli("--process-seconds", "0", "--answer-bytes", "40000")   # answers run to max_tokens
    args = ("submit", "round-reports", "--teg", "17", "--round", "1-4")
    dry = cli(*args, "--dry-run", "--json", check=True).json()
    notes_est, narrative_est = dry["stage_estimates"]
    assert notes_est["primed"] and narrative_est["primed"] and narrative_est["from_plan"]
    sub = cli(*args, "--json", check=True).json()
    job_id = sub["job_id"]
    # after submit the person lowers the job limit: the story notes fit, the narrative stage does not
    _config(base + f"budget:\n  job_usd: {notes_est['primed_cost_usd'] + narrative_est['primed_cost_usd'] / 4:.4f}\n")
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.url)
    daemon = Daemon(heartbeat=0.1)

    def job() -> dict:
        return cli("status", job_id, "--json", check=True).json()

    async def scenario() -> str:
        task = asyncio.create_task(daemon.run())
        await _until(lambda: _store().get_job(job_id)["state"] == "blocked")
        held = job()
        assert emu.stats()["calls"]["create"] == 2          # the story notes: one request first, then the other 3
        assert [s["state"] for s in held["stages"]] == ["done", "waiting"]
        await asyncio.sleep(1.0)   # ten heartbeats: the daemon sends nothing for the held job
        assert emu.stats()["calls"]["create"] == 2
        resumed = await asyncio.to_thread(cli, "resume", job_id, "--max-cost", "1.00", check=True)
        assert "going on (limit $1.00)" in resumed.out
        await _until(lambda: _store().get_job(job_id)["state"] == "done")
        daemon.request_stop()
        await task
        return held["next"]

    go_on = asyncio.run(scenario())
    assert go_on.startswith(f"tegbatchd resume {job_id} --max-cost ")
    done = job()
    assert done["written"] == 12 and len(list((real_data / RR).glob("TEG17_R*"))) >= 8
    assert emu.stats()["calls"]["create"] == 4                                    # two per stage
    assert [s["cache_hit_rate"] for s in done["stages"]] == [pytest.approx(0.75, abs=1e-3)] * 2
    notices = _store().notices()
    assert [n["kind"] for n in notices].count("job_blocked") == 1
    (ready,) = [n for n in notices if n["kind"] != "job_blocked"]
    assert f"Cost ${done['cost_usd']:.2f}" in ready["body"] and "saved $" in ready["body"]
    receipt = {r["label"]: r["cost_usd"] for r in cli("costs", "--by", "stage", "--json", check=True).json()["rows"]}
    for stage in (notes_est, narrative_est):   # the stated margin: never above the estimate, within 25% below
        assert 0.75 * stage["primed_cost_usd"] <= receipt[stage["stage"]] <= stage["primed_cost_usd"], (stage, receipt)
    assert done["cost_usd"] <= dry["primed_cost_usd"] < dry["estimated_cost_usd"]
