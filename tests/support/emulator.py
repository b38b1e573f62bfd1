"""Run `tegbatchd emulator` as a subprocess for a test, and point the real anthropic SDK at it.

    with running_emulator("--process-seconds", "0") as emu:
        client = sdk_client(emu.url)
        batch = client.messages.batches.create(requests=[...])
        emu.finish(batch.id); assert emu.stats()["calls"]["create"] == 1

The subprocess and its admin helpers are tegbatchd.emulator.launcher's; this adds the exit-code check
and the SDK client.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic

from tegbatchd.emulator.launcher import EmulatorProcess as Emulator

API_HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}  # for raw HTTP calls to the API

__all__ = ["API_HEADERS", "Emulator", "running_emulator", "sdk_client"]


@contextmanager
def running_emulator(*args: str, env: dict | None = None) -> Iterator[Emulator]:
    """Start `python -m tegbatchd emulator --port 0 *args` and yield it; on exit stop it and assert exit 0.

    `env` adds to (or overrides) the current environment of the subprocess.
    """
    emulator = Emulator.start(*args, env=env)
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
