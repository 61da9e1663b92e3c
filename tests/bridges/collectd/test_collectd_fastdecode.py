"""The C fused walk (bridges/collectd/_fastdecode.c) against the exact Python path.

Whatever datagram the C walk decodes must give what the general path (PacketParser, then
LineMaker) gives for it: the same lines byte for byte (names, escapes, data-source names,
annotations, the number and time text), the same errors and the same counts in the same
order, with the decoder's caches carried from datagram to datagram; whatever it is unsure
of it must hand to the general path.  It must never crash on any bytes."""
from __future__ import annotations

import math
import os
import random
import struct
import subprocess
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from helpers import DATA
from monbus.bridges.collectd.capture import read_datagrams, read_pcap, read_pkts
from monbus.bridges.collectd.naming import GraphiteNaming, NamingError
from monbus.bridges.collectd.network import NetworkDecoder, _fastdecode
from monbus.bridges.collectd.typesdb import TypesDB

D = DATA / "collectd"
TYPESDB = TypesDB()

needs_c = pytest.mark.skipif(_fastdecode is None and not os.environ.get("CI"),
                             reason="bridges/collectd/_fastdecode.c was not built")


def test_module_is_built_in_ci():
    # a machine with a C compiler (CI's) must build it: otherwise the tests here would
    # silently check nothing but the Python path
    if os.environ.get("CI"):
        assert _fastdecode is not None, "bridges/collectd/_fastdecode.c was not built"
    lines, errors = NetworkDecoder(TYPESDB).decode(_VL_LOAD)
    assert errors == [] and lines == _LOAD_LINES


def test_python_walk_without_the_module():
    # what runs where there is no compiler: the same lines through the Python walk
    d = NetworkDecoder(TYPESDB)
    d._c = False
    assert d.decode(_VL_LOAD) == (_LOAD_LINES, [])
    assert d.decode(_VL_LOAD) == (_LOAD_LINES, [])
    assert d._decode_fast(_VL_LOAD) == _LOAD_LINES
    assert d.counts["lines"] == 18 and not d._cplans


def _pair(naming=None, **kw):
    """(the C decoder, the general path decoder)"""
    c = NetworkDecoder(TYPESDB, naming, **kw)
    assert c._c == (_fastdecode is not None)
    general = NetworkDecoder(TYPESDB, naming, **kw)
    general._fast = False
    return c, general


def _same(c, general, packets):
    for p in packets:
        assert c.decode(p) == general.decode(p), p.hex()
    assert c.counts == general.counts
    assert list(c.counts) == list(general.counts)


def _part(ptype: int, payload: bytes) -> bytes:
    return struct.pack(">HH", ptype, 4 + len(payload)) + payload


def _values(kinds, raws) -> bytes:
    return _part(6, struct.pack(">H", len(kinds)) + bytes(kinds) + b"".join(raws))


_VL_LOAD = (_part(0, b"h.example\0") + _part(8, struct.pack(">Q", 1700000000 << 30))
            + _part(9, struct.pack(">Q", 10 << 30)) + _part(2, b"load\0") + _part(4, b"load\0")
            + _values([1, 1, 1], [struct.pack("<d", v) for v in (0.5, 2.0, 1e-7)])
            + _part(8, struct.pack(">Q", (1700000000 << 30) + (1 << 29)))
            + _part(2, b"interface\0") + _part(3, b"eth0\0") + _part(4, b"if_octets\0")
            + _values([2, 2], [struct.pack(">q", -5), struct.pack(">q", 1 << 62)])
            + _part(4, b"counter\0") + _values([0], [b"\xff" * 8]))
_LOAD_LINES = [
    "collectd.h_example.load.load.shortterm 0.5 1700000000 mtype=gauge interval=10",
    "collectd.h_example.load.load.midterm 2 1700000000 mtype=gauge interval=10",
    "collectd.h_example.load.load.longterm 1e-07 1700000000 mtype=gauge interval=10",
    "collectd.h_example.interface-eth0.if_octets.rx -5 1700000000.5 mtype=derive interval=10",
    "collectd.h_example.interface-eth0.if_octets.tx 4611686018427387904 1700000000.5 "
    "mtype=derive interval=10",
    "collectd.h_example.interface-eth0.counter 18446744073709551615 1700000000.5 "
    "mtype=counter interval=10",
]


def _all_captures():
    return [d for path in sorted(D.iterdir()) for d in read_datagrams(path)]


