"""Run `tegbatchd emulator` as a subprocess for a test, and point the real anthropic SDK at it.

    with running_emulator("--process-seconds", "0") as emu:
        client = sdk_client(emu.url)
        batch = client.messages.batches.create(requests=[...])
        emu.finish(batch.id); assert emu.stats()["calls"]["create"] == 1

The admin helpers are tegbatchd.emulator.launcher's (the product's one launcher, exec'ing a fresh
interpreter, is still what `demo` and the benchmarks use and what tests/test_emulator_lifecycle.py
starts); here the emulator process is forked from the warm fork server. This adds the exit-code check and
the SDK client.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic

from tegbatchd.emulator.launcher import EmulatorProcess as Emulator
from tegbatchd.emulator.launcher import EmulatorStartError
from tests.support.forkserver import spawn

API_HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}  # for raw HTTP calls to the API

__all__ = ["API_HEADERS", "Emulator", "running_emulator", "sdk_client", "start_emulator"]


def start_emulator(*args: str, env: dict | None = None) -> Emulator:
    """`tegbatchd emulator --port 0 *args` as a real process forked from the warm fork server
    (tests/support/forkserver.py: no interpreter start-up per emulator), with the launcher's admin helpers.

    `env` adds to (or overrides) the current environment of the process.
    """
    proc = spawn(["emulator", "--port", "0", *args], env={**os.environ, **(env or {})}, cwd=os.getcwd(),
                 stdout=subprocess.PIPE)
    first = proc.first_line()
    emulator = Emulator(first, proc)  # type: ignore[arg-type]  # Popen's interface, as the launcher uses it
    if not first.startswith("http://"):
        code = emulator.stop()
        raise EmulatorStartError(f"the emulator did not start (exit {code}, first line {first!r})")
    return emulator


@contextmanager
def running_emulator(*args: str, env: dict | None = None) -> Iterator[Emulator]:
    """Start an emulator (start_emulator) and yield it; on exit stop it and assert exit 0."""
    emulator = start_emulator(*args, env=env)
    try:
        yield emulator
    finally:
        code = emulator.stop()
    assert code == 0, f"emulator exited with {code}"


def sdk_client(url: str, api_key: str = "test-key", **kw: Any) -> anthropic.Anthropic:
    """Return a real SDK client for the emulator at `url` (2 retries and a 30 s timeout unless given).

    Proxy variables of the environment are ignored (trust_env=False) so loopback stays loopback.
    """
    kw.setdefault("max_retries", 2)
    kw.setdefault("timeout", 30.0)
    if "http_client" not in kw:
        kw["http_client"] = anthropic.DefaultHttpxClient(trust_env=False)
    return anthropic.Anthropic(api_key=api_key, base_url=url, **kw)
