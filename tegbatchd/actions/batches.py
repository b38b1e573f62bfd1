"""retrieve, cancel, retry, poll: act on recorded jobs and batches; each returns a report."""

from __future__ import annotations

from dataclasses import dataclass, field

from tegbatchd import api as api_mod
from tegbatchd.actions.targets import find_target
from tegbatchd.engine import retry as retry_mod
from tegbatchd.engine.events import Event
from tegbatchd.engine.loop import BatchSender, advance
from tegbatchd.engine.outcome import go_on_command
from tegbatchd.engine.states import BUDGET, JobState
from tegbatchd.errors import InputError
from tegbatchd.locks import file_lock
from tegbatchd.polling import PollReport, make_client, poll_once
from tegbatchd.retrieval import RetrieveReport, retrieve_batch
from tegbatchd.submission import reconcile


@dataclass
class RetrieveResult:
    job_id: str
    reports: list[RetrieveReport] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def retrieve(ctx, ident: str, *, on_file=None, force: bool = False) -> RetrieveResult:
    """Retrieve one batch, or every ended batch of a job, then move the job on (next stage, notice: shown
    now, not at the next poll). force: replace outputs edited by hand instead of writing beside them."""
    job, batch = find_target(ctx, ident)
    batches = [batch] if batch else ctx.store.batches_of_job(job["id"])
    result = RetrieveResult(job["id"])
    client = LazyClient(ctx)  # a batch already retrieved needs no network: the client is made on first use
    for b in batches:
        result.reports.append(retrieve_batch(ctx, client, b["id"], on_file=on_file, force=force))
    fresh = ctx.store.get_job(job["id"])
    if fresh["state"] == JobState.ACTIVE and fresh["mode"] == "batch" and \
            any(r.state in ("retrieved", "already", "archived") for r in result.reports):
        result.events += advance(ctx, job["id"], BatchSender(lambda: client)).events
    if ctx.store.pending_notices():
        from tegbatchd.notify_cli import deliver_now

        deliver_now(ctx)
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
    late: list[str] = field(default_factory=list)     # running as last seen, ended by the time of the cancel


def cancel(ctx, ident: str) -> CancelResult:
    """Cancel a running batch, or every running batch of a job; the job ends `canceled` once what
    finished is retrieved (no later stage is built)."""
    job, batch = find_target(ctx, ident)
    targets = [batch] if batch else ctx.store.batches_of_job(job["id"])
    running = [b for b in targets if b["api_status"] != "ended"]
    if not running and batch is not None:
        raise InputError(f"{batch['id']} has already ended", next_step=f"`tegbatchd retrieve {batch['id']}`")
    result = CancelResult(job["id"], already_ended=[b["id"] for b in targets if b["api_status"] == "ended"])
    client = make_client(ctx) if running else None  # a bad key or endpoint is refused before any change
    ctx.store.request_cancel(job["id"])
    if client is not None:
        for b in running:
            try:
                info = client.cancel(b["id"])
            except api_mod.Rejected:   # the API refuses: it ended since the last poll (cancel comes too late)
                info = client.retrieve(b["id"])
                if info["processing_status"] != "ended":
                    raise
                ctx.store.update_batch_status(info)
                result.late.append(b["id"])
                continue
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
    if job["state"] == JobState.BLOCKED and job.get("blocked_kind") == BUDGET:
        raise InputError(f"{job['id']} is held by the budget: {job['blocked_reason']}",
                         next_step=f"{go_on_command(job)} (or raise the budget in the config, then resume); "
                                   "nothing was sent")
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
