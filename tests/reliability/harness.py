"""Run the real `tegbatchd` code in a process a test can kill at a chosen step, or start on a signal.

    python harness.py [--kill-at POINT:N] [--wait-for FILE] -- retrieve msgbatch_...
    python harness.py --trials DIR --role retrieve|daemon-poll

--kill-at POINT:N makes the process SIGKILL itself (as `kill -9` would) at the Nth time it reaches POINT:
  temp-written   before the Nth output is given its name: its file is complete (an anonymous file, or a
                 temp file with --named-temps or over an existing file), the output not there yet
  renamed        just after the Nth output is given its name (linked or renamed), before it is recorded
  before-record  just before the Nth group of results is recorded (files written and synced)
  in-commit      inside the Nth transaction recording results, just before its COMMIT
  assembly       before the Nth file a TEG job assembles locally after a stage (combined reports)
  job-state      just after a job's final state is stored
  archived       just after the Nth request archive is written (a stage or a retry), before it is recorded
  stage-commit   inside the Nth transaction recording a stage's intents (Store.record_stage), before COMMIT
  stage-recorded just after the Nth stage is recorded, before its batches are created
  retry-commit   inside the Nth transaction recording resubmissions (Store.record_retry), before COMMIT
  retry-recorded just after the Nth resubmission is recorded, before its batches are created
  created        just after the Nth batch create was answered, before its batch id is recorded
  attached       just after the Nth batch id is recorded (attach_batch)
--named-temps writes every file through a named temp file and a rename, as where the system has no
anonymous files (O_TMPFILE), so a test can see a killed or live writer's temp files.
--pause-at POINT:N --paused FILE --resume FILE stops at that point instead (creating the first file)
until the second exists: a live writer caught in the middle of a step.
--ready FILE is created once everything is imported (a test can then kill at a moment of the real work).
--wait-for FILE imports everything first, then waits until FILE exists (so the next trial's process is
ready while the current one runs, and several processes can start their real work at the same moment).
--trials DIR serves numbered trials in one process: waits for DIR/go-N (JSON: batch id and a delay),
runs the CLI's `retrieve ID --json` or the daemon's poll, writes DIR/done-N-ROLE.json; stops at DIR/stop.
Nothing here is in the product: the kill points are monkeypatches of the product's own functions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _countdown(n: int):
    left = [n]
    lock = threading.Lock()  # the product writes files from several threads

    def hit() -> bool:
        with lock:
            left[0] -= 1
            return left[0] == 0

    return hit


def place_kill(point: str, n: int, _die=_die) -> None:
    from tegbatchd import store as store_mod

    data_root = os.path.realpath(os.environ["TEGBATCHD_DATA_DIR"])
    hit = _countdown(n)
    if point in ("temp-written", "renamed"):
        from tegbatchd import writer

        def naming(real):
            def name_it(fd, dfd, name, path):  # a rename (temp file) or a link (anonymous file)
                is_output = os.path.realpath(path).startswith(data_root + os.sep)
                if is_output and point == "temp-written" and hit():
                    _die()
                real(fd, dfd, name, path)
                if is_output and point == "renamed" and hit():
                    _die()

            return name_it

        writer._replace = naming(writer._replace)
        writer._link = naming(writer._link)
        writer.HELPER_ALLOWED = False  # these points are the in-process writer's steps (the helper process
        # makes new files otherwise: killing the retrieving process there is the random kill test's part)
    elif point == "before-record":
        real_record = store_mod.Store.record_results

        def record_results(self, results):
            if hit():
                _die()
            return real_record(self, results)

        store_mod.Store.record_results = record_results
    elif point == "in-commit":
        real_connect = store_mod._connect

        def connect(path):
            conn = real_connect(path)
            recording = [False]

            def trace(statement: str) -> None:
                if statement.startswith("UPDATE requests SET outcome") and "error_type" in statement:  # results
                    recording[0] = True
                elif statement == "COMMIT" and recording[0]:
                    recording[0] = False
                    if hit():
                        _die()

            conn.set_trace_callback(trace)
            return conn

        store_mod._connect = connect  # the trace callback runs as a statement starts: before the COMMIT
    elif point == "assembly":
        from tegbatchd.teg import pipelines

        real_write = pipelines.write_atomic

        def write_atomic(path, text, **kwargs):
            if hit():
                _die()
            return real_write(path, text, **kwargs)

        pipelines.write_atomic = write_atomic
    elif point == "job-state":
        real_move = store_mod.Store.move_job

        def move_job(self, job_id, state, **kwargs):
            moved = real_move(self, job_id, state, **kwargs)
            if moved and str(state) in store_mod.TERMINAL_JOB_STATES and hit():
                _die()
            return moved

        store_mod.Store.move_job = move_job
    elif point == "archived":
        from tegbatchd import submission

        real_private = submission.write_private

        def write_private(path, chunks):
            written = real_private(path, chunks)
            if hit():
                _die()
            return written

        submission.write_private = write_private
    elif point in ("stage-commit", "retry-commit"):
        method = "record_stage" if point == "stage-commit" else "record_retry"
        real_method, real_tx = getattr(store_mod.Store, method), store_mod.Store.tx

        @contextlib.contextmanager
        def tx(self):
            with real_tx(self) as conn:
                yield conn
                if getattr(self, "_kill_armed", False) and hit():
                    _die()  # every statement of the step ran; its COMMIT has not

        def armed(self, *args, **kwargs):
            self._kill_armed = True
            try:
                return real_method(self, *args, **kwargs)
            finally:
                self._kill_armed = False

        store_mod.Store.tx = tx
        setattr(store_mod.Store, method, armed)
    elif point in ("stage-recorded", "retry-recorded"):
        method = "record_stage" if point == "stage-recorded" else "record_retry"
        real_method = getattr(store_mod.Store, method)

        def recorded(self, *args, **kwargs):
            ids = real_method(self, *args, **kwargs)
            if hit():
                _die()
            return ids

        setattr(store_mod.Store, method, recorded)
    elif point == "created":
        from tegbatchd import api

        real_create = api.BatchApi.create

        def create(self, body):
            batch = real_create(self, body)
            if hit():
                _die()
            return batch

        api.BatchApi.create = create
    elif point == "attached":
        real_attach = store_mod.Store.attach_batch

        def attach_batch(self, intent_id, batch, **kw):
            real_attach(self, intent_id, batch, **kw)
            if hit():
                _die()

        store_mod.Store.attach_batch = attach_batch
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def _wait_for(path: Path, stop: Path | None = None, timeout: float = 900.0) -> bool:
    deadline = time.monotonic() + timeout  # never outlive a test that failed before giving the signal
    while not path.exists():
        if (stop is not None and stop.exists()) or time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def serve_trials(folder: Path, role: str) -> None:
    from tegbatchd.cli import main
    from tegbatchd.daemon import Daemon

    daemon = Daemon(heartbeat=3600) if role == "daemon-poll" else None
    number = 0
    while _wait_for(folder / f"go-{number}", folder / "stop"):
        order = json.loads((folder / f"go-{number}").read_text())
        time.sleep(order["delay"].get(role, 0.0))
        if daemon is not None:
            report = daemon._poll(True)
            written = sum(r["written"] for r in (report.retrieved if report else []))
            result = {"written": written, "changes": report.changes if report else [], "code": 0}
        else:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = main(["retrieve", order["batch"], "--json"])
            report = json.loads(out.getvalue())
            result = {"written": report["written"], "state": report["state"], "code": code}
        (folder / f"done-{number}-{role}.tmp").write_text(json.dumps(result))
        os.replace(folder / f"done-{number}-{role}.tmp", folder / f"done-{number}-{role}.json")  # whole or absent
        number += 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-at", metavar="POINT:N")
    parser.add_argument("--pause-at", metavar="POINT:N")
    parser.add_argument("--paused", type=Path, help="with --pause-at: created when the pause begins")
    parser.add_argument("--resume", type=Path, help="with --pause-at: the pause ends when this exists")
    parser.add_argument("--wait-for", type=Path)
    parser.add_argument("--ready", type=Path)
    parser.add_argument("--trials", type=Path)
    parser.add_argument("--role", choices=("retrieve", "daemon-poll"))
    parser.add_argument("--named-temps", action="store_true")
    parser.add_argument("args", nargs="*")
    opts = parser.parse_args()
    import anthropic  # noqa: F401 - loaded before the start signal, as the CLI would load it anyway

    from tegbatchd.cli import main as cli_main

    if opts.named_temps:
        from tegbatchd import writer

        writer._ANONYMOUS = False
    if opts.trials:
        serve_trials(opts.trials, opts.role)
        return 0
    if opts.kill_at:
        point, _, n = opts.kill_at.partition(":")
        place_kill(point, int(n or 1))
    if opts.pause_at:  # the same points, but stop there until the test says so (a live, slow writer)
        point, _, n = opts.pause_at.partition(":")
        place_kill(point, int(n or 1), lambda: (opts.paused.touch(), _wait_for(opts.resume)))
    if opts.ready:
        opts.ready.touch()
    if opts.wait_for and not _wait_for(opts.wait_for):
        return 3
    return cli_main(opts.args)


if __name__ == "__main__":
    sys.exit(main())
