"""`monbus demo` for Graphite: replay collectd 5.12's real write_graphite output (captured in
data/collectd512_write_graphite_raw.txt) through the carbon plaintext decoder of
`monbus graphite listen`, onto the relay."""
from __future__ import annotations

import time
from importlib import resources

from monbus.core.bus import Sender

from .plaintext import decode_datagram


def feed(relay: str, spool: str | None) -> int:
    """Send the sample through the listener's decoder to `relay`; return the lines sent."""
    data = resources.files("monbus.bridges.graphite").joinpath(
        "data/collectd512_write_graphite_raw.txt").read_bytes()
    lines = decode_datagram(data, time.time())
    sender = Sender(relay, spool, 2.0)
    for line in lines:
        sender.add(line.carbon(), line.topic)
    stats = sender.close()
    return len(lines) - stats["lost_lines"]
