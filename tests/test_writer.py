"""tegbatchd.writer, both ways it names a file: an anonymous file linked into place (Linux O_TMPFILE) and
a named temp file renamed into place (elsewhere, or where the filesystem has no anonymous files)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat

import pytest

from tegbatchd import writer
from tegbatchd.writer import UnsafePath, Writer

pytestmark = pytest.mark.skipif(not writer._ANONYMOUS, reason="the anonymous way is Linux's")  # (CI is Linux)


@pytest.fixture(params=["anonymous", "named"])
def way(request, monkeypatch):
    monkeypatch.setattr(writer, "_ANONYMOUS", request.param == "anonymous")
    return request.param


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_new_file_appears_whole_with_its_sha_and_mode_and_no_temp(tmp_path, way):
    with Writer(tmp_path) as w:
        done = w.write(str(tmp_path / "a" / "b.md"), "héllo")
        streamed = w.write(str(tmp_path / "a" / "c.md"), iter([b"one ", b"two"]))
    assert (tmp_path / "a" / "b.md").read_text() == "héllo" and done.sha256 == _sha("héllo")
    assert streamed.sha256 == _sha("one two") and (tmp_path / "a" / "c.md").read_text() == "one two"
    assert _names(tmp_path / "a") == ["b.md", "c.md"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a" / "b.md").stat().st_mode) == writer.OUTPUT_MODE & ~umask


def test_an_anonymous_file_has_no_name_until_it_is_complete(tmp_path, monkeypatch, way):
    """What a kill -9 at any moment of the write can leave: nothing (anonymous) or a temp file (named)."""
    seen: list[list[str]] = []
    real_link, real_replace = writer._link, writer._replace
    monkeypatch.setattr(writer, "_link", lambda *a: (seen.append(_names(tmp_path)), real_link(*a)))
    monkeypatch.setattr(writer, "_replace", lambda *a: (seen.append(_names(tmp_path)), real_replace(*a)))
    with Writer(tmp_path) as w:
        w.write(str(tmp_path / "x.md"), "text")
    assert seen == ([[]] if way == "anonymous" else [[f".x.md.tmp-{os.getpid()}"]])
    assert _names(tmp_path) == ["x.md"]


def test_an_existing_file_is_replaced_when_ours_and_kept_when_edited(tmp_path, way):
    target = tmp_path / "r.md"
    recorded: dict[str, set[str]] = {}
    with Writer(tmp_path, recorded=lambda p: recorded.get(p, set())) as w:
        first = w.write(str(target), "v1")
        recorded[str(target)] = {first.sha256}
        second = w.write(str(target), "v2")  # the file holds our v1: replaced
        assert target.read_text() == "v2" and not second.beside
        recorded[str(target)].add(second.sha256)
        target.write_text("edited by hand")
        third = w.write(str(target), "v3")
    assert target.read_text() == "edited by hand"
    assert third.beside and third.path == str(tmp_path / "r.new.md") and third.output == str(target)
    assert (tmp_path / "r.new.md").read_text() == "v3"
    assert _names(tmp_path) == ["r.md", "r.new.md"]


def test_a_symlink_or_a_folder_in_the_output_s_place_is_refused(tmp_path, way):
    outside = tmp_path / "outside.md"
    outside.write_text("not ours")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.md").symlink_to(outside)
    (root / "dir.md").mkdir()
    with Writer(root) as w:
        with pytest.raises(UnsafePath):
            w.write(str(root / "link.md"), "new")
        with pytest.raises(IsADirectoryError):
            w.write(str(root / "dir.md"), "new")
    assert outside.read_text() == "not ours" and _names(root) == ["dir.md", "link.md"]


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path, monkeypatch, way):
    (tmp_path / "old.md").write_text("old")

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with Writer(tmp_path) as w:
        monkeypatch.setattr(writer.os, "write", disk_full)
        for name in ("old.md", "new.md"):
            with pytest.raises(OSError, match="No space"):
                w.write(str(tmp_path / name), "text")
    assert _names(tmp_path) == ["old.md"] and (tmp_path / "old.md").read_text() == "old"


def test_a_filesystem_without_anonymous_files_gets_named_temps_asked_once_per_folder(tmp_path, monkeypatch):
    asked: list[int] = []
    real_open = os.open

    def no_tmpfile(path, flags, *args, **kwargs):
        if flags & getattr(os, "O_TMPFILE", 0) == os.O_TMPFILE:
            asked.append(1)
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(writer.os, "open", no_tmpfile)
    with Writer(tmp_path) as w:
        for i in range(3):
            w.write(str(tmp_path / f"{i}.md"), f"text {i}")
    assert asked == [1] and _names(tmp_path) == ["0.md", "1.md", "2.md"]
    assert (tmp_path / "2.md").read_text() == "text 2"
