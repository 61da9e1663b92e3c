"""The carbon spool: an append-only, bounded, on-disk queue of plaintext lines per destination.

Strategy: everything `monbus carbon` takes from the bus is appended here *before* it is sent
(write-ahead), so nothing it received is lost when carbon is down, slow, or when monbus
carbon itself is killed.  A delivery thread reads the oldest undelivered chunk (`peek`),
sends it, and only once the destination took it moves the cursor (`commit`), which is
persisted; a crash between send and commit resends that chunk (at-least-once; carbon
overwrites a datapoint with the same timestamp, so a resend is harmless).

Layout of a journal directory:
- `<20-digit number>.seg`: segments of plaintext lines, appended; a new one every
  `segment_bytes`;  a segment is deleted once fully delivered;
- `cursor`: `<segment number> <offset>` of the first undelivered byte, replaced atomically.
A torn last line (power loss mid-write) is cut on open.  When the journal is over `max_bytes`,
whole segments are dropped oldest first and their undelivered lines counted (`dropped_lines`).

`MemoryJournal` has the same interface, without persistence (no --spool).
"""
from __future__ import annotations

import collections
import os
import threading

__all__ = ["Journal", "MemoryJournal", "JournalError"]

SEG_SUFFIX = ".seg"


class JournalError(OSError):
    """The spool directory cannot be used."""


class _Stats:
    def _init_stats(self):
        self.appended_lines = 0
        self.committed_lines = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.replayed_lines = 0


