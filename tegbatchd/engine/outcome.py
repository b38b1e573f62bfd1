"""A job's outcome in words a person reads: what it wrote, what failed and why, the one command that helps;
and finishing a job (its notification queued once per outcome, before the job leaves `active`)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tegbatchd import costs
from tegbatchd.engine.states import BUDGET, JobState, failure_kind


@dataclass
class Failure:
    custom_id: str
    stage: str
    outcome: str
    error_type: str | None
    message: str | None
    attempts: int
    kind: str          # transient | billing | canceled | retryable | permanent
    batch_id: str | None

    @property
    def reason(self) -> str:
        return self.error_type or self.outcome


@dataclass
class JobSummary:
    """Counts by output (the latest attempt decides), so they never shrink after a retry."""

    job_id: str
    title: str
    state: str
    written: int = 0            # every file the job wrote: answers and combined/assembled files
    total: int = 0              # written plus the planned files still missing
    in_flight: int = 0
    attempts: int = 0
    failures: list[Failure] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    folder: str | None = None
    blocked_reason: str | None = None

    @property
    def retryable(self) -> list[Failure]:
        return [f for f in self.failures if f.kind != "permanent"]

    def retry_hint(self) -> str | None:
        """The command that would do something about the failures, or None."""
        if self.retryable:
            return f"tegbatchd retry {self.job_id}"
        if self.failures:
            return f"fix the cause, then tegbatchd retry {self.job_id} --all-errors"
        if self.truncated:
            return f"tegbatchd retry {self.job_id} --truncated"
        return None

    def failure_line(self) -> str:
        reasons = Counter(f.reason for f in self.failures)
        most = max((f.attempts for f in self.failures), default=1)
        named = ", ".join(f"{r}" + (f" ×{n}" if n > 1 and len(reasons) > 1 else "") for r, n in reasons.most_common())
        return (f"{len(self.failures)} request(s) failed after {most} attempt{'s' if most != 1 else ''} ({named})")

    def notice(self) -> tuple[str, str, str]:
        """(title, body, urgency) of the job's notification."""
        files = f"{self.written} file{'s' if self.written != 1 else ''}"
        truncated = (f"; {len(self.truncated)} stopped at max_tokens — tegbatchd retry {self.job_id} --truncated"
                     if self.truncated else "")
        if self.state == JobState.DONE:
            body = (f"Written under {self.folder}" if self.folder else "All outputs written") + truncated
            return f"{self.title} ready — {files}", body, "normal"
        if self.state == JobState.CANCELED:
            return f"{self.title} canceled — {files} written", f"Written under {self.folder}" if self.folder \
                else "Nothing was written", "normal"
        title = f"{self.title}: {self.written} of {self.total} files ready"
        body = self.failure_line()
        hint = self.retry_hint()
        return title, body + (f" — {hint}" if hint else "") + truncated, "critical"


def span_folder(spans: list[tuple[str, str]]) -> str | None:
    """The deepest folder holding every path between the least and the greatest of these (in string order,
    every path between two that share a folder prefix `F/` shares it too, so two paths decide it)."""
    if not spans:
        return None
    return os.path.commonpath((os.path.dirname(min(s[0] for s in spans)), os.path.dirname(max(s[1] for s in spans))))


def job_folder(store, job_id: str, last_seq: int, *, planned: bool = False) -> str | None:
    """The deepest folder holding what the job's last stage wrote (else every stage); with planned, what it
    will write when it has written nothing yet. From one row per intent, whatever the job's size."""
    spans = store.job_output_spans(job_id)
    written = [(a, b) for seq, _, _, a, b in spans if a and seq == last_seq] or \
        [(a, b) for _, _, _, a, b in spans if a]
    return span_folder(written or ([(a, b) for _, a, b, _, _ in spans] if planned else []))


