"""`tegbatchd retrieve | cancel | retry | poll`: act on recorded batches."""

from __future__ import annotations

from tegbatchd import api as api_mod
from tegbatchd.cli import add_json
from tegbatchd.errors import InputError, UserError
from tegbatchd.pipelines import advance_job
from tegbatchd.polling import make_client, poll_once
from tegbatchd.retrieval import retrieve_batch
from tegbatchd.submission import archived_lines, send_intent

TRANSIENT = api_mod.TRANSIENT_ERROR_TYPES + ("missing_result",)


def register(sub) -> None:
    r = sub.add_parser("retrieve", help="write an ended batch's results to their files")
    r.add_argument("batch_id")
    add_json(r)
    r.set_defaults(func=cmd_retrieve)

    c = sub.add_parser("cancel", help="cancel a batch that is still running")
    c.add_argument("batch_id")
    c.set_defaults(func=cmd_cancel)

    t = sub.add_parser("retry", help="resubmit a batch's expired, canceled and transiently failed requests")
    t.add_argument("batch_id")
    t.add_argument("--all-errors", action="store_true", help="also resubmit requests that failed for other reasons")
    add_json(t)
    t.set_defaults(func=cmd_retry)

    p = sub.add_parser("poll", help="refresh pending batches, retrieve ended ones, submit next stages")
    p.add_argument("--once", action="store_true", help="one cycle, then exit (the default; the daemon loops)")
    add_json(p)
    p.set_defaults(func=cmd_poll)


def find_batch(ctx, batch_id: str) -> dict:
    """The recorded batch with this id (or unique prefix); InputError when there is none."""
    store = ctx.store
    batch = store.get_batch(batch_id)
    if batch:
        return batch
    matches = store.find_batches(batch_id) if len(batch_id) >= 8 else []
    if len(matches) == 1:
        return store.get_batch(matches[0])
    if len(matches) > 1:
        raise InputError(f"{batch_id!r} matches {len(matches)} batches", next_step="give more of the id")
    raise InputError(f"no batch {batch_id!r} is recorded here", next_step="`tegbatchd list --all` shows the known ones")


def cmd_retrieve(args, ctx) -> int:
    batch = find_batch(ctx, args.batch_id)
    client = make_client(ctx)
    try:
        report = retrieve_batch(ctx, client, batch["id"], on_file=None if ctx.json_output else
                                (lambda p: print(f"  ✓ wrote {p}")))
    except api_mod.AuthRejected:
        raise UserError("the API key was rejected", next_step="check ANTHROPIC_API_KEY or your api_key_file") from None
    except api_mod.ApiError as exc:
        raise UserError(f"could not retrieve {batch['id']}: {exc}", next_step="try again later; nothing was lost") \
            from None
    job = ctx.store.get_job(batch["job_id"])
    if report.state in ("retrieved", "already") and job["state"] == "active":
        for line in advance_job(ctx, lambda: client, job):
            ctx.say(line)
    if ctx.json_output:
        ctx.emit_json(report.as_dict())
        return 0 if report.state != "incomplete" else 1
    if report.state == "not_ended":
        print(f"{batch['id']} is {report.api_status}: not ended yet. Try again later "
              "(most batches end within an hour; all within 24 h) — or let the daemon do it.")
        return 0
    if report.state == "busy":
        print(f"{batch['id']}: {report.message}; try again in a moment")
        return 0
    for failure in report.failures:
        print(f"  ✗ {failure['custom_id']}: {failure['outcome']}"
              + (f" ({failure['error_type']})" if failure["error_type"] else ""))
    for note in report.anomalies:
        print(f"  ! {note}")
    if report.state == "already":
        print(f"Nothing new: all {report.total} results were already retrieved "
              f"({report.succeeded}/{report.total} successful).")
    elif report.state == "incomplete":
        print(f"Interrupted: {report.message}")
        return 1
    elif report.state == "archived":
        raise UserError(f"{batch['id']}: {report.message}", next_step=f"`tegbatchd retry {batch['id']} --all-errors`")
    else:
        print(f"Retrieved {report.succeeded}/{report.total} successful")
    if report.truncated:
        print(f"  {len(report.truncated)} output(s) stopped at max_tokens: {', '.join(report.truncated[:5])}")
    if report.failures:
        print(f"Retry the failed ones with: tegbatchd retry {batch['id']}")
    return 0


