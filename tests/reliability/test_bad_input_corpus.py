"""A corpus of bad input, run in-process through `tegbatchd.cli.main(argv)`: every case is refused with
one line naming the problem (the first stderr line starts with "error:"), the documented exit code, no
traceback, and the state database, the state dir, the config, the data root and the input folder exactly
as they were (every entry's type, mode, size, mtime and content, and every row of every table).

Exit codes: 2 for bad input, flags, config and environment (errors.ConfigError / InputError, argparse);
5 (the README's "no API key, or the key was rejected") where the person must act outside tegbatchd: no API
key at all (api.NoApiKey), a key file that cannot be read or is readable by others. The closed-pipe cases (real subprocesses) end quietly with 141.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.reliability.support import db_dump

KNOWN = "msgbatch_known0000000000001"       # a pending batch recorded in every case's state database
DONE = "msgbatch_retrieved000000000002"     # a retrieved batch with a failed request (retry has work)
GOOD_LINE = ('{"custom_id": "%s", "params": {"model": "claude-sonnet-4-5", "max_tokens": 5, '
             '"messages": [{"role": "user", "content": "x"}]}}\n')
GOOD_KEY = "sk-ant-test-0000"
DEAD_URL = "http://127.0.0.1:9"            # nothing listens: a case that wrongly sends fails fast
OUT = "commentary/misc/{custom_id}.md"


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str                                 # must appear in stderr
    code: int = 2
    config: bytes | str | None = None           # written to the config file before the baseline
    env: dict = field(default_factory=dict)     # set for the call ({in}, {data}, {home} expanded)
    files: dict = field(default_factory=dict)   # under the input folder: name -> bytes | str | special
    data_files: dict = field(default_factory=dict)  # under the data root, same forms

    def __str__(self) -> str:
        return self.name


def req(*argv: str, output: str = OUT) -> list[str]:
    return ["submit", "requests", *argv, "--output", output]


# --- 1. command-line flags and values (argparse and the commands' own checks) -------------------------
FLAGS = [
    Case("no command", [], "required: COMMAND"),
    Case("unknown command", ["frobnicate"], "invalid choice: 'frobnicate'"),
    Case("list: unknown flag", ["list", "--bogus"], "unrecognized arguments: --bogus"),
    Case("list: flag with a value", ["list", "--all=yes"], "ignored explicit argument 'yes'"),
    Case("status: no id", ["status"], "the following arguments are required"),
    Case("retrieve: no id", ["retrieve"], "the following arguments are required"),
    Case("cancel: no id", ["cancel"], "the following arguments are required"),
    Case("retry: no id", ["retry"], "the following arguments are required"),
    Case("retry: two ids", ["retry", KNOWN, DONE], "unrecognized arguments"),
    Case("poll: unknown flag", ["poll", "--forever"], "unrecognized arguments: --forever"),
    Case("submit: no kind", ["submit"], "required: KIND"),
    Case("submit: unknown kind", ["submit", "everything"], "invalid choice: 'everything'"),
    Case("submit requests: no file", ["submit", "requests"], "required: file, --output"),
    Case("submit requests: no --output", ["submit", "requests", "{in}/good.jsonl"], "required: --output",
         files={"good.jsonl": GOOD_LINE % "a"}),
    Case("submit requests: --output without value", ["submit", "requests", "f", "--output"],
         "expected one argument"),
    Case("round-reports: no --teg", ["submit", "round-reports"], "required: --teg"),
    Case("round-reports: --teg without value", ["submit", "round-reports", "--teg"], "expected one argument"),
    Case("round-reports: both onlys", ["submit", "round-reports", "--teg", "17", "--story-notes-only",
                                       "--reports-only"], "not allowed with argument"),
    Case("tournament: no --teg or --range", ["submit", "tournament"], "one of the arguments --teg --range"),
    Case("tournament: --teg and --range", ["submit", "tournament", "--teg", "17", "--range", "3", "4"],
         "not allowed with argument"),
    Case("tournament: --range with one value", ["submit", "tournament", "--range", "3"],
         "expected 2 arguments"),
    Case("tournament: --story-notes-only with reports", ["submit", "tournament", "--teg", "17",
                                                         "--story-notes-only", "--satire", "--dry-run"],
         "--story-notes-only excludes the report flags"),
    Case("teg: no action", ["teg"], "required: ACTION"),
    Case("teg: unknown action", ["teg", "report"], "invalid choice: 'report'"),
    Case("teg summary: no --teg", ["teg", "summary"], "required: --teg"),
    Case("config: no action", ["config"], "required: ACTION"),
    Case("config: unknown action", ["config", "edit"], "invalid choice: 'edit'"),
    Case("config validate: two files", ["config", "validate", "a", "b"], "unrecognized arguments: b"),
    Case("config init: file exists", ["config", "init"], "already exists", config="poll_interval_minutes: 5\n"),
    Case("service: no action", ["service"], "required"),
    Case("service: unknown action", ["service", "restart"], "invalid choice: 'restart'"),
    Case("paths: unknown flag", ["paths", "--where"], "unrecognized arguments: --where"),
    Case("daemon: unknown flag", ["daemon", "--fast"], "unrecognized arguments: --fast"),
    Case("demo: unknown flag", ["demo", "--bogus"], "unrecognized arguments: --bogus"),
    Case("--retrieve-batch without id", ["--retrieve-batch"], "the following arguments are required"),
    Case("--list-batches with junk", ["--list-batches", "junk"], "unrecognized arguments: junk"),
    Case("emulator: port past 65535", ["emulator", "--port", "99999"], "99999 is not a port"),
    Case("emulator: negative port", ["emulator", "--port", "-1"], "-1 is not a port"),
    Case("emulator: port not a number", ["emulator", "--port", "http"], "invalid _port value"),
    Case("demo: a data folder of the person's own", ["demo", "--data-dir", "{in}/mine"],
         "is not empty and holds no earlier demo", files={"mine/all-scores.csv": "MINE\n"}),
    Case("costs: per request without a job", ["costs", "--by", "request"], "--by request needs --job JOB"),
    Case("costs: --by unknown", ["costs", "--by", "week"], "invalid choice: 'week'"),
    Case("costs: --job unknown", ["costs", "--job", "job_nope"], "no job or batch"),
    Case("retrieve --force: no id", ["retrieve", "--force"], "the following arguments are required"),
]

# --- 2. ranges: checked (and bounded) before anything is expanded or loaded ----------------------------
RR = ["submit", "round-reports", "--dry-run"]
RANGES = [
    Case("--teg backwards", [*RR, "--teg", "17-10"], "TEG range 17-10 is backwards"),
    Case("--teg 1-100000000", [*RR, "--teg", "1-100000000"], "TEG 100000000 is above 1000"),
    Case("--teg 1001", [*RR, "--teg", "1001"], "TEG 1001 is above 1000"),
    Case("--teg of 5000 digits", [*RR, "--teg", "9" * 5000], "5,000 characters long"),
    Case("--teg of 150 digits", [*RR, "--teg", "1-" + "9" * 150], "is above 1000"),
    Case("--teg words", [*RR, "--teg", "seventeen"], "TEG 'seventeen' is not a number or a range"),
    Case("--teg empty", [*RR, "--teg", ""], "is not a number or a range"),
    Case("--teg trailing comma", [*RR, "--teg", "17,"], "is not a number or a range"),
    Case("--teg open range", [*RR, "--teg", "1-"], "is not a number or a range"),
    Case("--teg negative", [*RR, "--teg", "-5"], "is not a number or a range"),
    Case("--teg decimal", [*RR, "--teg", "17.5"], "is not a number or a range"),
    Case("--teg hex", [*RR, "--teg", "0x11"], "is not a number or a range"),
    Case("--teg Arabic-Indic digits", [*RR, "--teg", "١٧"], "is not a number or a range"),
    Case("--teg double dash", [*RR, "--teg", "1--3"], "is not a number or a range"),
    Case("--teg outside the data", [*RR, "--teg", "40"], "TEG 40 is not in all-scores.csv"),
    Case("--round 1-2000000000", [*RR, "--teg", "17", "--round", "1-2000000000"], "round 2000000000 is above 10"),
    Case("--round 11", [*RR, "--teg", "17", "--round", "11"], "round 11 is above 10"),
    Case("--round backwards", [*RR, "--teg", "17", "--round", "4-1"], "round range 4-1 is backwards"),
    Case("--round outside the data", [*RR, "--teg", "17", "--round", "9"], "round 9 is not in the data"),
    Case("--round words", [*RR, "--teg", "17", "--round", "all"], "round 'all' is not a number"),
    Case("tournament --range backwards", ["submit", "tournament", "--range", "17", "10", "--dry-run"],
         "backwards"),
    Case("tournament --range huge", ["submit", "tournament", "--range", "1", "100000000", "--dry-run"],
         "TEG 100000000 is above 1000"),
    Case("tournament --range words", ["submit", "tournament", "--range", "a", "b", "--dry-run"],
         "is not a number or a range"),
    Case("tournament --teg huge", ["submit", "tournament", "--teg", "1-99999999999", "--dry-run"],
         "is above 1000"),
    Case("summary: a range", ["teg", "summary", "--teg", "10-17"], "--teg takes one number here"),
    Case("summary: round range", ["teg", "summary", "--teg", "17", "--round", "1-2"], "--round takes one number"),
    Case("summary: round above 10", ["teg", "summary", "--teg", "17", "--round", "2000000000"], "is above 10"),
    Case("summary: TEG not in the data", ["teg", "summary", "--teg", "40"], "TEG 40"),
]

# --- 3. requests files ------------------------------------------------------------------------------
DEEP = "[" * 100_000 + "]" * 100_000


def _line(params: str, cid: str = "a") -> str:
    return '{"custom_id": "' + cid + '", "params": ' + params + "}\n"


JSONL = [
    ("lone surrogate", _line('{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "\\ud800"}]}'),
     "line 1: holds a lone surrogate"),
    ("lone low surrogate in custom_id", '{"custom_id": "\\udc00", "params": {}}\n', "must be 1-64"),
    ("JSON nested 100k deep", DEEP + "\n", "line 1: not valid JSON (nested more than 64 levels deep)"),
    ("line nested 65 deep", _line('{"model": "m", "max_tokens": 5, "messages": ' + "[" * 63 + "]" * 63 + "}"),
     "nested more than 64 levels deep"),
    ("deep nesting inside a string is fine, bad elsewhere",
     _line('{"model": "' + "[" * 500 + '", "max_tokens": 0, "messages": [1]}'), "params.max_tokens must be"),
    ("NaN", _line('{"model": "m", "max_tokens": NaN, "messages": [1]}'), "NaN is not JSON"),
    ("Infinity", _line('{"model": "m", "max_tokens": Infinity, "messages": [1]}'), "Infinity is not JSON"),
    ("-Infinity", _line('{"model": "m", "max_tokens": -Infinity, "messages": [1]}'), "-Infinity is not JSON"),
    ("integer of 5000 digits", _line('{"model": "m", "max_tokens": ' + "9" * 5000 + ', "messages": [1]}'),
     "line 1: not valid JSON"),
    ("bad JSON", GOOD_LINE % "a" + "{not json}\n", "line 2: not valid JSON"),
    ("truncated object", '{"custom_id": "a", "params": {\n', "line 1: not valid JSON"),
    ("trailing garbage", GOOD_LINE.rstrip("\n") % "a" + " x\n", "line 1: not valid JSON (Extra data"),
    ("two objects on a line", (GOOD_LINE % "a").rstrip("\n") + (GOOD_LINE % "b"), "not valid JSON (Extra data"),
    ("null line", "null\n", "line 1: needs an object with"),
    ("string line", '"hello"\n', "line 1: needs an object with"),
    ("number line", "42\n", "line 1: needs an object with"),
    ("array line", "[1, 2]\n", "line 1: needs an object with"),
    ("missing params", GOOD_LINE % "a" + '{"custom_id": "b"}\n', "line 2: needs an object with"),
    ("missing custom_id", '{"params": {}}\n', "line 1: needs an object with"),
    ("custom_id null", '{"custom_id": null, "params": {}}\n', "custom_id None must be 1-64"),
    ("custom_id a number", '{"custom_id": 7, "params": {}}\n', "custom_id 7 must be 1-64"),
    ("custom_id a list of 100k", '{"custom_id": [' + ",".join(["1"] * 100_000) + '], "params": {}}\n',
     "custom_id (list of 100000) must be"),
    ("custom_id empty", GOOD_LINE % "", "custom_id '' must be 1-64"),
    ("custom_id with spaces", GOOD_LINE % "no spaces allowed", "custom_id 'no spaces allowed' must be"),
    ("custom_id 65 chars", GOOD_LINE % ("x" * 65), "must be 1-64"),
    ("custom_id of 10 MB", GOOD_LINE % ("x" * 10_000_000), "must be 1-64"),
    ("custom_id with a slash", GOOD_LINE % "../../etc/passwd", "must be 1-64"),
    ("custom_id non-ASCII", GOOD_LINE % "réunion", "must be 1-64"),
    ("duplicate custom_id", GOOD_LINE % "a" + GOOD_LINE % "a", "line 2: custom_id 'a' repeats line 1"),
    ("params a string", '{"custom_id": "a", "params": "hello"}\n', "line 1: params must be an object"),
    ("params null", '{"custom_id": "a", "params": null}\n', "line 1: params must be an object"),
    ("params a list", '{"custom_id": "a", "params": []}\n', "line 1: params must be an object"),
    ("params incomplete", _line('{"model": "m"}'), "params lacks max_tokens, messages"),
    ("model a number", _line('{"model": 5, "max_tokens": 5, "messages": [1]}'), "params.model must be"),
    ("model empty", _line('{"model": " ", "max_tokens": 5, "messages": [1]}'), "params.model must be"),
    ("max_tokens a string", _line('{"model": "m", "max_tokens": "5", "messages": [1]}'), "params.max_tokens"),
    ("max_tokens zero", _line('{"model": "m", "max_tokens": 0, "messages": [1]}'), "params.max_tokens"),
    ("max_tokens true", _line('{"model": "m", "max_tokens": true, "messages": [1]}'), "params.max_tokens"),
    ("max_tokens 5.5", _line('{"model": "m", "max_tokens": 5.5, "messages": [1]}'), "params.max_tokens"),
    ("messages a string", _line('{"model": "m", "max_tokens": 5, "messages": "hi"}'), "params.messages must be"),
    ("messages empty", _line('{"model": "m", "max_tokens": 5, "messages": []}'), "params.messages must be"),
    ("empty file", "", "holds no requests"),
    ("blank lines only", "\n \n\t\n", "holds no requests"),
    ("not UTF-8", b"\xff\xfe{\x00\n", "line 1: not valid JSON (not UTF-8 text at byte 1)"),
    ("UTF-16 with BOM", (GOOD_LINE % "a").encode("utf-16"), "not valid JSON"),
    ("binary garbage", bytes(range(256)) * 40, "not valid JSON"),
    ("NUL bytes", b"\x00" * 1000 + b"\n", "line 1: not valid JSON"),
    ("2000 bad lines", "{\n" * 2000, "2000 problem(s)"),
    ("CRLF then bad", (GOOD_LINE % "a").replace("\n", "\r\n") + "oops\r\n", "line 2: not valid JSON"),
]

TEMPLATES = [
    ("parent escape", "../outside/{custom_id}.md", "leaves the data root"),
    ("absolute", "/tmp/{custom_id}.md", "is absolute"),
    ("home", "~/{custom_id}.md", "is absolute"),
    ("empty", "", "names no file"),
    ("ends with a slash", "commentary/{custom_id}/", "names no file"),
    ("unknown field", "commentary/{nope}.md", "uses {nope}"),
    ("format spec", "commentary/{index:>999999999}.md", "is also line 1's"),
    ("shared output", "commentary/same.md", "is also line 1's"),
    ("symlink out", "link/{custom_id}.md", "resolves outside the data root"),
    ("under a file", "blocker/{custom_id}.md", "is a file, not a folder"),
    ("a folder", "commentary/{custom_id}", "is a folder"),
]

REQUESTS = [Case(f"requests file: {name}", req("{in}/bad.jsonl"), expect, files={"bad.jsonl": content})
            for name, content, expect in JSONL]
REQUESTS += [Case(f"output template: {name}", req("{in}/two.jsonl", output=template), expect,
                  files={"two.jsonl": GOOD_LINE % "a" + GOOD_LINE % "req-00000"}) for name, template, expect in TEMPLATES]
REQUESTS += [
    Case("requests file: missing", req("{in}/nope.jsonl"), "cannot read"),
    Case("requests file: a folder", req("{in}/folder"), "is a folder, not a requests file", files={"folder": "DIR"}),
    Case("requests file: /dev/zero", req("/dev/zero"), "is not a regular file"),
    Case("requests file: dangling symlink", req("{in}/dangling"), "cannot read",
         files={"dangling": ("LINK", "{in}/nowhere")}),
    Case("requests file: symlink loop", req("{in}/loop1"), "the requests file",
         files={"loop1": ("LINK", "{in}/loop2"), "loop2": ("LINK", "{in}/loop1")}),
    Case("requests file: symlink to a folder", req("{in}/to-folder"), "is a folder",
         files={"folder": "DIR", "to-folder": ("LINK", "{in}/folder")}),
    Case("requests file: line over the size limit", req("{in}/long.jsonl"), "line 2: over 100,000 bytes",
         files={"long.jsonl": GOOD_LINE % "a" + "x" * 300_000}),
    Case("data root is a file", [*req("{in}/good.jsonl"), "--data-dir", "{in}/a-file"], "is a file, not a folder",
         files={"good.jsonl": GOOD_LINE % "a", "a-file": "x"}),
]

# --- 4. the config file -------------------------------------------------------------------------------
BOMB = "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]\n"
               for p, n in zip(["", "a", "b", "c", "d", "e", "f", "g"], "abcdefgh", strict=True))
CONFIGS = [
    ("malformed YAML", "poll_interval_minutes: [5\nstages: {\n", "malformed YAML"),
    ("tab indentation", "stages:\n\tstory_notes: {}\n", "malformed YAML"),
    ("unknown key", "pol_interval_minutes: 5\n", "pol_interval_minutes: unknown key"),
    ("top level a list", "- just\n- a list\n", "the top level must be a mapping"),
    ("top level a number", "5\n", "the top level must be a mapping"),
    ("not UTF-8", b"poll_interval_minutes: 5\n# caf\xe9\n", "line 2: not UTF-8 text (byte 0xe9)"),
    ("UTF-16", "poll_interval_minutes: 5\n".encode("utf-16"), "not UTF-8 text"),
    ("NUL byte", b"poll_interval_minutes: 5\x00\n", "malformed YAML (unacceptable character #x0000"),
    ("alias bomb in a wrong-typed key", BOMB + "poll_interval_minutes: *h\n", "YAML not accepted"),
    ("alias bomb in an unknown key", BOMB, "YAML not accepted"),
    ("101 aliases", "a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n", "more than 100 aliases"),
    ("recursive alias", "stages: &s\n  story_notes: *s\n", "a recursive alias"),
    ("duplicate key", "poll_interval_minutes: 5\npoll_interval_minutes: 6\n",
     "duplicate key poll_interval_minutes (first on line 1)"),
    ("duplicate nested key", "stages:\n  story_notes:\n    model: a\n    model: b\n", "duplicate key model"),
    ("duplicate key after a merge is fine, a wrong value is not",
     "base: &b {max_tokens: 5}\nstages:\n  story_notes:\n    <<: *b\n    max_tokens: 0\n", "base: unknown key"),
    ("nested 60 deep", "a: " + "[" * 60 + "]" * 60 + "\n", "nested more than 50 levels deep"),
    ("nested 100k deep", "a: " + "[" * 100_000 + "\n", "nested more than 50 levels deep"),
    ("integer of 5000 digits", "poll_interval_minutes: " + "9" * 5000 + "\n", "a number of 5,000 digits"),
    ("python object tag", "data_root: !!python/object/apply:os.system ['true']\n", "malformed YAML"),
    ("binary value", "data_root: !!binary aGVsbG8=\n", "data_root: must be a non-empty string (got 5 bytes"),
    ("date value", "data_root: 2024-01-01\n", "data_root: must be a non-empty string"),
    ("string of 1 MB in a number key", "poll_interval_minutes: " + "x" * 900_000 + "\n",
     "poll_interval_minutes: must be a number (got 'xxxx"),
    ("list of 5000 in a number key", "poll_interval_minutes: [" + ", ".join(["1"] * 5000) + "]\n",
     "must be a number (got a list of 5000 item(s))"),
    ("poll interval zero", "poll_interval_minutes: 0\n", "poll_interval_minutes: must be greater than 0"),
    ("poll interval negative", "poll_interval_minutes: -1\n", "must be greater than 0"),
    ("poll interval infinite", "poll_interval_minutes: .inf\n", "poll_interval_minutes: must be a number"),
    ("poll interval NaN", "poll_interval_minutes: .nan\n", "poll_interval_minutes: must be a number"),
    ("poll interval a string", "poll_interval_minutes: '5'\n", "must be a number (got '5')"),
    ("poll interval true", "poll_interval_minutes: true\n", "must be a number (got True)"),
    ("poll interval a mapping", "poll_interval_minutes: {a: 1}\n", "got a mapping of 1 key(s)"),
    ("max poll interval too long", "max_poll_interval_minutes: 99999\n", "must be at most 1440"),
    ("batch discount 1", "batch_discount: 1\n", "batch_discount: must be less than 1"),
    ("batch discount negative", "batch_discount: -0.1\n", "batch_discount: must be at least 0"),
    ("max_requests 0", "batch_limits:\n  max_requests: 0\n", "batch_limits.max_requests: must be at least 1"),
    ("max_requests above the API's", "batch_limits:\n  max_requests: 100001\n", "must be at most 100000"),
    ("max_requests 1.5", "batch_limits:\n  max_requests: 1.5\n", "must be a whole number"),
    ("max_bytes tiny", "batch_limits:\n  max_bytes: 10\n", "batch_limits.max_bytes: must be at least 1024"),
    ("max_tokens 0", "stages:\n  story_notes:\n    max_tokens: 0\n", "stages.story_notes.max_tokens: must be at"),
    ("max_tokens huge", "stages:\n  narrative:\n    max_tokens: 200000\n", "must be at most 128000"),
    ("model empty", "stages:\n  satire:\n    model: ''\n", "stages.satire.model: must be a non-empty string"),
    ("unknown stage", "stages:\n  epilogue: {}\n", "stages.epilogue: unknown key"),
    ("unknown stage key", "stages:\n  story_notes:\n    temperature: 1\n", "story_notes.temperature: unknown key"),
    ("stage a number", "stages:\n  story_notes: 5\n", "stages.story_notes: must be a mapping"),
    ("stages a list", "stages: [story_notes]\n", "stages: must be a mapping"),
    ("price a number", "prices:\n  claude-x: 5\n", "prices.claude-x: must be a mapping"),
    ("price negative", "prices:\n  claude-x:\n    input: -1\n", "prices.claude-x.input: must be at least 0"),
    ("price unknown field", "prices:\n  claude-x:\n    per_call: 1\n", "prices.claude-x.per_call: unknown key"),
    ("price model not a string", "prices:\n  7: {input: 1}\n", "prices.7: the name must be a non-empty string"),
    ("prices a list", "prices: [1]\n", "prices: must be a mapping"),
    ("notifications.enabled a word", "notifications:\n  enabled: maybe\n", "notifications.enabled: must be true"),
    ("notifications a number", "notifications: 5\n", "notifications: must be a mapping"),
    ("now.concurrency 0", "now:\n  concurrency: 0\n", "now.concurrency: must be at least 1"),
    ("now.max_attempts 21", "now:\n  max_attempts: 21\n", "now.max_attempts: must be at most 20"),
    ("now.tokens_per_minute 10", "now:\n  tokens_per_minute: 10\n", "must be at least 1000"),
    ("data_root empty", "data_root: ''\n", "data_root: must be a non-empty string"),
    ("data_root a number", "data_root: 5\n", "data_root: must be a non-empty string"),
    ("data_root with NUL", 'data_root: "a\\0b"\n', "data_root: must not contain a NUL character"),
    ("api_key_file a list", "api_key_file: [a]\n", "api_key_file: must be a non-empty string"),
    ("api a number", "api: 5\n", "api: must be a mapping"),
    ("create timeout 0", "api:\n  create_timeout_seconds: 0\n", "api.create_timeout_seconds: must be greater"),
    ("base_url not http", "api:\n  base_url: ftp://example.com\n", "api.base_url: must start with http://"),
    ("base_url unparsable", "api:\n  base_url: 'http://[::1'\n", "api.base_url: cannot be parsed"),
    ("prompts_dir a number", "prompts_dir: 5\n", "prompts_dir: must be a non-empty string"),
    ("scores_file a mapping", "scores_file: {a: 1}\n", "scores_file: must be a non-empty string"),
    ("config over 1 MB", "# " + "x" * 1_100_000 + "\n", "over the 1,000,000-byte limit"),
]
CONFIG_COMMANDS = [["list"], ["paths"], ["status", KNOWN], ["poll", "--once"], ["teg", "summary", "--teg", "17"],
                   [*RR, "--teg", "17"], ["config", "show"], ["list", "--json"]]
CONFIG_CASES = [Case(f"config: {name}", CONFIG_COMMANDS[i % len(CONFIG_COMMANDS)], expect, config=text)
                for i, (name, text, expect) in enumerate(CONFIGS)]
CONFIG_CASES += [
    Case("config validate FILE: duplicate key", ["config", "validate", "{in}/c.yaml"], "duplicate key now",
         files={"c.yaml": "now: {}\nnow: {}\n"}),
    Case("config validate FILE: a folder", ["config", "validate", "{in}"], "is a folder"),
    Case("config validate FILE: /dev/zero", ["config", "validate", "/dev/zero"], "is not a regular file"),
    Case("config validate FILE: missing", ["config", "validate", "{in}/none.yaml"], "does not exist"),
    Case("config file is a folder", ["list"], "is a folder", env={"TEGBATCHD_HOME": "{in}/h"},
         files={"h": "DIR", "h/config": "DIR", "h/config/config.yaml": "DIR"}),
    Case("config file is a symlink loop", ["list"], "Too many levels of symbolic links",
         env={"TEGBATCHD_HOME": "{in}/h"},
         files={"h": "DIR", "h/config": "DIR", "h/config/config.yaml": ("LINK", "{in}/h/config/config.yaml")}),
    Case("config file is a dangling symlink", ["list"], "does not exist", env={"TEGBATCHD_HOME": "{in}/h"},
         files={"h": "DIR", "h/config": "DIR", "h/config/config.yaml": ("LINK", "{in}/nowhere.yaml")}),
]

# --- 5. prompt templates (prompts_dir) ----------------------------------------------------------------
PROMPTS_CFG = "prompts_dir: prompts\n"
PROMPTS = [
    Case("prompts_dir missing", [*RR, "--teg", "17"], "prompts_dir", config=PROMPTS_CFG),
    Case("prompts_dir is a file", [*RR, "--teg", "17"], "is not a folder", config=PROMPTS_CFG,
         data_files={"prompts": "x"}),
    Case("prompt not UTF-8", [*RR, "--teg", "17"], "story_notes.md: line 2: not UTF-8 text (byte 0xe9)",
         config=PROMPTS_CFG, data_files={"prompts": "DIR", "prompts/story_notes.md": b"Write.\ncaf\xe9\n"}),
    Case("second-stage prompt not UTF-8", [*RR, "--teg", "17"], "narrative.md: line 1: not UTF-8",
         config=PROMPTS_CFG, data_files={"prompts": "DIR", "prompts/narrative.md": b"\xff\xfe"}),
    Case("tournament prompt not UTF-8", ["submit", "tournament", "--teg", "17", "--satire", "--dry-run"],
         "satire.md: line 1: not UTF-8", config=PROMPTS_CFG,
         data_files={"prompts": "DIR", "prompts/satire.md": b"\xc3("}),
    Case("prompt empty", [*RR, "--teg", "17"], "is empty", config=PROMPTS_CFG,
         data_files={"prompts": "DIR", "prompts/story_notes.md": " \n\n"}),
    Case("prompt binary (NUL bytes)", [*RR, "--teg", "17"], "holds NUL bytes", config=PROMPTS_CFG,
         data_files={"prompts": "DIR", "prompts/story_notes.md": b"Write\x00\x00\x00"}),
    Case("prompt over 1 MB", [*RR, "--teg", "17"], "is over 1,000,000 bytes", config=PROMPTS_CFG,
         data_files={"prompts": "DIR", "prompts/story_notes.md": "word " * 250_000}),
    Case("prompt symlink loop is ignored, next one bad", [*RR, "--teg", "17"], "narrative.md: line 1: not UTF-8",
         config=PROMPTS_CFG, data_files={"prompts": "DIR", "prompts/story_notes.md": ("LINK", "story_notes.md"),
                                         "prompts/narrative.md": b"\xff"}),
]

# --- 6. API key and base URL: refused before anything is recorded -------------------------------------
SEND = req("{in}/good.jsonl")
GOOD_FILES = {"good.jsonl": GOOD_LINE % "a"}
KEY_ENV = {"ANTHROPIC_BASE_URL": DEAD_URL}
KEYS = [
    Case("key with a newline inside", SEND, "has a newline inside it (character 7)", files=GOOD_FILES,
         env={**KEY_ENV, "ANTHROPIC_API_KEY": "sk-ant\nrest-of-key"}),
    Case("key with a space inside", SEND, "has a space inside it", files=GOOD_FILES,
         env={**KEY_ENV, "ANTHROPIC_API_KEY": "sk-ant rest"}),
    Case("key with a tab inside", ["status", KNOWN], "has a tab inside it",
         env={**KEY_ENV, "ANTHROPIC_API_KEY": "sk-ant\trest"}),
    Case("key with non-ASCII", ["retrieve", KNOWN], "non-ASCII character inside it",
         env={**KEY_ENV, "ANTHROPIC_API_KEY": "sk-ant-clé"}),
    Case("key with a control character", ["cancel", KNOWN], "control or non-ASCII character",
         env={**KEY_ENV, "ANTHROPIC_API_KEY": "sk-ant-\x07"}),
    Case("key of 1000 characters", ["list", "--refresh"], "is 1,000 characters long",
         env={**KEY_ENV, "ANTHROPIC_API_KEY": "k" * 1000}),
    Case("key bad at round-reports submit", ["submit", "round-reports", "--teg", "17", "--round", "1"],
         "has a newline inside it", env={**KEY_ENV, "ANTHROPIC_API_KEY": "sk\nx"}),
    Case("key bad at --now", ["submit", "round-reports", "--teg", "17", "--round", "1", "--now"],
         "has a newline inside it", env={**KEY_ENV, "ANTHROPIC_API_KEY": "sk\nx"}),
    Case("key bad at retry", ["retry", DONE], "has a newline inside it", env={**KEY_ENV, "ANTHROPIC_API_KEY": "a\nb"}),
    Case("key file not UTF-8", SEND, "is not UTF-8 text", config="api_key_file: {in}/key\n", env=KEY_ENV,
         files={**GOOD_FILES, "key": ("MODE", b"sk-\xff\xfe\n", 0o600)}),
    Case("key file a folder", SEND, "is a folder", config="api_key_file: {in}/keydir\n", env=KEY_ENV,
         files={**GOOD_FILES, "keydir": "DIR"}),
    Case("key file /dev/zero", SEND, "is not a file", config="api_key_file: /dev/zero\n", env=KEY_ENV,
         files=GOOD_FILES),
    Case("key file with two lines", SEND, "has a newline inside it", config="api_key_file: {in}/key\n",
         env=KEY_ENV, files={**GOOD_FILES, "key": ("MODE", "sk-ant-one\nsk-ant-two\n", 0o600)}),
    Case("key file huge", SEND, "characters long, not a key", config="api_key_file: {in}/key\n", env=KEY_ENV,
         files={**GOOD_FILES, "key": ("MODE", "k" * 100_000, 0o600)}),
    Case("key file missing (exit 5)", SEND, "cannot be read (No such file or directory)", code=5,
         config="api_key_file: {in}/nokey\n", env=KEY_ENV, files=GOOD_FILES),
    Case("key file readable by others (exit 5)", SEND, "readable by group or others", code=5,
         config="api_key_file: {in}/key\n", env=KEY_ENV, files={**GOOD_FILES, "key": ("MODE", "sk-ant-x\n", 0o644)}),
    Case("no key at all (exit 5)", SEND, "no Anthropic API key found", code=5, env=KEY_ENV, files=GOOD_FILES),
]
URL_KEY = {"ANTHROPIC_API_KEY": GOOD_KEY}
URLS = [
    ("unclosed IPv6", "http://[::1", "cannot be parsed (Invalid IPv6 URL)"),
    ("no scheme", "localhost:8080", "must start with http:// or https://"),
    ("ftp", "ftp://example.com", "must start with http://"),
    ("no host", "http://", "names no host"),
    ("space in host", "http://exa mple.com", "has whitespace or a control character"),
    ("newline at the end", "http://127.0.0.1:9\n", "has whitespace or a control character"),
    ("port too big", "http://127.0.0.1:99999", "cannot be parsed (Port out of range"),
    ("port not a number", "http://127.0.0.1:abc", "cannot be parsed"),
    ("port 0", "http://127.0.0.1:0", "has port 0"),
    ("bad IPv4", "http://1.2.3.999", "has an invalid IPv4 address"),
    ("bad IPv6", "http://[zz]/", "cannot be parsed"),
    ("empty label", "http://api..anthropic.com", "host name"),
    ("fragment", "http://127.0.0.1:9/#x", "has a #fragment"),
]
ENDPOINTS = [Case(f"ANTHROPIC_BASE_URL {name}", [SEND, ["status", KNOWN], ["retrieve", KNOWN], ["cancel", KNOWN],
                                                  ["retry", DONE], ["list", "--refresh"]][i % 6],
                  expect, files=GOOD_FILES, env={**URL_KEY, "ANTHROPIC_BASE_URL": url})
             for i, (name, url, expect) in enumerate(URLS)]
ENDPOINTS += [
    Case("ANTHROPIC_BASE_URL bad at round-reports submit", ["submit", "round-reports", "--teg", "17", "--round", "1"],
         "must start with http://", env={**URL_KEY, "ANTHROPIC_BASE_URL": "example.com"}),
    Case("ANTHROPIC_BASE_URL bad at --now", ["submit", "tournament", "--teg", "17", "--now"],
         "must start with http://", env={**URL_KEY, "ANTHROPIC_BASE_URL": "example.com"}),
]

# --- 7. batch ids ------------------------------------------------------------------------------------
IDS = ["msgbatch_doesnotexist", "", "x" * 10_000, "%", "_", "msgbatch_%", "msg", "../../etc/passwd", "a\nb", "ü"]
ID_CASES = [Case(f"{cmd}: id {bad[:20]!r}", [cmd, bad], "no job or batch", env={**URL_KEY, "ANTHROPIC_BASE_URL": DEAD_URL})
            for cmd in ("status", "retrieve", "cancel", "retry") for bad in IDS]
ID_CASES += [
    Case("cancel: already ended", ["cancel", DONE], "has already ended"),
    Case("retrieve --json: unknown id", ["retrieve", "--json", "msgbatch_nope"], "no job or batch 'msgbatch_nope'"),
]

# --- 8. environment variables -------------------------------------------------------------------------
ENV = [
    Case("TEGBATCHD_HOME under a file", ["list"], "is a file, not a folder", env={"TEGBATCHD_HOME": "{in}/f/home"},
         files={"f": "x"}),
    Case("TEGBATCHD_HOME is a file", ["poll", "--once"], "is a file, not a folder",
         env={"TEGBATCHD_HOME": "{in}/f"}, files={"f": "x"}),
    Case("TEGBATCHD_HOME state dir is a file", ["status", "x"], "is a file, not a folder",
         env={"TEGBATCHD_HOME": "{in}/h"}, files={"h": "DIR", "h/state": "x"}),
    Case("TEGBATCHD_HOME symlink loop", ["list"], "TEGBATCHD_HOME", env={"TEGBATCHD_HOME": "{in}/l1"},
         files={"l1": ("LINK", "{in}/l2"), "l2": ("LINK", "{in}/l1")}),
    Case("TEGBATCHD_HOME unknown user", ["paths"], "TEGBATCHD_HOME '~nosuchuser0/x' cannot be resolved",
         env={"TEGBATCHD_HOME": "~nosuchuser0/x"}),
    Case("TEGBATCHD_DATA_DIR symlink loop", ["paths"], "TEGBATCHD_DATA_DIR", env={"TEGBATCHD_DATA_DIR": "{in}/l1"},
         files={"l1": ("LINK", "{in}/l2"), "l2": ("LINK", "{in}/l1")}),
    Case("TEGBATCHD_DATA_DIR unknown user", ["teg", "summary", "--teg", "17"], "cannot be resolved",
         env={"TEGBATCHD_DATA_DIR": "~nosuchuser0/data"}),
    Case("TEGBATCHD_DATA_DIR is a file", SEND, "is a file, not a folder", files={**GOOD_FILES, "f": "x"},
         env={"TEGBATCHD_DATA_DIR": "{in}/f"}),
    Case("--data-dir symlink loop", ["paths", "--data-dir", "{in}/l1"], "--data-dir",
         files={"l1": ("LINK", "{in}/l2"), "l2": ("LINK", "{in}/l1")}),
    Case("demo --data-dir symlink loop", ["demo", "--data-dir", "{in}/l1"], "--data-dir '",
         files={"l1": ("LINK", "{in}/l2"), "l2": ("LINK", "{in}/l1")}),
    Case("demo --data-dir a file", ["demo", "--data-dir", "{in}/f"], "is a file, not a folder", files={"f": "x"}),
    Case("config data_root symlink loop", ["paths"], "data_root in the config", config="data_root: {in}/l1\n",
         env={"TEGBATCHD_DATA_DIR": ""}, files={"l1": ("LINK", "{in}/l2"), "l2": ("LINK", "{in}/l1")}),
]

# --- 9. the scores and rounds tables ------------------------------------------------------------------
SUMMARY = ["teg", "summary", "--teg", "17", "--scores", "{in}/s.csv"]
HEADER = "TEGNum,Round,Hole,PAR,Pl,Player,Sc,GrossVP,Stableford\n"
TABLES = [
    Case("scores missing", ["teg", "summary", "--teg", "17", "--scores", "{in}/none.csv"], "none.csv"),
    Case("scores a folder", ["teg", "summary", "--teg", "17", "--scores", "{in}/d.csv"], "d.csv",
         files={"d.csv": "DIR"}),
    Case("scores not UTF-8", SUMMARY, "s.csv", files={"s.csv": HEADER.encode() + b"17,1,1,4,AB,Caf\xe9,4,0,2\n"}),
    Case("scores binary", SUMMARY, "s.csv", files={"s.csv": bytes(range(256)) * 10}),
    Case("scores empty", SUMMARY, "s.csv", files={"s.csv": ""}),
    Case("scores missing columns", SUMMARY, "s.csv", files={"s.csv": "TEGNum,Round\n17,1\n"}),
    Case("scores bad numbers", SUMMARY, "s.csv", files={"s.csv": HEADER + "17,one,1,4,AB,Al,4,0,2\n"}),
    Case("scores parquet garbage", ["teg", "summary", "--teg", "17", "--scores", "{in}/s.parquet"], "s.parquet",
         files={"s.parquet": b"PAR1 not really"}),
    Case("scores unknown extension", ["teg", "summary", "--teg", "17", "--scores", "{in}/s.xlsx"], "s.xlsx",
         files={"s.xlsx": "x"}),
    Case("scores /dev/zero", ["teg", "summary", "--teg", "17", "--scores", "/dev/zero"], "/dev/zero"),
    Case("rounds not UTF-8", ["teg", "summary", "--teg", "17", "--rounds", "{in}/r.csv"], "r.csv",
         files={"r.csv": b"TEGNum,Round,Date,Course\n17,1,2024-01-01,Caf\xe9\n"}),
    Case("rounds missing columns", ["teg", "summary", "--teg", "17", "--rounds", "{in}/r.csv"], "r.csv",
         files={"r.csv": "TEGNum\n17\n"}),
    Case("scores symlink loop", ["teg", "summary", "--teg", "17", "--scores", "{in}/l1"], "l1",
         files={"l1": ("LINK", "{in}/l2"), "l2": ("LINK", "{in}/l1")}),
    Case("rounds symlink loop", [*RR, "--teg", "17", "--rounds", "{in}/l1"], "l1",
         files={"l1": ("LINK", "{in}/l2"), "l2": ("LINK", "{in}/l1")}),
    Case("scores dangling symlink", [*RR, "--teg", "17", "--scores", "{in}/gone.csv"],
         "nowhere.csv (--scores) does not exist",
         files={"gone.csv": ("LINK", "{in}/nowhere.csv")}),
    Case("scores unknown user", ["teg", "summary", "--teg", "17", "--scores", "~nosuchuser0/s.csv"],
         "--scores '~nosuchuser0/s.csv' cannot be resolved"),
    Case("rounds via config, unknown user", ["teg", "summary", "--teg", "17"], "config rounds_file",
         config="rounds_file: ~nosuchuser0/r.csv\n"),
    Case("scores via config, a folder", ["teg", "summary", "--teg", "17"], "d.csv",
         config="scores_file: {in}/d.csv\n", files={"d.csv": "DIR"}),
]

CASES = FLAGS + RANGES + REQUESTS + CONFIG_CASES + PROMPTS + KEYS + ENDPOINTS + ID_CASES + ENV + TABLES


# --- the world each case runs in ----------------------------------------------------------------------
def _expand(text: str, where: dict) -> str:
    for key, value in where.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def _make(root: Path, entries: dict, where: dict) -> None:
    for name, content in entries.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == "DIR":
            path.mkdir(exist_ok=True)
        elif isinstance(content, tuple) and content[0] == "LINK":
            path.symlink_to(_expand(content[1], where))
        elif isinstance(content, tuple) and content[0] == "MODE":
            data = content[1]
            path.write_bytes(data if isinstance(data, bytes) else data.encode())
            path.chmod(content[2])
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())


def snapshot(*roots: Path) -> dict:
    """Every entry under the roots: type and mode; for a file also its size, mtime and a hash of its bytes.
    SQLite's -wal/-shm files come and go with any reader (the rows are compared by db_dump), and so
    folder mtimes change with them; a file added or removed shows in the list of entries."""
    out = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))] if root.exists() else []:
            if path.name.endswith(("-wal", "-shm")) or "locks" in (path.name, path.parent.name):
                continue  # (lock files hold no data: taking a lock is not a change)
            info = path.lstat()
            entry = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode))
            if stat.S_ISREG(info.st_mode) and path.name == "state.db":
                pass  # its rows are compared by db_dump (SQLite may rewrite pages without changing a row)
            elif stat.S_ISREG(info.st_mode):
                entry += (info.st_mtime_ns, info.st_size, hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISLNK(info.st_mode):
                entry += (os.readlink(path),)
            out[str(path)] = entry
    return out


def _seed_state(home: Path, data_root: Path) -> None:
    """A state database with a pending batch and a retrieved one with a failed request, and its archive."""
    from tegbatchd.store import PlannedIntent, Store

    state = home / "state"
    state.mkdir(parents=True, mode=0o700)
    archive = state / "requests" / "job_seed-s0-p0.jsonl"
    archive.parent.mkdir(mode=0o700)
    archive.write_text(GOOD_LINE % "r-0" + GOOD_LINE % "r-1")
    counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
    store = Store.open(state / "state.db")
    try:
        store.create_job("job_seed", "requests", "seeded", {"source": "s", "output": OUT}, str(data_root),
                         ["requests"])
        stage = store.stages("job_seed")[0]
        planned = [PlannedIntent(str(archive), archive.stat().st_size,
                                 [(f"{b[-1]}-{i}", str(data_root / f"o{b[-1]}-{i}.md"), "claude-sonnet-4-5", 5)
                                  for i in range(2)]) for b in (KNOWN, DONE)]
        intents = store.record_stage(stage["id"], planned, [])
        for intent, (batch_id, status) in zip(intents, ((KNOWN, "in_progress"), (DONE, "ended")), strict=True):
            store.attach_batch(intent, {"id": batch_id, "created_at": "2026-12-01T00:00:00Z",
                                        "processing_status": status, "request_counts": counts})
        store.conn.execute("UPDATE batches SET local_state='retrieved' WHERE id=?", (DONE,))
        store.conn.execute("UPDATE requests SET outcome='expired' WHERE custom_id='2-0'")
        store.conn.commit()
    finally:
        store.close()


@pytest.fixture
def world(tmp_path, _isolated_home, monkeypatch):
    home = _isolated_home
    data_root = tmp_path / "data"
    data_root.mkdir()
    for name in ("all-scores.csv", "rounds.csv"):
        shutil.copy(FIXTURES / "teg" / name, data_root / name)
    (tmp_path / "outside").mkdir()
    (data_root / "link").symlink_to(tmp_path / "outside")
    (data_root / "blocker").write_text("a file where a folder would go\n")
    (data_root / "commentary" / "req-00000").mkdir(parents=True)
    inputs = tmp_path / "in"
    inputs.mkdir()
    _seed_state(home, data_root)
    (home / "config").mkdir(mode=0o700)
    monkeypatch.setenv("TEGBATCHD_DATA_DIR", str(data_root))
    monkeypatch.chdir(tmp_path)
    return {"in": inputs, "data": data_root, "home": home, "tmp": tmp_path}


@dataclass
class Outcome:
    code: int | None
    out: str
    err: str


def run_main(argv: list[str]) -> Outcome:
    """`tegbatchd ARGV` in this process, stdout and stderr captured. An exception escaping main() is what a
    person would see as a traceback: it is returned as one."""
    from tegbatchd import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # noqa: BLE001 - the very thing this corpus looks for
            code = None
            err.write("Traceback (most recent call last):\n" + traceback.format_exc())
    return Outcome(code, out.getvalue(), err.getvalue())


def classify(case: Case, result: Outcome, changed: bool) -> str:
    """clear | traceback | wrong (for the tally: what a person would have met)."""
    if result.code is None or "Traceback" in result.err:
        return "traceback"
    first = result.err.splitlines()[0] if result.err else ""
    if changed or result.code != case.code or not first.startswith("error: ") or case.expect not in result.err \
            or len(first) > 800 or not one_problem_one_line(result.err):
        return "wrong"
    return "clear"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_is_refused_in_one_line_and_changes_nothing(case, world, monkeypatch):
    where = {k: world[k] for k in ("in", "data", "home")}
    _make(world["in"], case.files, where)
    _make(world["data"], case.data_files, where)
    if case.config is not None:
        config = world["home"] / "config" / "config.yaml"
        raw = case.config if isinstance(case.config, bytes) else _expand(case.config, where).encode()
        config.write_bytes(raw)
    for name, value in case.env.items():
        monkeypatch.setenv(name, _expand(value, where))
    if "long.jsonl" in case.files:
        monkeypatch.setattr("tegbatchd.submission.MAX_LINE_BYTES", 100_000)
    roots = (world["home"], world["data"], world["in"])
    before, db_before = snapshot(*roots), db_dump(world["home"] / "state" / "state.db")
    result = run_main([_expand(a, where) for a in case.argv])
    changed = snapshot(*roots) != before or db_dump(world["home"] / "state" / "state.db") != db_before
    verdict = classify(case, result, changed)
    assert "Traceback" not in result.err and result.code is not None, result.err[-3000:]
    assert not changed, f"the state, config, data root or inputs changed:\n{result.out[-1000:]}"
    assert result.code == case.code, f"exit {result.code}, expected {case.code}:\n{result.err[-2000:]}"
    first = result.err.splitlines()[0] if result.err else ""
    assert first.startswith("error: "), f"first stderr line: {first!r}\nstdout: {result.out[-500:]}"
    assert case.expect in result.err, f"{case.expect!r} not in:\n{result.err[-2000:]}"
    assert len(first) <= 800 and len(result.err) <= 5000, f"an error of {len(result.err):,} characters"
    assert one_problem_one_line(result.err), f"one problem, not on one line:\n{result.err}"
    assert verdict == "clear"


def one_problem_one_line(err: str) -> bool:
    """One line; or, for several problems at once, a summary line and each problem on a bullet of its own."""
    lines = err.strip().splitlines()
    return len(lines) == 1 or (len(lines) >= 3 and all(line.startswith("  - ") for line in lines[1:]))


def test_the_corpus_is_big_and_every_name_is_unique():
    names = [c.name for c in CASES]
    assert len(names) >= 150 and len(set(names)) == len(names), [n for n in names if names.count(n) > 1]


# --- output to a closed pipe: real processes ----------------------------------------------------------
def _env(world: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env.update(TEGBATCHD_HOME=str(world["home"]), TEGBATCHD_DATA_DIR=str(world["data"]))
    return env


def _many_jobs(home: Path, data_root: Path, n: int) -> None:
    from tegbatchd.store import Store

    store = Store.open(home / "state" / "state.db")
    try:
        for i in range(n):
            store.create_job(f"job_many{i:04d}", "requests", f"requests from file {i}", {"source": "s"},
                             str(data_root), ["requests"])
    finally:
        store.close()


CLOSED_PIPE = [["list", "--all"], ["list", "--all", "--json"], ["teg", "summary", "--teg", "17", "--json"],
               ["teg", "summary", "--teg", "17", "--round", "2"],
               ["submit", "round-reports", "--teg", "10-17", "--dry-run"],
               ["submit", "round-reports", "--teg", "10-17", "--dry-run", "--json"]]


@pytest.mark.parametrize("argv", CLOSED_PIPE, ids=" ".join)
def test_output_to_a_closed_pipe_ends_quietly(argv, world):
    _many_jobs(world["home"], world["data"], 300)
    before = snapshot(world["home"], world["data"])
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: every write meets EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "tegbatchd", *argv], stdout=write, stderr=subprocess.PIPE,
                              env=_env(world), cwd=world["tmp"], timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 141, proc.stderr.decode()[-2000:]
    assert proc.stderr == b""
    assert snapshot(world["home"], world["data"]) == before


@pytest.mark.parametrize("argv", CLOSED_PIPE[:3] + CLOSED_PIPE[4:5], ids=" ".join)
def test_piped_into_head_ends_quietly(argv, world):
    _many_jobs(world["home"], world["data"], 300)
    command = subprocess.list2cmdline([sys.executable, "-m", "tegbatchd", *argv])
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -1 > /dev/null"],
                          capture_output=True, text=True, env=_env(world), cwd=world["tmp"], timeout=120)
    assert proc.returncode in (0, 141), proc.stderr[-2000:]  # 0 when all output fit before head closed
    assert proc.stderr == ""


# --- the edges that are fine stay accepted ------------------------------------------------------------
def test_fine_edges_are_accepted(world):
    """What the checks above must not refuse: a BOM and CRLF in a requests file, deep-looking brackets
    inside strings, YAML anchors and merges within the limits, a key with spaces around it, good URLs."""
    requests = world["in"] / "ok.jsonl"
    requests.write_bytes(b"\xef\xbb\xbf" + (GOOD_LINE % "a").replace("\n", "\r\n").encode()
                         + _line('{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "'
                                 + "[{" * 200 + '"}]}', "b").encode())
    result = run_main(req(str(requests), "--dry-run"))
    assert result.code == 0 and "2 request(s) in 1 batch(es)" in result.out, result.err
    config = world["home"] / "config" / "config.yaml"
    config.write_text("stages:\n  story_notes: &s {model: claude-sonnet-4-5, max_tokens: 900}\n"
                      "  narrative:\n    <<: *s\n    max_tokens: 1200\n"
                      "  satire: *s\nprices:\n  claude-x: {input: 1, output: 2}\n")
    shown = run_main(["config", "show", "--json"])
    assert shown.code == 0, shown.err
    assert '"max_tokens": 1200' in shown.out and shown.out.count('"max_tokens": 900') >= 2

    from tegbatchd import api

    os.environ.pop("ANTHROPIC_BASE_URL", None)
    assert api.check_endpoint(None) == "https://api.anthropic.com"
    for url in ("http://127.0.0.1:8080", "https://gateway.example.com/anthropic/", "http://[::1]:9/",
                "http://localhost", "https://user:pw@proxy.internal:8443/v1?x=1", "http://ü.example"):
        assert api.endpoint_problem(url) is None, url
        assert api.check_endpoint(url) == url
    assert api.key_problem("sk-ant-api03-AbC_dEf-123") is None


@pytest.mark.timeout(300)
def test_every_accepted_base_url_is_one_the_sdk_can_use():
    """Property: a base URL that endpoint_problem() accepts is parsed by the SDK's own client into an
    http(s) URL with a host (so nothing is recorded for an endpoint that could never be reached)."""
    import anthropic
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tegbatchd.api import endpoint_problem

    pieces = st.sampled_from(["http://", "https://", "ftp://", "", "[", "]", "::1", "127.0.0.1", "1.2.3.999",
                              "example", ".", "..", "-", "_", ":", "80", "99999", "0", "@", "user", "/", "?",
                              "#", "%41", " ", "\t", "ü", "xn--", "a" * 64, "[::1]", "[zz]"])

    @settings(max_examples=400, deadline=None)
    @given(st.lists(pieces, min_size=1, max_size=8).map("".join))
    def check(url):
        if endpoint_problem(url) is None:
            client = anthropic.Anthropic(api_key="k", base_url=url)
            assert client.base_url.scheme in ("http", "https") and client.base_url.host, url

    check()


def test_nesting_depth_is_measured_outside_strings():
    """Property: the raw-bytes depth check agrees with the real depth of any JSON value, whatever its
    strings hold (brackets, quotes, backslashes), so a request is refused exactly when it nests deeper
    than MAX_JSON_DEPTH and never because of what its text says."""
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tegbatchd.submission import MAX_JSON_DEPTH, _too_deep

    text = st.text(alphabet='[]{}"\\/ab\n\u00e9', max_size=12)

    def nest(value, depth: int, kinds: str):
        for kind in kinds[:depth]:
            value = [value, "]"] if kind == "l" else {"k\\\"[": value}
        return value

    def depth(value) -> int:
        if isinstance(value, list):
            return 1 + max((depth(v) for v in value), default=0)
        if isinstance(value, dict):
            return 1 + max((depth(v) for v in value.values()), default=0)
        return 0

    @settings(max_examples=300, deadline=None)
    @given(st.lists(text, max_size=4), st.integers(0, MAX_JSON_DEPTH + 3), st.text(alphabet="ld", min_size=70,
                                                                                      max_size=70))
    def check(strings, levels, kinds):
        value = nest(strings or "x", levels, kinds)
        raw = json.dumps(value, ensure_ascii=False).encode()
        assert _too_deep(raw) == (depth(value) > MAX_JSON_DEPTH), raw[:200]

    check()
