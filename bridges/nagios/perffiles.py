"""`monbus nagios spool`: the perfdata files Nagios (service_perfdata_file / host_perfdata_file),
Icinga 2 (PerfdataWriter) or a Nagflux/PNP4Nagios setup write, onto the bus.

Strategy (as Graphios does it): Nagios appends one `KEY::VALUE<TAB>...` line per check result to
its perfdata file and, every few seconds, its processing command moves the file into a spool
directory under a new name (contrib/nagios/).  This command processes the files of that
directory in the order they were written (mtime, then name), hands every line to the relay,
waits until the relay acknowledged all of it (or it went to the monbus spool), and only then
deletes the file: at-least-once.  A file whose lines could be neither delivered nor spooled is
kept and retried.  Bad records are reported, counted, and skipped; the file is still deleted.
"""
from __future__ import annotations

import fnmatch
import gc
import logging
import os

from monbus.core.chunks import line_chunks

from .perfdata import LineMaker

log = logging.getLogger("monbus.nagios.spool")


def pending_files(directory: str, pattern: str = "*") -> list[str]:
    """Complete files waiting in `directory`, oldest first (hidden and .tmp files skipped)."""
    out = []
    try:
        it = os.scandir(directory)
    except FileNotFoundError:
        return out
    with it:
        for e in it:
            n = e.name
            if n.startswith(".") or n.endswith(".tmp") or not fnmatch.fnmatchcase(n, pattern):
                continue
            try:
                if e.is_file():
                    out.append((e.stat().st_mtime_ns, n, e.path))
            except FileNotFoundError:
                pass
    out.sort()
    return [p for _, _, p in out]


class FileProcessor:
    """Reads perfdata files into a Sender; counts records, items and problems."""

    def __init__(self, sender, counters, source: str = "nagios", max_reports: int = 20):
        self.sender = sender
        self.counters = counters
        self.maker = LineMaker(source)
        self.reports_left = max_reports

    def _report(self, msg: str) -> None:
        if self.reports_left > 0:
            self.reports_left -= 1
            log.warning("%s", msg)
            if self.reports_left == 0:
                log.warning("further problems are only counted (self-metrics)")

    def feed_text(self, text: str, now: float, where: str = "") -> None:
        """Every record of a chunk of perfdata-file text into the sender (pure but for it)."""
        c = self.counters
        add_many = getattr(self.sender, "add_many", None)
        if add_many is None:
            add = self.sender.add

            def add_many(topic, lines):
                for line in lines:
                    add(line, topic)
        add_body = getattr(self.sender, "add_body", None)
        if add_body is None:
            def add_body(topic, body, n):
                add_many(topic, body.split("\n"))
        errors: list = []
        bad: list = []
        marks: list = []
        # No cycles are made here: the cyclic GC's passes over the young lists and tuples of
        # each record would only cost time (as in monbus.core.line.decode_batch).
        gc_was_on = gc.isenabled()
        if gc_was_on:
            gc.disable()
        try:
            records, lines_out = self.maker.feed(text, now, errors, add_many, bad, marks,
                                                 add_body)
        finally:
            if gc_was_on:
                gc.enable()
        for raw, problem in bad:
            self._report(f"{where}: bad record ({problem}): {raw[:120]!r}")
        for topic, first, end in marks:
            for e in errors[first:min(end, first + 3)]:
                self._report(f"{where}: {topic}: skipped {e}")
        c.inc("records", records)
        c.inc("bad_records", len(bad))
        c.inc("lines", lines_out)
        c.inc("bad_items", len(errors))

    def process(self, path: str, now: float) -> bool:
        """Deliver one file; delete it once all its lines are acknowledged or spooled.
        Returns True if the file was consumed."""
        sender = self.sender
        lost_before = sender.stats["lost_lines"]
        try:
            with open(path, "rb") as f:
                for chunk in line_chunks(f):
                    self.feed_text(chunk.decode("utf-8", "replace"), now, path)
                    sender.tick()
        except FileNotFoundError:
            return False
        except OSError as e:
            self.counters.inc("file_errors")
            self._report(f"cannot read {path}: {e.strerror}")
            return False
        wait_delivered(sender)
        if sender.stats["lost_lines"] != lost_before:
            self.counters.inc("files_kept")
            log.error("%s: %d lines neither acknowledged nor spooled; keeping the file",
                      path, sender.stats["lost_lines"] - lost_before)
            return False
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.counters.inc("files")
        return True


def wait_delivered(sender) -> None:
    """Flush and wait until every message is acknowledged (or, past the timeout, spooled)."""
    sender.wait_delivered(sender.timeout + 1.0)
