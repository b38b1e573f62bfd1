"""`tegbatchd open [JOB]`: open the folder of a job's reports (the latest job that wrote any by default)
with the same program a click on the notification uses (notifications.open_command, else xdg-open/open)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tegbatchd.actions.listing import job_view
from tegbatchd.errors import InputError


@dataclass
class Opened:
    job_id: str
    title: str
    folder: str
    command: str


def open_folder(ctx, ident: str | None = None) -> Opened:
    """Open the job's folder (a job or batch id, a unique prefix, or None: the latest job with files on
    disk); raise InputError when there is nothing to open or no program to open it with."""
    from tegbatchd.actions.targets import find_target
    from tegbatchd.notify import Opener, default_open_command

    if ident:
        candidates = [find_target(ctx, ident)[0]]
    else:
        candidates = ctx.store.list_jobs(include_finished=True)
    view = next((v for v in map(lambda j: job_view(ctx, j), candidates)
                 if v["folder"] and Path(v["folder"]).is_dir()), None)
    if view is None:
        what = f"{ident!r} has" if ident else "no job has"
        raise InputError(f"{what} written any file yet", next_step="`tegbatchd list` shows what is pending")
    command = ctx.config["notifications"].get("open_command") or default_open_command()
    if not Opener(command).open(view["folder"]):
        raise InputError(f"cannot open {view['folder']} with {command!r}",
                         next_step="install it or set notifications.open_command in the config")
    return Opened(view["id"], view["title"], view["folder"], command)
