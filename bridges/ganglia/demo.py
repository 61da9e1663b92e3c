"""`monbus demo` for Ganglia: replays a real gmond 3.7.2 capture (data/, 276 XDR datagrams:
core metrics, every gmetric type, spoofed hosts) through the listener's decoder to the relay.
Needs no Ganglia installed."""
from __future__ import annotations

from importlib import resources

from monbus.core.options import make_sender

from .listener import GmondListener
from monbus.core.pcap import read_udp

CAPTURE = "gmond372_local_xdr_capture.pcap"


def feed(relay: str, spool: str | None) -> int:
    """Send the capture's lines to `relay`; return how many lines were sent."""
    data = resources.files("monbus.bridges.ganglia").joinpath("data", CAPTURE).read_bytes()
    state = GmondListener("monbus-corpus")
    sender = make_sender(relay, spool, 2.0)
    n = 0
    last = 0.0
    for d in read_udp(data):
        lines, _ = state.feed(d.payload, d.ts)
        for line in lines:
            sender.add(line)
        n += len(lines)
        last = d.ts
    for line in state.expire(last):
        sender.add(line)
        n += 1
    sender.close()
    return n
