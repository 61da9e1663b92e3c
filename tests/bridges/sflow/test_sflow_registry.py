"""The record registry: every structure decodes what it is given, refuses what is too short,
tolerates extensions, matches the record lengths real agents send, and yields valid lines."""
from __future__ import annotations

import random
import re
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sflow_testlib import CAPTURES, DATA, get, subtrees, tshark_frames  # noqa: E402

from monbus.bridges.sflow.datagram import decode_datagram  # noqa: E402
from monbus.bridges.sflow.metrics import Converter  # noqa: E402
from monbus.bridges.sflow.records import (COUNTER_FORMATS, FLOW_FORMATS, RecordError,  # noqa
                                          decode_record)
from monbus.core.line import decode  # noqa: E402

ALL = list(COUNTER_FORMATS.values()) + list(FLOW_FORMATS.values())

# The counter structures the issue asks for, by (enterprise, format)
REQUIRED = {(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 7), (0, 10), (0, 1001), (0, 1002),
            (0, 1004), (0, 2000), (0, 2001), (0, 2002), (0, 2003), (0, 2004), (0, 2005),
            (0, 2006), (0, 2007), (0, 2008), (0, 2009), (0, 2010), (0, 2100), (0, 2101),
            (0, 2102), (0, 2103), (0, 2104), (0, 2105), (0, 2106), (0, 2201), (0, 2204),
            (0, 2202), (0, 2203), (5703, 1)}


def test_registry_covers_the_issue_and_more_than_sflowtool():
    have = {(rf.enterprise, rf.format) for rf in COUNTER_FORMATS.values()}
    assert REQUIRED <= have, REQUIRED - have
    assert len(COUNTER_FORMATS) >= 40
    names = [rf.name for rf in COUNTER_FORMATS.values()]
    assert len(names) == len(set(names))
    for rf in ALL:
        fields = [f.name for f in rf.fields]
        assert len(fields) == len(set(fields)), rf


def _pack(wire, rnd):
    """(bytes, the value decode should give) for one field of a wire type."""
    if wire in ("u32", "i32", "pct"):
        v = rnd.randrange(0, 2**31)
        return struct.pack(">I", v), v
    if wire == "u64":
        v = rnd.randrange(0, 2**63)
        return struct.pack(">Q", v), v
    if wire == "f32":
        v = struct.unpack(">f", struct.pack(">f", rnd.random() * 8))[0]
        return struct.pack(">f", v), v
    if wire == "mac":
        v = bytes(rnd.randrange(256) for _ in range(6))
        return v + b"\0\0", v
    if wire in ("ip4", "state4"):
        v = bytes(rnd.randrange(256) for _ in range(4))
        return v, v
    if wire in ("ip6", "uuid"):
        v = bytes(rnd.randrange(256) for _ in range(16))
        return v, v
    if wire == "str":
        v = "".join(rnd.choice("abcdefgh.-") for _ in range(rnd.randrange(0, 11)))
        b = v.encode()
        return struct.pack(">I", len(b)) + b + b"\0" * (-len(b) % 4), v
    if wire == "addr":
        return struct.pack(">I", 1) + bytes([10, 1, 2, 3]), "10.1.2.3"
    raise AssertionError(wire)


_CUSTOM_BODIES = {  # a valid body for each variable-length tail, and its first value
    "sfp": (struct.pack(">I", 1) + struct.pack(">10I", *range(1, 11)), 1),
    "adapters": (struct.pack(">III", 1, 7, 1) + bytes(range(6)) + b"\0\0", 1),
    "sampled_header": (struct.pack(">I", 5) + b"\x01\x02\x03\x04\x05\0\0\0", 5),
    "extended_gateway": (struct.pack(">IIIII", 1, 2, 2, 65001, 65002)
                         + struct.pack(">II", 0, 100), 1),
    "extended_mpls": (struct.pack(">III", 2, 16, 17), 2),
    "extended_vlantunnel": (struct.pack(">II", 1, 0x81000064), 1),
}


