"""`tegbatchd retrieve | cancel | retry | poll`: act on recorded jobs and batches; each returns a report."""

from __future__ import annotations

from dataclasses import dataclass, field

from tegbatchd.actions.targets import find_target
from tegbatchd.cli import add_json
from tegbatchd.engine import retry as retry_mod
from tegbatchd.engine.events import Event
from tegbatchd.engine.loop import BatchSender, advance
from tegbatchd.engine.outcome import summarize
from tegbatchd.engine.states import JobState
from tegbatchd.errors import InputError
from tegbatchd.locks import file_lock
from tegbatchd.polling import PollReport, make_client, poll_once
from tegbatchd.retrieval import RetrieveReport, retrieve_batch
from tegbatchd.submission import reconcile

EXIT_NOT_READY = 3


def register(sub) -> None:
    r = sub.add_parser("retrieve", help="write an ended batch's (or a whole job's) results to their files")
    r.add_argument("id", metavar="ID", help="a batch id or a job id (or a unique prefix)")
    add_json(r)
    r.set_defaults(func=cmd_retrieve)

    c = sub.add_parser("cancel", help="cancel a running batch, or every batch of a job")
    c.add_argument("id", metavar="ID", help="a batch id or a job id (or a unique prefix)")
    c.set_defaults(func=cmd_cancel)

    t = sub.add_parser("retry", help="resubmit a job's failed requests (any stage); a blocked job goes on")
    t.add_argument("id", metavar="ID", help="a job id or any of its batch ids (or a unique prefix)")
    t.add_argument("--all-errors", action="store_true",
                   help="also resubmit requests that failed for reasons that do not heal by themselves")
    t.add_argument("--truncated", action="store_true",
                   help="also resend answers cut at max_tokens, with max_tokens raised (retry.truncated_factor)")
    add_json(t)
    t.set_defaults(func=cmd_retry)

    p = sub.add_parser("poll", help="refresh pending batches, retrieve ended ones, submit next stages")
    p.add_argument("--once", action="store_true", help="one cycle, then exit (the default; the daemon loops)")
    add_json(p)
    p.set_defaults(func=cmd_poll)


# --- actions ------------------------------------------------------------------------------------------
@dataclass
class RetrieveResult:
    job_id: str
    reports: list[RetrieveReport] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def retrieve(ctx, ident: str, *, on_file=None) -> RetrieveResult:
    """Retrieve one batch, or every ended batch of a job, then move the job on (next stage, notice)."""
    job, batch = find_target(ctx, ident)
    batches = [batch] if batch else ctx.store.batches_of_job(job["id"])
    result = RetrieveResult(job["id"])
    client = LazyClient(ctx)  # a batch already retrieved needs no network: the client is made on first use
    for b in batches:
        result.reports.append(retrieve_batch(ctx, client, b["id"], on_file=on_file))
    fresh = ctx.store.get_job(job["id"])
    if fresh["state"] == JobState.ACTIVE and fresh["mode"] == "batch" and \
            any(r.state in ("retrieved", "already", "archived") for r in result.reports):
        result.events += advance(ctx, job["id"], BatchSender(lambda: client)).events
    return result


class LazyClient:
    """The API client, made (key resolved, SDK imported) only when a call needs it."""

    def __init__(self, ctx):
        self._ctx = ctx
        self._client = None

    def __getattr__(self, name: str):
        if self._client is None:
            self._client = make_client(self._ctx)
        return getattr(self._client, name)


@dataclass
class CancelResult:
    job_id: str
    canceled: list[dict] = field(default_factory=list)   # API answers (processing_status canceling/ended)
    already_ended: list[str] = field(default_factory=list)


def cancel(ctx, ident: str) -> CancelResult:
    """Cancel a running batch, or every running batch of a job; the job ends `canceled` once what
    finished is retrieved (no later stage is built)."""
    job, batch = find_target(ctx, ident)
    targets = [batch] if batch else ctx.store.batches_of_job(job["id"])
    running = [b for b in targets if b["api_status"] != "ended"]
    if not running and batch is not None:
        raise InputError(f"{batch['id']} has already ended", next_step=f"`tegbatchd retrieve {batch['id']}`")
    result = CancelResult(job["id"], already_ended=[b["id"] for b in targets if b["api_status"] == "ended"])
    ctx.store.request_cancel(job["id"])
    if running:
        client = make_client(ctx)
        for b in running:
            info = client.cancel(b["id"])
            ctx.store.mark_canceled_by_user(b["id"])
            ctx.store.update_batch_status(info)
            ctx.store.add_event("canceled", "cancel requested", job_id=job["id"], batch_id=b["id"])
            result.canceled.append(info)
    return result


@dataclass
class RetryResult:
    job_id: str
    title: str
    resubmitted: int = 0
    batch_ids: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)
    unsendable: int = 0
    reopened: bool = False
    events: list[Event] = field(default_factory=list)


