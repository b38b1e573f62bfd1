"""Retrieving a batch's results into its recorded output paths: streamed, atomic, idempotent, resumable."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field

from tegbatchd import api as api_mod
from tegbatchd.engine.states import ARCHIVED, MISSING_RESULT, BatchState, Outcome
from tegbatchd.errors import UserError
from tegbatchd.locks import file_lock
from tegbatchd.outputs import AtomicWriter, message_text, remove_stale_temps
from tegbatchd.paths import ensure_dir, write_private
from tegbatchd.store import RetrievalRow, now_iso

log = logging.getLogger(__name__)

GROUP = 500  # files written, synced once, then recorded in one transaction
STOP = threading.Event()  # set by the daemon on SIGTERM: finish the file being written, record, return


@dataclass
class RetrieveReport:
    batch_id: str
    api_status: str
    state: str                          # not_ended | retrieved | already | incomplete | busy
    written: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    total: int = 0
    succeeded: int = 0
    message: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _text(value, limit: int | None = None) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _tokens(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else 0


def _usage(message: dict) -> dict:
    usage = message.get("usage") if isinstance(message.get("usage"), dict) else {}
    return {
        "input_tokens": _tokens(usage.get("input_tokens")),
        "output_tokens": _tokens(usage.get("output_tokens")),
        "cache_write_tokens": _tokens(usage.get("cache_creation_input_tokens")),
        "cache_read_tokens": _tokens(usage.get("cache_read_input_tokens")),
    }


def _outcome(result: dict) -> dict:
    """Record fields for a non-success result line (whatever shape its fields have)."""
    kind = result.get("type")
    if kind == "errored":
        envelope = result.get("error") if isinstance(result.get("error"), dict) else {}
        inner = envelope.get("error") if isinstance(envelope.get("error"), dict) else envelope
        return {"outcome": Outcome.ERRORED, "error_type": _text(inner.get("type")) or "unknown_error",
                "error_message": _text(inner.get("message"), 500) or ""}
    if kind in (Outcome.CANCELED, Outcome.EXPIRED):
        return {"outcome": Outcome(kind)}
    return {"outcome": Outcome.ERRORED, "error_type": "unknown_result_type", "error_message": f"result type {kind!r}"[:500]}


def _parse(line: bytes) -> tuple[str, dict] | None:
    """The custom_id and result object of a results line, or None when the line is not one."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str) or not isinstance(obj.get("result"),
                                                                                                   dict):
        return None
    return obj["custom_id"], obj["result"]


def _verify_written(store, rows: dict[str, RetrievalRow]) -> list[str]:
    """Forget records whose file has gone (power loss, deleted by hand) so they are written again.

    Return their custom_ids."""
    gone = [cid for cid, r in rows.items() if r.written and not os.path.exists(r.output_path)]
    if gone:
        store.forget_written([rows[cid].id for cid in gone])
    return gone


def retrieve_batch(ctx, client, batch_id: str, *, wait: float | None = None, on_file=None) -> RetrieveReport:
    """Write an ended batch's results to their recorded paths and record each outcome.

    Holds the batch's lock (one writer per batch; wait=0 returns state "busy" when another process has
    it). Resumes where an earlier run stopped; running it again writes nothing new. Raise UserError on a
    write error (disk full, read-only): what was written is recorded and the batch stays retrievable.
    """
    store = ctx.store
    with file_lock(ctx.paths.lock_dir / f"batch-{batch_id}.lock", wait=wait) as mine:
        batch = store.get_batch(batch_id)
        if not mine:
            return RetrieveReport(batch_id, batch["api_status"], "busy", message="another process is retrieving it")
        rows = store.retrieval_rows(batch_id)
        rewritten = _verify_written(store, rows)
        if batch["api_status"] != "ended":
            info = client.retrieve(batch_id)  # NotFound just after create: raised, the caller tries later
            store.update_batch_status(info)
            batch = store.get_batch(batch_id)
            if batch["api_status"] != "ended":
                return RetrieveReport(batch_id, batch["api_status"], "not_ended", total=len(rows))
        remaining = {cid for cid, r in rows.items() if not r.done}.union(rewritten)
        report = RetrieveReport(batch_id, "ended", "retrieved", total=len(rows))
        if not remaining:
            if batch["local_state"] != BatchState.RETRIEVED:
                store.move_batch(batch_id, BatchState.RETRIEVED)
            report.state = "already"
            _summarize(report, store, batch_id)
            return report
        if batch["archived_at"]:
            report.state = "archived"
            report.message = ("its results were archived (29 days after creation) before they were retrieved: "
                              f"{len(remaining)} request(s) recorded as failures of kind archived")
            store.settle_batch(batch_id, ARCHIVED, "results archived before they were retrieved")
            _summarize(report, store, batch_id)
            return report
        store.move_batch(batch_id, BatchState.RETRIEVING)
        remove_stale_temps({os.path.dirname(rows[c].output_path) for c in remaining})
        if rewritten:
            report.anomalies.append(f"{len(rewritten)} recorded file(s) were missing and will be written again")
        _stream(ctx, client, batch_id, rows, remaining, report, on_file)
        if report.state == "retrieved":
            missing = sorted(remaining)
            if missing:
                store.record_results([{"id": rows[c].id, "outcome": Outcome.ERRORED, "error_type": MISSING_RESULT,
                                       "error_message": "no result line for this request"} for c in missing])
                report.anomalies.append(f"{len(missing)} request(s) had no result line")
            store.move_batch(batch_id, BatchState.RETRIEVED)
            _summarize(report, store, batch_id)
            _write_summary(ctx, batch_id, report)
        return report


