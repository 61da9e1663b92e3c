"""The fused fast walk of NetworkDecoder.decode gives exactly what the general path
(PacketParser records, then LineMaker) gives: the same lines, errors and counts, on every
real capture and on fuzzed datagrams (clean ones, which the fast walk takes, and broken
ones, which it must hand to the general path untouched).  Both fused walks are checked:
the Python one (what runs where _fastdecode.c was not built) and the C one
(test_collectd_fastdecode.py has the C module's own tests)."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DATA
from monbus.bridges.collectd.capture import read_datagrams, read_pcap
from monbus.bridges.collectd.naming import GraphiteNaming
from monbus.bridges.collectd.network import NetworkDecoder, _fastdecode, encode_values
from monbus.bridges.collectd.typesdb import TypesDB

D = DATA / "collectd"
TYPESDB = TypesDB()


def _pair(**kw):
    """(the Python fused walk, the general path, the C fused walk or None if not built)"""
    fast = NetworkDecoder(TYPESDB, **kw)
    fast._c = False
    general = NetworkDecoder(TYPESDB, **kw)
    general._fast = False
    c = NetworkDecoder(TYPESDB, **kw) if _fastdecode is not None else None
    return fast, general, c


def _all_captures():
    return [d for path in sorted(D.iterdir()) for d in read_datagrams(path)]


def _same(fast, general, c, packets):
    for p in packets:
        want = general.decode(p)
        assert fast.decode(p) == want, p.hex()
        if c is not None:
            assert c.decode(p) == want, p.hex()
    assert fast.counts == general.counts
    assert list(fast.counts) == list(general.counts)
    if c is not None:
        assert c.counts == general.counts
        assert list(c.counts) == list(general.counts)


def test_captures_fast_equals_general():
    packets = _all_captures()
    assert len(packets) > 100
    fast, general, c = _pair()
    _same(fast, general, c, packets * 2)  # twice: cold and warm caches
    assert fast.counts["lines"] > 3000
    _same(*_pair(naming=GraphiteNaming(separate_instances=True, always_append_ds=True)),
          packets)


def test_fast_walk_is_taken_for_clean_datagrams():
    packets = read_pcap(str(D / "collectd512_local_plain.pcap"))
    fast, _, _ = _pair()
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
    fast, general, c = _pair()
    _same(fast, general, c, [datagram, datagram])
    assert not math.isnan(fast.counts.get("lines", 0))


def test_replaced_bad_name_part_is_still_reported():
    good = encode_values("h", "cpu", "0", "cpu", "idle", 1700000000.0, 10.0, [2], [5])
    head = bytes.fromhex("0000")  # HOST
    for bad in (b"h", b"", b"x" * 128 + b"\0"):  # no NUL, empty, too long
        part = head + (4 + len(bad)).to_bytes(2, "big") + bad
        fast, general, c = _pair()
        for _ in range(2):  # cold and warm caches
            lines, errors = fast.decode(part + good)
            assert [e.kind for e in errors] == ["bad_string"]
            assert lines == ["collectd.h.cpu-0.cpu-idle 5 1700000000 mtype=derive interval=10"]
            assert (lines, errors) == general.decode(part + good)
            if c is not None:
                assert (lines, errors) == c.decode(part + good)
        _same(fast, general, c, [good, part + good])


# --- datagrams shaped the way collectd's network plugin writes them ------------------------
# network.c writes the parts of a value list only where they differ from the value list
# before it in the same datagram (host, time, interval, plugin, plugin instance, type, type
# instance), then the VALUES part.  The fused walk caches such "runs" (the parts between the
# time and the values); these datagrams repeat runs across value lists and datagrams, with
# the shapes that could confuse a run: one-character names (`00 03 00 06 ...`: the length
# field looks like a VALUES header), a name part that is all NULs, NULs inside a name, no
# time part (the time of the value list before), collectd 4 TIME and INTERVAL parts,
# interval changes between value lists, 28 and more values (a VALUES length >= 256).
_RAW_NAMES = [b"h1\0", b"h.2\0", b"cpu\0", b"0\0", b"1\0", b"\0", b"\0\0", b"a\0b\0",
              b"load\0", b"if_octets\0", b"x" * 127 + b"\0"]
_BAD_NAMES = [b"x" * 128 + b"\0", b"nonul", b""]
_RAW_TYPES = [b"load\0", b"if_octets\0", b"cpu\0", b"gauge\0", b"derive\0", b"memory\0",
              b"nosuchtype\0", b"ps_count\0", b"0\0"]


# any kind: zero, all ones, a NaN gauge, 12345 as an integer, 1.1 as a gauge
_VALUE_BYTES = [bytes(8), b"\xff" * 8, b"\0\0\0\0\0\0\xf8\x7f", (12345).to_bytes(8, "big"),
                b"\x9a\x99\x99\x99\x99\x99\xf1?"]


def _part(ptype: int, payload: bytes) -> bytes:
    return ptype.to_bytes(2, "big") + (4 + len(payload)).to_bytes(2, "big") + payload


def _u64(v: int) -> bytes:
    return v.to_bytes(8, "big")


@st.composite
def _collectd_stream(draw):
    """Datagrams of value lists written as collectd's network plugin writes them (only the
    fields that changed), from a small pool of identifiers so that runs repeat."""
    bad = draw(st.integers(0, 7)) == 0  # mostly clean datagrams: the fused walk's own case
    names = st.sampled_from(_RAW_NAMES + (_BAD_NAMES if bad else []))
    pool = draw(st.lists(st.tuples(names, names, names, st.sampled_from(_RAW_TYPES), names),
                         min_size=1, max_size=4))
    datagrams = []
    for _ in range(draw(st.integers(1, 3))):
        parts = []
        prev = [None] * 5
        prev_interval = None
        for _ in range(draw(st.integers(1, 8))):
            ident = draw(st.sampled_from(pool))
            if prev[0] is None or ident[0] != prev[0]:
                parts.append(_part(0, ident[0]))
            when = draw(st.sampled_from(["hr"] * 6 + ["same"] * 3 + ["s4"] + ["zero"] * bad))
            if when == "hr" or prev[0] is None and when == "same":
                parts.append(_part(8, _u64(draw(st.sampled_from(
                    [1700000000 << 30, (1700000000 << 30) + 1]))
                    + draw(st.integers(0, 1 << 34)))))
            elif when == "s4":
                parts.append(_part(1, _u64(draw(st.sampled_from([1700000000, 1700000001])))))
            elif when == "zero":
                parts.append(_part(8, _u64(0)))
            interval = draw(st.sampled_from([10 << 30, 10 << 30, 1 << 29, "s4:10", "s4:0"]))
            if interval != prev_interval:
                if isinstance(interval, str):
                    parts.append(_part(7, _u64(int(interval[3:]))))
                else:
                    parts.append(_part(9, _u64(interval)))
                prev_interval = interval
            for i, ptype in ((1, 2), (2, 3), (3, 4), (4, 5)):
                if ident[i] != prev[i]:
                    parts.append(_part(ptype, ident[i]))
            prev = list(ident)
            n = draw(st.sampled_from([1, 1, 2, 3, 28, 30]))
            kinds = draw(st.lists(st.sampled_from([0, 1, 1, 2, 3]), min_size=n, max_size=n))
            if bad and draw(st.booleans()):
                kinds[0] = draw(st.integers(0, 255))  # maybe an unknown kind
            values = b"".join(draw(st.sampled_from(_VALUE_BYTES)) for _ in kinds)
            parts.append(_part(6, n.to_bytes(2, "big") + bytes(kinds) + values))
        datagrams.append(b"".join(parts))
    return datagrams


@settings(max_examples=200, deadline=None)
@given(_collectd_stream(), st.data())
def test_collectd_shaped_fast_equals_general(datagrams, data):
    """The fused walk with its cached runs gives what the general path (PacketParser, then
    LineMaker: the decode as it was before the fused walk) gives, on collectd-shaped
    datagrams decoded in a row by one decoder (caches shared, cold then warm) and on broken
    copies of them."""
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(datagrams) - 1))
        d = datagrams[i]
        j = data.draw(st.integers(0, len(d) - 1))
        if data.draw(st.booleans()):
            datagrams.append(d[:j])
        else:
            datagrams.append(d[:j] + bytes([d[j] ^ data.draw(st.integers(1, 255))]) + d[j + 1:])
    _same(*_pair(), datagrams * 3)
    _same(*_pair(naming=GraphiteNaming(separate_instances=True, always_append_ds=True,
                                       drop_duplicate_fields=True)), datagrams * 2)


def test_cached_runs_are_taken_for_the_real_captures():
    """The real collectd captures mostly take the cached runs (not only the part by part
    walk), so the comparisons above cover them."""
    packets = _all_captures()
    fast, general, c = _pair()
    _same(fast, general, c, packets * 3)
    runs = sum(len(r) for r in fast._state_runs)
    assert runs > 500, runs
