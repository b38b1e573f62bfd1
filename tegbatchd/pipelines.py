"""Generic stage chaining: when a stage's batches are all retrieved, run its local step, build the next
stage from the written outputs and submit it; when the last one is done, finish the job and queue its
notification (once).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from tegbatchd.locks import file_lock
from tegbatchd.submission import items_from_plan, record_stage, send_intent

log = logging.getLogger(__name__)

DONE_BATCH_STATES = ("retrieved", "failed")


class RequestsFile:
    """A job of one stage whose requests come from a JSONL file, fixed at submit time."""

    kind = "requests"

    def title(self, spec: dict) -> str:
        return f"{spec.get('label') or 'requests'} from {Path(spec['source']).name}"

    def stages(self, spec: dict) -> list[str]:
        return ["requests"]

    def build_stage(self, spec, index, data_root, config):  # pragma: no cover - submitted at submit time
        raise RuntimeError("a requests-file job has no stage to build")

    def after_stage(self, spec, index, data_root, config) -> list[Path]:
        return []


def get_pipeline(kind: str):
    """The pipeline object for a job kind."""
    if kind == "requests":
        return RequestsFile()
    from tegbatchd.teg.pipelines import PIPELINES

    return PIPELINES[kind]


@dataclass
class JobProgress:
    """What a job has produced: outputs per stage, failures, and the files assembled locally."""

    ready: int = 0                  # successful outputs of the last stage
    failed: list[str] = field(default_factory=list)   # custom_ids with no success in any attempt
    pending: int = 0
    written: int = 0                # all successful outputs, every stage
    retry_batches: list[str] = field(default_factory=list)
    attempts: int = 0               # requests sent, retries included
    folder: str | None = None       # deepest folder holding the last stage's successful outputs


def job_progress(store, job: dict, *, folder: bool = False) -> JobProgress:
    """Summarize a job's requests: the latest attempt per output decides. Counted by SQLite, so a job of
    100,000 requests costs a few milliseconds; with folder=True also find the outputs' common folder."""
    written, ready, pending, attempts, last_seq = store.job_output_counts(job["id"])
    failed = store.job_failed_outputs(job["id"])
    progress = JobProgress(ready=ready, failed=[cid for cid, _ in failed], pending=pending, written=written,
                           retry_batches=sorted({b for _, b in failed if b}), attempts=attempts)
    if folder:
        progress.folder = _common_folder(store.job_written_outputs(job["id"]), last_seq)
    return progress


def _common_folder(written, last_seq: int) -> str | None:
    """The deepest folder holding every successful output of the last stage (else of every stage)."""
    folders: dict[int, str] = {}    # per stage seq
    for seq, output in written:
        path, known = os.path.dirname(output), folders.get(seq)
        folders[seq] = path if known is None or known == path else os.path.commonpath((known, path))
    if not folders:
        return None
    return folders.get(last_seq) or os.path.commonpath(list(folders.values()))


def _recorded_outputs(store, job_id: str) -> set[str]:
    """Outputs this job need not send again: written, or recorded in a request still under way."""
    recorded = {output for _, output in store.job_written_outputs(job_id)}
    recorded.update(r["output_path"] for r in store.job_requests(job_id) if r["outcome"] is None)
    return recorded


def advance_job(ctx, get_client, job: dict) -> list[str]:
    """Move a job forward as far as it can go now. Returns human-readable messages of what happened.

    get_client() returns the API client (created only when a stage must be submitted). One process at a
    time advances a job (a lock); another one finding it busy returns at once.
    """
    if job.get("mode") == "now":
        return []  # run by its own `--now` process (tegbatchd.immediate), never batched by the poller
    with file_lock(ctx.paths.lock_dir / f"job-{job['id']}.lock", wait=0) as mine:
        if not mine:
            return []
        return _advance(ctx, get_client, job)


