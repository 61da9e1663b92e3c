"""Read the sampled packet header of a flow record: Ethernet, VLAN tags, IPv4/IPv6, TCP/UDP.

Pure and forgiving: a header is a truncated copy of the packet (sFlow samples the first
128 bytes or so), so every layer is read only as far as the bytes go; what cannot be read is
left as None.  Returns a `PacketInfo`; never raises for any input.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = ["PacketInfo", "parse_header", "ETHERTYPES", "IP_PROTOCOLS",
           "HEADER_ETHERNET", "HEADER_IPV4", "HEADER_IPV6"]

# sampled_header.protocol (sFlow v5 "header_protocol")
HEADER_ETHERNET = 1
HEADER_IPV4 = 11
HEADER_IPV6 = 12

# 0 is how PacketInfo marks an 802.3 frame with an LLC header and no SNAP ethertype
ETHERTYPES = {0: "llc", 0x0800: "ipv4", 0x86DD: "ipv6", 0x0806: "arp", 0x8035: "rarp", 0x88CC: "lldp",
              0x8847: "mpls", 0x8848: "mpls", 0x8863: "pppoe", 0x8864: "pppoe",
              0x888E: "eapol", 0x88F7: "ptp", 0x8906: "fcoe", 0x22F0: "avtp", 0x9000: "loop",
              0x88E5: "macsec", 0x8809: "slow"}
IP_PROTOCOLS = {0: "hopopt", 1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ipv6",
                46: "rsvp", 47: "gre", 50: "esp", 51: "ah", 58: "icmpv6", 89: "ospf",
                103: "pim", 112: "vrrp", 132: "sctp", 136: "udplite"}
# 802.1Q, 802.1ad (QinQ) and the pre-standard 0x9100 stacking tag
_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
# IPv6 extension headers that are skipped to find the transport header
_V6_EXT = (0, 43, 60)
_V6_FRAGMENT = 44
_PORTS = struct.Struct(">HH")


class PacketInfo(NamedTuple):
    """What the header says: ethertype, VLAN ids (outer first), IP version and addresses,
    transport protocol number and ports (None where the header is too short)."""
    ethertype: int | None = None
    vlans: tuple = ()
    ip_version: int | None = None
    src: bytes | None = None
    dst: bytes | None = None
    protocol: int | None = None
    src_port: int | None = None
    dst_port: int | None = None
    ip_length: int | None = None


def parse_header(protocol: int, header: bytes) -> PacketInfo:
    """Decode a sampled header of the given sFlow header_protocol."""
    if protocol == HEADER_ETHERNET:
        return _ethernet(header)
    if protocol == HEADER_IPV4:
        return _ip(header, 0, 0x0800, ())
    if protocol == HEADER_IPV6:
        return _ip(header, 0, 0x86DD, ())
    return PacketInfo()


def _ethernet(h: bytes) -> PacketInfo:
    n = len(h)
    if n < 14:
        return PacketInfo()
    off = 12
    etype = (h[off] << 8) | h[off + 1]
    off += 2
    vlans = []
    while etype in _VLAN_TPIDS and off + 4 <= n and len(vlans) < 8:
        vlans.append(((h[off] << 8) | h[off + 1]) & 0x0FFF)
        etype = (h[off + 2] << 8) | h[off + 3]
        off += 4
    if etype in _VLAN_TPIDS:  # tag cut off by the header length
        return PacketInfo(None, tuple(vlans))
    if etype < 0x0600:
        # an 802.3 length field: LLC/SNAP follows; report the SNAP ethertype if present
        if off + 8 <= n and h[off] == 0xAA and h[off + 1] == 0xAA:
            etype = (h[off + 6] << 8) | h[off + 7]
            off += 8
        else:
            return PacketInfo(0, tuple(vlans))
    return _ip(h, off, etype, tuple(vlans))


def _ip(h: bytes, off: int, etype: int, vlans: tuple) -> PacketInfo:
    n = len(h)
    if etype == 0x0800:
        if off + 20 > n or h[off] >> 4 != 4:
            return PacketInfo(etype, vlans)
        ihl = (h[off] & 0x0F) * 4
        total = (h[off + 2] << 8) | h[off + 3]
        proto = h[off + 9]
        src = h[off + 12:off + 16]
        dst = h[off + 16:off + 20]
        frag_offset = ((h[off + 6] & 0x1F) << 8) | h[off + 7]
        l4 = off + ihl
        sport = dport = None
        # only the first fragment carries the transport header
        if frag_offset == 0 and proto in (6, 17, 132, 136) and l4 + 4 <= n and ihl >= 20:
            sport, dport = _PORTS.unpack_from(h, l4)
        return PacketInfo(etype, vlans, 4, src, dst, proto, sport, dport, total)
    if etype == 0x86DD:
        if off + 40 > n or h[off] >> 4 != 6:
            return PacketInfo(etype, vlans)
        payload = (h[off + 4] << 8) | h[off + 5]
        nxt = h[off + 6]
        src = h[off + 8:off + 24]
        dst = h[off + 24:off + 40]
        l4 = off + 40
        first = True
        for _ in range(8):
            if nxt in _V6_EXT and l4 + 2 <= n:
                nxt, l4 = h[l4], l4 + (h[l4 + 1] + 1) * 8
            elif nxt == _V6_FRAGMENT and l4 + 8 <= n:
                first = (((h[l4 + 2] << 8) | h[l4 + 3]) >> 3) == 0
                nxt, l4 = h[l4], l4 + 8
            else:
                break
        sport = dport = None
        if first and nxt in (6, 17, 132, 136) and l4 + 4 <= n:
            sport, dport = _PORTS.unpack_from(h, l4)
        return PacketInfo(etype, vlans, 6, src, dst, nxt, sport, dport, payload + 40)
    return PacketInfo(etype, vlans)
