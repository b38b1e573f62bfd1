"""What a job does next, decided from plain rows: no I/O, no clock, no SQL (unit-tested on plain data).

    next_step(job) -> Build | Wait | Release | Retry | Assemble | Finish | Block | Idle
    budget_block(budget, ...) -> Block | None     (before a built stage or a retry is sent)

Stages run in order. A stage is built (its requests recorded and sent) when every earlier stage is settled;
it is waited for while any attempt of it is in flight; when every attempt has an outcome, transient
failures are resubmitted (up to the attempt limit), a billing failure pauses the job, and otherwise the
stage's local step runs (assembly) and the next stage comes. When every stage is settled the job finishes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tegbatchd.costs import money
from tegbatchd.engine.states import BUDGET, BatchState, IntentState, JobState, StageState


@dataclass(frozen=True)
class IntentView:
    id: int
    state: str
    batch_state: str | None = None   # None: no batch recorded yet
    unsettled: int = 0               # its requests without an outcome

    @property
    def in_flight(self) -> bool:
        if self.state == IntentState.OPEN:
            return True
        if self.state == IntentState.CREATED:
            return self.batch_state != BatchState.RETRIEVED
        if self.state == IntentState.NOW:
            return self.unsettled > 0
        return False


@dataclass(frozen=True)
class StageView:
    seq: int
    name: str
    state: str
    intents: tuple[IntentView, ...] = ()
    transient: int = 0   # outputs of this stage whose latest attempt failed transiently, below the attempt limit
    billing: int = 0     # outputs of this stage whose latest attempt failed for want of credit


@dataclass(frozen=True)
class JobView:
    id: str
    state: str
    mode: str = "batch"
    stages: tuple[StageView, ...] = ()
    cancel_requested: bool = False
    written: int = 0          # outputs with a successful attempt
    failed: int = 0           # outputs whose latest attempt failed (and is not being retried)


@dataclass(frozen=True)
class Build:
    seq: int


@dataclass(frozen=True)
class Wait:
    seq: int
    in_flight: tuple[int, ...] = field(default=())   # intent ids


@dataclass(frozen=True)
class Release:
    """The stage's priming request has finished: send its held intents (or, canceled, settle them)."""

    seq: int
    held: tuple[int, ...]
    cancel: bool = False


@dataclass(frozen=True)
class Retry:
    seq: int


@dataclass(frozen=True)
class Assemble:
    seq: int


@dataclass(frozen=True)
class Finish:
    state: JobState


@dataclass(frozen=True)
class Block:
    reason: str
    kind: str


@dataclass(frozen=True)
class Idle:
    """The job is not for the engine to move now (finished, blocked, or run by its `--now` process)."""


Step = Build | Wait | Release | Retry | Assemble | Finish | Block | Idle


def final_state(job: JobView, *, cut_short: bool = False) -> JobState:
    """The state a job ends in once every stage is settled (cut_short: a later stage was never built).
    A cancel that came too late to stop anything (every stage built, nothing failed) leaves it done."""
    if job.cancel_requested and (cut_short or job.failed):
        return JobState.CANCELED
    if not job.failed:
        return JobState.DONE
    return JobState.PARTIAL if job.written else JobState.FAILED


def next_step(job: JobView, *, driver: str = "batch") -> Step:
    """Given a job's rows, return the one step to take now.

    driver is who asks: "batch" (the poller: batch-mode jobs only) or "now" (a `--now` process, which
    moves only its own job and never resubmits by itself: its sender retries each request).
    """
    if job.state != JobState.ACTIVE or job.mode != driver:
        return Idle()
    for stage in job.stages:
        if stage.state in (StageState.DONE, StageState.SKIPPED):
            continue
        if stage.state == StageState.WAITING:
            if job.cancel_requested:
                return Finish(final_state(job, cut_short=True))
            return Build(stage.seq)
        flying = tuple(i.id for i in stage.intents if i.in_flight)
        if flying:
            return Wait(stage.seq, flying)
        held = tuple(i.id for i in stage.intents if i.state == IntentState.HELD)
        if held:  # the priming request is back (whatever its outcome): the rest goes now
            return Release(stage.seq, held, cancel=job.cancel_requested)
        if stage.billing and not job.cancel_requested:
            return Block(f"{stage.billing} request(s) of stage {stage.name} failed: Anthropic credit exhausted "
                         "or a spend limit reached", "billing")
        if stage.transient and driver == "batch" and not job.cancel_requested:
            return Retry(stage.seq)
        return Assemble(stage.seq)
    return Finish(final_state(job))


@dataclass(frozen=True)
class Budget:
    """The limits a job is held to (USD; None: no limit)."""

    job_usd: float | None = None       # the job's own limit (--max-cost), else budget.job_usd
    monthly_usd: float | None = None   # budget.monthly_usd
    past_monthly: bool = False         # the person let this job past the monthly budget (resume --max-cost)


def budget_block(budget: Budget, *, what: str, estimate: float, job_spent: float, month_spent: float,
                 job_id: str) -> tuple[Block, str] | None:
    """(Block, the command to go on) when sending `what` (its estimate an upper bound, USD) would pass a
    limit; None when it fits. The job's own limit counts what it has cost so far; the monthly one what
    this month's receipts show."""
    after = job_spent + estimate
    needed = math.ceil(after * 100) / 100
    go_on = f"tegbatchd resume {job_id} --max-cost {needed:.2f}"
    if budget.job_usd is not None and after > budget.job_usd:
        return Block(f"{what} would bring the job to {money(after)} (spent {money(job_spent)}, this at most "
                     f"{money(estimate)}), over its limit of {money(budget.job_usd)}", BUDGET), go_on
    if budget.monthly_usd is not None and not budget.past_monthly and month_spent + estimate > budget.monthly_usd:
        return Block(f"{what} (at most {money(estimate)}) would bring this month to "
                     f"{money(month_spent + estimate)}, over budget.monthly_usd {money(budget.monthly_usd)}",
                     BUDGET), go_on
    return None
