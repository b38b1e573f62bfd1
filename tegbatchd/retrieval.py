"""Retrieving a batch's results into its recorded output paths: streamed, atomic, idempotent, resumable."""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from tegbatchd import api as api_mod
from tegbatchd.engine.states import ARCHIVED, UNSAFE_PATH, BatchState, Outcome
from tegbatchd.errors import UserError
from tegbatchd.locks import file_lock
from tegbatchd.outputs import message_text
from tegbatchd.paths import ensure_dir, write_private
from tegbatchd.store import RetrievalRow, now_iso
from tegbatchd.writer import UnsafePath, Writer, Written

log = logging.getLogger(__name__)

GROUP = 500  # files written, synced once, then recorded in one transaction (by the recorder thread)
LOOKUP = 250  # result lines looked up in the store at a time (no map of the whole batch is held)
WRITTEN_SAMPLE = 10  # paths a report names (memory stays flat whatever the batch's size)
STOP = threading.Event()  # set by the daemon on SIGTERM: finish the file being written, record, return


@dataclass
class RetrieveReport:
    batch_id: str
    api_status: str
    state: str                          # not_ended | retrieved | already | incomplete | busy | foreign
    written: int = 0                    # files this run wrote (a count: a batch is up to 100,000 files)
    written_sample: list[str] = field(default_factory=list)  # the first WRITTEN_SAMPLE of them
    failures: list[dict] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)       # outputs refused: a folder became a symlink
    kept_edits: list[str] = field(default_factory=list)   # NAME.new.md written beside a hand-edited output
    total: int = 0
    succeeded: int = 0
    message: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _text(value, limit: int | None = None) -> str | None:
    return value[:limit] if isinstance(value, str) else None


_USAGE = (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
          ("cache_write_tokens", "cache_creation_input_tokens"), ("cache_read_tokens", "cache_read_input_tokens"))


def _count(value) -> int:
    return value if type(value) is int and 0 <= value < 2**63 else 0


def _usage(message: dict) -> dict:
    """Token counts of a message by record field (anything that is not a sane count recorded as 0): input,
    output, cache writes (all, and the 1-hour part of them), cache reads, thinking (part of output)."""
    return dict(zip(TOKEN_FIELDS, _tokens(message), strict=True))


TOKEN_FIELDS = tuple(key for key, _ in _USAGE) + ("cache_write_1h_tokens", "thinking_tokens")


def _tokens(message: dict) -> tuple[int, int, int, int, int, int]:
    """Token counts of a message, in TOKEN_FIELDS' order (anything that is not a sane count recorded as 0)."""
    usage = message.get("usage")
    if type(usage) is not dict:
        return 0, 0, 0, 0, 0, 0
    get = usage.get
    write = _count(get("cache_creation_input_tokens"))
    creation = get("cache_creation")
    one_hour = min(_count(creation.get("ephemeral_1h_input_tokens")), write) if type(creation) is dict else 0
    details = get("output_tokens_details")
    thinking = _count(details.get("thinking_tokens")) if type(details) is dict else 0
    return (_count(get("input_tokens")), _count(get("output_tokens")), write, _count(get("cache_read_input_tokens")),
            one_hour, thinking)


def succeeded_record(request_id: int, message: dict, at: str) -> dict:
    """The record of a succeeded result, every field present (recorded in one C call); its sha256 is filled
    in once the file is written."""
    tokens = _tokens(message)
    return {"id": request_id, "outcome": Outcome.SUCCEEDED, "error_type": None, "error_message": None,
            "input_tokens": tokens[0], "output_tokens": tokens[1], "cache_write_tokens": tokens[2],
            "cache_read_tokens": tokens[3], "cache_write_1h_tokens": tokens[4], "thinking_tokens": tokens[5],
            "stop_reason": _text(message.get("stop_reason")), "output_sha256": None, "written_at": at}


