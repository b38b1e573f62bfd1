"""Flags several commands share."""

from __future__ import annotations

import argparse


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help="data root (default: config data_root, else ./data)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def usd(text: str) -> float:
    """A --max-cost value: a positive amount of dollars (a leading $ allowed)."""
    import math

    try:
        value = float(text.strip().lstrip("$"))
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount of dollars above 0 (e.g. 2.50)")
    return value
