"""UDP datagrams out of captured traffic: classic pcap and pcapng files.

The one reader every bridge uses to replay captures (demos, golden tests, benchmarks,
`monbus sflow decode`).  Pure: the file's bytes in, datagrams out, in file order.

- Files: pcap in both byte orders with micro- or nanosecond stamps; pcapng (section header,
  interface description with `if_tsresol`, enhanced and simple packet blocks), several
  sections and interfaces with different link types.
- Link types: Ethernet (1, with 802.1Q / 802.1ad tags), BSD loopback (0, host order; 108,
  network order), raw IP (12, 14, 101), IPv4 (228), IPv6 (229), Linux cooked (113, SLL2 276).
- IPv4 and IPv6 (UDP right after the fixed header).  A frame that is not UDP, a later IPv4
  fragment or a link type not listed goes to `skipped` if given.  A first fragment or a frame
  cut short by the capture's snap length yields what it holds: the decoders report the cut.
- A file that is not a capture, or whose last record is cut, raises PcapError naming the byte
  offset, after every complete datagram before it was yielded.
"""
from __future__ import annotations

import ipaddress
import struct
from typing import Iterator, NamedTuple

__all__ = ["Datagram", "PcapError", "read_udp", "read_file", "payloads"]

_PCAP = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
         b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
_PCAPNG = b"\x0a\x0d\x0d\x0a"
_ETHER_TAGS = (0x8100, 0x88A8, 0x9100)


class PcapError(ValueError):
    """Not a capture file this reader understands, or a cut or malformed one."""


class Datagram(NamedTuple):
    """One UDP payload with its capture time and addresses."""
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def read_udp(data: bytes, skipped: list | None = None) -> Iterator[Datagram]:
    """Yield every UDP datagram of a pcap or pcapng file's bytes; other frames go to `skipped`."""
    magic = bytes(data[:4])
    if magic == _PCAPNG:
        yield from _pcapng(data, skipped)
    elif magic in _PCAP:
        yield from _pcap(data, skipped)
    elif len(data) < 24:
        raise PcapError(f"too short for a capture file header: {len(data)} bytes")
    else:
        raise PcapError(f"not a pcap or pcapng file (magic {magic.hex()})")


def read_file(path: str, skipped: list | None = None) -> list[Datagram]:
    """Every UDP datagram of the capture file at `path`."""
    with open(path, "rb") as f:
        return list(read_udp(f.read(), skipped))


def payloads(path: str) -> list[bytes]:
    """The UDP payloads of the capture file at `path`, in order."""
    return [d.payload for d in read_file(path)]


def _pcap(data: bytes, skipped: list | None) -> Iterator[Datagram]:
    if len(data) < 24:
        raise PcapError(f"too short for a pcap header: {len(data)} bytes")
    endian, unit = _PCAP[bytes(data[:4])]
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    pos, n = 24, len(data)
    while pos < n:
        if pos + 16 > n:
            raise PcapError(f"record header cut at byte {pos} ({n - pos} of 16 bytes)")
        sec, frac, caplen, _ = rec.unpack_from(data, pos)
        if pos + 16 + caplen > n:
            raise PcapError(f"record at byte {pos} cut: {caplen} bytes announced, "
                            f"{n - pos - 16} left")
        frame = data[pos + 16:pos + 16 + caplen]
        pos += 16 + caplen
        got = udp_of_frame(linktype, frame, sec + frac * unit)
        if got is not None:
            yield got
        elif skipped is not None:
            skipped.append(frame)


