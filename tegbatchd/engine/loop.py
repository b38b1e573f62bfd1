"""The one loop that moves a job, shared by batch mode (the poller, `submit`, `retry`) and `--now`.

    with the job's lock:  view = rows → next_step(view) → carry it out → again, until Wait/Finish/Block/Idle

Carrying out a step is where I/O happens: building a stage (pipeline) and handing its recorded intents to
the sender (a batch create, or the Messages API for `--now`), resubmitting, assembling, finishing. Any
error while doing so (any exception type, API trouble aside) blocks this job with the reason recorded and
one notice; the caller goes on with the other jobs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tegbatchd import api as api_mod
from tegbatchd.engine import outcome, retry
from tegbatchd.engine.decide import (
    Assemble,
    Block,
    Budget,
    Build,
    Finish,
    Idle,
    IntentView,
    JobView,
    Release,
    Retry,
    StageView,
    Step,
    Wait,
    budget_block,
    next_step,
)
from tegbatchd.engine.events import (
    Assembled,
    Event,
    JobBlocked,
    JobFinished,
    Resubmitted,
    StagePlanned,
    StageSkipped,
    StageSubmitted,
)
from tegbatchd.engine.states import CANCELED_BEFORE_SENT, IntentState, StageState, failure_kind
from tegbatchd.errors import UserError
from tegbatchd.estimates import items_estimate
from tegbatchd.locks import file_lock

log = logging.getLogger(__name__)

# Errors that are about the API as a whole, not this job: the caller handles them for every job at once.
API_WIDE = (api_mod.AuthRejected, api_mod.NoApiKey, api_mod.Unavailable)


class Sender(Protocol):
    """Sends a stage's recorded intents: as batches (BatchSender) or at once (`--now`)."""

    driver: str                  # "batch" | "now": which jobs it moves (decide.next_step)
    intent_state: IntentState    # the state its intents are recorded in

    def send(self, ctx, job: dict, intent_ids: list[int]) -> tuple[list[str], list[str]]:
        """Send the intents; return (batch ids created, reasons some are not confirmed yet)."""
        ...

    def api_client(self) -> Any:
        """The API client (made on first use): preflight asks the Models API through it."""
        ...


class BatchSender:
    """Creates one batch per intent (intent before create; an unclear create is reconciled, never resent)."""

    driver = "batch"
    intent_state = IntentState.OPEN

    def __init__(self, get_client):
        self.get_client = get_client

    def api_client(self) -> Any:
        return self.get_client()

    def send(self, ctx, job: dict, intent_ids: list[int]) -> tuple[list[str], list[str]]:
        from tegbatchd.submission import send_intent

        batch_ids: list[str] = []
        deferred: list[str] = []
        for intent_id in intent_ids:
            result = send_intent(ctx, self.get_client(), intent_id)
            if result.batch:
                batch_ids.append(result.batch["id"])
            elif result.message:
                deferred.append(result.message)
        return batch_ids, deferred


@dataclass
class AdvanceReport:
    job_id: str
    events: list[Event] = field(default_factory=list)
    busy: bool = False           # another process holds the job
    waiting: bool = False        # something of it is in flight
    blocked: str | None = None


def load_view(ctx, job: dict) -> JobView:
    """The engine's view of a job: its stages with their intents and failure counts (no decisions here)."""
    store = ctx.store
    max_attempts = int(ctx.config["retry"]["max_attempts"])
    stages, intents = store.job_view_rows(job["id"])
    failures = store.latest_failures(job["id"])
    transient = {r["id"] for r in retry.auto_candidates(failures, max_attempts)}
    views = []
    for stage in stages:
        mine = [r for r in failures if r["stage_id"] == stage["id"]]
        views.append(StageView(
            stage["seq"], stage["name"], stage["state"],
            tuple(IntentView(i["id"], i["state"], i["batch_state"], i["unsettled"]) for i in intents
                  if i["stage_id"] == stage["id"]),
            transient=sum(1 for r in mine if r["id"] in transient),
            billing=sum(1 for r in mine if failure_kind(r["outcome"], r["error_type"], r["error_message"]) == "billing")))
    counts = store.job_counts(job["id"])
    return JobView(job["id"], job["state"], job["mode"], tuple(views), bool(job.get("cancel_requested")),
                   written=counts["written"], failed=counts["failed"])


