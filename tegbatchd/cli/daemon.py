"""`tegbatchd daemon`: flags."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("daemon", help="poll in the background: at start, on schedule and after sleep")
    p.add_argument("--heartbeat", type=float, default=None, help=argparse.SUPPRESS)  # None: the daemon's own
    p.set_defaults(func=cmd_daemon)


def cmd_daemon(args, ctx) -> int:
    from tegbatchd.daemon import run_daemon

    return run_daemon(ctx, verbose=args.verbose, **({"heartbeat": args.heartbeat} if args.heartbeat else {}))
