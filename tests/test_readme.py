"""The README's commands are real: every `tegbatchd ...` it shows (inline, or a line of a shell block) parses
with the CLI's own parser (placeholders such as JOB filled in), the old flags included; its "Daily use"
section names only commands that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tegbatchd.cli import _legacy, build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
FILLED = {"JOB": "job_20261207T081200_ab12", "ID": "msgbatch_01abc", "FILE.jsonl": "r.jsonl", "SHELL": "bash",
          "DATE": "2026-12-01", "USD": "1.00", "NAME": "notes", "TEMPLATE": "x/{custom_id}.md", "PATH": "batch_results"}


def readme_commands(text: str) -> list[str]:
    """Whole commands: inline ones, and the lines of shell blocks (comments cut); not the tables' synopses
    with [optional] parts, a|b choices or `...` elisions."""
    found = re.findall(r"`(tegbatchd [^`]+)`", text)
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        found += [line.split(" #")[0].strip() for line in block.splitlines() if line.startswith("tegbatchd ")]
    found = [re.split(r"\s+(?:>|&&|;)\s", c)[0] for c in found]   # the command, not what the shell does with it
    return sorted({c for c in found if not re.search(r"\[|\||\.\.\.|…", c)})


def _filled(command: str) -> list[str]:
    return [FILLED.get(word, word) for word in shlex.split(command)[1:]]


def test_the_readme_shows_many_commands_and_its_daily_use_section_some():
    text = README.read_text(encoding="utf-8")
    daily = text.split("## Daily use", 1)[1].split("\n## ", 1)[0]
    assert len(readme_commands(text)) >= 30 and len(readme_commands(daily)) >= 8


@pytest.mark.parametrize("command", readme_commands(README.read_text(encoding="utf-8")))
def test_each_command_the_readme_shows_parses(command, capsys):
    argv = _legacy(_filled(command))
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        if argv != ["--version"]:
            pytest.fail(f"`{command}` does not parse (exit {exc.code}): {capsys.readouterr().err.strip()}")