def cmd_cancel(args, ctx) -> int:
    batch = find_batch(ctx, args.batch_id)
    if batch["api_status"] == "ended":
        raise InputError(f"{batch['id']} has already ended", next_step=f"`tegbatchd retrieve {batch['id']}`")
    client = make_client(ctx)
    try:
        info = client.cancel(batch["id"])
    except api_mod.ApiError as exc:
        raise UserError(f"could not cancel {batch['id']}: {exc}") from None
    ctx.store.update_batch_status(info)
    ctx.store.add_event("canceled", "cancel requested", job_id=batch["job_id"], batch_id=batch["id"])
    print(f"{batch['id']}: {info['processing_status']}. Requests not yet processed end as canceled; "
          "what finished is still retrieved.")
    return 0


def cmd_retry(args, ctx) -> int:
    store = ctx.store
    batch = find_batch(ctx, args.batch_id)
    if batch["local_state"] != "retrieved":
        raise InputError(f"{batch['id']} is not retrieved yet", next_step=f"`tegbatchd retrieve {batch['id']}` first")
    rows = store.requests_of_batch(batch["id"])
    wanted = {cid: r for cid, r in rows.items()
              if r["retried_by"] is None and r["outcome"] in ("expired", "canceled", "errored")
              and (r["outcome"] != "errored" or args.all_errors or r["error_type"] in TRANSIENT)}
    skipped = [cid for cid, r in rows.items() if r["outcome"] == "errored" and cid not in wanted
               and r["retried_by"] is None]
    if not wanted:
        msg = f"nothing to retry in {batch['id']}"
        if skipped:
            msg += f" ({len(skipped)} failed for non-transient reasons: add --all-errors to resubmit them)"
        ctx.say(msg)
        ctx.emit_json({"batch_id": batch["id"], "resubmitted": 0, "new_batch_id": None})
        return 0
    from pathlib import Path

    from tegbatchd.paths import write_private

    lines = archived_lines(Path(batch["archive"]), set(wanted))
    archive = ctx.paths.archive_dir / f"retry-{batch['id']}-{len(store.intents_of_stage(batch['stage_id']))}.jsonl"
    write_private(archive, "".join(line.decode("utf-8") + "\n" for line in lines))
    job = store.get_job(batch["job_id"])
    rows_for_intent = [(cid, r["output_path"], r["model"], r["max_tokens"]) for cid, r in wanted.items()]
    client = make_client(ctx)
    intent_id = store.create_intent(batch["stage_id"], str(archive), rows_for_intent, archive.stat().st_size)
    store.mark_retried([r["id"] for r in wanted.values()], intent_id)
    _reopen_job(ctx, job, batch["stage_seq"])
    result = send_intent(ctx, client, intent_id)
    new_id = result.batch["id"] if result.batch else None
    ctx.emit_json({"batch_id": batch["id"], "resubmitted": len(wanted), "new_batch_id": new_id,
                   "message": result.message})
    ctx.say(f"Resubmitted {len(wanted)} request(s) of {batch['id']}"
            + (f" as batch {new_id}" if new_id else f": {result.message}"))
    if skipped and not args.all_errors:
        ctx.say(f"  {len(skipped)} request(s) failed for non-transient reasons and were left out (--all-errors)")
    return 0


def _reopen_job(ctx, job: dict, stage_seq: int) -> None:
    """A retry in stage k: the job is active again, and later stages are rebuilt for what is missing."""
    store = ctx.store
    for stage in store.stages(job["id"]):
        if stage["seq"] == stage_seq:
            store.set_stage_state(stage["id"], "submitted")
        elif stage["seq"] > stage_seq and stage["state"] in ("retrieved", "skipped"):
            store.set_stage_state(stage["id"], "waiting")
    if job["state"] != "active":
        store.set_job_state(job["id"], "active")


def cmd_poll(args, ctx) -> int:
    report = poll_once(ctx)
    delivered = 0
    if ctx.store.pending_notices():
        from tegbatchd.notify_cli import deliver_now

        delivered = deliver_now(ctx)
    if ctx.json_output:
        ctx.emit_json({**report.as_dict(), "notifications_delivered": delivered})
    else:
        if not report.pending_before and not report.changes:
            print("Nothing pending.")
        for change in report.changes:
            print(change)
        if report.error == "key_rejected":
            print("error: the API key was rejected — check ANTHROPIC_API_KEY or your api_key_file")
        elif report.error == "no_key":
            print(report.error_detail)
        elif report.error:
            print(f"The API is unavailable ({report.error_detail}); nothing is lost — the next poll catches up.")
        if report.pending_before:
            print(f"{report.still_pending} batch(es) still pending.")
    return 2 if report.error in ("key_rejected", "no_key") else 0