_NAMINGS = [
    {},
    {"separate_instances": True},
    {"always_append_ds": True},
    {"escape_character": "-"},
    {"prefix": "", "postfix": ".x"},
    {"prefix": "servers.", "reverse_host": True},
    {"use_tags": True},
    {"use_tags": True, "postfix": ";env=prod", "always_append_ds": True},
    {"preserve_separator": True, "drop_duplicate_fields": True},
    {"prefix": "m\u00e9tric.", "separate_instances": True, "drop_duplicate_fields": True},
]


@needs_c
@pytest.mark.parametrize("options", _NAMINGS, ids=lambda o: ",".join(o) or "default")
def test_captures_c_equals_general(options):
    packets = _all_captures()
    assert len(packets) > 100
    c, general = _pair(GraphiteNaming(**options))
    _same(c, general, packets * 2)  # cold, then warm caches
    assert c.counts["lines"] > 3000


@needs_c
def test_c_walk_takes_every_clean_capture_datagram():
    packets = read_pcap(str(D / "collectd512_local_plain.pcap"))
    packets += read_pkts(str(D / "bucky_collectd.pkts"))
    c, _ = _pair()
    for p in packets:
        c.decode(p)  # the first sight of each value list takes the general path
    assert all(type(_fastdecode.walk(p, c._cplans)) is tuple for p in packets)
    assert len(c._cplans) > 50


# the users of the signed and encrypted captures (collectd512_local_* use one user name
# with two passwords: one set for each)
_USERS = [{b"monbus": b"s3cr3t-sign", b"pieter": b"aapje1234", b"alice": b"12345678"},
          {b"monbus": b"s3cr3t-encrypt", b"pieter": b"aapje1234", b"alice": b"12345678"}]


@needs_c
@pytest.mark.parametrize("level", ["none", "sign", "encrypt"])
@pytest.mark.parametrize("users", [0, 1])
def test_signed_and_encrypted_captures_c_equals_general(level, users):
    """A datagram that is one Sign part (verified) or one Encrypt part (decrypted) has its
    payload decoded by the C walk; everything else about it (bad signatures, unknown
    users, security levels, nesting) stays with the general path."""
    packets = _all_captures()
    c, general = _pair(security_level=level, password_of=_USERS[users].get)
    _same(c, general, packets * 2)
    secured = [p for p in packets if c._secured_payload(p) is not None]
    taken = [p for p in secured
             if type(_fastdecode.walk(c._secured_payload(p)[0], c._cplans)) is tuple]
    # signed datagrams (collectd512_local_signed's 10 with users 0, 6 bucky and logstash
    # vectors with either) are routed at levels none and sign; encrypted ones (the 10 of
    # collectd512_local_encrypted with users 1, 6 vectors with either) at every level
    want = 6 + 10 * (users == 1) if level == "encrypt" else 22
    assert len(taken) == len(secured) == want


@needs_c
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_signed_and_encrypted_c_equals_general(data):
    """Signed and encrypted datagrams with bytes changed or cut: the same answer both ways
    (a changed byte mostly fails the signature or the SHA-1: the general path reports it)."""
    users = data.draw(st.sampled_from([0, 1]))
    p = bytearray(data.draw(st.sampled_from(_SECURED[users])))
    if data.draw(st.booleans()):
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.integers(0, len(p) - 1))
            p[i] = data.draw(st.integers(0, 255))
    p = bytes(p[:data.draw(st.integers(0, len(p)))]) if data.draw(st.booleans()) else bytes(p)
    c, general = _pair(security_level=data.draw(st.sampled_from(["none", "sign", "encrypt"])),
                       password_of=_USERS[users].get)
    _same(c, general, [p, p])


# --- value lists as collectd writes them, with every value and name shape ---------------
_SPECIAL_GAUGES = [0.0, -0.0, 1.0, -1.0, 0.1, 1e16, -1e16, 1e16 - 2, 9999999999999998.0,
                   -9999999999999998.0, 1e17, 1.5e300, 1.7976931348623157e308, 5e-324,
                   2.2250738585072014e-308, 1e-7, 123456789.123, 2 ** 53 + 1.0, 2.0 ** 63,
                   -2.0 ** 63, 2.0 ** 64, 0.30000000000000004, float("nan"), float("inf"),
                   float("-inf")]
_NAN_BITS = [b"\0\0\0\0\0\0\xf8\x7f", b"\x01\0\0\0\0\0\xf0\x7f", b"\xff" * 8,
             b"\0\0\0\0\0\0\xf8\xff"]
_gauge = st.one_of(st.sampled_from(_SPECIAL_GAUGES).map(lambda v: struct.pack("<d", v)),
                   st.floats(width=64).map(lambda v: struct.pack("<d", v)),
                   st.integers(-10 ** 6, 10 ** 6).map(lambda v: struct.pack("<d", v / 8)),
                   st.sampled_from(_NAN_BITS), st.binary(min_size=8, max_size=8))
