"""Start `tegbatchd emulator` as a subprocess, talk to its /_emulator/ admin endpoints, stop it.

The one launcher of the tests, the benchmarks and `tegbatchd demo`:

    with EmulatorProcess.start("--process-seconds", "0") as emu:
        ...  # point the SDK at emu.url; emu.finish(batch_id); emu.stats()

It imports neither the SDK nor the server, so a benchmark harness using it stays small.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import IO, Any

STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
ADMIN_TIMEOUT = 60.0


class EmulatorStartError(RuntimeError):
    """The emulator exited or printed something else than its URL as its first line."""


class EmulatorProcess:
    """A running emulator subprocess: its base URL, the Popen, and the admin helpers."""

    def __init__(self, url: str, proc: subprocess.Popen) -> None:
        self.url = url
        self.proc = proc

    @classmethod
    def start(cls, *args: str, env: dict[str, str] | None = None, stderr: int | IO[Any] | None = None,
              python: str = sys.executable) -> EmulatorProcess:
        """Run `python -m tegbatchd emulator --port 0 *args` and return once it printed its URL.

        `env` adds to (or overrides) the current environment. Raise EmulatorStartError if it does not start.
        """
        proc = subprocess.Popen([python, "-m", "tegbatchd", "emulator", "--port", "0", *args],
                                stdout=subprocess.PIPE, stderr=stderr, text=True,
                                env={**os.environ, **env} if env else None)
        first = (proc.stdout.readline() if proc.stdout else "").strip()
        emulator = cls(first, proc)
        if not first.startswith("http://"):
            code = emulator.stop()
            raise EmulatorStartError(f"the emulator did not start (exit {code}, first line {first!r})")
        return emulator

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def admin(self, method: str, path: str, payload: Any = None, timeout: float = ADMIN_TIMEOUT) -> Any:
        """Call `/_emulator/<path>` and return its JSON (loopback only: proxy variables are ignored)."""
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}/_emulator/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with opener.open(request, timeout=timeout) as response:
            return json.load(response)

    def stats(self) -> dict[str, Any]:
        """Return GET /_emulator/stats: calls per endpoint, batches_created, faults_injected."""
        return self.admin("GET", "stats")

    def received(self) -> dict[str, int]:
        """Return GET /_emulator/stats/received: custom_id → how many created batches carried it."""
        return self.admin("GET", "stats/received")

    def reset_stats(self) -> dict[str, Any]:
        return self.admin("POST", "reset-stats", {})

    def advance(self, seconds: float) -> dict[str, Any]:
        """Move the emulator's clock forward by `seconds`."""
        return self.admin("POST", "advance", {"seconds": seconds})

    def finish(self, batch_id: str) -> dict[str, Any]:
        """End the batch now; return its MessageBatch JSON."""
        return self.admin("POST", f"batches/{batch_id}/finish", {})

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the emulator (SIGKILL after `timeout` s); return its exit code. Safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()
        return self.proc.returncode
