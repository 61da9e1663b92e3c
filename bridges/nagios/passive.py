"""`monbus nagios passive`: bus lines -> Nagios passive check results (external commands).

Availability lines (`mtype=state`, the Nagios code as value) become
`PROCESS_SERVICE_CHECK_RESULT;<host>;<service>;<code>;<output>` or, for a path that names the
host itself, `PROCESS_HOST_CHECK_RESULT;<host>;<code>;<output>` (Nagios 4 "External Commands").
With thresholds enabled, a metric line carrying `warn`/`crit` annotations is evaluated with the
Nagios range rules (critical first, then warning) and submitted the same way, with the value as
perfdata.

Mapping (the default formats): `<source>.<host>.<rest...>[.state]` -> host `<host>`, service
`<rest>` joined with `.`; a rest of `host` (or nothing) is a host check result.  Lines of source
`nagios` are skipped by default: Nagios made them, and feeding them back would loop.

`command_for` is pure; `CommandFile` is the thin writer around the FIFO.
"""
from __future__ import annotations

import errno
import os

from .perfdata import Range, format_number, parse_range

# one write to a FIFO of at most PIPE_BUF (4096) bytes is atomic: never interleaved with
# another writer's command
MAX_COMMAND = 4000


class SkipLine(ValueError):
    """A line that cannot become a passive result (the message says why)."""


def _clean(text: str) -> str:
    # Nagios reads one command per line; `|` would start perfdata; `\n` is how Nagios 4
    # spells a newline inside passive plugin output
    return text.replace("\r", "").replace("\n", "\\n").replace("|", "/")


def names(path: str, host_format: str = "{host}", service_format: str = "{rest}"):
    """(source, Nagios host, Nagios service or None for a host result) of a line's path."""
    comps = path.split(".")
    if len(comps) < 2:
        raise SkipLine("path has no host component")
    source, host, rest = comps[0], comps[1], comps[2:]
    if rest and rest[-1] == "state":
        rest = rest[:-1]
    fields = {"source": source, "host": host, "rest": ".".join(rest)}
    h = host_format.format(**fields)
    if not rest or rest == ["host"]:
        return source, h, None
    return source, h, service_format.format(**fields)


def evaluate(value: float, warn: Range | None, crit: Range | None) -> int:
    """Nagios state of a value against its thresholds: 2 if crit alerts, 1 if warn, else 0."""
    if crit is not None and crit.alerts(value):
        return 2
    if warn is not None and warn.alerts(value):
        return 1
    return 0


def command_for(line, thresholds: bool = False, include_nagios: bool = False,
                host_format: str = "{host}", service_format: str = "{rest}") -> str | None:
    """The external command for one decoded Line, or None if it is not for Nagios.
    Raises SkipLine for a line that should be but cannot be (bad state value, bad range)."""
    meta = line.meta or {}
    mtype = meta.get("mtype")
    path = line.path
    if mtype == "state":
        v = line.value
        if not v.is_integer() or not 0 <= v <= 3:
            raise SkipLine(f"state value {format_number(v)} is not a Nagios code 0-3")
        code = int(v)
        output = meta.get("output") or f"state {code} from monbus ({path})"
        perf = ""
    elif thresholds and ("warn" in meta or "crit" in meta):
        try:
            warn = parse_range(meta["warn"]) if meta.get("warn") else None
            crit = parse_range(meta["crit"]) if meta.get("crit") else None
        except ValueError as e:
            raise SkipLine(f"threshold: {e}") from None
        code = evaluate(line.value, warn, crit)
        unit = meta.get("unit", "")
        word = ("OK", "WARNING", "CRITICAL")[code]
        label = path.rsplit(".", 1)[-1]
        output = f"{word} - {label} = {format_number(line.value)}{unit}"
        bits = [x for x in (f"warn {warn}" if warn else "", f"crit {crit}" if crit else "") if x]
        output += f" ({', '.join(bits)})"
        uom = unit if unit in ("s", "%", "B", "") else ""
        perf = (f"|'{label}'={format_number(line.value)}{uom};{warn or ''};{crit or ''}")
    else:
        return None
    source, host, service = names(path, host_format, service_format)
    if source == "nagios" and not include_nagios:
        return None
    ts = int(line.timestamp)
    if service is None:
        head = f"[{ts}] PROCESS_HOST_CHECK_RESULT;{host};{min(code, 2)};"
    else:
        head = f"[{ts}] PROCESS_SERVICE_CHECK_RESULT;{host};{service};{code};"
    body = _clean(output)
    room = MAX_COMMAND - len(head.encode()) - len(perf.encode()) - 1
    if len(body.encode()) > room:
        body = body.encode()[:max(room - 3, 0)].decode("utf-8", "ignore") + "..."
    return head + body + perf + "\n"


class CommandFile:
    """Nagios' external command file (a FIFO, or a plain file): opened per batch, non-blocking,
    so a Nagios that is down or restarting never blocks monbus.  Commands that cannot be
    written are kept (bounded) and retried; drops are counted."""

    def __init__(self, path: str, max_backlog: int = 10_000):
        self.path = path
        self.backlog: list[str] = []
        self.max_backlog = max_backlog
        self.dropped = 0
        self.written = 0
        self.last_error: str | None = None

    def submit(self, commands: list[str]) -> int:
        """Queue and try to write commands; return how many were written now."""
        self.backlog.extend(commands)
        if len(self.backlog) > self.max_backlog:
            over = len(self.backlog) - self.max_backlog
            del self.backlog[:over]
            self.dropped += over
        return self.flush()

    def flush(self) -> int:
        """Write what is queued, as far as the command file takes it; return how many."""
        if not self.backlog:
            return 0
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND)
        except OSError as e:
            # ENXIO: a FIFO nobody reads (Nagios not running); ENOENT: not created yet
            self.last_error = f"cannot open {self.path}: {os.strerror(e.errno)}"
            return 0
        done = 0
        try:
            for cmd in self.backlog:
                data = cmd.encode("utf-8")
                try:
                    n = os.write(fd, data)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                        break  # the pipe is full: Nagios is busy, retry later
                    self.last_error = f"cannot write {self.path}: {os.strerror(e.errno)}"
                    break
                if n != len(data):  # only possible for a plain file on a full disk
                    self.last_error = f"short write to {self.path}"
                    done += 1
                    break
                done += 1
        finally:
            os.close(fd)
        del self.backlog[:done]
        self.written += done
        return done
