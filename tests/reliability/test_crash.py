"""Crash anywhere: `kill -9` of a retrieving `tegbatchd` loses, duplicates and leaks nothing.

A 1,000-request batch is retrieved by processes killed at seeded random moments (30 kills that land
mid-retrieval), then by processes that kill themselves inside each step, and inside a TEG job's local
assembly step (tests/reliability/harness.py patches the product's own functions; nothing in the product
knows about it). After a rerun every output exists once with its own answer, no temp file is left,
nothing appeared outside the data root, and the job is notified exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import deque
from pathlib import Path

import pytest

from tegbatchd.retrieval import GROUP
from tests.conftest import assert_own_answer, request_params, write_requests
from tests.reliability.support import (
    TEMPLATE,
    assert_counts_exact,
    assert_delivered,
    assert_each_own,
    harness,
    notices,
    query,
    recorded,
    temp_files,
    tree,
)

# These tests kill or race real processes: every `cli` call here is a `python -m tegbatchd` process.
pytestmark = pytest.mark.proc_cli

N = 1000
WRITER_THREADS = 1  # retrieval writes its files from its own thread (a helper thread only waits for syncs)
KILLS = 30
SEED = 20240611
OUTSIDE_SKIP = ("data", "home", "signals")


def _is_own_answer(text: str, cid: str, params: dict) -> bool:
    try:
        assert_own_answer(text, cid, params)
    except AssertionError:
        return False
    return True


def _count(folder: Path) -> int:
    try:
        return sum(1 for e in os.scandir(folder) if e.name.endswith(".md"))
    except FileNotFoundError:
        return 0


def _submit(cli, tmp_path: Path, n: int = N) -> tuple[Path, str]:
    reqs = write_requests(tmp_path / "signals" / "r.jsonl", n)
    batch = cli("submit", "requests", str(reqs), "--output", TEMPLATE, "--json", check=True).json()["batch_ids"][0]
    return reqs, batch


def _ready(cli, signals: Path, number: int, batch: str) -> tuple[subprocess.Popen, Path]:
    """A `retrieve` process with everything imported, waiting for its go file."""
    go = signals / f"go-{number}"
    proc = harness(cli, "--wait-for", str(go), "--", "retrieve", batch, "--json",
                   stdout=subprocess.DEVNULL, stderr=(signals / f"err-{number}").open("w"))
    return proc, go


@pytest.mark.timeout(900)  # ~40 processes; slow when the machine is busy
def test_kill_9_at_random_moments_mid_retrieval(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0")
    signals = tmp_path / "signals"
    signals.mkdir()
    n = 3 * GROUP  # a group is recorded once the next one is full: kills after the first record need a third
    reqs, batch = _submit(cli, tmp_path, n)
    outside = tree(tmp_path, skip=OUTSIDE_SKIP)
    params = request_params(reqs)
    db = _isolated_home / "state" / "state.db"
    folder = data_root / "commentary" / "misc"
    rng = random.Random(SEED)
    kills = finished = resets = 0
    recorded_after_kill = set()
    ready = deque(_ready(cli, signals, number, batch) for number in range(2))  # importing ahead of time
    trial = 0
    try:
        while kills < KILLS:
            assert trial < KILLS + 10, f"only {kills} of {trial} kills landed mid-retrieval"
            proc, go = ready.popleft()
            ready.append(_ready(cli, signals, trial + 2, batch))
            present = _count(folder)
            if n - present < 150:  # start over: the product rewrites recorded files that have gone
                for path in folder.glob("*.md"):
                    path.unlink()
                present, resets = 0, resets + 1
            target = present + rng.randint(1, n - present - 100)  # kill once this many outputs exist
            go.touch()
            while proc.poll() is None and _count(folder) < target:
                time.sleep(0.003)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            else:
                finished += 1
            proc.wait()
            assert proc.returncode in (0, -signal.SIGKILL), (signals / f"err-{trial}").read_text()
            assert_each_own(folder, params, complete=False)  # never a half or foreign file, even after a kill
            assert_counts_exact(db)  # the counts list reads moved in the transactions that were committed
            recorded_after_kill.add(recorded(db))
            trial += 1
    finally:
        for proc, _go in ready:
            proc.kill()
            proc.wait()

    final = cli("retrieve", batch, check=True).out
    assert f"Retrieved {n}/{n}" in final
    assert_delivered(folder, reqs, data_root)
    assert tree(tmp_path, skip=OUTSIDE_SKIP) == outside
    rows = query(db, "SELECT count(*), count(DISTINCT custom_id), sum(outcome='succeeded'), "
                     "sum(written_at IS NOT NULL) FROM requests")
    assert rows == [(n, n, n, n)]
    cli("poll", "--once", check=True)
    assert [k for _, k in notices(db, "job_done")] == ["job_done"]
    print(f"\nrandom kills: {kills} landed mid-retrieval in {trial} trials ({finished} finished first), "
          f"{resets} resets; records found after a kill: {sorted(recorded_after_kill)}")
    assert {0, 500} <= recorded_after_kill  # kills landed before and after the first group was recorded


def _killed_at(cli, point: str, batch: str | None, *argv: str, named: bool = False) -> None:
    """Run argv (default: retrieve the batch) and SIGKILL it at point; named: through named temp files."""
    argv = argv or ("retrieve", batch, "--json")
    proc = harness(cli, "--kill-at", point, *(["--named-temps"] if named else []), "--", *argv,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"{point}: exit {proc.returncode} {err.decode()[-2000:]}"
    db = Path(cli.env["TEGBATCHD_HOME"]) / "state" / "state.db"
    if db.exists():
        assert_counts_exact(db)  # a kill between writes leaves the counts equal to the rows


def test_kill_placed_inside_each_step(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "0")
    (tmp_path / "signals").mkdir()
    outside = tree(tmp_path, skip=OUTSIDE_SKIP)
    reqs, batch = _submit(cli, tmp_path)
    params = request_params(reqs)
    db = _isolated_home / "state" / "state.db"
    folder = data_root / "commentary" / "misc"
    rng = random.Random(SEED)

    n = rng.randint(2, 200)  # an output's file complete, not given its name yet (an anonymous file on Linux)
    _killed_at(cli, f"temp-written:{n}", batch)
    assert temp_files(data_root) == []  # the killed one went with the process: nothing to sweep
    assert len(list(folder.glob("*.md"))) >= n - WRITER_THREADS and recorded(db) == 0
    assert_each_own(folder, params, complete=False)

    n += rng.randint(2, 200)  # the same through named temp files (a system without anonymous files; < GROUP)
    _killed_at(cli, f"temp-written:{n}", batch, named=True)
    temps = temp_files(data_root)  # the killed one, and what the other writer threads had in hand
    assert 1 <= len(temps) <= WRITER_THREADS and len(list(folder.glob("*.md"))) >= n - WRITER_THREADS
    assert recorded(db) == 0
    own = {t: t.name[1:].split(".md.tmp-")[0] for t in temps}
    complete = [t for t, cid in own.items() if _is_own_answer(t.read_text(), cid, params[cid])]
    assert complete  # the one killed before its rename: complete, just not renamed
    for t, cid in own.items():  # the others: temp files of their own name, never an output
        assert t.name.startswith(f".{cid}.md.tmp-") and not (folder / f"{cid}.md").exists() or t in complete
    assert_each_own(folder, params, complete=False)

    n = rng.randint(2, 400)  # just after a rename, nothing recorded yet
    _killed_at(cli, f"renamed:{n}", batch)
    assert len(temp_files(data_root)) < WRITER_THREADS and len(list(folder.glob("*.md"))) >= n and recorded(db) == 0
    assert_each_own(folder, params, complete=False)

    _killed_at(cli, "before-record:1", batch)  # 500 files written and synced, not recorded
    assert len(list(folder.glob("*.md"))) >= 500 and recorded(db) == 0
    _killed_at(cli, "before-record:2", batch)  # first group recorded, second group written, not recorded
    assert len(list(folder.glob("*.md"))) == N and recorded(db) == 500

    inode = {p.name: p.stat().st_ino for p in folder.glob("*.md")}
    _killed_at(cli, "in-commit:1", batch)  # the second group's transaction dies before its COMMIT
    assert recorded(db) == 500
    rewritten = [name for name, ino in inode.items() if (folder / name).stat().st_ino != ino]
    assert len(rewritten) == 500  # only the unrecorded ones were written again, the recorded ones kept

    _killed_at(cli, "job-state:1", batch)  # all recorded, the job marked done, then killed
    assert recorded(db) == N
    assert query(db, "SELECT state FROM jobs") == [("done",)]
    assert len(notices(db, "job_done")) == 1  # queued before the job left 'active': not lost

    again = cli("retrieve", batch, check=True).out
    assert "Nothing new" in again
    cli("poll", "--once", check=True)
    assert_delivered(folder, reqs, data_root)
    assert tree(tmp_path, skip=OUTSIDE_SKIP) == outside
    assert len(notices(db, "job_done")) == 1
    assert_each_own(folder, params)


def _teg_job_with_its_narratives_submitted(api_cli):
    """TEG 17 rounds 1-2 submitted and polled once: story notes written, the narrative stage submitted."""
    cli, _ = api_cli("--process-seconds", "0")
    cli("submit", "round-reports", "--teg", "17", "--round", "1-2", check=True)
    cli("poll", "--once", check=True)
    return cli


def test_kill_during_the_local_assembly_of_a_teg_job(api_cli, real_data, data_root, _isolated_home):
    cli = _teg_job_with_its_narratives_submitted(api_cli)
    _killed_at(cli, "assembly:2", None, "poll", "--once")  # narratives written, 1 of 2 combined files
    folder = data_root / "commentary" / "round_reports"
    combined = [folder / f"teg_17_round_{r}_report.md" for r in (1, 2)]
    assert combined[0].exists() and not combined[1].exists()
    cli("poll", "--once", check=True)
    for r, path in enumerate(combined, start=1):
        text = path.read_text()
        assert (folder / f"TEG17_R{r}_story_notes.md").read_text().strip() in text
        assert (folder / f"TEG17_R{r}_report.md").read_text().strip() in text
    db = _isolated_home / "state" / "state.db"
    assert query(db, "SELECT state FROM jobs") == [("done",)]
    assert query(db, "SELECT state FROM stages ORDER BY seq") == [("done",), ("done",)]
    assert len(notices(db, "job_done")) == 1
    assert temp_files(data_root) == []


def test_a_kill_between_an_assembled_file_and_its_rename_leaves_no_temp_file(api_cli, real_data, data_root,
                                                                           _isolated_home):
    """Found by the kill suite: the assembly's temp file, left by a kill before its rename, stayed forever."""
    cli = _teg_job_with_its_narratives_submitted(api_cli)
    _killed_at(cli, "temp-written:3", None, "poll", "--once", named=True)  # 2 narratives, then the first combined
    folder = data_root / "commentary" / "round_reports"
    assert [p.name.split(".tmp")[0] for p in temp_files(data_root)] == [".teg_17_round_1_report.md"]
    cli("poll", "--once", check=True)
    assert temp_files(data_root) == []
    assert sorted(p.name for p in folder.glob("teg_17_*")) == ["teg_17_round_1_report.md", "teg_17_round_2_report.md"]