def retry(ctx, ident: str, *, all_errors: bool = False, truncated: bool = False) -> RetryResult:
    """Resubmit every retryable failed request of the job (any stage), under the job's lock, intent before
    create; later stages are then rebuilt for exactly what is missing. A blocked job goes on.

    A success is never sent again; a rerun after a kill anywhere sends nothing twice: the new attempts
    are recorded in one transaction, and intents left open by a killed run are reconciled, not resent."""
    job, _ = find_target(ctx, ident)
    if job["mode"] == "now":
        raise InputError(f"{job['id']} ran with --now", next_step="run the same --now command again: what was "
                                                                   "written is kept, the rest is sent")
    store = ctx.store
    client = make_client(ctx)
    result = RetryResult(job["id"], job["title"])
    with file_lock(ctx.paths.lock_dir / f"job-{job['id']}.lock", wait=60) as mine:
        if not mine:
            raise InputError(f"{job['id']} is busy in another process", next_step="try again in a minute")
        job = store.get_job(job["id"])
        earlier = store.open_intents(job["id"])   # left by a killed run: reconciled, never blindly resent
        plan = retry_mod.choose(store, job["id"], all_errors=all_errors, truncated=truncated)
        result.left_out, result.resubmitted = plan.left_out, len(plan.chosen)
        ids: list[int] = []
        if plan.chosen:
            ids, result.unsendable = retry_mod.resubmit(ctx, job, plan.chosen)
            result.resubmitted -= result.unsendable
        elif job["state"] == JobState.BLOCKED:
            result.reopened = store.reopen_job(job["id"])
        if earlier:
            reconcile(ctx, client, intents=earlier)
        result.batch_ids, result.deferred = BatchSender(lambda: client).send(ctx, job, ids)
        if job["state"] == JobState.BLOCKED and ids:
            result.reopened = True
    result.events = advance(ctx, job["id"], BatchSender(lambda: client), wait=30).events
    return result


def poll(ctx) -> tuple[PollReport, int]:
    """One poll cycle, then deliver the queued notifications; return the report and how many went out."""
    report = poll_once(ctx)
    delivered = 0
    if ctx.store.pending_notices():
        from tegbatchd.notify_cli import deliver_now

        delivered = deliver_now(ctx)
    return report, delivered


# --- printing (moves to tegbatchd/cli/) -------------------------------------------------------------------
def cmd_retrieve(args, ctx) -> int:
    result = retrieve(ctx, args.id, on_file=None if ctx.json_output else (lambda p: print(f"  ✓ wrote {p}")))
    reports = result.reports
    if ctx.json_output:
        ctx.emit_json(reports[0].as_dict() if len(reports) == 1 else
                      {"job_id": result.job_id, "batches": [r.as_dict() for r in reports]})
    else:
        for event in result.events:
            print(event)
        for report in reports:
            _print_retrieve(report)
    if any(r.state == "incomplete" for r in reports):
        return 1
    if any(r.state in ("not_ended", "busy") for r in reports):
        return EXIT_NOT_READY
    return 0


def _print_retrieve(report: RetrieveReport) -> None:
    bid = report.batch_id
    if report.state == "not_ended":
        print(f"{bid} is {report.api_status}: not ended yet. Try again later "
              "(most batches end within an hour; all within 24 h) — or let the daemon do it.")
        return
    if report.state == "busy":
        print(f"{bid}: {report.message}; try again in a moment")
        return
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
    elif report.state == "archived":
        print(f"{bid}: {report.message}. Resend them with: tegbatchd retry {bid}")
    else:
        print(f"Retrieved {report.succeeded}/{report.total} successful")
    if report.truncated:
        print(f"  {len(report.truncated)} output(s) stopped at max_tokens: {', '.join(report.truncated[:5])}"
              f" (resend with more room: tegbatchd retry {bid} --truncated)")
    if report.failures and report.state != "archived":
        print(f"Retry the failed ones with: tegbatchd retry {bid}")


def cmd_cancel(args, ctx) -> int:
    result = cancel(ctx, args.id)
    for info in result.canceled:
        print(f"{info['id']}: {info['processing_status']}. Requests not yet processed end as canceled; "
              "what finished is still retrieved.")
    if not result.canceled:
        print(f"{result.job_id}: nothing is running; no later stage will be submitted.")
    return 0


def cmd_retry(args, ctx) -> int:
    result = retry(ctx, args.id, all_errors=args.all_errors, truncated=args.truncated)
    if ctx.json_output:
        ctx.emit_json({"job_id": result.job_id, "resubmitted": result.resubmitted,
                       "new_batch_id": result.batch_ids[0] if result.batch_ids else None,
                       "batch_ids": result.batch_ids, "deferred": result.deferred, "left_out": result.left_out,
                       "unsendable": result.unsendable, "reopened": result.reopened,
                       "events": [str(e) for e in result.events]})
        return 0
    if result.resubmitted:
        where = f" as batch {', '.join(result.batch_ids)}" if result.batch_ids else ""
        print(f"Resubmitted {result.resubmitted} request(s) of {result.title}{where}")
        for note in result.deferred:
            print(f"  note: {note}")
    elif result.reopened:
        print(f"{result.title}: going on")
    else:
        summary = summarize(ctx.store, ctx.store.get_job(result.job_id))
        print(f"Nothing to retry in {result.title} ({summary.written} of {summary.total} files written)")
    if result.unsendable:
        print(f"  {result.unsendable} request(s) cannot be resent: their archived requests are gone")
    if result.left_out:
        reasons = ", ".join(f"{n} {reason}" for reason, n in result.left_out.items())
        print(f"  left out, as they would fail the same way: {reasons} — fix the cause, then add --all-errors")
    for event in result.events:
        print(event)
    return 0


def cmd_poll(args, ctx) -> int:
    report, delivered = poll(ctx)
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
