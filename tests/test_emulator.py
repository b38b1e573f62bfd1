"""The emulator's Message Batches endpoints, driven by the real anthropic SDK over real HTTP."""

from __future__ import annotations

import json
import re
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import anthropic
import httpx2
import pytest

from tegbatchd.emulator.answers import canonical_sha256
from tests.support.emulator import running_emulator, sdk_client

KEY = "test-key"
VERSION = "2023-06-01"
BATCH_FIELDS = {"id", "type", "processing_status", "request_counts", "created_at", "expires_at", "ended_at",
                "cancel_initiated_at", "archived_at", "results_url"}
COUNT_FIELDS = {"processing", "succeeded", "errored", "canceled", "expired"}


def params(text: str = "hello", **extra) -> dict:
    return {"model": "claude-haiku-4-5", "max_tokens": 256,
            "messages": [{"role": "user", "content": text}], **extra}


def requests(n: int, prefix: str = "req") -> list[dict]:
    return [{"custom_id": f"{prefix}-{i}", "params": params(f"question {i}")} for i in range(n)]


@pytest.fixture(scope="module")
def emu():
    with running_emulator("--api-key", KEY, "--process-seconds", "3600") as emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(emu):
    return sdk_client(emu.url, KEY, max_retries=0, _strict_response_validation=True)


@pytest.fixture
def raw(emu):
    with httpx2.Client(base_url=emu.url, headers={"x-api-key": KEY, "anthropic-version": VERSION}, timeout=30) as http:
        yield http


def assert_error(response: httpx2.Response, status: int, error_type: str) -> dict:
    assert response.status_code == status
    assert response.headers["request-id"].startswith("req_")
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    assert body["request_id"] == response.headers["request-id"]
    return body


def test_create_answers_an_in_progress_batch_with_every_field(client, raw):
    batch = client.messages.batches.create(requests=requests(3))
    assert re.fullmatch(r"msgbatch_[A-Za-z0-9]{24}", batch.id)
    assert batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.to_dict() == {"processing": 3, "succeeded": 0, "errored": 0,
                                              "canceled": 0, "expired": 0}
    assert batch.expires_at - batch.created_at == timedelta(hours=24)
    assert batch.ended_at is batch.cancel_initiated_at is batch.archived_at is batch.results_url is None
    assert batch._request_id.startswith("req_")

    response = raw.get(f"/v1/messages/batches/{batch.id}")
    body = response.json()
    assert set(body) == BATCH_FIELDS and set(body["request_counts"]) == COUNT_FIELDS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["created_at"])
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"].startswith("req_")


def test_finished_batch_has_counts_and_an_absolute_results_url(emu, client):
    batch = client.messages.batches.create(requests=requests(4))
    emu.finish(batch.id)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.ended_at is not None and ended.ended_at >= ended.created_at
    assert ended.request_counts.succeeded == 4 and ended.request_counts.processing == 0
    url = urlsplit(ended.results_url)
    assert (url.scheme, url.netloc) == ("http", urlsplit(emu.url).netloc)
    assert url.path == f"/v1/messages/batches/{batch.id}/results"


def test_results_url_keeps_a_base_url_path_prefix(emu):
    prefixed = sdk_client(f"{emu.url}/some/prefix", KEY, max_retries=0, _strict_response_validation=True)
    batch = prefixed.messages.batches.create(requests=requests(2))
    emu.finish(batch.id)
    assert prefixed.messages.batches.retrieve(batch.id).results_url.startswith(f"{emu.url}/some/prefix/v1/")
    assert len(list(prefixed.messages.batches.results(batch.id))) == 2


def test_api_key_is_checked_in_both_header_styles(emu, raw):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk_client(emu.url, "wrong-key", max_retries=2).messages.batches.list()
    assert caught.value.status_code == 401 and caught.value.request_id.startswith("req_")
    assert caught.value.body["error"]["type"] == "authentication_error"

    url = "/v1/messages/batches"
    assert raw.get(url).status_code == 200  # x-api-key
    assert raw.get(url, headers={"x-api-key": "", "Authorization": f"Bearer {KEY}"}).status_code == 200
    assert_error(raw.get(url, headers={"x-api-key": "nope"}), 401, "authentication_error")
    assert_error(raw.get(url, headers={"x-api-key": "", "Authorization": "Bearer nope"}), 401,
                 "authentication_error")
    assert_error(httpx2.get(f"{emu.url}{url}", headers={"anthropic-version": VERSION}), 401, "authentication_error")


