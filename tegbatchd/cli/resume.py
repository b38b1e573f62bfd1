"""`tegbatchd resume JOB [--max-cost USD]`: a job held by the budget goes on."""

from __future__ import annotations

from tegbatchd.actions import resume as actions
from tegbatchd.cli.options import add_json, usd
from tegbatchd.errors import EXIT_FAILED


def register(sub) -> None:
    p = sub.add_parser("resume", help="let a job held by the budget (or otherwise blocked) go on")
    p.add_argument("id", metavar="JOB", help="a job id (or a batch id of it)")
    p.add_argument("--max-cost", type=usd, metavar="USD",
                   help="the job may cost up to USD in all (this also lets it past budget.monthly_usd)")
    add_json(p)
    p.set_defaults(func=cmd_resume)


def cmd_resume(args, ctx) -> int:
    result = actions.resume(ctx, args.id, max_cost=args.max_cost)
    if ctx.json_output:
        ctx.emit_json({"job_id": result.job_id, "state": result.state, "max_cost_usd": result.max_cost,
                       "blocked": result.blocked, "events": [str(e) for e in result.events]})
    else:
        limit = f" (limit ${result.max_cost:.2f})" if result.max_cost is not None else ""
        print(f"{result.title}: going on{limit}")
        for event in result.events:
            print(event)
    return EXIT_FAILED if result.blocked else 0