def summarize(store, job: dict, *, folder: bool = False) -> JobSummary:
    """Given a job row, return its summary from the store (and the planned files on disk)."""
    from tegbatchd.pipelines import get_pipeline

    counts = store.job_counts(job["id"])
    failures = [Failure(r["custom_id"], r["stage_name"], r["outcome"], r["error_type"], r["error_message"],
                        r["attempt"], failure_kind(r["outcome"], r["error_type"], r["error_message"],
                                                   user_canceled=bool(r["user_canceled"])), r["batch_id"])
                for r in store.latest_failures(job["id"])]
    written = counts["written"] + counts["assembled"]
    missing = 0
    planned = get_pipeline(job["kind"]).planned_outputs(job["spec"])
    if planned is None:
        missing = len(failures)
    else:
        root = Path(job["data_root"])
        missing = sum(1 for rel in planned if not (root / rel).exists())
    summary = JobSummary(job["id"], job["title"], job["state"], written=written, total=written + missing,
                         in_flight=counts["in_flight"], attempts=counts["attempts"], failures=failures,
                         blocked_reason=job.get("blocked_reason"))
    if counts["truncated"]:
        summary.truncated = store.truncated_custom_ids(job["id"])  # names only: a whole batch may be cut
    if folder:
        stages = store.stages(job["id"])
        summary.folder = job_folder(store, job["id"], stages[-1]["seq"] if stages else 0)
    return summary


def finish(ctx, job: dict, state: JobState) -> str:
    """Queue the job's notification for this outcome, then move the job to `state`; return the title.

    The notice's key is the job's outcome count, so a crash between the two steps queues it once."""
    store = ctx.store
    summary = summarize(store, {**job, "state": state}, folder=True)
    title, body, urgency = summary.notice()
    kept = len(kept_edits(store, job["id"]))
    if kept:
        body += f". {kept} file(s) you had edited were kept; the new versions are beside them (NAME.new.md)"
    body += f". {costs.cost_sentence(costs.recorded_cost(ctx.config, store.usage_receipts(job_id=job['id'])), job['mode'])}"
    if ctx.config["notifications"]["enabled"]:
        store.add_notice(f"job:{job['id']}:{job.get('outcomes', 0)}", f"job_{state}", title, body, job_id=job["id"],
                         open_path=summary.folder, urgency=urgency)
    store.move_job(job["id"], state)
    store.add_event(f"job_{state}", title, job_id=job["id"])
    return title


def kept_edits(store, job_id: str) -> list[str]:
    """What the job said of hand-edited files it kept (each once, however often a step ran again)."""
    return list(dict.fromkeys(e["message"] for e in store.events(job_id=job_id, kind="kept_edit")))


def go_on_command(job: dict) -> str:
    """The command that moves a blocked job on: `resume JOB --max-cost X` for one held by the budget (as its
    notice said), else `retry JOB` (after the person fixed what blocked it)."""
    if job.get("blocked_kind") == BUDGET and job.get("blocked_next"):
        return str(job["blocked_next"])
    return f"tegbatchd retry {job['id']}"


def block(ctx, job: dict, reason: str, *, kind: str, next_step: str) -> None:
    """Stop moving a job until the person acts: the reason recorded, one notice naming the job and the
    next step. The job's batches are still polled and retrieved meanwhile."""
    store = ctx.store
    if not store.move_job(job["id"], JobState.BLOCKED, reason=reason, kind=kind, next_step=next_step):
        return
    store.add_event("job_blocked", f"{reason} — {next_step}", job_id=job["id"])
    if ctx.config["notifications"]["enabled"]:
        title = ("Anthropic credit exhausted" if kind == "billing" else
                 f"{job['title']}: held by the budget" if kind == BUDGET else f"{job['title']}: waiting for you")
        blocks = len(store.events(job_id=job["id"], kind="job_blocked"))
        store.add_notice(f"blocked:{job['id']}:{blocks}", "job_blocked", title,
                         f"{job['title']}: {reason} — {next_step}", job_id=job["id"], urgency="critical")
