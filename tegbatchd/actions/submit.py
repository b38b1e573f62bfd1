"""submit requests | round-reports | tournament: check, record, create, return at once (laptop-safe).

Each returns a report (SubmitReport, or DryRunReport with --dry-run); `--now` runs the job through the
standard API (tegbatchd.immediate) and returns its exit code."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tegbatchd import api as api_mod
from tegbatchd import costs, priming
from tegbatchd.engine.claims import claimed_outputs, conflicts
from tegbatchd.engine.events import Event, StageSubmitted
from tegbatchd.engine.ids import new_job_id
from tegbatchd.engine.loop import BatchSender, advance
from tegbatchd.engine.outcome import summarize
from tegbatchd.engine.states import IntentState, JobState
from tegbatchd.errors import EXIT_AUTH, InputError, UserError
from tegbatchd.estimates import JobEstimate, StageEstimate, items_estimate, job_estimate
from tegbatchd.locks import is_locked
from tegbatchd.paths import resolve_user_path
from tegbatchd.pipelines import get_pipeline
from tegbatchd.polling import make_client, poll_once
from tegbatchd.preflight import item_model_uses
from tegbatchd.submission import Item, items_from_plan, read_requests_file, split


@dataclass
class DryRunReport:
    title: str
    requests: int
    batches: int
    estimate: costs.Cost         # the whole job (every stage), without priming: the upper bound
    items: list[Item]
    later_stages: list[str]
    notes: list[str] = field(default_factory=list)
    job: JobEstimate | None = None   # per stage, with and without priming
    now: bool = False            # `--now`: the standard Messages API at once, the standard price


@dataclass
class SubmitReport:
    job_id: str
    title: str
    batch_ids: list[str]
    requests: int
    estimate: costs.Cost         # the whole job (every stage)
    deferred: list[str]          # why a create is not confirmed yet
    confirmed: bool              # every batch id is recorded: the laptop may close
    daemon_running: bool
    notes: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    client: object = None        # for --wait
    job: JobEstimate | None = None
    priming: list[str] = field(default_factory=list)


def _dry_run(ctx, title: str, items: list[Item], later_stages: list[str], notes: list[str],
             job: JobEstimate) -> DryRunReport:
    limits = ctx.config["batch_limits"]
    groups = split(items, limits["max_requests"], limits["max_bytes"])
    return DryRunReport(title, len(items), len(groups), job.total.cost, items, later_stages, notes, job, job.now)


def _requests_estimate(ctx, items: list[Item]) -> JobEstimate:
    estimate, primed = items_estimate(ctx.config, items)
    return JobEstimate([StageEstimate("requests", len(items), estimate, primed=primed)])


def _report(ctx, job_id: str, title: str, batch_ids: list[str], deferred: list[str], client,
            job: JobEstimate) -> SubmitReport:
    count = ctx.store.job_request_count(job_id)
    held = sum(i["request_count"] for s in ctx.store.stages(job_id) for i in ctx.store.intents_of_stage(s["id"])
               if i["state"] == IntentState.HELD)
    priming_note = ([f"cache priming: {count - held} request(s) sent first; the other {held}, which share their "
                     "cached prefix, go once those have finished (the daemon or `poll` sends them)"] if held else [])
    return SubmitReport(job_id, title, batch_ids, count, job.total.cost, deferred, job=job,
                        confirmed=not ctx.store.open_intents(job_id),
                        daemon_running=is_locked(ctx.paths.state_dir / "daemon.lock"), client=client,
                        priming=priming_note)


def _refuse_over_budget(ctx, estimate: JobEstimate, max_cost: float | None) -> None:
    """A job whose estimate (an upper bound, every stage) would pass a limit is refused with the figures,
    before anything is recorded: --max-cost (else budget.job_usd), and budget.monthly_usd with what this
    month's receipts show."""
    from tegbatchd.costs import money, recorded_cost
    from tegbatchd.engine.loop import month_start

    total = estimate.total.cost
    figure = total.standard if estimate.now else total.batch
    limits = ctx.config["budget"]
    own = max_cost if max_cost is not None else limits["job_usd"]
    what = f"the estimate of this job, at most {money(figure)} ({estimate.total.requests} requests"
    what += f" in {len(estimate.stages)} stages)" if len(estimate.stages) > 1 else ")"
    if own is not None and figure > own:
        flag = "--max-cost" if max_cost is not None else "budget.job_usd"
        raise InputError(f"{what} is over the job limit of {money(own)} ({flag})",
                         next_step=f"raise {flag} to at least {money(figure)}, or send less (--dry-run shows each "
                                   "stage); nothing was sent")
    if limits["monthly_usd"] is not None:
        spent = recorded_cost(ctx.config, ctx.store.usage_receipts(since=month_start())).batch
        running = still_to_spend(ctx)
        if spent + running + figure > limits["monthly_usd"]:
            also = f", jobs still running at most {money(running)} more" if running else ""
            raise InputError(f"{what} would bring this month to {money(spent + running + figure)} (spent "
                             f"{money(spent)}{also}), over budget.monthly_usd {money(limits['monthly_usd'])}",
                             next_step="raise budget.monthly_usd in the config, or send less; nothing was sent")


