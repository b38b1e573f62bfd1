"""The one file writer: every output, --now answer, assembled TEG file and state file is written here.

Atomic: on Linux the text goes into an anonymous file (O_TMPFILE) in the target's folder, which is then
linked under its name: a killed writer leaves nothing, and a new file costs one change of the folder, as
a plain open() would. Over an existing file, and where there are no anonymous files, a temp file
`.NAME.tmp-PID` is renamed over the target; a killed writer leaves at most such temp files, swept
(remove_stale_temps) the next time a writer opens that folder.
Safe: below a data root no symlink is ever followed. The root's own path is walked from "/" and each
folder below it opened with O_NOFOLLOW relative to its parent's descriptor (created with
mkdir(dir_fd=...) when missing); each file is written and named through its folder's descriptor.
A folder (or the data root, or the output itself) replaced by a symlink after submit raises UnsafePath:
nothing is ever created or replaced outside the data root. Each folder is opened once per writer.
Hand edits kept: given the sha256s recorded for a path, a file that differs from all of them (and from
the new text) is the person's: the new text goes beside it as NAME.new.SUFFIX.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
import sys
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from tegbatchd.write_helper import EXISTS, IN_FLIGHT, NO_ANONYMOUS, OK, Helper, HelperGone

OUTPUT_MODE = 0o644       # outputs and assembled files (less the umask)
PRIVATE_MODE = 0o600      # state files: archives, summaries, config
FOLDER_MODE = 0o755       # folders created for outputs (less the umask)
TEMP_MARK = ".tmp-"
MAX_OPEN_FOLDERS = 128
# sync() waits for the writes to reach the disk on Linux only; elsewhere (macOS: "the writing, although
# scheduled, is not necessarily complete upon return") every file and its folder are fsynced instead.
SYNC_WAITS = sys.platform.startswith("linux")

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_READ = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_ANON = getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
# anonymous files (Linux): opened with O_TMPFILE, named by linking /proc/self/fd/N into the folder
_ANONYMOUS = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
HELPER_ALLOWED = os.environ.get("TEGBATCHD_WRITE_HELPER", "1") != "0"  # 0: every file written in-process


class UnsafePath(Exception):
    """An output that cannot be written without following a symlink (swapped in after submit)."""

    def __init__(self, path: str, where: str, what: str):
        self.path, self.where = path, where
        self.message = f"{where} {what}: {path} was not written (nothing is written through a symlink)"
        super().__init__(self.message)


class Written(NamedTuple):
    path: str        # where the text went: the output, or NAME.new.SUFFIX beside a hand-edited one
    sha256: str
    beside: bool     # True: the existing file was kept (a hand edit) and the text written beside it
    output: str = ""  # the output it was meant for (== path unless beside)


# one queued write's outcome: (tag, Written or the exception); (tag, None) for a put_sync()
Result = tuple[Any, Written | BaseException | None]


def temp_name(name: str) -> str:
    """The one temp-file scheme: `.NAME.tmp-PID` in the target's folder."""
    return f".{name}{TEMP_MARK}{os.getpid()}"


def beside_name(name: str, n: int = 1) -> str:
    """Where a new answer goes when NAME was edited by hand: `.new` before the suffix (a.md → a.new.md;
    n > 1 when that one was edited too: a.new2.md)."""
    mark = "new" if n == 1 else f"new{n}"
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{mark}.{suffix}" if dot and stem else f"{name}.{mark}"


