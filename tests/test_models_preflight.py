"""Today's models: a retired, unknown or over-long model request is refused before anything is recorded,
at submit, in `config validate`, and in the daemon (the job blocked with one notice), against the
emulator's Models API and its dated catalogue."""

from __future__ import annotations

import json
import os
from pathlib import Path


def _config(home: Path, text: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.yaml").write_text(text)


def _stages(model: str, **over) -> str:
    names = ("story_notes", "narrative", "round_story", "synthesis", "main_report", "brief_summary", "satire")
    return "stages:\n" + "".join(f"  {n}:\n    model: {over.get(n, model)}\n" for n in names)




def test_a_retired_model_in_the_config_is_refused_before_anything_is_recorded(api_cli, real_data, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0")
    _config(_isolated_home, _stages("claude-sonnet-4-5"))
    result = cli("submit", "round-reports", "--teg", "17", "--round", "1")
    assert result.code == 2, result.err
    line = result.err.splitlines()[0]
    assert "model 'claude-sonnet-4-5' (stages.story_notes in your config) is retired" in result.err
    assert "use a current one such as 'claude-sonnet-" in result.err and "Traceback" not in result.err
    assert line.startswith("error:")
    assert emu.stats()["calls"]["create"] == 0
    assert cli("list", "--json", check=True).json()["jobs"] == []
    dry = cli("submit", "round-reports", "--teg", "17", "--round", "1", "--dry-run")
    assert dry.code == 2 and "claude-sonnet-4-5" in dry.err


def test_an_unknown_model_or_max_tokens_over_the_limit_in_a_requests_file(api_cli, tmp_path):
    cli, emu = api_cli("--process-seconds", "0")
    for model, max_tokens, expected in (("claude-does-not-exist-0", 100, "unknown to the API"),
                                        ("claude-haiku-4-5", 900_000, "is above claude-haiku-4-5's limit")):
        reqs = tmp_path / f"{model}.jsonl"
        reqs.write_text(json.dumps({"custom_id": "a", "params": {
            "model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "x"}]}}) + "\n")
        result = cli("submit", "requests", str(reqs), "--output", "out/{custom_id}.md")
        assert result.code == 2 and expected in result.err and "request a of" in result.err, result.err
    assert emu.stats()["calls"]["create"] == 0


def test_a_deprecated_model_is_sent_with_its_end_of_life_named(api_cli, tmp_path):
    cli, emu = api_cli("--process-seconds", "0", "--today", "2026-12-01")
    reqs = tmp_path / "r.jsonl"
    reqs.write_text(json.dumps({"custom_id": "a", "params": {
        "model": "claude-opus-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "x"}]}}) + "\n")
    sub = cli("submit", "requests", str(reqs), "--output", "out/{custom_id}.md", "--json", check=True).json()
    assert any("claude-opus-4-5" in n and "deprecated" in n for n in sub["notes"]), sub


def test_config_validate_refuses_a_retired_model_and_warns_offline(api_cli, cli, _isolated_home):
    _config(_isolated_home, _stages("claude-sonnet-4-5"))
    offline = cli("config", "validate")   # no key: the installed SDK's own list
    assert offline.code == 0 and "'claude-sonnet-4-5'" in offline.out and "not in the installed SDK" in offline.out
    bound, emu = api_cli("--process-seconds", "0")
    online = bound("config", "validate")
    assert online.code == 2 and "is retired" in online.err
    _config(_isolated_home, _stages("claude-sonnet-5-5"))
    assert bound("config", "validate", check=True).out.strip().endswith("valid")


def test_a_model_retired_after_submit_blocks_the_job_in_the_daemon_with_one_notice(api_cli, real_data,
                                                                                   _isolated_home):
    cli, emu = api_cli("--process-seconds", "0")
    sub = cli("submit", "round-reports", "--teg", "17", "--round", "1", "--json", check=True).json()
    _config(_isolated_home, _stages("claude-sonnet-5-5", narrative="claude-sonnet-4-5"))
    for _ in range(3):
        assert cli("poll", "--once").code == 0
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert job["state"] == "blocked" and "claude-sonnet-4-5" in job["blocked_reason"]
    from tegbatchd.store import Store

    notices = Store.open(Path(os.environ["TEGBATCHD_HOME"]) / "state" / "state.db").notices()
    assert [n["kind"] for n in notices] == ["job_blocked"] and sub["job_id"] in notices[0]["body"]
    assert emu.stats()["calls"]["create"] == 1   # the narrative stage was never sent
