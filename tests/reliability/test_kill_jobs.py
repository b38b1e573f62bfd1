"""Kill -9 anywhere in multi-stage TEG jobs, with the daemon running: nothing lost, nothing sent twice.

Each trial (seeded; TEGBATCHD_KILL_TRIALS trials, default 30, in TEGBATCHD_KILL_LANES parallel lanes)
makes a fresh state directory and data root with the real scores, starts the emulator (transient errors
and expiries from the trial's seed, `--state` so it can be restarted), submits a mix of round-reports and
tournament jobs, and SIGKILLs `submit`, the daemon, `poll --once` or `retry JOB` at a random moment or at a
point placed inside a step (tests/reliability/harness.py). A clean daemon (or `poll --once` by hand) then
finishes; the emulator is restarted without faults and `retry JOB` resends what still failed. Checks:
every planned file exists once, each answer file holds its own request's answer, the combined files hold
their parts, no temp file is left, every custom_id reached the emulator exactly as often as the store has
attempts for it, no success was sent again, and each job has one outcome notice per finish (no other).
Every command is a real process forked from the warm fork server (tests/support/forkserver.py), so a
trial mostly waits on its processes and six lanes (default) share the two cores.

Replay a failure: TEGBATCHD_KILL_SEED=<the seed printed> TEGBATCHD_KILL_TRIALS=1.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, TEST_KEY, _run_forked, assert_own_answer
from tests.reliability.support import query, temp_files
from tests.support.emulator import running_emulator
from tests.support.forkserver import Forked, spawn

pytestmark = pytest.mark.proc_cli

TRIALS = int(os.environ.get("TEGBATCHD_KILL_TRIALS", "30"))
LANES = int(os.environ.get("TEGBATCHD_KILL_LANES", "6"))  # a trial mostly waits on its processes
SEED = int(os.environ.get("TEGBATCHD_KILL_SEED") or random.SystemRandom().randrange(10**6, 10**7))

SUBMIT_POINTS = ("archived", "stage-commit", "stage-recorded", "created", "attached")
DAEMON_POINTS = SUBMIT_POINTS + ("retry-commit", "retry-recorded", "temp-written", "renamed", "before-record",
                                 "in-commit", "assembly", "job-state")
RETRY_POINTS = ("archived", "retry-commit", "retry-recorded", "created", "attached", "stage-commit",
                "stage-recorded", "assembly", "job-state")
OUTCOME_KINDS = {"job_done", "job_partial", "job_failed"}
SETTLE_SECONDS = 120
PLACED_WAIT = {"daemon": 6.0}  # a daemon never ends by itself: killed then if its point was not reached
# Read once: in-process commands elsewhere in this worker borrow os.environ while they run.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TEGBATCHD_"))}
TERMINAL = ("done", "partial", "failed", "canceled", "blocked")


class TrialFailed(AssertionError):
    pass


class Trial:
    """One seeded trial in its own folder; `run()` returns what was killed where."""

    def __init__(self, seed: int, folder: Path):
        self.seed, self.folder, self.rng = seed, folder, random.Random(seed)
        self.home, self.data = folder / "home", folder / "data"
        self.db = self.home / "state" / "state.db"
        self.kills: list[str] = []       # "phase:point" of every process killed
        self.missed: list[str] = []      # placed points a process ended without reaching
        self.received: Counter = Counter()
        self.procs = 0

    # --- processes ------------------------------------------------------------------------------
    def env(self, url: str) -> dict:
        env = dict(BASE_ENV)
        env.update(TEGBATCHD_HOME=str(self.home), TEGBATCHD_DATA_DIR=str(self.data), PYTHONUNBUFFERED="1",
                   TMPDIR=str(self.folder / "tmp"), ANTHROPIC_API_KEY=TEST_KEY, ANTHROPIC_BASE_URL=url)
        return env

    def start(self, *argv: str, harness: tuple[str, ...] = ()) -> Forked:
        """`tegbatchd ARGV` as a real process forked from the warm fork server (through the kill harness with
        harness arguments)."""
        self.procs += 1
        log = self.folder / f"proc-{self.procs}.log"
        args = [*harness, "--", *argv] if harness else list(argv)
        return spawn(args, env=self.env(self.url), cwd=self.folder, harness=bool(harness), stdout=log,
                     stderr=subprocess.STDOUT)

    def run_cli(self, *argv: str, ok: tuple[int, ...] = (0,)) -> int:
        """A clean command (no kill), as a forked process: the lanes run theirs at the same time."""
        result = _run_forked(list(argv), self.env(self.url), self.folder, 120)
        if result.code not in ok:
            raise TrialFailed(f"tegbatchd {' '.join(argv)} exited {result.code}: {result.out[-800:]} {result.err[-800:]}")
        return result.code

    def last_log(self) -> str:
        return (self.folder / f"proc-{self.procs}.log").read_text()[-1500:]

    def killed(self, phase: str, argv: tuple[str, ...], point: str | None, *, within: float) -> None:
        """Run argv as a process; with a point, it kills itself there (a daemon that never reaches it is
        killed after PLACED_WAIT); without one it is killed at a random moment within `within` s of its
        start-up (imports done)."""
        ready = self.folder / f"ready-{self.procs + 1}"
        proc = self.start(*argv, harness=("--ready", str(ready), *(("--kill-at", point) if point else ())))
        moment = self.rng.uniform(0.0, within) if point is None else PLACED_WAIT.get(phase, 120.0)
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                raise TrialFailed(f"tegbatchd {' '.join(argv)} did not start in 120 s")
            time.sleep(0.01)
        try:
            code = proc.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.kills.append(f"{phase}:{'random' if point is None else 'not-reached'}@{self.where()}")
            return
        if code == -signal.SIGKILL:
            self.kills.append(f"{phase}:{point}")
        elif code in (0, 1, 3, 6):  # it finished (some of the work failed / not ready / create unclear)
            self.missed.append(f"{phase}:{point or 'random'}")
        else:
            raise TrialFailed(f"tegbatchd {' '.join(argv)} exited {code}: {self.last_log()}")

    def pick(self, points: tuple[str, ...], most: int) -> str | None:
        """A placed point "NAME:N" (the Nth time it is reached), or None (a random moment) one time in 5."""
        if self.rng.random() < 0.2:
            return None
        return f"{self.rng.choice(points)}:{self.rng.randint(1, most)}"

    def where(self) -> str:
        """The first unsettled stage of the first unfinished job: where a random kill landed."""
        if not self.rows("SELECT name FROM sqlite_master WHERE name='stages'"):
            return "before-job"
        rows = query(self.db, "SELECT s.name, s.state FROM stages s JOIN jobs j ON j.id=s.job_id "
                              "WHERE j.state='active' AND s.state NOT IN ('done','skipped') ORDER BY j.rowid, s.seq")
        return f"{rows[0][0]}-{rows[0][1]}" if rows else "settled"

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        """The query's rows; none while the database or its tables are not made yet (a process killed as it
        created them leaves an empty file: the next one makes them)."""
        if not self.db.exists():
            return []
        try:
            return query(self.db, sql, args)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    def settled(self) -> bool:
        if not self.db.exists():
            return False
        states = [s for (s,) in self.rows("SELECT state FROM jobs")]
        busy = self.rows("SELECT (SELECT count(*) FROM intents WHERE state='open') + (SELECT count(*) FROM "
                         "batches WHERE local_state IN ('submitted','retrieving'))")
        return len(states) == len(self.jobs) and all(s in TERMINAL for s in states) and busy == [(0,)]

    def finish_with_daemon(self) -> None:
        daemon = self.start("daemon", "--heartbeat", "0.2")
        try:
            deadline = time.monotonic() + SETTLE_SECONDS
            while not self.settled():
                if daemon.poll() is not None:
                    raise TrialFailed(f"the clean daemon exited {daemon.returncode}: {self.last_log()}")
                if time.monotonic() > deadline:
                    raise TrialFailed(f"not settled after {SETTLE_SECONDS} s: {self.rows('SELECT state FROM jobs')}")
                time.sleep(0.1)
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=30)
        if daemon.returncode not in (0, -signal.SIGTERM):
            raise TrialFailed(f"the clean daemon stopped with {daemon.returncode}")

    def finish_by_hand(self) -> None:
        for _ in range(100):
            if self.settled():
                return
            self.run_cli("poll", "--once")
            time.sleep(0.2)
        raise TrialFailed(f"not settled after 100 polls: {self.rows('SELECT state FROM jobs')}")

    def finish(self) -> None:
        (self.finish_with_daemon if self.rng.random() < 0.5 else self.finish_by_hand)()

    # --- the trial ------------------------------------------------------------------------------
    def setup(self) -> None:
        self.data.mkdir(parents=True)
        (self.folder / "tmp").mkdir()
        for name in ("all-scores.csv", "rounds.csv"):
            shutil.copy(FIXTURES / "teg" / name, self.data / name)
        config = self.home / "config"
        config.mkdir(parents=True)
        split = self.rng.choice((2, 3, 100_000))  # small batch limits: a stage of several batches
        text = ("poll_interval_minutes: 0.003\nmax_poll_interval_minutes: 0.005\n"
                f"batch_limits:\n  max_requests: {split}\n  max_bytes: 256000000\n")
        if self.rng.random() < 0.5:  # prompts long enough to cache: each stage is primed (one request first)
            from tegbatchd.teg.prompts import SHIPPED_DIR

            (self.data / "prompts").mkdir()
            for prompt in SHIPPED_DIR.glob("*.md"):
                (self.data / "prompts" / prompt.name).write_text(
                    prompt.read_text() + "\n\nStyle notes:\n" + "Keep the tone warm and exact. " * 150)
            text += "prompts_dir: prompts\n"
        (config / "config.yaml").write_text(text)
        os.chmod(config / "config.yaml", 0o600)
        tegs = self.rng.sample(range(10, 18), 2)
        jobs = [("submit", "round-reports", "--teg", str(tegs[0]), "--round", f"1-{self.rng.choice((2, 3))}"),
                ("submit", "tournament", "--teg", str(tegs[1]),
                 self.rng.choice(("--batch-reports", "--main-report", "--brief-summary", "--satire")))]
        self.jobs = self.rng.sample(jobs, self.rng.choice((1, 2)))
        self.phase = self.rng.choice(("submit", "daemon", "daemon", "cli", "retry"))
        self.emu_args = ["--process-seconds", str(self.rng.choice((0.1, 0.3, 0.6))), "--seed", str(self.seed),
                         "--error-rate", str(0.5 if self.phase == "retry" else self.rng.choice((0.0, 0.1, 0.2))),
                         "--expire-rate", str(self.rng.choice((0.0, 0.05))), "--state", str(self.folder / "emu.json")]
        if self.rng.random() < 0.25:  # the first creates made but their answers lost: reconciled, never resent
            self.emu_args += ["--unclear-create", "drop", "--unclear-create-count", str(self.rng.randint(1, 2))]

    def submit(self, argv: tuple[str, ...]) -> None:
        if self.phase == "submit" and self.rng.random() < 0.8:
            kind = argv[1]
            def recorded() -> int:  # no database yet (killed before it was made) counts as none
                return (self.rows("SELECT count(*) FROM jobs WHERE kind=?", (kind,)) or [(0,)])[0][0]

            before = recorded()
            self.killed("submit", argv, self.pick(SUBMIT_POINTS, 1), within=1.5)
            if recorded() != before:
                return  # recorded before the kill: the daemon takes it from there
        self.run_cli(*argv, ok=(0, 6))

    def run(self) -> dict:
        self.setup()
        with ExitStack() as stack:
            emu = stack.enter_context(running_emulator(*self.emu_args))
            self.url, port = emu.url, emu.url.rsplit(":", 1)[1]
            for argv in self.jobs:
                self.submit(argv)
            if self.phase in ("submit", "daemon"):
                for _ in range(self.rng.randint(1, 3)):
                    self.killed("daemon", ("daemon", "--heartbeat", "0.2"), self.pick(DAEMON_POINTS, 2), within=4.0)
            elif self.phase == "cli":
                for _ in range(self.rng.randint(2, 5)):
                    self.killed("poll", ("poll", "--once"), self.pick(DAEMON_POINTS, 2), within=1.5)
                    time.sleep(0.3)
            self.finish()
            if self.phase == "retry":
                unfinished = [j for (j,) in self.rows("SELECT id FROM jobs WHERE state!='done' ORDER BY rowid")]
                for job_id in unfinished:
                    self.killed("retry", ("retry", job_id), self.pick(RETRY_POINTS, 1), within=1.5)
                if unfinished:
                    self.finish()
            self.received.update(emu.received())
            assert emu.stop() == 0
            emu = stack.enter_context(running_emulator("--port", port, "--process-seconds", "0.1",
                                                       "--state", str(self.folder / "emu.json")))
            for _ in range(3):  # what still failed is resent by hand, with the faults gone
                unfinished = [j for (j,) in self.rows("SELECT id FROM jobs WHERE state!='done' ORDER BY rowid")]
                if not unfinished:
                    break
                for job_id in unfinished:
                    self.run_cli("retry", job_id)
                self.finish()
            self.received.update(emu.received())
        self.check()
        return {"kills": self.kills, "missed": self.missed, "phase": self.phase}

    # --- the checks -----------------------------------------------------------------------------
    def check(self) -> None:
        from tegbatchd.pipelines import get_pipeline

        jobs = query(self.db, "SELECT id, kind, spec, state, outcomes FROM jobs ORDER BY rowid")
        assert len(jobs) == len(self.jobs), f"{len(jobs)} job(s) recorded for {len(self.jobs)} submitted"
        assert [j[3] for j in jobs] == ["done"] * len(jobs), [j[3] for j in jobs]
        planned = {str(self.data / rel) for _, kind, spec, _, _ in jobs
                   for rel in get_pipeline(kind).planned_outputs(json.loads(spec))}
        on_disk = {str(p) for p in (self.data / "commentary").rglob("*") if p.is_file()}
        assert on_disk == planned, f"missing {sorted(planned - on_disk)[:3]}, extra {sorted(on_disk - planned)[:3]}"
        assert temp_files(self.data) == [] and temp_files(self.folder / "tmp") == []

        attempts = query(self.db, "SELECT r.id, r.sent_id, r.output_path, r.outcome, r.retried_by, i.archive, "
                                  "i.state FROM requests r JOIN intents i ON i.id=r.intent_id ORDER BY r.id")
        sent = Counter(cid for _, cid, *_rest, state in attempts if state != "failed")  # custom_ids as sent
        assert dict(self.received) == dict(sent), _diff(self.received, sent)
        archives: dict[str, dict] = {}
        by_output: dict[str, list[tuple]] = {}
        for row in attempts:
            by_output.setdefault(row[2], []).append(row)
        for output, rows in by_output.items():
            outcomes = [r[3] for r in rows]
            assert outcomes.count("succeeded") == 1 and outcomes[-1] == "succeeded", (output, outcomes)
            _, cid, _, _, retried_by, archive, _ = rows[-1]
            assert retried_by is None
            if archive not in archives:
                archives[archive] = {o["custom_id"]: o["params"] for o in map(json.loads, Path(archive).open())}
            assert_own_answer(Path(output).read_text(), cid, archives[archive][cid])
        assembled = planned - set(by_output)
        for path in assembled:
            assert Path(path).stat().st_size > 0
        for output in by_output:  # the combined round files hold both their parts
            if output.endswith("_story_notes.md") and "round_reports" in output:
                combined = output.replace("_story_notes.md", "").replace("TEG", "teg_").replace("_R", "_round_")
                combined += "_report.md"
                text = Path(combined).read_text()
                assert Path(output).read_text().strip() in text
                assert Path(output.replace("_story_notes.md", "_report.md")).read_text().strip() in text
            if output.endswith("_synthesis.md"):
                teg = Path(output).name.split("_")[0][3:]
                notes = self.data / "commentary" / f"teg_{teg}_story_notes.md"
                assert Path(output).read_text().strip() in notes.read_text()

        notices = query(self.db, "SELECT job_id, kind FROM notices")
        assert {k for _, k in notices} <= OUTCOME_KINDS, sorted({k for _, k in notices})
        for job_id, _kind, _spec, _state, outcomes in jobs:
            mine = [k for j, k in notices if j == job_id]
            assert len(mine) == outcomes and mine.count("job_done") == 1, (job_id, outcomes, mine)


def _diff(received: Counter, sent: Counter) -> str:
    keys = sorted(set(received) | set(sent))
    return "custom_id: received by the emulator / attempts recorded: " + ", ".join(
        f"{k} {received.get(k, 0)}/{sent.get(k, 0)}" for k in keys if received.get(k, 0) != sent.get(k, 0))


def _one(seed: int, folder: Path) -> tuple[int, dict | str, float]:
    started = time.monotonic()
    trial = Trial(seed, folder)
    try:
        result: dict | str = trial.run()
        shutil.rmtree(folder, ignore_errors=True)
    except Exception:  # noqa: BLE001 - reported with its seed, the folder kept
        result = (f"seed {seed} ({trial.phase if hasattr(trial, 'phase') else '?'}, kills {trial.kills}): "
                  f"{traceback.format_exc(limit=3)}; folder {folder}")
    return seed, result, time.monotonic() - started


@pytest.mark.timeout(3600)
def test_kill_9_anywhere_in_multi_stage_teg_jobs(tmp_path):
    seeds = [SEED + i for i in range(TRIALS)]
    print(f"\nkill trials: {TRIALS} from seed {SEED} in {LANES} lane(s) (replay one: TEGBATCHD_KILL_SEED=S "
          "TEGBATCHD_KILL_TRIALS=1)")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=LANES) as pool:
        results = list(pool.map(lambda s: _one(s, tmp_path / f"trial-{s}"), seeds))
    kills, missed, phases, failures = Counter(), Counter(), Counter(), []
    for seed, result, seconds in results:
        if isinstance(result, str):
            failures.append(result)
            continue
        kills.update(k.split("@")[0] for k in result["kills"])
        missed.update(result["missed"])
        phases[result["phase"]] += 1
        print(f"  seed {seed}: {result['phase']}, {seconds:.1f} s, killed {result['kills']}")
    print(f"kill trials: {TRIALS - len(failures)} of {TRIALS} passed in {time.monotonic() - started:.0f} s; "
          f"{sum(kills.values())} kills: {dict(sorted(kills.items()))}; phases {dict(phases)}; "
          f"points not reached {sum(missed.values())}")
    assert not failures, "\n".join(failures)
    assert sum(kills.values()) >= TRIALS // 2  # the kills landed (a retry trial whose jobs all succeeded has none)
