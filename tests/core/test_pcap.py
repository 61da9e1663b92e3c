"""core/pcap.py, the one capture reader: every real capture and every written variant (byte
orders, nanosecond stamps, pcapng resolutions, link types) is read exactly as tshark reads it;
bad and cut files raise PcapError after the good datagrams and nothing else escapes (fuzzed)."""
from __future__ import annotations

import ipaddress
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from monbus.core.pcap import Datagram, PcapError, read_file, read_udp, udp_of_frame

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = sorted({p for base in (ROOT / "tests" / "data", ROOT / "bridges")
                   for p in base.rglob("*.pcap")})


def tshark(path: Path) -> list[tuple]:
    """(time, src, sport, dst, dport, payload) of every UDP frame, as tshark reads the file."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "udp", "-T", "fields",
         "-E", "separator=|", "-E", "occurrence=f", "-e", "frame.protocols",
         "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ipv6.src",
         "-e", "udp.srcport", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "udp.dstport",
         "-e", "udp.length", "-e", "udp.payload"],
        capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        protocols, ts, s4, s6, sport, d4, d6, dport, ulen, payload = line.split("|")
        # the outer IP layer: sFlow samples carry packet headers that tshark decodes too
        layers = protocols.split(":")
        v6 = "ipv6" in layers and ("ip" not in layers or layers.index("ipv6") < layers.index("ip"))
        if layers[layers.index("ipv6" if v6 else "ip") + 1] != "udp":
            continue          # UDP quoted inside an ICMP error, not a datagram
        # tshark shows all the frame's bytes after a UDP length field too small for them;
        # the length field is what the sender said the datagram was
        body = bytes.fromhex(payload)
        if int(ulen) >= 8:
            body = body[:int(ulen) - 8]
        rows.append((float(ts or 0), s6 if v6 else s4, int(sport), d6 if v6 else d4, int(dport),
                     body))
    return rows


def ours(path: Path) -> list[Datagram]:
    return read_file(str(path))


def same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x[1:] == y[1:]
        assert abs(x[0] - y[0]) < 2e-6, (x[0], y[0])


def test_the_real_captures_are_found():
    names = {p.name for p in CAPTURES}
    assert {"collectd512_local_plain.pcap", "ndpi_collectd.pcap",
            "gmond372_local_xdr_capture.pcap", "tcpdump_sflow-print-v6.pcap",
            "demo_v4.pcap"} <= names


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(ROOT)))
def test_real_capture_read_as_tshark_reads_it(path):
    got = ours(path)
    assert got, path
    want = tshark(path)
    same(got, want)


# ---- written captures: every container variant and link type, checked against tshark ----

def ip4(src, dst, payload, sport=4000, dport=25826, frag=0):
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, frag, 64, 17, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return head + udp


def ip6(src, dst, payload, sport=4000, dport=6343):
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    return (struct.pack(">IHBB", 0x60000000, len(udp), 17, 64)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + udp)


def frame(linktype, ip, endian="<"):
    v6 = ip[0] >> 4 == 6
    etype = b"\x86\xdd" if v6 else b"\x08\x00"
    if linktype == 1:
        return b"\x02" * 6 + b"\x04" * 6 + b"\x81\x00\x00\x07" + etype + ip   # one VLAN tag
    if linktype == 113:
        return b"\x00\x00\x00\x01\x00\x06" + b"\x02" * 6 + b"\x00\x00" + etype + ip
    if linktype == 276:
        return etype + b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x01\x00\x06" \
            + b"\x02" * 6 + b"\x00\x00" + ip
    if linktype == 0:
        return struct.pack(endian + "I", 30 if v6 else 2) + ip
    if linktype == 108:
        return struct.pack(">I", 24 if v6 else 2) + ip
    return ip


def write_pcap(frames, linktype, endian="<", nano=False):
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for ts, f in frames:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out += struct.pack(endian + "IIII", sec, frac, len(f), len(f)) + f
    return out


def _block(endian, btype, body):
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def write_pcapng(frames, linktypes, endian="<", tsresol=None, simple=False):
    out = _block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    for lt in linktypes:
        opts = b""
        if tsresol is not None:
            opts = struct.pack(endian + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" \
                + struct.pack(endian + "HH", 0, 0)
        out += _block(endian, 1, struct.pack(endian + "HHI", lt, 0, 0) + opts)
    unit = 1e-6 if tsresol is None else (2.0 ** -(tsresol & 0x7F) if tsresol & 0x80
                                         else 10.0 ** -tsresol)
    for i, (ts, f) in enumerate(frames):
        if simple:
            out += _block(endian, 3, struct.pack(endian + "I", len(f)) + f)
            continue
        t = round(ts / unit)
        out += _block(endian, 6, struct.pack(endian + "IIIII", i % len(linktypes), t >> 32,
                                             t & 0xFFFFFFFF, len(f), len(f)) + f)
    return out


PACKETS = [
    (1700000000.123456, ip4("192.0.2.1", "192.0.2.9", b"collectd part bytes")),
    (1700000001.5, ip6("2001:db8::1", "ff02::1:2", b"\x00\x00\x00\x05sflow")),
    (1700000002.000001, ip4("10.0.0.1", "239.2.11.71", b"", sport=8649, dport=8649)),
]


@pytest.mark.parametrize("linktype", [1, 113, 276, 0, 108, 101, 12, 228, 229])
@pytest.mark.parametrize("endian", ["<", ">"])
def test_written_pcap_every_link_type(tmp_path, linktype, endian):
    pkts = [(t, ip) for t, ip in PACKETS
            if not (linktype == 228 and ip[0] >> 4 == 6 or linktype == 229 and ip[0] >> 4 == 4)]
    path = tmp_path / "x.pcap"
    path.write_bytes(write_pcap([(t, frame(linktype, ip, endian)) for t, ip in pkts],
                                linktype, endian))
    got = ours(path)
    assert [d.payload for d in got] == [ip[28 if ip[0] >> 4 == 4 else 48:] for _, ip in pkts]
    same(got, tshark(path))


@pytest.mark.parametrize("endian", ["<", ">"])
def test_written_pcap_nanoseconds(tmp_path, endian):
    path = tmp_path / "ns.pcap"
    path.write_bytes(write_pcap([(t, frame(1, ip)) for t, ip in PACKETS], 1, endian, nano=True))
    got = ours(path)
    assert abs(got[0].ts - 1700000000.123456) < 1e-6
    same(got, tshark(path))


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("tsresol", [None, 9, 3, 0x80 | 20])
def test_written_pcapng(tmp_path, endian, tsresol):
    path = tmp_path / "x.pcapng"
    path.write_bytes(write_pcapng([(t, frame(lt, ip)) for (t, ip), lt in
                                   zip(PACKETS, [1, 113, 1])], [1, 113], endian, tsresol))
    got = ours(path)
    assert len(got) == 3 and got[1].src == "2001:db8::1"
    same(got, tshark(path))


def test_written_pcapng_simple_blocks_and_two_sections(tmp_path):
    a = write_pcapng([(t, frame(1, ip)) for t, ip in PACKETS], [1], "<", simple=True)
    b = write_pcapng([(t, frame(101, ip)) for t, ip in PACKETS], [101], ">")
    path = tmp_path / "two.pcapng"
    path.write_bytes(a + b)
    got = ours(path)
    assert [d.payload for d in got] == [ip[28 if ip[0] >> 4 == 4 else 48:]
                                        for _, ip in PACKETS] * 2
    assert [d.ts for d in got[:3]] == [0.0] * 3          # simple blocks carry no time
    same(got[3:], tshark(path)[3:])


def test_non_udp_and_later_fragments_are_skipped_and_handed_back():
    tcp = bytearray(ip4("192.0.2.1", "192.0.2.2", b"x"))
    tcp[9] = 6
    later = ip4("192.0.2.1", "192.0.2.2", b"tail of a datagram", frag=0x0010)
    first = ip4("192.0.2.1", "192.0.2.2", b"head", frag=0x2000)
    skipped: list = []
    got = list(read_udp(write_pcap([(1.0, frame(1, bytes(tcp))), (2.0, frame(1, later)),
                                    (3.0, frame(1, first)), (4.0, b"\x00" * 10)], 1),
                        skipped))
    assert [d.payload for d in got] == [b"head"]
    assert len(skipped) == 3
    assert udp_of_frame(147, frame(1, first), 0.0) is None        # a link type not known


def test_frame_cut_by_snap_length_gives_what_it_holds():
    ip = ip4("192.0.2.1", "192.0.2.2", b"0123456789")
    d = udp_of_frame(101, ip[:-4], 5.0)
    assert d == Datagram(5.0, "192.0.2.1", 4000, "192.0.2.2", 25826, b"012345")


def test_cut_file_yields_the_good_datagrams_then_raises():
    data = write_pcap([(t, frame(1, ip)) for t, ip in PACKETS], 1)
    got = []
    with pytest.raises(PcapError, match="cut"):
        for d in read_udp(data[:-5]):
            got.append(d)
    assert len(got) == 2
    ng = write_pcapng([(t, frame(1, ip)) for t, ip in PACKETS], [1])
    got = []
    with pytest.raises(PcapError, match="bad length"):
        for d in read_udp(ng[:-5]):
            got.append(d)
    assert len(got) == 2


@pytest.mark.parametrize("data, message", [
    (b"", "too short"), (b"GIF89a" + b"\0" * 40, "not a pcap or pcapng file"),
    (b"\x0a\x0d\x0d\x0a" + b"\0" * 40, "byte-order magic"),
    (b"\xd4\xc3\xb2\xa1" + b"\0" * 10, "too short for a pcap header"),
])
def test_not_a_capture(data, message):
    with pytest.raises(PcapError, match=message):
        list(read_udp(data))


REAL = [p.read_bytes() for p in CAPTURES if p.stat().st_size < 200_000]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(REAL), st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)),
                                       max_size=8), st.integers(0, 10 ** 6))
def test_fuzz_corrupted_real_captures_only_pcaperror(data, flips, cut):
    buf = bytearray(data[:max(cut, 24)])
    for pos, byte in flips:
        if buf:
            buf[pos % len(buf)] = byte
    try:
        for d in read_udp(bytes(buf)):
            assert isinstance(d.payload, bytes) and 0 <= d.sport < 65536
    except PcapError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a",
                        b"\xa1\xb2\xc3\xd4"]), st.binary(max_size=400))
def test_fuzz_arbitrary_bytes_after_a_magic(magic, rest):
    try:
        list(read_udp(magic + rest))
    except PcapError:
        pass
