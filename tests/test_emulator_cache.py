"""Best-effort prompt caching: an entry exists only from a request that finished earlier, for its TTL on the
emulated clock; requests of one batch never read each other's writes (as the real satire results show)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.emulator import running_emulator, sdk_client

SATIRE = Path(__file__).resolve().parent / "fixtures" / "anthropic" / "results-satire-7.jsonl"
PREFIX = "You are the TEG golf correspondent. Keep to the facts given. " * 60


def params(i: int, ttl: str | None = None, prefix: str = PREFIX) -> dict:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return {"model": "claude-haiku-4-5", "max_tokens": 1000,
            "system": [{"type": "text", "text": prefix, "cache_control": control}],
            "messages": [{"role": "user", "content": f"Report {i}."}]}


def run_batch(client, emu, n: int, **kw) -> list:
    batch = client.messages.batches.create(requests=[{"custom_id": f"r{i}", "params": params(i, **kw)}
                                                     for i in range(n)])
    emu.finish(batch.id)
    return [r.result.message.usage for r in client.messages.batches.results(batch.id)]


@pytest.fixture
def emu():
    with running_emulator("--process-seconds", "3600") as emulator:
        yield emulator


@pytest.fixture
def client(emu):
    return sdk_client(emu.url, max_retries=0, _strict_response_validation=True)


def test_one_batch_writes_the_prefix_once_per_request_like_the_real_results(client, emu):
    real = [json.loads(line)["result"]["message"]["usage"] for line in SATIRE.read_text().splitlines()]
    assert all(u["cache_creation_input_tokens"] == 2533 and u["cache_read_input_tokens"] == 0 for u in real)
    usages = run_batch(client, emu, 7)
    writes = {u.cache_creation_input_tokens for u in usages}
    assert len(writes) == 1 and writes.pop() > 0
    assert all(u.cache_read_input_tokens == 0 for u in usages)


def test_a_later_batch_reads_what_an_earlier_one_wrote_within_the_ttl(client, emu):
    (first,) = run_batch(client, emu, 1)
    later = run_batch(client, emu, 3)
    assert all(u.cache_read_input_tokens == first.cache_creation_input_tokens for u in later)
    assert all(u.cache_creation_input_tokens == 0 for u in later)


def test_an_earlier_batch_still_running_gives_nothing_to_read(client, emu):
    running = client.messages.batches.create(requests=[{"custom_id": "a", "params": params(0)}])
    second = client.messages.batches.create(requests=[{"custom_id": "b", "params": params(1)}])
    emu.finish(second.id)  # ends before the first one: nothing had finished when it ran
    (usage,) = [r.result.message.usage for r in client.messages.batches.results(second.id)]
    assert usage.cache_creation_input_tokens > 0 and usage.cache_read_input_tokens == 0
    emu.finish(running.id)
    (usage,) = [r.result.message.usage for r in client.messages.batches.results(running.id)]
    assert usage.cache_read_input_tokens > 0  # the second batch's write had finished by now


@pytest.mark.parametrize("ttl, seconds", [(None, 300), ("5m", 300), ("1h", 3600)])
def test_entries_lapse_after_their_ttl_on_the_emulated_clock(client, emu, ttl, seconds):
    (first,) = run_batch(client, emu, 1, ttl=ttl)
    expected = "ephemeral_1h_input_tokens" if ttl == "1h" else "ephemeral_5m_input_tokens"
    assert getattr(first.cache_creation, expected) == first.cache_creation_input_tokens > 0
    emu.advance(seconds - 10)
    (hit,) = run_batch(client, emu, 1, ttl=ttl)  # a read refreshes the entry for another TTL
    assert hit.cache_read_input_tokens > 0
    emu.advance(seconds + 1)
    (miss,) = run_batch(client, emu, 1, ttl=ttl)
    assert miss.cache_read_input_tokens == 0 and miss.cache_creation_input_tokens > 0


def test_a_messages_request_warms_the_cache_for_the_next_requests(client, emu):
    first = client.messages.create(**params(0))
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    second = client.messages.create(**params(1))
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    usages = run_batch(client, emu, 2)
    assert all(u.cache_read_input_tokens > 0 for u in usages)
    other = run_batch(client, emu, 1, prefix=PREFIX + "Another prompt.")
    assert other[0].cache_read_input_tokens == 0


def test_optimistic_model_keeps_the_old_best_case():
    with running_emulator("--process-seconds", "3600", "--cache-model", "optimistic") as emu:
        client = sdk_client(emu.url, max_retries=0)
        usages = run_batch(client, emu, 3)
        assert usages[0].cache_creation_input_tokens > 0 and usages[0].cache_read_input_tokens == 0
        assert all(u.cache_read_input_tokens == usages[0].cache_creation_input_tokens for u in usages[1:])
