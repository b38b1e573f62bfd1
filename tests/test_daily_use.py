"""Daily use, as the person meets it: job ids wherever a batch id goes, `retrieve` exit codes and offline
re-runs, named failures in `status`, "reconciling" after an unclear create, the old scripts' flags, times
in the local zone, each job's folder, `open`, shell completion and one file count everywhere."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.conftest import write_requests

TEMPLATE = "commentary/misc/{custom_id}.md"


def dead_url() -> str:
    """A loopback URL where nothing listens (the port was just free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def submit(cli, tmp_path, n: int = 3, prefix: str = "req", output: str = TEMPLATE) -> dict:
    reqs = write_requests(tmp_path / f"{prefix}.jsonl", n, prefix=prefix)
    return cli("submit", "requests", str(reqs), "--output", output, "--json", check=True).json()


def write_config(home: Path, **settings) -> None:
    path = home / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings))


def test_status_and_retrieve_take_a_job_id_or_a_unique_prefix(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "0")
    sub = submit(cli, tmp_path)
    job, batch = sub["job_id"], sub["batch_ids"][0]
    out = cli("status", job, check=True).out
    assert out.startswith(f"{job}  requests from req.jsonl  [active]")
    assert f"{batch}  (requests from req.jsonl, stage requests)" in out and "API status:   ended" in out
    by_prefix = cli("status", job[:-2], "--json", check=True).json()
    assert by_prefix["id"] == job and [b["id"] for b in by_prefix["batches"]] == [batch]
    assert "Retrieved 3/3 successful" in cli("retrieve", job[:-2], check=True).out
    assert len(list((data_root / "commentary" / "misc").iterdir())) == 3
    assert "a job id or a batch id, whole or a unique prefix of 6+" in " ".join(cli("--help").out.split())
    for command in ("status", "retrieve", "cancel", "retry"):  # the help says what ID may be
        assert "a job id" in cli(command, "--help", check=True).out and "prefix" in cli(command, "--help").out


def test_retrieve_of_a_running_batch_exits_3_not_ready(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "3600")
    sub = submit(cli, tmp_path)
    for ident in (sub["batch_ids"][0], sub["job_id"]):
        result = cli("retrieve", ident)
        assert result.code == 3, result.out + result.err
        assert "not ended yet" in result.out
    assert not (data_root / "commentary").exists()


def test_retrieve_of_a_retrieved_batch_works_without_the_network(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "0")
    sub = submit(cli, tmp_path)
    cli("retrieve", sub["batch_ids"][0], check=True)
    offline = cli.bound(ANTHROPIC_BASE_URL=dead_url())
    for ident in (sub["batch_ids"][0], sub["job_id"]):
        again = offline("retrieve", ident)
        assert again.code == 0, again.err
        assert "Nothing new: all 3 results were already retrieved (3/3 successful)" in again.out
    status = offline("status", sub["batch_ids"][0])
    assert status.code == 0 and "outputs:      3 written" in status.out


def test_status_names_the_expired_and_errored_requests(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "200000")
    write_config(Path(cli.env["TEGBATCHD_HOME"]), retry={"max_attempts": 1})
    sub = submit(cli, tmp_path, n=2, prefix="late")
    emu.advance(86400 + 5)
    cli("poll", "--once", check=True)
    out = cli("status", sub["batch_ids"][0], check=True).out
    assert "  ✗ late-00000: expired" in out and "  ✗ late-00001: expired" in out
    view = cli("status", sub["batch_ids"][0], "--json", check=True).json()
    assert [(r["custom_id"], r["outcome"]) for r in view["not_succeeded"]] == [("late-00000", "expired"),
                                                                               ("late-00001", "expired")]

    failing, _ = api_cli("--process-seconds", "0", "--error-rate", "1", "--error-type", "invalid_request_error")
    failing = failing.bound(TEGBATCHD_HOME=str(tmp_path / "other"))
    bad = submit(failing, tmp_path, n=1, prefix="bad")
    assert failing("retrieve", bad["batch_ids"][0]).code == 0
    out = failing("status", bad["batch_ids"][0], check=True).out
    assert "  ✗ bad-00000: invalid_request_error — " in out


def test_an_unclear_create_shows_reconciling_and_what_will_do_it(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "0", "--unclear-create", "drop", "--unclear-create-count", "1")
    reqs = write_requests(tmp_path / "r.jsonl", 4)
    sub = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json")
    assert sub.code == 6 and sub.json()["batch_ids"] == []
    job = sub.json()["job_id"]
    listed = cli("list", check=True).out
    line = ("    reconciling: 1 part(s) (4 requests) recorded, not confirmed by the API — the daemon's next poll "
            "(no daemon is running: `tegbatchd poll --once`, or `tegbatchd service install`) sends or reconciles "
            "them, never twice")
    assert line in listed.splitlines()
    status = cli("status", job, check=True).out
    assert line in status.splitlines() and "no batch yet" in status
    assert cli("list", "--json", check=True).json()["jobs"][0]["reconciling"]["parts"] == 1
    cli("poll", "--once", check=True)
    assert "reconciling" not in cli("list", check=True).out
    assert emu.stats()["batches_created"] == 1