class Journal(_Stats):
    """A journal in `directory`; thread-safe between one appender and one deliverer."""

    def __init__(self, directory: str, max_bytes: int = 1 << 30,
                 segment_bytes: int | None = None, fsync: bool = False):
        self._init_stats()
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, min(max_bytes // 8, 64 << 20))
        self.fsync = fsync
        self._lock = threading.Lock()
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise JournalError(f"cannot create spool directory {directory!r}: "
                               f"{e.strerror}") from None
        self._segs: list[int] = []          # segment numbers, oldest first
        self._sizes: dict[int, int] = {}
        self._recover()
        self._wfd = None
        self._rfile = None
        self._rseg = None
        # data present at start was left by a previous run: delivering it is a replay
        self._replay_mark = (self._segs[-1], self._sizes[self._segs[-1]]) if self._segs else (0, 0)

    # -- opening ---------------------------------------------------------------------------
    def _path(self, seg: int) -> str:
        return os.path.join(self.dir, f"{seg:020d}{SEG_SUFFIX}")

    def _recover(self) -> None:
        try:
            names = os.listdir(self.dir)
        except OSError as e:
            raise JournalError(f"cannot read spool directory {self.dir!r}: {e.strerror}") from None
        segs = sorted(int(n[:-len(SEG_SUFFIX)]) for n in names
                      if n.endswith(SEG_SUFFIX) and n[:-len(SEG_SUFFIX)].isdigit())
        cur_seg, cur_off = self._read_cursor()
        for s in segs:
            if s < cur_seg:
                self._unlink(s)  # delivered before the last stop
        segs = [s for s in segs if s >= cur_seg]
        for s in segs:
            self._sizes[s] = os.path.getsize(self._path(s))
        if segs:
            self._cut_torn_tail(segs[-1])
        self._segs = segs
        if segs and segs[0] == cur_seg:
            self._cursor = (cur_seg, min(cur_off, self._sizes[cur_seg]))
        else:
            self._cursor = (segs[0], 0) if segs else (cur_seg, 0)
        if not segs:
            self._new_segment(max(cur_seg, 1))
            self._cursor = (self._segs[0], 0)

    def _read_cursor(self) -> tuple[int, int]:
        try:
            with open(os.path.join(self.dir, "cursor")) as f:
                a, b = f.read().split()
                return int(a), int(b)
        except (OSError, ValueError):
            return 0, 0

    def _cut_torn_tail(self, seg: int) -> None:
        size = self._sizes[seg]
        if not size:
            return
        with open(self._path(seg), "rb+") as f:
            f.seek(max(0, size - 65536))
            tail = f.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            new = (size - len(tail) + cut + 1) if cut >= 0 else max(0, size - len(tail))
            f.truncate(new)
            self._sizes[seg] = new

    def _new_segment(self, seg: int) -> None:
        open(self._path(seg), "ab").close()
        self._segs.append(seg)
        self._sizes[seg] = 0
        if getattr(self, "_wfd", None) is not None:
            os.close(self._wfd)
            self._wfd = None

    def _unlink(self, seg: int) -> None:
        try:
            os.unlink(self._path(seg))
        except FileNotFoundError:
            pass

    # -- appending -------------------------------------------------------------------------
    def append(self, data: bytes, nlines: int | None = None) -> None:
        """Append complete lines (`data` ends with a newline).  Raises JournalError."""
        if not data:
            return
        if nlines is None:
            nlines = data.count(b"\n")
        with self._lock:
            self._make_room(len(data))
            last = self._segs[-1]
            if self._sizes[last] and self._sizes[last] + len(data) > self.segment_bytes:
                self._new_segment(last + 1)
                last = self._segs[-1]
            try:
                if self._wfd is None:
                    self._wfd = os.open(self._path(last), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                        0o640)
                view = memoryview(data)
                while view:
                    n = os.write(self._wfd, view)
                    view = view[n:]
                if self.fsync:
                    os.fsync(self._wfd)
            except OSError as e:
                raise JournalError(f"cannot write spool in {self.dir!r}: {e.strerror}") from None
            self._sizes[last] += len(data)
            self.appended_lines += nlines

    def _make_room(self, incoming: int) -> None:
        """Drop the oldest segments (counting their undelivered lines) until `incoming` fits."""
        if not self.max_bytes:
            return
        while self._pending_bytes() + incoming > self.max_bytes:
            first = self._segs[0]
            if len(self._segs) == 1:
                if self._sizes[first] == 0:
                    return  # a single chunk larger than the bound: take it anyway
                self._new_segment(first + 1)
            seg, off = self._cursor
            start = off if seg == first else 0
            lost = self._sizes[first] - start
            if lost > 0:
                self.dropped_bytes += lost
                self.dropped_lines += self._count_lines(first, start)
            if self._rseg == first:
                self._close_reader()
            self._unlink(first)
            self._segs.pop(0)
            del self._sizes[first]
            self._cursor = (self._segs[0], 0)
            self._save_cursor()

    def _count_lines(self, seg: int, start: int) -> int:
        n = 0
        try:
            with open(self._path(seg), "rb") as f:
                f.seek(start)
                for block in iter(lambda: f.read(1 << 20), b""):
                    n += block.count(b"\n")
        except OSError:
            pass
        return n

    # -- delivering ------------------------------------------------------------------------
    def _pending_bytes(self) -> int:
        seg, off = self._cursor
        return sum(self._sizes[s] for s in self._segs) - (off if seg in self._sizes else 0)

    @property
    def pending_bytes(self) -> int:
        """Bytes appended but not yet delivered."""
        with self._lock:
            return self._pending_bytes()

    def _close_reader(self) -> None:
        if self._rfile is not None:
            self._rfile.close()
        self._rfile = None
        self._rseg = None

    def peek(self, max_bytes: int):
        """The oldest undelivered chunk of whole lines, at most `max_bytes` (unless one line is
        longer), as (token, data); None if everything was delivered."""
        with self._lock:
            while True:
                seg, off = self._cursor
                size = self._sizes.get(seg, 0)
                if off < size:
                    break
                if seg == self._segs[-1]:
                    return None
                # this segment is fully delivered and no longer written: delete it
                self._close_reader()
                self._unlink(seg)
                self._segs.remove(seg)
                del self._sizes[seg]
                self._cursor = (self._segs[0], 0)
                self._save_cursor()
            if self._rseg != seg:
                self._close_reader()
                self._rfile = open(self._path(seg), "rb")
                self._rseg = seg
            f = self._rfile
            f.seek(off)
            data = f.read(min(max_bytes, size - off))
            cut = data.rfind(b"\n")
            if cut < 0:  # a line longer than max_bytes: take it whole
                more = data
                while cut < 0 and off + len(more) < size:
                    more += f.read(min(1 << 20, size - off - len(more)))
                    cut = more.rfind(b"\n")
                data = more
            data = data[:cut + 1]
            return (seg, off, off + len(data)), data

    def commit(self, token, nlines: int) -> None:
        """Mark a peeked chunk delivered (ignored if the chunk was dropped meanwhile)."""
        seg, start, end = token
        with self._lock:
            if self._cursor != (seg, start):
                return
            self._cursor = (seg, end)
            self._save_cursor()
            self.committed_lines += nlines
            if (seg, start) < self._replay_mark:
                self.replayed_lines += nlines

    def mark_replay(self) -> None:
        """Everything appended so far waited for a failed destination: count it as replayed."""
        with self._lock:
            last = self._segs[-1]
            self._replay_mark = (last, self._sizes[last])

    def _save_cursor(self) -> None:
        tmp = os.path.join(self.dir, ".cursor.tmp")
        try:
            with open(tmp, "w") as f:
                f.write(f"{self._cursor[0]} {self._cursor[1]}\n")
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, os.path.join(self.dir, "cursor"))
        except OSError as e:
            raise JournalError(f"cannot write spool cursor in {self.dir!r}: {e.strerror}") from None

    def close(self) -> None:
        """Close the files (the journal stays on disk for the next start)."""
        with self._lock:
            if self._wfd is not None:
                os.close(self._wfd)
                self._wfd = None
            self._close_reader()