def _advance(ctx, get_client, job: dict) -> list[str]:
    store = ctx.store
    pipeline = get_pipeline(job["kind"])
    data_root = Path(job["data_root"])
    messages: list[str] = []
    for stage in store.stages(job["id"]):
        if stage["state"] in ("retrieved", "skipped"):
            continue
        if stage["state"] in ("waiting", "building"):
            # 'building' here means a process died while recording this stage (we hold the job's lock):
            # build it again; what it recorded already is left out below and is sent by reconcile
            store.set_stage_state(stage["id"], "building")
            try:
                plan = pipeline.build_stage(job["spec"], stage["seq"], data_root, ctx.config)
            except Exception as exc:
                store.set_stage_state(stage["id"], "waiting")
                store.add_event("stage_error", f"{stage['name']}: {exc}", job_id=job["id"])
                raise
            done = _recorded_outputs(store, job["id"])
            items = [i for i in items_from_plan(plan.requests, data_root) if str(i.output) not in done]
            had_intents = bool(store.intents_of_stage(stage["id"]))
            if not items:
                store.set_stage_state(stage["id"], "retrieved" if had_intents else "skipped", plan.notes)
                messages.append(f"{job['title']}: stage {stage['name']} has nothing to send")
                continue
            intent_ids = record_stage(ctx, job["id"], stage, items)
            store.set_stage_state(stage["id"], "submitted", plan.notes)
            client = get_client()
            for intent_id in intent_ids:
                result = send_intent(ctx, client, intent_id)
                if result.batch:
                    messages.append(f"{job['title']}: submitted stage {stage['name']} as batch "
                                    f"{result.batch['id']} ({len(items)} requests)")
                    if ctx.config["notifications"]["stage_submitted"]:
                        store.add_notice(f"stage:{job['id']}:{stage['seq']}:{intent_id}", "stage_submitted",
                                         f"{job['title']}: {stage['name']} submitted",
                                         f"{len(items)} requests, batch {result.batch['id']}", job_id=job["id"])
                else:
                    messages.append(f"{job['title']}: stage {stage['name']}: {result.message}")
            return messages
        # submitted: done when every intent has a batch and every batch is retrieved (or failed)
        intents = store.intents_of_stage(stage["id"])
        if any(i["state"] == "open" for i in intents):
            return messages
        batches = [store.get_batch(i["batch_id"]) for i in intents if i["batch_id"]]
        if any(b["local_state"] not in DONE_BATCH_STATES for b in batches):
            return messages
        # 'assembling' until the local step is done: a crash in it leaves the stage there, and the next
        # run does the step again (it only rewrites files atomically) instead of skipping it for good
        if stage["state"] != "assembling" and not store.claim_stage(stage["id"], stage["state"], "assembling"):
            return messages
        written = pipeline.after_stage(job["spec"], stage["seq"], data_root, ctx.config)
        store.set_stage_state(stage["id"], "retrieved")
        if written:
            messages.append(f"{job['title']}: assembled {len(written)} file(s) after {stage['name']}")
    finish_job(ctx, job)
    return messages


def finish_job(ctx, job: dict) -> str:
    """Set the job's final state and queue its notification (once per outcome)."""
    store = ctx.store
    progress = job_progress(store, job, folder=True)
    state = "done" if not progress.failed else ("partial" if progress.written else "failed")
    notifications = ctx.config["notifications"]["enabled"]
    folder = progress.folder
    if state == "done":
        title = f"{job['title']} ready — {progress.ready} file{'s' if progress.ready != 1 else ''}"
        body = f"Written under {folder}" if folder else "All outputs written"
        key = f"job-done:{job['id']}"
    else:
        total = progress.ready + len(progress.failed)
        title = f"{job['title']}: {progress.ready} of {total} ready, {len(progress.failed)} failed"
        retry = " ".join(f"tegbatchd retry {b}" for b in progress.retry_batches) or "tegbatchd list"
        body = f"Run: {retry}"
        key = f"job-{state}:{job['id']}:{progress.attempts}"
    if notifications:  # queued before the job leaves 'active': a crash in between must not lose it
        store.add_notice(key, f"job_{state}", title, body, job_id=job["id"], open_path=folder,
                         urgency="normal" if state == "done" else "critical")
    store.set_job_state(job["id"], state)
    store.add_event(f"job_{state}", title, job_id=job["id"])
    return title
