"""preflight.py: the product's own reading of the API's documented request rules (apart from the
emulator's), and the refusal before anything is recorded."""

from __future__ import annotations

import json
import math

import pytest

from tegbatchd.api import message_param_names
from tegbatchd.preflight import lint_params

ALLOWED = message_param_names()
GOOD = {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def problems(**changes):
    params = {**GOOD, **changes}
    for key in [k for k, v in changes.items() if v is ...]:
        del params[key]
    return lint_params(params, allowed=ALLOWED)


def test_a_plain_request_passes():
    assert problems() == []
    assert problems(system=[{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}],
                    temperature=0.7, thinking={"type": "enabled", "budget_tokens": 2000}, max_tokens=4000) == []


@pytest.mark.parametrize("changes, field", [
    ({"temperature": 5}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"frobnicate": True}, "'frobnicate'"),
    ({"stream": True}, "'stream'"),
    ({"speed": "fast"}, "'speed'"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": 123}]}, "messages.0.content"),
    ({"messages": []}, "messages"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "100"}, "max_tokens"),
    ({"model": ""}, "model"),
    ({"thinking": {"type": "enabled", "budget_tokens": 4000}, "max_tokens": 4000}, "budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "budget_tokens"),
    ({"temperature": math.nan}, "temperature"),
    ({"metadata": {"x": math.inf}}, "NaN or Infinity"),
])
def test_each_documented_rule_names_its_field(changes, field):
    found = problems(**changes)
    assert found and any(field in p for p in found), found


def test_a_requests_file_the_api_would_refuse_is_refused_before_anything_is_recorded(cli, tmp_path, _isolated_home):
    reqs = tmp_path / "r.jsonl"
    lines = [{"custom_id": "ok", "params": GOOD},
             {"custom_id": "hot", "params": {**GOOD, "temperature": 5}},
             {"custom_id": "sys", "params": {**GOOD, "messages": [{"role": "system", "content": "x"}]}}]
    reqs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    for extra in ([], ["--dry-run"]):
        result = cli("submit", "requests", str(reqs), "--output", "out/{custom_id}.md", *extra,
                     ANTHROPIC_API_KEY="sk-ant-test-0000", ANTHROPIC_BASE_URL="http://127.0.0.1:9")
        assert result.code == 2, result.err
        assert "2 request problem(s) the API would refuse; nothing was sent" in result.err
        assert "hot: temperature must be a number from 0 to 1" in result.err
        assert "sys: messages.0.role" in result.err
    assert not (_isolated_home / "state" / "requests").exists()          # nothing archived
    assert cli("list", "--json", check=True).json()["jobs"] == []         # nothing recorded


@pytest.mark.parametrize("number", [b"1e999", b"1E+400", b"-2e0309", b"9" * 309, b"1" + b"0" * 250 + b"e60",
                                    b"0.5e-999", b"1e99", b"7" * 99 + b".5", b"12.5e-400"])
def test_the_quick_finite_check_on_the_text_never_passes_a_number_that_parses_infinite(number):
    """finite_text lets the requests file's lint skip walking params again; it must never say finite for
    a text holding a number json parses to an infinite float (a false alarm only costs the walk)."""
    from tegbatchd.preflight import finite_text

    raw = b'{"model": "m", "temperature": ' + number + b'}'
    value = json.loads(raw)["temperature"]
    if isinstance(value, float) and not math.isfinite(value):
        assert not finite_text(raw)
    assert finite_text(b'{"temperature": 0.7, "max_tokens": 4000, "top_k": -1e-999}')  # the usual case: quick
    assert not finite_text(b'{"text": "case e123"}')  # a match in a string: only the slow walk follows


def test_a_huge_number_in_a_requests_file_is_refused_before_anything_is_recorded(cli, tmp_path, _isolated_home):
    reqs = tmp_path / "r.jsonl"
    reqs.write_text(json.dumps({"custom_id": "ok", "params": GOOD}) + "\n"
                    + '{"custom_id": "big", "params": {"model": "claude-sonnet-4-6", "max_tokens": 100, '
                      '"temperature": 1e999, "messages": [{"role": "user", "content": "hi"}]}}\n')
    result = cli("submit", "requests", str(reqs), "--output", "out/{custom_id}.md", "--dry-run")
    assert result.code == 2 and "big: the body holds NaN or Infinity" in result.err, result.err
    assert cli("list", "--json", check=True).json()["jobs"] == []
