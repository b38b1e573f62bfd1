"""One poll cycle: reconcile unclear submissions, refresh pending batches in a few list calls, retrieve
what ended, advance jobs (submit their next stage), queue notifications. No API call when nothing is
pending, and the SDK is not even imported then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tegbatchd import api as api_mod
from tegbatchd.engine import outcome
from tegbatchd.engine.events import Event
from tegbatchd.engine.loop import BatchSender, advance
from tegbatchd.engine.states import BATCH_GONE, JobState
from tegbatchd.errors import UserError
from tegbatchd.retrieval import retrieve_batch
from tegbatchd.submission import reconcile

log = logging.getLogger(__name__)

ARCHIVE_AFTER = timedelta(days=29)
ARCHIVE_WARNING = timedelta(days=3)
LIST_PAGE = 100
# A batch missing from the API (a transient 404 just after create, a list that lags) is given up only
# after this long and this many polls: never on one answer.
GONE_AFTER = timedelta(minutes=10)
GONE_POLLS = 3


@dataclass
class PollReport:
    pending_before: int = 0
    api_calls: int = 0
    changes: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    retrieved: list[dict] = field(default_factory=list)
    still_pending: int = 0
    error: str | None = None         # unavailable | key_rejected | no_key | internal (daemon only)
    error_detail: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "events"}


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def _when(ts: str) -> datetime:
    """A timestamp the store always has (created_at)."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def make_client(ctx):
    """The API client for this context: key and base URL resolved (ctx.api_env, else the environment and
    the config) and checked now, before anything is recorded or sent (NoApiKey, BadApiKey, BadEndpoint)."""
    api_env = ctx.api_env or {}
    key = api_env.get("ANTHROPIC_API_KEY") or api_mod.resolve_api_key(ctx.config["api_key_file"])
    base_url = api_env.get("ANTHROPIC_BASE_URL") or api_mod.check_endpoint(ctx.config["api"].get("base_url"))
    return api_mod.BatchApi(key, base_url=base_url, create_timeout=ctx.config["api"]["create_timeout_seconds"])


def next_poll_time(created_at: str | None, now: datetime, config) -> datetime:
    """When to look at a running batch again: the poll interval, longer for batches that have run long."""
    base = timedelta(minutes=config["poll_interval_minutes"])
    cap = timedelta(minutes=config["max_poll_interval_minutes"])
    age = now - (_parse(created_at) or now)
    factor = 1 if age < timedelta(hours=1) else 2 if age < timedelta(hours=6) else 4
    return now + min(base * factor, max(cap, base))


def refresh_pending(ctx, client, pending: list[dict], now: datetime) -> list[str]:
    """Update pending batches from list pages (newest first) until past the oldest; retrieve the rest."""
    store = ctx.store
    waiting = {b["id"]: b for b in pending if b["api_status"] != "ended"}
    if not waiting:
        return []
    oldest = min(_when(b["created_at"]) for b in waiting.values())
    changes = []
    seen = set()
    after = None
    while True:
        page, has_more, after, _clock = client.list_page(limit=LIST_PAGE, after_id=after)
        for info in page:
            if info["id"] in waiting:
                seen.add(info["id"])
                changes += _apply(store, waiting[info["id"]], info, now, ctx.config)
        if not page or not has_more or not after or _when(page[-1]["created_at"]) < oldest:
            break
    for batch_id in set(waiting) - seen:
        try:
            info = client.retrieve(batch_id)
        except api_mod.NotFound:
            changes += _missing(store, batch_id, now)
            continue
        changes += _apply(store, waiting[batch_id], info, now, ctx.config)
    return changes


def _missing(store, batch_id: str, now: datetime) -> list[str]:
    """The API said it does not know a batch: give it up only once that has lasted (see GONE_AFTER)."""
    since, polls = store.note_missing(batch_id, now.isoformat())
    started = _parse(since) or now
    if now - started < GONE_AFTER or polls < GONE_POLLS:
        return []
    store.settle_batch(batch_id, BATCH_GONE, f"the API has not known this batch since {since}")
    return [f"batch {batch_id} is gone from the API (deleted?); its requests are failures retry can resend"]


def _apply(store, old: dict, info: dict, now: datetime, config) -> list[str]:
    if old.get("missing_since"):
        store.note_missing(info["id"], None)
    store.update_batch_status(info, next_poll_at=next_poll_time(info["created_at"], now, config).isoformat())
    if info["processing_status"] != old["api_status"]:
        return [f"batch {info['id']}: {old['api_status']} → {info['processing_status']}"]
    return []


def _archive_warnings(ctx, now: datetime) -> None:
    """Ended batches not retrieved 3 days before their results are archived: one notice per job."""
    for batch in ctx.store.pending_batches():
        created = _parse(batch["created_at"])
        if created and batch["api_status"] == "ended" and created + ARCHIVE_AFTER - now < ARCHIVE_WARNING:
            days = max(0, (created + ARCHIVE_AFTER - now).days)
            job = ctx.store.get_job(batch["job_id"])
            ctx.store.add_notice(f"archive-soon:{batch['job_id']}", "archive_soon",
                                 f"{job['title']}: results are archived in {days} day(s)",
                                 f"Run: tegbatchd retrieve {batch['job_id']}", job_id=batch["job_id"],
                                 urgency="critical")


