"""Injected trouble: faulted calls, errored/expired requests, unclear creates, size limits."""

from __future__ import annotations

from collections import Counter

import anthropic
import httpx2
import pytest

from tegbatchd.emulator.answers import summarize_request
from tegbatchd.emulator.options import ERROR_TYPES, Options
from tegbatchd.emulator.outcomes import NORMAL, decide_outcomes
from tests.support.emulator import running_emulator, sdk_client


def params(i: int) -> dict:
    return {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": f"q{i}"}]}


def requests(n: int) -> list[dict]:
    return [{"custom_id": f"req_{i}", "params": params(i)} for i in range(n)]


def test_faulted_calls_are_retried_by_the_sdk_and_never_store_a_batch():
    with running_emulator("--process-seconds", "0", "--fault-rate", "0.3", "--seed", "3") as emulator:
        client = sdk_client(emulator.url, max_retries=8)
        ids = [client.messages.batches.create(requests=requests(3)).id for _ in range(5)]
        for batch_id in ids:
            assert client.messages.batches.retrieve(batch_id).request_counts.succeeded == 3
            assert len(list(client.messages.batches.results(batch_id))) == 3
        assert [b.id for b in client.messages.batches.list()] == ids[::-1]
        for batch_id in ids:
            client.messages.batches.delete(batch_id)
        for i in range(3):
            client.messages.create(**params(i))
        stats = emulator.stats()
        assert stats["batches_created"] == 5
        assert stats["faults_injected"] > 0
        served = {"create": 5, "retrieve": 10, "list": 1, "cancel": 0, "delete": 5, "results": 5, "messages": 3}
        assert sum(stats["calls"].values()) == sum(served.values()) + stats["faults_injected"]
        assert all(stats["calls"][name] >= count for name, count in served.items())


def test_every_call_faulted():
    with running_emulator("--fault-rate", "1") as emulator:
        first = httpx2.get(f"{emulator.url}/v1/messages/batches", timeout=10)
        assert first.status_code == 429 and first.headers["retry-after"] == "0.01"
        assert first.json()["error"]["type"] == "rate_limit_error"
        assert first.headers["request-id"].startswith("req_")
        client = sdk_client(emulator.url, max_retries=2)
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.batches.create(requests=requests(2))
        assert caught.value.status_code == 429  # 500, 529, then 429 again
        stats = emulator.stats()
        assert stats["calls"]["create"] == 3 and stats["calls"]["list"] == 1
        assert stats["faults_injected"] == 4 and stats["batches_created"] == 0


def outcome_of(item) -> str:
    result = item.result
    return result.error.error.type if result.type == "errored" else result.type


def test_error_and_expire_rates_are_seeded_per_batch_and_custom_id():
    opts = Options(error_rate=0.3, expire_rate=0.2, seed=11)
    with running_emulator("--process-seconds", "0", "--error-rate", "0.3", "--expire-rate", "0.2",
                          "--seed", "11") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        sent = requests(300)
        first, second = (client.messages.batches.create(requests=sent).id for _ in range(2))
        runs = {batch_id: {i.custom_id: outcome_of(i) for i in client.messages.batches.results(batch_id)}
                for batch_id in (first, second)}
        again = {i.custom_id: outcome_of(i) for i in client.messages.batches.results(first)}
        assert again == runs[first]
        assert runs[first] != runs[second]  # a resubmission in a new batch gets fresh chances

        records = [summarize_request(r["custom_id"], r["params"], None) for r in sent]
        for batch_id, outcomes in runs.items():
            codes = decide_outcomes(batch_id, records, NORMAL, opts)
            expected = {"s": "succeeded", "x": "expired"}
            assert outcomes == {r.custom_id: expected.get(code) or ERROR_TYPES[int(code)]
                                for r, code in zip(records, codes, strict=True)}
            tally = Counter(outcomes.values())
            assert set(tally) == {"succeeded", "expired", "overloaded_error", "api_error"}
            assert abs(tally["overloaded_error"] - tally["api_error"]) <= 1  # they alternate
            assert 60 <= tally["overloaded_error"] + tally["api_error"] <= 120
            counts = client.messages.batches.retrieve(batch_id).request_counts
            assert counts.errored == tally["overloaded_error"] + tally["api_error"]
            assert counts.expired == tally["expired"] and counts.succeeded == tally["succeeded"]


def test_a_tag_common_to_a_batch_does_not_change_its_seeded_outcomes():
    """tegbatchd sends "<id>-<tag>" with a fresh tag per send: a seeded run must turn out the same whatever
    tags were drawn, while other batches (other ids) and other readable ids still get their own chances."""
    opts = Options(error_rate=0.4, expire_rate=0.1, max_tokens_rate=0.1, seed=3)
    sent = requests(200)
    def outcomes(tag: str | None, batch_id: str = "msgbatch_a") -> str:
        ids = [r["custom_id"] + (f"-{tag}" if tag else "") for r in sent]
        records = [summarize_request(cid, r["params"], None) for cid, r in zip(ids, sent, strict=True)]
        return decide_outcomes(batch_id, records, NORMAL, opts)

    plain = outcomes(None)
    assert outcomes("0a1b2c3d") == outcomes("ffee0011") == plain
    assert len(set(plain)) >= 3 and outcomes("0a1b2c3d", "msgbatch_b") != plain
    one = [summarize_request(f"req-7-{tag}", sent[0]["params"], None) for tag in ("0a1b2c3d", "ffee0011")]
    assert len({decide_outcomes(f"msgbatch_{n}", [one[n % 2]], NORMAL, opts) for n in range(40)}) > 1


def test_error_type_option_names_the_injected_error():
    with running_emulator("--process-seconds", "0", "--error-rate", "1", "--error-type", "billing_error") as emu:
        client = sdk_client(emu.url, max_retries=0, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=requests(4))
        assert {outcome_of(i) for i in client.messages.batches.results(batch.id)} == {"billing_error"}


def test_dropped_create_still_stores_the_batch():
    with running_emulator("--process-seconds", "0", "--unclear-create", "drop") as emulator:
        client = sdk_client(emulator.url, max_retries=0)
        with pytest.raises(anthropic.APIConnectionError):
            client.messages.batches.create(requests=requests(3))
        (stored,) = client.messages.batches.list().data
        assert stored.request_counts.succeeded == 3
        second = client.messages.batches.create(requests=requests(3))  # only the first is unclear
        assert [b.id for b in client.messages.batches.list()] == [second.id, stored.id]
        assert emulator.stats()["batches_created"] == 2


def test_stalled_create_times_out_but_exists_and_shutdown_stays_prompt():
    with running_emulator("--unclear-create", "stall", "--unclear-create-count", "2",
                          "--stall-seconds", "60") as emulator:
        client = sdk_client(emulator.url, max_retries=0, timeout=0.5)
        for _ in range(2):
            with pytest.raises(anthropic.APITimeoutError):
                client.messages.batches.create(requests=requests(2))
        listed = client.messages.batches.list().data
        assert len(listed) == 2 and all(b.processing_status == "in_progress" for b in listed)
        assert client.messages.batches.create(requests=requests(2)).processing_status == "in_progress"


def test_body_over_the_size_limit_is_413_through_the_sdk():
    with running_emulator("--max-body-bytes", "2000") as emulator:
        client = sdk_client(emulator.url, max_retries=2)
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.batches.create(requests=requests(40))
        assert caught.value.status_code == 413
        assert caught.value.body["error"]["type"] == "request_too_large"
        assert emulator.stats()["calls"]["create"] == 1  # 413 is not retried
        assert client.messages.batches.create(requests=requests(2)).request_counts.processing == 2


def test_a_new_batch_is_404_on_retrieve_and_missing_from_list_for_a_while():
    with running_emulator("--process-seconds", "3600", "--retrieve-404-seconds", "30",
                          "--list-lag-seconds", "60") as emulator:
        client = sdk_client(emulator.url, max_retries=0)
        old = client.messages.batches.create(requests=requests(1)).id
        emulator.advance(120)
        new = client.messages.batches.create(requests=requests(2)).id
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve(new)
        assert [b.id for b in client.messages.batches.list()] == [old]
        emulator.advance(31)
        assert client.messages.batches.retrieve(new).request_counts.processing == 2
        assert [b.id for b in client.messages.batches.list()] == [old]  # the list still lags
        emulator.advance(30)
        assert [b.id for b in client.messages.batches.list()] == [new, old]
        assert emulator.stats()["faults_injected"] == 1


CREDIT = ("Your credit balance is too low to access the Anthropic API. "
          "Please go to Plans & Billing to upgrade or purchase credits.")


def test_credit_exhausted_errors_every_request_of_a_batch_and_every_message():
    with running_emulator("--process-seconds", "0", "--credit-exhausted") as emulator:
        client = sdk_client(emulator.url, max_retries=0, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=requests(4))  # the create itself is accepted
        assert client.messages.batches.retrieve(batch.id).request_counts.errored == 4
        for line in client.messages.batches.results(batch.id):
            assert line.result.type == "errored"
            assert line.result.error.error.type == "invalid_request_error"
            assert line.result.error.error.message == CREDIT
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(**params(0))
        assert caught.value.body["error"]["message"] == CREDIT


@pytest.mark.parametrize("kind, status, error_type, error_code, exception", [
    ("workspace", 400, "invalid_request_error", None, anthropic.BadRequestError),
    ("tier", 429, "rate_limit_error", "enforced_spend_limit_reached", anthropic.RateLimitError),
])
def test_spend_limit_refuses_creates_without_retry_after(kind, status, error_type, error_code, exception):
    with running_emulator("--process-seconds", "0", "--spend-limit", kind) as emulator:
        client = sdk_client(emulator.url, max_retries=0)
        with pytest.raises(exception) as caught:
            client.messages.batches.create(requests=requests(1))
        error = caught.value
        assert error.status_code == status and error.type == error_type and error.error_code == error_code
        assert "retry-after" not in error.response.headers and "retry-after-ms" not in error.response.headers
        if kind == "tier":
            assert type(error).__name__ == "EnforcedSpendLimitReachedError"
        assert emulator.stats()["batches_created"] == 0
        assert client.messages.batches.list().data == []