class _Events(list):
    """The report's events, each also handed to `on_event` as it happens (a `--now` run prints as it goes)."""

    def __init__(self, on_event):
        super().__init__()
        self.on_event = on_event

    def append(self, event) -> None:
        super().append(event)
        if self.on_event is not None:
            self.on_event(event)


def advance(ctx, job_id: str, sender: Sender, *, wait: float = 0, on_event=None) -> AdvanceReport:
    """Move a job as far as it can go now, under its lock (wait=0: a busy job is left to its holder)."""
    report = AdvanceReport(job_id)
    report.events = _Events(on_event)
    with file_lock(ctx.paths.lock_dir / f"job-{job_id}.lock", wait=wait) as mine:
        if not mine:
            report.busy = True
            return report
        job = ctx.store.get_job(job_id)
        try:
            _run(ctx, job, sender, report)
        except API_WIDE:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of this job blocks this job only
            reason = exc.message if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            log.info("job %s blocked: %s", job_id, reason, exc_info=not isinstance(exc, UserError | OSError))
            step = f"tegbatchd retry {job_id} once it is fixed"
            if isinstance(exc, api_mod.BillingError):
                step = f"top up, then tegbatchd retry {job_id}"
            fresh = ctx.store.get_job(job_id)
            outcome.block(ctx, fresh, reason, kind="billing" if isinstance(exc, api_mod.BillingError) else "error",
                          next_step=step)
            report.blocked = reason
            report.events.append(JobBlocked(job_id, job["title"], reason, step))
    return report


def _run(ctx, job: dict, sender: Sender, report: AdvanceReport) -> None:
    store = ctx.store
    for _ in range(4 * len(store.stages(job["id"])) + 8):  # every step moves a stage or the job on
        job = store.get_job(job["id"])
        step: Step = next_step(load_view(ctx, job), driver=sender.driver)
        if isinstance(step, Idle):
            return
        if isinstance(step, Wait):
            report.waiting = True
            return
        if isinstance(step, Block):
            next_step_text = (f"top up, then tegbatchd retry {job['id']}" if step.kind == "billing"
                              else f"tegbatchd retry {job['id']}")
            outcome.block(ctx, job, step.reason, kind=step.kind, next_step=next_step_text)
            report.blocked = step.reason
            report.events.append(JobBlocked(job["id"], job["title"], step.reason, next_step_text))
            return
        if isinstance(step, Finish):
            title = outcome.finish(ctx, job, step.state)
            report.events.append(JobFinished(job["id"], title, str(step.state)))
            return
        stage = store.stages(job["id"])[step.seq]
        if isinstance(step, Build):
            event = _build(ctx, job, stage, sender, report.events.append)
            report.events.append(event)
            if isinstance(event, JobBlocked):
                report.blocked = event.reason
                return
        elif isinstance(step, Release):
            _release(ctx, job, stage, step, sender, report)
        elif isinstance(step, Retry):
            rows = [r for r in retry.auto_candidates(store.latest_failures(job["id"]),
                                                     int(ctx.config["retry"]["max_attempts"]))
                    if r["stage_id"] == stage["id"]]
            held = _hold(ctx, job, sender, f"resending {len(rows)} failed request(s) of stage {stage['name']}",
                         _retry_estimate(ctx, rows))
            if held:
                report.events.append(held)
                report.blocked = held.reason
                return
            ids, _ = retry.resubmit(ctx, job, rows, intent_state=sender.intent_state)
            if not ids:
                raise RuntimeError(f"stage {stage['name']}: failures to resubmit but none could be recorded")
            sender.send(ctx, job, ids)
            report.events.append(Resubmitted(job["title"], stage["name"], len(rows), automatic=True))
        elif isinstance(step, Assemble):
            event = _assemble(ctx, job, stage)
            if event:
                report.events.append(event)
    raise RuntimeError("the job engine made no progress (a bug): the job is blocked so nothing runs twice")


