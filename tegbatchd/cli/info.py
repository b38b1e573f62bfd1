"""`tegbatchd paths` and `tegbatchd config init|show|validate|path`: flags."""

from __future__ import annotations

from tegbatchd.actions.info import cmd_init, cmd_path, cmd_paths, cmd_show, cmd_validate
from tegbatchd.cli.options import add_data_dir, add_json


def register(sub) -> None:
    p = sub.add_parser("paths", help="show where state, config, logs and data live")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(func=cmd_paths)

    c = sub.add_parser("config", help="create, show or check the configuration")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    init = csub.add_parser("init", help="write a commented config file")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init)
    show = csub.add_parser("show", help="print the effective config (secrets redacted)")
    add_json(show)
    show.set_defaults(func=cmd_show)
    val = csub.add_parser("validate", help="check a config file")
    val.add_argument("file", nargs="?", help="file to check (default: your config file)")
    val.set_defaults(func=cmd_validate)
    path = csub.add_parser("path", help="print the config file's path")
    path.set_defaults(func=cmd_path)