def test_the_old_submit_habit_maps_to_submit_round_reports(api_cli, real_data):
    cli, emu = api_cli("--process-seconds", "0")
    old = cli("--teg", "17", "--round", "2", "--use-batch", "--submit-only")
    assert old.code == 0, old.err
    assert old.err.splitlines()[0] == ("note: the old flags mean `tegbatchd submit round-reports --teg 17 --round 2`"
                                       " — use that from now on")
    assert "SUBMITTED — TEG 17" in old.out
    assert cli("list", "--json", check=True).json()["jobs"][0]["kind"] == "round-reports"

    tournament = cli("--range", "3", "5", "--batch-reports", "--use-batch", "--submit-only", "--dry-run")
    assert tournament.code == 0, tournament.err
    assert "`tegbatchd submit tournament --range 3 5 --batch-reports --dry-run`" in tournament.err
    assert "Dry run — nothing sent." in tournament.out

    dry = cli("--teg", "10-16", "--round", "1-4", "--story-notes-only", "--use-batch", "--submit-only", "--dry-run")
    assert dry.code == 0 and "Dry run" in dry.out, dry.err
    assert "`tegbatchd submit round-reports --teg 10-16 --round 1-4 --story-notes-only --dry-run`" in dry.err
    waiting = cli("--teg", "17", "--round", "2", "--use-batch", "--dry-run")  # the old "submit and wait"
    assert "--wait" in waiting.err.splitlines()[0]


def test_times_are_local_with_the_zone_or_utc(api_cli, tmp_path):
    cli, emu = api_cli("--process-seconds", "3600")
    sub = submit(cli, tmp_path)
    created = cli("status", sub["batch_ids"][0], "--json", check=True).json()["created_at"]
    moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
    local = moment.astimezone(ZoneInfo("America/New_York"))
    shown = local.strftime("%Y-%m-%d %H:%M ") + local.tzname()
    assert local.tzname() in ("EST", "EDT")
    listed = cli("list", TZ="America/New_York", check=True).out
    assert f"  {shown}  " in listed and f"submitted {shown};" in listed
    assert f"created:      {shown}" in cli("status", sub["job_id"], TZ="America/New_York", check=True).out
    utc = moment.strftime("%Y-%m-%d %H:%M UTC")
    assert f"  {utc}  " in cli("list", "--utc", TZ="America/New_York", check=True).out
    assert f"created:      {utc}" in cli("status", sub["batch_ids"][0], "--utc", TZ="Asia/Tokyo", check=True).out


def test_list_shows_each_jobs_folder_and_open_opens_it(api_cli, tmp_path, data_root):
    cli, emu = api_cli("--process-seconds", "0")
    record = tmp_path / "opened.txt"
    opener = tmp_path / "record-open"
    opener.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{record}"\n')
    opener.chmod(0o755)
    write_config(Path(cli.env["TEGBATCHD_HOME"]), notifications={"open_command": str(opener)})
    nothing = cli("open")
    assert nothing.code == 2 and "no job has written any file yet" in nothing.err
    sub = submit(cli, tmp_path)
    folder = (data_root / "commentary" / "misc").resolve()
    assert f"files in {folder}" in cli("list", check=True).out   # planned, before anything is written
    cli("poll", "--once", check=True)
    assert cli("list", "--json", check=True).json()["jobs"][0]["folder"] == str(folder)
    opened = cli("open", check=True)
    assert opened.out.strip() == f"Opening {folder} (requests from req.jsonl) with {opener}"
    other = submit(cli, tmp_path, prefix="second", output="commentary/later/{custom_id}.md")
    assert cli("open", other["job_id"][:-2]).code == 2   # nothing written yet; `open` picks the older job
    cli("open", sub["batch_ids"][0], check=True)
    for _ in range(200):
        if record.exists() and len(record.read_text().splitlines()) == 2:
            break
        time.sleep(0.05)
    assert record.read_text().splitlines() == [str(folder), str(folder)]


