"""Times as a person reads them: the --utc flag; the formatting is tegbatchd.times.shown_time."""

from __future__ import annotations

import argparse

from tegbatchd.times import shown_time

__all__ = ["add_utc", "shown_time"]


def add_utc(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--utc", action="store_true", help="show times in UTC (default: the local time zone)")
