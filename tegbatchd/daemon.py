"""`tegbatchd daemon`: a light resident poller (APScheduler on one asyncio loop).

A heartbeat job (every 30 s) reads only the store: it polls when something is due (per-batch next-poll
times kept in the store, so restarts lose nothing), right away after a wake from sleep (the wall clock
jumped against the monotonic clock), and never calls the API when nothing is pending — the anthropic
SDK is not even imported then. Notifications go out on the same loop (desktop-notifier's async API).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tegbatchd.backoff import backoff
from tegbatchd.context import Context
from tegbatchd.errors import UserError
from tegbatchd.locks import file_lock
from tegbatchd.paths import FILE_MODE, ensure_dir

if TYPE_CHECKING:  # asyncio is loaded when the daemon runs, not by every command that registers this module
    import asyncio

log = logging.getLogger("tegbatchd.daemon")

HEARTBEAT_SECONDS = 30.0
WAKE_JUMP_SECONDS = 60.0      # wall clock ahead of the monotonic clock by this much: we slept
KEY_REJECTED_WAIT = 6 * 3600  # after a 401/403, wait for a config change or this long


class SystemClock:
    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class Daemon:
    """The daemon's loop. `make_context` gives a fresh Context (one per thread: SQLite connections stay
    in the thread that opened them)."""

    make_context: Callable[[], Context] = Context
    clock: SystemClock = field(default_factory=SystemClock)
    heartbeat: float = HEARTBEAT_SECONDS
    notifier: Any = None
    polls: list[str] = field(default_factory=list)     # why each poll ran: start, due, wake, retry
    _stop: asyncio.Event | None = None
    _last_wall: float = 0.0
    _last_mono: float = 0.0
    _backoff_until: float = 0.0
    _failures: int = 0
    _problem: str | None = None
    _key_rejected_at: float | None = None
    _config_mtime: float | None = None
    _poll_config: float | None = None

    def __post_init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tegbatchd-poll")
        self._poll_ctx: Context | None = None
        self.ctx = self.make_context()

    # --- the loop ---------------------------------------------------------------------------------
    async def run(self) -> int:
        import asyncio

        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        from tegbatchd.retrieval import STOP

        STOP.clear()
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        if self.notifier is None and self.ctx.config["notifications"]["enabled"]:
            from tegbatchd.notify import make_notifier

            self.notifier = make_notifier(self.ctx.config)
        scheduler = AsyncIOScheduler(event_loop=loop, job_defaults={
            "misfire_grace_time": None, "coalesce": True, "max_instances": 1})
        self._last_wall, self._last_mono = self.clock.wall(), self.clock.monotonic()
        self._config_mtime = self._config_stamp()
        log.info("daemon started (pid %d); state in %s", os.getpid(), self.ctx.paths.state_dir)
        await self.tick(reason="start")
        scheduler.add_job(self.tick, "interval", seconds=self.heartbeat, id="heartbeat")
        scheduler.start()
        try:
            await self._stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            self._pool.shutdown(wait=True)  # a retrieval in progress finishes its current file first
            log.info("daemon stopped")
        return 0

    def request_stop(self) -> None:
        from tegbatchd.retrieval import STOP

        log.info("stop requested: finishing the file being written")
        STOP.set()
        if self._stop:
            self._stop.set()

    def _config_stamp(self) -> float | None:
        try:
            return self.ctx.paths.config_file.stat().st_mtime
        except OSError:
            return None

    def _woke(self) -> bool:
        wall, mono = self.clock.wall(), self.clock.monotonic()
        jumped = (wall - self._last_wall) - (mono - self._last_mono) > WAKE_JUMP_SECONDS
        self._last_wall, self._last_mono = wall, mono
        return jumped

    async def tick(self, reason: str | None = None) -> None:
        """The heartbeat: decide from the store alone whether to poll, then poll and notify."""
        import asyncio

        if self._stop is not None and self._stop.is_set():
            return
        woke = self._woke()
        if woke:
            log.info("wake from sleep detected: polling now")
            self._backoff_until = 0.0
        now = self.clock.monotonic()
        if self._key_rejected_at is not None:
            changed = self._config_stamp() != self._config_mtime
            if not changed and not woke and now - self._key_rejected_at < KEY_REJECTED_WAIT:
                return
            self._key_rejected_at = None
            self._config_mtime = self._config_stamp()
        if not woke and reason is None and now < self._backoff_until:
            return
        why = reason or ("wake" if woke else "retry" if self._problem else "due")
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(self._pool, self._poll, why in ("start", "wake"))
        if report is not None:
            self.polls.append(why)
            self._after_poll(report, now)
        await self._deliver()

    def _poll(self, force: bool):
        """Runs in the worker thread with its own store connection."""
        from tegbatchd.polling import poll_once

        ctx = self._poll_ctx
        if ctx is None:
            ctx = self._poll_ctx = self.make_context()
        stamp = self._config_stamp()
        if stamp != self._poll_config:  # the person edited the config (a key file named, a new interval)
            ctx.reload_config()
            self.ctx.reload_config()
            self._poll_config = stamp
        try:
            if not force and not ctx.store.has_pending():
                return None
            report = poll_once(ctx, due_only=not force, now=datetime.now(UTC))
        except Exception as exc:  # noqa: BLE001 - the daemon never dies of a cycle: logged, then backed off
            from tegbatchd.polling import PollReport

            log.exception("poll cycle failed; backing off and trying again")
            return PollReport(error="internal", error_detail=f"{type(exc).__name__}: {exc}")
        if not report.api_calls and not report.error and not report.changes:
            return None if not force else report
        for change in report.changes:
            log.info("%s", change)
        return report

    def _after_poll(self, report, now: float) -> None:
        if report.error in ("unavailable", "no_key", "internal"):
            self._failures += 1
            if self._problem is None:
                log.warning("API problem, backing off (logged once until it recovers): %s", report.error_detail)
            self._problem = report.error_detail
            interval = self.ctx.config["poll_interval_minutes"] * 60
            cap = self.ctx.config["max_poll_interval_minutes"] * 60
            self._backoff_until = now + backoff(self._failures, first=interval, cap=max(cap, interval))
        elif report.error == "key_rejected":
            if self._key_rejected_at is None:
                log.error("the API key was rejected: waiting for a config change (or %d h)", KEY_REJECTED_WAIT // 3600)
            self._key_rejected_at = now
        else:
            if self._problem is not None:
                log.info("API reachable again after %d failed poll(s)", self._failures)
            self._problem, self._failures, self._backoff_until = None, 0, 0.0

    async def _deliver(self) -> None:
        if self.notifier is None or not self.ctx.store.pending_notices():
            return
        from tegbatchd.actions.deliver import deliver_pending

        try:
            await deliver_pending(self.ctx, self.notifier)
        except Exception:  # noqa: BLE001 - a notification must never stop the daemon
            log.exception("notification delivery failed; will retry at the next poll")


def setup_logging(ctx, verbose: bool) -> None:
    """Log to the user log dir (rotated) and to stderr."""
    ensure_dir(ctx.paths.log_dir)
    root = logging.getLogger()
    root.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    from logging.handlers import RotatingFileHandler

    class PrivateRotatingFileHandler(RotatingFileHandler):
        def _open(self):  # the first log file and each one after a rotation: created 0600, not by the umask
            fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            return open(fd, self.mode, encoding=self.encoding, errors=self.errors)

    rotating = PrivateRotatingFileHandler(ctx.paths.log_file, maxBytes=1_000_000, backupCount=3)
    rotating.setFormatter(fmt)
    stderr = logging.StreamHandler()
    stderr.setFormatter(fmt)
    root.addHandler(rotating)
    root.addHandler(stderr)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpx2", "httpcore", "anthropic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: max instances" is by design
    if ctx.paths.log_file.exists():  # made by an older version
        ctx.paths.log_file.chmod(FILE_MODE)


def run_daemon(ctx, *, heartbeat: float = HEARTBEAT_SECONDS, verbose: bool = False) -> int:
    """Run the daemon for this context's state dir until SIGTERM (one per state dir: a lock)."""
    setup_logging(ctx, verbose)
    ensure_dir(ctx.paths.state_dir)
    with file_lock(ctx.paths.state_dir / "daemon.lock", wait=0) as mine:
        if not mine:
            pid = (ctx.paths.state_dir / "daemon.lock").read_text().strip() or "?"
            raise UserError(f"another tegbatchd daemon is already running for {ctx.paths.state_dir} (pid {pid})",
                            next_step="stop it first, or use `tegbatchd poll --once`")
        daemon = Daemon(make_context=lambda: Context(paths=ctx.paths), heartbeat=heartbeat)
        import asyncio

        return asyncio.run(daemon.run())
