"""Prompt templates: shipped and edited copies, request bodies, and the user messages built from facts."""

from __future__ import annotations

import json

import pytest

from tegbatchd.config import STAGE_NAMES, load_config
from tegbatchd.errors import ConfigError
from tegbatchd.teg import prompts
from tegbatchd.teg.data import load_table
from tegbatchd.teg.facts import round_facts, tournament_facts
from tests.conftest import FIXTURES

REAL_CSV = FIXTURES / "teg" / "all-scores.csv"
REAL_ROUNDS = FIXTURES / "teg" / "rounds.csv"


@pytest.fixture
def config():
    return load_config(None)


def _with_prompts_dir(config, value):
    config.data["prompts_dir"] = value
    return config


def test_every_stage_has_a_shipped_template(config, tmp_path):
    for stage in STAGE_NAMES:
        text = prompts.load_prompt(stage, config, tmp_path)
        assert len(text) > 500, stage
        assert "{" not in text.replace("{.", ""), f"{stage} must not hold placeholders"


def test_unknown_stage_is_a_config_error(config, tmp_path):
    with pytest.raises(ConfigError, match="no prompt template"):
        prompts.load_prompt("poetry", config, tmp_path)


def test_edited_copy_wins_and_missing_ones_fall_back(config, tmp_path):
    edited = tmp_path / "my-prompts"
    edited.mkdir()
    (edited / "narrative.md").write_text("Write a haiku about the round.\n")
    _with_prompts_dir(config, "my-prompts")  # relative: taken from the data root
    assert prompts.load_prompt("narrative", config, tmp_path) == "Write a haiku about the round."
    assert prompts.load_prompt("satire", config, tmp_path) == (prompts.SHIPPED_DIR / "satire.md").read_text().strip()


def test_missing_prompts_dir_and_empty_template_are_config_errors(config, tmp_path):
    _with_prompts_dir(config, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="is not a folder"):
        prompts.load_prompt("narrative", config, tmp_path)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "synthesis.md").write_text("  \n")
    _with_prompts_dir(config, str(tmp_path / "p"))
    with pytest.raises(ConfigError, match="is empty"):
        prompts.load_prompt("synthesis", config, tmp_path)


def test_our_wording_is_not_the_fixture_prompt(config, tmp_path):
    with (FIXTURES / "anthropic" / "requests-narrative-60.jsonl").open() as fh:
        theirs = json.loads(fh.readline())["params"]["system"][0]["text"]
    their_lines = {line.strip() for line in theirs.splitlines() if len(line.strip()) > 30}
    for stage in STAGE_NAMES:
        ours = {line.strip() for line in prompts.load_prompt(stage, config, tmp_path).splitlines()}
        assert not ours & their_lines, stage


def test_request_body_uses_the_stage_config_and_caches_the_system_prompt(config):
    config.data["stages"]["narrative"] = {"model": "claude-haiku-4-5", "max_tokens": 1234}
    body = prompts.request_params("narrative", config, "SYSTEM", "USER")
    assert body["model"] == "claude-haiku-4-5" and body["max_tokens"] == 1234
    assert body["system"] == [{"type": "text", "text": "SYSTEM", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"] == [{"role": "user", "content": "USER"}]


def test_story_notes_message_carries_the_round_facts_as_json():
    table = load_table(REAL_CSV, REAL_ROUNDS)
    facts = round_facts(table, 17, 2)
    message = prompts.story_notes_message(facts)
    assert message.startswith("TEG 17, round 2 of 4 (West Cliffs, 06/10/2024).")
    payload = next(line for line in message.splitlines() if line.startswith("{"))
    assert json.loads(payload) == json.loads(json.dumps(facts))
    assert '": ' not in payload and '", "' not in payload  # compact separators


def test_narrative_message_has_notes_standings_and_projection():
    table = load_table(REAL_CSV, REAL_ROUNDS)
    facts = round_facts(table, 17, 2)
    message = prompts.narrative_message(facts, "## Round Summary\n- notes here\n")
    assert "Story notes for this round:\n\n## Round Summary\n- notes here" in message
    context = json.loads(next(line for line in message.splitlines() if line.startswith("{")))
    assert context["leader"] == facts["leader"]
    assert context["projection"]["rounds_remaining"] == 2
    assert [s["name"] for s in context["standings"]] == [p["name"] for p in facts["players"]]
    assert {"position_before", "position", "cumulative_stableford"} <= set(context["standings"][0])


def test_synthesis_message_has_facts_and_every_round_story():
    table = load_table(REAL_CSV, REAL_ROUNDS)
    message = prompts.synthesis_message(tournament_facts(table, 2), {2: "second", 1: "first", 3: "third"})
    assert message.index("--- Round 1 story ---\nfirst") < message.index("--- Round 3 story ---\nthird")
    facts = json.loads(next(line for line in message.splitlines() if line.startswith("{")))
    assert facts["tournament"]["trophy"] == "David MULLIN"
