"""Shared fixtures: a private TEGBATCHD_HOME per test, the `tegbatchd` command (in-process, or as a
subprocess where the process is what is tested), and the emulator on loopback."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # real data, copied into the repository
TEST_KEY = "sk-ant-test-0000"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own state/config/log dirs and no inherited API settings."""
    home = tmp_path / "home"
    monkeypatch.setenv("TEGBATCHD_HOME", str(home))
    monkeypatch.setenv("TEGBATCHD_VERSION_URL", "off")  # `doctor` asks no package index (tests: a local one)
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "TEGBATCHD_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    yield home


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


# One in-process CLI call at a time: it borrows the process's environment, working directory, temp dir,
# standard streams and root logger, and gives each back afterwards.
_IN_PROCESS = threading.RLock()


class Cli:
    """Runs the `tegbatchd` command with a given environment and working directory, as a person would.

    By default `tegbatchd.cli.main(argv)` runs in this process (the real SDK still talks HTTP to the
    emulator subprocess). In tests marked `proc_cli` (kills, races, signals: the process is what is tested)
    every call is a real process forked from the warm fork server (tests/support/forkserver.py).
    `subprocess=True` (per call) execs a fresh `python -m tegbatchd`, interpreter start-up included.
    """

    def __init__(self, env: dict, cwd: Path, *, subprocess: bool = False, forked: bool = False):
        self.env = env
        self.cwd = cwd
        self.subprocess = subprocess
        self.forked = forked

    def bound(self, **env) -> Cli:
        """The same CLI with more environment variables."""
        return Cli({**self.env, **env}, self.cwd, subprocess=self.subprocess, forked=self.forked)

    def __call__(self, *args: str, check: bool | None = None, timeout: float = 120,
                 subprocess: bool | None = None, **env) -> Result:
        full_env = {**self.env, **{k: str(v) for k, v in env.items()}}
        in_subprocess = self.subprocess if subprocess is None else subprocess
        run = _run_subprocess if in_subprocess else _run_forked if self.forked else _run_in_process
        result = run(list(args), full_env, self.cwd, timeout)
        if check is True and result.code != 0:
            raise AssertionError(f"tegbatchd {' '.join(args)} failed ({result.code}):\n{result.out}\n{result.err}")
        return result


