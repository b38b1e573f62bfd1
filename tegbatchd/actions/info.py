"""`tegbatchd paths` and `tegbatchd config init|show|validate|path`."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from tegbatchd.config import default_text, load_config, redacted, validate_file
from tegbatchd.errors import ConfigError, listed
from tegbatchd.paths import write_private


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
            ctx.say(f"{key.replace('_', ' '):<{width}}  {value}")
    return 0


def cmd_init(args, ctx) -> int:
    target = ctx.paths.config_file
    if target.exists() and not args.force:
        raise ConfigError(f"{target} already exists", next_step="use --force to overwrite it")
    write_private(target, default_text())
    ctx.say(f"wrote {target}")
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
    ctx.say(f"# effective config (defaults{' + ' + str(cfg.source) if cfg.source else ' only'})")
    ctx.say(f"# API key from: {_api_key_source(cfg)}")
    ctx.say(yaml.safe_dump(shown, sort_keys=False).rstrip())
    return 0


def cmd_validate(args, ctx) -> int:
    path = Path(args.file) if args.file else ctx.paths.config_file
    if not path.exists() and not args.file:
        ctx.say(f"{path} does not exist: the shipped defaults are in use (valid)")
        return 0
    problems = validate_file(path)
    if problems:
        message, details = listed(str(path), problems, f"{path}: {len(problems)} problem(s)")
        raise ConfigError(message, next_step="fix them and validate again", details=[f"{path}: {p}" for p in details])
    config = load_config(path)
    for warning in model_warnings(ctx, config):
        ctx.say(f"warning: {warning}")
    ctx.say(f"{path}: valid")
    return 0


def model_warnings(ctx, config) -> list[str]:
    """The stage models against the Models API when a key is at hand (a retired or unknown one is refused,
    a deprecated one warned about with its retirement date), else against the installed SDK's own list."""
    from tegbatchd import api as api_mod
    from tegbatchd import preflight
    from tegbatchd.config import STAGE_NAMES

    uses = preflight.stage_model_uses(config, STAGE_NAMES)
    try:
        client = api_mod.BatchApi(api_mod.resolve_api_key(config["api_key_file"]),
                                  api_mod.check_endpoint(config["api"].get("base_url")))
    except api_mod.NoApiKey:
        client = None
    if client is not None:
        try:
            return preflight.check_models(ctx, client, uses)
        except api_mod.ApiError as exc:
            return [f"models not checked with the API ({exc}); checked against the installed SDK instead"] + \
                preflight.sdk_model_warnings(uses)
    return preflight.sdk_model_warnings(uses)


def cmd_path(args, ctx) -> int:
    ctx.say(ctx.paths.config_file)
    return 0
