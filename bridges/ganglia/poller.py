"""Fetching one XML dump from gmond (8649), gmetad (8651) or gmetad's query port (8652).

The thin I/O around XmlDumpParser: connect, send the query line if there is one, read until
the peer closes, feed each chunk to the parser as it arrives, all within one deadline.
"""
from __future__ import annotations

import socket
import time
from typing import NamedTuple

from .naming import Namer
from .xmldump import DEFAULT_MAX_BYTES, XmlDumpError, XmlDumpParser

__all__ = ["Source", "PollError", "parse_source", "poll"]


class PollError(Exception):
    """A source that could not be polled this time (network, timeout or bad XML)."""


class Source(NamedTuple):
    """Where to poll: host, port and, for gmetad's query port, the query path."""
    host: str
    port: int
    query: str | None

    def __str__(self):
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}{self.query or ''}"


def parse_source(text: str) -> Source:
    """'127.0.0.1:8649', '[::1]:8651', 'gmetad:8652/cluster/host' or
    'gmetad:8652/?filter=summary' -> Source.  Raises ValueError."""
    t = text.strip()
    path = None
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"expected [IPv6]:PORT[/query], got {text!r}")
        rest = rest[1:]
    else:
        host, sep, rest = t.partition(":")
        if not sep:
            raise ValueError(f"expected HOST:PORT[/query], got {text!r}")
    port, slash, q = rest.partition("/")
    if slash:
        path = "/" + q
    try:
        p = int(port)
        if not 0 < p <= 65535:
            raise ValueError
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if not host:
        raise ValueError(f"no host in {text!r}")
    if path is not None and any(c in path for c in "\r\n\0"):
        raise ValueError(f"control character in query of {text!r}")
    return Source(host, p, path)


def poll(src: Source, now: float, namer: Namer, *, timeout: float = 10.0,
         max_bytes: int = DEFAULT_MAX_BYTES, grid_tag: bool = True) -> tuple[list[str], dict]:
    """One poll: (lines, parser stats).  All-or-nothing: raises PollError for a source that
    failed or sent bad XML, and then none of its lines are returned."""
    deadline = time.monotonic() + timeout
    parser = XmlDumpParser(now, namer, max_bytes=max_bytes, grid_tag=grid_tag)
    lines: list[str] = []
    try:
        with socket.create_connection((src.host, src.port), timeout=timeout) as s:
            if src.query is not None:
                s.sendall(src.query.encode("utf-8") + b"\n")
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PollError(f"{src}: no complete answer within {timeout} s "
                                    f"({parser.stats['bytes']} bytes read)")
                s.settimeout(left)
                chunk = s.recv(262144)
                if not chunk:
                    break
                lines += parser.feed(chunk)
        lines += parser.close()
    except socket.timeout:
        raise PollError(f"{src}: no complete answer within {timeout} s "
                        f"({parser.stats['bytes']} bytes read)") from None
    except OSError as e:
        raise PollError(f"{src}: {e.strerror or e}") from None
    except XmlDumpError as e:
        raise PollError(f"{src}: {e}") from None
    stats = dict(parser.stats)
    stats["value_errors"] = list(parser.errors)
    # which parser answered: the exact (expat) path reads what the fast path does not
    stats["xml_exact_path"] = int(parser.path == "exact")
    stats["xml_fallback"] = parser.fallback
    return lines, stats
