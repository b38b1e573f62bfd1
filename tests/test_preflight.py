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


def test_a_huge_number_in_a_requests_file_is_refused_before_anything_is_recorded(cli, tmp_path, _isolated_home):
    """The requests file's parser watches every float (params are not walked a second time): each number
    that parses infinite is named, and only those; big finite ones pass."""
    numbers = {"inf1": "1e999", "inf2": "-2E+0309", "inf3": "1" + "0" * 250 + "e60", "inf4": "1" + "0" * 310 + ".5",
               "ok1": "1e99", "ok2": "0.5e-999", "ok3": "9" * 400, "ok4": "0.7"}
    reqs = tmp_path / "r.jsonl"
    reqs.write_text("".join(
        f'{{"custom_id": "{cid}", "params": {{"model": "claude-sonnet-4-6", "max_tokens": 100, '
        f'"metadata": {{"n": {number}}}, "messages": [{{"role": "user", "content": "hi"}}]}}}}\n'
        for cid, number in numbers.items()))
    result = cli("submit", "requests", str(reqs), "--output", "out/{custom_id}.md", "--dry-run")
    assert result.code == 2 and "4 request problem(s)" in result.err, result.err
    for cid in numbers:
        assert (f"{cid}: the body holds NaN or Infinity" in result.err) == cid.startswith("inf"), (cid, result.err)
    assert cli("list", "--json", check=True).json()["jobs"] == []