def _stream(ctx, client, batch_id: str, rows: dict, remaining: set, report: RetrieveReport, on_file) -> None:
    store = ctx.store
    writer = AtomicWriter()
    group: list[dict] = []
    seen_unknown: set[str] = set()

    def flush() -> None:
        if group:
            if any(g.get("written_at") for g in group):
                writer.sync()
            store.record_results(group)
            group.clear()

    try:
        for number, line in enumerate(client.result_lines(batch_id), start=1):
            parsed = _parse(line)
            if parsed is None:
                report.anomalies.append(f"result line {number} is malformed; skipped")
                continue
            cid, result = parsed
            row = rows.get(cid)
            if row is None:
                if cid not in seen_unknown:
                    seen_unknown.add(cid)
                    store.add_event("anomaly", f"result for unknown custom_id {cid!r}", batch_id=batch_id)
                    report.anomalies.append(f"unknown custom_id {cid!r} in the results; not written")
                continue
            if cid not in remaining:
                continue
            if STOP.is_set():
                report.state = "incomplete"
                report.message = f"stopped on request; {len(remaining)} result(s) left for the next run"
                break
            if result.get("type") == "succeeded" and isinstance(result.get("message"), dict):
                message = result["message"]
                path = row.output_path
                try:
                    sha = writer.write(path, message_text(message))
                except OSError as exc:
                    flush()
                    store.add_event("write_error", f"{path}: {exc.strerror}", batch_id=batch_id)
                    raise UserError(f"cannot write {path}: {exc.strerror}",
                                    next_step=f"free space or fix permissions, then `tegbatchd retrieve {batch_id}` "
                                              "(what was written is kept)") from None
                record = {"id": row.id, "outcome": Outcome.SUCCEEDED, "output_sha256": sha, "written_at": now_iso(),
                          "stop_reason": _text(message.get("stop_reason")), **_usage(message)}
                report.written.append(path)  # the row's own string: 8 bytes per file
                if on_file:
                    on_file(path)
            else:
                record = {"id": row.id, **_outcome(result)}
            remaining.discard(cid)
            group.append(record)
            if len(group) >= GROUP:
                flush()
    except api_mod.StreamCut as exc:
        report.state = "incomplete"
        report.message = f"{exc}; {len(remaining)} result(s) left — they are fetched on the next run"
        store.add_event("stream_cut", report.message, batch_id=batch_id)
    finally:
        flush()


def _summarize(report: RetrieveReport, store, batch_id: str) -> None:
    report.succeeded, report.failures, report.truncated = store.batch_results_summary(batch_id)


def _write_summary(ctx, batch_id: str, report: RetrieveReport) -> None:
    summary = {"batch_id": batch_id, "total_requests": report.total, "successful": report.succeeded,
               "failed": len(report.failures), "failures": report.failures, "truncated": report.truncated,
               "anomalies": report.anomalies, "retrieved_at": now_iso()}
    ensure_dir(ctx.paths.summary_dir)
    write_private(ctx.paths.summary_dir / f"{batch_id}.json", json.dumps(summary, indent=2))
