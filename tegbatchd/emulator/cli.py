"""`tegbatchd emulator`: serve the local Message Batches API until SIGTERM/SIGINT.

The first line on stdout is the base URL (`http://127.0.0.1:PORT`), flushed, so scripts can read it.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from datetime import date
from typing import TYPE_CHECKING

from tegbatchd.emulator.options import (
    CACHE_MODELS,
    DAY,
    ERROR_TYPES,
    MAX_BODY_BYTES,
    MAX_MESSAGES_BODY_BYTES,
    SPEND_LIMITS,
    Options,
)
from tegbatchd.errors import UserError

if TYPE_CHECKING:  # the server (http.server...) is loaded by `run` only: every command registers this module
    from tegbatchd.emulator.state import BatchStore

SAVE_INTERVAL = 0.2  # seconds between checks for unsaved changes (with --state)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds >= 0")
    return value


def _offset(text: str) -> float:
    value = float(text)
    if not abs(value) < 1e9:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0 to 65535; 0 picks a free one)")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a count >= 0")
    return value


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a date (YYYY-MM-DD)") from None


def register(sub) -> None:
    p = sub.add_parser("emulator", help="serve a local emulator of the Message Batches API (tests, demo)",
                       description="Serve a local HTTP emulator of Anthropic's Message Batches API. "
                       "Prints the base URL as the first line on stdout; runs until SIGTERM/SIGINT.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=0, help="port (default 0: a free one)")
    p.add_argument("--api-key", metavar="KEY", help="accept only this key (default: accept any)")
    p.add_argument("--state", metavar="FILE", help="keep batches in FILE across restarts")
    p.add_argument("-v", "--verbose", dest="emulator_verbose", action="store_true",
                   help="log every request to stderr")
    m = p.add_argument_group("models")
    m.add_argument("--models", metavar="FILE", help="model catalogue JSON (default: the shipped models.json)")
    m.add_argument("--today", type=_day, metavar="YYYY-MM-DD",
                   help="the day model lifecycles are read at (default: the emulated clock's date)")
    t = p.add_argument_group("timing")
    t.add_argument("--clock-offset", type=_offset, default=0.0, metavar="S",
                   help="run the emulated clock S seconds off the machine's (negative: behind; its created_at "
                        "and Date headers follow it)")
    t.add_argument("--process-seconds", type=_seconds, default=3.0, metavar="S",
                   help="a batch ends S seconds after creation (default 3; 0: at once)")
    t.add_argument("--expiry-seconds", type=_seconds, default=DAY, metavar="S",
                   help="expires_at = created_at + S (default 86400)")
    t.add_argument("--retention-seconds", type=_seconds, default=29 * DAY, metavar="S",
                   help="results are archived S seconds after creation (default 29 days)")
    t.add_argument("--cancel-seconds", type=_seconds, default=1.0, metavar="S",
                   help="a canceling batch ends S seconds after the cancel (default 1)")
    a = p.add_argument_group("answers")
    a.add_argument("--answer-bytes", type=_count, default=800, metavar="N",
                   help="pad each answer text to about N bytes (default 800)")
    a.add_argument("--seed", type=int, default=None,
                   help="seed of every injected chance (default 0); when given, batch ids follow from it and "
                        "the creation order too, so a run's outcomes are reproducible")
    a.add_argument("--error-rate", type=_rate, default=0.0, metavar="R", help="fraction of requests errored")
    a.add_argument("--error-type", choices=ERROR_TYPES, metavar="TYPE",
                   help="type of injected errors (default: overloaded_error and api_error alternately)")
    a.add_argument("--expire-rate", type=_rate, default=0.0, metavar="R", help="fraction of requests expired")
    a.add_argument("--max-tokens-rate", type=_rate, default=0.0, metavar="R",
                   help='fraction of successes with stop_reason "max_tokens"')
    a.add_argument("--cancel-finish-rate", type=_rate, default=0.0, metavar="R",
                   help="fraction of requests of a canceled batch that still finish")
    a.add_argument("--cache-model", choices=CACHE_MODELS, default="realistic",
                   help="realistic (default): a cache entry exists only from a request that finished earlier, "
                        "for its TTL; optimistic: the first request of each batch writes, the rest read")
    a.add_argument("--shuffle-results", action="store_true", help="results lines not in request order")
    a.add_argument("--replay-results", action="append", default=[], metavar="FILE",
                   help="serve FILE verbatim to a batch with the same custom_ids (repeatable)")
    a.add_argument("--replay-any", metavar="FILE",
                   help="serve FILE byte for byte to every other batch, whatever its custom_ids (robustness "
                        "tests: unknown ids, blank lines, CRLF, a truncated last line)")
    f = p.add_argument_group("faults")
    f.add_argument("--fault-rate", type=_rate, default=0.0, metavar="R",
                   help="fraction of API calls answered 429, 500 or 529")
    f.add_argument("--fault-retry-after", default="0.01", metavar="S",
                   help="retry-after header of faulted calls (default 0.01)")
    f.add_argument("--drop-results-after", type=_count, metavar="N",
                   help="cut every results stream after N lines")
    f.add_argument("--drop-results-times", type=_count, metavar="K",
                   help="cut only the first K results downloads (default: all)")
    f.add_argument("--unclear-create", choices=("drop", "stall"),
                   help="store the first creates but drop the connection / stall the answer")
    f.add_argument("--unclear-create-count", type=_count, default=1, metavar="N",
                   help="how many creates are unclear (default 1)")
    f.add_argument("--stall-seconds", type=_seconds, default=30.0, metavar="S",
                   help="how long a stalled create waits before answering (default 30)")
    f.add_argument("--max-body-bytes", type=_count, default=MAX_BODY_BYTES, metavar="N",
                   help="bodies over N bytes get 413 (default 256 MB)")
    f.add_argument("--max-messages-body-bytes", type=_count, default=MAX_MESSAGES_BODY_BYTES, metavar="N",
                   help="/v1/messages bodies over N bytes get 413 (default 32 MB)")
    f.add_argument("--retrieve-404-seconds", type=_seconds, default=0.0, metavar="S",
                   help="a new batch answers 404 on retrieve for S seconds after its create")
    f.add_argument("--list-lag-seconds", type=_seconds, default=0.0, metavar="S",
                   help="a new batch is missing from list pages for S seconds after its create")
    f.add_argument("--credit-exhausted", action="store_true",
                   help="every request errors: credit balance too low (batches: errored lines; messages: 400)")
    f.add_argument("--spend-limit", choices=SPEND_LIMITS,
                   help="refuse every create: workspace (400 invalid_request_error) or tier (429 "
                        "rate_limit_error, error_code enforced_spend_limit_reached, no retry-after)")
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        api_key=args.api_key, process_seconds=args.process_seconds, expiry_seconds=args.expiry_seconds,
        retention_seconds=args.retention_seconds, cancel_seconds=args.cancel_seconds,
        cancel_finish_rate=args.cancel_finish_rate, answer_bytes=args.answer_bytes,
        max_tokens_rate=args.max_tokens_rate, error_rate=args.error_rate, error_type=args.error_type,
        expire_rate=args.expire_rate, seed=args.seed or 0, seeded_ids=args.seed is not None, fault_rate=args.fault_rate,
        fault_retry_after=args.fault_retry_after, drop_results_after=args.drop_results_after,
        drop_results_times=args.drop_results_times, replay_results=tuple(args.replay_results),
        replay_any=args.replay_any,
        unclear_create=args.unclear_create, unclear_create_count=args.unclear_create_count,
        stall_seconds=args.stall_seconds, shuffle_results=args.shuffle_results,
        max_body_bytes=args.max_body_bytes, state_file=args.state,
        max_messages_body_bytes=args.max_messages_body_bytes, models_file=args.models, today=args.today,
        cache_model=args.cache_model, retrieve_404_seconds=args.retrieve_404_seconds,
        list_lag_seconds=args.list_lag_seconds, credit_exhausted=args.credit_exhausted,
        spend_limit=args.spend_limit,
        verbose=bool(args.emulator_verbose or getattr(args, "verbose", False)),
    )


def run(args: argparse.Namespace, ctx) -> int:
    """Serve until SIGTERM/SIGINT, then save the state (with --state) and return 0."""
    from tegbatchd.emulator.clock import Clock
    from tegbatchd.emulator.persistence import load_state
    from tegbatchd.emulator.replay import load_replay
    from tegbatchd.emulator.server import EmulatorServer
    from tegbatchd.emulator.state import BatchStore

    opts = options_from_args(args)
    replays = tuple(load_replay(path) for path in opts.replay_results)
    if opts.replay_any:
        replays += (load_replay(opts.replay_any, verbatim=True),)
    store = BatchStore(opts, Clock(args.clock_offset), replays)
    if opts.state_file:
        saved = load_state(opts.state_file)
        if saved:
            store.restore(saved)
    try:
        server = EmulatorServer(args.host, args.port, opts, store, replays)
    except (OSError, OverflowError, ValueError) as exc:  # in use, no such address, a host the resolver refuses
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc}",
                        next_step="pick another --port (0 chooses a free one)") from exc
    print(server.base_url, flush=True)
    # The handler only records the signal: it runs between two bytecodes of this (main) thread, and a lock
    # taken there (Event.set) deadlocked when the signal came while the thread held that lock in Event.wait.
    stopping: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _: stopping.append(signum))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="emulator-http", daemon=True)
    thread.start()
    try:
        while not stopping:
            time.sleep(SAVE_INTERVAL)  # (a signal cuts the sleep short: its handler runs, then the loop checks)
            _save_if_dirty(store, opts)
    finally:
        server.stop()
        thread.join(timeout=5)
        _save_if_dirty(store, opts)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _save_if_dirty(store: BatchStore, opts: Options) -> None:
    from tegbatchd.emulator.persistence import save_state

    if opts.state_file and store.dirty:
        save_state(opts.state_file, store.snapshot())