def still_to_spend(ctx) -> float:
    """What the unfinished jobs may still cost (USD): each one's estimate at submit less its receipts so far
    (never below 0), so two submits back to back cannot both pass the monthly budget."""
    from tegbatchd.costs import recorded_cost

    total = 0.0
    for job in ctx.store.running_estimates():
        spent = recorded_cost(ctx.config, ctx.store.usage_receipts(job_id=job["id"]))
        total += max(0.0, job["estimate_usd"] - (spent.standard if job["mode"] == "now" else spent.batch))
    return total


def _budget_note(ctx, estimate: JobEstimate, max_cost: float | None) -> list[str]:
    """A dry run says what the submit would refuse."""
    try:
        _refuse_over_budget(ctx, estimate, max_cost)
    except InputError as exc:
        return [f"a submit would be refused: {exc.message}"]
    return []


def _refuse_conflicts(ctx, outputs: list[str], again: bool) -> None:
    """One job per output: refuse a submit whose outputs an active job will write (unless --again)."""
    if again:
        return
    found = conflicts(ctx.store, outputs)
    if found:
        job, count = found[0]
        raise InputError(f"{count} of these outputs are already being written by job {job['id']} "
                         f"({job['title']}, {job['state']})",
                         next_step=f"wait for it (`tegbatchd list`), cancel it (`tegbatchd cancel {job['id']}`), "
                                   "or add --again to send them anyway")


def abandon(ctx, job_id: str, reason: str) -> None:
    """A rejected key at submit: what was not sent is marked failed (nothing sends it later), and a job
    with no batch at all is failed."""
    store = ctx.store
    for intent in store.open_intents(job_id):
        store.fail_intent(intent["id"], reason, "authentication_error")
    if not store.batches_of_job(job_id):
        store.move_job(job_id, JobState.FAILED)


def _key_rejected(ctx, job_id: str) -> UserError:
    abandon(ctx, job_id, "the API key was rejected")
    return UserError("the API key was rejected", next_step="check ANTHROPIC_API_KEY or your api_key_file; "
                     "nothing was submitted", exit_code=EXIT_AUTH)


def _preflight(ctx, items: list[Item], uses, *, source: str, dry_run: bool, linted=None) -> list[str]:
    """What the API would refuse is refused now, before anything is recorded: each request's params (linted:
    a preflight.ParamsLint that saw them as they were read), and (with a key) every model the job will use,
    asked of the Models API. Return warnings (deprecations)."""
    import json

    from tegbatchd import preflight
    if linted is None:
        preflight.lint_requests(((i.custom_id, json.loads(i.line)["params"]) for i in items), source=source)
    else:
        linted.check(source)
    try:
        client = make_client(ctx)
    except api_mod.NoApiKey as exc:
        if dry_run and type(exc) is api_mod.NoApiKey:  # a bad key or endpoint is refused even in a dry run
            return ["models not checked with the API: no API key (they are checked at submit)"]
        raise
    return preflight.check_models(ctx, client, uses)


def submit_requests(ctx, file: str, output: str, *, label: str | None = None, dry_run: bool = False,
                    again: bool = False, max_cost: float | None = None, force: bool = False
                    ) -> SubmitReport | DryRunReport:
    """Given a JSONL requests file and an output template, record the job and create its batches (force: its
    answers replace outputs edited by hand instead of going beside them)."""
    data_root = ctx.data_root
    source = resolve_user_path(file, "the requests file")
    from tegbatchd.preflight import ParamsLint

    lint = ParamsLint()
    items = read_requests_file(source, output, data_root, on_params=lint.add)
    pipeline = get_pipeline("requests")
    spec = {"source": str(source), "output": output, "label": label, **({"force": True} if force else {})}
    title = pipeline.title(spec)
    warnings = _preflight(ctx, items, item_model_uses(items, source.name), source=str(source), dry_run=dry_run,
                          linted=lint)
    estimate = _requests_estimate(ctx, items)
    if dry_run:
        return _dry_run(ctx, title, items, [], warnings + _budget_note(ctx, estimate, max_cost), estimate)
    _refuse_over_budget(ctx, estimate, max_cost)
    client = make_client(ctx)
    store = ctx.store
    _refuse_conflicts(ctx, [str(i.output) for i in items], again)
    job_id = store.create_job(new_job_id, "requests", title, spec, str(data_root), pipeline.stages(spec),
                              max_cost_usd=max_cost, estimate_usd=estimate.total.cost.batch)
    stage = store.stages(job_id)[0]
    ids, _ = priming.record_stage(ctx, job_id, stage, items, [], intent_state=IntentState.OPEN, prime=True)
    del items  # archived: let them go before the create bodies are built (20,000 x 8 KB = 160 MB)
    try:
        batch_ids, deferred = BatchSender(lambda: client).send(ctx, store.get_job(job_id), ids)
    except api_mod.AuthRejected:
        raise _key_rejected(ctx, job_id) from None
    except api_mod.BillingError as exc:  # the job waits for the person: no create is retried by itself
        from tegbatchd.engine import outcome

        outcome.block(ctx, store.get_job(job_id), str(exc), kind="billing",
                      next_step=f"top up, then tegbatchd retry {job_id}")
        raise UserError(f"{exc}; the job is recorded and waits", next_step=f"top up your Anthropic balance or "
                        f"limit, then `tegbatchd retry {job_id}`") from None
    report = _report(ctx, job_id, title, batch_ids, deferred, client, estimate)
    report.notes = warnings + report.priming
    return report


