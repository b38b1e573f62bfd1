"""Receipts: usage recorded per request as results are retrieved, priced with the table that held the day
the batch ran, batch discount applied; `costs`, `status JOB`, `list` and the job's notification show it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, write_requests

TEMPLATE = "commentary/misc/{custom_id}.md"


def _store():
    from tegbatchd.store import Store

    return Store.open(Path(os.environ["TEGBATCHD_HOME"]) / "state" / "state.db")


@pytest.fixture(autouse=True)
def _unprimed():
    """Receipts of stages sent whole (priming has tests of its own: tests/test_priming.py)."""
    path = Path(os.environ["TEGBATCHD_HOME"]) / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("cache_priming: off\n")


def _cached_requests(path: Path, n: int, *, ttl: str | None = None) -> Path:
    """n requests sharing one long system prompt marked for caching (each its own user message)."""
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    system = [{"type": "text", "text": "You are a golf journalist. " * 400, "cache_control": control}]
    return write_requests(path, n, extra={"system": system})


def test_real_results_receipt_summed_by_hand_with_the_table_of_the_day_the_batch_ran(api_cli, tmp_path):
    """The real results file (7 requests, each writing the same 2,533-token prefix, none reading it),
    replayed as of 2026-11-29: claude-sonnet-4-5 is priced from the 2026-09 table ($3 / $15, writes 1.25x),
    half off for the batch; the hit rate says caching did nothing."""
    fixture = FIXTURES / "anthropic" / "results-satire-7.jsonl"
    lines = [json.loads(line) for line in fixture.read_text().splitlines() if line.strip()]
    cli, _ = api_cli("--process-seconds", "0", "--today", "2026-11-29", "--replay-results", str(fixture))
    reqs = tmp_path / "satire.jsonl"
    reqs.write_text("".join(json.dumps({"custom_id": r["custom_id"], "params": {
        "model": "claude-sonnet-4-5", "max_tokens": 5000, "messages": [{"role": "user", "content": "x"}]}}) + "\n"
        for r in lines))
    sub = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()
    cli("poll", "--once", check=True)

    rows = _store().conn.execute("SELECT input_tokens, cache_write_tokens, cache_write_1h_tokens, cache_read_tokens, "
                                 "output_tokens FROM requests").fetchall()
    assert len(rows) == 7 and all(r[1] == 2533 and r[2] == 0 and r[3] == 0 for r in rows)
    by_hand = sum(r[0] * 3.0 + r[1] * 3.0 * 1.25 + r[3] * 0.3 + r[4] * 15.0 for r in rows) / 1e6
    expected_usage = sum(r["result"]["message"]["usage"]["input_tokens"] for r in lines)
    assert sum(r[0] for r in rows) == expected_usage

    costs = cli("costs", "--json", check=True).json()
    assert costs["total"]["standard_cost_usd"] == pytest.approx(by_hand, abs=1e-4)
    assert costs["total"]["cost_usd"] == pytest.approx(by_hand / 2, abs=1e-4)
    assert costs["total"]["saved_usd"] == pytest.approx(by_hand / 2, abs=1e-4)
    assert costs["total"]["cache_write_5m_tokens"] == 7 * 2533 and costs["total"]["cache_hit_rate"] == 0
    assert [s["label"] for s in costs["stages"]] == ["requests"]

    status = cli("status", sub["job_id"], "--json", check=True).json()
    assert status["cost_usd"] == pytest.approx(by_hand / 2, abs=1e-4) and status["stages"][0]["cache_hit_rate"] == 0
    text = cli("status", sub["job_id"], check=True).out
    assert f"saved ${by_hand / 2:.4f}" in text and "cache hit rate requests 0%" in text
    listed = cli("list", "--json", check=True).json()["jobs"][0]
    assert listed["cost_usd"] == pytest.approx(by_hand / 2, abs=1e-4)
    (notice,) = _store().notices()
    assert notice["body"].endswith(f"Cost ${by_hand / 2:.4f}, saved ${by_hand / 2:.4f} against the standard API")


def test_costs_by_stage_model_and_month_and_since(api_cli, tmp_path):
    """Cache writes on the 1-hour TTL are recorded apart from 5-minute ones and priced at 2x input."""
    cli, _ = api_cli("--process-seconds", "0")
    cli("submit", "requests", str(_cached_requests(tmp_path / "a.jsonl", 3, ttl="1h")), "--output", TEMPLATE,
        "--json", check=True)
    cli("poll", "--once", check=True)
    rows = _store().conn.execute("SELECT input_tokens, cache_write_tokens, cache_write_1h_tokens, cache_read_tokens, "
                                 "output_tokens, model FROM requests").fetchall()
    assert {r[5] for r in rows} == {"claude-sonnet-5-5"} and all(r[1] == r[2] > 0 for r in rows)
    by_hand = sum(r[0] * 2.0 + r[2] * 4.0 + r[3] * 0.2 + r[4] * 10.0 for r in rows) / 1e6 / 2
    for by in ("stage", "model", "month", "job"):
        report = cli("costs", "--by", by, "--json", check=True).json()
        assert len(report["rows"]) == 1 and report["rows"][0]["cost_usd"] == pytest.approx(by_hand, abs=1e-4)
    assert cli("costs", "--by", "model", "--json", check=True).json()["rows"][0]["key"] == "claude-sonnet-5-5"
    assert cli("costs", "--since", "2999-01-01", "--json", check=True).json()["rows"] == []
    text = cli("costs", "--by", "stage", check=True).out
    assert "cache hit rate by stage: requests 0% of" in text and f"${by_hand:.4f}" in text
    bad = cli("costs", "--since", "last week")
    assert bad.code == 2 and "--since 'last week' is not a date" in bad.err


def test_own_price_wins_over_the_shipped_tables(api_cli, tmp_path):
    cli, _ = api_cli("--process-seconds", "0")
    config = Path(os.environ["TEGBATCHD_HOME"]) / "config" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("cache_priming: off\nprices:\n  claude-sonnet-5-5:\n    input: 20.0\n    output: 100.0\n")
    cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 2)), "--output", TEMPLATE, check=True)
    cli("poll", "--once", check=True)
    rows = _store().conn.execute("SELECT input_tokens, output_tokens FROM requests").fetchall()
    by_hand = sum(r[0] * 20.0 + r[1] * 100.0 for r in rows) / 1e6
    assert cli("costs", "--json", check=True).json()["total"]["standard_cost_usd"] == pytest.approx(by_hand, abs=1e-4)


def test_thinking_tokens_are_shown_as_part_of_the_output_and_priced_once(api_cli, tmp_path):
    """Extended thinking is billed as output: the receipt counts its tokens apart (so the person sees where
    the output went) without pricing them twice."""
    cli, _ = api_cli("--process-seconds", "0")
    reqs = write_requests(tmp_path / "t.jsonl", 3, max_tokens=3000,
                          extra={"thinking": {"type": "adaptive"}})
    sub = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()
    cli("poll", "--once", check=True)
    rows = _store().conn.execute("SELECT input_tokens, output_tokens, thinking_tokens FROM requests").fetchall()
    assert len(rows) == 3 and all(0 < think < out for _, out, think in rows)
    by_hand = sum(i * 2.0 + out * 10.0 for i, out, _ in rows) / 1e6
    costs = cli("costs", "--json", check=True).json()
    assert costs["total"]["thinking_tokens"] == sum(r[2] for r in rows)
    assert costs["total"]["output_tokens"] == sum(r[1] for r in rows)
    assert costs["total"]["standard_cost_usd"] == pytest.approx(by_hand, abs=1e-4)
    assert f"(output includes {sum(r[2] for r in rows):,} thinking tokens)" in cli("costs", check=True).out
    assert cli("status", sub["job_id"], "--json", check=True).json()["cost_usd"] == pytest.approx(by_hand / 2, abs=1e-4)


def test_a_jobs_receipt_per_request_sums_to_the_job(api_cli, tmp_path):
    """`costs --job JOB --by request`: each attempt that reported usage, on its own line (a resent one says
    which attempt), summing to the job's figure; other jobs are left out."""
    cli, _ = api_cli("--process-seconds", "0", "--error-rate", "0.4", "--seed", "2")
    sub = cli("submit", "requests", str(write_requests(tmp_path / "a.jsonl", 8)), "--output", TEMPLATE, "--json",
              check=True).json()
    cli("submit", "requests", str(write_requests(tmp_path / "b.jsonl", 2, prefix="other")), "--output",
        "other/{custom_id}.md", check=True)
    for _ in range(3):
        cli("poll", "--once", check=True)
    job = cli("status", sub["job_id"], "--json", check=True).json()
    report = cli("costs", "--job", sub["job_id"][:-1], "--by", "request", "--json", check=True).json()
    labels = [row["label"] for row in report["rows"]]
    answered = sorted({f"req-{i:05d}" for i in range(8)} - set(job["failed"]))
    assert sorted(label.split(" ")[0] for label in labels) == answered and len(answered) >= 4
    assert any(label.endswith("(attempt 2)") for label in labels)   # the seed fails some first attempts
    assert all(row["requests"] == 1 and row["cost_usd"] > 0 for row in report["rows"])
    assert sum(row["cost_usd"] for row in report["rows"]) == pytest.approx(job["cost_usd"], abs=1e-3)
    assert report["total"]["cost_usd"] == pytest.approx(job["cost_usd"], abs=1e-4)
    by_job = cli("costs", "--json", check=True).json()["rows"]
    assert len(by_job) == 2 and cli("costs", "--job", sub["job_id"], "--json", check=True).json()["rows"] == [
        row for row in by_job if row["key"] == sub["job_id"]]
    text = cli("costs", "--job", sub["job_id"], "--by", "request", check=True).out
    assert all(label in text for label in labels) and "other-" not in text
    bad = cli("costs", "--by", "request")
    assert bad.code == 2 and "--by request needs --job JOB" in bad.err and len(bad.err.strip().splitlines()) == 1


