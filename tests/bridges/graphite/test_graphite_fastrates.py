"""The C path of `monbus carbon --rates` (bridges/graphite/_fastrates.c) against the exact
Python path (Formatter.lines with a RateConverter).

Whatever the C module does must give the same carbon bytes, the same stats, the same bad-line
errors and the same converter state as the Python path; a line it is unsure of it must leave
to the Python path, and the two must be able to take turns on one converter's state."""
from __future__ import annotations

import math
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from monbus.bridges.graphite import forward
from monbus.bridges.graphite.forward import Formatter
from monbus.core.pattern import Matcher
from monbus.core.rates import RateConverter

C = forward._fastrates


def test_module_is_built_in_ci():
    # a machine with a C compiler (CI's) must build it: otherwise these tests would silently
    # check nothing but the Python path
    if os.environ.get("CI"):
        assert C is not None, "bridges/graphite/_fastrates.c was not built (no C compiler?)"
    f = Formatter("keep", "", RateConverter())
    body = b"a.b 1 10 mtype=counter\na.b 31 20 mtype=counter\nc.d 2.50 20 mtype=gauge\n"
    assert f.encoded_data(body) == (b"a.b 3 20\nc.d 2.5 20\n", 2)
    assert f.rates.stats["first"] == 1 and f.stats["no_rate_lines"] == 1


def _python(fmt: Formatter, body: bytes) -> tuple[bytes, int]:
    """The reference: Formatter.lines, joined as encoded_data joins it."""
    lines = fmt.lines(body)
    return (b"\n".join(t.encode("utf-8") for _, t in lines) + b"\n" if lines else b""), \
        len(lines)


def _state(fmt: Formatter):
    return (fmt.stats, fmt.rates.stats, dict(fmt.rates._last),
            [(e.problem, e.text) for e in fmt.errors])


_W32, _W64 = 2 ** 32, 2 ** 64
_SERIES = st.sampled_from([
    "a.b", "a.b.c", "snmp.sw1.if1.octets", "snmp.sw1.if2.octets", "app.web01.req;env=prod;dc=par",
    "app.web01.req;dc=par;env=prod", "x.y;k=v=w", "x.y;k=v.1;j=x-y", "bench.host1.metric7.value",
    # outside the C subset or invalid: the Python path decides
    "a", ".a.b", "a..b", "a.b.", "a.b;", "a.b;t", "a.b;=v", "a.b;t=", "a.b;t=~v", "a.b;t!=v",
    "é.b.c", "a.b\r", "a\tb.c", "a.b" * 1400, "ab.c\x85", "a.b;t=v\u2028"])
_NUMBER = st.one_of(
    st.sampled_from(["0", "1", "-1.5", "+2", ".5", "5.", "1e5", "1E-5", "-1e+99", "1e100",
                     "1e999", "nan", "inf", "-inf", "Infinity", "1_0", "", "1e", "0x1", "-0",
                     "+.5", "٣", "1" * 301, "0.1", "2.50", "1e16", "1e-400", "00012",
                     str(_W32 - 1), str(_W32 - 10), str(_W32), str(_W32 + 5), str(_W64 - 1),
                     str(_W64 - 2 ** 40), str(_W64), str(2 ** 63), "9007199254740993",
                     "123456789012345678", "1.7976931348623157e308", "-1.7976931348623157e308"]),
    st.integers(-10, 10 ** 20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    # plain decimals around the C module's own reading and writing of numbers (<= 15
    # significant digits, <= 22 after the point, leading and trailing zeros, 1e-4)
    st.builds(lambda sign, i, f: f"{sign}{i}{f}", st.sampled_from(["", "-", "+"]),
              st.sampled_from(["", "0", "00", "1", "10", "999999999999999", "1000000000000000",
                               "9999999999999999", "123456789012345", "0000000000000001"]),
              st.sampled_from(["", ".", ".0", ".5", ".50", ".0001", ".00001", ".0009",
                               ".000100", ".1234567890123", ".12345678901234567",
                               ".0000000000000000000001", ".00000000000000000000001"])))
_TS = st.one_of(st.integers(0, 12).map(lambda i: str(1_700_000_000 + 10 * i)),
                st.sampled_from(["0", "-1", "1.5", "1e9", "1700000000.25", "-0", "", "x"]))
_ANN = st.sampled_from([
    "", " mtype=counter", " mtype=derive", " mtype=gauge unit=B", " mtype=counter unit=B",
    " unit=B mtype=derive", " mtype=absolute", " mtype=state", " mtype=counter mtype=counter",
    " mtype=bogus", " mtype=%63ounter", " mtype=counter unit=%25", " unit=%C3%A9 mtype=counter",
    " unit=%ff mtype=counter", " unit=%E9", " mtype=counter ", " mtype=counter  unit=B",
    " Mtype=counter", " mtype", " =x", " output=a%2", " mtype=derive output=é",
    " mtype=counter\r"])
_LINE = st.one_of(
    st.builds(lambda s, v, t, a: f"{s} {v} {t}{a}", _SERIES, _NUMBER, _TS, _ANN),
    st.text(max_size=30))
_BODY = st.lists(_LINE, max_size=12).map(lambda ls: "\n".join(ls).encode("utf-8", "replace"))
_RAW = st.binary(max_size=60)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(st.one_of(_BODY, _BODY, _RAW), min_size=1, max_size=6),
       order=st.lists(st.integers(0, 2), min_size=6, max_size=6),
       tags=st.sampled_from(["keep", "drop", "fold"]),
       prefix=st.sampled_from(["", "pre", "é.x.", "a b", "n\nl"]),
       patterns=st.sampled_from([None, ["a.**", "snmp.*.if1.**", "app.**"]]),
       max_rate=st.sampled_from([None, 1000.0, 5, 1e30]),
       max_series=st.sampled_from([1_000_000, 3]))
