"""`tegbatchd submit requests|round-reports|tournament`: flags and output."""

from __future__ import annotations

from tegbatchd.actions import submit as actions
from tegbatchd.cli.options import add_data_dir, add_json, usd
from tegbatchd.costs import money
from tegbatchd.errors import EXIT_FAILED, EXIT_UNCONFIRMED
from tegbatchd.estimates import JobEstimate, how


def register(sub) -> None:
    from tegbatchd.cli import teg

    p = sub.add_parser("submit", help="submit work as batches and return at once")
    kinds = p.add_subparsers(dest="submit_kind", metavar="KIND")
    kinds.required = True

    req = kinds.add_parser("requests", help="a JSONL file of {custom_id, params} lines")
    req.add_argument("file", help="JSONL file, one request per line")
    req.add_argument("--output", required=True, metavar="TEMPLATE",
                     help="output path relative to the data root, e.g. commentary/misc/{custom_id}.md")
    req.add_argument("--kind", default=None, metavar="NAME", help="a label shown in `tegbatchd list`")
    req.add_argument("--force", action="store_true",
                     help="replace outputs you edited since they were written (kept by default: the new answer goes "
                          "beside them as NAME.new.md)")
    _common(req)
    req.set_defaults(func=cmd_submit_requests)

    rr = kinds.add_parser("round-reports", help="round story notes, then narrative reports (TEG)")
    teg.add_round_reports_args(rr)
    _common(rr, now=True)
    rr.set_defaults(func=cmd_submit_teg, teg_kind="round-reports")

    tr = kinds.add_parser("tournament", help="tournament story notes and reports (TEG)")
    teg.add_tournament_args(tr)
    _common(tr, now=True)
    tr.set_defaults(func=cmd_submit_teg, teg_kind="tournament")


def _common(p, now: bool = False) -> None:
    add_data_dir(p)
    add_json(p)
    p.add_argument("--wait", action="store_true", help="stay and show progress until the results are written")
    p.add_argument("--dry-run", action="store_true", help="validate and show what would be sent; send nothing")
    p.add_argument("--again", action="store_true",
                   help="send even when an active job is already writing the same outputs")
    p.add_argument("--max-cost", type=usd, metavar="USD",
                   help="refuse the job if its estimate passes USD; the daemon holds a later stage or retry "
                        "that would (`tegbatchd resume JOB --max-cost USD` goes on)")
    p.add_argument("--submit-only", "--use-batch", action="store_true", dest="legacy_noop",
                   help="accepted for the old scripts' habits (submitting is always laptop-safe)")
    if now:
        p.add_argument("--now", action="store_true",
                       help="use the standard Messages API at once (urgent; full price) instead of batches")


def cmd_submit_requests(args, ctx) -> int:
    return _show(ctx, actions.submit_requests(ctx, args.file, args.output, label=args.kind, dry_run=args.dry_run,
                                              again=args.again, max_cost=args.max_cost, force=args.force), args)


def cmd_submit_teg(args, ctx) -> int:
    result = actions.submit_teg(ctx, args.teg_kind, args)
    if isinstance(result, int):  # --now: the job ran here; its notification is shown now
        actions.notify_now(ctx)
        return result
    return _show(ctx, result, args)


def _show(ctx, report, args) -> int:
    if isinstance(report, actions.DryRunReport):
        return _show_dry_run(ctx, report)
    code = _show_submitted(ctx, report)
    if args.wait and code == 0:
        state = actions.wait_for_job(ctx, report.job_id, report.client, ctx.say)
        ctx.say(f"Done: {report.title} — {state}")
        actions.notify_now(ctx)
        return 0 if state == "done" else EXIT_FAILED
    return code


def _estimate_json(job: JobEstimate | None) -> dict:
    if job is None:
        return {}
    total = job.total
    return {"stage_estimates": [{"stage": s.name, "requests": s.requests, "from_plan": s.from_plan,
                                 "estimated_cost_usd": round(s.estimate.cost.batch, 4),
                                 "standard_cost_usd": round(s.estimate.cost.standard, 4),
                                 "primed_cost_usd": None if job.now else round(s.estimate.primed.batch, 4),
                                 "primed": s.primed} for s in job.stages],
            "primed_cost_usd": None if job.now else round(total.primed.batch, 4), "estimate_method": how()}


