"""Self-metrics: every long-running monbus process counts what it does and drops.

Counters are published every `interval` seconds (default 10) as
`monbus.<host>.<component>.<name> <value> <ts> mtype=counter` (gauges with mtype=gauge).
"""
from __future__ import annotations

import socket

from .line import Sanitizer, format_number

INTERVAL = 10.0
_san = Sanitizer()


def hostname() -> str:
    """This host's short name, as a path component."""
    return _san(socket.gethostname().split(".")[0] or "localhost")


class Counters:
    """A named set of counters and gauges for one component."""

    def __init__(self, component: str, host: str | None = None, gauges=()):
        self.component = _san(component)
        self.host = host or hostname()
        self.values: dict[str, float] = {}
        self.gauges = set(gauges)

    def inc(self, name: str, n: float = 1) -> None:
        self.values[name] = self.values.get(name, 0) + n

    def set(self, name: str, value: float) -> None:
        self.gauges.add(name)
        self.values[name] = value

    def update(self, counts: dict, gauge: bool = False) -> None:
        """Set many values at once (totals kept elsewhere, e.g. a decoder's error counts)."""
        self.values.update(counts)
        if gauge:
            self.gauges.update(counts)

    def __getitem__(self, name: str) -> float:
        return self.values.get(name, 0)

    def lines(self, now: float) -> list[str]:
        """The self-metric lines at time `now`."""
        ts = format_number(float(int(now)))
        pre = f"monbus.{self.host}.{self.component}."
        out = []
        for name in sorted(self.values):
            mtype = "gauge" if name in self.gauges else "counter"
            out.append(f"{pre}{name} {format_number(float(self.values[name]))} {ts} mtype={mtype}")
        return out
