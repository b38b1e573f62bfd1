"""Headers as the API has them: anthropic-version required, a key required, request ids, the results download's
content type and file name, the 32 MB limit of /v1/messages."""

from __future__ import annotations

import anthropic
import httpx2
import pytest

from tests.support.emulator import API_HEADERS


def params(i: int = 0) -> dict:
    return {"model": "claude-haiku-4-5", "max_tokens": 500, "messages": [{"role": "user", "content": f"q{i}"}]}




@pytest.mark.parametrize("path", ["/v1/messages/batches", "/v1/models"])
def test_anthropic_version_missing_or_unknown_is_400(emu, path):
    missing = httpx2.get(f"{emu.url}{path}", headers={"x-api-key": "k"}, timeout=30)
    assert missing.status_code == 400 and missing.json()["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in missing.json()["error"]["message"]
    unknown = httpx2.get(f"{emu.url}{path}", headers={"x-api-key": "k", "anthropic-version": "2024-13-01"},
                         timeout=30)
    assert unknown.status_code == 400 and "2024-13-01" in unknown.json()["error"]["message"]
    for version in ("2023-06-01", "2026-10-21"):
        ok = httpx2.get(f"{emu.url}{path}", headers={"x-api-key": "k", "anthropic-version": version}, timeout=30)
        assert ok.status_code == 200


def test_the_sdk_sends_an_accepted_version(client):
    response = client.messages.batches.with_raw_response.list()
    assert response.http_response.status_code == 200
    assert response.http_response.request.headers["anthropic-version"] in ("2023-06-01", "2026-10-21")


def test_a_missing_key_is_401_even_without_api_key_option(emu):
    response = httpx2.get(f"{emu.url}/v1/messages/batches", headers={"anthropic-version": "2023-06-01"},
                          timeout=30)
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
    empty = httpx2.get(f"{emu.url}/v1/models", headers={"anthropic-version": "2023-06-01", "x-api-key": "",
                                                         "Authorization": "Bearer"}, timeout=30)
    assert empty.status_code == 401


def test_every_answer_carries_request_and_organization_ids(emu, client):
    batch = client.messages.batches.with_raw_response.create(requests=[{"custom_id": "a", "params": params()}])
    assert batch.headers["request-id"].startswith("req_") and batch.headers["anthropic-organization-id"]
    error = httpx2.get(f"{emu.url}/v1/messages/batches/msgbatch_nope", headers=API_HEADERS, timeout=30)
    assert error.status_code == 404
    assert error.headers["request-id"] == error.json()["request_id"]
    assert error.headers["anthropic-organization-id"] == batch.headers["anthropic-organization-id"]


def test_results_are_served_as_jsonl_attachments(client):
    batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": params()}])
    with client.messages.batches.with_streaming_response.results(batch.id) as response:
        assert response.headers["content-type"] == "application/x-jsonl"
        assert response.headers["content-disposition"] == (
            f"attachment; filename*=utf-8''{batch.id}_results.jsonl")
        assert response.headers["request-id"].startswith("req_")
        lines = list(response.iter_lines())
    assert len(lines) == 1


def test_messages_bodies_over_32_mb_are_413_but_batches_take_them(emu, client):
    padding = "x" * (32 * 1024 * 1024)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": padding}])
    assert caught.value.status_code == 413
    assert caught.value.body["error"]["type"] == "request_too_large"
    batch = client.messages.batches.create(requests=[{"custom_id": "big", "params": {
        "model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": padding}]}}])
    assert batch.request_counts.processing == 1
