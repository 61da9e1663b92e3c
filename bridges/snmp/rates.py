"""Counter rates across polls, and across cron runs (`monbus snmp poll --state FILE`).

The counter lines themselves always go out raw (mtype=counter, with `max` = the counter's
width so a consumer can unwrap).  With a state, each counter also gets a `<name>_rate` line
(per second, mtype=gauge), computed here where the facts are known:
- a Counter32 that went down wrapped once (RFC 2578 section 7.1.6): add 2^32;
- a Counter64 that went down did not wrap (it would take centuries): a discontinuity, no rate;
- sysUpTime went down: the agent restarted, every counter of that target is a
  discontinuity (RFC 2578: counters may be reset at re-initialisation), no rates this time.
`CounterState` is pure; `load`/`save` are the only file I/O.
"""
from __future__ import annotations

import json
import os
import tempfile

from monbus.core.line import Line

from .samples import MAX32


class CounterState:
    """host -> {"uptime": sysUpTime ticks, "c": {series: [value, time]}}.

    Series are merged, not replaced, per host: modules polled on different intervals
    keep each other's counters."""

    def __init__(self, data: dict | None = None):
        self.data = data if isinstance(data, dict) else {}
        self.resets = 0       # polls whose rates were withheld because the agent restarted
        self.discontinuities = 0

    def rates(self, host: str, lines: list[Line], uptime: int | None, now: float) -> list[Line]:
        """Rate lines for the counter lines of one target's poll; remembers them."""
        prev = self.data.get(host)
        if not isinstance(prev, dict) or not isinstance(prev.get("c"), dict):
            prev = {"uptime": None, "c": {}}
        restarted = (uptime is not None and isinstance(prev.get("uptime"), int)
                     and uptime < prev["uptime"])
        if restarted:
            self.resets += 1
        seen = prev["c"]
        out = []
        for ln in lines:
            meta = ln.meta
            if not meta or meta.get("mtype") != "counter":
                continue
            old = seen.get(ln.series)
            seen[ln.series] = [ln.value, now]
            if restarted or not isinstance(old, list) or len(old) != 2:
                continue
            try:
                old_v, old_t = float(old[0]), float(old[1])
            except (TypeError, ValueError):
                continue
            dt = now - old_t
            if dt <= 0:
                continue
            delta = ln.value - old_v
            if delta < 0:
                if meta.get("max") == str(MAX32):
                    delta += MAX32 + 1
                else:
                    self.discontinuities += 1
                    continue
            m = {"mtype": "gauge", "unit": (meta["unit"] + "/s") if meta.get("unit") else "1/s",
                 "interval": f"{dt:.3f}".rstrip("0").rstrip(".")}
            path, sep, tags = ln.series.partition(";")
            out.append(Line(f"{path}_rate{sep}{tags}", delta / dt, ln.timestamp, m))
        self.data[host] = {"uptime": uptime if uptime is not None else prev.get("uptime"),
                           "c": seen}
        return out

    def prune(self, now: float, max_age: float = 7 * 86400) -> None:
        """Forget counters not seen for `max_age` seconds (interfaces that went away)."""
        for host in list(self.data):
            c = self.data[host].get("c", {}) if isinstance(self.data[host], dict) else {}
            for k in [k for k, v in c.items()
                      if not isinstance(v, list) or len(v) != 2 or now - v[1] > max_age]:
                del c[k]
            if not c:
                del self.data[host]


def load(path: str) -> CounterState:
    """The state in `path`; an absent or unreadable file is an empty state (first run)."""
    try:
        with open(path, encoding="utf-8") as f:
            return CounterState(json.load(f))
    except (OSError, ValueError):
        return CounterState()


def save(state: CounterState, path: str, now: float | None = None) -> None:
    """Write atomically (a cron run killed half-way leaves the previous state intact)."""
    if now is not None:
        state.prune(now)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".snmp-state.", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state.data, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
