"""Command-line entry point: thin argument parsing; each command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sqlite3
import sys

from tegbatchd import __version__
from tegbatchd.errors import UserError

# Each module exposes register(subparsers) which adds its command(s) with set_defaults(func=...).
# func(args, ctx) returns an exit code. Only the chosen command's module is imported (start-up time:
# `tegbatchd list` loads neither the emulator, nor the daemon, nor the SDK); help and unknown commands
# load them all. tests/test_startup_imports.py checks this table against what the modules register.
COMMANDS = {
    "paths": "tegbatchd.actions.info",
    "config": "tegbatchd.actions.info",
    "emulator": "tegbatchd.emulator.cli",
    "submit": "tegbatchd.actions.submit",
    "list": "tegbatchd.actions.listing",
    "status": "tegbatchd.actions.listing",
    "retrieve": "tegbatchd.actions.batches",
    "cancel": "tegbatchd.actions.batches",
    "retry": "tegbatchd.actions.batches",
    "poll": "tegbatchd.actions.batches",
    "daemon": "tegbatchd.daemon",
    "demo": "tegbatchd.actions.demo",
    "service": "tegbatchd.actions.service",
    "teg": "tegbatchd.teg.cli",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))

# Commands that must work whatever the user's config file says.
NO_CONFIG_COMMANDS = ("config", "emulator")

# Flags of the old scripts, kept working: `tegbatchd --list-batches`, `tegbatchd --retrieve-batch ID`.
LEGACY_TOP_LEVEL = {"--list-batches": ["list"], "--retrieve-batch": ["retrieve"]}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or only `command` (and its module's siblings) when it is known."""
    parser = argparse.ArgumentParser(
        prog="tegbatchd",
        description="Laptop-safe Anthropic Message Batches: submit, close the laptop, get notified when "
        "the reports are written.",
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
    return argv


def main(argv: list[str] | None = None) -> int:
    from tegbatchd.context import Context

    argv = _legacy(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx = Context(data_dir_arg=getattr(args, "data_dir", None), json_output=getattr(args, "json", False))
    try:
        if args.command not in NO_CONFIG_COMMANDS:
            _ = ctx.config  # a bad config file is reported before anything else happens
        return int(args.func(args, ctx) or 0)
    except UserError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except sqlite3.DatabaseError as exc:  # a damaged page or a full disk met after the store was opened
        from tegbatchd.store import StoreError

        print(StoreError.unusable(ctx.paths.db_path, exc).render(), file=sys.stderr)
        return StoreError.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        ctx.close()


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help="data root (default: config data_root, else ./data)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
