"""list and status: what is recorded, from the local store (no network unless asked); views as plain
dicts (what `--json` prints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tegbatchd import api as api_mod
from tegbatchd.costs import recorded_cost
from tegbatchd.engine.outcome import summarize

ARCHIVE_AFTER = timedelta(days=29)


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


@dataclass
class Views:
    items: list[dict] = field(default_factory=list)
    note: str | None = None          # e.g. why the refresh did not happen


def list_jobs(ctx, *, include_all: bool = False, refresh: bool = False) -> Views:
    """Every job (unfinished ones and those finished this week, or all) with its batches, newest first."""
    views = Views()
    if refresh:
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
    """One batch in detail, refreshed from the API when it answers."""
    from tegbatchd.actions.targets import find_batch
    from tegbatchd.polling import make_client

    batch = find_batch(ctx, ident)
    views = Views()
    try:
        ctx.store.update_batch_status(make_client(ctx).retrieve(batch["id"]))
    except api_mod.AuthRejected:
        raise
    except api_mod.ApiError as exc:
        views.note = f"could not refresh: {exc}; showing what is recorded"
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
    view["refreshed"] = views.note is None
    view["created_at"], view["expires_at"] = batch["created_at"], batch["expires_at"]
    views.items = [view]
    return views
