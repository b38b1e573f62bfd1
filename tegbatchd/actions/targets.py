"""Finding what a command names: a job id or a batch id, whole or a unique prefix."""

from __future__ import annotations

from tegbatchd.errors import InputError

MIN_PREFIX = 6


def find_target(ctx, ident: str) -> tuple[dict, dict | None]:
    """(job, batch or None) for a job id, a batch id, or a unique prefix of either (at least 6 characters).

    Raise InputError when nothing or more than one thing matches."""
    store = ctx.store
    batch = store.get_batch(ident)
    if batch:
        return store.get_job(batch["job_id"]), batch
    job = store.get_job(ident)
    if job:
        return job, None
    if len(ident) >= MIN_PREFIX:
        batches = store.find_batches(ident)
        jobs = store.find_jobs(ident)
        if len(batches) + len(jobs) == 1:
            if batches:
                batch = store.get_batch(batches[0])
                return store.get_job(batch["job_id"]), batch
            return store.get_job(jobs[0]), None
        if batches or jobs:
            raise InputError(f"{ident!r} matches {len(batches) + len(jobs)} jobs and batches",
                             next_step="give more of the id")
    shown = ident if len(ident) <= 80 else ident[:80] + "..."
    raise InputError(f"no job or batch {shown!r} is recorded here",
                     next_step="`tegbatchd list --all` shows the known ones (a unique prefix of 6+ characters works)")


def find_batch(ctx, ident: str) -> dict:
    """The recorded batch with this id (or unique prefix); InputError when there is none."""
    job, batch = find_target(ctx, ident)
    if batch is None:
        raise InputError(f"{ident!r} is a job, not a batch", next_step="give one of its batch ids (`tegbatchd list`)")
    return batch
