"""list and status: what is recorded, from the local store (no network unless asked); views as plain
dicts (what `--json` prints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tegbatchd.costs import Usage, recorded_cost
from tegbatchd.engine.outcome import go_on_command, job_folder, kept_edits, summarize
from tegbatchd.locks import is_locked

ARCHIVE_AFTER = timedelta(days=29)


def _next_command(job: dict, batch: dict) -> str | None:
    """A batch's own next step: only retrieval (failures are the job's: see the job's `next`)."""
    if batch["local_state"] in ("submitted", "retrieving") and batch["api_status"] == "ended":
        return f"tegbatchd retrieve {batch['id']}"
    return None


def _job_next(job: dict, summary) -> str | None:
    if job["state"] == "blocked":
        return go_on_command(job)
    if job["state"] in ("partial", "failed", "done"):
        return summary.retry_hint()
    return None


def _batch_view(ctx, job: dict, batch: dict) -> dict:
    counts = {k: batch[k] for k in ("processing", "succeeded", "errored", "canceled", "expired")}
    outcome = ctx.store.batch_outcome_counts(batch["id"])
    cost = recorded_cost(ctx.config, ctx.store.usage_receipts(batch_id=batch["id"]))
    return {"id": batch["id"], "stage": batch["stage_name"], "created_at": batch["created_at"],
            "api_status": batch["api_status"], "local_state": batch["local_state"], "counts": counts,
            "outputs_written": outcome["written"], "cost_usd": round(cost.batch, 4),
            "standard_cost_usd": round(cost.standard, 4), "next": _next_command(job, batch)}


def reconciling(ctx, job: dict) -> dict | None:
    """Parts of a job recorded but not confirmed by the API (a killed or unclear create), and what will
    send or reconcile them; None when there are none."""
    open_parts = ctx.store.open_intents(job["id"])
    if not open_parts:
        return None
    daemon = is_locked(ctx.paths.state_dir / "daemon.lock")
    by = ("the running daemon, at its next poll" if daemon else
          "the daemon's next poll (no daemon is running: `tegbatchd poll --once`, or `tegbatchd service install`)")
    return {"parts": len(open_parts), "requests": sum(i["request_count"] for i in open_parts), "by": by,
            "daemon_running": daemon}


def job_view(ctx, job: dict) -> dict:
    store = ctx.store
    batches = [_batch_view(ctx, job, b) for b in store.batches_of_job(job["id"])]
    summary = summarize(store, job)
    stages = store.stages(job["id"])
    receipts = store.usage_receipts(job_id=job["id"])
    cost = recorded_cost(ctx.config, receipts)
    rates = {s["seq"]: Usage() for s in stages}
    for row in receipts:
        rates[row["seq"]] = rates.get(row["seq"], Usage()) + Usage.of_row(row)
    return {"id": job["id"], "kind": job["kind"], "title": job["title"], "state": job["state"],
            "mode": job["mode"],
            "created_at": job["created_at"], "data_root": job["data_root"],
            "folder": job_folder(store, job["id"], stages[-1]["seq"] if stages else 0, planned=True), "reconciling": reconciling(ctx, job),
            "stages": [{"name": s["name"], "state": s["state"], "notes": s["notes"],
                        "cache_hit_rate": _rate(rates[s["seq"]])} for s in stages],
            "written": summary.written, "files_planned": summary.total, "pending": summary.in_flight,
            "failed": [f.custom_id for f in summary.failures],
            "failures": [{"custom_id": f.custom_id, "stage": f.stage, "reason": f.reason, "attempts": f.attempts,
                          "message": f.message} for f in summary.failures],
            "truncated": summary.truncated, "kept_edits": kept_edits(store, job["id"]),
            "blocked_reason": job.get("blocked_reason"),
            "next": _job_next(job, summary),
            "cost_usd": round(cost.batch, 4), "standard_cost_usd": round(cost.standard, 4),
            "saved_usd": round(cost.saved, 4), "batches": batches}


def _rate(usage: Usage) -> float | None:
    return None if usage.hit_rate is None else round(usage.hit_rate, 4)


@dataclass
class Views:
    items: list[dict] = field(default_factory=list)
    note: str | None = None          # e.g. why the refresh did not happen


def list_jobs(ctx, *, include_all: bool = False, refresh: bool = False) -> Views:
    """Every job (unfinished ones and those finished this week, or all) with its batches, newest first."""
    views = Views()
    if refresh:
        from tegbatchd import api as api_mod
        from tegbatchd.polling import make_client, refresh_pending

        pending = ctx.store.pending_batches()
        if pending:
            try:
                refresh_pending(ctx, make_client(ctx), pending, datetime.now(UTC))
            except api_mod.AuthRejected:
                raise
            except api_mod.ApiError as exc:
                views.note = f"could not refresh: {exc}; showing what is recorded"
    views.items = [job_view(ctx, j) for j in ctx.store.list_jobs(include_finished=include_all)]
    return views


def status(ctx, ident: str) -> Views:
    """A batch, or every batch of a job, in detail (a job id, a batch id or a unique prefix), refreshed
    from the API when it answers. Views.items: one batch view, or a job view whose batches are detailed."""
    from tegbatchd import api as api_mod
    from tegbatchd.actions.targets import find_target
    from tegbatchd.polling import make_client

    job, batch = find_target(ctx, ident)
    views = Views()
    targets = [batch] if batch else ctx.store.batches_of_job(job["id"])
    pending = [b for b in targets if b["local_state"] != "retrieved" or b["api_status"] != "ended"]
    client = make_client(ctx)  # a bad key or endpoint is refused even when nothing needs the network
    try:
        for b in pending:
            ctx.store.update_batch_status(client.retrieve(b["id"]))
    except api_mod.AuthRejected:
        raise
    except api_mod.ApiError as exc:
        views.note = f"could not refresh: {exc}; showing what is recorded"
    job = ctx.store.get_job(job["id"])
    details = [_batch_detail(ctx, job, ctx.store.get_batch(b["id"]), refreshed=views.note is None)
               for b in targets]
    if batch:
        views.items = details
    else:
        view = job_view(ctx, job)
        view["batches"] = details
        views.items = [view]
    return views


def _batch_detail(ctx, job: dict, batch: dict, *, refreshed: bool) -> dict:
    view = _batch_view(ctx, job, batch)
    rows = ctx.store.requests_of_batch(batch["id"])
    view["errored"] = [{"custom_id": c, "error_type": r["error_type"], "message": r["error_message"]}
                       for c, r in sorted(rows.items()) if r["outcome"] == "errored"]
    view["not_succeeded"] = [{"custom_id": c, "outcome": r["outcome"], "error_type": r["error_type"],
                              "message": r["error_message"], "retried": r["retried_by"] is not None}
                             for c, r in sorted(rows.items()) if r["outcome"] not in (None, "succeeded")]
    view["truncated"] = sorted(c for c, r in rows.items() if r["stop_reason"] == "max_tokens")
    created = datetime.fromisoformat(batch["created_at"].replace("Z", "+00:00"))
    view["days_until_archived"] = max(0, (created + ARCHIVE_AFTER - datetime.now(UTC)).days)
    view["job"] = {"id": job["id"], "title": job["title"], "state": job["state"]}
    view["refreshed"] = refreshed
    view["created_at"], view["expires_at"] = batch["created_at"], batch["expires_at"]
    return view
