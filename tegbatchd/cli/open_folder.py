"""`tegbatchd open [JOB]`: flags and output."""

from __future__ import annotations

from tegbatchd.actions.open_folder import open_folder
from tegbatchd.cli.options import add_json


def register(sub) -> None:
    p = sub.add_parser("open", help="open the folder of the latest reports (or of JOB)")
    p.add_argument("id", metavar="JOB", nargs="?",
                   help="a job id or one of its batch ids (or a unique prefix); default: the latest job with files")
    add_json(p)
    p.set_defaults(func=cmd_open)


def cmd_open(args, ctx) -> int:
    opened = open_folder(ctx, args.id)
    if ctx.json_output:
        ctx.emit_json({"job_id": opened.job_id, "title": opened.title, "folder": opened.folder,
                       "command": opened.command})
    else:
        print(f"Opening {opened.folder} ({opened.title}) with {opened.command}")
    return 0
