"""Billing errors pause the job (one critical notice, no automatic retry, no new stage) and a batch that
is briefly unknown to the API just after create is ridden out: against the emulator's faults."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import write_requests
from tests.support.emulator import running_emulator

TEMPLATE = "commentary/misc/{custom_id}.md"


def _store():
    from tegbatchd.store import Store

    return Store.open(Path(os.environ["TEGBATCHD_HOME"]) / "state" / "state.db")


def _bound(cli, emu):
    return type(cli)({**cli.env, "ANTHROPIC_API_KEY": "sk-ant-test-0000", "ANTHROPIC_BASE_URL": emu.url}, cli.cwd)


def test_credit_exhausted_blocks_the_job_with_one_notice_until_retry(cli, tmp_path, data_root):
    state = tmp_path / "emu.json"
    with running_emulator("--process-seconds", "0", "--credit-exhausted", "--state", str(state)) as emu:
        bound = _bound(cli, emu)
        port = emu.url.rsplit(":", 1)[1]
        sub = bound("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 3)), "--output", TEMPLATE,
                    "--json", check=True).json()
        for _ in range(3):
            assert bound("poll", "--once").code == 0
        job = bound("list", "--json", check=True).json()["jobs"][0]
        assert job["state"] == "blocked" and "credit" in job["blocked_reason"]
        assert emu.stats()["calls"]["create"] == 1                     # never retried by itself
        (notice,) = _store().notices()
        assert notice["title"] == "Anthropic credit exhausted" and notice["urgency"] == "critical"
        assert notice["body"].endswith(f"top up, then tegbatchd retry {sub['job_id']}")
    with running_emulator("--port", port, "--process-seconds", "0", "--state", str(state)) as emu:
        bound = _bound(cli, emu)
        assert "Resubmitted 3 request(s)" in bound("retry", sub["job_id"], check=True).out
        bound("poll", "--once", check=True)
        job = bound("list", "--json", check=True).json()["jobs"][0]
        assert job["state"] == "done" and job["written"] == 3


def test_a_spend_limit_at_create_is_one_line_and_nothing_is_retried_in_a_loop(cli, tmp_path, data_root):
    with running_emulator("--process-seconds", "0", "--spend-limit", "tier") as emu:
        bound = _bound(cli, emu)
        result = bound("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 3)), "--output", TEMPLATE)
        assert result.code == 1 and "billing" in result.err and "top up" in result.err
        assert "Traceback" not in result.err and "close your laptop" not in result.out
        assert emu.stats()["calls"]["create"] == 1                     # a spend limit is not retried
        polled = bound("poll", "--once")
        assert polled.code == 0 and emu.stats()["calls"]["create"] == 1
        job = bound("list", "--json", check=True).json()["jobs"][0]
        assert job["state"] == "blocked" and "top up" not in job["blocked_reason"]


def test_a_batch_missing_from_the_api_just_after_create_is_ridden_out(cli, tmp_path, data_root):
    with running_emulator("--process-seconds", "0", "--retrieve-404-seconds", "600", "--list-lag-seconds",
                          "600") as emu:
        bound = _bound(cli, emu)
        sub = bound("submit", "requests", str(write_requests(tmp_path / "r.jsonl", 3)), "--output", TEMPLATE,
                    "--json", check=True).json()
        for _ in range(4):   # missing from the list and 404 on retrieve: never given up on one answer
            polled = bound("poll", "--once")
            assert polled.code == 0 and "Traceback" not in polled.err
        job = bound("list", "--json", check=True).json()["jobs"][0]
        assert job["state"] == "active" and job["failed"] == []
        emu.advance(700)
        bound("poll", "--once", check=True)
        job = bound("list", "--json", check=True).json()["jobs"][0]
        assert job["state"] == "done" and job["written"] == 3
        assert sub["batch_ids"][0] == job["batches"][0]["id"]