def _pcapng(data: bytes, skipped: list | None) -> Iterator[Datagram]:
    pos, n = 0, len(data)
    endian = "<"
    ifaces: list[tuple[int, float]] = []          # (link type, seconds per timestamp unit)
    while pos < n:
        if pos + 12 > n:
            raise PcapError(f"block header cut at byte {pos}")
        if data[pos:pos + 4] == _PCAPNG:
            bom = bytes(data[pos + 8:pos + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise PcapError(f"section at byte {pos}: bad byte-order magic {bom.hex()}")
            ifaces = []
        btype, blen = struct.unpack_from(endian + "II", data, pos)
        if blen < 12 or blen % 4 or pos + blen > n:
            raise PcapError(f"block at byte {pos}: bad length {blen} ({n - pos} bytes left)")
        body = data[pos + 8:pos + blen - 4]
        if btype == 1 and len(body) >= 8:                       # interface description
            ifaces.append((struct.unpack_from(endian + "H", body, 0)[0],
                           _tsresol(body[8:], endian)))
        elif btype == 6 and len(body) >= 20:                    # enhanced packet
            iface, hi, lo, caplen, _ = struct.unpack_from(endian + "IIIII", body, 0)
            linktype, unit = ifaces[iface] if iface < len(ifaces) else (-1, 1e-6)
            got = udp_of_frame(linktype, body[20:20 + caplen], ((hi << 32) | lo) * unit)
            if got is not None:
                yield got
            elif skipped is not None:
                skipped.append(body[20:20 + caplen])
        elif btype == 3 and len(body) >= 4:                     # simple packet: interface 0
            origlen = struct.unpack_from(endian + "I", body, 0)[0]
            linktype = ifaces[0][0] if ifaces else -1
            frame = body[4:4 + origlen]
            got = udp_of_frame(linktype, frame, 0.0)
            if got is not None:
                yield got
            elif skipped is not None:
                skipped.append(frame)
        pos += blen


def _tsresol(options: bytes, endian: str) -> float:
    """Seconds per timestamp unit from an interface's options (if_tsresol, code 9)."""
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(endian + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1 and pos + 5 <= len(options):
            v = options[pos + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        pos += 4 + (length + 3) // 4 * 4
    return 1e-6


def udp_of_frame(linktype: int, frame: bytes, ts: float) -> Datagram | None:
    """The UDP datagram in one captured frame, or None when there is none."""
    n = len(frame)
    if linktype == 1:
        if n < 14:
            return None
        etype, off = (frame[12] << 8) | frame[13], 14
        while etype in _ETHER_TAGS and n >= off + 4:
            etype, off = (frame[off + 2] << 8) | frame[off + 3], off + 4
    elif linktype == 113:
        if n < 16:
            return None
        etype, off = (frame[14] << 8) | frame[15], 16
    elif linktype == 276:
        if n < 20:
            return None
        etype, off = (frame[0] << 8) | frame[1], 20
    elif linktype in (0, 108, 12, 14, 101, 228, 229):
        off = 4 if linktype in (0, 108) else 0
        if n <= off:
            return None
        version = frame[off] >> 4
        etype = 0x0800 if version == 4 else 0x86DD if version == 6 else 0
    else:
        return None
    if etype == 0x0800:
        if n < off + 20 or frame[off + 9] != 17:
            return None
        if ((frame[off + 6] & 0x1F) << 8) | frame[off + 7]:
            return None                                     # a later fragment
        src = str(ipaddress.IPv4Address(bytes(frame[off + 12:off + 16])))
        dst = str(ipaddress.IPv4Address(bytes(frame[off + 16:off + 20])))
        udp = off + (frame[off] & 0x0F) * 4
    elif etype == 0x86DD:
        if n < off + 40 or frame[off + 6] != 17:
            return None
        src = str(ipaddress.IPv6Address(bytes(frame[off + 8:off + 24])))
        dst = str(ipaddress.IPv6Address(bytes(frame[off + 24:off + 40])))
        udp = off + 40
    else:
        return None
    if n < udp + 8:
        return None
    sport, dport, ulen = struct.unpack_from(">HHH", frame, udp)
    end = udp + ulen if ulen >= 8 else n
    return Datagram(ts, src, sport, dst, dport, bytes(frame[udp + 8:end]))