def test_any_key_is_accepted_without_api_key_option():
    with running_emulator("--process-seconds", "0") as emulator:
        assert sdk_client(emulator.url, "anything").messages.batches.list().data == []
        assert httpx2.get(f"{emulator.url}/v1/messages/batches", headers={"x-api-key": "x", "anthropic-version": VERSION}).status_code == 200


def test_unknown_ids_are_404_everywhere(client, raw):
    missing = "msgbatch_01NoSuchBatchAnywhere000"
    for call in (client.messages.batches.retrieve, client.messages.batches.cancel,
                 client.messages.batches.delete, client.messages.batches.results):
        with pytest.raises(anthropic.NotFoundError) as caught:
            call(missing)
        assert caught.value.body["error"]["type"] == "not_found_error"
    assert_error(raw.get(f"/v1/messages/batches/{missing}/results"), 404, "not_found_error")
    assert_error(raw.get("/v1/nothing-here"), 404, "not_found_error")


@pytest.mark.parametrize("body, fragment", [
    ({"requests": []}, "at least 1"),
    ({"requests": [{"custom_id": "same", "params": params()}] * 2}, "Duplicate"),
    ({"requests": [{"custom_id": "has space", "params": params()}]}, "custom_id"),
    ({"requests": [{"custom_id": "x" * 65, "params": params()}]}, "custom_id"),
    ({"requests": [{"custom_id": "", "params": params()}]}, "custom_id"),
    ({"requests": [{"custom_id": "dot.ted", "params": params()}]}, "custom_id"),
    ({"requests": [{"params": params()}]}, "custom_id"),
    ({"requests": [{"custom_id": "no-params"}]}, "params"),
    ({"requests": "not a list"}, "requests"),
    ({"batch": []}, "requests"),
])
def test_bad_envelopes_are_400_and_store_nothing(emu, client, body, fragment):
    created = emu.stats()["batches_created"]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post("/v1/messages/batches", cast_to=object, body=body)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert fragment in caught.value.body["error"]["message"]
    assert emu.stats()["batches_created"] == created


def test_more_than_100000_requests_are_refused(emu, raw):
    tiny = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    items = [{"custom_id": f"r{i}", "params": tiny} for i in range(100_001)]
    body = assert_error(raw.post("/v1/messages/batches", json={"requests": items}), 400, "invalid_request_error")
    assert "100000" in body["error"]["message"]


def test_malformed_json_and_empty_body_are_400(raw):
    headers = {"content-type": "application/json"}
    assert_error(raw.post("/v1/messages/batches", content=b"{not json", headers=headers), 400,
                 "invalid_request_error")
    assert_error(raw.post("/v1/messages/batches", content=b"", headers=headers), 400, "invalid_request_error")
    assert_error(raw.post("/v1/messages", content=b"[1,", headers=headers), 400, "invalid_request_error")


def test_body_over_256_mb_is_refused_from_its_content_length(emu):
    netloc = urlsplit(emu.url).netloc
    host, port = netloc.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/messages/batches HTTP/1.1\r\nHost: {netloc}\r\nx-api-key: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {256 * 1024 * 1024 + 1}\r\n\r\n"
            '{"requests": ['.encode()
        )
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"request-id: req_" in head.lower()
    assert json.loads(body)["error"]["type"] == "request_too_large"


def test_params_are_validated_asynchronously(emu, client):
    batch = client.messages.batches.create(requests=[
        {"custom_id": "good", "params": params()},
        {"custom_id": "no-model", "params": {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}},
        {"custom_id": "no-max", "params": {"model": "m", "messages": [{"role": "user", "content": "x"}]}},
        {"custom_id": "zero-max", "params": params(max_tokens=0)},
        {"custom_id": "no-messages", "params": {"model": "m", "max_tokens": 5}},
    ])
    assert batch.request_counts.processing == 5
    emu.finish(batch.id)
    ended = client.messages.batches.retrieve(batch.id)
    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 4)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["good"].type == "succeeded"
    for custom_id in ("no-model", "no-max", "zero-max", "no-messages"):
        assert results[custom_id].type == "errored"
        assert results[custom_id].error.error.type == "invalid_request_error"
    assert "max_tokens" in results["zero-max"].error.error.message


