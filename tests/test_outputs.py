"""tegbatchd.outputs: output paths decided inside the data root, atomic writes, stale temp files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tegbatchd.errors import InputError
from tegbatchd.outputs import AtomicWriter, remove_stale_temps, render_output, resolve_inside


def test_render_output_fills_custom_id_and_index():
    assert render_output("commentary/{custom_id}/{index}.md", custom_id="r-7", index=7) == "commentary/r-7/7.md"
    assert render_output("fixed.md", custom_id="a", index=0) == "fixed.md"


def test_render_output_refuses_an_unknown_placeholder():
    with pytest.raises(InputError) as caught:
        render_output("out/{model}.md", custom_id="a", index=0)
    text = caught.value.render()
    assert "{model}" in text and "{custom_id}" in text and "{index}" in text


def test_resolve_inside_gives_the_absolute_path_under_the_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    assert resolve_inside(root, "commentary/misc/a.md") == root.resolve() / "commentary" / "misc" / "a.md"


@pytest.mark.parametrize("relative, problem", [
    ("", "names no file"),
    ("folder/", "names no file"),
    ("/etc/passwd", "is absolute"),
    ("~/notes.md", "is absolute"),
    ("a/../../b.md", "contains .."),
    ("a\x00b.md", "NUL byte"),
    ("x" * 241 + ".md", "over 240 bytes"),
])
def test_resolve_inside_refuses_paths_that_could_not_or_must_not_be_written(tmp_path, relative, problem):
    with pytest.raises(InputError) as caught:
        resolve_inside(tmp_path, relative)
    assert problem in caught.value.render()


def test_resolve_inside_follows_symlinks_before_deciding(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "inner").symlink_to(root / "real", target_is_directory=True)
    with pytest.raises(InputError, match="resolves outside the data root"):
        resolve_inside(root, "escape/a.md")
    assert resolve_inside(root, "inner/a.md") == root.resolve() / "real" / "a.md"


def test_resolve_inside_refuses_a_folder_and_a_file_in_the_way(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "notes.md").write_text("a file")
    with pytest.raises(InputError, match="is a folder"):
        resolve_inside(tmp_path, "reports")
    with pytest.raises(InputError) as caught:
        resolve_inside(tmp_path, "notes.md/deeper/a.md")
    assert "is a file, not a folder" in caught.value.render() and "notes.md" in caught.value.render()


def test_atomic_writer_writes_makes_folders_and_returns_the_sha256(tmp_path):
    target = tmp_path / "a" / "b" / "out.md"
    digest = AtomicWriter().write(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert digest == hashlib.sha256("héllo\n".encode()).hexdigest()
    AtomicWriter().write(str(target), "second")  # replaces, from a string path too
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.md"]
    AtomicWriter.sync()


def test_a_write_that_fails_midway_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.md"
    target.write_text("old")
    writer = AtomicWriter()

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError):
        writer.write(target, "new text")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.md"]


def _finished_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_remove_stale_temps_removes_dead_writers_temps_and_leaves_live_ones(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = folder / f".a.md.tmp-{_finished_pid()}"
        mine = folder / f".b.md.tmp-{os.getpid()}"  # this process is not writing it now
        alive = folder / f".c.md.tmp-{live.pid}"
        kept = [folder / "a.md", folder / "notes.tmp"]
        for path in (dead, mine, alive, *kept):
            path.write_text("x")
        assert remove_stale_temps([folder, str(folder), tmp_path / "missing"]) == 2
        assert sorted(p.name for p in folder.iterdir()) == sorted([alive.name, "a.md", "notes.tmp"])
    finally:
        live.kill()
        live.wait()
    assert remove_stale_temps([Path(folder)]) == 1  # its writer is gone now


def test_where_sync_does_not_wait_every_file_and_its_folder_are_fsynced(tmp_path, monkeypatch):
    """macOS's sync() may return before the data is on disk: there the writer fsyncs each file and its
    folder as it writes, and the group's sync() is not relied upon."""
    from tegbatchd import writer

    synced, whole = [], []
    real_fsync = os.fsync
    monkeypatch.setattr(writer, "SYNC_WAITS", False)
    monkeypatch.setattr(writer.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    monkeypatch.setattr(writer.os, "sync", lambda: whole.append(1))
    with writer.Writer(tmp_path) as w:
        w.write(str(tmp_path / "a" / "one.md"), "one")
        w.write(str(tmp_path / "a" / "two.md"), "two")
        w.sync()
    assert len(synced) == 4 and whole == []  # two files, their folder after each rename; no sync()
    assert (tmp_path / "a" / "two.md").read_text() == "two"
    monkeypatch.setattr(writer, "SYNC_WAITS", True)
    synced.clear()
    flushed: list[int] = []
    monkeypatch.setattr(writer, "_syncfs", lambda: lambda fd: flushed.append(os.fstat(fd).st_dev) or 0)
    with writer.Writer(tmp_path) as w:
        w.write(str(tmp_path / "a" / "three.md"), "three")
        w.sync()
    # Linux: one syncfs() of the filesystem written to for the group, no fsync per file, no global sync()
    assert synced == [] and whole == [] and flushed == [os.stat(tmp_path).st_dev]


def test_a_group_sync_flushes_each_filesystem_written_to_once_and_reports_a_failure(tmp_path, monkeypatch):
    import tempfile

    from tegbatchd import writer

    if not writer.SYNC_WAITS:
        pytest.skip("syncfs is Linux's")  # the fsync path above covers the others
    assert writer._syncfs() is not None  # glibc has it on every Linux this runs on
    flushed: list[int] = []
    real = writer._syncfs()
    monkeypatch.setattr(writer, "_syncfs", lambda: lambda fd: flushed.append(os.fstat(fd).st_dev) or real(fd))
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other, writer.Writer(None) as w:
        for i in range(3):
            w.write(str(tmp_path / f"d{i}" / "x.md"), "x")
            w.write(os.path.join(other, f"d{i}", "y.md"), "y")
        w.sync()
        devices = sorted({os.stat(tmp_path).st_dev, os.stat(other).st_dev})
        assert sorted(flushed) == devices and len(devices) == 2
    monkeypatch.setattr(writer, "_syncfs", lambda: lambda fd: -1)
    with writer.Writer(tmp_path) as w, pytest.raises(OSError, match="syncfs"):
        w.write(str(tmp_path / "z.md"), "z")
        w.sync()
