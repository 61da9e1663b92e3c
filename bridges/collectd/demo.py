"""`monbus demo` for collectd: a real capture of collectd 5.12 (cpu, load, memory, interface,
uptime, df; SecurityLevel Sign, user monbus) replayed through the network decoder."""
from __future__ import annotations

from importlib.resources import files

from monbus.core.options import make_sender

from .capture import read_pcap
from .network import NetworkDecoder
from .typesdb import TypesDB

#: the capture's credentials (made for the monbus test corpus, not a secret)
DEMO_USERS = {b"monbus": b"s3cr3t-sign"}


def feed(relay: str, spool: str | None) -> int:
    """Send the lines of the shipped signed capture to `relay`; return how many were sent."""
    path = files("monbus.bridges.collectd") / "data" / "collectd512_local_signed.pcap"
    decoder = NetworkDecoder(TypesDB(), security_level="sign", password_of=DEMO_USERS.get)
    sender = make_sender(relay, spool, 2.0)
    n = 0
    for datagram in read_pcap(str(path)):
        lines, _ = decoder.decode(datagram)
        for line in lines:
            sender.add(line)
        n += len(lines)
        sender.tick()
    sender.close()
    return n
