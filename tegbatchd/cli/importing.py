"""`tegbatchd import PATH... [--kind NAME] [--output TEMPLATE] [--json]`: flags and output."""

from __future__ import annotations

from dataclasses import asdict

from tegbatchd.cli.options import add_data_dir, add_json


def register(sub) -> None:
    p = sub.add_parser("import", help="adopt batches the old scripts made (their batch_*_info.json files, or ids)")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a batch_results/batch_<id>_info.json file, a folder of them, or a batch id")
    p.add_argument("--kind", metavar="NAME", help="what the batch is called (needed with a bare batch id)")
    p.add_argument("--output", metavar="TEMPLATE",
                   help="where each answer goes under the data root, e.g. 'commentary/misc/{custom_id}.md' "
                        "(needed with a bare batch id; default: where the old scripts wrote TEG reports)")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(func=cmd_import)


def cmd_import(args, ctx) -> int:
    from tegbatchd.actions.importing import import_batches

    report = import_batches(ctx, args.paths, kind=args.kind, output=args.output)
    if ctx.json_output:
        ctx.emit_json({"imported": [asdict(i) for i in report.imported], "data_root": report.data_root})
        return 0
    for item in report.imported:
        if item.new:
            print(f"imported {item.batch_id} as job {item.job_id}: {item.title}, {item.requests} request(s), "
                  f"{item.api_status}")
        else:
            print(f"{item.batch_id} is recorded already (job {item.job_id}): nothing to do")
    if any(i.new for i in report.imported):
        print(f"The daemon (or `tegbatchd poll --once`) retrieves them into {report.data_root}.")
    return 0
