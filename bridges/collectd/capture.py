"""Reading captured collectd datagrams: pcap / pcapng files and bucky's `.pkts` files.

pcap and pcapng are read by the core's one capture reader (core/pcap.py); bucky's files are
collectd-specific and read here.
"""
from __future__ import annotations

import struct

from monbus.core.pcap import payloads


def read_pcap(path: str) -> list[bytes]:
    """The UDP payloads of a pcap or pcapng file, in order (core/pcap.py reads it)."""
    return payloads(path)


def read_pkts(path: str) -> list[bytes]:
    """bucky's test files: repeated [u16 big-endian length][datagram]."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    pos = 0
    while pos + 2 <= len(data):
        n = struct.unpack_from(">H", data, pos)[0]
        out.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    return out


def read_datagrams(path) -> list[bytes]:
    """The datagrams of one file, by its name: a capture (.pcap, .pcapng), bucky's .pkts, or
    one bare datagram (.bin); any other file holds none."""
    name = str(path)
    if name.endswith((".pcap", ".pcapng")):
        return read_pcap(name)
    if name.endswith(".pkts"):
        return read_pkts(name)
    if name.endswith(".bin"):
        with open(name, "rb") as f:
            return [f.read()]
    return []
