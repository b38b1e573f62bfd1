"""tegbatchd.write_helper: the process that makes retrieval's new files while the results are parsed.

Each test drives a real Writer(helper=True) and so a real helper process (no mocks of the process)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tegbatchd import write_helper, writer
from tegbatchd.writer import UnsafePath, Writer, Written

pytestmark = pytest.mark.skipif(not writer._ANONYMOUS, reason="the helper makes Linux's anonymous files")  # (CI)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _put_all(w: Writer, files: dict[str, str]) -> dict[str, object]:
    for path, text in files.items():
        w.put(path, text, path)
    return dict(w.done())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie (exited, not reaped yet) is not alive
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_new_files_are_made_by_the_helper_whole_with_their_sha_and_mode(tmp_path):
    files = {str(tmp_path / ("a" if i % 2 else "b") / f"{i:04d}.md"): f"answer {i} é " * (i % 50 + 1)
             for i in range(1200)}
    with Writer(tmp_path, helper=True) as w:
        results = _put_all(w, files)
        helper = w._helper
        assert helper is not None and _alive(helper.proc.pid)  # a process of its own made them
        pid = helper.proc.pid
    assert not _alive(pid) and helper.proc.returncode == 0  # closed with the writer, cleanly
    for path, text in files.items():
        assert results[path] == Written(path, _sha(text), False, path)
        assert open(path, encoding="utf-8").read() == text
    umask = os.umask(0)
    os.umask(umask)
    assert {os.stat(p).st_mode & 0o777 for p in files} == {writer.OUTPUT_MODE & ~umask}
    assert sorted(os.listdir(tmp_path / "a")) == sorted(os.path.basename(p) for p in files if "/a/" in p)


def test_an_existing_file_is_handed_back_replaced_when_ours_and_kept_when_edited(tmp_path):
    ours, edited, new = tmp_path / "ours.md", tmp_path / "edited.md", tmp_path / "new.md"
    ours.write_text("the answer")  # a run killed after the file, before its record: the same text
    edited.write_text("my edit")
    recorded = {str(edited): {_sha("first answer")}}
    with Writer(tmp_path, helper=True, recorded=lambda p: recorded.get(p, set())) as w:
        results = _put_all(w, {str(ours): "the answer", str(edited): "second answer", str(new): "fresh"})
    assert results[str(ours)] == Written(str(ours), _sha("the answer"), False, str(ours))
    kept = tmp_path / "edited.new.md"
    assert results[str(edited)] == Written(str(kept), _sha("second answer"), True, str(edited))
    assert edited.read_text() == "my edit" and kept.read_text() == "second answer"
    assert new.read_text() == "fresh" and sorted(os.listdir(tmp_path)) == ["edited.md", "edited.new.md",
                                                                          "new.md", "ours.md"]


def test_a_symlinked_folder_is_refused_before_anything_reaches_the_helper(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked").symlink_to(outside)
    with Writer(root, helper=True) as w:
        results = _put_all(w, {str(root / "linked" / "x.md"): "no", str(root / "ok.md"): "yes"})
    assert isinstance(results[str(root / "linked" / "x.md")], UnsafePath)
    assert os.listdir(outside) == [] and (root / "ok.md").read_text() == "yes"


def test_a_helper_killed_mid_way_loses_nothing_the_writer_makes_the_rest(tmp_path):
    files = {str(tmp_path / f"{i:04d}.md"): f"text {i}" * 20 for i in range(600)}
    paths = list(files)
    with Writer(tmp_path, helper=True) as w:
        for path in paths[:300]:
            w.put(path, files[path], path)
        first = dict(w.collect(300))
        assert w._helper is not None
        pid = w._helper.proc.pid
        for path in paths[300:450]:
            w.put(path, files[path], path)
        os.kill(pid, signal.SIGKILL)  # files sent, some perhaps made, none answered
        w._helper.proc.wait()
        for path in paths[450:]:
            w.put(path, files[path], path)
        rest = dict(w.done())
    results = {**first, **rest}
    for path, text in files.items():
        assert results[path] == Written(path, _sha(text), False, path), path
        assert open(path).read() == text
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)  # no temp file left


def test_no_helper_process_to_be_had_means_written_in_process(tmp_path, monkeypatch):
    def refuse(mode):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(writer, "Helper", refuse)
    with Writer(tmp_path, helper=True) as w:
        results = _put_all(w, {str(tmp_path / "a.md"): "a", str(tmp_path / "b.md"): "b"})
        assert w._helper is None
    assert results[str(tmp_path / "b.md")] == Written(str(tmp_path / "b.md"), _sha("b"), False, str(tmp_path / "b.md"))
    assert (tmp_path / "a.md").read_text() == "a"


def test_the_helpers_own_errors_come_back_as_the_files_errors(tmp_path):
    """What the helper cannot do is said per file: a name taken, no anonymous file, an error with its path."""
    folder = tmp_path / "ro"
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert write_helper._make(fd, b"x.md", memoryview(b"text"), 0o644) == write_helper.OK
        assert write_helper._make(fd, b"x.md", memoryview(b"again"), 0o644) == write_helper.EXISTS
        bad = os.open(folder / "x.md", os.O_RDONLY)  # not a folder
        try:
            assert write_helper._make(bad, b"y.md", memoryview(b"t"), 0o644) in (
                write_helper.NO_ANONYMOUS, 20)  # ENOTDIR (kernels differ), never made
        finally:
            os.close(bad)
    finally:
        os.close(fd)
    assert (folder / "x.md").read_text() == "text"
    gone = tmp_path / "gone"  # a folder removed while the writer holds it open: no file can be made in it
    with Writer(tmp_path, helper=True) as w:
        assert isinstance(_put_all(w, {str(gone / "first.md"): "1"})[str(gone / "first.md")], Written)
        (gone / "first.md").unlink()
        gone.rmdir()
        results = _put_all(w, {str(gone / "z.md"): "z", str(tmp_path / "fine.md"): "fine"})
        assert w._helper is not None and w._helper.alive  # an error of one file, not of the helper
    error = results[str(gone / "z.md")]
    assert isinstance(error, OSError) and error.filename == str(gone / "z.md")  # (EPERM or ENOENT: kernels differ)
    assert (tmp_path / "fine.md").read_text() == "fine" and not gone.exists()


def test_the_helper_goes_when_the_retrieving_process_is_killed(tmp_path):
    """kill -9 of the process writing: its helper does not outlive it, and no file is left half-written."""
    script = textwrap.dedent(f"""
        import sys
        from tegbatchd.writer import Writer
        w = Writer({str(tmp_path)!r}, helper=True)
        for i in range(200):
            w.put({str(tmp_path)!r} + f"/{{i:03d}}.md", "x" * 5000, i)
        w.collect(200)
        print(w._helper.proc.pid, flush=True)
        for i in range(200, 100000):
            w.put({str(tmp_path)!r} + f"/{{i:05d}}.md", "y" * 5000, i)
            if i % 500 == 0:
                w.collect(500)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    helper_pid = int(proc.stdout.readline())
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while _alive(helper_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(helper_pid)
    names = os.listdir(tmp_path)
    assert len(names) > 200 and not [n for n in names if n.startswith(".")]
    for name in names:
        text = (tmp_path / name).read_text()
        assert text in ("x" * 5000, "y" * 5000), name  # each file whole or not there


def test_a_group_is_answered_when_collected_in_order_while_the_next_is_being_made(tmp_path):
    texts = {str(tmp_path / f"{i:02d}.md"): f"text {i}" for i in range(25)}
    paths = list(texts)
    with Writer(tmp_path, helper=True) as w:
        for path in paths[:10]:
            w.put(path, texts[path], path)
        w.mark()  # not waited for
        for path in paths[10:20]:
            w.put(path, texts[path], path)
        w.mark()
        for path in paths[20:]:
            w.put(path, texts[path], path)
        first = w.collect(10)
        assert [tag for tag, _ in first] == paths[:10]
        assert all(isinstance(r, Written) for _, r in first)
        assert len(w._marks) == 1  # the second group's answer is read when it is collected, not before
        rest = w.collect(15)
    assert [tag for tag, _ in rest] == paths[10:] and all(isinstance(r, Written) for _, r in rest)
    assert all(open(p).read() == t for p, t in texts.items())


def test_text_waiting_for_the_helpers_answer_stays_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "IN_FLIGHT", 10_000)
    with Writer(tmp_path, helper=True) as w:
        for i in range(40):
            w.put(str(tmp_path / f"{i}.md"), "x" * 2_000, i)
            assert w._flight < 10_000  # answered once that much was waiting, though no group was ended
        results = w.done()
    assert len(results) == 40 and all(isinstance(r, Written) for _, r in results)
