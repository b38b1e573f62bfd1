"""Config: defaults, init/show/validate/path, every bad case with its message, paths under TEGBATCHD_HOME."""

from __future__ import annotations

import stat

import pytest
import yaml


def test_paths_live_under_tegbatchd_home(cli, _isolated_home, data_root):
    info = cli("paths", "--json", check=True).json()
    assert info["state_dir"] == str(_isolated_home / "state")
    assert info["config_file"] == str(_isolated_home / "config" / "config.yaml")
    assert info["log_dir"] == str(_isolated_home / "logs")
    assert info["data_root"] == str(data_root)
    other = cli("paths", "--json", "--data-dir", "elsewhere", check=True).json()
    assert other["data_root"] == str(cli.cwd / "elsewhere")


def test_data_root_falls_back_to_config_then_dot_data(cli, _isolated_home, tmp_path):
    env = {k: v for k, v in cli.env.items() if k != "TEGBATCHD_DATA_DIR"}
    from tests.conftest import Cli

    plain = Cli(env, tmp_path)
    assert plain("paths", "--json", check=True).json()["data_root"] == str(tmp_path / "data")
    (_isolated_home / "config").mkdir(parents=True)
    (_isolated_home / "config" / "config.yaml").write_text(f"data_root: {tmp_path / 'configured'}\n")
    assert plain("paths", "--json", check=True).json()["data_root"] == str(tmp_path / "configured")


def test_init_writes_a_private_commented_file_and_refuses_to_overwrite(cli, _isolated_home):
    out = cli("config", "init", check=True).out
    target = _isolated_home / "config" / "config.yaml"
    assert str(target) in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    text = target.read_text()
    assert text.count("#") > 20 and "batch_discount" in text
    again = cli("config", "init")
    assert again.code == 2 and "already exists" in again.err and "--force" in again.err
    assert cli("config", "init", "--force").code == 0
    assert cli("config", "validate", check=True).out.strip().endswith("valid")
    assert cli("config", "path", check=True).out.strip() == str(target)


def test_show_prints_effective_config_without_the_key(cli, _isolated_home):
    (_isolated_home / "config").mkdir(parents=True)
    (_isolated_home / "config" / "config.yaml").write_text("poll_interval_minutes: 7\n")
    secret = "sk-ant-api03-SHOWMUSTNOTLEAK"
    shown = cli("config", "show", check=True, ANTHROPIC_API_KEY=secret).out
    assert secret not in shown and "ANTHROPIC_API_KEY (set, value hidden)" in shown
    data = yaml.safe_load("\n".join(line for line in shown.splitlines() if not line.startswith("#")))
    assert data["poll_interval_minutes"] == 7 and data["stages"]["narrative"]["max_tokens"] == 4000
    as_json = cli("config", "show", "--json", check=True, ANTHROPIC_API_KEY=secret)
    assert secret not in as_json.out and as_json.json()["config"]["poll_interval_minutes"] == 7


@pytest.mark.parametrize("content, expected", [
    ("poll_interval_minutes: [\n", "malformed YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("colour: blue\n", "colour: unknown key"),
    ("poll_interval_minutes: soon\n", "poll_interval_minutes: must be a number (got 'soon')"),
    ("poll_interval_minutes: 0\n", "poll_interval_minutes: must be greater than 0"),
    ("notifications:\n  enabled: 'yes'\n", "notifications.enabled: must be true or false"),
    ("stages:\n  narrative:\n    max_tokens: 2.5\n", "stages.narrative.max_tokens: must be a whole number"),
    ("stages:\n  poem:\n    model: x\n", "stages.poem: unknown key"),
    ("prices:\n  m:\n    input: -1\n", "prices.m.input: must be at least 0"),
    ("prices_as_of: soon\n", "prices_as_of: must be a date (YYYY-MM-DD)"),
    ("batch_discount: 1\n", "batch_discount: must be less than 1"),
    ("batch_limits:\n  max_requests: 100001\n", "batch_limits.max_requests: must be at most 100000"),
    ("batch_limits:\n  max_bytes: 300000000\n", "batch_limits.max_bytes: must be at most 256000000"),
])
def test_each_bad_config_is_reported_with_file_and_key(cli, tmp_path, content, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = cli("config", "validate", str(bad))
    assert result.code == 2, result
    assert expected in result.err and str(bad) in result.err


def test_all_problems_are_reported_at_once(cli, tmp_path, _isolated_home):
    bad = _isolated_home / "config" / "config.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text("colour: blue\npoll_interval_minutes: -3\nnow:\n  concurrency: 0\n")
    result = cli("list")
    assert result.code == 2
    assert "3 problem(s)" in result.err
    for key in ("colour", "poll_interval_minutes", "now.concurrency"):
        assert f"{bad}: {key}:" in result.err


def test_shipped_default_names_only_current_models_of_the_installed_sdk():
    """Every model the default config names (stages), and the latest shipped price table, is in the SDK's own
    Model list and not in its deprecation data: a retired default would make every submission fail."""
    import datetime
    import typing

    import yaml
    from anthropic._data import DEPRECATED_MODELS
    from anthropic.types import Model

    from tegbatchd.config import default_text

    (literal, _) = typing.get_args(Model)
    current = set(typing.get_args(literal))
    default = yaml.safe_load(default_text())
    from tegbatchd.costs import PRICE_TABLES

    named = {stage["model"] for stage in default["stages"].values()} | set(PRICE_TABLES[-1][1])
    assert named <= current, f"not in the SDK's model list: {sorted(named - current)}"
    assert not named & set(DEPRECATED_MODELS), f"deprecated: {sorted(named & set(DEPRECATED_MODELS))}"
    taken = datetime.date.fromisoformat(PRICE_TABLES[-1][0])
    assert taken <= datetime.date.today()
