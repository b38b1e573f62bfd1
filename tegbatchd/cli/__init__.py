"""The command line: parses and prints, nothing else. Each command's flags and output live in a module of
this package; the work is done by `tegbatchd.actions`, which return typed reports. One error handler
(`render_error`) turns every error type into one line, a next step and a documented exit code. Nothing
outside this package imports it."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sqlite3
import sys

from tegbatchd import __version__
from tegbatchd.errors import UserError

# Each module exposes register(subparsers) which adds its command(s) with set_defaults(func=...).
# func(args, ctx) returns an exit code. Only the chosen command's module is imported (start-up time:
# `tegbatchd list` loads neither the emulator, nor the daemon, nor the SDK); help and unknown commands
# load them all. tests/test_startup_imports.py checks this table against what the modules register.
COMMANDS = {
    "paths": "tegbatchd.cli.info",
    "config": "tegbatchd.cli.info",
    "emulator": "tegbatchd.emulator.cli",
    "submit": "tegbatchd.cli.submit",
    "list": "tegbatchd.cli.listing",
    "status": "tegbatchd.cli.listing",
    "costs": "tegbatchd.cli.costs",
    "resume": "tegbatchd.cli.resume",
    "retrieve": "tegbatchd.cli.batches",
    "cancel": "tegbatchd.cli.batches",
    "retry": "tegbatchd.cli.batches",
    "poll": "tegbatchd.cli.batches",
    "daemon": "tegbatchd.cli.daemon",
    "demo": "tegbatchd.cli.demo",
    "service": "tegbatchd.cli.service",
    "doctor": "tegbatchd.cli.doctor",
    "import": "tegbatchd.cli.importing",
    "teg": "tegbatchd.cli.teg",
    "open": "tegbatchd.cli.open_folder",
    "completion": "tegbatchd.cli.completion",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))

# Commands that must work whatever the user's config file says.
NO_CONFIG_COMMANDS = ("config", "emulator")

# Flags of the old scripts, kept working: `tegbatchd --list-batches`, `tegbatchd --retrieve-batch ID`.
LEGACY_TOP_LEVEL = {"--list-batches": ["list"], "--retrieve-batch": ["retrieve"]}
# The old scripts' submit habits (generate_round_report.py --teg 10-17 --round 1-4 --use-batch --submit-only;
# generate_tournament_commentary_v2.py --range 3 17 --batch-reports ...): the first flag picks the kind.
LEGACY_SUBMIT = {"--teg": "round-reports", "--range": "tournament"}
TOURNAMENT_ONLY = ("--range", "--batch-reports", "--main-report", "--brief-summary", "--satire")
BATCH_FLAGS = ("--use-batch", "--submit-only")


class Parser(argparse.ArgumentParser):
    """argparse in the house style: a bad flag or value is one line naming it and the next step (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} — see `{self.prog} --help`\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or only `command` (and its module's siblings) when it is known."""
    parser = Parser(
        prog="tegbatchd",
        description="Laptop-safe Anthropic Message Batches: submit, close the laptop, get notified when "
        "the reports are written.",
        epilog="Wherever a command takes an ID: a job id or a batch id, whole or a unique prefix of 6+ "
        "characters. Times are local (the zone named; --utc for UTC).",
    )
    parser.add_argument("--version", action="version", version=f"tegbatchd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _legacy(argv: list[str]) -> list[str]:
    if argv and argv[0] in LEGACY_TOP_LEVEL:
        return LEGACY_TOP_LEVEL[argv[0]] + argv[1:]
    if argv and argv[0].split("=")[0] in LEGACY_SUBMIT:
        return _legacy_submit(argv)
    return argv


def _legacy_submit(argv: list[str]) -> list[str]:
    """`tegbatchd --teg 10-17 --round 1-4 --use-batch --submit-only` → `tegbatchd submit round-reports --teg
    10-17 --round 1-4`, saying the new form in one line. Submitting is always laptop-safe, so
    --use-batch/--submit-only are dropped; --use-batch alone (the old "submit and wait") adds --wait."""
    kind = "tournament" if any(a.split("=")[0] in TOURNAMENT_ONLY for a in argv) else LEGACY_SUBMIT[
        argv[0].split("=")[0]]
    rest = [a for a in argv if a not in BATCH_FLAGS]
    if "--use-batch" in argv and "--submit-only" not in argv and "--wait" not in rest:
        rest.append("--wait")
    new = ["submit", kind, *rest]
    urgent = "" if any(a in argv for a in BATCH_FLAGS) or "--now" in rest else \
        " (a batch, half price; add --now for the standard API at once)"
    print(f"note: the old flags mean `tegbatchd {shlex.join(new)}`{urgent} — use that from now on", file=sys.stderr)
    return new


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:
        return output_closed()


def output_closed() -> int:
    """The reader of our output went away (`tegbatchd list | head -1`): stop quietly with 141, the code of
    a program ended by SIGPIPE. As the Python docs advise, stdout is pointed at devnull so that the final
    flush at exit does not fail again and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured in-process)
        pass
    return 141


def _run(argv: list[str] | None) -> int:
    from tegbatchd.context import Context

    argv = _legacy(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx = None
    try:
        ctx = Context(data_dir_arg=getattr(args, "data_dir", None), json_output=getattr(args, "json", False))
        if args.command not in NO_CONFIG_COMMANDS:
            _ = ctx.config  # a bad config file is reported before anything else happens
        return int(args.func(args, ctx) or 0)
    except BaseException as exc:  # noqa: BLE001 - every error type becomes one line and an exit code
        if isinstance(exc, BrokenPipeError):
            raise  # the reader went away: main() ends quietly
        line, code = render_error(exc, ctx, verbose=args.verbose)
        if code is None:
            raise
        print(line, file=sys.stderr)
        return code
    finally:
        if ctx is not None:
            ctx.close()


def render_error(exc: BaseException, ctx, *, verbose: bool = False) -> tuple[str, int | None]:
    """The one line (problem — next step) and the documented exit code for any error (None: re-raise)."""
    from tegbatchd import api as api_mod
    from tegbatchd import errors

    if isinstance(exc, UserError):
        return exc.render(), exc.exit_code
    if isinstance(exc, api_mod.AuthRejected):
        return ("error: the API key was rejected — check ANTHROPIC_API_KEY or your api_key_file; "
                "nothing more was sent", errors.EXIT_AUTH)
    if isinstance(exc, api_mod.BillingError):
        return f"error: {exc} — top up your Anthropic balance, then run the same command again", errors.EXIT_FAILED
    if isinstance(exc, api_mod.Unavailable | api_mod.Unclear | api_mod.StreamCut | api_mod.NotFound):
        return (f"error: {exc} — nothing was lost; try again later (or let the daemon do it)",
                errors.EXIT_UNAVAILABLE)
    if isinstance(exc, api_mod.ApiError):
        return f"error: {exc} — check the request; nothing was lost", errors.EXIT_FAILED
    if isinstance(exc, sqlite3.DatabaseError):  # a damaged page or a full disk met after the store was opened
        from tegbatchd.store import StoreError

        return StoreError.unusable(ctx.paths.db_path, exc).render(), errors.EXIT_STATE
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return (f"error: {exc.strerror or exc}{where} — free space or fix permissions, then run it again; "
                "what was written is kept", errors.EXIT_FAILED)
    if isinstance(exc, Exception):
        if verbose:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        logging.getLogger("tegbatchd").debug("internal error", exc_info=exc)
        return (f"error: internal error ({type(exc).__name__}: {exc}) — please report it (run with -v for "
                "details); nothing recorded was lost", errors.EXIT_INTERNAL)
    return "", None
