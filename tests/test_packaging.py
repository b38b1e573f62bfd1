"""`pip install .` into a new venv, run from another folder: the shipped files are in the wheel and the
emulator it installs serves the real SDK."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # Dependencies come from this test environment (a .pth file), the package itself from the wheel.
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (Path(purelib) / "test-deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    # The build backend (hatchling, a test dependency) comes from the test environment too: no isolated
    # build environment to download and install on every run; the wheel is still built and installed.
    built = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(REPO)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    return venv


def _run(venv: Path, cwd: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "tegbatchd"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, **kw)


def test_installed_wheel_carries_config_and_unit_templates(fresh_venv, tmp_path, monkeypatch):
    monkeypatch.setenv("TEGBATCHD_HOME", str(tmp_path / "home"))
    shown = _run(fresh_venv, tmp_path, "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "batch_discount" in shown.stdout
    where = subprocess.run([str(fresh_venv / "bin" / "python"), "-c",
                            "import tegbatchd, pathlib; print(pathlib.Path(tegbatchd.__file__).parent)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert not where.startswith(str(REPO)), "the test must use the installed wheel, not the checkout"
    shipped = Path(where) / "_shipped"
    assert (shipped / "config" / "default.yaml").is_file()
    assert list((shipped / "systemd").glob("*.service")) and list((shipped / "launchd").glob("*.plist"))


def test_installed_emulator_serves_the_sdk(fresh_venv, tmp_path):
    import anthropic

    proc = subprocess.Popen([str(fresh_venv / "bin" / "tegbatchd"), "emulator", "--port", "0",
                             "--process-seconds", "0"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = anthropic.Anthropic(api_key="k", base_url=url, max_retries=0)
        created = client.messages.batches.create(requests=[{"custom_id": "a", "params": {
            "model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}}])
        assert created.id in [b.id for b in client.messages.batches.list()]
        assert client.messages.batches.retrieve(created.id).processing_status == "ended"
        results = list(client.messages.batches.results(created.id))
        assert [r.custom_id for r in results] == ["a"] and results[0].result.type == "succeeded"
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_demo_from_the_fresh_install_writes_the_reports_and_leaves_nothing_running(fresh_venv, tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("ANTHROPIC_", "TEGBATCHD_"))}
    env["HOME"] = str(tmp_path / "home")
    env["TMPDIR"] = str(tmp_path / "tmp")  # the demo's own state folder stays inside the test's folder
    (tmp_path / "tmp").mkdir()
    out_dir = tmp_path / "reports"
    demo = subprocess.run([str(fresh_venv / "bin" / "tegbatchd"), "demo", "--data-dir", str(out_dir)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "you could close your laptop now" in demo.stdout
    assert "submitted stage narrative" in demo.stdout  # the next stage went by itself
    files = sorted(p.relative_to(out_dir) for p in (out_dir / "commentary").rglob("*.md"))
    assert len(files) == 33  # 11 rounds of sample data: story notes, report and combined file each
    for f in files:
        assert str(f) in demo.stdout
    assert not (tmp_path / "home" / ".local" / "state" / "tegbatchd").exists()  # the person's state untouched
    left = subprocess.run(["pgrep", "-f", f"{fresh_venv}/bin/python -m tegbatchd emulator"], capture_output=True)
    assert left.returncode == 1, "the demo's emulator is still running"
