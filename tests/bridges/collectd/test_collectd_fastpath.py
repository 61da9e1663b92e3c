"""The fused fast walk of NetworkDecoder.decode gives exactly what the general path
(PacketParser records, then LineMaker) gives: the same lines, errors and counts, on every
real capture and on fuzzed datagrams (clean ones, which the fast walk takes, and broken
ones, which it must hand to the general path untouched)."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DATA
from monbus.bridges.collectd.capture import read_pcap, read_pkts
from monbus.bridges.collectd.naming import GraphiteNaming
from monbus.bridges.collectd.network import NetworkDecoder, encode_values
from monbus.bridges.collectd.typesdb import TypesDB

D = DATA / "collectd"
TYPESDB = TypesDB()


def _pair(**kw):
    fast = NetworkDecoder(TYPESDB, **kw)
    general = NetworkDecoder(TYPESDB, **kw)
    general._fast = False
    return fast, general


def _all_captures():
    out = []
    for path in sorted(D.iterdir()):
        name = path.name
        if name.endswith(".pkts"):
            out += read_pkts(str(path))
        elif name.endswith(".pcap"):
            out += read_pcap(str(path))
        elif name.endswith(".bin"):
            out.append(path.read_bytes())
    return out


def _same(fast, general, packets):
    for p in packets:
        assert fast.decode(p) == general.decode(p), p.hex()
    assert fast.counts == general.counts
    assert list(fast.counts) == list(general.counts)


def test_captures_fast_equals_general():
    packets = _all_captures()
    assert len(packets) > 100
    fast, general = _pair()
    _same(fast, general, packets * 2)  # twice: cold and warm caches
    assert fast.counts["lines"] > 3000
    fast, general = _pair(naming=GraphiteNaming(separate_instances=True, always_append_ds=True))
    _same(fast, general, packets)


def test_fast_walk_is_taken_for_clean_datagrams():
    packets = read_pcap(str(D / "collectd512_local_plain.pcap"))
    fast, _ = _pair()
    for p in packets:
        fast.decode(p)  # warm: the general path makes the value unpackers
    taken = [p for p in packets if fast._decode_fast(p) is not None]
    assert len(taken) == len(packets)


_name = st.text(alphabet=st.sampled_from("ab.- ;/\u00e9\x01x_"), min_size=0, max_size=6)
_types = st.sampled_from(["load", "if_octets", "cpu", "gauge", "derive", "counter",
                          "nosuchtype", "memory", "df_complex", "ps_count"])


@st.composite
def _value_list(draw):
    n = draw(st.integers(1, 3))
    kinds = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    values = []
    for k in kinds:
        if k == 1:
            values.append(draw(st.floats(allow_nan=True, allow_infinity=True)))
        elif k == 2:
            values.append(draw(st.integers(-(1 << 63), (1 << 63) - 1)))
        else:
            values.append(draw(st.integers(0, (1 << 64) - 1)))
    return encode_values(draw(st.sampled_from(["h1", "h.2", ""])), draw(_name), draw(_name),
                         draw(_types), draw(_name),
                         draw(st.sampled_from([0.0, 1.0, 1700000000.0, 1700000000.25])),
                         draw(st.sampled_from([0.0, 1.0, 10.0, 0.5])), kinds, values)


@settings(max_examples=300, deadline=None)
@given(st.lists(_value_list(), min_size=1, max_size=6), st.data())
def test_fuzzed_fast_equals_general(vls, data):
    if data.draw(st.booleans()):  # an extra part of any kind, good or bad, between two
        ptype = data.draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 9, 0x100, 0x101, 0x999]))
        payload = data.draw(st.binary(max_size=140))
        vls.insert(data.draw(st.integers(0, len(vls))),
                   ptype.to_bytes(2, "big") + (4 + len(payload)).to_bytes(2, "big") + payload)
    datagram = b"".join(vls)
    if data.draw(st.booleans()):  # break it somewhere (a flipped byte or a cut)
        i = data.draw(st.integers(0, len(datagram) - 1))
        if data.draw(st.booleans()):
            datagram = datagram[:i]
        else:
            datagram = datagram[:i] + bytes([datagram[i] ^ data.draw(st.integers(1, 255))]) \
                + datagram[i + 1:]
    fast, general = _pair()
    _same(fast, general, [datagram, datagram])
    assert not math.isnan(fast.counts.get("lines", 0))


def test_replaced_bad_name_part_is_still_reported():
    good = encode_values("h", "cpu", "0", "cpu", "idle", 1700000000.0, 10.0, [2], [5])
    head = bytes.fromhex("0000")  # HOST
    for bad in (b"h", b"", b"x" * 128 + b"\0"):  # no NUL, empty, too long
        part = head + (4 + len(bad)).to_bytes(2, "big") + bad
        fast, general = _pair()
        for _ in range(2):  # cold and warm caches
            lines, errors = fast.decode(part + good)
            assert [e.kind for e in errors] == ["bad_string"]
            assert lines == ["collectd.h.cpu-0.cpu-idle 5 1700000000 mtype=derive interval=10"]
            assert (lines, errors) == general.decode(part + good)
        _same(fast, general, [good, part + good])
