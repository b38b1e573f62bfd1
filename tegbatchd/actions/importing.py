"""`tegbatchd import PATH... [--kind NAME] [--output TEMPLATE]`: adopt batches the old scripts created.

Each PATH is one of their `batch_results/batch_<id>_info.json` files, a folder of them, or a bare batch id
(then --kind and --output say what it is and where its answers go). Each batch is asked of the API, then
recorded as a one-stage job whose batch is already created (store.adopt_batch): the poller retrieves it
like any other, its requests learned from its results and written where the old scripts wrote them
(or where --output says). Importing a batch twice records one job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tegbatchd import api as api_mod
from tegbatchd.engine.ids import new_job_id
from tegbatchd.errors import InputError
from tegbatchd.locks import file_lock
from tegbatchd.outputs import PLACEHOLDER, render_output
from tegbatchd.polling import make_client

BATCH_ID = re.compile(r"^msgbatch_[A-Za-z0-9]{1,100}$")
MAX_INFO_BYTES = 1_000_000
# the old scripts' batch_type → what the job is called
OLD_TYPES = {"round_story_notes": "round story notes", "round_narrative_reports": "round reports",
             "tournament_round_stories": "tournament round stories", "tournament_synthesis": "tournament synthesis",
             "tournament_reports": "tournament reports"}


@dataclass
class Source:
    """One batch to adopt: its id, where it was named, and what it is called."""

    batch_id: str
    source: str | None      # the info file (None: a bare id)
    label: str
    batch_type: str | None = None


@dataclass
class Imported:
    batch_id: str
    job_id: str
    title: str
    new: bool               # False: it was recorded already (nothing done)
    requests: int
    api_status: str
    source: str | None


@dataclass
class ImportReport:
    imported: list[Imported] = field(default_factory=list)
    data_root: str = ""


def _read_info(path: Path) -> Source:
    """The batch an old info file names. Raise InputError (one line) for anything else."""
    try:
        if path.stat().st_size > MAX_INFO_BYTES:
            raise InputError(f"{path} is too big for a batch info file", next_step="give a batch_*_info.json file")
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", next_step="check the path") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputError(f"{path} is not JSON (a batch info file is)",
                         next_step="give a batch_results/batch_<id>_info.json file, or a batch id") from None
    batch_id = data.get("batch_id") if isinstance(data, dict) else None
    if not isinstance(batch_id, str) or not BATCH_ID.match(batch_id):
        raise InputError(f"{path} names no batch id (\"batch_id\": \"msgbatch_...\")",
                         next_step="give a batch_results/batch_<id>_info.json file, or a batch id")
    batch_type = data.get("batch_type") if isinstance(data.get("batch_type"), str) else None
    label = OLD_TYPES.get(batch_type or "", (batch_type or "old workflow batch").replace("_", " ")[:60])
    return Source(batch_id, str(path), label, batch_type)


def sources(paths: list[str], kind: str | None, output: str | None) -> list[Source]:
    """What each PATH names (info files, folders of them, bare ids). Raise InputError naming the first bad
    one (and each other one below it), before anything is asked or recorded."""
    found: list[Source] = []
    problems: list[InputError] = []
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            if path.is_dir():
                infos = sorted(path.glob("batch_*_info.json"))
                if not infos:
                    raise InputError(f"{path} holds no batch_*_info.json file",
                                     next_step="give the old scripts' batch_results folder or one of its files")
                found += [_read_info(p) for p in infos]
            elif path.exists():
                found.append(_read_info(path))
            elif BATCH_ID.match(raw):
                if not (kind and output):
                    raise InputError(f"{raw}: a bare batch id needs --kind NAME and --output TEMPLATE",
                                     next_step="e.g. --kind narratives --output 'commentary/misc/{custom_id}.md', "
                                               "or give its batch_*_info.json file")
                found.append(Source(raw, None, kind))
            else:
                raise InputError(f"{raw} is neither a file nor a batch id (msgbatch_...)",
                                 next_step="give a batch_*_info.json file, its folder, or a batch id")
        except InputError as exc:
            problems.append(exc)
    if problems:
        first = problems[0]
        raise InputError(first.message + ("; nothing was imported" if len(problems) == 1 else
                                          f" (and {len(problems) - 1} more problem(s)); nothing was imported"),
                         next_step=first.next_step, details=[p.message for p in problems[1:]])
    if kind:
        for item in found:
            item.label = kind
    return list({s.batch_id: s for s in found}.values())


def _check_template(output: str) -> None:
    if "{index}" in output:
        raise InputError("--output cannot use {index} for an imported batch (its order is not known here)",
                         next_step="use {custom_id}")
    for name in PLACEHOLDER.findall(output):
        if name != "custom_id":
            raise InputError(f"--output {output!r} uses {{{name}}}", next_step="use only {custom_id}")
    render_output(output, custom_id="x", index=0)


def import_batches(ctx, paths: list[str], *, kind: str | None = None, output: str | None = None) -> ImportReport:
    """Adopt each batch the paths name as a job the poller retrieves (idempotent: a batch recorded before
    gives its job). Every batch is asked of the API first: one it does not know is refused, nothing recorded."""
    if output:
        _check_template(output)
    found = sources(paths, kind, output)
    client = make_client(ctx)
    infos = []
    for item in found:
        known = ctx.store.get_batch(item.batch_id)
        if known:
            infos.append((item, None))
            continue
        try:
            infos.append((item, client.retrieve(item.batch_id)))
        except api_mod.NotFound:
            raise InputError(f"batch {item.batch_id}{f' (from {item.source})' if item.source else ''} is not known "
                             "to the API; nothing was imported",
                             next_step="check the id, and that the key is the one of the account that made it") \
                from None
    report = ImportReport(data_root=str(ctx.data_root))
    store = ctx.store
    with file_lock(ctx.paths.lock_dir / "import.lock"):
        for item, info in infos:
            if info is None:
                batch = store.get_batch(item.batch_id)
                job = store.get_job(batch["job_id"])
                report.imported.append(Imported(item.batch_id, job["id"], job["title"], False,
                                                batch["request_count"], batch["api_status"], item.source))
                continue
            spec = {"batch_id": item.batch_id, "source": item.source, "batch_type": item.batch_type,
                    "label": item.label, "output": output}
            from tegbatchd.pipelines import get_pipeline

            title = get_pipeline("import").title(spec)
            notes = [f"imported from {item.source}" if item.source else "imported by batch id"]
            job_id, new = store.adopt_batch(new_job_id(), "import", title, spec, str(ctx.data_root), "imported",
                                            info, notes)
            if new:
                store.add_event("imported", f"{item.batch_id} from {item.source or 'its id'}", job_id=job_id,
                                batch_id=item.batch_id)
            job = store.get_job(job_id)
            report.imported.append(Imported(item.batch_id, job_id, job["title"], new,
                                            sum(info["request_counts"].values()), info["processing_status"],
                                            item.source))
    return report