def _outcome(result: dict) -> dict:
    """Record fields for a non-success result line (whatever shape its fields have)."""
    kind = result.get("type")
    if kind == "errored":
        found = result.get("error")
        envelope: dict = found if isinstance(found, dict) else {}
        nested = envelope.get("error")
        inner: dict = nested if isinstance(nested, dict) else envelope
        return {"outcome": Outcome.ERRORED, "error_type": _text(inner.get("type")) or "unknown_error",
                "error_message": _text(inner.get("message"), 500) or ""}
    if kind in (Outcome.CANCELED, Outcome.EXPIRED):
        return {"outcome": Outcome(kind)}
    return {"outcome": Outcome.ERRORED, "error_type": "unknown_result_type", "error_message": f"result type {kind!r}"[:500]}


_decode = json.JSONDecoder().decode  # (json.loads on bytes first guesses their encoding: the API's is UTF-8)


def _parse(line: bytes) -> tuple[str, dict] | None:
    """The custom_id and result object of a results line, or None when the line is not one."""
    try:
        obj = _decode(line.decode("utf-8"))
    except (ValueError, RecursionError):  # (UnicodeDecodeError is a ValueError)
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str) or not isinstance(obj.get("result"),
                                                                                                   dict):
        return None
    return obj["custom_id"], obj["result"]


def _verify_written(store, intent_id: int) -> list[int]:
    """Forget records whose file has gone (power loss, deleted by hand) so they are written again.

    Return their request ids."""
    gone = [rid for rid, path in store.written_of_intent(intent_id) if not os.path.exists(path)]
    if gone:
        store.forget_written(gone)
    return gone


def retrieve_batch(ctx, client, batch_id: str, *, wait: float | None = None, on_file=None,
                   force: bool = False) -> RetrieveReport:
    """Write an ended batch's results to their recorded paths and record each outcome.

    Holds the batch's lock (one writer per batch; wait=0 returns state "busy" when another process has
    it). Resumes where an earlier run stopped; running it again writes nothing new. Raise UserError on a
    write error (disk full, read-only): what was written is recorded and the batch stays retrievable.
    An output whose folder became a symlink is recorded as failed (unsafe_path); an output edited by
    hand since it was written is kept and the answer written beside it (NAME.new.md), unless force (or
    the job's own --force).
    """
    store = ctx.store
    with file_lock(ctx.paths.lock_dir / f"batch-{batch_id}.lock", wait=wait) as mine:
        batch = store.get_batch(batch_id)
        if not mine:
            return RetrieveReport(batch_id, batch["api_status"], "busy", message="another process is retrieving it")
        intent_id = batch["intent_id"]
        rewritten = _verify_written(store, intent_id)
        total, open_count = store.intent_open_count(intent_id)
        unlearned = max(0, batch["request_count"] - total)  # an imported batch: requests its results will name
        total, open_count = total + unlearned, open_count + unlearned
        if batch["api_status"] != "ended":
            info = client.retrieve(batch_id)  # NotFound just after create: raised, the caller tries later
            store.update_batch_status(info)
            batch = store.get_batch(batch_id)
            if batch["api_status"] != "ended":
                return RetrieveReport(batch_id, batch["api_status"], "not_ended", total=total)
        if batch["reconciled"] and not batch["verified_at"] and not batch["archived_at"]:  # reconcile matched it:
            # ours only if its ids say so (an archived one writes nothing: its requests become failures)
            refused = _refuse_foreign(ctx, client, batch, total)
            if refused is not None:
                return refused
        report = RetrieveReport(batch_id, "ended", "retrieved", total=total)
        if not open_count:
            if batch["local_state"] != BatchState.RETRIEVED:
                store.move_batch(batch_id, BatchState.RETRIEVED)
            report.state = "already"
            _summarize(report, store, batch_id)
            return report
        if batch["archived_at"]:
            report.state = "archived"
            report.message = ("its results were archived (29 days after creation) before they were retrieved: "
                              f"{open_count} request(s) recorded as failures of kind archived")
            store.settle_batch(batch_id, ARCHIVED, "results archived before they were retrieved")
            _summarize(report, store, batch_id)
            return report
        store.move_batch(batch_id, BatchState.RETRIEVING)
        if rewritten:
            report.anomalies.append(f"{len(rewritten)} recorded file(s) were missing and will be written again")
        job = store.get_job(batch["job_id"])
        writer = Writer(job["data_root"], recorded=store.recorded_shas,
                        force=force or bool(job["spec"].get("force")), helper=True)
        learn = _learner(store, job, intent_id) if job["kind"] == "import" else None
        try:
            with store.synced_by_caller():  # each group's record waits for its files' sync, not a sync of its own
                _stream(ctx, client, job["id"], batch_id, intent_id, writer, report, on_file, learn)
        finally:
            writer.close()
        if report.state == "retrieved":
            missing = store.mark_missing(intent_id)
            if missing:
                report.anomalies.append(f"{missing} request(s) had no result line")
            if unlearned:
                short = batch["request_count"] - store.intent_open_count(intent_id)[0]
                if short > 0:
                    report.anomalies.append(f"{short} request(s) of this imported batch had no result line "
                                            "it could be written from")
                report.total = store.intent_open_count(intent_id)[0]
            store.move_batch(batch_id, BatchState.RETRIEVED)
            _summarize(report, store, batch_id)
            _write_summary(ctx, batch_id, report)
        return report