def test_each_day_is_priced_with_the_table_that_held_it(monkeypatch):
    """A price change mid-month: usage of the days before it keeps the old price, after it the new one; a
    model the newer table leaves out keeps its last price; a day before every table takes the earliest."""
    from tegbatchd import costs

    tables = [("2026-09-01", {"claude-sonnet-5": (2.0, 10.0), "claude-haiku-4-5": (1.0, 5.0)}),
              ("2027-01-15", {"claude-sonnet-5": (1.5, 7.5)})]
    monkeypatch.setattr(costs, "PRICE_TABLES", tables)
    config = {"prices": {}, "batch_discount": 0.5}
    assert costs.price_for(config, "claude-sonnet-5-5", "2027-01-14").input == 2.0   # the family's price
    assert costs.price_for(config, "claude-sonnet-5-5", "2027-01-15").input == 1.5
    assert costs.price_for(config, "claude-haiku-4-5", "2027-02-01").output == 5.0    # left out later: kept
    assert costs.price_for(config, "claude-sonnet-5", "2026-01-01").input == 2.0      # before every table
    assert costs.price_for(config, "gpt-4", "2027-02-01") is None

    def row(day: str) -> dict:
        return {"model": "claude-sonnet-5-5", "day": day, "mode": "batch", "requests": 1, "input": 1_000_000,
                "output": 100_000, "cache_write": 0, "cache_write_1h": 0, "cache_read": 0, "thinking": 0}

    before, after = costs.recorded_cost(config, [row("2027-01-10")]), costs.recorded_cost(config, [row("2027-01-20")])
    assert before.standard == pytest.approx(2.0 + 1.0) and after.standard == pytest.approx(1.5 + 0.75)
    both = costs.recorded_cost(config, [row("2027-01-10"), row("2027-01-20")])
    assert both.batch == pytest.approx((3.0 + 2.25) / 2) and both.saved == pytest.approx((3.0 + 2.25) / 2)