def test_c_path_equals_python_path(bodies, order, tags, prefix, patterns, max_rate, max_series):
    matcher = Matcher(patterns) if patterns else None
    ref = Formatter(tags, prefix, RateConverter(max_rate, max_series), matcher)
    got = Formatter(tags, prefix, RateConverter(max_rate, max_series), matcher)
    for body, how in zip(bodies, order):
        # the formatter under test takes turns: C (where built) for replicate mode
        # (encoded_data) and shard mode (encoded), and Python, on one state
        if how == 2:
            want = [(n.encode("utf-8"), t.encode("utf-8")) for n, t in ref.lines(body)]
            assert got.encoded(body) == want
        else:
            want = _python(ref, body)
            assert (got.encoded_data(body) if how else _python(got, body)) == want
        assert _state(got) == _state(ref)


def test_wraps_resets_and_limits_like_python():
    # a table of the converter's cases, line by line, C and Python side by side
    lines = [
        f"c.w.x {_W32 - 1000} 100 mtype=counter", "c.w.x 500 110 mtype=counter",   # 32-bit wrap
        f"c.w.y {_W64 - 4096} 100 mtype=counter", "c.w.y 500 110 mtype=counter",  # 64-bit
        "c.w.z 1000000000000 100 mtype=counter", "c.w.z 5 110 mtype=counter",       # reset
        "c.w.d 100 100 mtype=derive", "c.w.d 50 110 mtype=derive",                  # reset
        "c.w.d 70 110 mtype=derive", "c.w.d 90 105 mtype=derive",                   # no advance
        "c.w.d 1e9 120 mtype=derive",                                               # over max
        f"c.w.h {_W32 - 1} 100 mtype=counter", f"c.w.h {_W32 // 2} 101 mtype=counter",  # half
        "c.w.n -5 100 mtype=counter", "c.w.n -10 110 mtype=counter",                # signed
        "c.w.f 0.1 100.5 mtype=counter", "c.w.f 0.7 101.25 mtype=counter",          # repr
        "c.w.g 2.50 1e9",                                                           # gauge
    ]
    body = ("\n".join(lines) + "\n").encode()
    ref = Formatter("keep", "", RateConverter(1e6))
    got = Formatter("keep", "", RateConverter(1e6))
    want = _python(ref, body)
    assert got.encoded_data(body) == want
    assert _state(got) == _state(ref)
    assert ref.rates.stats == {"rates": 3, "first": 7, "resets": 4, "wraps": 2, "over_max": 1,
                               "not_advancing": 2, "evictions": 0}
    assert want[0] == (b"c.w.x 150 110\nc.w.y 459.6 110\n"
                       b"c.w.f 0.7999999999999999 101.25\nc.w.g 2.5 1000000000\n")


def test_bad_lines_are_counted_and_quoted_like_python():
    body = b"a.b 1 2 mtype=counter\nbad line\na.b nan 3\na.b 5 4 mtype=counter\n\x01.b 1 2\n"
    ref, got = Formatter("keep", "", RateConverter()), Formatter("keep", "", RateConverter())
    assert got.encoded_data(body) == _python(ref, body) == (b"a.b 2 4\n", 1)
    assert _state(got) == _state(ref)
    assert got.stats["bad_lines"] == 3
    assert [e.problem for e in got.errors] == ["expected at least 3 fields, got 2",
                                               "value is not finite", "invalid character in path"]