def poll_once(ctx, *, client=None, due_only: bool = False, now: datetime | None = None) -> PollReport:
    """Run one poll cycle. With due_only, skip the API unless a batch's next poll time has come or
    something waits to be submitted. Never raises for API trouble: it is reported in the result.
    """
    store = ctx.store
    now = now or datetime.now(UTC)
    report = PollReport()
    if not store.has_pending():
        return report
    pending = store.pending_batches()
    report.pending_before = len(pending)
    if due_only and not _anything_due(ctx, pending, now):
        report.still_pending = len(pending)
        return report
    holder: dict = {"client": client}

    def get_client():
        if holder["client"] is None:
            holder["client"] = make_client(ctx)
        return holder["client"]

    try:
        blocked: list[tuple[str, str]] = []
        report.changes += reconcile(ctx, get_client(), blocked) if store.open_intents(moving_only=True) else []
        for job_id, reason in blocked:
            job = store.get_job(job_id)
            if job and job["state"] == JobState.ACTIVE:
                outcome.block(ctx, job, reason, kind="billing", next_step=f"top up, then tegbatchd retry {job_id}")
        pending = store.pending_batches()
        report.changes += refresh_pending(ctx, get_client(), pending, now) if pending else []
        for batch in store.pending_batches():
            if batch["api_status"] != "ended":
                continue
            try:
                result = retrieve_batch(ctx, get_client(), batch["id"], wait=0)
            except (api_mod.AuthRejected, api_mod.Unavailable):
                raise
            except api_mod.NotFound:  # a transient 404: the next poll tries again
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. disk full: recorded, the batch stays retrievable
                text = exc.message if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                log.warning("batch %s: %s", batch["id"], text, exc_info=not isinstance(exc, UserError | OSError))
                store.add_event("retrieve_error", text, job_id=batch["job_id"], batch_id=batch["id"])
                report.changes.append(f"batch {batch['id']}: {text}")
                continue
            if result.state == "foreign":
                report.changes.append(result.message)
            if result.state in ("retrieved", "already", "incomplete", "archived"):
                report.retrieved.append(result.as_dict())
                report.changes.append(f"batch {batch['id']}: {_retrieved_line(result)}")
        sender = BatchSender(get_client)
        for job in store.active_jobs():
            done = advance(ctx, job["id"], sender)
            report.events += done.events
            report.changes += [str(e) for e in done.events]
        _archive_warnings(ctx, now)
        store.kv_set("key_rejected_since", None)
        store.kv_set("no_key_since", None)
    except api_mod.AuthRejected:
        report.error, report.error_detail = "key_rejected", "the API key was rejected"
        since = store.kv_get("key_rejected_since") or now.isoformat()
        store.kv_set("key_rejected_since", since)
        store.add_notice(f"key-rejected:{since}", "key_rejected", "tegbatchd: API key rejected",
                         "Check ANTHROPIC_API_KEY or your api_key_file; polling waits until the config changes",
                         urgency="critical")
    except api_mod.NoApiKey as exc:
        report.error, report.error_detail = "no_key", exc.render()
        since = store.kv_get("no_key_since") or now.isoformat()  # one notice until a poll works again
        store.kv_set("no_key_since", since)
        what = "bad API endpoint" if isinstance(exc, api_mod.BadEndpoint) else "no API key"
        store.add_notice(f"no-key:{since}", "no_key", f"tegbatchd: {what}",
                         f"{exc.message}; pending work waits — put the key in api_key_file "
                         "(`tegbatchd service install --store-key`) or the OS keyring",
                         urgency="critical")
    except (api_mod.Unavailable, api_mod.NotFound, api_mod.Rejected) as exc:
        report.error, report.error_detail = "unavailable", str(exc)
    finally:
        if holder["client"] is not None:
            report.api_calls = holder["client"].calls
    report.still_pending = len(store.pending_batches())
    return report


def _retrieved_line(result) -> str:
    if result.state == "incomplete":
        return f"partly retrieved ({result.written} written); {result.message}"
    if result.state == "archived":
        return result.message
    from tegbatchd.engine.events import kept_sentence

    return (f"retrieved {result.succeeded}/{result.total} successful, {result.written} file(s) written"
            + kept_sentence(result.kept_edits))


def _anything_due(ctx, pending: list[dict], now: datetime) -> bool:
    from tegbatchd.engine.decide import Idle, Wait, next_step
    from tegbatchd.engine.loop import load_view

    store, config = ctx.store, ctx.config
    if store.open_intents(moving_only=True):
        return True
    for job in store.active_jobs():
        if not isinstance(next_step(load_view(ctx, job)), Wait | Idle):
            return True
    interval = timedelta(minutes=config["poll_interval_minutes"])
    for batch in pending:
        if batch["api_status"] == "ended":
            return True
        due = _when(batch["next_poll_at"]) if batch["next_poll_at"] else _when(batch["created_at"]) + interval
        if due <= now:
            return True
    return not pending