class MemoryJournal(_Stats):
    """The same interface in memory (no --spool): bounded, oldest dropped and counted."""

    def __init__(self, max_bytes: int = 256 << 20):
        self._init_stats()
        self.max_bytes = max_bytes
        self._chunks: collections.deque = collections.deque()  # [data, nlines, replay]
        self._bytes = 0
        self._lock = threading.Lock()
        self._serial = 0
        self._head = 0  # serial of the first chunk

    def append(self, data: bytes, nlines: int | None = None) -> None:
        """Append complete lines; the oldest are dropped (and counted) when full."""
        if not data:
            return
        if nlines is None:
            nlines = data.count(b"\n")
        with self._lock:
            while self._chunks and self._bytes + len(data) > self.max_bytes:
                d, n, _ = self._chunks.popleft()
                self._head += 1
                self._bytes -= len(d)
                self.dropped_bytes += len(d)
                self.dropped_lines += n
            self._chunks.append([data, nlines, False])
            self._serial += 1
            self._bytes += len(data)
            self.appended_lines += nlines

    @property
    def pending_bytes(self) -> int:
        """Bytes appended but not yet delivered."""
        return self._bytes

    def peek(self, max_bytes: int):
        """The oldest undelivered chunks, merged up to `max_bytes`, as (token, data)."""
        with self._lock:
            if not self._chunks:
                return None
            # merge small chunks into one send
            parts, size, i = [], 0, 0
            for d, _, _ in self._chunks:
                if parts and size + len(d) > max_bytes:
                    break
                parts.append(d)
                size += len(d)
                i += 1
            return (self._head, i), b"".join(parts)

    def commit(self, token, nlines: int) -> None:
        """Mark a peeked chunk delivered (ignored if it was dropped meanwhile)."""
        head, count = token
        with self._lock:
            if head != self._head:
                return
            for _ in range(count):
                d, n, replay = self._chunks.popleft()
                self._bytes -= len(d)
                if replay:
                    self.replayed_lines += n
            self._head += count
            self.committed_lines += nlines

    def mark_replay(self) -> None:
        """Count everything queued so far as replayed once it is delivered."""
        with self._lock:
            for c in self._chunks:
                c[2] = True

    def close(self) -> None:
        """Close the files (the journal stays on disk for the next start)."""
        pass