def _refuse_foreign(ctx, client, batch: dict, total: int) -> RetrieveReport | None:
    """An adopted batch, checked before anything of it is written: None when it is ours (recorded as
    verified); else the report of a foreign batch (recorded apart, its intent open to be sent again) or of
    a check the stream cut short (tried again on the next run)."""
    from tegbatchd import provenance

    verdict = provenance.check_adopted(ctx.store, client, batch)
    if verdict.ours:
        ctx.store.mark_verified(batch["id"])
        return None
    if verdict.ours is None:
        return RetrieveReport(batch["id"], "ended", "incomplete", total=total,
                              message=f"its custom_ids are not checked yet ({verdict.reason}); nothing written")
    ctx.store.disown_batch(batch["id"], verdict.reason)
    note = (f"batch {batch['id']}, matched with an unclear create, is not this job's: {verdict.reason}; nothing "
            "of it is written and the requests are sent again")
    ctx.store.add_event("foreign_batch", note, job_id=batch["job_id"], batch_id=batch["id"])
    return RetrieveReport(batch["id"], "ended", "foreign", total=total, message=note)


class _Group:
    """Results on their way to the store, GROUP at a time, in three overlapping steps: each file is made
    as its line is read (by the write helper process on Linux, else by this thread); a group later its
    files' outcomes are collected and the group handed to the recorder thread (its own connection), which
    syncs the disk and records it in one transaction. A group is never recorded before its files are
    made and synced; two groups at most are in flight: when a group is full, the one before it is handed
    on and the one before that has landed (recorded, reported, or its error raised here)."""

    def __init__(self, ctx, job_id: str, batch_id: str, writer: Writer, report: RetrieveReport, on_file):
        self.store, self.batch_id, self.writer, self.report, self.on_file = ctx.store, batch_id, writer, report, on_file
        self.job_id = job_id
        self.records: dict[int, dict] = {}
        self.files = 0
        self.made: tuple[dict[int, dict], int] | None = None  # the group whose files are being made (helper)
        self.flying: dict[int, dict] = {}              # the group being synced and recorded
        self.flying_written: list[tuple[Written, str]] = []
        self.future: Future | None = None
        self.unsafe: dict[str, int] = {}
        self._recorder: ThreadPoolExecutor | None = None
        self._twin = None                              # the recorder thread's own connection (a Store)

    def queued(self, request_id: int) -> bool:
        """Whether a result of this request is already on its way (this group or one in flight)."""
        return (request_id in self.records or request_id in self.flying
                or (self.made is not None and request_id in self.made[0]))

    def add(self, record: dict, path: str | None = None, text: str | None = None) -> None:
        self.records[record["id"]] = record
        if path is not None:
            self.files += 1  # (counted first: put gives a result even when it is interrupted)
            self.writer.put(path, text or "", (record, path))
        if len(self.records) >= GROUP:
            self._send()

    def flush(self) -> None:
        """Record everything added so far, and wait for it."""
        try:
            if self.records or self.files:
                self._send()
            if self.made is not None:
                made, self.made = self.made, None
                self._pass_on(*made)
        finally:
            self._land()

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.shutdown()
            self._recorder = None
        if self._twin is not None:
            self._twin.close()
            self._twin = None

    def _send(self) -> None:
        """End the group: its files are being made (by the write helper, if there is one) while the next
        group is parsed; the group before it, made by now, is passed on to the recorder thread."""
        records, files = self.records, self.files
        self.records, self.files = {}, 0
        self.writer.mark()
        made, self.made = self.made, (records, files)
        if made is not None:
            self._pass_on(*made)

    def _pass_on(self, records: dict[int, dict], files: int) -> None:
        """Hand a group to the recorder thread (once the group before it has landed); a write error is
        raised once what was written of the group is recorded."""
        written, error = self._settle_writes(records, self.writer.collect(files) if files else [])
        self._land()
        if self._recorder is None:
            self._recorder = ThreadPoolExecutor(1, thread_name_prefix="retrieval-recorder")
            self._twin = self.store.twin()
        self.flying, self.flying_written = records, written
        self.future = self._recorder.submit(self._sync_and_record, records, bool(files))
        if error is not None:
            self._land()
            self._raise(error)

    def _settle_writes(self, records: dict[int, dict], results) -> tuple[list[tuple[Written, str]], BaseException | None]:
        """Each write's outcome into its record (sha256; an unsafe path a failure); a record whose file was
        not written is dropped (fetched again on the next run). Return (what was written, the first error)."""
        written: list[tuple[Written, str]] = []
        error: BaseException | None = None
        for (record, output), result in results:
            if isinstance(result, Written):
                record["output_sha256"] = result.sha256
                written.append((result, output))
            elif isinstance(result, UnsafePath):
                record.update(outcome=Outcome.ERRORED, error_type=UNSAFE_PATH, error_message=result.message[:500],
                              written_at=None, stop_reason=None)
                self.unsafe[result.where] = self.unsafe.get(result.where, 0) + 1
                self.report.unsafe.append(result.path)
            else:
                records.pop(record["id"], None)
                error = error or result
        return written, error

    def _sync_and_record(self, records: dict[int, dict], wrote: bool) -> None:
        """In the recorder thread: the disk synced, then the group recorded in one transaction."""
        if wrote:
            self.writer.sync()
        if records:
            assert self._twin is not None
            self._twin.record_results(list(records.values()))

    def _land(self) -> None:
        """Wait for the group in flight: report its files, or raise its error (a failed sync: nothing of it
        was recorded)."""
        future, self.future = self.future, None
        if future is None:
            return
        written, self.flying_written, self.flying = self.flying_written, [], {}
        error = future.exception()
        if error is not None:
            self._raise(error)
        for result, output in written:
            self._written(result, output)

    def _raise(self, error: BaseException) -> None:
        if not isinstance(error, OSError | UnsafePath):
            raise error  # interrupted (Ctrl-C) while writing, or a fault of ours: what was recorded stays
        path = getattr(error, "filename", None) or "an output"
        why = getattr(error, "strerror", None) or error
        self.store.add_event("write_error", f"{path}: {why}", batch_id=self.batch_id)
        raise UserError(f"cannot write {path}: {why}",
                        next_step=f"free space or fix permissions, then `tegbatchd retrieve {self.batch_id}` "
                                  "(what was written is kept)")

    def _written(self, result: Written, output: str) -> None:
        self.report.written += 1
        if len(self.report.written_sample) < WRITTEN_SAMPLE:
            self.report.written_sample.append(result.path if result.beside else output)
        if result.beside:
            self.report.kept_edits.append(result.path)
            note = f"{output}: the file was edited since it was written; kept, the new answer is in {result.path}"
            self.report.anomalies.append(note)
            self.store.add_event("kept_edit", note, job_id=self.job_id, batch_id=self.batch_id)
        if self.on_file:
            self.on_file(result.path)

    def report_unsafe(self) -> None:
        for where, count in self.unsafe.items():
            note = (f"{count} output(s) not written: {where} is a symlink now (after submit); nothing is written "
                    "outside the data root — put the folder back and `tegbatchd retry` them")
            self.report.anomalies.append(note)
            self.store.add_event("unsafe_path", note, batch_id=self.batch_id)