_unsigned = st.one_of(st.sampled_from([0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 63,
                                       2 ** 64 - 1]),
                      st.integers(0, 2 ** 64 - 1)).map(lambda v: struct.pack(">Q", v))
_signed = st.one_of(st.sampled_from([0, -1, -2 ** 63, 2 ** 63 - 1]),
                    st.integers(-2 ** 63, 2 ** 63 - 1)).map(lambda v: struct.pack(">q", v))
_RAW = {0: _unsigned, 1: _gauge, 2: _signed, 3: _unsigned}

_name_text = st.one_of(
    st.sampled_from(["h1", "web.example.com", "cpu", "0", "eth0", "a b", "x;y", "~t", "\u00e9t\u00e9",
                     "\u2028", "/var/lib", "a.b.c", "-", "_", "x" * 127]),
    st.text(alphabet=st.sampled_from("ab.- ;/:=~\u00e9\x01\x7f\u00a0_"), min_size=1, max_size=8))
_raw_name = st.one_of(_name_text.map(lambda s: s.encode("utf-8")[:127] + b"\0"),
                      st.sampled_from([b"a\0b\0", b"\xff\xfe\0", b"\xc3\0"]))
_raw_instance = st.one_of(_raw_name, st.sampled_from([b"\0", b"\0\0"]))  # empty: unset
_bad_name = st.sampled_from([b"x" * 128 + b"\0", b"nonul", b"", b"\0"])
# types and their value counts in types.db (0: unknown to it)
_TYPES = {b"load\0": 3, b"if_octets\0": 2, b"cpu\0": 1, b"gauge\0": 1, b"derive\0": 1,
          b"counter\0": 1, b"absolute\0": 1, b"memory\0": 1, b"df_complex\0": 1,
          b"ps_count\0": 2, b"nosuchtype\0": 0, b"x.y\0": 0}
_types = st.sampled_from(sorted(_TYPES))
# (part type, value): TIME_HR mostly, integral or not; collectd 4 TIME; a zero time and
# times of 2^63 s and more (which the C walk leaves to the general path) sometimes
_good_time = st.one_of(
    st.tuples(st.just(8), st.one_of(
        st.sampled_from([1700000000 << 30, (1700000000 << 30) + (1 << 29), 1, 1 << 30,
                         (1 << 64) - 1]),
        st.integers(1700000000 << 30, 1700000100 << 30), st.integers(1, (1 << 64) - 1))),
    st.tuples(st.just(1), st.sampled_from([1700000000, 1, 2 ** 53 + 1, 2 ** 63 - 1024])))
_odd_time = st.tuples(st.sampled_from([1, 8]), st.sampled_from([0, 2 ** 63 - 1, 2 ** 64 - 1]))
_interval = st.one_of(st.tuples(st.just(9), st.sampled_from([10 << 30, 1 << 29, 1, 0,
                                                             (1 << 64) - 1])),
                      st.tuples(st.just(7), st.sampled_from([10, 0, 2 ** 64 - 1])))


@st.composite
def _naming(draw):
    try:
        return GraphiteNaming(
            prefix=draw(st.sampled_from(["collectd.", "", "a.b.", "p\u00e9.", "x y."])),
            postfix=draw(st.sampled_from(["", ".post", ";env=prod"])),
            escape_character=draw(st.sampled_from(["_", "-", "\u00e9"])),
            separate_instances=draw(st.booleans()), always_append_ds=draw(st.booleans()),
            preserve_separator=draw(st.booleans()), drop_duplicate_fields=draw(st.booleans()),
            reverse_host=draw(st.booleans()), use_tags=draw(st.booleans()))
    except NamingError:
        assume(False)


