"""Per-request validation as the API documents it: an `errored` line naming the field in a batch, 400 on
/v1/messages; strict JSON; answers cut at max_tokens. The real SDK over HTTP."""

from __future__ import annotations

import anthropic
import httpx2
import pytest

from tests.support.emulator import API_HEADERS

MODEL = "claude-haiku-4-5"  # max output 64,000; takes temperature and manual thinking


def body(**extra) -> dict:
    return {"model": MODEL, "max_tokens": 1000, "messages": [{"role": "user", "content": "Who won?"}], **extra}


# (case, params, the field the message must start with)
REFUSED = [
    ("max-tokens-over-limit", body(max_tokens=64001), "max_tokens: 64001 > 64000"),
    ("budget-not-below-max", body(max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 2000}),
     "max_tokens: must be greater than thinking.budget_tokens"),
    ("budget-below-1024", body(max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1023}),
     "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
    ("temperature-high", body(temperature=1.5), "temperature: Input should be less than or equal to 1"),
    ("temperature-low", body(temperature=-0.1), "temperature: Input should be greater than or equal to 0"),
    ("unknown-param", body(frequency_penalty=0.5), "frequency_penalty: Extra inputs are not permitted"),
    ("system-role", body(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x"}]),
     "messages.0.role: Unexpected role \"system\""),
    ("content-number", body(messages=[{"role": "user", "content": 123}]), "messages.0.content: Input should be"),
    ("stream", body(stream=True), "stream: streaming is not supported in the Message Batches API"),
    ("speed", body(speed="fast"), "speed: fast mode is not supported in the Message Batches API"),
    ("max-tokens-zero", body(max_tokens=0), "max_tokens: Input should be greater than or equal to 1"),
    ("bad-ttl", body(system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]),
     "system.0.cache_control.ttl: Input should be '5m' or '1h'"),
    ("five-breakpoints", body(system=[{"type": "text", "text": f"s{i}", "cache_control": {"type": "ephemeral"}}
                                      for i in range(5)]), "A maximum of 4 blocks with cache_control"),
    ("sampling-on-sonnet-5-5", body(model="claude-sonnet-5-5", top_k=5), "top_k: is not supported on"),
    ("manual-thinking-on-sonnet-5-5", body(model="claude-sonnet-5-5", max_tokens=4000,
                                           thinking={"type": "enabled", "budget_tokens": 2000}),
     "thinking.type: 'enabled' (manual extended thinking) is not supported"),
]
ACCEPTED = [
    body(),
    body(max_tokens=64000, temperature=0, top_p=1, top_k=0, stop_sequences=["END"], metadata={"user_id": "u"}),
    body(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024}),
    body(model="claude-sonnet-5-5", thinking={"type": "adaptive"}),
    body(system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
         messages=[{"role": "user", "content": [{"type": "text", "text": "x"}]}]),
]


def create(client: anthropic.Anthropic, params: dict):
    """messages.create with any body: fields the SDK no longer takes as arguments go in extra_body."""
    named = {key: params[key] for key in ("model", "max_tokens", "messages")}
    return client.messages.create(**named, extra_body={k: v for k, v in params.items() if k not in named})




def test_each_refused_request_is_an_errored_line_naming_its_field(client):
    requests = [{"custom_id": case, "params": params} for case, params, _ in REFUSED]
    requests += [{"custom_id": f"ok-{i}", "params": params} for i, params in enumerate(ACCEPTED)]
    batch = client.messages.batches.create(requests=requests)  # the create itself succeeds
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    for case, _, start in REFUSED:
        result = results[case]
        assert result.type == "errored", case
        assert result.error.error.type == "invalid_request_error", case
        assert result.error.error.message.startswith(start), (case, result.error.error.message)
    for i in range(len(ACCEPTED)):
        assert results[f"ok-{i}"].type == "succeeded"
    counts = client.messages.batches.retrieve(batch.id).request_counts
    assert (counts.errored, counts.succeeded) == (len(REFUSED), len(ACCEPTED))


@pytest.mark.parametrize("case, params, start", [c for c in REFUSED if c[0] not in ("stream", "speed",
                                                                                     "max-tokens-zero")])
