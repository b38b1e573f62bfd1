"""`tegbatchd paths` and `tegbatchd config init|show|validate|path`."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from tegbatchd.cli import add_data_dir, add_json
from tegbatchd.config import default_text, load_config, redacted, validate_file
from tegbatchd.errors import ConfigError
from tegbatchd.paths import write_private


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


def cmd_paths(args, ctx) -> int:
    p = ctx.paths
    info = {
        "state_dir": str(p.state_dir),
        "database": str(p.db_path),
        "config_file": str(p.config_file),
        "log_dir": str(p.log_dir),
        "data_root": str(ctx.data_root),
    }
    if ctx.json_output:
        ctx.emit_json(info)
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key.replace('_', ' '):<{width}}  {value}")
    return 0


def cmd_init(args, ctx) -> int:
    target = ctx.paths.config_file
    if target.exists() and not args.force:
        raise ConfigError(f"{target} already exists", next_step="use --force to overwrite it")
    write_private(target, default_text())
    print(f"wrote {target}")
    return 0


def _api_key_source(cfg) -> str:
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "ANTHROPIC_API_KEY (set, value hidden)"
    if cfg["api_key_file"]:
        return f"api_key_file {cfg['api_key_file']} (value hidden)"
    return "none found yet (ANTHROPIC_API_KEY, api_key_file, or the OS keyring)"


def cmd_show(args, ctx) -> int:
    cfg = ctx.config
    shown = redacted(cfg.data)
    if ctx.json_output:
        ctx.emit_json({"source": str(cfg.source) if cfg.source else None, "config": shown,
                       "api_key": _api_key_source(cfg)})
        return 0
    print(f"# effective config (defaults{' + ' + str(cfg.source) if cfg.source else ' only'})")
    print(f"# API key from: {_api_key_source(cfg)}")
    print(yaml.safe_dump(shown, sort_keys=False).rstrip())
    return 0


def cmd_validate(args, ctx) -> int:
    path = Path(args.file) if args.file else ctx.paths.config_file
    if not path.exists() and not args.file:
        print(f"{path} does not exist: the shipped defaults are in use (valid)")
        return 0
    problems = validate_file(path)
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s)", next_step="fix them and validate again",
                          details=[f"{path}: {p}" for p in problems])
    load_config(path)
    print(f"{path}: valid")
    return 0


def cmd_path(args, ctx) -> int:
    print(ctx.paths.config_file)
    return 0
