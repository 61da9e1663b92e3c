"""A spool directory: one file per bus message, written atomically, drained oldest first.

Senders (a Nagios hook, a cron job, a bridge daemon) write here what the relay did not
acknowledge in time; the relay of the same host writes here what it holds for subscribers
that are not there yet, and drains the directory while it runs.  The directory is shared by
every process of a host (`--spool DIR`, env MONBUS_SPOOL).

File format: `<topic>\\n<body>`, where body is lines joined by `\\n`.  Names sort by time of
writing: `<ns since epoch:020d>-<pid>-<counter>.msg`.  A file is written under a `.tmp` name
and renamed into place, so a reader never sees half a message, and a writer killed midway
leaves only a `.tmp` file that is cleaned up after an hour.
"""
from __future__ import annotations

import itertools
import os
import time

SUFFIX = ".msg"
_counter = itertools.count(1)


class SpoolError(OSError):
    """The spool directory cannot be written."""


class Spool:
    """A bounded spool directory.  `max_bytes` bounds its size: when full, the oldest
    messages are deleted and counted in `dropped_messages` / `dropped_bytes`."""

    def __init__(self, directory: str, max_bytes: int = 256 * 1024 * 1024, fsync: bool = False):
        self.dir = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.dropped_messages = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.written = 0
        # running estimate of the directory's size, so that a write does not list the
        # directory; re-read from disk every few seconds (other processes write here too)
        self._size: int | None = None
        self._size_at = 0.0
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise SpoolError(f"cannot create spool directory {directory!r}: {e.strerror}") from None

    # -- writing -------------------------------------------------------------------------
    def write(self, topic: bytes, body: bytes) -> str:
        """Write one message; return its file name.  Raises SpoolError."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter)}{SUFFIX}"
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        data = topic + b"\n" + body
        if self.max_bytes:  # unbounded (0): never list the directory
            now = time.monotonic()
            if self._size is None or now - self._size_at > 5.0:
                self._size = self.size()
                self._size_at = now
            if self._size + len(data) > self.max_bytes:
                self.make_room(len(data))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, os.path.join(self.dir, name))
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise SpoolError(f"cannot write spool file in {self.dir!r}: {e.strerror}") from None
        self.written += 1
        if self._size is not None:
            self._size += len(data)
        return name

    # -- reading -------------------------------------------------------------------------
    def list(self) -> list[tuple[str, int]]:
        """(name, size) of every complete message, oldest first."""
        out = []
        try:
            it = os.scandir(self.dir)
        except FileNotFoundError:
            return out
        now = time.time()
        with it:
            for e in it:
                n = e.name
                if n.endswith(SUFFIX) and not n.startswith("."):
                    try:
                        out.append((n, e.stat().st_size))
                    except FileNotFoundError:
                        pass
                elif n.endswith(".tmp"):
                    try:  # a writer killed mid-write left this; give live writers an hour
                        if now - e.stat().st_mtime > 3600:
                            os.unlink(e.path)
                    except OSError:
                        pass
        out.sort()
        return out

    def size(self) -> int:
        return sum(s for _, s in self.list())

    def read(self, name: str) -> tuple[bytes, bytes] | None:
        """(topic, body) of a message, or None if another process took it already."""
        try:
            with open(os.path.join(self.dir, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        topic, _, body = data.partition(b"\n")
        return topic, body

    def remove(self, name: str, size: int = 0) -> None:
        try:
            os.unlink(os.path.join(self.dir, name))
        except FileNotFoundError:
            return
        if self._size is not None:
            self._size = max(0, self._size - size)

    def make_room(self, incoming: int, listing: list | None = None) -> None:
        """Drop the oldest messages until `incoming` more bytes fit under max_bytes."""
        if not self.max_bytes:
            return
        files = listing if listing is not None else self.list()
        total = sum(s for _, s in files) + incoming
        i = 0
        while total > self.max_bytes and i < len(files):
            name, size = files[i]
            i += 1
            msg = self.read(name)
            self.remove(name, size)
            total -= size
            self.dropped_messages += 1
            self.dropped_bytes += size
            if msg is not None:
                self.dropped_lines += msg[1].count(b"\n") + 1
        del files[:i]
        self._size = total - incoming
        self._size_at = time.monotonic()
