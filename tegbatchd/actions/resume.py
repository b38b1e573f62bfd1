"""resume: a job held by the budget (or blocked for another reason) goes on, with a new limit if given."""

from __future__ import annotations

from dataclasses import dataclass, field

from tegbatchd.actions.targets import find_target
from tegbatchd.engine.events import Event
from tegbatchd.engine.loop import BatchSender, advance
from tegbatchd.engine.states import JobState
from tegbatchd.errors import InputError
from tegbatchd.locks import file_lock
from tegbatchd.polling import make_client


@dataclass
class ResumeResult:
    job_id: str
    title: str
    max_cost: float | None
    state: str                       # the job's state afterwards
    blocked: str | None = None       # held again: why
    events: list[Event] = field(default_factory=list)


def resume(ctx, ident: str, *, max_cost: float | None = None) -> ResumeResult:
    """Given a blocked job (id, batch id or prefix), move it on under its lock: active again with its own
    limit set to max_cost if given (which also lets it past the monthly budget up to that figure), then
    advance it at once (the held stage or retry is sent, or held again, with the figures, if it still
    passes a limit)."""
    job, _ = find_target(ctx, ident)
    if job["state"] != JobState.BLOCKED:
        raise InputError(f"{job['id']} is {job['state']}, not waiting", next_step=f"`tegbatchd status {job['id']}` "
                         "shows it; `tegbatchd retry` resends failures")
    client = make_client(ctx)  # a bad key or endpoint is refused before any change
    with file_lock(ctx.paths.lock_dir / f"job-{job['id']}.lock", wait=60) as mine:
        if not mine:
            raise InputError(f"{job['id']} is busy in another process", next_step="try again in a minute")
        if not ctx.store.resume_job(job["id"], max_cost):
            raise InputError(f"{job['id']} is no longer waiting", next_step=f"tegbatchd status {job['id']}")
        ctx.store.add_event("job_resumed", "resumed" + (f" with a limit of ${max_cost:.2f}" if max_cost else ""),
                            job_id=job["id"])
    report = advance(ctx, job["id"], BatchSender(lambda: client), wait=30)
    after = ctx.store.get_job(job["id"])
    return ResumeResult(job["id"], job["title"], max_cost, after["state"], report.blocked, list(report.events))