def _build(ctx, job: dict, stage: dict, sender: Sender, emit) -> Event:
    """Build a stage from the spec and what is on disk; send what was never attempted in this job."""
    from tegbatchd import priming
    from tegbatchd.pipelines import get_pipeline
    from tegbatchd.submission import items_from_plan

    store = ctx.store
    data_root = Path(job["data_root"])
    plan = get_pipeline(job["kind"]).build_stage(job["spec"], stage["seq"], data_root, ctx.config)
    attempted = store.job_output_paths(job["id"])  # failures are retry's business, not a rebuild's
    items = [i for i in items_from_plan(plan.requests, data_root) if str(i.output) not in attempted]
    if items:  # what the API would refuse is refused before it is recorded or paid for
        preflight_items(ctx, sender.api_client(), items, origin=f"stage {stage['name']} of {job['title']}")
    if items:
        hold = _hold(ctx, job, sender, f"stage {stage['name']} ({len(items)} requests)",
                     items_estimate(ctx.config, items)[0].cost.batch)
        if hold:
            return hold
    if not items:
        has_intents = bool(store.intents_of_stage(stage["id"]))
        store.move_stage(stage["id"], StageState.SUBMITTED if has_intents else StageState.SKIPPED, plan.notes)
        return StageSkipped(job["title"], stage["name"], tuple(plan.notes))
    count = len(items)
    emit(StagePlanned(job["title"], stage["name"], count, tuple(plan.notes)))
    ids, waiting = priming.record_stage(ctx, job["id"], stage, items, plan.notes, intent_state=sender.intent_state,
                                        prime=sender.driver == "batch")
    del items
    if waiting:
        store.add_event("priming", f"stage {stage['name']}: one request per shared prefix first, {waiting} held "
                        "until it has finished", job_id=job["id"])
    batch_ids, deferred = sender.send(ctx, job, ids)
    if batch_ids and ctx.config["notifications"]["stage_submitted"] and stage["seq"] > 0:
        from tegbatchd.engine.outcome import summarize

        so_far = summarize(store, job)  # the same file count as `list` and the ready notice
        store.add_notice(f"stage:{job['id']}:{stage['seq']}:{ids[0]}", "stage_submitted",
                         f"{job['title']}: {stage['name']} submitted",
                         f"{count} requests; {so_far.written} of {so_far.total} files written so far",
                         job_id=job["id"])
    return StageSubmitted(job["title"], stage["name"], count - waiting, tuple(batch_ids), tuple(deferred),
                          tuple(plan.notes), held=waiting)


def _release(ctx, job: dict, stage: dict, step: Release, sender: Sender, report: AdvanceReport) -> None:
    """The stage's priming requests have finished: its held intents become open and are sent (each move a
    compare-and-set before its create: a kill in between leaves an open intent the poller sends). A
    canceled job's held requests are settled as never sent."""
    store = ctx.store
    if step.cancel:
        for intent_id in step.held:
            store.fail_intent(intent_id, "the job was canceled before they were sent", CANCELED_BEFORE_SENT)
        return
    ids = [i for i in step.held if store.release_intent(i)]
    batch_ids, deferred = sender.send(ctx, job, ids)
    count = sum(store.get_intent(i)["request_count"] for i in ids)
    report.events.append(StageSubmitted(job["title"], stage["name"], count, tuple(batch_ids), tuple(deferred)))