def _beside(dfd: int, name: str, ours: Collection[str]) -> str:
    """The first free place beside hand-edited NAME: NAME.new.md, or one holding text of ours (an earlier
    new answer, `ours` being every sha256 recorded for it); a version the person edited is never replaced."""
    for n in range(1, 1000):
        candidate = beside_name(name, n)
        try:
            st = os.stat(candidate, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return candidate
        if stat.S_ISREG(st.st_mode) and _sha_of(candidate, dfd) in ours:
            return candidate
    raise OSError(errno.EEXIST, "999 edited versions are beside it already", name)


def _writer_alive(temp: str) -> bool:
    """Whether the process that named this temp file is running, other than us (a writer of ours removes
    its temp file when a write fails, so one left is stale)."""
    pid = temp.rsplit(TEMP_MARK, 1)[-1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _is_temp(name: str) -> bool:
    return name.startswith(".") and TEMP_MARK in name


def sweep_folder(fd: int) -> int:
    """Remove the temp files killed writers left in an open folder; return how many."""
    removed = 0
    with os.scandir(fd) as entries:
        names = [e.name for e in entries if _is_temp(e.name)]
    for name in names:
        if not _writer_alive(name):
            try:
                os.unlink(name, dir_fd=fd)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def remove_stale_temps(folders: Iterable[str | Path]) -> int:
    """Remove temp files a killed writer left in the given folders; return how many (live writers' kept)."""
    removed = 0
    for folder in {os.fspath(f) for f in folders}:
        try:
            fd = os.open(folder, _DIR)
        except OSError:
            continue
        try:
            removed += sweep_folder(fd)
        finally:
            os.close(fd)
    return removed


def _sha_of(name: str, dfd: int) -> str:
    fd = os.open(name, _READ, dir_fd=dfd)
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _replace(dfd: int, tmp: str, name: str, path: str) -> None:
    """Rename tmp over name inside one open folder (path: the target's full name, for tests' kill points)."""
    os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)


def _link(fd: int, dfd: int, name: str, path: str) -> None:
    """Give an anonymous file its name inside one open folder (FileExistsError when the name is taken;
    path: the target's full name, for tests' kill points)."""
    os.link(_fd_path(fd), name, dst_dir_fd=dfd, follow_symlinks=True)


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _unlink_quiet(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass


def _write_out(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_all(fd: int, chunks: Iterable[bytes], digest) -> None:
    """Write chunks (many small ones gathered into writes of about 1 MB)."""
    pending, size = [], 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= 1 << 20:
            joined = b"".join(pending)
            if digest is not None:
                digest.update(joined)
            _write_out(fd, joined)
            pending, size = [], 0
    if pending:
        joined = pending[0] if len(pending) == 1 else b"".join(pending)
        if digest is not None:
            digest.update(joined)
        _write_out(fd, joined)


class _Sent(NamedTuple):
    """A file handed to the helper process, kept until it answers (to be written here if it could not)."""
    dfd: int
    name: str
    path: str
    data: bytes
    sha: str


class Writer:
    """Writes files atomically below a root without following symlinks; keeps hand edits.

    root: the trusted folder (the data root as recorded at submit); None: each file's own folder is
    trusted (state files). recorded(path) → the sha256s recorded for that output, consulted only when
    the file exists and differs from the new text; None (or force) overwrites. put() writes and keeps the
    result for collect()/done() (a group's results, in order). Durability: sync() once per group before
    recording it (safe to call from another thread while this one writes); fsync=True syncs each file.
    """

    def __init__(self, root: str | Path | None = None, *, mode: int = OUTPUT_MODE,
                 recorded: Callable[[str], Collection[str]] | None = None, force: bool = False,
                 fsync: bool = False, sweep: bool = True, helper: bool = False):
        self.root = os.fspath(root).rstrip("/") or "/" if root is not None else None
        self.mode, self.recorded, self.force, self.sweep = mode, recorded, force, sweep
        self.fsync = fsync or not SYNC_WAITS
        self._fds: dict[str, int] = {}
        self._named_only: set[int] = set()  # folders whose filesystem has no anonymous files
        self._retired: list[int] = []   # folders dropped from the cache, closed once no queued write needs them
        self._lock = threading.Lock()
        self._results: list[list] = []  # [tag, result] of put(), not collected yet
        self._devices: dict[int, int] = {}  # st_dev -> a folder descriptor on that filesystem (for syncfs)
        # put()'s new files made by a helper process (tegbatchd.write_helper) on the other core: Linux only
        self._use_helper = helper and _ANONYMOUS and not self.fsync and HELPER_ALLOWED
        self._helper: Helper | None = None
        self._sent: list[list] = []  # results of put() sent to the helper since its last barrier
        self._marks: deque[list[list]] = deque()  # groups ended, not answered yet
        self._flight = 0             # bytes of text sent and not answered yet

    # --- folders ----------------------------------------------------------------------------------
    def _open_in(self, parent: int, part: str, shown: str, full: str, create: bool) -> tuple[int, bool]:
        """Open folder `part` in parent without following a symlink (creating it when missing)."""
        made = False
        for _ in range(3):
            try:
                return os.open(part, _DIR, dir_fd=parent), made
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, FOLDER_MODE, dir_fd=parent)
                    made = True
                except FileExistsError:
                    pass
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise
                st = os.stat(part, dir_fd=parent, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise UnsafePath(full, shown, "is a symlink now") from None
                raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of a folder", shown) from None
        raise OSError(errno.EAGAIN, "folder keeps changing", shown)

    def _root_fd(self) -> int:
        root = self.root
        assert root is not None, "only called below a data root"
        fd = self._fds.get("")
        if fd is None:
            fd = os.open("/", _DIR)
            shown = ""
            try:
                for part in root.strip("/").split("/"):
                    if part:
                        shown += "/" + part
                        try:
                            nfd, _ = self._open_in(fd, part, shown, root, True)
                        except UnsafePath as exc:
                            raise UnsafePath(root, shown, "(the data root or a folder above it) is a "
                                                               "symlink now") from exc
                        os.close(fd)
                        fd = nfd
            except BaseException:
                os.close(fd)
                raise
            self._note_device(fd)
            self._fds[""] = fd
        return fd

    def _folder(self, path: str) -> tuple[int, str]:
        """(descriptor of path's folder, file name), opening and caching folders on the way."""
        if self.root is None:
            folder, name = os.path.split(path)
            fd = self._fds.get(folder)
            if fd is None:
                os.makedirs(folder, exist_ok=True)
                fd = self._cache(folder, os.open(folder, os.O_RDONLY | os.O_DIRECTORY), True)
            return fd, name
        prefix = self.root.rstrip("/") + "/"
        if not path.startswith(prefix) or "/../" in path or "/./" in path:
            raise UnsafePath(path, path, "is not inside the data root " + self.root)
        folder, _, name = path[len(prefix):].rpartition("/")
        fd = self._fds.get(folder)
        if fd is not None:
            return fd, name
        fd, sofar = self._root_fd(), ""
        if not folder:  # a file directly in the data root: sweep the root once, like any folder
            self._fds.pop("")
            return self._cache("", fd, True), name
        for part in folder.split("/") if folder else ():
            if not part:
                continue
            sofar = f"{sofar}/{part}" if sofar else part
            cached = self._fds.get(sofar)
            if cached is None:
                cached, made = self._open_in(fd, part, prefix + sofar, path, True)
                cached = self._cache(sofar, cached, not made)
            fd = cached
        return fd, name

    def _cache(self, key: str, fd: int, existed: bool) -> int:
        if len(self._fds) >= MAX_OPEN_FOLDERS:
            if self._helper is not None:
                self._helper.forget_folders()
            root = self._fds.pop("", None)
            self._retired += self._fds.values()
            self._fds = {"": root} if root is not None else {}
        if existed and self.sweep:
            sweep_folder(fd)
        self._note_device(fd)
        self._fds[key] = fd
        return fd

    def _note_device(self, fd: int) -> None:
        """Keep one descriptor per filesystem written to, so that sync() flushes those alone."""
        if SYNC_WAITS:
            dev = os.fstat(fd).st_dev
            if dev not in self._devices:
                self._devices[dev] = os.dup(fd)

    # --- writing ----------------------------------------------------------------------------------
    def write(self, path: str | Path, data: str | bytes | Iterable[bytes]) -> Written:
        """Write one file now; raise UnsafePath or OSError."""
        path = os.fspath(path)
        with self._lock:
            dfd, name = self._folder(path)
        return self._put(dfd, name, path, data)

    def _put(self, dfd: int, name: str, path: str, data) -> Written:
        if isinstance(data, str):
            data = data.encode("utf-8")
        output = path
        anon = self._open_anonymous(dfd)
        if anon is None:
            return self._put_named(dfd, name, path, data)
        try:
            sha = self._fill(anon, data)
            try:
                _link(anon, dfd, name, path)  # a new file: it appears whole under its name, or not at all
                target, beside = name, False
            except FileExistsError:  # there is something by that name: replaced (or kept) as below
                target, path, beside = self._target(dfd, name, path, sha)
                tmp = temp_name(target)
                _unlink_quiet(dfd, tmp)  # a leftover of ours: never followed
                os.link(_fd_path(anon), tmp, dst_dir_fd=dfd, follow_symlinks=True)
                self._rename_in(dfd, tmp, target, path)
        finally:
            os.close(anon)
        if self.fsync:
            os.fsync(dfd)
        return Written(path, sha, beside, output)

    def _open_anonymous(self, dfd: int) -> int | None:
        """A file with no name yet in the folder (Linux O_TMPFILE): nothing is left of it if the writer is
        killed, and naming it is one step (a link) instead of a temp name and a rename. None where the
        kernel or the filesystem has no such files (then a named temp file is used)."""
        if not _ANONYMOUS or dfd in self._named_only:
            return None
        try:
            return os.open(".", _ANON, self.mode, dir_fd=dfd)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOTSUP):
                raise
            self._named_only.add(dfd)
            return None

    def _fill(self, fd: int, data: bytes | Iterable[bytes]) -> str:
        """Write the text into an open file (synced when self.fsync); return its sha256."""
        if isinstance(data, bytes):
            _write_out(fd, data)
            sha = hashlib.sha256(data).hexdigest()
        else:
            digest = hashlib.sha256()
            _write_all(fd, data, digest)
            sha = digest.hexdigest()
        if self.fsync:
            os.fsync(fd)
        return sha

    def _target(self, dfd: int, name: str, path: str, sha: str | None) -> tuple[str, str, bool]:
        """Where text with this sha256 goes when NAME may exist: (file name, its path, beside) — NAME itself,
        or NAME.new.SUFFIX beside a version edited by hand. Raise UnsafePath for a symlink, IsADirectoryError
        for anything but a file."""
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return name, path, False
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(path, path, "is a symlink now")
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a file", path)
        if sha is not None and (self.recorded is not None and not self.force):
            current = _sha_of(name, dfd)  # equal to the new text: ours (a run killed before recording it)
            known = self.recorded(path)
            if current != sha and current not in known:
                target = _beside(dfd, name, {*known, sha})
                return target, os.path.join(os.path.dirname(path), target), True
        return name, path, False

    def _rename_in(self, dfd: int, tmp: str, target: str, path: str) -> None:
        try:
            _replace(dfd, tmp, target, path)
        except BaseException:
            _unlink_quiet(dfd, tmp)
            raise

    def _put_named(self, dfd: int, name: str, path: str, data: bytes | Iterable[bytes]) -> Written:
        """_put through a named temp file (where the system has no anonymous files)."""
        sha = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else None
        output = path
        target, path, beside = self._target(dfd, name, path, sha)
        tmp = temp_name(target)
        try:
            fd = os.open(tmp, _NEW, self.mode, dir_fd=dfd)
        except FileExistsError:  # a leftover of ours: never followed, replaced
            os.unlink(tmp, dir_fd=dfd)
            fd = os.open(tmp, _NEW, self.mode, dir_fd=dfd)
        try:
            written = self._fill(fd, data)
        except BaseException:
            os.close(fd)
            _unlink_quiet(dfd, tmp)
            raise
        os.close(fd)
        self._rename_in(dfd, tmp, target, path)
        if self.fsync:
            os.fsync(dfd)
        return Written(path, sha or written, beside, output)

    # --- queued writing -----------------------------------------------------------------------------
    def put(self, path: str, data: str | bytes, tag) -> None:
        """Write a file; its (tag, Written or the exception) comes back from collect() or done(), in the
        order queued. With helper=True a new file is made by the helper process (answered at collect);
        else now, in the caller's thread. (Written by helper threads instead, each file's four system
        calls each waited for the GIL: slower, measured in BENCHMARKS.md.)"""
        slot: list = [tag, None]
        self._results.append(slot)
        try:
            dfd, name = self._folder(path)
            if self._use_helper and dfd not in self._named_only:
                if self._send(slot, dfd, name, path, data):
                    return
            slot[1] = self._put(dfd, name, path, data)
        except Exception as exc:  # noqa: BLE001 - every queued write gets its result, whatever went wrong
            slot[1] = exc
        except BaseException as exc:  # interrupted: still one result per write, then the interruption goes on
            slot[1] = exc
            raise

    def _send(self, slot: list, dfd: int, name: str, path: str, data: str | bytes) -> bool:
        """Hand a file to the helper process (started on first use); False when there is none."""
        if self._helper is None:
            try:
                self._helper = Helper(self.mode)
            except OSError:  # (no process to be had: written here, as on a system without anonymous files)
                self._use_helper = False
                return False
        elif not self._helper.alive:
            return False
        if isinstance(data, str):
            data = data.encode("utf-8")
        slot[1] = _Sent(dfd, name, path, data, hashlib.sha256(data).hexdigest())
        self._sent.append(slot)
        self._flight += len(data)
        try:
            self._helper.send(dfd, os.fsencode(name), data)
        except HelperGone:
            pass  # answered at collect: written here
        if self._flight >= IN_FLIGHT:
            self.mark()
            while self._marks:
                self._answer_group()
        return True

    def mark(self) -> None:
        """End a group of put()s: the helper process answers for them once it has made them, read at
        collect() (so a group's files are made while the next one is parsed). Nothing to do without it."""
        if not self._sent:
            return
        sent, self._sent = self._sent, []
        helper = self._helper
        if helper is not None and helper.alive:
            try:
                helper.barrier()
            except HelperGone:
                pass  # (not alive from now on: the group is written here when collected)
        self._marks.append(sent)

    def _answer_group(self) -> None:
        """The helper's statuses for the oldest group ended, into its results; what it could not make (a
        name that exists, no anonymous files there, the helper gone) is written here now."""
        sent = self._marks.popleft()
        try:
            statuses = None  # (a helper alive now was alive when this group's barrier was sent)
            if self._helper is not None and self._helper.alive:
                try:
                    statuses = self._helper.statuses(len(sent))
                except HelperGone:
                    pass  # each of them written here (one it made already is found to hold this very text)
            for i, slot in enumerate(sent):
                job: _Sent = slot[1]
                self._flight -= len(job.data)
                status = statuses[i] if statuses is not None else EXISTS
                try:
                    if status == OK:
                        slot[1] = Written(job.path, job.sha, False, job.path)
                    elif status > 0:
                        slot[1] = OSError(status, os.strerror(status), job.path)
                    else:
                        if status == NO_ANONYMOUS:
                            self._named_only.add(job.dfd)
                        slot[1] = self._put(job.dfd, job.name, job.path, job.data)
                except Exception as exc:  # noqa: BLE001 - as in put()
                    slot[1] = exc
        except BaseException as exc:  # interrupted: every file of the group not answered yet gets it
            for slot in sent:
                if isinstance(slot[1], _Sent):
                    slot[1] = exc
            raise

    def collect(self, count: int) -> list[Result]:
        """The next `count` results of put(), as (tag, Written or exception), in the order queued (waiting
        for the helper's answer to them, if it has not come)."""
        count = min(count, len(self._results))
        if count:
            last = self._results[count - 1]
            while isinstance(last[1], _Sent):
                if not self._marks:
                    self.mark()
                self._answer_group()
        out, self._results = self._results[:count], self._results[count:]
        if not self._results:
            self._close_retired()
        return [(tag, result) for tag, result in out]

    def done(self) -> list[Result]:
        """Every result of put() not collected yet, in the order queued."""
        return self.collect(len(self._results))

    def _close_retired(self) -> None:
        for fd in self._retired:
            os.close(fd)
        self._retired = []

    def sync(self) -> None:
        """Flush what was written to disk, once for a whole group (before the group is recorded): on Linux
        syncfs() of each filesystem this writer wrote to (other filesystems' dirty pages are not its
        business), else sync(); where sync() does not wait (not Linux) each file was already fsynced."""
        if not SYNC_WAITS:
            return
        devices = list(self._devices.values())
        syncfs = _syncfs()
        if syncfs is None or not devices:
            os.sync()
            return
        for fd in devices:
            if syncfs(fd) != 0:
                err = ctypes_errno()
                raise OSError(err, f"syncfs: {os.strerror(err)}")

    def close(self) -> None:
        try:
            self.done()
        finally:
            if self._helper is not None:
                self._helper.close()
                self._helper = None
        for fd in (*self._fds.values(), *self._devices.values()):
            os.close(fd)
        self._fds, self._devices = {}, {}

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) (Linux), or None where it cannot be had (then sync() is used)."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn  # type: ignore[no-any-return]


def ctypes_errno() -> int:
    import ctypes

    return ctypes.get_errno() or errno.EIO


def sync_everything() -> None:
    """Flush every filesystem (for callers whose writers are already closed); see Writer.sync."""
    if SYNC_WAITS:
        os.sync()


def write_file(path: str | Path, data: str | bytes | Iterable[bytes], *, root: str | Path | None = None,
               mode: int = OUTPUT_MODE, fsync: bool = False) -> Written:
    """Write one file atomically (below root without following symlinks, when root is given)."""
    with Writer(root, mode=mode, fsync=fsync) as writer:
        return writer.write(path, data)
