"""`tegbatchd submit requests|round-reports|tournament`: record, create, return at once (laptop-safe)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

from tegbatchd import api as api_mod
from tegbatchd import costs
from tegbatchd.cli import add_data_dir, add_json
from tegbatchd.engine.claims import claimed_outputs, conflicts
from tegbatchd.engine.events import StageSubmitted
from tegbatchd.engine.loop import BatchSender, advance
from tegbatchd.engine.outcome import summarize
from tegbatchd.errors import EXIT_AUTH, EXIT_UNCONFIRMED, InputError, UserError
from tegbatchd.pipelines import get_pipeline
from tegbatchd.polling import make_client, poll_once
from tegbatchd.submission import archive_intents, items_from_plan, read_requests_file, split


def register(sub) -> None:
    p = sub.add_parser("submit", help="submit work as batches and return at once")
    kinds = p.add_subparsers(dest="submit_kind", metavar="KIND")
    kinds.required = True

    req = kinds.add_parser("requests", help="a JSONL file of {custom_id, params} lines")
    req.add_argument("file", help="JSONL file, one request per line")
    req.add_argument("--output", required=True, metavar="TEMPLATE",
                     help="output path relative to the data root, e.g. commentary/misc/{custom_id}.md")
    req.add_argument("--kind", default=None, metavar="NAME", help="a label shown in `tegbatchd list`")
    _common(req)
    req.set_defaults(func=cmd_submit_requests)

    from tegbatchd.teg import cli as teg_cli

    rr = kinds.add_parser("round-reports", help="round story notes, then narrative reports (TEG)")
    teg_cli.add_round_reports_args(rr)
    _common(rr, now=True)
    rr.set_defaults(func=cmd_submit_teg, teg_kind="round-reports")

    tr = kinds.add_parser("tournament", help="tournament story notes and reports (TEG)")
    teg_cli.add_tournament_args(tr)
    _common(tr, now=True)
    tr.set_defaults(func=cmd_submit_teg, teg_kind="tournament")


def _common(p, now: bool = False) -> None:
    add_data_dir(p)
    add_json(p)
    p.add_argument("--wait", action="store_true", help="stay and show progress until the results are written")
    p.add_argument("--dry-run", action="store_true", help="validate and show what would be sent; send nothing")
    p.add_argument("--again", action="store_true",
                   help="send even when an active job is already writing the same outputs")
    p.add_argument("--submit-only", "--use-batch", action="store_true", dest="legacy_noop",
                   help="accepted for the old scripts' habits (submitting is always laptop-safe)")
    if now:
        p.add_argument("--now", action="store_true",
                       help="use the standard Messages API at once (urgent; full price) instead of batches")


def new_job_id() -> str:
    return f"job_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}_{secrets.token_hex(2)}"


def _estimate(ctx, items) -> costs.Cost:
    return costs.estimate(ctx.config, [(i.model, len(i.line), i.max_tokens) for i in items])


def _dry_run(ctx, title: str, items, later_stages: list[str]) -> int:
    limits = ctx.config["batch_limits"]
    groups = split(items, limits["max_requests"], limits["max_bytes"])
    estimate = _estimate(ctx, items)
    payload = {"dry_run": True, "title": title, "requests": len(items), "batches": len(groups),
               "estimated_cost_usd": round(estimate.batch, 4), "standard_cost_usd": round(estimate.standard, 4),
               "outputs": [str(i.output) for i in items], "later_stages": later_stages}
    if ctx.json_output:
        ctx.emit_json(payload)
        return 0
    print(f"Dry run — nothing sent. {title}")
    print(f"  {len(items)} request(s) in {len(groups)} batch(es); estimated cost at most {estimate.describe()}")
    for item in items[:20]:
        print(f"  {item.custom_id:<40} → {item.output}")
    if len(items) > 20:
        print(f"  ... and {len(items) - 20} more")
    for name in later_stages:
        print(f"  then: stage {name}, built from the outputs above when they are written")
    return 0


def _job_estimate(ctx, job_id: str) -> tuple[int, costs.Cost]:
    """Request count and estimated cost of what a job has recorded so far."""
    rows = ctx.store.job_requests(job_id)
    sizes = {}
    for stage in ctx.store.stages(job_id):
        for intent in ctx.store.intents_of_stage(stage["id"]):
            sizes[intent["id"]] = intent["byte_size"] / max(1, intent["request_count"])
    return len(rows), costs.estimate(ctx.config, [(r["model"], sizes.get(r["intent_id"], 0), r["max_tokens"])
                                                  for r in rows])


def _daemon_running(ctx) -> bool:
    from tegbatchd.locks import is_locked

    return is_locked(ctx.paths.state_dir / "daemon.lock")


def _announce(ctx, job_id: str, title: str, batch_ids: list[str], deferred: list[str]) -> int:
    """Print what was submitted; "close your laptop" only when every batch id is recorded. Return the
    exit code: 0, or EXIT_UNCONFIRMED when a create got no clear answer (recorded, sent or reconciled later)."""
    count, estimate = _job_estimate(ctx, job_id)
    confirmed = not ctx.store.open_intents(job_id)
    daemon = _daemon_running(ctx)
    payload = {"job_id": job_id, "title": title, "batch_ids": batch_ids, "requests": count,
               "estimated_cost_usd": round(estimate.batch, 4), "standard_cost_usd": round(estimate.standard, 4),
               "deferred": deferred, "confirmed": confirmed, "daemon_running": daemon}
    code = 0 if confirmed else EXIT_UNCONFIRMED
    if ctx.json_output:
        ctx.emit_json(payload)
        return code
    print("=" * 64)
    print(f"{'SUBMITTED' if confirmed else 'RECORDED, NOT CONFIRMED'} — {title}")
    print("=" * 64)
    print(f"Job:      {job_id}")
    for batch_id in batch_ids:
        print(f"Batch:    {batch_id}")
    for note in deferred:
        print(f"Note:     {note}")
    print(f"Requests: {count}")
    print(f"Cost:     at most {estimate.describe()}")
    print()
    if confirmed:
        print("You can close your laptop now: the batches run on Anthropic's servers.")
        print("The daemon (`tegbatchd service install`) retrieves the results and tells you when they are ready.")
        print("To check by hand:  tegbatchd list      then   tegbatchd poll --once")
    else:
        who = ("the running daemon sends (or reconciles) it at its next poll" if daemon else
               "no daemon is running: run `tegbatchd poll --once` when the API is reachable (it reconciles, "
               "never sends twice), or `tegbatchd service install`")
        print(f"Not every batch was confirmed by the API: the requests are recorded, and {who}.")
        print("Keep the laptop open until `tegbatchd list` shows a batch id for every part.")
    return code


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


def cmd_submit_requests(args, ctx) -> int:
    data_root = ctx.data_root
    source = Path(args.file).resolve()
    items = read_requests_file(source, args.output, data_root)
    pipeline = get_pipeline("requests")
    spec = {"source": str(source), "output": args.output, "label": args.kind}
    title = pipeline.title(spec)
    if args.dry_run:
        return _dry_run(ctx, title, items, [])
    client = make_client(ctx)
    store = ctx.store
    _refuse_conflicts(ctx, [str(i.output) for i in items], args.again)
    job_id = store.create_job(new_job_id(), "requests", title, spec, str(data_root), pipeline.stages(spec))
    stage = store.stages(job_id)[0]
    intents = archive_intents(ctx, job_id, stage, items)
    del items  # archived: let them go before the create bodies are built (20,000 x 8 KB = 160 MB)
    ids = store.record_stage(stage["id"], intents, [])
    sender = BatchSender(lambda: client)
    try:
        batch_ids, deferred = sender.send(ctx, store.get_job(job_id), ids)
    except api_mod.AuthRejected:
        abandon(ctx, job_id, "the API key was rejected")
        raise UserError("the API key was rejected", next_step="check ANTHROPIC_API_KEY or your api_key_file; "
                        "nothing was submitted", exit_code=EXIT_AUTH) from None
    code = _announce(ctx, job_id, title, batch_ids, deferred)
    return _wait(ctx, job_id, client) if args.wait and not code else code


def abandon(ctx, job_id: str, reason: str) -> None:
    """A rejected key at submit: what was not sent is marked failed (nothing sends it later), and a job
    with no batch at all is failed."""
    from tegbatchd.engine.states import JobState

    store = ctx.store
    for intent in store.open_intents(job_id):
        store.fail_intent(intent["id"], reason, "authentication_error")
    if not store.batches_of_job(job_id):
        store.move_job(job_id, JobState.FAILED)


def cmd_submit_teg(args, ctx) -> int:
    from tegbatchd.immediate import settle_interrupted
    from tegbatchd.teg import cli as teg_cli

    data_root = ctx.data_root
    kind = args.teg_kind
    settle_interrupted(ctx)  # a killed `--now` run claims nothing any more
    busy = {path: job["id"] for path, job in claimed_outputs(ctx.store).items()} if not args.again else {}
    spec = teg_cli.spec_from_args(kind, args, data_root, ctx.config, busy=busy)
    pipeline = get_pipeline(kind)
    title = pipeline.title(spec)
    stages = pipeline.stages(spec)
    if args.dry_run:
        first = pipeline.build_stage(spec, 0, data_root, ctx.config)
        items = items_from_plan(first.requests, data_root)
        for note in first.notes:
            ctx.say(f"note: {note}")
        if not items and len(stages) > 1:
            items = items_from_plan(pipeline.build_stage(spec, 1, data_root, ctx.config).requests, data_root)
            return _dry_run(ctx, title, items, stages[2:])
        return _dry_run(ctx, title, items, stages[1:])
    _refuse_conflicts(ctx, [str(data_root / rel) for rel in pipeline.planned_outputs(spec) or []], args.again)
    if getattr(args, "now", False):
        from tegbatchd.immediate import run_job_now

        return run_job_now(ctx, kind, spec, title, stages)
    client = make_client(ctx)
    store = ctx.store
    job_id = store.create_job(new_job_id(), kind, title, spec, str(data_root), stages)
    for note in spec.get("skipped", []):
        ctx.say(f"note: {note}")
    try:  # builds and sends the first stage with something to send (under the job's lock)
        report = advance(ctx, job_id, BatchSender(lambda: client), wait=30)
    except api_mod.AuthRejected:
        abandon(ctx, job_id, "the API key was rejected")
        raise UserError("the API key was rejected", next_step="check ANTHROPIC_API_KEY or your api_key_file; "
                        "nothing was submitted", exit_code=EXIT_AUTH) from None
    if report.blocked:
        raise UserError(f"{title}: {report.blocked}", next_step=f"fix it, then `tegbatchd retry {job_id}`")
    batch_ids = [b["id"] for b in store.batches_of_job(job_id)]
    deferred = [note for e in report.events if isinstance(e, StageSubmitted) for note in e.deferred]
    for event in report.events:
        if not isinstance(event, StageSubmitted):
            ctx.say(str(event))
    code = _announce(ctx, job_id, title, batch_ids, deferred)
    return _wait(ctx, job_id, client) if args.wait and not code else code


def _wait(ctx, job_id: str, client) -> int:
    """--wait: poll until the job is finished, showing progress."""
    interval = 2.0 if client.client.base_url.host in ("127.0.0.1", "localhost") else 30.0
    last = None
    while True:
        report = poll_once(ctx, client=client)
        for change in report.changes:
            ctx.say(f"  {change}")
        job = ctx.store.get_job(job_id)
        summary = summarize(ctx.store, job)
        line = (f"  {job['state']}: {summary.written} written, {summary.in_flight} pending, "
                f"{len(summary.failures)} failed")
        if line != last:
            ctx.say(line)
            last = line
        if job["state"] not in ("active",):
            ctx.say(f"Done: {job['title']} — {job['state']}")
            return 0 if job["state"] == "done" else 1
        time.sleep(interval)