def job_budget(ctx, job: dict) -> Budget:
    """The limits a job is held to: its own (--max-cost) else budget.job_usd, and budget.monthly_usd."""
    limits = ctx.config["budget"]
    own = job.get("max_cost_usd")
    return Budget(own if own is not None else limits["job_usd"], limits["monthly_usd"], bool(job.get("past_monthly")))


def month_start() -> str:
    import datetime

    return datetime.date.today().replace(day=1).isoformat()


def _hold(ctx, job: dict, sender: Sender, what: str, estimate: float) -> JobBlocked | None:
    """Hold the job (blocked, kind budget: one notice with the command to go on) when sending `what`
    would pass a budget; None when it fits. `--now` jobs were checked whole at submit."""
    from tegbatchd.costs import recorded_cost

    budget = job_budget(ctx, job)
    if sender.driver != "batch" or (budget.job_usd is None and budget.monthly_usd is None):
        return None
    store = ctx.store
    job_spent = recorded_cost(ctx.config, store.usage_receipts(job_id=job["id"])).batch
    month_spent = recorded_cost(ctx.config, store.usage_receipts(since=month_start())).batch \
        if budget.monthly_usd is not None else 0.0
    found = budget_block(budget, what=what, estimate=estimate, job_spent=job_spent, month_spent=month_spent,
                         job_id=job["id"])
    if found is None:
        return None
    block, go_on = found
    outcome.block(ctx, job, block.reason, kind=block.kind, next_step=go_on)
    return JobBlocked(job["id"], job["title"], block.reason, go_on)


def _retry_estimate(ctx, rows: list[dict]) -> float:
    """Upper bound (batch price) of resending failed requests: each at its intent's average size."""
    from tegbatchd import costs

    sizes: dict[int, float] = {}
    items = []
    for r in rows:
        if r["intent_id"] not in sizes:
            intent = ctx.store.get_intent(r["intent_id"]) or {}
            sizes[r["intent_id"]] = intent.get("byte_size", 0) / max(1, intent.get("request_count", 1))
        items.append(costs.EstimateItem(r["model"], int(sizes[r["intent_id"]] / costs.CHARS_PER_TOKEN),
                                        r["max_tokens"] or 0))
    return costs.estimate(ctx.config, items).cost.batch


def preflight_items(ctx, client, items, *, origin: str) -> list[str]:
    """Lint the items' params and check their models with the Models API; raise on what the API would
    refuse (nothing recorded), return deprecation warnings."""
    import json

    from tegbatchd import preflight

    preflight.lint_requests(((i.custom_id, json.loads(i.line)["params"]) for i in items), source=origin)
    uses = preflight.item_model_uses(items, origin)
    return preflight.check_models(ctx, client, uses)


def _assemble(ctx, job: dict, stage: dict) -> Any:
    """Every attempt of the stage has an outcome: run its local step (idempotent: files are rewritten
    atomically), record the files it wrote, and settle the stage."""
    from tegbatchd.pipelines import get_pipeline
    from tegbatchd.writer import Writer

    store = ctx.store
    if stage["state"] != StageState.ASSEMBLING:
        store.move_stage(stage["id"], StageState.ASSEMBLING)
    with Writer(job["data_root"], recorded=store.recorded_shas, force=bool(job["spec"].get("force"))) as writer:
        written = get_pipeline(job["kind"]).after_stage(job["spec"], stage["seq"], Path(job["data_root"]),
                                                        ctx.config, write=writer.write)
    kept = []
    for w in written:
        store.record_job_file(job["id"], w.path, stage["seq"], w.sha256, w.output or w.path)
        if w.beside:
            kept.append(w.path)
            store.add_event("kept_edit", f"{w.output}: the file was edited since it was written; kept, the new "
                                         f"version is in {w.path}", job_id=job["id"])
    store.move_stage(stage["id"], StageState.DONE)
    return Assembled(job["title"], stage["name"], len(written), tuple(kept)) if written else None