def submit_teg(ctx, kind: str, args) -> SubmitReport | DryRunReport | int:
    """Given a TEG kind and its parsed flags, record the job and send its first stage with something to
    send (under the job's lock). `--now` runs it at once and returns the exit code."""
    from tegbatchd.immediate import run_job_now, settle_interrupted
    from tegbatchd.teg import specs

    data_root = ctx.data_root
    settle_interrupted(ctx)  # a killed `--now` run claims nothing any more
    busy = {path: job["id"] for path, job in claimed_outputs(ctx.store).items()} if not args.again else {}
    spec = specs.spec_from_args(kind, args, data_root, ctx.config, busy=busy)
    pipeline = get_pipeline(kind)
    title = pipeline.title(spec)
    stages = pipeline.stages(spec)
    from tegbatchd.preflight import stage_model_uses

    first = pipeline.build_stage(spec, 0, data_root, ctx.config)
    items = items_from_plan(first.requests, data_root)
    later = stages[1:]
    if not items and len(stages) > 1:
        items = items_from_plan(pipeline.build_stage(spec, 1, data_root, ctx.config).requests, data_root)
        later = stages[2:]
    names = [n for stage in stages for n in (spec["reports"] if stage == "reports" else [stage])]
    warnings = _preflight(ctx, items, stage_model_uses(ctx.config, names), source=title, dry_run=args.dry_run)
    now = bool(getattr(args, "now", False))
    estimate = job_estimate(ctx.config, kind, spec, data_root, now=now)
    max_cost = getattr(args, "max_cost", None)
    if args.dry_run:
        return _dry_run(ctx, title, items, later, first.notes + warnings + _budget_note(ctx, estimate, max_cost),
                        estimate)
    _refuse_over_budget(ctx, estimate, max_cost)
    _refuse_conflicts(ctx, [str(data_root / rel) for rel in pipeline.planned_outputs(spec) or []], args.again)
    if getattr(args, "now", False):
        return run_job_now(ctx, kind, spec, title, stages)
    client = make_client(ctx)
    store = ctx.store
    job_id = store.create_job(new_job_id, kind, title, spec, str(data_root), stages, max_cost_usd=max_cost,
                              estimate_usd=estimate.total.cost.batch)
    try:
        done = advance(ctx, job_id, BatchSender(lambda: client), wait=30)
    except api_mod.AuthRejected:
        raise _key_rejected(ctx, job_id) from None
    if done.blocked:
        raise UserError(f"{title}: {done.blocked}", next_step=f"fix it, then `tegbatchd retry {job_id}`")
    batch_ids = [b["id"] for b in store.batches_of_job(job_id)]
    deferred = [note for e in done.events if isinstance(e, StageSubmitted) for note in e.deferred]
    report = _report(ctx, job_id, title, batch_ids, deferred, client, estimate)
    report.notes = list(spec.get("skipped", [])) + warnings + report.priming
    report.events = [e for e in done.events if not isinstance(e, StageSubmitted)]
    return report


def wait_for_job(ctx, job_id: str, client, on_line) -> str:
    """--wait: poll until the job is finished, handing progress lines to on_line; return its state."""
    interval = 2.0 if client.client.base_url.host in ("127.0.0.1", "localhost") else 30.0
    last = None
    while True:
        report = poll_once(ctx, client=client)
        for change in report.changes:
            on_line(f"  {change}")
        job = ctx.store.get_job(job_id)
        summary = summarize(ctx.store, job)
        line = (f"  {job['state']}: {summary.written} written, {summary.in_flight} pending, "
                f"{len(summary.failures)} failed")
        if line != last:
            on_line(line)
            last = line
        if job["state"] != JobState.ACTIVE:
            return job["state"]
        time.sleep(interval)


def notify_now(ctx) -> int:
    """`--wait` and `--now`: deliver the job's notification at once (not at the daemon's next poll); it is
    marked delivered, so nothing shows it again. Return how many notices went out."""
    if not ctx.store.pending_notices():
        return 0
    from tegbatchd.notify_cli import deliver_now

    return deliver_now(ctx)
