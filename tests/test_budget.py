"""The budget: a submit whose estimate would pass a limit is refused with the figures (nothing recorded);
the daemon holds a chained stage or an automatic retry that would pass one: the job waits, with one
notice and the command to go on, and `resume JOB --max-cost USD` releases it."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import write_requests


def _config(text: str) -> None:
    path = Path(os.environ["TEGBATCHD_HOME"]) / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("cache_priming: off\n" + text)


def _store():
    from tegbatchd.store import Store

    return Store.open(Path(os.environ["TEGBATCHD_HOME"]) / "state" / "state.db")


def test_a_submit_over_its_limit_is_refused_with_the_figures_and_nothing_recorded(api_cli, real_data):
    _config("")
    cli, emu = api_cli("--process-seconds", "0")
    dry = cli("submit", "round-reports", "--teg", "17", "--round", "1-4", "--dry-run", "--json", check=True).json()
    estimate = dry["estimated_cost_usd"]
    refused = cli("submit", "round-reports", "--teg", "17", "--round", "1-4", "--max-cost", "0.05")
    assert refused.code == 2 and refused.out == ""
    (line,) = refused.err.strip().splitlines()
    assert f"at most ${estimate:.4f} (8 requests in 2 stages) is over the job limit of $0.0500 (--max-cost)" in line
    assert "nothing was sent" in line
    assert emu.stats()["calls"]["create"] == 0
    assert cli("list", "--json", check=True).json()["jobs"] == []
    note = cli("submit", "round-reports", "--teg", "17", "--round", "1-4", "--max-cost", "0.05", "--dry-run",
               check=True).out
    assert "note: a submit would be refused" in note
    bad = cli("submit", "round-reports", "--teg", "17", "--round", "1-4", "--max-cost", "lots")
    assert bad.code == 2 and "'lots' is not an amount of dollars" in bad.err

    _config("budget:\n  job_usd: 0.05\n")
    again = cli("submit", "round-reports", "--teg", "17", "--round", "1-4")
    assert again.code == 2 and "over the job limit of $0.0500 (budget.job_usd)" in again.err
    fits = cli("submit", "round-reports", "--teg", "17", "--round", "1-4", "--max-cost", f"{estimate + 0.01:.2f}",
               "--json", check=True).json()
    assert fits["job_id"] and emu.stats()["calls"]["create"] == 1


def test_the_monthly_budget_counts_this_months_receipts(api_cli, tmp_path):
    _config("")
    cli, emu = api_cli("--process-seconds", "0")
    cli("submit", "requests", str(write_requests(tmp_path / "a.jsonl", 3)), "--output", "misc/{custom_id}.md",
        check=True)
    cli("poll", "--once", check=True)
    spent = cli("costs", "--json", check=True).json()["total"]["cost_usd"]
    assert spent > 0
    _config(f"budget:\n  monthly_usd: {spent + 0.0001}\n")
    refused = cli("submit", "requests", str(write_requests(tmp_path / "b.jsonl", 3, prefix="b")), "--output",
                  "misc/{custom_id}.md")
    assert refused.code == 2 and f"(spent ${spent:.4f}), over budget.monthly_usd" in refused.err
    assert emu.stats()["calls"]["create"] == 1


def test_a_chained_stage_that_would_pass_the_budget_waits_and_resume_releases_it(api_cli, real_data):
    """The person lowers budget.job_usd after submitting: the story notes come back, the narrative stage is
    not sent; the job waits with one notice naming `resume`; resume with a limit sends it and the job ends."""
    _config("")
    cli, emu = api_cli("--process-seconds", "0")
    sub = cli("submit", "round-reports", "--teg", "17", "--round", "1-4", "--json", check=True).json()
    _config("budget:\n  job_usd: 0.02\n")
    cli("poll", "--once", check=True)
    job = cli("status", sub["job_id"], "--json", check=True).json()
    assert job["state"] == "blocked" and [s["state"] for s in job["stages"]] == ["done", "waiting"]
    assert "stage narrative (4 requests) would bring the job to $" in job["blocked_reason"]
    assert "over its limit of $0.0200" in job["blocked_reason"]
    assert emu.stats()["calls"]["create"] == 1                      # the narrative was never sent
    cli("poll", "--once", check=True)
    cli("poll", "--once", check=True)
    assert emu.stats()["calls"]["create"] == 1
    (notice,) = [n for n in _store().notices() if n["kind"] == "job_blocked"]   # one notice, however many polls
    assert notice["title"].endswith("held by the budget")
    assert f"tegbatchd resume {sub['job_id']} --max-cost " in notice["body"]
    listed = cli("list", check=True).out
    assert "blocked: stage narrative" in listed
    go_on = notice["body"].rsplit("--max-cost ", 1)[1].split()[0]
    command = f"tegbatchd resume {sub['job_id']} --max-cost {go_on}"
    assert job["next"] == command and cli("list", "--json", check=True).json()["jobs"][0]["next"] == command
    retried = cli("retry", sub["job_id"])   # retry would send past the budget: refused, pointing at resume
    assert retried.code == 2 and retried.out == "" and "is held by the budget" in retried.err
    assert command in retried.err and "nothing was sent" in retried.err
    assert emu.stats()["calls"]["create"] == 1 and len(_store().notices()) == 1

    wrong = cli("resume", sub["job_id"], "--max-cost", "0.03")   # still not enough: held again, said so
    assert wrong.code == 1 and "held by" not in wrong.out and "cannot go on" in wrong.out
    assert emu.stats()["calls"]["create"] == 1
    released = cli("resume", sub["job_id"], "--max-cost", "1.00", check=True).out
    assert "going on (limit $1.00)" in released and float(go_on) < 1.0
    assert emu.stats()["calls"]["create"] == 2
    cli("poll", "--once", check=True)
    job = cli("status", sub["job_id"], "--json", check=True).json()
    assert job["state"] == "done" and job["cost_usd"] <= 1.0
    not_waiting = cli("resume", sub["job_id"])
    assert not_waiting.code == 2 and "is done, not waiting" in not_waiting.err


def test_an_automatic_retry_that_would_pass_the_budget_waits(api_cli, tmp_path):
    _config("")
    cli, emu = api_cli("--process-seconds", "0", "--error-rate", "1", "--error-type", "overloaded_error")
    sub = cli("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 3)), "--output", "misc/{custom_id}.md",
              "--json", check=True).json()
    _config("budget:\n  monthly_usd: 0.0001\n")
    cli("poll", "--once", check=True)
    job = cli("status", sub["job_id"], "--json", check=True).json()
    assert job["state"] == "blocked" and "resending 3 failed request(s) of stage requests" in job["blocked_reason"]
    assert "over budget.monthly_usd $0.0001" in job["blocked_reason"]
    assert emu.stats()["calls"]["create"] == 1
    assert job["next"].startswith(f"tegbatchd resume {sub['job_id']} --max-cost ")
    released = cli("resume", sub["job_id"], "--max-cost", "1.00", check=True).out
    assert "going on (limit $1.00)" in released
    assert emu.stats()["calls"]["create"] == 2 and len(emu.received()) == 6   # 3 sent, then the 3 held ones
    assert set(emu.received().values()) == {1}
    job = cli("status", sub["job_id"], "--json", check=True).json()
    assert job["state"] == "active" and len(job["batches"]) == 2   # the held retry went out, once


def test_the_monthly_budget_counts_what_running_jobs_may_still_cost(api_cli, tmp_path):
    """Two submits back to back, each under the monthly budget alone: the second is refused, since the first
    (sent, not yet ended) may still cost its estimate."""
    _config("")
    cli, emu = api_cli("--process-seconds", "3600")
    first = write_requests(tmp_path / "a.jsonl", 3)
    estimate = cli("submit", "requests", str(first), "--output", "misc/{custom_id}.md", "--dry-run", "--json",
                   check=True).json()["estimated_cost_usd"]
    _config(f"budget:\n  monthly_usd: {estimate * 1.5:.6f}\n")
    cli("submit", "requests", str(first), "--output", "misc/{custom_id}.md", check=True)
    second = cli("submit", "requests", str(write_requests(tmp_path / "b.jsonl", 3, prefix="b")), "--output",
                 "other/{custom_id}.md")
    assert second.code == 2 and f"jobs still running at most ${estimate:.4f} more" in second.err
    assert "over budget.monthly_usd" in second.err and emu.stats()["calls"]["create"] == 1
    assert len(cli("list", "--json", check=True).json()["jobs"]) == 1
