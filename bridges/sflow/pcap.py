"""Read UDP payloads out of a classic pcap file (for `monbus sflow decode`, the demo, tests and
the benchmark).  Pure: takes bytes, yields (timestamp, src address, dst port, payload).

Link types: Ethernet (1, with 802.1Q tags), raw IP (101 / 12 / 14), Linux cooked (113) and
BSD loopback (0).  IPv4 fragments other than the first are skipped (their payload is not a
datagram start); a truncated frame gives what it has, which the sFlow decoder then reports.
"""
from __future__ import annotations

import ipaddress
import struct
from typing import Iterator

__all__ = ["PcapError", "udp_payloads"]


class PcapError(ValueError):
    """Not a pcap file this reader understands."""


_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
          b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}


def udp_payloads(data: bytes) -> Iterator[tuple[float, str, int, bytes]]:
    """(time, source address, destination port, UDP payload) for every UDP frame."""
    if len(data) < 24:
        raise PcapError("file shorter than a pcap header")
    magic = data[:4]
    if magic not in _MAGIC:
        if magic == b"\x0a\x0d\x0d\x0a":
            raise PcapError("pcapng is not supported; convert with "
                            "`editcap -F pcap in.pcapng out.pcap`")
        raise PcapError(f"not a pcap file (magic {magic.hex()})")
    endian, unit = _MAGIC[magic]
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    off = 24
    n = len(data)
    while off + 16 <= n:
        sec, frac, incl, _orig = rec.unpack_from(data, off)
        off += 16
        frame = data[off:off + incl]
        off += incl
        got = _udp(linktype, frame)
        if got is not None:
            yield (sec + frac * unit, got[0], got[1], got[2])


def _udp(linktype: int, f: bytes):
    if linktype == 1:
        if len(f) < 14:
            return None
        et = (f[12] << 8) | f[13]
        o = 14
        while et in (0x8100, 0x88A8) and len(f) >= o + 4:
            et = (f[o + 2] << 8) | f[o + 3]
            o += 4
    elif linktype == 113:
        if len(f) < 16:
            return None
        et = (f[14] << 8) | f[15]
        o = 16
    elif linktype == 0:
        if len(f) < 4:
            return None
        fam = struct.unpack_from("<I", f, 0)[0]
        et = 0x0800 if fam == 2 else 0x86DD
        o = 4
    elif linktype in (101, 12, 14):
        if not f:
            return None
        et = 0x0800 if f[0] >> 4 == 4 else 0x86DD
        o = 0
    else:
        return None
    if et == 0x0800:
        if len(f) < o + 20 or f[o + 9] != 17:
            return None
        if ((f[o + 6] & 0x1F) << 8) | f[o + 7]:
            return None  # not the first fragment
        ihl = (f[o] & 0x0F) * 4
        src = str(ipaddress.IPv4Address(f[o + 12:o + 16]))
        u = o + ihl
    elif et == 0x86DD:
        if len(f) < o + 40 or f[o + 6] != 17:
            return None
        src = str(ipaddress.IPv6Address(f[o + 8:o + 24]))
        u = o + 40
    else:
        return None
    if len(f) < u + 8:
        return None
    dport = (f[u + 2] << 8) | f[u + 3]
    ulen = (f[u + 4] << 8) | f[u + 5]
    end = u + ulen if ulen >= 8 else len(f)
    return src, dport, bytes(f[u + 8:end])
