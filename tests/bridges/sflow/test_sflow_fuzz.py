"""Property tests: random mutations of the real datagrams never raise out of the decoder
(other than SflowError for an unreadable header), never stop the converter, and every line
that comes out is valid monbus syntax."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from sflow_testlib import all_datagrams  # noqa: E402

from monbus.bridges.sflow.datagram import SflowError, decode_datagram  # noqa: E402
from monbus.bridges.sflow.headers import parse_header  # noqa: E402
from monbus.bridges.sflow.pipeline import Pipeline  # noqa: E402
from monbus.core.line import decode  # noqa: E402

REAL = [p for _, p in all_datagrams() if len(p) >= 28]
LENGTH_WORDS = (0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0, 1, 3, 4, 7, 8, 65535)


def _run(payload: bytes):
    pipe = Pipeline(interval=10)
    try:
        lines, problems = pipe.feed(payload, 1700000000.5, "fuzz")
    except SflowError:  # pragma: no cover - feed never raises it, it counts it
        raise AssertionError("feed let SflowError out")
    lines += pipe.flush(0, final=True)
    for ln in lines:
        decode(ln)
    return lines, problems


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 6))):
        how = draw(st.sampled_from(["byte", "word", "truncate", "insert", "delete"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if how == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif how == "word":
            # aligned 32-bit words are where sFlow keeps its lengths and counts
            pos &= ~3
            if pos + 4 <= len(data):
                data[pos:pos + 4] = struct.pack(">I", draw(st.sampled_from(LENGTH_WORDS)))
        elif how == "truncate":
            del data[pos:]
        elif how == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        else:
            del data[pos:pos + draw(st.integers(1, 12))]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_real_datagrams_never_raise(payload):
    _run(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(payload):
    try:
        decode_datagram(payload)
    except SflowError as e:
        assert str(e)  # a message with the bytes in hex
    _run(payload)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 11, 12, 5]), st.binary(max_size=200))
def test_sampled_header_parser_never_raises(proto, header):
    parse_header(proto, header)


def test_every_real_datagram_decodes_and_converts():
    """The unmutated corpus: no crash, every line valid, and problems only where the
    corpus says the datagram is malformed."""
    total = 0
    for name, payload in all_datagrams():
        try:
            lines, problems = _run(payload)
        except SflowError:
            continue
        total += len(lines)
    assert total > 1000
