"""Run `tegbatchd emulator` as a subprocess for a test, and point the real anthropic SDK at it.

    with running_emulator("--process-seconds", "0") as emu:
        client = sdk_client(emu.url)
        batch = client.messages.batches.create(requests=[...])
        emu.finish(batch.id); assert emu.stats()["calls"]["create"] == 1
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anthropic

STOP_TIMEOUT = 10.0
API_HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}  # for raw HTTP calls to the API
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the env


@dataclass
class Emulator:
    url: str
    proc: subprocess.Popen

    def _admin(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}/_emulator/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with _NO_PROXY.open(request, timeout=30) as response:
            return json.load(response)

    def stats(self) -> dict[str, Any]:
        """Return GET /_emulator/stats: calls per endpoint, batches_created, faults_injected."""
        return self._admin("GET", "stats")

    def reset_stats(self) -> dict[str, Any]:
        return self._admin("POST", "reset-stats", {})

    def advance(self, seconds: float) -> dict[str, Any]:
        """Move the emulator's clock forward by `seconds`."""
        return self._admin("POST", "advance", {"seconds": seconds})

    def finish(self, batch_id: str) -> dict[str, Any]:
        """End the batch now; return its MessageBatch JSON."""
        return self._admin("POST", f"batches/{batch_id}/finish", {})

    def stop(self) -> int:
        """SIGTERM the emulator (SIGKILL after 10 s); return its exit code. Safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode


@contextmanager
def running_emulator(*args: str, env: dict | None = None) -> Iterator[Emulator]:
    """Start `python -m tegbatchd emulator --port 0 *args` and yield it; on exit stop it and assert exit 0.

    `env` adds to (or overrides) the current environment of the subprocess.
    """
    proc = subprocess.Popen([sys.executable, "-m", "tegbatchd", "emulator", "--port", "0", *args],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    first = proc.stdout.readline().strip() if proc.stdout else ""
    emulator = Emulator(url=first, proc=proc)
    if not first.startswith("http://"):
        code = emulator.stop()
        raise RuntimeError(f"emulator did not start (exit {code}, first line {first!r})")
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
