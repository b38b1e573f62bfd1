"""A helper process that writes retrieval's new output files on the other core while the results are parsed.

Python threads cannot share this work: a writer thread waited for the GIL after each of a file's four
system calls (measured in BENCHMARKS.md). A process has no GIL to wait for. The retrieving process
parses, looks up and hashes each result and sends (folder, name, text) down a socket; the helper makes
each file as the writer does on Linux (an anonymous file in the folder, written, linked under its name),
so a file appears whole under its name or not at all.

- Folders reach the helper as open descriptors (SCM_RIGHTS), opened by the writer without following a
  symlink; the helper opens no path itself.
- What it cannot do, it hands back (a name that exists: maybe a hand edit; a folder without anonymous
  files; an error) and the writer does or reports it: the helper never replaces a file.
- It answers only at a barrier: the status of every file since the last one, in order. The writer reads
  a group's answer a group later, so neither waits for the other.
- It dies with the retrieving process (end of its socket; PDEATHSIG), ignores Ctrl-C and SIGTERM (the
  retrieving process decides when to stop), and leaves nothing half-written if killed.

Frames to the helper: a header (folder, name length, text length), then the name and the text. A negative
folder is a control frame: BARRIER, FOLDER (its descriptor follows on the descriptor socket; the id is in
the name-length field) or FORGET (close every folder: the writer's folder cache was emptied).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import sys
from array import array

HEADER = struct.Struct("<iII")
BARRIER, FOLDER, FORGET = -1, -2, -3
OK, EXISTS, NO_ANONYMOUS = 0, -1, -2  # statuses; a positive one is an errno
_ANON = getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
_NO_ANONYMOUS = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL}
SEND_AT = 1 << 16      # frames are sent in pieces of about this many bytes
IN_FLIGHT = 16 << 20   # at most this much text awaits its status (more: a barrier first)
SEND_ROOM = 4 << 20    # the socket's send buffer asked for


class HelperGone(Exception):
    """The helper process is not there (any more): the writer does its files itself."""


class Helper:
    """The retrieving side: send files, then barrier() for their statuses (in the order sent)."""

    def __init__(self, mode: int):
        data, data_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds, fds_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        import subprocess

        try:  # this file run as a script, isolated and without site: the standard library alone (small)
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__),
                 str(data_child.fileno()), str(fds_child.fileno()), str(mode)],
                pass_fds=(data_child.fileno(), fds_child.fileno()), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # it never prints: a failure to start
                start_new_session=True)  # is an early end (files written in-process); Ctrl-C is not its own
        except BaseException:
            for s in (data, data_child, fds, fds_child):
                s.close()
            raise
        data_child.close()
        fds_child.close()
        try:  # room for a burst of files while the helper is off the CPU (the system caps it: wmem_max)
            data.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_ROOM)
        except OSError:
            pass
        self._data, self._fds = data, fds
        self._ids: dict[int, int] = {}   # writer's folder descriptor -> id the helper knows it by
        self._buffer = bytearray()
        self.alive = True

    def folder(self, dfd: int) -> int:
        """The helper's id for an open folder (its descriptor sent once)."""
        known = self._ids.get(dfd)
        if known is not None:
            return known
        ident = len(self._ids)
        self._io(lambda: socket.send_fds(self._fds, [b"F"], [dfd]))
        self._buffer += HEADER.pack(FOLDER, ident, 0)
        self._ids[dfd] = ident
        return ident

    def forget_folders(self) -> None:
        """The writer closed its folders (their numbers may come back as other folders)."""
        if self._ids:
            self._ids = {}
            self._buffer += HEADER.pack(FORGET, 0, 0)

    def send(self, dfd: int, name: bytes, data: bytes) -> None:
        """Queue one new file (sent with others, about SEND_AT bytes at a time)."""
        ident = self._ids.get(dfd)
        if ident is None:
            ident = self.folder(dfd)
        self._buffer += HEADER.pack(ident, len(name), len(data))
        self._buffer += name
        self._buffer += data
        if len(self._buffer) >= SEND_AT:
            self._flush()

    def barrier(self) -> None:
        """End a group: the helper answers for every file sent since the last barrier once it has made
        them (read with statuses(), in order; not waited for here)."""
        self._buffer += HEADER.pack(BARRIER, 0, 0)
        self._flush()

    def statuses(self, count: int) -> array:
        """The answer to the oldest barrier not read yet: `count` statuses, in the order the files were sent
        (OK, EXISTS, NO_ANONYMOUS or an errno). Raise HelperGone when the helper is not there."""
        raw = self._io(lambda: _read_exact(self._data, 4 * count))
        statuses = array("i")
        statuses.frombytes(raw)
        return statuses

    def close(self) -> None:
        """End the helper (it finishes what it was sent, then exits) and wait for it."""
        for s in (self._data, self._fds):
            s.close()
        self.alive = False
        import subprocess

        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _flush(self) -> None:
        if self._buffer:
            buffer, self._buffer = self._buffer, bytearray()
            self._io(lambda: self._data.sendall(buffer))

    def _io(self, fn):
        if not self.alive:
            raise HelperGone("the write helper has stopped")
        try:
            return fn()
        except (OSError, EOFError) as exc:
            self.alive = False
            raise HelperGone(f"the write helper has stopped ({exc})") from exc
        except BaseException:  # interrupted mid-frame: the stream is out of step, so it is not used again
            self.alive = False
            raise


def _read_exact(sock: socket.socket, size: int) -> bytes:
    view = memoryview(bytearray(size))
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if not n:
            raise EOFError("the write helper closed its socket")
        got += n
    return bytes(view)


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def serve() -> None:
    """The helper's main loop (argv: data socket fd, descriptor socket fd, file mode)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    data_fd, fds_fd, mode = (int(a) for a in sys.argv[1:4])
    if os.getppid() == 1:
        return
    data = socket.socket(fileno=data_fd)
    fds = socket.socket(fileno=fds_fd)
    reader = data.makefile("rb", buffering=1 << 18)
    folders: dict[int, int] = {}
    statuses = array("i")
    header, unpack = HEADER.size, HEADER.unpack
    while True:
        head = reader.read(header)
        if len(head) < header:
            return  # the retrieving process has gone or closed: nothing more to do
        folder, name_len, data_len = unpack(head)
        if folder >= 0:
            body = reader.read(name_len + data_len)
            if len(body) < name_len + data_len:
                return
            statuses.append(_make(folders[folder], body[:name_len], memoryview(body)[name_len:], mode))
        elif folder == BARRIER:
            data.sendall(statuses.tobytes())
            statuses = array("i")
        elif folder == FOLDER:
            _, received, _, _ = socket.recv_fds(fds, 1, 1)
            folders[name_len] = received[0]
        elif folder == FORGET:
            for fd in folders.values():
                os.close(fd)
            folders = {}


def _make(dfd: int, name: bytes, text: memoryview, mode: int) -> int:
    """One new file, whole under its name or not at all; its status."""
    try:
        fd = os.open(".", _ANON, mode, dir_fd=dfd)
    except OSError as exc:
        return NO_ANONYMOUS if exc.errno in _NO_ANONYMOUS else exc.errno or 5
    try:
        while text:
            text = text[os.write(fd, text):]
        os.link(b"/proc/self/fd/%d" % fd, name, dst_dir_fd=dfd, follow_symlinks=True)
    except FileExistsError:
        return EXISTS
    except OSError as exc:
        return exc.errno or 5
    finally:
        os.close(fd)
    return OK


if __name__ == "__main__":
    serve()
