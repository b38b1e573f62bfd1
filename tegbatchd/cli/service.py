"""`tegbatchd service install [--timer] [--print] | uninstall | status`: flags (the action prints its
progress through the context)."""

from __future__ import annotations

import argparse
import sys

from tegbatchd.actions.service import cmd_install, cmd_status, cmd_uninstall
from tegbatchd.cli.options import add_json
from tegbatchd.units import LINUX, MACOS


def _ask(question: str) -> bool:
    """A yes/no question on the terminal (no answer, or anything but yes, is no)."""
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _install(args, ctx) -> int:
    args.confirm = _ask if sys.stdin.isatty() and sys.stdout.isatty() else None
    return cmd_install(args, ctx)


def register(sub) -> None:
    p = sub.add_parser("service", help="install, remove or check the background service (systemd/launchd)")
    ssub = p.add_subparsers(dest="service_command", metavar="ACTION")
    ssub.required = True
    inst = ssub.add_parser("install", help="install and start the daemon (or the 5-minute timer)")
    inst.add_argument("--timer", action="store_true",
                      help="run `tegbatchd poll --once` every 5 minutes instead of the resident daemon")
    inst.add_argument("--print", dest="print_only", action="store_true",
                      help="show the files and commands; write and run nothing")
    inst.add_argument("--store-key", action="store_true",
                      help="write ANTHROPIC_API_KEY to api_key_file (0600) so the service can authenticate")
    inst.add_argument("--exec", dest="exec_path", help=argparse.SUPPRESS)
    inst.set_defaults(func=_install)
    uninst = ssub.add_parser("uninstall", help="stop the service and remove what install wrote")
    uninst.set_defaults(func=cmd_uninstall)
    status = ssub.add_parser("status", help="what is installed and whether it runs")
    add_json(status)
    status.set_defaults(func=cmd_status)
    for parser in (inst, uninst, status):
        parser.add_argument("--platform", choices=(LINUX, MACOS), help=argparse.SUPPRESS)