def _learner(store, job: dict, intent_id: int):
    """For a batch adopted by `tegbatchd import`: record the requests its results name (their outputs from
    the job's spec, kept inside the data root) and return their rows; a custom_id with no place is left."""
    from pathlib import Path

    from tegbatchd.errors import InputError
    from tegbatchd.outputs import OutputResolver
    from tegbatchd.pipelines import get_pipeline

    pipeline = get_pipeline("import")
    resolver = OutputResolver(Path(job["data_root"]))

    def learn(results: list[tuple[str, dict]]) -> dict[str, RetrievalRow]:
        rows = []
        for cid, result in results:
            try:
                relative = pipeline.output_for(job["spec"], cid)  # type: ignore[attr-defined]
                path = resolver.resolve(relative) if relative else None
            except InputError:
                path = None
            if path is not None:
                message = result.get("message")
                found = message.get("model") if isinstance(message, dict) else None
                model = found if isinstance(found, str) else None
                rows.append((cid, path, model))
        if rows:
            store.learn_requests(intent_id, rows)
        return store.retrieval_lookup(intent_id, [r[0] for r in rows]) if rows else {}

    return learn


def _stream(ctx, client, job_id: str, batch_id: str, intent_id: int, writer: Writer, report: RetrieveReport,
            on_file, learn=None) -> None:
    """Stream the result lines; look their requests up LOOKUP at a time; write, sync and record by GROUP.
    learn (an imported batch): records the requests the store does not know yet."""
    store = ctx.store
    group = _Group(ctx, job_id, batch_id, writer, report, on_file)
    seen_unknown: set[str] = set()
    waiting: list[tuple[str, dict]] = []

    def settle() -> None:
        rows = store.retrieval_lookup(intent_id, [cid for cid, _ in waiting])
        if learn is not None:
            unknown = {cid: result for cid, result in waiting if cid not in rows and cid not in seen_unknown}
            if unknown:
                rows.update(learn(list(unknown.items())))
        at = now_iso()  # one time for the few hundred results looked up together
        for cid, result in waiting:
            row = rows.get(cid)
            if row is None:
                if cid not in seen_unknown:
                    seen_unknown.add(cid)
                    store.add_event("anomaly", f"result for unknown custom_id {cid!r}", batch_id=batch_id)
                    report.anomalies.append(f"unknown custom_id {cid!r} in the results; not written")
                continue
            if row.done or group.queued(row.id):
                continue  # a repeated line (one already recorded is written again only if its file went)
            if result.get("type") == "succeeded" and isinstance(result.get("message"), dict):
                message = result["message"]
                group.add(succeeded_record(row.id, message, at), row.output_path, message_text(message))
            else:
                group.add({"id": row.id, **_outcome(result)})
        waiting.clear()

    try:
        try:
            for number, line in enumerate(client.result_lines(batch_id), start=1):
                if STOP.is_set():
                    report.state = "incomplete"
                    break
                parsed = _parse(line)
                if parsed is None:
                    report.anomalies.append(f"result line {number} is malformed; skipped")
                    continue
                waiting.append(parsed)
                if len(waiting) >= LOOKUP:
                    settle()
            if waiting and report.state != "incomplete":
                settle()
        except api_mod.StreamCut as exc:
            if waiting:
                settle()
            report.state = "incomplete"
            report.message = f"{exc}; {{left}} result(s) left — they are fetched on the next run"
            store.add_event("stream_cut", str(exc), batch_id=batch_id)
    finally:
        try:
            group.flush()
        finally:
            group.close()
        group.report_unsafe()
    if report.state == "incomplete":
        left = store.intent_open_count(intent_id)[1]
        report.message = (report.message.replace("{left}", str(left)) if report.message else
                          f"stopped on request; {left} result(s) left for the next run")


def _summarize(report: RetrieveReport, store, batch_id: str) -> None:
    report.succeeded, report.failures, report.truncated = store.batch_results_summary(batch_id)


def _write_summary(ctx, batch_id: str, report: RetrieveReport) -> None:
    summary = {"batch_id": batch_id, "total_requests": report.total, "successful": report.succeeded,
               "failed": len(report.failures), "failures": report.failures, "truncated": report.truncated,
               "anomalies": report.anomalies, "retrieved_at": now_iso()}
    ensure_dir(ctx.paths.summary_dir)
    write_private(ctx.paths.summary_dir / f"{batch_id}.json", json.dumps(summary, indent=2))
