"""`tegbatchd list` and `tegbatchd status ID`: flags and output."""

from __future__ import annotations

from tegbatchd.actions import listing as actions
from tegbatchd.cli.options import add_json
from tegbatchd.cli.times import add_utc, shown_time


def register(sub) -> None:
    p = sub.add_parser("list", help="jobs and their batches, newest first (from the local store)")
    p.add_argument("--all", action="store_true", help="include jobs finished more than a week ago")
    p.add_argument("--refresh", action="store_true", help="ask the API for the status of pending batches first")
    add_utc(p)
    add_json(p)
    p.set_defaults(func=cmd_list)

    s = sub.add_parser("status", help="a batch, or every batch of a job, refreshed and in detail")
    s.add_argument("batch_id", metavar="ID", help="a batch id or a job id (or a unique prefix of 6+ characters)")
    add_utc(s)
    add_json(s)
    s.set_defaults(func=cmd_status)


def cmd_list(args, ctx) -> int:
    views = actions.list_jobs(ctx, include_all=args.all, refresh=args.refresh)
    if views.note:
        ctx.say(f"({views.note})")
    jobs = views.items
    if ctx.json_output:
        ctx.emit_json({"jobs": jobs})
        return 0
    if not jobs:
        print("No jobs recorded yet. Submit with `tegbatchd submit ...` (or try `tegbatchd demo`).")
        return 0
    for job in jobs:
        done_stages = sum(s["state"] in ("done", "skipped") for s in job["stages"])
        mode = " (--now)" if job["mode"] == "now" else ""
        print(f"{job['id']}  {job['title']}{mode}  [{job['state']}]  stage {min(done_stages + 1, len(job['stages']))}/"
              f"{len(job['stages'])}  written {job['written']}, pending {job['pending']}, failed {len(job['failed'])}"
              f"  ${job['cost_usd']:.4f} (standard ${job['standard_cost_usd']:.4f})")
        _print_job_lines(job, args.utc)
        if job["blocked_reason"]:
            print(f"    blocked: {job['blocked_reason']}")
        if job["truncated"]:
            print(f"    {len(job['truncated'])} output(s) stopped at max_tokens: {', '.join(job['truncated'][:5])}")
        for failure in job["failures"][:5]:
            print(f"    ✗ {failure['custom_id']} ({failure['stage']}): {failure['reason']} after "
                  f"{failure['attempts']} attempt(s)")
        if len(job["failures"]) > 5:
            print(f"    ... and {len(job['failures']) - 5} more failed")
        if job["next"]:
            print(f"    next: {job['next']}")
        for b in job["batches"]:
            c = b["counts"]
            counts = ", ".join(f"{k} {v}" for k, v in c.items() if v)
            print(f"    {b['id']}  {b['stage']}  {shown_time(b['created_at'], utc=args.utc)}  {b['api_status']}/"
                  f"{b['local_state']}  ({counts or 'no requests'})  outputs {b['outputs_written']}")
            if b["next"]:
                print(f"      next: {b['next']}")
    return 0


def _print_job_lines(job: dict, utc: bool) -> None:
    """The lines every job gets in `list` and `status`: when, where its files are, what reconciles it."""
    print(f"    submitted {shown_time(job['created_at'], utc=utc)}; files in {job['folder'] or '(none planned yet)'}")
    if job["reconciling"]:
        r = job["reconciling"]
        print(f"    reconciling: {r['parts']} part(s) ({r['requests']} requests) recorded, not confirmed by the API "
              f"— {r['by']} sends or reconciles them, never twice")


def cmd_status(args, ctx) -> int:
    views = actions.status(ctx, args.batch_id)
    if views.note:
        ctx.say(f"({views.note})")
    view = views.items[0]
    if ctx.json_output:
        ctx.emit_json(view)
        return 0
    if "batches" in view and "stages" in view:  # a job: its summary, then each batch
        print(f"{view['id']}  {view['title']}  [{view['state']}]  {view['written']} of {view['files_planned']} "
              f"files written, pending {view['pending']}, failed {len(view['failed'])}")
        _print_job_lines(view, args.utc)
        _print_costs(view)
        for kept in view["kept_edits"]:
            print(f"    kept your edit: {kept}")
        if view["blocked_reason"]:
            print(f"    blocked: {view['blocked_reason']}")
        if view["next"]:
            print(f"    next: {view['next']}")
        if not view["batches"]:
            print("  no batch yet")
        for batch in view["batches"]:
            print()
            _print_batch(batch, args.utc)
        return 0
    _print_batch(view, args.utc)
    return 0


def _print_batch(view: dict, utc: bool) -> None:
    job = view["job"]
    c = view["counts"]
    print(f"{view['id']}  ({job['title']}, stage {view['stage']})")
    print(f"  API status:   {view['api_status']}      local: {view['local_state']}")
    print(f"  created:      {shown_time(view['created_at'], utc=utc)}   "
          f"expires: {shown_time(view['expires_at'], utc=utc)}")
    print("  requests:     " + ", ".join(f"{k} {v}" for k, v in c.items()))
    print(f"  outputs:      {view['outputs_written']} written")
    print(f"  cost:         ${view['cost_usd']:.4f} (standard API ${view['standard_cost_usd']:.4f})")
    print(f"  results kept: {view['days_until_archived']} more day(s) before they are archived")
    for e in view["not_succeeded"]:
        detail = f"{e['error_type']} — {e['message']}" if e["error_type"] else e["outcome"]
        print(f"  ✗ {e['custom_id']}: {detail}" + (" (resent since)" if e["retried"] else ""))
    if view["truncated"]:
        print(f"  truncated at max_tokens: {', '.join(view['truncated'])}")
    if view["next"]:
        print(f"  next: {view['next']}")


def _print_costs(job: dict) -> None:
    """`status JOB`: each stage's cache hit rate, what the job cost and saved."""
    rates = [f"{s['name']} {s['cache_hit_rate']:.0%}" for s in job["stages"] if s.get("cache_hit_rate") is not None]
    if job["mode"] == "now":
        print(f"    cost ${job['cost_usd']:.4f} at the standard API price")
    else:
        print(f"    cost ${job['cost_usd']:.4f} (standard API ${job['standard_cost_usd']:.4f}, saved "
              f"${job['saved_usd']:.4f})" + (f"; cache hit rate {', '.join(rates)}" if rates else ""))
