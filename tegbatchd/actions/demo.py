"""`tegbatchd demo`: the whole laptop-safe round trip on the built-in sample data, with no API key.

Starts the emulator on a free port, submits round reports, lets the poll logic retrieve, chain the next
stage by itself and retrieve again, lists the files and sends the desktop notification. It keeps its own
state (never the person's real one) and leaves nothing running.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from tegbatchd.context import Context
from tegbatchd.errors import InputError, UserError
from tegbatchd.paths import Paths, ensure_dir, resolve_user_path

DEMO_KEY = "demo-key-for-the-local-emulator"
TIMEOUT = 120.0


def _start_emulator(process_seconds: float):
    """The local emulator on a free port (tegbatchd.emulator.launcher), its stderr silenced."""
    from tegbatchd.emulator.launcher import EmulatorProcess, EmulatorStartError

    try:
        return EmulatorProcess.start("--process-seconds", str(process_seconds), stderr=subprocess.DEVNULL)
    except EmulatorStartError:
        raise UserError("the local emulator did not start", next_step="run `tegbatchd emulator` to see why") from None


def _refuse_a_folder_in_use(folder: Path) -> None:
    """The demo writes sample scores and reports: only into a new or empty folder, or one an earlier demo
    filled (its sample files as the demo writes them), never over the person's own data."""
    from tegbatchd.teg.sample import sample_texts

    entries = {p.name for p in folder.iterdir()}
    if not entries:
        return
    texts = sample_texts()
    ours = all((folder / name).is_file() and (folder / name).read_text(encoding="utf-8", errors="replace") == text
               for name, text in texts.items())
    if not ours:
        raise InputError(f"--data-dir {folder} is not empty and holds no earlier demo: the demo writes sample scores "
                         "(all-scores.csv, rounds.csv) and reports there", next_step="give it a new or empty folder")


def cmd_demo(args, ctx) -> int:
    from argparse import Namespace

    from tegbatchd.actions.submit import SubmitReport, submit_teg
    from tegbatchd.engine.outcome import summarize
    from tegbatchd.polling import poll_once
    from tegbatchd.teg.sample import write_sample

    chosen = resolve_user_path(args.data_dir, "--data-dir") if args.data_dir else None  # checked first
    if chosen is not None:
        if chosen.is_dir():
            _refuse_a_folder_in_use(chosen)
        chosen = ensure_dir(chosen)
    folder = Path(tempfile.mkdtemp(prefix="tegbatchd-demo-"))
    data_root = chosen or folder / "data"
    home = folder / "home"
    emulator = _start_emulator(args.process_seconds)
    demo = Context(paths=Paths(home / "state", home / "config", home / "logs"), data_dir_arg=str(data_root),
                   api_env={"ANTHROPIC_BASE_URL": emulator.url, "ANTHROPIC_API_KEY": DEMO_KEY})
    demo.json_output = bool(args.json)
    demo.out = ctx.out
    say = demo.say
    say("tegbatchd demo — a local emulator of the Message Batches API stands in for Anthropic (no key, no cost).")
    say(f"Reports go to {data_root}; the demo's own state to {home}.")
    started = time.monotonic()
    try:
        ensure_dir(data_root)
        write_sample(data_root)
        say(f"Emulator listening on {emulator.url}\n")
        flags = Namespace(teg="1-3", round="1-4", story_notes_only=False, reports_only=False, force=False,
                          scores=None, rounds=None, dry_run=False, again=False, now=False)
        submitted = submit_teg(demo, "round-reports", flags)
        assert isinstance(submitted, SubmitReport)  # neither --dry-run nor --now
        say(f"SUBMITTED — {submitted.title}: job {submitted.job_id}, {submitted.requests} requests in batch "
            f"{', '.join(submitted.batch_ids)}")
        job = demo.store.list_jobs()[0]
        say("\n>>> submitted — you could close your laptop now. The demo polls as the daemon would:\n")
        while job["state"] == "active":
            if time.monotonic() - started > TIMEOUT:
                raise UserError("the demo did not finish in time", next_step="run it again with -v")
            time.sleep(1.0)
            for change in poll_once(demo).changes:
                say(f"  {change}")
            job = demo.store.get_job(job["id"])
        progress = summarize(demo.store, job)
        files = sorted({Path(out) for _, out in demo.store.job_written_outputs(job["id"])}  # every file the
                       | {Path(f) for f in demo.store.job_files(job["id"])})            # job wrote: one count
        delivered, real = _notify(demo)
        elapsed = time.monotonic() - started
        if args.json:
            demo.emit_json({"job_id": job["id"], "state": job["state"], "data_root": str(data_root),
                            "files": [str(f) for f in files], "notified": delivered, "seconds": round(elapsed, 1)})
            return 0 if job["state"] == "done" else 1
        say(f"\n{job['title']}: {job['state']} in {elapsed:.0f} s — {progress.written} files under {data_root}:")
        for f in files:
            say(f"  {os.path.relpath(f, data_root.resolve())}")
        if progress.failures:
            say(f"Failed: {', '.join(f.custom_id for f in progress.failures)}")
        say("\nDesktop notification: " + ("sent." if delivered and real else
                                          "no notification service here (it was logged instead)."
                                          if delivered else "not confirmed (it stays queued)."))
        say("Next: `tegbatchd config init`, set ANTHROPIC_API_KEY, then `tegbatchd submit round-reports ...` "
            "and `tegbatchd service install`.")
        return 0 if job["state"] == "done" else 1
    finally:
        emulator.stop()
        demo.close()


def _notify(ctx) -> tuple[bool, bool]:
    """Send the job's notification: (delivered, through a real notification service)."""
    from tegbatchd.notify import LogNotice, make_notifier
    from tegbatchd.notify_cli import deliver_now

    notifier = make_notifier(ctx.config)
    return deliver_now(ctx, notifier) > 0, not isinstance(notifier, LogNotice)
