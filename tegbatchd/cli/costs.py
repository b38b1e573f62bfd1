"""`tegbatchd costs`: what the recorded work cost, by job, stage, model, month or request."""

from __future__ import annotations

from tegbatchd.actions import costs as actions
from tegbatchd.cli.options import add_json


def register(sub) -> None:
    p = sub.add_parser("costs", help="what the work cost (receipts from recorded usage) and what batches saved")
    p.add_argument("--since", metavar="DATE", help="only batches run on or after DATE (YYYY-MM-DD or YYYY-MM)")
    p.add_argument("--by", choices=actions.GROUPINGS, default="job", help="one line per job (default), stage, "
                   "model, month, or request (each attempt; with --job)")
    p.add_argument("--job", metavar="ID", help="only this job (a job id, any of its batch ids, or a unique prefix)")
    add_json(p)
    p.set_defaults(func=cmd_costs)


def _rate(line: actions.CostLine) -> str:
    rate = line.usage.hit_rate
    return "no cached prefix" if rate is None else f"{rate:.0%} of {line.usage.cacheable:,} cacheable tokens read"


def _usd(value: float) -> str:
    return f"${value:.4f}"


def cmd_costs(args, ctx) -> int:
    report = actions.receipts(ctx, since=args.since, by=args.by, job=args.job)
    if ctx.json_output:
        ctx.emit_json(report.as_dict())
        return 0
    if not report.lines:
        print("No usage recorded" + (f" since {report.since}" if report.since else "") + " yet.")
        return 0
    width = max(len(line.label) for line in report.lines)
    width = min(max(width, 5), 60)
    print(f"{'':{width}}  {'requests':>8}  {'input':>10}  {'cache w5m':>10}  {'cache w1h':>10}  {'cache rd':>10}  "
          f"{'output':>10}  {'cost':>10}  {'standard':>10}  {'saved':>9}")
    for line in [*report.lines, report.total]:
        u, c = line.usage, line.cost
        label = line.label if len(line.label) <= width else line.label[:width - 1] + "…"
        print(f"{label:{width}}  {u.requests:>8,}  {u.input:>10,}  {u.cache_write_5m:>10,}  {u.cache_write_1h:>10,}  "
              f"{u.cache_read:>10,}  {u.output:>10,}  {_usd(c.batch):>10}  {_usd(c.standard):>10}  {_usd(c.saved):>9}")
    if report.total.usage.thinking:
        print(f"(output includes {report.total.usage.thinking:,} thinking tokens)")
    print("cache hit rate by stage: " + "; ".join(f"{s.label} {_rate(s)}" for s in report.stages))
    if report.total.cost.unknown_models:
        print(f"no price for {', '.join(report.total.cost.unknown_models)}: add it under `prices` in the config")
    return 0