def test_cancel_lifecycle_and_delete(emu, client, raw):
    batch = client.messages.batches.create(requests=requests(3))
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)  # still in progress
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    assert canceling.ended_at is None and canceling.results_url is None
    assert canceling.request_counts.processing == 3
    again = client.messages.batches.cancel(batch.id)
    assert again.to_dict() == canceling.to_dict()
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        client.messages.batches.results(batch.id)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)

    emu.finish(batch.id)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.cancel_initiated_at == canceling.cancel_initiated_at
    assert ended.request_counts.canceled == 3
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["canceled"] * 3
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.cancel(batch.id)

    deleted = client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    for call in (client.messages.batches.retrieve, client.messages.batches.delete,
                 client.messages.batches.cancel):
        with pytest.raises(anthropic.NotFoundError):
            call(batch.id)
    assert_error(raw.get(f"/v1/messages/batches/{batch.id}/results"), 404, "not_found_error")
    assert batch.id not in {b.id for b in client.messages.batches.list(limit=1000)}


def test_results_of_an_unfinished_batch(emu, client, raw):
    batch = client.messages.batches.create(requests=requests(1))
    before = emu.stats()["calls"]["results"]
    with pytest.raises(anthropic.AnthropicError, match="in_progress"):
        client.messages.batches.results(batch.id)
    assert emu.stats()["calls"]["results"] == before  # the SDK never asked
    assert_error(raw.get(f"/v1/messages/batches/{batch.id}/results"), 400, "invalid_request_error")


def test_list_parameters_are_checked(raw):
    for query in ("limit=0", "limit=1001", "limit=abc", "after_id=msgbatch_01Unknown", "before_id=nope"):
        assert_error(raw.get(f"/v1/messages/batches?{query}"), 400, "invalid_request_error")


def test_list_of_nothing():
    with running_emulator() as emulator:
        page = sdk_client(emulator.url, _strict_response_validation=True).messages.batches.list()
        assert (page.data, page.has_more, page.first_id, page.last_id) == ([], False, None, None)
        assert list(page) == []


def test_messages_endpoint_answers_at_once(emu, client, raw):
    body = params("tell me", system="be brief")
    message = client.messages.create(**body)
    assert message.id.startswith("msg_") and message.model == body["model"]
    assert message.stop_reason == "end_turn" and message.usage.service_tier == "standard"
    text = message.content[0].text
    assert f"params-sha256: {canonical_sha256(body)}" in text.splitlines()
    assert "custom_id: (none)" in text.splitlines()
    assert_error(raw.post("/v1/messages", json={"model": "m", "messages": []}), 400, "invalid_request_error")


def test_stats_count_every_call(emu, client):
    emu.reset_stats()
    batch = client.messages.batches.create(requests=requests(1))
    client.messages.batches.retrieve(batch.id)
    client.messages.batches.list()
    client.messages.batches.cancel(batch.id)
    emu.finish(batch.id)
    list(client.messages.batches.results(batch.id))
    client.messages.batches.delete(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    client.messages.create(**params())
    assert emu.stats() == {
        "calls": {"create": 1, "retrieve": 3, "list": 1, "cancel": 1, "delete": 1, "results": 1, "messages": 1,
                      "models": 0, "model": 0},
        "batches_created": 1,
        "faults_injected": 0,
    }


def test_received_counts_each_custom_id_per_created_batch(emu, client):
    emu.reset_stats()
    client.messages.batches.create(requests=requests(2, prefix="twice"))
    client.messages.batches.create(requests=requests(1, prefix="twice"))
    with pytest.raises(anthropic.BadRequestError):  # a refused create received nothing
        client.messages.batches.create(requests=[{"custom_id": "bad id!", "params": params()}])
    assert emu.received() == {"twice-0": 2, "twice-1": 1}
