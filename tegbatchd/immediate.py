"""`submit round-reports|tournament --now`: run a job at once through the standard Messages API.

Urgent work at full price, with the same records as the batch path: a job in mode "now", one intent per
stage in state "now" (its requests archived; never created as a batch, never reconciled), every answer
written atomically to its recorded path with its outcome, usage, stop_reason and sha256. Requests go
`now.concurrency` at a time within `now.tokens_per_minute`, and 429/529/5xx/network errors are retried
with back-off up to `now.max_attempts` times. The poller leaves mode "now" jobs alone.

Killed mid-way (kill -9, power loss): what was written and recorded stays; the job is marked canceled
when the next `--now` run starts (its lock is free by then). Running the same command again finishes the
work: story notes already on disk are reused (unless --force); later stages are sent again.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tegbatchd import api as api_mod
from tegbatchd.costs import recorded_cost
from tegbatchd.engine.events import Assembled, StagePlanned, StageSkipped, StageSubmitted
from tegbatchd.engine.loop import advance
from tegbatchd.engine.states import IntentState, JobState, Outcome
from tegbatchd.errors import EXIT_AUTH, UserError
from tegbatchd.locks import file_lock
from tegbatchd.outputs import message_text
from tegbatchd.pacing import TokenBudget, backoff_delay, estimate_tokens
from tegbatchd.polling import make_client
from tegbatchd.retrieval import _usage as usage_fields
from tegbatchd.store import now_iso
from tegbatchd.submission import Item
from tegbatchd.writer import UnsafePath, Writer

GROUP = 20                # answers written, synced once, then recorded in one transaction
MESSAGE_TIMEOUT = 600.0   # seconds for one non-streaming call (long narratives take minutes)
WAIT_SHOWN = 0.05         # a token-budget wait longer than this is shown on the request's line
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


@dataclass
class Answer:
    """What one request came to: a message, or the error of its last attempt."""

    item: Item
    message: dict | None = None
    error_type: str | None = None
    error_message: str = ""
    attempts: int = 0
    seconds: float = 0.0
    waited: float = 0.0       # seconds held back by the token budget
    stopped: bool = False     # the job stopped before it was sent: nothing to record


@dataclass
class NowRun:
    job_id: str
    sent: int = 0
    succeeded: int = 0
    retries: int = 0
    budget_waits: int = 0
    failed: list[dict] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    assembled: list[str] = field(default_factory=list)


def _error_type(exc: api_mod.ApiError) -> str:
    if exc.status is None:
        return "connection_error"
    return ERROR_TYPES.get(exc.status) or ("api_error" if exc.status >= 500 else f"http_{exc.status}")


class Sender:
    """Sends one request with retries, within the shared token budget (called from worker threads)."""

    def __init__(self, client, budget: TokenBudget, max_attempts: int):
        self.client = client
        self.budget = budget
        self.max_attempts = max_attempts
        self.stop = threading.Event()

    def send(self, item: Item) -> Answer:
        params = json.loads(item.line)["params"]
        tokens = estimate_tokens(len(item.line), item.max_tokens)
        answer = Answer(item)
        started = None
        for attempt in range(1, self.max_attempts + 1):
            waited = self.budget.acquire(tokens, self.stop)
            if waited is None:
                answer.stopped = attempt == 1  # never sent: left pending, not recorded as failed
                break
            answer.waited += waited
            started = started or time.monotonic()
            answer.attempts = attempt
            try:
                answer.message = self.client.message(params, timeout=MESSAGE_TIMEOUT)
                answer.error_type = None
                break
            except api_mod.AuthRejected:
                self.stop.set()
                raise
            except api_mod.Unavailable as exc:  # 429, 5xx, 529, network: worth another attempt
                answer.error_type, answer.error_message = _error_type(exc), str(exc)
                if attempt == self.max_attempts or self.stop.wait(backoff_delay(attempt)):
                    break
            except api_mod.ApiError as exc:  # a definite 4xx: this request only fails
                answer.error_type, answer.error_message = _error_type(exc), str(exc)
                break
        answer.seconds = time.monotonic() - started if started else 0.0
        return answer


def _lock_path(ctx, job_id: str) -> Path:
    return ctx.paths.lock_dir / f"now-{job_id}.lock"


def settle_interrupted(ctx) -> None:
    """Mark `--now` jobs whose process died (their lock is free) as canceled, so none stays 'active'."""
    store = ctx.store
    for job in store.list_jobs(include_finished=False):
        if job["mode"] != "now" or job["state"] != JobState.ACTIVE:
            continue
        with file_lock(_lock_path(ctx, job["id"]), wait=0) as free:
            if not free:
                continue  # its process is still running
            if store.move_job(job["id"], JobState.CANCELED):
                store.add_event("job_interrupted", "its --now run stopped before the end", job_id=job["id"])
            _lock_path(ctx, job["id"]).unlink(missing_ok=True)


class NowSender:
    """The engine's sender for `--now`: a stage's recorded requests go to the Messages API at once,
    `now.concurrency` at a time, and each answer is written and recorded as it comes."""

    driver = "now"
    intent_state = IntentState.NOW

    def __init__(self, sender: Sender, run: NowRun, concurrency: int):
        self.sender = sender
        self.run = run
        self.concurrency = concurrency

    def api_client(self):
        return self.sender.client

    def send(self, ctx, job: dict, intent_ids: list[int]) -> tuple[list[str], list[str]]:
        store = ctx.store
        rows: dict[str, dict] = {}
        items: list[Item] = []
        for intent_id in intent_ids:
            intent = store.get_intent(intent_id)
            mine = {r["sent_id"]: r for r in store.requests_of_intent(intent_id) if r["outcome"] is None}
            with open(intent["archive"], "rb") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    row = mine.get(json.loads(line)["custom_id"])  # the archive holds the sent ids
                    if row is not None:
                        rows[row["custom_id"]] = row
                        items.append(Item(row["custom_id"], line.rstrip(b"\r\n"), row["output_path"],
                                          row["model"], row["max_tokens"]))
        stage_ids = {store.get_intent(i)["stage_id"] for i in intent_ids}
        names = [s["name"] for s in store.stages(job["id"]) if s["id"] in stage_ids]
        ctx.say(f"Stage {', '.join(names)}: {len(items)} request(s)")
        _send_all(ctx, self.sender, items, rows, self.run, self.concurrency, Path(job["data_root"]))
        return [], []


def run_job_now(ctx, kind: str, spec: dict, title: str, stages: list[str]) -> int:
    """Given a job's spec, run every stage now through the Messages API; return the exit code (0: done).

    The same engine loop as batch mode, with NowSender. Raise UserError "the API key was rejected" (job
    failed, what was written kept) or on a write error.
    """
    from tegbatchd.engine.ids import new_job_id

    client = make_client(ctx)  # no key: nothing is recorded
    store, settings = ctx.store, ctx.config["now"]
    settle_interrupted(ctx)
    job_id = store.create_job(new_job_id, kind, title, spec, str(ctx.data_root), stages, mode="now")
    run = NowRun(job_id)
    sender = NowSender(Sender(client, TokenBudget(settings["tokens_per_minute"]), settings["max_attempts"]), run,
                       settings["concurrency"])
    ctx.say(f"NOW — {title} (standard Messages API, full price)\nJob: {job_id}")
    with file_lock(_lock_path(ctx, job_id), wait=0):
        def show(event) -> None:
            if isinstance(event, StagePlanned | StageSkipped):
                for note in event.notes:
                    ctx.say(f"note: {note}")
            if isinstance(event, StageSkipped):
                ctx.say(f"Stage {event.stage}: nothing to send")
            elif isinstance(event, Assembled):
                ctx.say(f"  assembled {event.files} file(s)")
            elif not isinstance(event, StagePlanned | StageSubmitted):
                ctx.say(str(event))

        try:
            advance(ctx, job_id, sender, wait=30, on_event=show)
        except api_mod.AuthRejected:
            store.move_job(job_id, JobState.FAILED)
            store.add_event("job_failed", "the API key was rejected", job_id=job_id)
            raise UserError("the API key was rejected", next_step="check ANTHROPIC_API_KEY or your api_key_file; "
                            "nothing more was sent", exit_code=EXIT_AUTH) from None
        except BaseException:
            if store.move_job(job_id, JobState.CANCELED):
                store.add_event("job_interrupted", "the --now run stopped before the end", job_id=job_id)
            raise
        run.assembled = store.job_files(job_id)
        if store.get_job(job_id)["state"] == JobState.ACTIVE:  # stopped before every request was sent
            store.move_job(job_id, JobState.CANCELED)
    _lock_path(ctx, job_id).unlink(missing_ok=True)
    return _report(ctx, run, title)


def _send_all(ctx, sender: Sender, items: list[Item], rows: dict, run: NowRun, concurrency: int,
              data_root: Path) -> None:
    """Send items concurrently; write and record each answer as it comes (synced once per group)."""
    job = ctx.store.get_job(run.job_id)
    writer = Writer(data_root, recorded=ctx.store.recorded_shas, force=bool(job["spec"].get("force")))
    group: list[dict] = []
    settled: set[Future] = set()

    def flush() -> None:
        if group:
            if any(g.get("written_at") for g in group):
                writer.sync()
            ctx.store.record_results(group)
            group.clear()

    def settle(future: Future) -> None:
        settled.add(future)
        record = _settle(ctx, writer, future.result(), rows, run, data_root)
        if record:
            group.append(record)
        if len(group) >= GROUP:
            flush()

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="now")
    futures = [pool.submit(sender.send, item) for item in items]
    try:
        for future in as_completed(futures):
            settle(future)
    except BaseException:
        sender.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        for future in futures:  # answers that arrived meanwhile are paid for: keep them
            if future not in settled and future.done() and not future.cancelled() and not future.exception():
                settle(future)
        raise
    finally:
        flush()
        pool.shutdown(wait=True)
        writer.close()


def _settle(ctx, writer: Writer, answer: Answer, rows: dict, run: NowRun, data_root: Path) -> dict | None:
    """Write a successful answer and print one progress line; return the record (None: not sent)."""
    if answer.stopped:
        return None
    item, row = answer.item, rows[answer.item.custom_id]
    run.sent += 1
    run.retries += max(0, answer.attempts - 1)
    if answer.waited > WAIT_SHOWN:
        if not run.budget_waits:
            ctx.say(f"  (paced by now.tokens_per_minute = {ctx.config['now']['tokens_per_minute']}: "
                    "requests wait for the token budget)")
        run.budget_waits += 1
    tries = f", {answer.attempts} attempts" if answer.attempts > 1 else ""
    tries += f", waited {answer.waited:.1f} s for tokens" if answer.waited > WAIT_SHOWN else ""
    if answer.message is None:
        run.failed.append({"custom_id": item.custom_id, "error_type": answer.error_type})
        ctx.say(f"  ✗ {item.custom_id}: {answer.error_type}{tries} — {answer.error_message[:200]}")
        return {"id": row["id"], "outcome": Outcome.ERRORED, "error_type": answer.error_type,
                "error_message": answer.error_message[:500]}
    try:
        written = writer.write(item.output, message_text(answer.message))
    except UnsafePath as exc:
        run.failed.append({"custom_id": item.custom_id, "error_type": "unsafe_path"})
        ctx.say(f"  ✗ {item.custom_id}: unsafe_path — {exc.message}")
        ctx.store.add_event("unsafe_path", exc.message, job_id=run.job_id)
        return {"id": row["id"], "outcome": Outcome.ERRORED, "error_type": "unsafe_path",
                "error_message": exc.message[:500]}
    except OSError as exc:
        raise UserError(f"cannot write {item.output}: {exc.strerror}",
                        next_step="free space or fix permissions, then run the same command again") from None
    run.succeeded += 1
    run.written.append(written.path)
    if written.beside:
        note = f"{item.output} was edited since it was written; kept, the new answer is in {written.path}"
        ctx.say(f"  ! {note}")
        ctx.store.add_event("kept_edit", note, job_id=run.job_id)
    truncated = " — stopped at max_tokens" if answer.message.get("stop_reason") == "max_tokens" else ""
    root = data_root.resolve()
    output = Path(item.output)
    shown = output.relative_to(root) if output.is_relative_to(root) else output
    ctx.say(f"  ✓ {item.custom_id} → {shown} ({answer.seconds:.1f} s{tries}){truncated}")
    return {"id": row["id"], "outcome": Outcome.SUCCEEDED, "output_sha256": written.sha256, "written_at": now_iso(),
            "stop_reason": answer.message.get("stop_reason"), **usage_fields(answer.message)}


def _report(ctx, run: NowRun, title: str) -> int:
    job = ctx.store.get_job(run.job_id)
    cost = recorded_cost(ctx.config, ctx.store.usage_receipts(job_id=run.job_id))
    payload = {"job_id": run.job_id, "title": title, "mode": "now", "state": job["state"], "requests": run.sent,
               "succeeded": run.succeeded, "failed": run.failed, "retries": run.retries,
               "token_budget_waits": run.budget_waits, "outputs": run.written, "assembled": run.assembled,
               "cost_usd": round(cost.standard, 4), "unpriced_models": list(cost.unknown_models)}
    if ctx.json_output:
        ctx.emit_json(payload)
    else:
        unpriced = f" (no price for {', '.join(cost.unknown_models)})" if cost.unknown_models else ""
        ctx.say(f"Done: {title} — {job['state']}: {run.succeeded} of {run.sent} written, {len(run.failed)} failed, "
                f"{run.retries} retries; cost ${cost.standard:.4f} at the standard API price{unpriced}")
        if run.failed:
            ctx.say("Run the same command again to send the failed ones (written story notes are reused).")
    return 0 if job["state"] == "done" else 1