def test_messages_answers_the_same_checks_with_400(client, case, params, start):
    with pytest.raises(anthropic.BadRequestError) as caught:
        create(client, params)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert caught.value.body["error"]["message"].startswith(start)


def test_messages_accepts_fast_mode_and_cache_prewarming(client):
    assert client.messages.create(**body(speed="fast")).type == "message"
    assert client.messages.create(**body(max_tokens=0)).usage.output_tokens >= 0


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_refuse_the_whole_create(emu, client, literal):
    good = b'{"custom_id": "good", "params": {"model": "%s", "max_tokens": 10, "messages": [{"role": "user", ' \
           b'"content": "x"}]}}' % MODEL.encode()
    bad = b'{"custom_id": "bad", "params": {"model": "%s", "max_tokens": 10, "temperature": %s, ' \
          b'"messages": [{"role": "user", "content": "x"}]}}' % (MODEL.encode(), literal)
    before = len(client.messages.batches.list(limit=1000).data)
    response = httpx2.post(f"{emu.url}/v1/messages/batches", headers={**API_HEADERS, "content-type": "application/json"},
                           content=b'{"requests": [' + good + b", " + bad + b"]}", timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "JSON" in response.json()["error"]["message"]
    assert len(client.messages.batches.list(limit=1000).data) == before  # nothing was created
    single = httpx2.post(f"{emu.url}/v1/messages", headers={**API_HEADERS, "content-type": "application/json"},
                         content=bad[bad.index(b'{"model"'):-1], timeout=30)
    assert single.status_code == 400 and single.json()["error"]["type"] == "invalid_request_error"


def test_a_long_answer_stops_at_max_tokens_with_its_text_cut(client):
    full = client.messages.create(**body(max_tokens=1000))
    assert full.stop_reason == "end_turn" and full.usage.output_tokens < 1000
    short = client.messages.create(**body(max_tokens=60))
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 60
    text = short.content[0].text
    assert text.startswith("## Emulated answer") and len(text) < len(full.content[0].text)
    assert len(text) // 4 <= 60 < len(full.content[0].text) // 4  # the emulator's estimate: 4 characters a token
    batch = client.messages.batches.create(requests=[{"custom_id": "short", "params": body(max_tokens=60)},
                                                     {"custom_id": "full", "params": body(max_tokens=1000)}])
    results = {r.custom_id: r.result.message for r in client.messages.batches.results(batch.id)}
    assert results["short"].stop_reason == "max_tokens" and results["short"].usage.output_tokens == 60
    assert results["full"].stop_reason == "end_turn"


def test_new_result_fields_are_present(client):
    message = client.messages.create(**body())
    assert message.stop_details is None and message.container is None
    assert message.usage.service_tier == "standard" and message.usage.inference_geo
    assert message.usage.output_tokens_details.thinking_tokens == 0
    batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": body()}])
    (line,) = list(client.messages.batches.results(batch.id))
    assert line.result.message.usage.service_tier == "batch"
    raw = line.result.message.to_dict()
    assert {"stop_details", "container"} <= raw.keys()
    assert {"output_tokens_details", "server_tool_use", "inference_geo"} <= raw["usage"].keys()


def test_the_products_teg_requests_pass_for_every_stage(client):
    from tegbatchd.config import STAGE_NAMES, load_config
    from tegbatchd.teg.prompts import request_params

    config = load_config(None)
    system = "You write golf commentary for the TEG tournament. " * 60
    requests = [{"custom_id": stage, "params": request_params(stage, config, system, f"Facts for {stage}.")}
                for stage in STAGE_NAMES]
    batch = client.messages.batches.create(requests=requests)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert {cid: r.type for cid, r in results.items()} == dict.fromkeys(STAGE_NAMES, "succeeded")
    for result in results.values():
        assert result.message.stop_reason == "end_turn"
        assert result.message.usage.cache_creation_input_tokens > 0


def test_the_emulator_shares_no_code_with_the_product():
    """Its checks must stay a second, independent reading of the API: only tegbatchd.errors is shared."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "tegbatchd" / "emulator"
    imported = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    product = {name for name in imported if name.startswith("tegbatchd") and not name.startswith("tegbatchd.emulator")}
    assert product == {"tegbatchd.errors"}