@st.composite
def _datagrams(draw):
    """Datagrams written the way collectd's network plugin writes them (only the fields
    that changed), from a small pool of identifiers so that value lists repeat within and
    across datagrams; sometimes with a broken part."""
    bad = draw(st.integers(0, 5)) == 0
    names = _raw_name if not bad else st.one_of(_raw_name, _bad_name)
    instances = _raw_instance if not bad else st.one_of(_raw_instance, _bad_name)
    pool = draw(st.lists(st.tuples(names, names, instances, _types, instances), min_size=1,
                         max_size=4))
    times = draw(st.lists(st.integers(0, 7).flatmap(lambda i: _good_time if i else _odd_time),
                          min_size=1, max_size=3))
    out = []
    for _ in range(draw(st.integers(1, 4))):
        parts = []
        prev = [None] * 5
        prev_time = None
        for _ in range(draw(st.integers(1, 6))):
            ident = draw(st.sampled_from(pool))
            for i, ptype in enumerate((0, 2, 3, 4, 5)):
                if ident[i] != prev[i] or draw(st.integers(0, 9)) == 0:
                    parts.append(_part(ptype, ident[i]))
            prev = list(ident)
            if prev_time is None or draw(st.integers(0, 3)):
                ptype, t = prev_time = draw(st.sampled_from(times))
                parts.append(_part(ptype, struct.pack(">Q", t)))
            if draw(st.integers(0, 3)) == 0:
                ptype, iv = draw(_interval)
                parts.append(_part(ptype, struct.pack(">Q", iv)))
            n = _TYPES[ident[3]] or draw(st.sampled_from([1, 2, 3, 30]))
            if draw(st.integers(0, 15)) == 0:  # maybe a count types.db contradicts
                n = draw(st.sampled_from([1, 2, 3, 4, 30]))
            kinds = draw(st.lists(st.sampled_from([0, 1, 1, 2, 3]), min_size=n, max_size=n))
            if bad and draw(st.booleans()):
                kinds[0] = draw(st.integers(0, 255))
            parts.append(_values(kinds, [draw(_RAW[k & 3]) for k in kinds]))
        if bad and draw(st.booleans()):  # an extra part of any type, good or bad
            ptype = draw(st.sampled_from([0, 1, 2, 6, 7, 8, 9, 0x100, 0x101, 0x200, 0x999]))
            parts.insert(draw(st.integers(0, len(parts))),
                         _part(ptype, draw(st.binary(max_size=20))))
        d = b"".join(parts)
        if bad and draw(st.booleans()):  # a cut or a flipped byte
            i = draw(st.integers(0, len(d) - 1))
            if draw(st.booleans()):
                d = d[:i]
            else:
                d = d[:i] + bytes([d[i] ^ draw(st.integers(1, 255))]) + d[i + 1:]
        out.append(d)
    return out


@needs_c
@settings(max_examples=400, deadline=None)
@given(_datagrams(), _naming())
def test_fuzzed_c_equals_general(datagrams, naming):
    """One decoder per path, the datagrams decoded in a row three times (cold, then warm
    caches), every naming option."""
    c, general = _pair(naming)
    _same(c, general, datagrams * 3)


@needs_c
def test_number_and_time_text_is_pythons():
    """Every special gauge, integer and time the C code formats by itself, against the
    general path's Python formatting."""
    parts = [_part(0, b"h\0"), _part(2, b"p\0"), _part(4, b"gauge\0")]
    for i, t in enumerate([1700000000 << 30, 1, (1 << 64) - 1, 3 << 28, (1 << 30) * 7 + 1]):
        parts.append(_part(8, struct.pack(">Q", t)))
        for g in _SPECIAL_GAUGES:
            parts.append(_values([1], [struct.pack("<d", g * (i + 1))]))
    parts.append(_part(4, b"derive\0"))
    for v in (0, -1, 1, -2 ** 63, 2 ** 63 - 1, 10 ** 18):
        parts.append(_values([2], [struct.pack(">q", v)]))
    for t in (1700000000, 2 ** 53 + 1, 2 ** 63 - 1024, 1):
        parts.append(_part(1, struct.pack(">Q", t)))
        parts.append(_values([2], [struct.pack(">q", 7)]))
    datagram = b"".join(parts)
    c, general = _pair()
    _same(c, general, [datagram] * 3)
    assert type(_fastdecode.walk(datagram, c._cplans)) is tuple  # C made these lines
    assert c.counts["nan_values"] >= 45  # NaN, inf, -inf for each of 5 times, 3 times over
    # a collectd 4 time of 2^63 s or more: the general path writes it (Python int text)
    big = parts[0] + parts[1] + _part(4, b"derive\0") \
        + _part(1, struct.pack(">Q", 2 ** 63 - 512)) + _values([2], [bytes(8)])
    _same(c, general, [big] * 2)
    assert c.decode(big)[0] == ["collectd.h.p.derive 0 9223372036854775808 mtype=derive"]
    assert _fastdecode.walk(big, c._cplans) is None


@needs_c
@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                 st.integers(0, (1 << 64) - 1).map(lambda v: v * (1.0 / (1 << 30))),
                 st.integers(1 << 52, (1 << 53) - 1).flatmap(
                     lambda m: st.integers(-1074, 971).map(lambda e: math.ldexp(m, e)))))
