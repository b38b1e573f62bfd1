"""Shared fixtures: a private TEGBATCHD_HOME per test, the `tegbatchd` command as a subprocess, and the
emulator on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


class Cli:
    """Runs `python -m tegbatchd ...` as a person would, with a given environment."""

    def __init__(self, env: dict, cwd: Path):
        self.env = env
        self.cwd = cwd

    def __call__(self, *args: str, check: bool | None = None, timeout: float = 120, **env) -> Result:
        full_env = {**self.env, **{k: str(v) for k, v in env.items()}}
        proc = subprocess.run([sys.executable, "-m", "tegbatchd", *args], capture_output=True, text=True,
                              env=full_env, cwd=self.cwd, timeout=timeout)
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check is True and proc.returncode != 0:
            raise AssertionError(f"tegbatchd {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return result


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def cli(tmp_path, data_root, _isolated_home) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env.update(TEGBATCHD_HOME=str(_isolated_home), TEGBATCHD_DATA_DIR=str(data_root), PYTHONUNBUFFERED="1")
    return Cli(env, tmp_path)


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
        bound = Cli({**cli.env, "ANTHROPIC_API_KEY": TEST_KEY, "ANTHROPIC_BASE_URL": emu.url}, cli.cwd)
        return bound, emu

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def write_requests(path: Path, n: int, *, prefix: str = "req", max_tokens: int = 50, extra: dict | None = None) -> Path:
    """A JSONL requests file of n small, distinct requests."""
    with path.open("w") as fh:
        for i in range(n):
            params = {"model": "claude-sonnet-4-5", "max_tokens": max_tokens,
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


def assert_own_answer(text: str, custom_id: str, params: dict) -> None:
    """The emulator's answer names its request's custom_id and the sha256 of its params."""
    from tegbatchd.emulator.answers import canonical_sha256

    assert f"custom_id: {custom_id}" in text, text[:300]
    assert f"params-sha256: {canonical_sha256(params)}" in text, text[:300]
