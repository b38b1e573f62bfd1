"""The emulator's model catalogue: GET /v1/models through the SDK, lifecycle on a day, retired models refused."""

from __future__ import annotations

import json
import subprocess
import sys

import anthropic
import pytest

from tests.support.emulator import running_emulator, sdk_client

TODAY = "2026-12-01"


def ask(model: str, max_tokens: int = 1000) -> dict:
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "Who won?"}]}


@pytest.fixture(scope="module")
def client():
    with running_emulator("--process-seconds", "0", "--today", TODAY) as emulator:
        yield sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)


def test_list_pages_newest_first_with_the_real_pagination_fields(client):
    first = client.models.list(limit=3)
    assert len(first.data) == 3 and first.has_more is True
    assert first.first_id == first.data[0].id and first.last_id == first.data[-1].id
    everything = list(client.models.list(limit=3))  # the SDK follows last_id as after_id
    assert [m.id for m in everything] == [m.id for m in client.models.list(limit=1000).data]
    assert len({m.id for m in everything}) == len(everything)
    created = [m.created_at for m in everything]
    assert created == sorted(created, reverse=True)
    for model in everything:
        assert model.type == "model" and model.display_name and model.max_tokens and model.max_input_tokens
    back = client.models.list(limit=2, before_id=everything[4].id)
    assert [m.id for m in back.data] == [everything[2].id, everything[3].id] and back.has_more is True


def test_default_list_leaves_retired_models_out_and_lifecycle_brings_them(client):
    default = {m.id: m.lifecycle for m in client.models.list(limit=1000)}
    assert "claude-sonnet-4-5-20250929" not in default and "claude-opus-4-1-20250805" not in default
    assert default["claude-opus-4-5-20251101"] == "deprecated" and default["claude-sonnet-5-5"] == "active"
    retired = {m.id for m in client.models.list(lifecycle=["retired"], limit=1000)}
    assert {"claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805"} <= retired
    assert not retired & {m for m, stage in default.items() if stage != "retired"}


def test_retrieve_by_alias_shows_limits_and_dates(client):
    sonnet = client.models.retrieve("claude-sonnet-4-5")
    assert sonnet.id == "claude-sonnet-4-5-20250929" and sonnet.lifecycle == "retired"
    assert sonnet.retires_at.date().isoformat() == "2026-11-30" and sonnet.max_tokens == 64000
    current = client.models.retrieve("claude-sonnet-5-5")
    assert current.lifecycle == "active" and current.deprecated_at is None and current.retires_at is None
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.models.retrieve("claude-no-such-model")
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_retired_and_unknown_models_fail_in_a_batch_and_on_messages(client):
    batch = client.messages.batches.create(requests=[
        {"custom_id": "retired", "params": ask("claude-sonnet-4-5")},
        {"custom_id": "dated", "params": ask("claude-opus-4-1-20250805")},
        {"custom_id": "unknown", "params": ask("claude-test-model")},
        {"custom_id": "current", "params": ask("claude-sonnet-5-5")},
        {"custom_id": "deprecated", "params": ask("claude-opus-4-5")},
    ])
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    for cid, model in (("retired", "claude-sonnet-4-5"), ("dated", "claude-opus-4-1-20250805"),
                       ("unknown", "claude-test-model")):
        assert results[cid].type == "errored"
        assert results[cid].error.error.type == "not_found_error"
        assert results[cid].error.error.message == f"model: {model}"
    assert results["current"].type == results["deprecated"].type == "succeeded"
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(**ask("claude-sonnet-4-5"))
    assert caught.value.status_code == 404 and "claude-sonnet-4-5" in caught.value.body["error"]["message"]


def test_today_before_a_retirement_still_serves_the_model():
    with running_emulator("--process-seconds", "0", "--today", "2026-11-29") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        assert client.models.retrieve("claude-sonnet-4-5").lifecycle == "deprecated"
        assert client.messages.create(**ask("claude-sonnet-4-5")).stop_reason == "end_turn"


def test_the_emulated_clock_decides_today_when_not_given(tmp_path):
    catalogue = tmp_path / "models.json"
    catalogue.write_text(json.dumps({"models": [
        {"id": "claude-test-1", "display_name": "Test 1", "created": "2026-01-01", "context_window": 1000,
         "max_output_tokens": 4000, "deprecated": "2026-01-02", "retired": "2030-01-01"}]}))
    with running_emulator("--process-seconds", "0", "--models", str(catalogue)) as emulator:
        client = sdk_client(emulator.url, max_retries=0)
        assert client.messages.create(**ask("claude-test-1")).stop_reason == "end_turn"
        emulator.advance(10 * 366 * 86400)  # the emulated date passes 2030-01-01
        assert client.models.retrieve("claude-test-1").lifecycle == "retired"
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(**ask("claude-test-1"))


def test_a_catalogue_file_replaces_the_shipped_one(tmp_path):
    catalogue = tmp_path / "models.json"
    catalogue.write_text(json.dumps({"models": [
        {"id": "claude-test-1", "display_name": "Test 1", "created": "2026-01-01", "context_window": 1000,
         "max_output_tokens": 64, "retired": "2026-06-01"},
        {"id": "claude-test-2", "display_name": "Test 2", "created": "2026-02-01", "context_window": 1000,
         "max_output_tokens": 64},
    ]}))
    with running_emulator("--models", str(catalogue), "--today", "2026-07-01") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        assert [m.id for m in client.models.list()] == ["claude-test-2"]
        assert client.messages.create(**ask("claude-test-2", 64)).model == "claude-test-2"
        with pytest.raises(anthropic.BadRequestError, match="maximum allowed number of output tokens"):
            client.messages.create(**ask("claude-test-2", 65))
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(**ask("claude-sonnet-5-5"))


def test_a_broken_catalogue_file_stops_the_emulator_with_one_line(tmp_path):
    catalogue = tmp_path / "models.json"
    catalogue.write_text('{"models": [{"id": "x"}]}')
    proc = subprocess.run([sys.executable, "-m", "tegbatchd", "emulator", "--port", "0", "--models", str(catalogue)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "models[0].display_name" in proc.stderr and str(catalogue) in proc.stderr