def test_bash_completion_gives_the_subcommands_and_flags(cli, tmp_path):
    script = cli("completion", "bash", check=True).out
    (tmp_path / "tb.bash").write_text(script)
    bash = shutil.which("bash")
    assert bash, "bash is needed to try the completion script"

    def complete(*words: str) -> list[str]:
        words_q = " ".join(f"'{w}'" for w in words)
        probe = (f'source "{tmp_path / "tb.bash"}"; COMP_WORDS=(tegbatchd {words_q}); '
                 f'COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); _tegbatchd; printf "%s\\n" "${{COMPREPLY[@]}}"')
        done = subprocess.run([bash, "--norc", "--noprofile", "-c", probe], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return sorted(done.stdout.split())

    top = complete("")
    assert {"submit", "list", "status", "retrieve", "retry", "open", "completion", "service"} <= set(top)
    assert complete("st") == ["status"]
    assert complete("submit", "") == ["requests", "round-reports", "tournament"]
    assert complete("submit", "round-reports", "--st") == ["--story-notes-only"]
    assert complete("list", "--u") == ["--utc"]
    assert complete("completion", "") == ["bash", "fish", "zsh"]
    assert complete("-v", "service", "") == ["install", "status", "uninstall"]
    assert "bashcompinit" in cli("completion", "zsh", check=True).out


ZSH_PROBE = 'source {script}; COMP_WORDS=(tegbatchd {words}); COMP_CWORD=$(( ${{#COMP_WORDS}} - 1 )); ' \
    'emulate sh -c _tegbatchd; print -rl -- $COMPREPLY'
FISH_PROBE = 'source {script}; complete -C "tegbatchd {line}"'


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_in_the_real_shells(cli, tmp_path, shell):
    from tests.support.desktop import require

    require(shell)  # fails in CI (.ci/run installs both), skips elsewhere
    script = tmp_path / f"tb.{shell}"
    script.write_text(cli("completion", shell, check=True).out)

    def complete(*words: str) -> list[str]:
        if shell == "zsh":
            argv = ["zsh", "-f", "-c", ZSH_PROBE.format(script=script, words=" ".join(f"'{w}'" for w in words))]
        else:
            argv = ["fish", "--no-config", "-c", FISH_PROBE.format(script=script, line=" ".join(words))]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert done.returncode == 0, done.stderr
        return sorted(line.split("\t")[0] for line in done.stdout.splitlines() if line)

    assert complete("submit", "") == ["requests", "round-reports", "tournament"]
    assert complete("list", "--u") == ["--utc"]
    assert complete("st") == ["status"]
    assert complete("submit", "round-reports", "--st") == ["--story-notes-only"]


@pytest.mark.parametrize("teg", ["17"])
def test_one_file_count_in_the_notice_list_status_and_on_disk(api_cli, real_data, teg):
    cli, emu = api_cli("--process-seconds", "0")
    write_config(Path(cli.env["TEGBATCHD_HOME"]), notifications={"stage_submitted": True})
    sub = cli("submit", "round-reports", "--teg", teg, "--round", "1-2", "--json", check=True).json()
    for _ in range(6):
        cli("poll", "--once", check=True)
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert job["state"] == "done", job
    on_disk = [p for p in (real_data / "commentary").rglob("*.md")]
    assert len(on_disk) == job["written"] == job["files_planned"] == 6  # 2 notes, 2 reports, 2 combined
    from tegbatchd.store import Store

    store = Store.open(Path(cli.env["TEGBATCHD_HOME"]) / "state" / "state.db")
    notices = [(n["title"], n["body"]) for n in store.notices()]
    store.close()
    assert notices[0] == (f"{job['title']}: narrative submitted", "2 requests; 2 of 6 files written so far")
    assert [title for title, _ in notices[1:]] == [f"{job['title']} ready — 6 files"]
    assert "written 6, pending 0" in cli("list", check=True).out
    status = cli("status", sub["job_id"], check=True).out
    assert status.splitlines()[0].endswith("[done]  6 of 6 files written, pending 0, failed 0")


@pytest.mark.parametrize("point", ["created:1", "stage-recorded:1"])
def test_after_a_kill_during_submit_list_and_status_say_reconciling(api_cli, tmp_path, data_root, point):
    """Killed (SIGKILL) once the create was answered but before its batch id was recorded, or before the
    create was sent: `list` and `status` say "reconciling" and what does it; the next poll does, once."""
    from tests.reliability.support import harness

    cli, emu = api_cli("--process-seconds", "0")
    reqs = write_requests(tmp_path / "r.jsonl", 2)
    proc = harness(cli, "--kill-at", point, "--", "submit", "requests", str(reqs), "--output", TEMPLATE,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.wait(120) == -9
    job = cli("list", "--json", check=True).json()["jobs"][0]
    assert job["batches"] == [] and job["reconciling"]["parts"] == 1
    assert "    reconciling: 1 part(s) (2 requests) recorded, not confirmed by the API" in cli("list", check=True).out
    assert "reconciling: 1 part(s)" in cli("status", job["id"], check=True).out
    cli("poll", "--once", check=True)
    assert "reconciling" not in cli("list", check=True).out
    assert emu.stats()["batches_created"] == 1 and len(list((data_root / "commentary" / "misc").iterdir())) == 2
