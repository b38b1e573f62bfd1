"""`tegbatchd retrieve | cancel | retry | poll`: flags and output."""

from __future__ import annotations

from tegbatchd.actions import batches as actions
from tegbatchd.cli.options import add_json
from tegbatchd.engine.outcome import summarize
from tegbatchd.errors import EXIT_AUTH, EXIT_FAILED, EXIT_NOT_READY
from tegbatchd.retrieval import RetrieveReport


def register(sub) -> None:
    r = sub.add_parser("retrieve", help="write an ended batch's (or a whole job's) results to their files")
    r.add_argument("id", metavar="ID", help="a batch id or a job id (or a unique prefix)")
    r.add_argument("--force", action="store_true",
                   help="replace outputs you edited since they were written (kept by default: the new answer goes "
                        "beside them as NAME.new.md)")
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


def cmd_retrieve(args, ctx) -> int:
    result = actions.retrieve(ctx, args.id, on_file=None if ctx.json_output else (lambda p: print(f"  ✓ wrote {p}")),
                              force=args.force)
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
        return EXIT_FAILED
    if any(r.state in ("not_ended", "busy", "foreign") for r in reports):
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
    if report.state == "foreign":
        print(f"{report.message} (by `tegbatchd poll --once` or the daemon)")
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
    result = actions.cancel(ctx, args.id)
    for info in result.canceled:
        print(f"{info['id']}: {info['processing_status']}. Requests not yet processed end as canceled; "
              "what finished is still retrieved.")
    for batch_id in result.late:
        print(f"{batch_id}: had already ended, nothing to cancel; its results are retrieved as usual.")
    if not result.canceled:
        print(f"{result.job_id}: nothing is running; no later stage will be submitted.")
    return 0


def cmd_retry(args, ctx) -> int:
    result = actions.retry(ctx, args.id, all_errors=args.all_errors, truncated=args.truncated)
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
        print(f"  {result.unsendable} request(s) cannot be resent: their requests are not in the archive (removed, or an imported "
              "batch's, never archived here)")
    if result.left_out:
        reasons = ", ".join(f"{n} {reason}" for reason, n in result.left_out.items())
        print(f"  left out, as they would fail the same way: {reasons} — fix the cause, then add --all-errors")
    for event in result.events:
        print(event)
    return 0


def cmd_poll(args, ctx) -> int:
    report, delivered = actions.poll(ctx)
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
    return EXIT_AUTH if report.error in ("key_rejected", "no_key") else 0
