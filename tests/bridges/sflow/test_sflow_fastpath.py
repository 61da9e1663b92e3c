"""The decoder's and converter's fast paths give exactly what the field-by-field paths give.

The decoder reads a sample whose layout it has seen before with one struct call (datagram
`_Shape`); the converter writes the lines of a record with a generated function (metrics
`_lines_function`).  Here every real datagram, and random mutations of them, are decoded and
converted both ways and compared value by value, problem by problem, line by line."""
from __future__ import annotations

import contextlib
import functools
import struct
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).parent))
from sflow_testlib import all_datagrams  # noqa: E402
from test_sflow_fuzz import mutated  # noqa: E402

from monbus.bridges.sflow import datagram as dgmod  # noqa: E402
from monbus.bridges.sflow import metrics as mmod  # noqa: E402
from monbus.bridges.sflow.datagram import SflowError, decode_datagram  # noqa: E402
from monbus.bridges.sflow.metrics import Converter  # noqa: E402

REAL = [p for _, p in all_datagrams()]


class _Forgetful(dict):
    """A cache that never keeps anything: every lookup misses."""

    def __setitem__(self, key, value):
        pass

    def get(self, key, default=None):
        return default


@contextlib.contextmanager
def field_by_field():
    """Decode and convert without the layout cache and the generated line functions."""
    saved = dgmod._SHAPES, mmod._LINES
    dgmod._SHAPES = _Forgetful()
    mmod._LINES = _NoLines()
    try:
        yield
    finally:
        dgmod._SHAPES, mmod._LINES = saved


class _NoLines(dict):
    def get(self, key, default=None):
        return False

    def __setitem__(self, key, value):
        pass


def _plain(x):
    """A decoded datagram as nested tuples (records keep their format objects)."""
    if isinstance(x, (list, tuple)):
        return tuple(_plain(i) for i in x)
    if hasattr(x, "__slots__") and not hasattr(x, "min_size"):
        return (type(x).__name__,) + tuple((s, _plain(getattr(x, s))) for s in x.__slots__)
    return x


def _decode(payload):
    try:
        return _plain(decode_datagram(payload))
    except SflowError as e:
        return ("error", str(e), e.reason)


def _both(payload):
    """(fast, slow): decoded twice with a warm cache (learn, then use) and field by field."""
    _decode(payload)
    fast = _decode(payload)
    with field_by_field():
        slow = _decode(payload)
    return fast, slow


def _lines(payloads, fast: bool):
    conv = Converter(interval=10)
    out = []
    ctx = contextlib.nullcontext() if fast else field_by_field()
    with ctx:
        for i, p in enumerate(payloads):
            try:
                dg = decode_datagram(p)
            except SflowError:
                continue
            out += conv.datagram(dg, 1700000000.0 + i)
        out += conv.flush(0, final=True)
    return out, dict(conv.counts)


def test_real_datagrams_same_both_ways():
    for p in REAL:
        fast, slow = _both(p)
        assert fast == slow
    # the fast path was really taken: layouts of the corpus's samples were compiled
    assert sum(1 for s in dgmod._SHAPES.values() if s) >= 10


def test_real_lines_same_both_ways():
    for p in REAL:   # warm the layouts
        _decode(p)
    fast, fast_counts = _lines(REAL * 2, True)
    slow, slow_counts = _lines(REAL * 2, False)
    assert len(fast) > 10000
    assert fast == slow
    assert fast_counts == slow_counts
    assert mmod._LINES  # generated line functions were used


def _counter_sample(tag: int, body: bytes) -> bytes:
    """A datagram (IPv4 agent 192.0.2.1) with one compact counters sample of one record."""
    rec = struct.pack(">II", tag, len(body)) + body
    sample = struct.pack(">III", 7, 3, 1) + rec               # seq, source if3, 1 record
    head = struct.pack(">II4sIIII", 5, 1, bytes([192, 0, 2, 1]), 0, 1, 1000, 1)
    return head + struct.pack(">II", 2, len(sample)) + sample


def test_same_length_other_record_is_not_misread():
    """A sample with the layout's (format, length) but another record type: the layout's
    check refuses it and the field-by-field path reads it (here: an unknown record)."""
    eth = _counter_sample(2, struct.pack(">13I", *range(13)))
    decode_datagram(eth)
    dg = decode_datagram(eth)
    assert dg.samples[0].records[0][1] == tuple(range(13))
    other = _counter_sample((9999 << 12) | 77, bytes(52))   # same length, unknown type
    dg = decode_datagram(other)
    assert dg.unknown_records == 1
    rf, tag, raw = dg.samples[0].records[0]
    assert rf is None and tag == (9999 << 12) | 77 and raw == bytes(52)


def test_sampled_header_length_past_record_on_the_fast_path():
    """A flow sample of a known layout whose sampled header length runs past its record is
    reported exactly as the field-by-field path reports it."""
    flows = [p for p in REAL if any(s.kind == "flow" and any(
        r[0] is not None and r[0].name == "sampled_header" for r in s.records)
        for s in _try(p))]
    assert flows
    checked = 0
    for p in flows:
        dg = decode_datagram(p)
        decode_datagram(p)
        # find the first sampled_header record (tag 0:1) inside the first flow sample
        off = 28 if struct.unpack_from(">I", p, 4)[0] == 1 else 40
        stype, slen = struct.unpack_from(">II", p, off)
        if stype not in (1, 3):
            continue
        roff = off + 8 + (32 if stype == 1 else 44)
        tag, rlen = struct.unpack_from(">II", p, roff)
        if tag != 1:
            continue
        bad = bytearray(p)
        struct.pack_into(">I", bad, roff + 8 + 12, rlen)   # header length > record length
        fast, slow = _both(bytes(bad))
        assert fast == slow
        assert any("sampled header of" in str(x) for x in fast)
        checked += 1
        assert dg.samples
    assert checked


@functools.cache
def _warm():
    for p in REAL:
        _decode(p)


def _try(p):
    try:
        return decode_datagram(p).samples
    except SflowError:
        return []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_datagrams_same_both_ways(payload):
    _warm()   # the layouts of the real samples, so that mutated ones meet them
    fast, slow = _both(payload)
    assert fast == slow
    assert _lines([payload], True) == _lines([payload], False)