@pytest.mark.parametrize("rf", ALL, ids=lambda rf: f"{rf.enterprise}:{rf.format}:{rf.name}")
def test_round_trip_short_and_extended(rf):
    rnd = random.Random(rf.tag)
    body = b""
    want = []
    for f in rf.fields:
        if f.wire == "custom":
            b, v = _CUSTOM_BODIES[rf.name]
        else:
            b, v = _pack(f.wire, rnd)
        body += b
        want.append(v)
    values, extra, notes = decode_record(rf, body, 0, len(body))
    assert list(values) == want
    assert not notes
    # an agent may append fields a later revision defines: they are ignored
    values2, _, _ = decode_record(rf, body + b"\0" * 8, 0, len(body) + 8)
    assert values2 == values
    # a body cut short is refused (with the structure named), never misread
    if len(body) > 4:
        cut = len(body) - 4
        if rf.variants:
            cut = rf.min_size - 4
        with pytest.raises(RecordError, match=rf.name if rf.fixed else None):
            decode_record(rf, body[:cut], 0, cut)


@pytest.mark.parametrize("rf", list(COUNTER_FORMATS.values()),
                         ids=lambda rf: f"{rf.enterprise}:{rf.format}:{rf.name}")
def test_every_counter_structure_makes_valid_lines(rf):
    """One counters sample holding this record, through the converter: valid lines, the
    structure's name in the path, one line per published field that is not 'unknown'."""
    rnd = random.Random(rf.tag + 1)
    body = b""
    for f in rf.fields:
        body += _CUSTOM_BODIES[rf.name][0] if f.wire == "custom" else _pack(f.wire, rnd)[0]
    rec = struct.pack(">II", rf.tag, len(body)) + body
    sample = struct.pack(">IIII", 7, 0, 3, 1) + rec                  # expanded counters
    dgram = (struct.pack(">II4sIIII", 5, 1, bytes([192, 0, 2, 9]), 0, 1, 1000, 1)
             + struct.pack(">II", 4, len(sample)) + sample)
    dg = decode_datagram(dgram)
    assert not dg.problems and len(dg.samples[0].records) == 1
    lines = Converter().datagram(dg, 1700000000)
    for ln in lines:
        decode(ln)
    if rf.numeric:
        assert lines and all(f".{rf.name}." in ln for ln in lines
                             if rf.name not in ("vlan",)), lines[:3]


def test_registry_sizes_match_what_real_agents_send():
    """Record lengths in the captures (tshark's flow_data_length) are the registry sizes."""
    seen = {}
    for cap in CAPTURES:
        for _, _, sflow, layers in tshark_frames(cap):
            if not sflow or any(k == "_ws.malformed" for k, _ in layers):
                continue  # tshark lost its way in these (see test_sflow_tshark)
            stack = [sflow]
            while stack:
                for title, tree in subtrees(stack.pop()):
                    stack.append(tree)
                    fmt = get(tree, "sflow_245.counters_record_format")
                    ln = get(tree, "sflow_5.flow_data_length")
                    if fmt and ln and not title.startswith("Unknown"):
                        tag = (int(get(tree, "sflow.enterprise") or 0) << 12) | int(fmt)
                        if tag in COUNTER_FORMATS and int(ln) < 10000:
                            seen.setdefault(tag, set()).add(int(ln))
    # the host structures tshark cannot decode: tcpdump prints their format and length
    text = (DATA / "tcpdump_sflow_multiple_counter_30_pdus.tcpdump-v.out").read_text()
    for fmt, ln in re.findall(r"enterprise 0, Unknown \((\d+)\) length (\d+)", text):
        if int(fmt) in COUNTER_FORMATS:
            seen.setdefault(int(fmt), set()).add(int(ln))
    checked = 0
    for tag, lengths in seen.items():
        rf = COUNTER_FORMATS[tag]
        if rf.fixed is not None:
            sizes = {v[0] for v in rf.variants} if rf.variants else {rf.fixed.size}
            assert lengths <= sizes, (rf.name, lengths, sizes)
            checked += 1
    assert checked >= 8
