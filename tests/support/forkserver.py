"""Real `tegbatchd` processes for the kill, signal and race tests, forked from a warm parent.

A test that kills a process with SIGKILL, signals a daemon or races two commands needs real processes (their
own pid, memory, file descriptors and death), not the interpreter's start-up: `python -m tegbatchd` spends
about 1 s (2-7 s on a loaded machine) importing the SDK before it does anything. This server imports the
product and the kill harness once, then forks one child per command; the child sets its argv, environment,
working directory and stdio and runs the command exactly as `python -m tegbatchd ARGV` or
`python tests/reliability/harness.py ARGV` would (same code, same exit status, atexit handlers run).

What a forked child does not exercise is the interpreter's start-up itself: the tests of start-up imports,
the installed wheel and `--help` still exec a fresh `python` (tests/test_startup_imports.py,
tests/test_packaging.py).

    proc = spawn(["daemon", "--heartbeat", "0.2"], env=env, cwd=folder, stdout=log_path)
    proc.wait(timeout=5); proc.send_signal(signal.SIGKILL); proc.returncode   # as subprocess.Popen

The server is one process per test worker (started on first use, stopped at exit). It reports each child's
exit status in a file (`<status dir>/<pid>`), written whole, so `poll()`/`wait()` work from the test.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import pkgutil
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
Stream = str | os.PathLike[str] | IO[Any] | int | None
_lock = threading.Lock()
_server: _Server | None = None


class Forked:
    """A child of the fork server, with the part of subprocess.Popen's interface the tests use."""

    def __init__(self, pid: int, status: Path, args: list[str], pipes: dict[str, Path], text: bool):
        self.pid, self.args, self._status, self._pipes, self._text = pid, args, status, pipes, text
        self.returncode: int | None = None
        self.stdout = None  # as a Popen without stdout=PIPE (what went there is read by communicate/first_line)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self.returncode = int(self._status.read_text())
            except (FileNotFoundError, ValueError):
                return None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def first_line(self, timeout: float = 120.0) -> str:
        """The first line written to stdout (given as PIPE): waits for it, or for the process to end."""
        path = self._pipes["stdout"]
        deadline = time.monotonic() + timeout
        while True:
            data = path.read_bytes() if path.exists() else b""
            if b"\n" in data or self.poll() is not None or time.monotonic() > deadline:
                return data.split(b"\n", 1)[0].decode(errors="replace")
            time.sleep(0.005)

    def communicate(self, timeout: float | None = None) -> tuple[Any, Any]:
        """Wait, then what went to the streams given as subprocess.PIPE (None for the others)."""
        self.wait(timeout)
        found = []
        for name in ("stdout", "stderr"):
            path = self._pipes.get(name)
            data = path.read_bytes() if path is not None else None
            found.append(data.decode(errors="replace") if data is not None and self._text else data)
        return found[0], found[1]


class _Server:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tegbatchd-forkserver-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TEGBATCHD_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.forkserver", str(self.folder)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the fork server did not start (exit {self.proc.wait()})")
        self.count = 0

    def spawn(self, order: dict) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(order) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit {self.proc.wait()})")
        return int(json.loads(line)["pid"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def spawn(argv: list[str], *, env: dict[str, str], cwd: Path | str, harness: bool = False,
          stdout: Stream = None, stderr: Stream = None, text: bool = False) -> Forked:
    """Start `tegbatchd ARGV` (or the kill harness with ARGV) as a forked child; returns its handle.

    stdout/stderr as Popen takes them: a path or an open file (appended to), subprocess.DEVNULL,
    subprocess.PIPE (read by `communicate()`, str with text=True), subprocess.STDOUT (stderr only), or None
    (stdout to /dev/null, stderr to the test's own stderr).
    """
    global _server
    with _lock:
        if _server is None or _server.proc.poll() is not None:
            _server = _Server()
            atexit.register(_server.stop)
        server = _server
        server.count += 1
        pipes: dict[str, Path] = {}
        paths: dict[str, str] = {}
        for name, stream in (("stdout", stdout), ("stderr", stderr)):
            if stream == subprocess.PIPE:
                pipes[name] = server.folder / f"{name}-{server.count}"
                paths[name] = str(pipes[name])
            elif stream == subprocess.STDOUT and name == "stderr":
                paths[name] = paths["stdout"]
            elif stream == subprocess.DEVNULL or (stream is None and name == "stdout"):
                paths[name] = os.devnull
            elif stream is None:
                paths[name] = f"/proc/{os.getpid()}/fd/2"
            elif isinstance(stream, (str, os.PathLike)):
                paths[name] = os.fspath(stream)
            else:
                paths[name] = stream.name  # type: ignore[union-attr]  # an open file: appended to
        pid = server.spawn({"argv": argv, "env": env, "cwd": str(cwd), "harness": harness, **paths})
    return Forked(pid, server.folder / "status" / str(pid), argv, pipes, text)


# --- the server (python -m tests.support.forkserver FOLDER) --------------------------------------------


def _preload() -> None:
    """Everything a command would import, so a child imports nothing the slow way."""
    import anthropic  # noqa: F401
    import apscheduler.schedulers.blocking  # noqa: F401

    import tegbatchd.api  # noqa: F401
    import tegbatchd.cli
    import tegbatchd.daemon  # noqa: F401
    import tegbatchd.emulator.cli  # noqa: F401
    import tegbatchd.emulator.server  # noqa: F401
    import tegbatchd.polling  # noqa: F401
    import tegbatchd.retrieval  # noqa: F401
    import tegbatchd.submission  # noqa: F401
    import tests.reliability.harness  # noqa: F401

    tegbatchd.api._tls_context()  # the CA bundle, loaded once here as a long-lived process loads it once
    for module in pkgutil.iter_modules(tegbatchd.cli.__path__):  # every command's module
        importlib.import_module(f"tegbatchd.cli.{module.name}")
    del tegbatchd


def _child(order: dict) -> None:
    """In the forked child: become the command, then exit with its status (never returns)."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as the interpreter sets it at start-up
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, order["stdout"]), (2, order["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.closerange(3, 256)
        os.chdir(order["cwd"])
        os.environ.clear()
        os.environ.update(order["env"])
        tempfile.tempdir = None
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False, buffering=1 if order["env"].get("PYTHONUNBUFFERED") else -1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        if order["harness"]:
            from tests.reliability import harness

            sys.argv = [str(Path(harness.__file__)), *order["argv"]]
            code = harness.main()
        else:
            from tegbatchd.cli import main

            sys.argv = ["tegbatchd", *order["argv"]]
            code = main(order["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    try:
        import atexit as _atexit
        import logging

        _atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(int(code or 0) & 0xFF)


def _serve(folder: Path) -> None:
    import selectors

    status = folder / "status"
    status.mkdir(exist_ok=True)
    _preload()
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    live: set[int] = set()

    def reap() -> None:
        while live:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            live.discard(pid)
            tmp = status / f".{pid}"
            tmp.write_text(str(os.waitstatus_to_exitcode(raw)))
            os.replace(tmp, status / str(pid))

    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ, "order")
    sel.register(read_end, selectors.EVENT_READ, "child")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "child":
                os.read(read_end, 512)
                reap()
                continue
            line = sys.stdin.readline()
            if not line:  # the test worker is done: what still runs is killed and reaped
                for pid in list(live):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                while live:
                    pid, _raw = os.waitpid(-1, 0)
                    live.discard(pid)
                return
            order = json.loads(line)
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _child(order)
            live.add(pid)
            print(json.dumps({"pid": pid}), flush=True)
            reap()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
