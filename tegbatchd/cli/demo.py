"""`tegbatchd demo`: flags (the action prints its progress through the context)."""

from __future__ import annotations

from tegbatchd.actions.demo import cmd_demo
from tegbatchd.cli.options import add_json


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole workflow on sample data against a local emulator (no key)")
    p.add_argument("--data-dir", metavar="DIR", help="where to write the reports (default: a fresh folder)")
    p.add_argument("--process-seconds", type=float, default=3.0, help="how long each emulated batch runs")
    add_json(p)
    p.set_defaults(func=cmd_demo)
