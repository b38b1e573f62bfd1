"""tegbatchd.api, the Anthropic boundary: the real SDK over HTTP against the emulator. Each SDK failure
becomes one of a few errors the actions act on; a create is never retried blindly; results come line by
line and a cut stream keeps what arrived."""

from __future__ import annotations

import json

import pytest

from tegbatchd import api
from tegbatchd.context import Context
from tegbatchd.paths import Paths
from tegbatchd.polling import make_client
from tests.support.emulator import running_emulator

KEY = "sk-ant-test-api-boundary"


def _body(n: int, prefix: str = "r") -> bytes:
    requests = [{"custom_id": f"{prefix}-{i}", "params": {"model": "claude-sonnet-5-5", "max_tokens": 20,
                 "messages": [{"role": "user", "content": f"note {i}"}]}} for i in range(n)]
    return json.dumps({"requests": requests}).encode()


def _client(emu, key: str = KEY, **kw) -> api.BatchApi:
    return api.BatchApi(key, emu.url, max_retries=0, timeout=10, **kw)


@pytest.fixture(scope="module")
def emu():
    """One plain emulator for the tests that only read (process-seconds 0: a batch ends at once)."""
    with running_emulator("--process-seconds", "0", "--api-key", KEY) as running:
        yield running


def test_create_retrieve_list_and_cancel_speak_plain_dicts(emu):
    client = _client(emu)
    created = client.create(_body(3))
    assert created["id"].startswith("msgbatch_") and created["request_counts"]["processing"] == 3
    assert created["created_at"].endswith("Z")
    ended = client.retrieve(created["id"])
    assert ended["processing_status"] == "ended" and ended["request_counts"]["succeeded"] == 3
    page, has_more, last_id, clock = client.list_page(limit=1)
    assert len(page) == 1 and has_more in (True, False) and last_id == page[0]["id"]
    assert clock.server is not None and abs((clock.server - clock.local).total_seconds()) < 5  # the Date header
    assert client.calls == 3


def test_a_rejected_key_is_auth_rejected(emu):
    with pytest.raises(api.AuthRejected) as caught:
        _client(emu, key="sk-ant-someone-else").retrieve("msgbatch_x")
    assert caught.value.status == 401 and "rejected" in str(caught.value)


def test_an_unknown_batch_is_not_found(emu):
    with pytest.raises(api.NotFound) as caught:
        _client(emu).retrieve("msgbatch_doesnotexist")
    assert caught.value.status == 404
    with pytest.raises(api.NotFound):
        list(_client(emu).result_lines("msgbatch_doesnotexist"))


def test_429_and_5xx_are_unavailable_with_their_status():
    with running_emulator("--fault-rate", "1") as faulty:  # answers 429, 500, 529, 429, ... in turn
        client = _client(faulty)
        statuses = []
        for _ in range(3):
            with pytest.raises(api.Unavailable) as caught:
                client.retrieve("msgbatch_any")
            statuses.append(caught.value.status)
        assert statuses == [429, 500, 529]


def test_a_create_answered_429_or_5xx_is_retried_and_creates_nothing():
    with running_emulator("--fault-rate", "1") as faulty:
        with pytest.raises(api.Unavailable) as caught:
            _client(faulty).create(_body(2))
        stats = faulty.stats()
    assert caught.value.status in (429, 500, 529)
    assert stats["calls"]["create"] == 3 and stats["batches_created"] == 0


def test_a_body_over_the_limit_is_rejected_not_retried():
    with running_emulator("--max-body-bytes", "200") as small:
        with pytest.raises(api.Rejected) as caught:
            _client(small).create(_body(10))
        stats = small.stats()
    assert caught.value.status == 413
    assert stats["calls"]["create"] == 1 and stats["batches_created"] == 0


@pytest.mark.parametrize("how, extra", [("drop", ()), ("stall", ("--stall-seconds", "5"))])
def test_an_unclear_create_is_never_retried(how, extra):
    with running_emulator("--process-seconds", "0", "--unclear-create", how, *extra) as unclear:
        client = _client(unclear, create_timeout=0.5)
        with pytest.raises(api.Unclear):
            client.create(_body(2))
        stats = unclear.stats()
        assert stats["calls"]["create"] == 1  # one try: a second could make a second batch
        assert stats["batches_created"] == 1  # the batch exists: reconciliation finds it
        assert client.create(_body(2, prefix="s"))["id"]  # only the first create was unclear


def test_result_lines_yield_every_line_in_order(emu):
    client = _client(emu)
    batch = client.create(_body(5))
    lines = list(client.result_lines(batch["id"]))
    assert [json.loads(line)["custom_id"] for line in lines] == [f"r-{i}" for i in range(5)]
    assert all(not line.endswith((b"\n", b"\r")) for line in lines)


def test_a_cut_results_stream_keeps_the_lines_that_arrived():
    with running_emulator("--process-seconds", "0", "--drop-results-after", "3",
                          "--drop-results-times", "1") as cutting:
        client = _client(cutting)
        batch = client.create(_body(8))
        got = []
        with pytest.raises(api.StreamCut):
            for line in client.result_lines(batch["id"]):
                got.append(json.loads(line)["custom_id"])  # each line yielded is a whole JSON line
        assert got == ["r-0", "r-1", "r-2"]
        again = [json.loads(line)["custom_id"] for line in client.result_lines(batch["id"])]
        assert again == [f"r-{i}" for i in range(8)]  # the next download is whole


def test_a_cut_stream_the_sdk_wraps_as_a_connection_error_is_still_a_cut(monkeypatch):
    """SDK 2.17 wraps a failed body read of its own decoders as APIConnectionError; should it wrap the raw
    streaming response's reads too, a cut once the answer has begun stays a cut (resumed), not an outage."""
    from anthropic import _response, _streaming

    monkeypatch.setattr(_response.APIResponse, "iter_bytes", lambda self, chunk_size=None:
                        _streaming.iter_response_bytes(self.http_response, self._client))
    with running_emulator("--process-seconds", "0", "--drop-results-after", "2",
                          "--drop-results-times", "1") as cutting:
        client = _client(cutting)
        batch = client.create(_body(6))
        got = []
        with pytest.raises(api.StreamCut, match="APIConnectionError"):
            for line in client.result_lines(batch["id"]):
                got.append(json.loads(line)["custom_id"])
        assert got == ["r-0", "r-1"]


def test_the_context_api_env_comes_before_the_environment(emu, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
    home = tmp_path / "home"
    ctx = Context(paths=Paths(home / "state", home / "config", home / "logs"),
                  api_env={"ANTHROPIC_BASE_URL": emu.url, "ANTHROPIC_API_KEY": KEY})
    created = make_client(ctx).create(_body(1))
    assert created["id"].startswith("msgbatch_")
    plain = Context(paths=ctx.paths)
    with pytest.raises(api.Unavailable):
        make_client(plain).retrieve(created["id"])  # without it: the environment's dead address


def test_clients_share_one_verifying_tls_context():
    """The CA bundle is loaded once per process, and the context still verifies certificates and host names
    as the SDK's own default would."""
    import ssl

    from tegbatchd.api import BatchApi

    first, second = BatchApi("sk-ant-x", "https://api.example.test"), BatchApi("sk-ant-y", "http://127.0.0.1:9")
    contexts = {id(api.client._client._transport._pool._ssl_context) for api in (first, second)}
    assert len(contexts) == 1
    context = first.client._client._transport._pool._ssl_context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
