"""Cache priming: a stage whose requests share a cacheable prefix sends one of them first (1-hour cache,
a batch of its own) and the rest once it has finished, by itself; the rest then read the cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, write_requests

TEMPLATE = "commentary/round_reports/{custom_id}.md"


def _store():
    from tegbatchd.store import Store

    return Store.open(Path(os.environ["TEGBATCHD_HOME"]) / "state" / "state.db")


def _config(text: str) -> None:
    path = Path(os.environ["TEGBATCHD_HOME"]) / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def narrative_requests(path: Path, n: int = 60) -> Path:
    """The real narrative requests (shared 1-block cached system prompt), on a current model."""
    lines = (FIXTURES / "anthropic" / "requests-narrative-60.jsonl").read_text().splitlines()[:n]
    out = []
    for line in lines:
        obj = json.loads(line)
        obj["params"]["model"] = "claude-sonnet-5-5"
        out.append(json.dumps(obj))
    path.write_text("\n".join(out) + "\n")
    return path


def _usage_by_batch() -> dict[str, list[tuple]]:
    rows = _store().conn.execute(
        "SELECT i.batch_id, r.cache_write_tokens, r.cache_write_1h_tokens, r.cache_read_tokens FROM requests r "
        "JOIN intents i ON i.id=r.intent_id ORDER BY r.id").fetchall()
    out: dict[str, list[tuple]] = {}
    for batch_id, *usage in rows:
        out.setdefault(batch_id, []).append(tuple(usage))
    return out


def test_the_first_request_finishes_before_the_others_are_sent_and_they_read_the_cache(api_cli, tmp_path):
    cli, emu = api_cli("--process-seconds", "0")
    reqs = narrative_requests(tmp_path / "narrative.jsonl", 12)
    dry = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--dry-run", "--json", check=True).json()
    assert dry["stage_estimates"][0]["primed"] and dry["primed_cost_usd"] < dry["estimated_cost_usd"]
    said = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--dry-run", check=True).out
    assert "with cache priming" in said
    assert "12 request(s) in 1 batch(es), after a batch of their own for the requests that prime the cache" in said
    sub = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()
    assert emu.stats()["calls"]["create"] == 1 and len(sub["batch_ids"]) == 1       # one request, by itself
    assert any("cache priming: 1 request(s) sent first; the other 11" in n for n in sub["notes"])
    assert sub["requests"] == 12
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert job["pending"] == 12 and job["batches"][0]["counts"]["succeeded"] + job["batches"][0]["counts"][
        "processing"] == 1
    emu.advance(1800)  # half an hour passes (the 1-hour entry lives on): nothing else was sent meanwhile
    assert emu.stats()["calls"]["create"] == 1

    first = cli("poll", "--once", "--json", check=True).json()    # what the daemon runs: retrieve, then release
    assert emu.stats()["calls"]["create"] == 2
    assert any("submitted stage requests" in c and "(11 requests)" in c for c in first["changes"]), first
    cli("poll", "--once", check=True)
    job = cli("status", sub["job_id"], "--json", check=True).json()
    assert job["state"] == "done" and job["written"] == 12
    batches = _store().batches_of_job(sub["job_id"])
    primer, rest = sorted(batches, key=lambda b: b["created_at"])
    assert primer["ended_at"] <= rest["created_at"]
    usage = _usage_by_batch()
    ((write, write_1h, read),) = usage[primer["id"]]
    assert write == write_1h > 1024 and read == 0                           # written on the 1-hour cache
    assert all(w == 0 and r == write for w, _, r in usage[rest["id"]])      # the others read it
    assert job["stages"][0]["cache_hit_rate"] == pytest.approx(11 / 12, abs=1e-3)
    costs = cli("costs", "--by", "stage", "--json", check=True).json()
    assert costs["rows"][0]["cache_hit_rate"] == pytest.approx(11 / 12, abs=1e-3)
    assert costs["rows"][0]["cost_usd"] <= dry["primed_cost_usd"]


def test_without_priming_every_request_writes_the_prefix(api_cli, tmp_path):
    _config("cache_priming: off\n")
    cli, emu = api_cli("--process-seconds", "0")
    sub = cli("submit", "requests", str(narrative_requests(tmp_path / "n.jsonl", 6)), "--output", TEMPLATE,
              "--json", check=True).json()
    assert emu.stats()["calls"]["create"] == 1 and sub["requests"] == 6 and not sub["stage_estimates"][0]["primed"]
    cli("poll", "--once", check=True)
    (rows,) = _usage_by_batch().values()
    assert len(rows) == 6 and all(w > 1024 and w1 == 0 and r == 0 for w, w1, r in rows)


def test_a_prefix_below_the_models_minimum_is_not_primed(api_cli, tmp_path):
    """A cached system prompt of ~300 tokens (Sonnet caches from 1,024): nothing would be cached, so nothing
    waits; the dry run prices no cache write either."""
    cli, emu = api_cli("--process-seconds", "0")
    system = [{"type": "text", "text": "You are a golf journalist. " * 40, "cache_control": {"type": "ephemeral"}}]
    reqs = write_requests(tmp_path / "short.jsonl", 5, extra={"system": system})
    dry = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--dry-run", "--json", check=True).json()
    assert not dry["stage_estimates"][0]["primed"] and dry["primed_cost_usd"] == dry["estimated_cost_usd"]
    sub = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()
    assert emu.stats()["calls"]["create"] == 1 and not any("priming" in n for n in sub["notes"])
    (batch,) = cli("list", "--json", check=True).json()["jobs"][0]["batches"]
    assert sum(batch["counts"].values()) == 5


def test_chained_stages_are_primed_by_the_daemon_and_read_the_cache(api_cli, real_data):
    """Round reports: each stage sends one request first; the poll cycle sends the rest once it is back,
    then builds the next stage the same way; every later request of a stage reads the cache."""
    from tegbatchd.teg.prompts import SHIPPED_DIR

    prompts = real_data / "prompts"   # the real workflow's prompts run to ~2,500 tokens; the shipped ones to ~900
    prompts.mkdir()
    for stage in ("story_notes", "narrative"):
        text = (SHIPPED_DIR / f"{stage}.md").read_text()
        (prompts / f"{stage}.md").write_text(text + "\n\nStyle notes:\n" + "Keep the tone warm and exact. " * 150)
    _config("prompts_dir: prompts\n")
    cli, emu = api_cli("--process-seconds", "0")
    sub = cli("submit", "round-reports", "--teg", "17", "--round", "1-4", "--json", check=True).json()
    assert emu.stats()["calls"]["create"] == 1
    for _ in range(5):
        cli("poll", "--once", check=True)
    job = cli("status", sub["job_id"], "--json", check=True).json()
    assert job["state"] == "done" and job["written"] == 12
    assert emu.stats()["calls"]["create"] == 4                               # two per stage
    assert [s["cache_hit_rate"] for s in job["stages"]] == [pytest.approx(0.75, abs=1e-3)] * 2
    (notice,) = _store().notices()
    assert "saved $" in notice["body"]


def test_a_job_canceled_while_its_priming_request_runs_never_sends_the_rest(api_cli, tmp_path):
    cli, emu = api_cli("--process-seconds", "60")
    sub = cli("submit", "requests", str(narrative_requests(tmp_path / "n.jsonl", 4)), "--output", TEMPLATE,
              "--json", check=True).json()
    cli("cancel", sub["job_id"], check=True)
    for _ in range(3):
        emu.advance(120)
        cli("poll", "--once", check=True)
    job = cli("status", sub["job_id"], "--json", check=True).json()
    assert job["state"] == "canceled" and emu.stats()["calls"]["create"] == 1
    assert {f["reason"] for f in job["failures"]} >= {"canceled_before_sent"}


def test_the_decision_releases_held_intents_only_once_nothing_of_the_stage_is_in_flight():
    from tegbatchd.engine.decide import IntentView, JobView, Release, StageView, Wait, next_step
    from tegbatchd.engine.states import BatchState, IntentState, JobState, StageState

    primer_running = IntentView(1, IntentState.CREATED, BatchState.SUBMITTED)
    primer_back = IntentView(1, IntentState.CREATED, BatchState.RETRIEVED)
    held = IntentView(2, IntentState.HELD, unsettled=59)

    def view(*intents, cancel=False):
        return JobView("job_x", JobState.ACTIVE, "batch",
                       (StageView(0, "narrative", StageState.SUBMITTED, tuple(intents)),), cancel_requested=cancel)

    assert next_step(view(primer_running, held)) == Wait(0, (1,))
    assert next_step(view(primer_back, held)) == Release(0, (2,))
    assert next_step(view(primer_back, held, cancel=True)) == Release(0, (2,), cancel=True)


def test_budget_block_names_the_figures_and_the_command():
    from tegbatchd.engine.decide import Budget, budget_block

    kw = {"what": "stage narrative (4 requests)", "job_id": "job_x"}
    assert budget_block(Budget(), estimate=5.0, job_spent=1.0, month_spent=100.0, **kw) is None
    block, go_on = budget_block(Budget(job_usd=2.0), estimate=1.5, job_spent=0.75, month_spent=0, **kw)
    assert block.kind == "budget" and "would bring the job to $2.25" in block.reason and "limit of $2.00" in block.reason
    assert go_on == "tegbatchd resume job_x --max-cost 2.25"
    assert budget_block(Budget(monthly_usd=10.0), estimate=1.0, job_spent=0, month_spent=9.5, **kw) is not None
    assert budget_block(Budget(monthly_usd=10.0, past_monthly=True), estimate=1.0, job_spent=0, month_spent=9.5,
                        **kw) is None
