"""Concurrency: the daemon's poll and a CLI `retrieve` of the same batch at the same moment (20 trials):
identical outputs written once, one set of records, one notification. Two submits at the same moment:
two jobs, no mix-up. A retrieval starting beside a live writer of the same folder does not disturb it."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import request_params, write_requests
from tests.reliability.support import assert_delivered, assert_each_own, harness, notices, query

# These tests kill or race real processes: every `cli` call here is a `python -m tegbatchd` process.
pytestmark = pytest.mark.proc_cli

TRIALS = 20
PER_BATCH = 25


def _wait_files(*paths: Path, procs=(), timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"timed out waiting for {[p.name for p in paths]}"
        for proc in procs:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.01)


def test_daemon_poll_and_cli_retrieve_race_on_the_same_batch(api_cli, tmp_path, data_root, _isolated_home):
    cli, emu = api_cli("--process-seconds", "100000")
    (_isolated_home / "config").mkdir(parents=True)
    (_isolated_home / "config" / "config.yaml").write_text(f"batch_limits:\n  max_requests: {PER_BATCH}\n")
    reqs = write_requests(tmp_path / "r.jsonl", TRIALS * PER_BATCH)
    batches = cli("submit", "requests", str(reqs), "--output", "commentary/misc/{custom_id}.md", "--json",
                  check=True).json()["batch_ids"]
    assert len(batches) == TRIALS
    db = _isolated_home / "state" / "state.db"
    folder = data_root / "commentary" / "misc"
    trials = tmp_path / "trials"
    trials.mkdir()
    roles = ("retrieve", "daemon-poll")
    procs = [harness(cli, "--trials", str(trials), "--role", role, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True) for role in roles]
    rng = random.Random(7)
    winners = {role: 0 for role in roles}
    try:
        for number, batch in enumerate(batches):
            emu.finish(batch)
            late = rng.choice(roles)
            delay = {late: rng.uniform(0.0, 0.4) if number % 2 else rng.uniform(0.0, 0.02)}
            (trials / "go.tmp").write_text(json.dumps({"batch": batch, "delay": delay}))
            os.replace(trials / "go.tmp", trials / f"go-{number}")  # seen whole or not at all
            done = [trials / f"done-{number}-{role}.json" for role in roles]
            _wait_files(*done, procs=procs)
            results = {role: json.loads(path.read_text()) for role, path in zip(roles, done, strict=True)}
            assert results["retrieve"]["code"] == 0
            assert results["retrieve"]["state"] in ("retrieved", "already")
            by_cli, by_daemon = (results[r]["written"] for r in roles)  # files each process wrote
            rows = query(db, "SELECT r.output_path, r.outcome, r.output_sha256 FROM requests r "
                             "JOIN intents i ON i.id = r.intent_id WHERE i.batch_id = ?", (batch,))
            assert len(rows) == PER_BATCH
            assert by_cli + by_daemon == PER_BATCH, "a file was written by both (or by neither)"
            for path, outcome, sha in rows:
                assert outcome == "succeeded" and sha == hashlib.sha256(Path(path).read_bytes()).hexdigest()
            winners["retrieve" if by_cli else "daemon-poll"] += 1
    finally:
        (trials / "stop").touch()
        for proc in procs:
            proc.communicate(timeout=60)
    assert all(proc.returncode == 0 for proc in procs)
    assert_delivered(folder, reqs, data_root)
    assert query(db, "SELECT state FROM jobs") == [("done",)]
    assert query(db, "SELECT count(*), count(DISTINCT custom_id) FROM requests") == [(TRIALS * PER_BATCH,) * 2]
    assert len(notices(db, "job_done")) == 1
    print(f"\nrace winners over {TRIALS} trials: {winners}")
    assert all(winners.values())  # both sides won some races: the lock, not the timing, kept them apart


def test_two_submits_at_the_same_moment_make_two_jobs_without_mix_up(api_cli, tmp_path, data_root,
                                                                      _isolated_home):
    cli, emu = api_cli("--process-seconds", "0")
    go = tmp_path / "go"
    files = {name: write_requests(tmp_path / f"{name}.jsonl", 40, max_tokens=tokens)  # same custom_ids,
             for name, tokens in (("one", 60), ("two", 70))}                          # different params
    procs = {name: harness(cli, "--wait-for", str(go), "--", "submit", "requests", str(path), "--output",
                           f"commentary/{name}/{{custom_id}}.md", "--json", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for name, path in files.items()}
    time.sleep(0.5)
    go.touch()
    subs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        subs[name] = json.loads(out)
    assert subs["one"]["job_id"] != subs["two"]["job_id"]
    assert len(subs["one"]["batch_ids"]) == len(subs["two"]["batch_ids"]) == 1
    assert subs["one"]["batch_ids"] != subs["two"]["batch_ids"]
    cli("poll", "--once", check=True)
    for name, path in files.items():
        assert_delivered(data_root / "commentary" / name, path, data_root)
        assert_each_own(data_root / "commentary" / name, request_params(path))
    assert emu.stats()["batches_created"] == 2
    db = _isolated_home / "state" / "state.db"
    assert query(db, "SELECT count(*) FROM jobs WHERE state='done'") == [(2,)]


def test_a_retrieval_starting_beside_a_live_writer_leaves_its_temp_file_alone(api_cli, tmp_path, data_root,
                                                                             _isolated_home):
    cli, emu = api_cli("--process-seconds", "0")
    (_isolated_home / "config").mkdir(parents=True)
    (_isolated_home / "config" / "config.yaml").write_text("batch_limits:\n  max_requests: 50\n")
    reqs = write_requests(tmp_path / "r.jsonl", 100)
    batches = cli("submit", "requests", str(reqs), "--output", "commentary/misc/{custom_id}.md", "--json",
                  check=True).json()["batch_ids"]
    assert len(batches) == 2  # one job, two batches, one output folder
    paused, resume = tmp_path / "paused", tmp_path / "resume"
    first = harness(cli, "--named-temps", "--pause-at", "temp-written:20", "--paused", str(paused), "--resume", str(resume), "--",
                    "retrieve", batches[0], "--json", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    folder = data_root / "commentary" / "misc"
    try:
        _wait_files(paused, procs=[first])  # the first writer holds a finished temp file, about to rename it
        assert [p for p in folder.iterdir() if ".tmp-" in p.name]  # (its other threads may hold some too)
        cli("retrieve", batches[1], check=True)  # the other batch of the job, into the same folder
    finally:
        resume.touch()
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-2000:]
    assert_delivered(folder, reqs, data_root)
