"""`monbus demo` for sFlow: replays real captured datagrams (bridges/sflow/data/, from
tcpdump's test captures: an HP switch's interface counters, two hsflowd hosts' host counters,
and an IPv6 agent's counters and flow samples) through the decoder to the relay."""
from __future__ import annotations

import time
from importlib import resources

from monbus.core.bus import Sender

from monbus.core.pcap import read_udp
from .pipeline import Pipeline

DEMO_FILES = ("demo_v4.pcap", "demo_v6.pcap")


def demo_lines(now: float) -> list[str]:
    """The lines the shipped sample datagrams give at time `now` (flows in one window)."""
    pipe = Pipeline(interval=10)
    lines: list[str] = []
    data = resources.files("monbus.bridges.sflow") / "data"
    for name in DEMO_FILES:
        for _, src, _, _, _, payload in read_udp((data / name).read_bytes()):
            lines += pipe.feed(payload, now, src)[0]
    lines += pipe.flush(now, final=True)
    return lines


def feed(relay: str, spool: str | None) -> int:
    """Send the sample data's lines to `relay`; return how many were sent."""
    lines = demo_lines(time.time())
    sender = Sender(relay, spool, 5.0)
    for line in lines:
        sender.add(line)
    sender.close()
    return len(lines)