def _run_subprocess(argv: list[str], env: dict, cwd: Path, timeout: float) -> Result:
    proc = subprocess.run([sys.executable, "-m", "tegbatchd", *argv], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _run_forked(argv: list[str], env: dict, cwd: Path, timeout: float) -> Result:
    from tests.support.forkserver import spawn

    proc = spawn(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return Result(proc.wait(), out, err)


def _exit_code(exc: SystemExit, err: io.StringIO) -> int:
    """The process exit status a SystemExit would give (argparse: 2 for bad usage, 0 for --help)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=err)
    return 1


def _run_in_process(argv: list[str], env: dict, cwd: Path, timeout: float) -> Result:
    """`tegbatchd.cli.main(argv)` here, with env, cwd, TMPDIR, stdio and logging set and restored around it.

    The process-global state main can change is put back: os.environ, the working directory,
    tempfile.tempdir, the root logger's handlers and level (and the levels of the loggers the daemon's
    set-up quiets) and tegbatchd.retrieval.STOP.
    """
    from tegbatchd.cli import main

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    with _IN_PROCESS:
        saved_env, saved_cwd, saved_tempdir = dict(os.environ), os.getcwd(), tempfile.tempdir
        saved_handlers, saved_level = root.handlers[:], root.level
        saved_levels = {name: logging.getLogger(name).level for name in _QUIETED_LOGGERS}
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = env.get("TMPDIR") or saved_tempdir
        root.handlers = []
        try:
            os.chdir(cwd)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as exc:
                    code = _exit_code(exc, err)
        finally:
            for handler in root.handlers:
                if handler not in saved_handlers:
                    handler.close()
            root.handlers = saved_handlers
            root.setLevel(saved_level)
            for name, level in saved_levels.items():
                logging.getLogger(name).setLevel(level)
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
            tempfile.tempdir = saved_tempdir
            _reset_module_state()
    return Result(int(code or 0), out.getvalue(), err.getvalue())


_QUIETED_LOGGERS = ("httpx", "httpx2", "httpcore", "anthropic", "apscheduler")


def _reset_module_state() -> None:
    """Module-level state one command leaves for the next (in a real process it dies with it)."""
    retrieval = sys.modules.get("tegbatchd.retrieval")
    if retrieval is not None:
        retrieval.STOP.clear()


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def cli_tmp(tmp_path) -> Path:
    """TMPDIR of the command under test: what it leaves in the temp dir stays in the test's folder."""
    folder = tmp_path / "tmp"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def cli(request, tmp_path, data_root, _isolated_home, cli_tmp) -> Cli:
    """The command, in this process; a real (forked) process for tests marked `proc_cli` (see Cli)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env.update(TEGBATCHD_HOME=str(_isolated_home), TEGBATCHD_DATA_DIR=str(data_root), PYTHONUNBUFFERED="1",
               TMPDIR=str(cli_tmp))
    return Cli(env, tmp_path, forked=request.node.get_closest_marker("proc_cli") is not None)


@pytest.fixture
def proc_cli(cli) -> Cli:
    """The command as a real process (forked from the warm fork server) on every call."""
    return Cli(cli.env, cli.cwd, forked=True)


@pytest.fixture
def emulator():
    """Start an emulator: `with emulator("--process-seconds", "0") as emu: ...`."""
    from tests.support.emulator import running_emulator

    return running_emulator


@pytest.fixture
def api_cli(cli, emulator):
    """A factory: (emulator args) → (cli bound to a running emulator with a test key, the emulator)."""
    stack = []

    def start(*emu_args: str):
        cm = emulator(*emu_args)
        emu = cm.__enter__()
        stack.append(cm)
        bound = cli.bound(ANTHROPIC_API_KEY=TEST_KEY, ANTHROPIC_BASE_URL=emu.url)
        return bound, emu

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def write_requests(path: Path, n: int, *, prefix: str = "req", max_tokens: int = 1000, extra: dict | None = None) -> Path:
    """A JSONL requests file of n small, distinct requests."""
    with path.open("w") as fh:
        for i in range(n):
            params = {"model": "claude-sonnet-5-5", "max_tokens": max_tokens,
                      "messages": [{"role": "user", "content": f"Write note {i} about hole {i % 18 + 1}."}],
                      **(extra or {})}
            fh.write(json.dumps({"custom_id": f"{prefix}-{i:05d}", "params": params}) + "\n")
    return path


def request_params(path: Path) -> dict[str, dict]:
    out = {}
    with path.open() as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                out[obj["custom_id"]] = obj["params"]
    return out


SENT_TAG = re.compile(r"-[0-9a-f]{8}$")  # what tegbatchd adds to a custom_id it sends: its intent's tag


def untagged(custom_id: str) -> str:
    """The readable custom_id of a sent one (its intent tag taken off)."""
    return SENT_TAG.sub("", custom_id)


def untagged_counts(received: dict[str, int]) -> dict[str, int]:
    """The emulator's `received` (sent custom_id → batches carrying it) by readable custom_id."""
    out: dict[str, int] = {}
    for cid, n in received.items():
        out[untagged(cid)] = out.get(untagged(cid), 0) + n
    return out


def assert_own_answer(text: str, custom_id: str, params: dict) -> None:
    """The emulator's answer names its request's custom_id (as sent: with its intent tag) and the sha256 of
    its params."""
    from tegbatchd.emulator.answers import canonical_sha256

    assert re.search(rf"^custom_id: {re.escape(custom_id)}(-[0-9a-f]{{8}})?$", text, re.M), text[:300]
    assert f"params-sha256: {canonical_sha256(params)}" in text, text[:300]


@pytest.fixture
def real_data(data_root) -> Path:
    """The data root holding the real TEG scores and rounds (copies)."""
    import shutil

    for name in ("all-scores.csv", "rounds.csv"):
        shutil.copy(FIXTURES / "teg" / name, data_root / name)
    return data_root


@pytest.fixture(scope="module")
def emu():
    """One emulator for a module's tests (batches end at once)."""
    from tests.support.emulator import running_emulator

    with running_emulator("--process-seconds", "0") as emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(emu):
    """The real SDK against the module's emulator, validating every response strictly."""
    from tests.support.emulator import sdk_client

    return sdk_client(emu.url, max_retries=0, _strict_response_validation=True)
