"""`tegbatchd list` and `tegbatchd status ID`: what is recorded, from the local store (no network unless
asked)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tegbatchd import api as api_mod
from tegbatchd.cli import add_json
from tegbatchd.costs import recorded_cost
from tegbatchd.engine.outcome import summarize

ARCHIVE_AFTER = timedelta(days=29)


def register(sub) -> None:
    p = sub.add_parser("list", help="jobs and their batches, newest first (from the local store)")
    p.add_argument("--all", action="store_true", help="include jobs finished more than a week ago")
    p.add_argument("--refresh", action="store_true", help="ask the API for the status of pending batches first")
    add_json(p)
    p.set_defaults(func=cmd_list)

    s = sub.add_parser("status", help="refresh one batch and show it in detail")
    s.add_argument("batch_id")
    add_json(s)
    s.set_defaults(func=cmd_status)


def _next_command(job: dict, batch: dict) -> str | None:
    """A batch's own next step: only retrieval (failures are the job's: see the job's `next`)."""
    if batch["local_state"] in ("submitted", "retrieving") and batch["api_status"] == "ended":
        return f"tegbatchd retrieve {batch['id']}"
    return None


def _job_next(job: dict, summary) -> str | None:
    if job["state"] == "blocked":
        return f"tegbatchd retry {job['id']}"
    if job["state"] in ("partial", "failed", "done"):
        return summary.retry_hint()
    return None


def _batch_view(ctx, job: dict, batch: dict) -> dict:
    counts = {k: batch[k] for k in ("processing", "succeeded", "errored", "canceled", "expired")}
    outcome = ctx.store.batch_outcome_counts(batch["id"])
    cost = recorded_cost(ctx.config, ctx.store.usage_by_model(batch_id=batch["id"]))
    return {"id": batch["id"], "stage": batch["stage_name"], "created_at": batch["created_at"],
            "api_status": batch["api_status"], "local_state": batch["local_state"], "counts": counts,
            "outputs_written": outcome["written"], "cost_usd": round(cost.batch, 4),
            "standard_cost_usd": round(cost.standard, 4), "next": _next_command(job, batch)}


def job_view(ctx, job: dict) -> dict:
    store = ctx.store
    batches = [_batch_view(ctx, job, b) for b in store.batches_of_job(job["id"])]
    summary = summarize(store, job)
    stages = store.stages(job["id"])
    cost = recorded_cost(ctx.config, store.usage_by_model(job_id=job["id"]), batch=job["mode"] != "now")
    return {"id": job["id"], "kind": job["kind"], "title": job["title"], "state": job["state"],
            "mode": job["mode"],
            "created_at": job["created_at"], "data_root": job["data_root"],
            "stages": [{"name": s["name"], "state": s["state"], "notes": s["notes"]} for s in stages],
            "written": summary.written, "files_planned": summary.total, "pending": summary.in_flight,
            "failed": [f.custom_id for f in summary.failures],
            "failures": [{"custom_id": f.custom_id, "stage": f.stage, "reason": f.reason, "attempts": f.attempts,
                          "message": f.message} for f in summary.failures],
            "truncated": summary.truncated, "blocked_reason": job.get("blocked_reason"),
            "next": _job_next(job, summary),
            "cost_usd": round(cost.batch, 4), "standard_cost_usd": round(cost.standard, 4),
            "batches": batches}


def cmd_list(args, ctx) -> int:
    if args.refresh:
        from tegbatchd.polling import make_client, refresh_pending

        pending = ctx.store.pending_batches()
        if pending:
            try:
                refresh_pending(ctx, make_client(ctx), pending, datetime.now(UTC))
            except api_mod.ApiError as exc:
                ctx.say(f"(could not refresh: {exc}; showing what is recorded)")
    jobs = [job_view(ctx, j) for j in ctx.store.list_jobs(include_finished=args.all)]
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
            print(f"    {b['id']}  {b['stage']}  {b['created_at'][:19].replace('T', ' ')}  {b['api_status']}/"
                  f"{b['local_state']}  ({counts or 'no requests'})  outputs {b['outputs_written']}")
            if b["next"]:
                print(f"      next: {b['next']}")
    return 0


def cmd_status(args, ctx) -> int:
    from tegbatchd.actions.targets import find_batch
    from tegbatchd.polling import make_client

    batch = find_batch(ctx, args.batch_id)
    refreshed = True
    try:
        ctx.store.update_batch_status(make_client(ctx).retrieve(batch["id"]))
    except api_mod.AuthRejected:
        raise
    except api_mod.ApiError as exc:
        refreshed = False
        ctx.say(f"(could not refresh: {exc}; showing what is recorded)")
    batch = ctx.store.get_batch(batch["id"])
    job = ctx.store.get_job(batch["job_id"])
    view = _batch_view(ctx, job, batch)
    rows = ctx.store.requests_of_batch(batch["id"])
    view["errored"] = [{"custom_id": c, "error_type": r["error_type"], "message": r["error_message"]}
                       for c, r in sorted(rows.items()) if r["outcome"] == "errored"]
    view["truncated"] = sorted(c for c, r in rows.items() if r["stop_reason"] == "max_tokens")
    created = datetime.fromisoformat(batch["created_at"].replace("Z", "+00:00"))
    view["days_until_archived"] = max(0, (created + ARCHIVE_AFTER - datetime.now(UTC)).days)
    view["job"] = {"id": job["id"], "title": job["title"], "state": job["state"]}
    view["refreshed"] = refreshed
    if ctx.json_output:
        ctx.emit_json(view)
        return 0
    c = view["counts"]
    print(f"{batch['id']}  ({job['title']}, stage {view['stage']})")
    print(f"  API status:   {view['api_status']}      local: {view['local_state']}")
    print(f"  created:      {batch['created_at']}   expires: {batch['expires_at']}")
    print("  requests:     " + ", ".join(f"{k} {v}" for k, v in c.items()))
    print(f"  outputs:      {view['outputs_written']} written")
    print(f"  cost:         ${view['cost_usd']:.4f} (standard API ${view['standard_cost_usd']:.4f})")
    print(f"  results kept: {view['days_until_archived']} more day(s) before they are archived")
    for e in view["errored"]:
        print(f"  ✗ {e['custom_id']}: {e['error_type']} — {e['message']}")
    if view["truncated"]:
        print(f"  truncated at max_tokens: {', '.join(view['truncated'])}")
    if view["next"]:
        print(f"  next: {view['next']}")
    return 0
