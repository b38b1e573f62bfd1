"""Shared helpers of the benchmarks: the machine, measured subprocesses, the emulator, result files.

Every benchmark runs our tool and its naive baseline in the same run, as subprocesses, and measures each
one's wall time, CPU time and peak RSS (ru_maxrss of that child, from os.wait4).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tegbatchd.emulator.launcher import EmulatorProcess, EmulatorStartError

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PY = sys.executable

TEST_KEY = "sk-ant-bench-0000"
FIXTURE_60 = REPO / "tests" / "fixtures" / "anthropic" / "requests-narrative-60.jsonl"


def machine() -> dict:
    """nproc, memory, Python, CPU model and SDK version: what the figures came from."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    try:
        from importlib.metadata import version

        sdk = version("anthropic")
    except Exception:  # noqa: BLE001
        sdk = "?"
    return {"nproc": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version(), "anthropic": sdk, "kernel": platform.release(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


@dataclass
class Run:
    label: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    code: int
    stdout: str = ""
    stderr: str = ""
    user_s: float = 0.0  # the CPU split: user (the process's own work) and system (the kernel's, for it)
    sys_s: float = 0.0
    helpers_peak_rss_mb: float = 0.0  # the peak of tegbatchd's write helper process(es), the child's children
    helpers_private_mb: float = 0.0   # of which its own (the rest: the interpreter's pages, shared with the child)

    def brief(self) -> dict:
        d = asdict(self)
        d.pop("stdout")
        d["stderr"] = self.stderr[-400:]
        return d


def measure(label: str, cmd: list[str], *, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 3600) -> Run:
    """Run cmd to completion: wall time, user+sys CPU (os.wait4: with its reaped children's) and peak RSS
    of that child, and apart the peak of its write helper process (tegbatchd/write_helper.py), if any.

    Peak RSS is the child's VmHWM read from /proc every 10 ms until it exits (its own address space);
    ru_maxrss is not used for it because it also counts the parent's RSS at the fork. A child too quick
    to be sampled falls back to ru_maxrss.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = start + timeout
        hwm = 0.0
        helpers: dict[int, float] = {}
        private: dict[int, float] = {}
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            try:
                hwm = max(hwm, proc_rss_mb(proc.pid).get("VmHWM", 0.0))
                for kid in _children(proc.pid):  # (not other children: one forked, not exec'd yet, shows the
                    if _is_helper(kid):          # parent's pages as its own)
                        helpers[kid] = max(helpers.get(kid, 0.0), proc_rss_mb(kid).get("VmHWM", 0.0))
                        private[kid] = max(private.get(kid, 0.0), _private_mb(kid))
            except OSError:
                pass
            time.sleep(0.01)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(label, round(wall, 3), round(usage.ru_utime + usage.ru_stime, 3),
                   hwm or round(usage.ru_maxrss / 1024, 1), proc.returncode,
                   out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                   round(usage.ru_utime, 3), round(usage.ru_stime, 3), round(sum(helpers.values()), 1),
                   round(sum(private.values()), 1))


def check(run: Run) -> Run:
    if run.code != 0:
        raise SystemExit(f"{run.label} failed (exit {run.code}):\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    return run


def _children(pid: int) -> list[int]:
    """The live children of a process (each thread's list, /proc/<pid>/task/<tid>/children)."""
    kids: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids += [int(k) for k in fh.read().split()]
        except OSError:
            pass
    return kids


def _is_helper(pid: int) -> bool:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return b"write_helper" in fh.read()


def _private_mb(pid: int) -> float:
    """Private_Clean + Private_Dirty of a process (/proc/<pid>/smaps_rollup): the memory it alone adds."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def proc_rss_mb(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of a live process, in MB."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a live process, in seconds (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def workspace(name: str):
    """A temporary directory with home/ (TEGBATCHD_HOME) and data/ (the data root); removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"tegbench-{name}-"))
    (root / "home").mkdir()
    (root / "data").mkdir()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def tool_env(root: Path, url: str | None = None, **extra: str) -> dict:
    """Environment of a `tegbatchd` subprocess: private home and data root, the emulator as the API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TEGBATCHD_"))}
    env.update(TEGBATCHD_HOME=str(root / "home"), TEGBATCHD_DATA_DIR=str(root / "data"), PYTHONUNBUFFERED="1")
    if url:
        env.update(ANTHROPIC_API_KEY=TEST_KEY, ANTHROPIC_BASE_URL=url)
    env.update(extra)
    return env


def write_config(root: Path, text: str) -> None:
    folder = root / "home" / "config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(text)


def tegbatchd(*args: str) -> list[str]:
    return [PY, "-m", "tegbatchd", *args]


Emulator = EmulatorProcess  # tegbatchd.emulator.launcher's: it imports no SDK, so this process stays small


def start_emulator(*args: str) -> Emulator:
    """Start `tegbatchd emulator --port 0 *args` (the benchmark process must stay small, because a child's
    ru_maxrss starts from its parent's RSS at the fork)."""
    try:
        return EmulatorProcess.start(*args, python=PY)
    except EmulatorStartError as exc:
        raise SystemExit(str(exc)) from None


@contextmanager
def emulator(*args: str):
    emu = start_emulator(*args)
    try:
        yield emu
    finally:
        emu.stop()


def in_child(fn, *args):
    """Run fn(*args) in a forked child and return its (JSON-able) result, so that whatever it imports or
    allocates (the SDK, a store) does not inflate this process — and with it every later child's ru_maxrss."""
    with tempfile.TemporaryFile() as out:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                out.write(json.dumps(fn(*args)).encode())
                out.flush()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{fn.__name__} failed in its child process")
        out.seek(0)
        return json.loads(out.read())


def own_rss_mb() -> float:
    """This process's peak RSS: every child's ru_maxrss is at least this (it starts from the fork)."""
    return proc_rss_mb(os.getpid())["VmHWM"]


def small_requests(path: Path, n: int, prefix: str = "r") -> Path:
    """n tiny, distinct requests (the answer size comes from the emulator's --answer-bytes)."""
    with path.open("w") as fh:
        for i in range(n):
            params = {"model": "claude-sonnet-5-5", "max_tokens": 1024,  # room for the emulator's whole answer
                      "messages": [{"role": "user", "content": f"note {i}"}]}
            fh.write(json.dumps({"custom_id": f"{prefix}-{i:06d}", "params": params}, separators=(",", ":")) + "\n")
    return path


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
               "harness_peak_rss_mb": own_rss_mb(), **payload}
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    return path


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in headers]] + [[f"{c:,.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(ok: bool, target: str = "") -> str:
    return "(info)" if target == "-" else "pass" if ok else "MISS"