def _priming_off() -> None:
    config = Path(os.environ["TEGBATCHD_HOME"]) / "config" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("cache_priming: off\n")


@pytest.mark.parametrize("answers", ["at max_tokens", "short"])
def test_whole_job_estimate_bounds_the_receipt_within_the_stated_margin(api_cli, real_data, answers):
    """Every stage is estimated at submit (the narrative from its planned prompts, the notes at their
    max_tokens); the receipt never passes the estimate, and when answers run to max_tokens (the case the
    estimate is for) it is within 25% below it."""
    _priming_off()
    long = ("--answer-bytes", "40000") if answers == "at max_tokens" else ()
    cli, _ = api_cli("--process-seconds", "0", *long)
    dry = cli("submit", "round-reports", "--teg", "16-17", "--round", "1-4", "--dry-run", "--json", check=True).json()
    assert [s["stage"] for s in dry["stage_estimates"]] == ["story_notes", "narrative"]
    assert [s["requests"] for s in dry["stage_estimates"]] == [8, 8] and dry["stage_estimates"][1]["from_plan"]
    sub = cli("submit", "round-reports", "--teg", "16-17", "--round", "1-4", "--json", check=True).json()
    assert sub["estimated_cost_usd"] == dry["estimated_cost_usd"] > 0
    for _ in range(3):
        cli("poll", "--once", check=True)
    job = cli("status", sub["job_id"], "--json", check=True).json()
    assert job["state"] == "done"
    receipt = {s["label"]: s["cost_usd"] for s in cli("costs", "--by", "stage", "--json", check=True).json()["rows"]}
    for stage in dry["stage_estimates"]:
        assert receipt[stage["stage"]] <= stage["estimated_cost_usd"]
        if answers == "at max_tokens":
            assert receipt[stage["stage"]] >= 0.75 * stage["estimated_cost_usd"], (stage, receipt)
    assert job["cost_usd"] <= sub["estimated_cost_usd"]