def test_float_text_is_repr(v):
    """The C walk's own shortest-repr for times and gauges in [1, 2^53) (and
    PyOS_double_to_string for the rest) is repr()."""
    assume(math.isfinite(v))
    assert _fastdecode.repr_text(v) == repr(v)
    assert _fastdecode.repr_text(-v) == repr(-v)


@needs_c
def test_float_text_is_repr_for_many_times():
    """High-resolution times around now, whole seconds plus halves, quarters, ... (ties
    between two shortest decimals) and random 64-bit counts of 2^-30 s."""
    rnd = random.Random(7)
    hr = 1.0 / (1 << 30)
    for i in range(100_000):
        for v in (((1_700_000_000 << 30) + rnd.getrandbits(40)) * hr,
                  rnd.getrandbits(64) * hr,
                  1_700_000_000 + (i % 4096) / (1 << (i % 31 + 1))):
            assert _fastdecode.repr_text(v) == repr(v), v


@needs_c
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 2))
def test_c_walk_on_arbitrary_bytes(data, which):
    """No crash and a well-formed answer for any bytes, with no plans, the plans of the
    real captures, and plans that say "general path"."""
    plans = [{}, _WARM._cplans, dict.fromkeys(_WARM._cplans)][which]
    got = _fastdecode.walk(data, plans)
    assert got is None or type(got) in (list, tuple)
    if type(got) is tuple:
        lines, nvl, nan = got
        assert all(type(x) is str for x in lines) and nvl >= 0 and nan >= 0


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_c_walk_on_mutated_captures(data):
    """Captured datagrams with bytes changed or cut: the C answer, where it gives one,
    is the general path's."""
    p = bytearray(data.draw(st.sampled_from(_CLEAN)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(p) - 1))
        p[i] = data.draw(st.integers(0, 255))
    p = bytes(p[:data.draw(st.integers(0, len(p)))])
    got = _fastdecode.walk(p, _WARM._cplans)
    if type(got) is tuple:
        d = NetworkDecoder(TYPESDB)
        d._fast = False
        assert d.decode(p) == (got[0], [])


@needs_c
def test_malformed_plan_is_a_type_error():
    # a plan is made by NetworkDecoder only; a wrong one is a programming error
    c, _ = _pair()
    c.decode(_VL_LOAD)
    plans = {k: (True,) for k in c._cplans}
    with pytest.raises(TypeError):
        _fastdecode.walk(_VL_LOAD, plans)
    with pytest.raises(TypeError):
        _fastdecode.walk(bytearray(_VL_LOAD), {})


@needs_c
def test_c_walk_under_python_dev_mode():
    """Mutated captures through the C walk in `python -X dev` (debug memory allocators,
    so an out of bounds write or a bad reference count aborts the process)."""
    code = """if 1:
        import random, sys
        sys.path.insert(0, sys.argv[1])
        from test_collectd_fastdecode import _CLEAN, _WARM, TYPESDB
        from monbus.bridges.collectd.network import NetworkDecoder, _fastdecode
        rnd = random.Random(5)
        d = NetworkDecoder(TYPESDB)
        for p in _CLEAN:
            d.decode(p)
        for i in range(20000):
            p = bytearray(rnd.choice(_CLEAN))
            for _ in range(rnd.randint(0, 3)):
                p[rnd.randrange(len(p))] = rnd.randrange(256)
            p = bytes(p[:rnd.randint(0, len(p))]) if i % 3 == 0 else bytes(p)
            d.decode(p)
            _fastdecode.walk(p, [{}, _WARM._cplans][i % 2])
        print("ok", d.counts["datagrams"])
    """
    r = subprocess.run([sys.executable, "-X", "dev", "-c", code, os.path.dirname(__file__)],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(DATA.parent)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("ok ")


def _warm():
    d = NetworkDecoder(TYPESDB)
    for p in _all_captures():
        d.decode(p)
    return d


_CLEAN = read_pcap(str(D / "collectd512_local_plain.pcap"))[:40] \
    + read_pkts(str(D / "bucky_collectd.pkts"))
_SECURED = [read_pcap(str(D / "collectd512_local_signed.pcap"))[:20]
            + read_pkts(str(D / "bucky_collectd-squares-signed.pkts"))
            + [(D / "logstash_signed_pieter_aapje1234.bin").read_bytes()],
            read_pcap(str(D / "collectd512_local_encrypted.pcap"))[:20]
            + read_pkts(str(D / "bucky_collectd-squares-encrypted.pkts"))
            + [(D / "logstash_encrypted_pieter_aapje1234.bin").read_bytes()]]
_WARM = _warm()
