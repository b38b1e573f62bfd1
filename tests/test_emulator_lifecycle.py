"""Batch lifecycle on the emulated clock, state across restarts, and the command itself."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter

import httpx2
import pytest

from tests.support.emulator import API_HEADERS, running_emulator, sdk_client


def requests(n: int) -> list[dict]:
    return [{"custom_id": f"r{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 32,
                                                "messages": [{"role": "user", "content": str(i)}]}}
            for i in range(n)]


def seconds_between(later, earlier) -> float:
    return (later - earlier).total_seconds()


def test_batch_ends_process_seconds_after_creation():
    with running_emulator("--process-seconds", "30") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=requests(2))
        emulator.advance(29)
        assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
        emulator.advance(2)
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended" and ended.request_counts.succeeded == 2
        assert seconds_between(ended.ended_at, ended.created_at) == pytest.approx(30, abs=0.01)


def test_zero_process_seconds_ends_at_once_but_create_answers_in_progress():
    with running_emulator("--process-seconds", "0") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=requests(2))
        assert batch.processing_status == "in_progress" and batch.request_counts.processing == 2
        assert client.messages.batches.retrieve(batch.id).processing_status == "ended"


def test_processing_longer_than_expiry_ends_expired():
    with running_emulator("--process-seconds", "100", "--expiry-seconds", "50") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=requests(3))
        assert seconds_between(batch.expires_at, batch.created_at) == pytest.approx(50)
        emulator.advance(51)
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended" and ended.ended_at == ended.expires_at
        assert ended.request_counts.expired == 3
        assert {r.result.type for r in client.messages.batches.results(batch.id)} == {"expired"}


def test_cancel_ends_after_cancel_seconds_and_may_leave_some_finished():
    with running_emulator("--process-seconds", "100", "--cancel-seconds", "1",
                          "--cancel-finish-rate", "0.5") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=requests(40))
        client.messages.batches.cancel(batch.id)
        assert client.messages.batches.retrieve(batch.id).processing_status == "canceling"
        emulator.advance(1.5)
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended"
        kinds = Counter(r.result.type for r in client.messages.batches.results(batch.id))
        assert set(kinds) == {"canceled", "succeeded"}
        assert ended.request_counts.canceled == kinds["canceled"]
        assert ended.request_counts.succeeded == kinds["succeeded"]


def test_cancel_overtaken_by_the_end_of_processing_cancels_nothing():
    with running_emulator("--process-seconds", "5", "--cancel-seconds", "10") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=requests(3))
        client.messages.batches.cancel(batch.id)
        emulator.advance(6)
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended" and ended.cancel_initiated_at is not None
        assert ended.request_counts.succeeded == 3 and ended.request_counts.canceled == 0


def without_host(batch: dict) -> dict:
    url = batch["results_url"]
    return {**batch, "results_url": url and url.split("/v1/", 1)[1]}


def test_state_file_survives_a_restart(tmp_path):
    state = tmp_path / "emulator-state.json"
    args = ("--process-seconds", "100", "--cancel-seconds", "50", "--state", str(state))
    with running_emulator(*args) as emulator:
        client = sdk_client(emulator.url, max_retries=0)
        done, canceling, running, gone = (client.messages.batches.create(requests=requests(3)).id
                                          for _ in range(4))
        for batch_id in (done, gone):
            emulator.finish(batch_id)
        client.messages.batches.delete(gone)
        client.messages.batches.cancel(canceling)
        emulator.advance(10)
        before = {b: without_host(client.messages.batches.retrieve(b).to_dict())
                  for b in (done, canceling, running)}
        results = httpx2.get(client.messages.batches.retrieve(done).results_url, headers=API_HEADERS).content
    assert json.loads(state.read_text())["batches"]

    with running_emulator(*args) as emulator:
        client = sdk_client(emulator.url, max_retries=0)
        assert [b.id for b in client.messages.batches.list()] == [running, canceling, done]
        after = {b: without_host(client.messages.batches.retrieve(b).to_dict())
                 for b in (done, canceling, running)}
        assert after == before
        assert before[canceling]["processing_status"] == "canceling"
        assert httpx2.get(client.messages.batches.retrieve(done).results_url, headers=API_HEADERS).content == results
        with pytest.raises(Exception, match="404"):
            client.messages.batches.retrieve(gone)
        emulator.advance(91)  # the clock offset was kept: 10 + 91 > 100
        assert client.messages.batches.retrieve(running).request_counts.succeeded == 3
        assert client.messages.batches.retrieve(canceling).request_counts.canceled == 3
        newest = client.messages.batches.create(requests=requests(1)).id
        assert client.messages.batches.list().data[0].id == newest


def start_raw(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tegbatchd", "emulator", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline()


@pytest.mark.parametrize("verbose, stop", [(False, signal.SIGTERM), (True, signal.SIGINT)])
def test_command_prints_its_url_and_logs_only_when_verbose(verbose, stop):
    proc, first = start_raw(*(["-v"] if verbose else []))
    try:
        assert first.endswith("\n")
        url = first.strip()
        assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0
        assert httpx2.get(f"{url}/v1/messages/batches", headers=API_HEADERS).status_code == 200
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert out == ""
    assert ("GET /v1/messages/batches" in err) is verbose
    if not verbose:
        assert err == ""


@pytest.mark.timeout(30)
def test_a_stop_signal_is_only_noted_by_its_handler_so_it_can_never_deadlock(monkeypatch, capsys):
    """SIGTERM's handler runs between two bytecodes of the main thread. It used to call Event.set, which
    takes the lock Event.wait holds for a moment: a signal at that moment hung the emulator until SIGKILL
    (seen in the suite as "emulator exited with -9"). Now the handler only notes the signal; the loop,
    sleeping, sees it at its next turn. Here the signal is handled in the middle of that sleep."""
    from tegbatchd import cli as cli_mod
    from tegbatchd.emulator import cli as emulator_cli

    parser = cli_mod.build_parser("emulator")
    args = parser.parse_args(["emulator", "--port", "0", "--process-seconds", "0"])
    sleeps = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)  # as if SIGTERM came now, whatever this thread holds

    monkeypatch.setattr(emulator_cli.time, "sleep", sleep)
    before = signal.getsignal(signal.SIGTERM)
    assert emulator_cli.run(args, None) == 0
    assert len(sleeps) == 1  # stopped at the first check after the signal
    assert signal.getsignal(signal.SIGTERM) is before  # its own handlers removed
    assert capsys.readouterr().out.startswith("http://127.0.0.1:")
