"""Start-up stays light: everyday commands never import the SDK, the scheduler, the notifier, an HTTP
client or the emulator's server (measured by benchmarks/bench_startup.py; here only what is imported)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from tegbatchd.cli import COMMAND_MODULES, COMMANDS

HEAVY = ("anthropic", "apscheduler", "desktop_notifier", "httpx", "httpx2", "httpcore", "http.server",
         "tegbatchd.emulator.server", "tegbatchd.daemon")


def imported_modules(*args: str) -> set[str]:
    """Module names `python -X importtime -m tegbatchd *args` imported (from its stderr)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tegbatchd", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [("list",), ("paths",), ("config", "show"), ("--version",)])
def test_everyday_commands_import_nothing_heavy(args):
    modules = imported_modules(*args)
    assert "tegbatchd.cli" in modules  # the parse worked: importtime lines were read
    heavy = sorted(m for m in modules if m in HEAVY or m.split(".")[0] in HEAVY)
    assert heavy == [], f"`tegbatchd {' '.join(args)}` imported {heavy}"


def test_the_command_table_matches_what_the_modules_register():
    registered = {}
    for name in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(name).register(sub)
        registered.update(dict.fromkeys(sub.choices, name))
    assert registered == COMMANDS


def test_list_reads_the_store_without_the_api_layer():
    """`list` only reads what is recorded: the API boundary (and the mail-date parser it uses for the
    server's clock) is loaded by the commands that talk to the API, `list --refresh` among them."""
    modules = imported_modules("list")
    assert "tegbatchd.store" in modules
    assert {"tegbatchd.api", "tegbatchd.polling", "email.utils"} & modules == set()
