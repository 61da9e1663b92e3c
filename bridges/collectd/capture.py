"""Reading captured collectd datagrams: pcap / pcapng files and bucky's `.pkts` files.

Only what the tests, the benchmark and the demo need: the UDP payloads of Ethernet, Linux
cooked (SLL), raw-IP and BSD-loopback captures, IPv4 or IPv6, in file order.
"""
from __future__ import annotations

import struct


def _udp_payload(linktype: int, frame: bytes) -> bytes | None:
    if linktype == 1:            # Ethernet (skipping 802.1Q tags)
        off = 12
        etype = struct.unpack_from(">H", frame, off)[0]
        while etype in (0x8100, 0x88A8):
            off += 4
            etype = struct.unpack_from(">H", frame, off)[0]
        off += 2
    elif linktype == 113:        # Linux cooked
        etype = struct.unpack_from(">H", frame, 14)[0]
        off = 16
    elif linktype in (0, 108):   # BSD loopback: 4-byte family
        fam = struct.unpack_from("=I", frame, 0)[0]
        etype = 0x0800 if fam == 2 else 0x86DD
        off = 4
    elif linktype in (101, 12, 228, 229):  # raw IP
        etype = 0x0800 if frame[0] >> 4 == 4 else 0x86DD
        off = 0
    else:
        return None
    if etype == 0x0800:
        ihl = (frame[off] & 0x0F) * 4
        if frame[off + 9] != 17:
            return None
        off += ihl
    elif etype == 0x86DD:
        if frame[off + 6] != 17:
            return None
        off += 40
    else:
        return None
    ulen = struct.unpack_from(">H", frame, off + 4)[0]
    return frame[off + 8:off + ulen] if ulen >= 8 else frame[off + 8:]


def read_pcap(path: str) -> list[bytes]:
    """The UDP payloads of a pcap or pcapng file, in order."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    out = []
    if magic == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(data)
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file (magic {magic.hex()})")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    pos = 24
    rec = struct.Struct(endian + "IIII")
    while pos + 16 <= len(data):
        _, _, incl, _ = rec.unpack_from(data, pos)
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        p = _udp_payload(linktype, frame)
        if p is not None:
            out.append(p)
    return out


def _read_pcapng(data: bytes) -> list[bytes]:
    out = []
    pos = 0
    endian = "<"
    linktypes: list[int] = []
    while pos + 12 <= len(data):
        if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            linktypes = []
        btype, blen = struct.unpack_from(endian + "II", data, pos)
        if blen < 12:
            break
        if btype == 1:
            linktypes.append(struct.unpack_from(endian + "H", data, pos + 8)[0])
        elif btype == 6:
            iface, _, _, incl, _ = struct.unpack_from(endian + "IIIII", data, pos + 8)
            frame = data[pos + 28:pos + 28 + incl]
            p = _udp_payload(linktypes[iface] if iface < len(linktypes) else 1, frame)
            if p is not None:
                out.append(p)
        pos += blen
    return out


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