def test_now_dry_run_shows_the_standard_price_it_pays_and_no_batches(cli, real_data):
    dry = cli("submit", "round-reports", "--teg", "17", "--round", "1-2", "--now", "--dry-run", check=True).out
    assert "batch" not in dry.lower() and "standard API price, which --now pays" in dry
    js = cli("submit", "round-reports", "--teg", "17", "--round", "1-2", "--now", "--dry-run", "--json",
             check=True).json()
    assert js["estimated_cost_usd"] == js["standard_cost_usd"] > 0 and "batches" not in js
    batch = cli("submit", "round-reports", "--teg", "17", "--round", "1-2", "--dry-run", "--json", check=True).json()
    assert batch["standard_cost_usd"] == js["standard_cost_usd"] and batch["estimated_cost_usd"] < js["estimated_cost_usd"]


def test_an_estimate_summed_per_model_equals_each_request_priced_alone():
    """estimate() sums usage per model and prices it once (a price is linear in the tokens): the same
    figures as pricing every request by itself, primed or not, with a model no table prices named."""
    import dataclasses

    from tegbatchd import costs

    one = costs.Usage(*range(1, 8))
    assert [getattr(one + one, f.name) for f in dataclasses.fields(costs.Usage)] == [2 * v for v in range(1, 8)]
    config = {"prices": {}, "batch_discount": 0.5}
    items = [costs.EstimateItem("claude-sonnet-5-5", 1000 + i, 500, "p1" if i % 2 else "", 800 if i % 2 else 0)
             for i in range(7)]
    items += [costs.EstimateItem("claude-haiku-4-5", 3000, 100, "p2", 2500, True) for _ in range(3)]
    items += [costs.EstimateItem("no-such-model", 10, 10)]
    keys = frozenset({"p1", "p2"})
    got = costs.estimate(config, items, primed_keys=keys)
    alone, primed, seen = costs.Cost(), costs.Cost(), set()
    for item in items:
        alone = alone + costs.priced(config, item.model, costs._planned(item, primed=False, first=True))
        primed = primed + costs.priced(config, item.model, costs._planned(item, primed=item.prefix_key in keys,
                                                                         first=item.prefix_key not in seen))
        seen.add(item.prefix_key)
    assert got.requests == 11 and got.cost.unknown_models == ("no-such-model",) == got.primed.unknown_models
    assert (got.cost.batch, got.cost.standard) == pytest.approx((alone.batch, alone.standard), rel=1e-12)
    assert (got.primed.batch, got.primed.standard) == pytest.approx((primed.batch, primed.standard), rel=1e-12)
    assert got.primed.batch < got.cost.batch  # priming pays off here: the test compares figures that differ
