"""`tegbatchd doctor [--utc] [--json]`: flags and the one line per check."""

from __future__ import annotations

from tegbatchd.cli.options import add_json
from tegbatchd.cli.times import add_utc
from tegbatchd.errors import EXIT_FAILED


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check the whole set-up: service, notifications, key, endpoint, clock, "
                                      "database, pending work, models, version")
    add_utc(p)
    add_json(p)
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args, ctx) -> int:
    from tegbatchd.actions.doctor import FAIL, run

    report = run(ctx, utc=args.utc)
    if ctx.json_output:
        ctx.emit_json(report.as_dict())
    else:
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            fix = f" — fix: {check.fix}" if check.fix and check.status != "ok" else ""
            print(f"{check.status:<4}  {check.name:<{width}}  {check.detail}{fix}")
        counts = {s: sum(c.status == s for c in report.checks) for s in ("ok", "warn", FAIL)}
        print(f"{counts['ok']} ok, {counts['warn']} warn, {counts[FAIL]} fail")
    return EXIT_FAILED if report.failed else 0
