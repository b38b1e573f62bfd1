"""The `cli` fixture runs `tegbatchd.cli.main` in this process: what a person sees must be what the real
process shows, and nothing of one call may stay behind for the next."""

from __future__ import annotations

import json
import logging
import os
import tempfile

import pytest


@pytest.mark.parametrize("argv", [["--version"], ["frobnicate"], ["paths", "--json"], ["list", "--json"],
                                  ["config", "validate"]])
def test_in_process_and_subprocess_calls_agree(cli, argv):
    here, there = cli(*argv), cli(*argv, subprocess=True)
    assert (here.code, here.out, here.err) == (there.code, there.out, there.err)


def test_argparse_exit_codes_come_back_as_results(cli):
    assert cli("--help").code == 0
    bad = cli("list", "--no-such-flag")
    assert bad.code == 2 and "unrecognized arguments: --no-such-flag" in bad.err


def test_a_call_leaves_the_process_as_it_found_it(cli, tmp_path):
    env, cwd, tempdir = dict(os.environ), os.getcwd(), tempfile.gettempdir()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    verbose = cli("-v", "list", "--json", SOME_SETTING="x")
    assert verbose.code == 0 and json.loads(verbose.out) == {"jobs": []}
    assert (dict(os.environ), os.getcwd(), tempfile.gettempdir()) == (env, cwd, tempdir)
    assert (root.handlers, root.level) == (handlers, level)


def test_the_demo_runs_in_process_on_its_own_emulator_without_a_key_in_the_environment(cli, cli_tmp, tmp_path):
    reports = tmp_path / "reports"
    result = cli("demo", "--process-seconds", "0", "--data-dir", str(reports), "--json")
    assert result.code == 0, result.err
    shown = _last_json(result.out)  # (its submit step prints its own JSON first)
    assert shown["state"] == "done" and len(shown["files"]) == 33
    assert sorted(shown["files"]) == sorted(str(p) for p in reports.rglob("*.md"))  # every file it wrote, once
    text = cli("demo", "--process-seconds", "0", "--data-dir", str(tmp_path / "again"))
    assert text.code == 0 and "ready — 33 files" in text.out and "done in " in text.out
    assert " s — 33 files under " in text.out and text.out.count("\n  commentary/") == 33
    assert [p.name.startswith("tegbatchd-demo-") for p in cli_tmp.iterdir()] == [True, True]  # its own state


def _last_json(text: str):
    decoder, at, last = json.JSONDecoder(), 0, None
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        last, at = decoder.raw_decode(text, at)
    return last


def test_the_demo_never_writes_over_a_folder_of_the_persons_own(cli, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "all-scores.csv").write_text("MINE\n")
    result = cli("demo", "--data-dir", str(mine))
    assert result.code == 2 and result.out == ""
    (line,) = result.err.strip().splitlines()
    assert "is not empty and holds no earlier demo" in line and "give it a new or empty folder" in line
    assert [p.name for p in mine.iterdir()] == ["all-scores.csv"] and (mine / "all-scores.csv").read_text() == "MINE\n"
