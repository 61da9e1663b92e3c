"""UDP datagrams out of a classic pcap file (libpcap format), for replaying captured gmond
traffic (the demo, golden tests).  Pure: bytes in, datagrams out.

Handles both byte orders, micro- and nanosecond timestamps, and the link types a capture on
a Linux host gives: Ethernet (1), raw IP (101), Linux cooked SLL (113), BSD loopback (0).
IPv4 and IPv6 without fragmentation; anything else is counted in `skipped`.
"""
from __future__ import annotations

import ipaddress
import struct
from typing import Iterator, NamedTuple

__all__ = ["Datagram", "PcapError", "read_udp"]


class PcapError(ValueError):
    """Not a pcap file, or a truncated one."""


class Datagram(NamedTuple):
    """One UDP payload with its capture time and addresses."""
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def read_udp(data: bytes, skipped: list | None = None) -> Iterator[Datagram]:
    """Yield every UDP datagram of a pcap file's bytes; other frames go to `skipped`."""
    if len(data) < 24:
        raise PcapError(f"too short for a pcap header: {len(data)} bytes")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise PcapError(f"not a pcap file (magic {magic.hex()}; pcapng is not supported)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(end + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(end + "IIII")
    pos = 24
    n = len(data)
    while pos + 16 <= n:
        sec, frac, caplen, _ = rec.unpack_from(data, pos)
        pos += 16
        if pos + caplen > n:
            raise PcapError(f"truncated record at byte {pos - 16}")
        frame = data[pos:pos + caplen]
        pos += caplen
        ts = sec + frac / (1e9 if nano else 1e6)
        got = _udp(linktype, frame, ts)
        if got is None:
            if skipped is not None:
                skipped.append(frame)
            continue
        yield got


def _udp(linktype: int, frame: bytes, ts: float) -> Datagram | None:
    if linktype == 1:  # Ethernet, possibly 802.1Q tagged
        off, etype = 14, frame[12:14]
        while etype == b"\x81\x00" and len(frame) >= off + 4:
            etype = frame[off + 2:off + 4]
            off += 4
    elif linktype == 113:  # Linux cooked capture
        off, etype = 16, frame[14:16]
    elif linktype == 101:  # raw IP
        off = 0
        etype = b"\x08\x00" if frame[:1] and frame[0] >> 4 == 4 else b"\x86\xdd"
    elif linktype == 0:  # BSD loopback: 4-byte address family in host order
        off = 4
        etype = b"\x08\x00" if frame[:4] in (b"\x02\0\0\0", b"\0\0\0\x02") else b"\x86\xdd"
    else:
        return None
    ip = frame[off:]
    if etype == b"\x08\x00" and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or struct.unpack_from(">H", ip, 6)[0] & 0x3FFF:  # not UDP, or fragment
            return None
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        udp = ip[ihl:]
    elif etype == b"\x86\xdd" and len(ip) >= 40:
        if ip[6] != 17:
            return None
        src, dst = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40]))
        udp = ip[40:]
    else:
        return None
    if len(udp) < 8:
        return None
    sport, dport, ulen = struct.unpack_from(">HHH", udp, 0)
    return Datagram(ts, src, sport, dst, dport, bytes(udp[8:max(ulen, 8)]))
