"""Results downloads: deterministic answers, large streams, replayed real files, cut streams."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anthropic
import httpx2
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse

from tegbatchd.emulator.answers import canonical_sha256
from tests.support.emulator import API_HEADERS, running_emulator, sdk_client

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "anthropic"
SATIRE = FIXTURES / "results-satire-7.jsonl"
NARRATIVE = FIXTURES / "requests-narrative-60.jsonl"


def params(i: int, **extra) -> dict:
    return {"model": "claude-haiku-4-5", "max_tokens": 900,
            "messages": [{"role": "user", "content": f"Write report number {i} ✓"}], **extra}


def field(text: str, name: str) -> str:
    (value,) = re.findall(rf"^{name}: (\S+)$", text, flags=re.MULTILINE)
    return value




def raw_results(client, batch_id: str) -> bytes:
    url = client.messages.batches.retrieve(batch_id).results_url
    response = httpx2.get(url, headers=API_HEADERS, timeout=30)
    assert response.status_code == 200
    assert response.headers["request-id"].startswith("req_")
    assert response.headers["transfer-encoding"] == "chunked"
    return response.content


def test_answers_name_the_custom_id_and_params_hash(client):
    requests = [{"custom_id": f"teg-{i}", "params": params(i)} for i in range(5)]
    batch = client.messages.batches.create(requests=requests)
    expected = {r["custom_id"]: canonical_sha256(r["params"]) for r in requests}
    body = raw_results(client, batch.id)
    assert b"\r" not in body and b"\n\n" not in body and body.endswith(b"\n")
    lines = body.decode().splitlines()
    assert len(lines) == 5
    for line in lines:
        item = MessageBatchIndividualResponse.model_validate(json.loads(line), strict=False)
        message = item.result.message
        text = message.content[0].text
        assert field(text, "custom_id") == item.custom_id
        assert field(text, "params-sha256") == expected[item.custom_id]
        assert message.id.startswith("msg_") and message.model == "claude-haiku-4-5"
        assert message.role == "assistant" and message.stop_reason == "end_turn"
        usage = message.usage
        assert usage.service_tier == "batch" and usage.output_tokens > 0
        assert usage.input_tokens >= len(json.dumps(requests[0]["params"])) // 4 - 5
        assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0
        assert 600 <= len(text.encode()) <= 800
    assert raw_results(client, batch.id) == body  # a second download is identical


def test_thinking_and_cache_writes_show_in_the_message(client):
    system = [{"type": "text", "text": "You are a golf journalist. " * 40, "cache_control": {"type": "ephemeral"}}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    requests = [{"custom_id": f"c{i}", "params": {**params(i, system=system, thinking=thinking), "max_tokens": 2048}}
                for i in range(3)]
    batch = client.messages.batches.create(requests=requests)
    results = {r.custom_id: r.result.message for r in client.messages.batches.results(batch.id)}
    for message in results.values():  # one batch: every request writes the prefix, none reads another's
        assert message.usage.cache_creation_input_tokens > 0 and message.usage.cache_read_input_tokens == 0
        assert message.usage.cache_creation.ephemeral_5m_input_tokens == message.usage.cache_creation_input_tokens
        assert [block.type for block in message.content] == ["thinking", "text"]
        assert message.content[0].thinking and message.content[0].signature
        assert 0 < message.usage.output_tokens_details.thinking_tokens < message.usage.output_tokens


def test_ten_thousand_results_stream_through_the_sdk(client):
    requests = [{"custom_id": f"r{i:05d}", "params": params(i)} for i in range(10_000)]
    batch = client.messages.batches.create(requests=requests)
    wanted = {r["custom_id"]: canonical_sha256(r["params"]) for r in requests}

    seen = {}
    for item in client.messages.batches.results(batch.id):
        assert item.result.type == "succeeded"
        seen[item.custom_id] = field(item.result.message.content[0].text, "params-sha256")
    assert seen == wanted

    count = 0
    with client.messages.batches.with_streaming_response.results(batch.id) as response:
        for line in response.iter_lines():
            item = json.loads(line)
            assert field(item["result"]["message"]["content"][0]["text"], "params-sha256") == wanted[
                item["custom_id"]]
            count += 1
    assert count == 10_000


def test_replayed_real_results_arrive_unchanged():
    lines = SATIRE.read_text(encoding="utf-8").splitlines()
    originals = {json.loads(line)["custom_id"]: json.loads(line) for line in lines}
    with running_emulator("--process-seconds", "0", "--replay-results", str(SATIRE)) as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        requests = [{"custom_id": cid, "params": params(i)} for i, cid in enumerate(reversed(originals))]
        batch = client.messages.batches.retrieve(client.messages.batches.create(requests=requests).id)
        assert batch.request_counts.succeeded == 7 and batch.request_counts.errored == 0
        items = list(client.messages.batches.results(batch.id))
        assert [item.custom_id for item in items] == list(originals)
        for item in items:
            original = originals[item.custom_id]
            assert item.to_dict() == original
            message = item.result.message
            assert message.usage.output_tokens == original["result"]["message"]["usage"]["output_tokens"]
            assert message.content[0].text == original["result"]["message"]["content"][0]["text"]
        assert raw_results(client, batch.id) == SATIRE.read_bytes()

        other = client.messages.batches.create(requests=requests[:3])  # different custom_ids: generated
        assert all("params-sha256" in i.result.message.content[0].text
                   for i in client.messages.batches.results(other.id))



def test_replay_any_serves_its_file_byte_for_byte_to_other_batches(tmp_path):
    odd = SATIRE.read_bytes().replace(b"\n", b"\r\n", 1) + b"\n{\"custom_id\": \"ghost\"}\n{\"truncated"
    (tmp_path / "odd.jsonl").write_bytes(odd)
    with running_emulator("--process-seconds", "0", "--replay-results", str(SATIRE),
                          "--replay-any", str(tmp_path / "odd.jsonl")) as emulator:
        client = sdk_client(emulator.url, max_retries=0)
        ids = [json.loads(line)["custom_id"] for line in SATIRE.read_text().splitlines()]
        exact = client.messages.batches.create(requests=[{"custom_id": c, "params": params(i)}
                                                         for i, c in enumerate(ids)])
        assert raw_results(client, exact.id) == SATIRE.read_bytes()  # an exact match still wins
        other = client.messages.batches.create(requests=[{"custom_id": "r1", "params": params(1)}])
        assert raw_results(client, other.id) == odd

def test_real_requests_get_answers_for_their_params():
    # The recorded requests name claude-sonnet-4-5, retired on 2026-11-30: the emulator is set to a day before.
    requests = [json.loads(line) for line in NARRATIVE.read_text(encoding="utf-8").splitlines()]
    with running_emulator("--process-seconds", "0", "--today", "2026-11-29") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=requests)
        expected = {r["custom_id"]: (canonical_sha256(r["params"]), r["params"]["model"]) for r in requests}
        got = {}
        for item in client.messages.batches.results(batch.id):
            message = item.result.message
            got[item.custom_id] = (field(message.content[0].text, "params-sha256"), message.model)
            assert message.usage.cache_creation_input_tokens + message.usage.cache_read_input_tokens > 0
    assert got == expected


def test_cut_stream_raises_like_a_dropped_connection():
    with running_emulator("--process-seconds", "0", "--drop-results-after", "5",
                          "--drop-results-times", "2") as emulator:
        client = sdk_client(emulator.url, max_retries=2)
        batch = client.messages.batches.create(requests=[{"custom_id": f"r{i}", "params": params(i)}
                                                         for i in range(20)])
        received = []
        # SDK 2.17 and later wrap a failed read of its JSONL decoder as APIConnectionError; earlier ones let
        # the transport's error through. The raw streaming response below still raises the transport's.
        with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
            for item in client.messages.batches.results(batch.id):
                received.append(item.custom_id)
        assert 4 <= len(received) <= 5  # the SDK's 64-byte chunker may still hold the last line

        lines = []
        with pytest.raises(httpx2.RemoteProtocolError):
            with client.messages.batches.with_streaming_response.results(batch.id) as response:
                for line in response.iter_lines():
                    lines.append(line)
        assert len(lines) == 5

        assert len(list(client.messages.batches.results(batch.id))) == 20  # only two downloads are cut
        assert emulator.stats()["calls"]["results"] == 3  # the SDK does not retry a cut stream


def test_answer_size_shuffling_and_truncation():
    with running_emulator("--process-seconds", "0", "--answer-bytes", "2000", "--shuffle-results",
                          "--max-tokens-rate", "1") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        ids = [f"r{i:03d}" for i in range(50)]
        batch = client.messages.batches.create(
            requests=[{"custom_id": cid, "params": params(i)} for i, cid in enumerate(ids)])
        items = list(client.messages.batches.results(batch.id))
        assert sorted(i.custom_id for i in items) == ids and [i.custom_id for i in items] != ids
        for item in items:
            message = item.result.message
            assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 900
            assert 900 <= len(message.content[0].text.encode()) <= 1200  # cut short of 2000


def test_archived_results_are_gone_but_the_batch_stays():
    with running_emulator("--process-seconds", "0", "--retention-seconds", "100") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": params(1)}])
        assert len(list(client.messages.batches.results(batch.id))) == 1
        emulator.advance(101)
        archived = client.messages.batches.retrieve(batch.id)
        assert archived.archived_at is not None
        assert (archived.archived_at - archived.created_at).total_seconds() == pytest.approx(100)
        assert archived.processing_status == "ended" and archived.results_url
        with pytest.raises(anthropic.NotFoundError):
            list(client.messages.batches.results(batch.id))
        assert [b.id for b in client.messages.batches.list()] == [batch.id]