def _estimate_lines(job: JobEstimate) -> list[str]:
    """Per stage and in total: the upper bound beside the standard price (`--now`: the price it pays)."""
    unpriced = job.total.cost.unknown_models
    if job.now:
        lines = ["  Estimated cost at the standard API price, which --now pays, at most:"]
        for s in job.stages:
            lines.append(f"    {s.name:<14} {s.requests:>5} request(s)  {money(s.estimate.cost.standard)}")
        lines.append(f"    {'total':<14} {job.total.requests:>5} request(s)  {money(job.total.cost.standard)}")
    else:
        lines = ["  Estimated cost, at most:"]
        for s in job.stages:
            c = s.estimate.cost
            plan = "  (from its planned prompts)" if s.from_plan else ""
            lines.append(f"    {s.name:<14} {s.requests:>5} request(s)  {money(c.batch)}  (standard API "
                         f"{money(c.standard)}){plan}")
        t = job.total
        lines.append(f"    {'total':<14} {t.requests:>5} request(s)  {money(t.cost.batch)}  (standard API "
                     f"{money(t.cost.standard)})")
        if job.priming_helps:
            lines.append(f"    with cache priming (cache_priming: auto): {money(t.primed.batch)}, without: "
                         f"{money(t.cost.batch)}")
    if unpriced:
        lines.append(f"    no price for {', '.join(unpriced)}: add it under `prices` in the config")
    lines.append(f"    ({how()})")
    return lines


def _show_dry_run(ctx, report: actions.DryRunReport) -> int:
    if ctx.json_output:
        ctx.emit_json({"dry_run": True, "title": report.title, "requests": report.requests,
                       **({"now": True} if report.now else {"batches": report.batches}),
                       "estimated_cost_usd": round(report.estimate.standard if report.now else report.estimate.batch, 4),
                       "standard_cost_usd": round(report.estimate.standard, 4),
                       "outputs": [str(i.output) for i in report.items], "later_stages": report.later_stages,
                       "notes": report.notes, **_estimate_json(report.job)})
        return 0
    for note in report.notes:
        print(f"note: {note}")
    print(f"Dry run — nothing sent. {report.title}")
    if report.now:
        print(f"  {report.requests} request(s) to the standard Messages API at once (--now, the standard price)")
    else:
        primed = report.job is not None and bool(report.job.stages) and report.job.stages[0].primed
        print(f"  {report.requests} request(s) in {report.batches} batch(es)"
              + (", after a batch of their own for the requests that prime the cache (cache_priming: auto)"
                 if primed else ""))
    for line in _estimate_lines(report.job) if report.job else []:
        print(line)
    for item in report.items[:20]:
        print(f"  {item.custom_id:<40} → {item.output}")
    if len(report.items) > 20:
        print(f"  ... and {len(report.items) - 20} more")
    for name in report.later_stages:
        print(f"  then: stage {name}, built from the outputs above when they are written")
    return 0


def _show_submitted(ctx, r: actions.SubmitReport) -> int:
    """"Close your laptop" only when every batch id is recorded; else say what will send it (exit 6)."""
    code = 0 if r.confirmed else EXIT_UNCONFIRMED
    if ctx.json_output:
        ctx.emit_json({"job_id": r.job_id, "title": r.title, "batch_ids": r.batch_ids, "requests": r.requests,
                       "estimated_cost_usd": round(r.estimate.batch, 4),
                       "standard_cost_usd": round(r.estimate.standard, 4), "deferred": r.deferred,
                       "confirmed": r.confirmed, "daemon_running": r.daemon_running, "notes": r.notes,
                       **_estimate_json(r.job)})
        return code
    for note in r.notes:
        print(f"note: {note}")
    for event in r.events:
        print(event)
    print("=" * 64)
    print(f"{'SUBMITTED' if r.confirmed else 'RECORDED, NOT CONFIRMED'} — {r.title}")
    print("=" * 64)
    print(f"Job:      {r.job_id}")
    for batch_id in r.batch_ids:
        print(f"Batch:    {batch_id}")
    for note in r.deferred:
        print(f"Note:     {note}")
    print(f"Requests: {r.requests}")
    if r.job is not None and len(r.job.stages) > 1:
        for line in _estimate_lines(r.job):
            print(line)
    else:
        print(f"Cost:     at most {r.estimate.describe()}")
    print()
    if r.confirmed:
        print("You can close your laptop now: the batches run on Anthropic's servers.")
        print("The daemon (`tegbatchd service install`) retrieves the results and tells you when they are ready.")
        print("To check by hand:  tegbatchd list      then   tegbatchd poll --once")
    else:
        who = ("the running daemon sends (or reconciles) it at its next poll" if r.daemon_running else
               "no daemon is running: run `tegbatchd poll --once` when the API is reachable (it reconciles, "
               "never sends twice), or `tegbatchd service install`")
        print(f"Not every batch was confirmed by the API: the requests are recorded, and {who}.")
        print("Keep the laptop open until `tegbatchd list` shows a batch id for every part.")
    return code
