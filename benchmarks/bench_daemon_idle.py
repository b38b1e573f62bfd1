"""Daemon idle: RSS after start and after N idle minutes, and CPU seconds per idle hour, of `tegbatchd daemon`
with its default config (heartbeat 30 s, poll interval 5 min) — with nothing pending, and with 50 batches
pending on the emulator (they never end). Both daemons run side by side.

    python benchmarks/bench_daemon_idle.py [--minutes 10] [--pending 50]

Targets: nothing pending <= 40 MB and the SDK not loaded; 50 pending <= 120 MB; <= 2 CPU s per idle hour
(extrapolated from utime+stime in /proc/<pid>/stat between the first sample after start and the last).
Headless: no session bus, so notices go to the log notifier (desktop-notifier is not loaded); the extra
RSS of the desktop backend is measured beside (`import desktop_notifier` in a bare interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time

from _common import (
    PY,
    emulator,
    in_child,
    measure,
    proc_cpu_s,
    proc_rss_mb,
    save,
    small_requests,
    table,
    tegbatchd,
    tool_env,
    verdict,
    workspace,
)

SAMPLE_SECONDS = 10.0
START_SECONDS = 8.0    # first sample: after the start-up poll


def headless(env: dict) -> dict:
    return {k: v for k, v in env.items() if k not in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR")}


def submit_pending(root, url: str, count: int) -> list[str]:
    import contextlib
    import io

    from tegbatchd.cli import main

    os.environ.update(tool_env(root, url))
    ids = []
    for j in range(count):
        reqs = small_requests(root / f"q{j}.jsonl", 2, prefix=f"q{j}")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["submit", "requests", str(reqs), "--output", "idle/{custom_id}.md", "--json"]) == 0
        ids += json.loads(out.getvalue())["batch_ids"]
    return ids


def sdk_loaded(pid: int) -> bool:
    """The SDK's pydantic-core extension is mapped into the process (the SDK is pure Python otherwise)."""
    with open(f"/proc/{pid}/maps") as fh:
        return "pydantic_core" in fh.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--pending", type=int, default=50)
    args = parser.parse_args()
    with workspace("idle") as root, emulator("--process-seconds", "1000000") as emu:
        homes = {"nothing pending": root / "empty", f"{args.pending} pending": root / "busy"}
        for home in homes.values():
            (home / "home").mkdir(parents=True)
            (home / "data").mkdir()
        in_child(submit_pending, homes[f"{args.pending} pending"], emu.url, args.pending)
        emu.reset_stats()
        daemons = {}
        for name, home in homes.items():
            log = open(home / "daemon.err", "w")
            daemons[name] = subprocess.Popen(tegbatchd("daemon"), env=headless(tool_env(home, emu.url)),
                                             stdout=subprocess.DEVNULL, stderr=log)
        started = time.monotonic()
        samples: dict[str, list[dict]] = {name: [] for name in daemons}
        next_sample = START_SECONDS
        end = START_SECONDS + args.minutes * 60
        while True:
            delay = started + next_sample - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for name, proc in daemons.items():
                if proc.poll() is not None:
                    raise SystemExit(f"the {name} daemon exited: {(homes[name] / 'daemon.err').read_text()[-2000:]}")
                samples[name].append({"t": round(time.monotonic() - started, 1), **proc_rss_mb(proc.pid),
                                      "cpu_s": round(proc_cpu_s(proc.pid), 3), "sdk_loaded": sdk_loaded(proc.pid)})
            if next_sample >= end:
                break
            next_sample = min(end, next_sample + SAMPLE_SECONDS)
        calls = emu.stats()["calls"]
        for proc in daemons.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(30) for name, proc in daemons.items()}
    desktop = measure("import desktop_notifier", [PY, "-c", "import desktop_notifier"])
    bare = measure("bare python", [PY, "-c", "pass"])
    rows, checks = [], {}
    limit = {"nothing pending": 40, f"{args.pending} pending": 120}
    for name, series in samples.items():
        first, last = series[0], series[-1]
        hours = (last["t"] - first["t"]) / 3600
        cpu_per_hour = (last["cpu_s"] - first["cpu_s"]) / hours if hours else float("nan")
        rows.append({"daemon": name, "rss_after_start_mb": first["VmRSS"], "rss_after_idle_mb": last["VmRSS"],
                     "peak_rss_mb": max(s["VmHWM"] for s in series), "cpu_s_per_idle_hour": round(cpu_per_hour, 3),
                     "sdk_loaded": last["sdk_loaded"], "exit_code": codes[name], "samples": series})
        checks[f"{name}: peak RSS MB"] = {"value": rows[-1]["peak_rss_mb"], "target": f"<= {limit[name]}",
                                          "ok": rows[-1]["peak_rss_mb"] <= limit[name]}
        checks[f"{name}: CPU s per idle hour"] = {"value": rows[-1]["cpu_s_per_idle_hour"], "target": "<= 2",
                                                  "ok": cpu_per_hour <= 2}
    checks["nothing pending: SDK not loaded"] = {"value": rows[0]["sdk_loaded"], "target": "False",
                                                 "ok": not rows[0]["sdk_loaded"]}
    print(f"{args.minutes:g} idle minutes, default config (heartbeat 30 s, poll every 5 min); API calls during "
          f"the run (both daemons): {', '.join(f'{k} {v}' for k, v in calls.items() if v) or 'none'}")
    print(table(["daemon", "RSS after start MB", f"RSS after {args.minutes:g} min MB", "peak MB", "CPU s/idle h",
                 "SDK loaded"],
                [[r["daemon"], r["rss_after_start_mb"], r["rss_after_idle_mb"], r["peak_rss_mb"],
                  r["cpu_s_per_idle_hour"], r["sdk_loaded"]] for r in rows]))
    print(f"desktop backend (not loaded here): `import desktop_notifier` peaks at {desktop.peak_rss_mb} MB "
          f"vs {bare.peak_rss_mb} MB for a bare interpreter")
    print()
    print(table(["check", "value", "target", "verdict"],
                [[k, v["value"], v["target"], verdict(v["ok"], v["target"])] for k, v in checks.items()]))
    print("results:", save("daemon_idle", {"minutes": args.minutes, "pending": args.pending, "api_calls": calls,
                                           "daemons": rows, "checks": checks,
                                           "desktop_notifier_import_rss_mb": desktop.peak_rss_mb,
                                           "bare_python_rss_mb": bare.peak_rss_mb}))


if __name__ == "__main__":
    main()