def test_large_ordinary_body_same_bytes():
    # the bench's shape (and counters), 20,000 lines in one body, then again (rates)
    rnd = random.Random(7)
    def body(t):
        return "".join(
            f"bench.host{i % 10}.metric{i % 1000}.value{';dc=par' if i % 7 == 0 else ''} "
            f"{rnd.choice([i * 0.5, rnd.random() * 1e6, 2 ** 32 - i, i])} {t} "
            f"mtype={rnd.choice(['gauge', 'counter', 'derive'])} unit=B\n"
            for i in range(20_000)).encode()
    for tags in ("keep", "drop", "fold"):
        ref = Formatter(tags, "p", RateConverter())
        got = Formatter(tags, "p", RateConverter())
        for t in (1_700_000_000, 1_700_000_060, 1_700_000_060.5):
            b = body(t)
            assert got.encoded_data(b) == _python(ref, b)
            assert _state(got) == _state(ref)


def test_plain_numbers_written_like_format_number():
    # the C module copies a number's text when it is already format_number's, and reads
    # short decimals itself: random ones against the Python path
    rnd = random.Random(11)
    texts = []
    for _ in range(20_000):
        i = rnd.choice(["0", "", "-0", "-"]) + str(rnd.randrange(10 ** rnd.randrange(1, 17)))
        f = "." + "0" * rnd.randrange(6) + str(rnd.randrange(10 ** rnd.randrange(1, 12)))
        texts.append(i.lstrip("-") if i in ("-", "") else i)
        texts.append((i if i not in ("", "-") else i + "0") + f)
        texts.append((i if i not in ("", "-") else i + "0") + f.rstrip("0"))
    body = "".join(f"n.m.v{k % 50} {x} {x.lstrip('-') or 0} mtype="
                   f"{('gauge', 'counter')[k % 2]}\n" for k, x in enumerate(texts)).encode()
    ref, got = Formatter("keep", "", RateConverter()), Formatter("keep", "", RateConverter())
    assert got.encoded_data(body) == _python(ref, body)
    assert _state(got) == _state(ref)


def test_state_of_another_type_goes_to_python():
    # an entry a caller put in by hand (ints): C leaves the line to RateConverter.feed
    ref, got = Formatter("keep", "", RateConverter()), Formatter("keep", "", RateConverter())
    for f in (ref, got):
        f.rates._last["a.b"] = (10, 100)
    body = b"a.b 20 110 mtype=counter\na.b 40 120 mtype=counter\n"
    assert got.encoded_data(body) == _python(ref, body) == (b"a.b 1 110\na.b 2 120\n", 2)
    assert _state(got) == _state(ref)


@pytest.mark.skipif(C is None and not os.environ.get("CI"), reason="C module not built")
@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), start=st.integers(0, 300),
       names=st.sampled_from([None, {}]), drop=st.booleans())
def test_c_entry_takes_any_bytes(body, start, names, drop):
    state: dict = {"a.b": (1.0, 2.0), "x.y": (1, 2), "c.d": "junk"}
    start = min(start, len(body))
    data, n, stop, counts = C.convert(body, start, state, b"p.", drop, names,
                                      lambda s: s.encode() if s != "x.y" else None, None, 2)
    assert start <= stop <= len(body) and data.count(b"\n") == n and len(counts) == 9
    assert stop == len(body) or body[stop:stop + 1] != b"\n"


@pytest.mark.skipif(C is None and not os.environ.get("CI"), reason="C module not built")
def test_c_entry_rejects_bad_arguments():
    with pytest.raises(ValueError):
        C.convert(b"a.b 1 2", 8, {}, b"", False, None, None, None, 10)
    with pytest.raises(TypeError):
        C.convert("a.b 1 2", 0, {}, b"", False, None, None, None, 10)
    with pytest.raises(TypeError):
        C.convert(b"a.b 1 2", 0, {}, b"", False, [], None, None, 10)
    with pytest.raises(ZeroDivisionError):   # an error of name_of reaches the caller
        C.convert(b"a.b 1 2", 0, {}, b"", False, {}, lambda s: 1 / 0, None, 10)


def test_python_path_alone(monkeypatch):
    # without the module (no compiler) encoded_data does the same through `lines`
    monkeypatch.setattr(forward, "_fastrates", None)
    f = Formatter("fold", "", RateConverter())
    body = b"a.b;k=v 1 10 mtype=counter\na.b;k=v 31 20 mtype=counter\nbad\n"
    assert f.encoded_data(body) == (b"a.b.k.v 3 20\n", 1)
    assert f.stats["bad_lines"] == 1 and not math.isnan(f.rates.stats["rates"])
