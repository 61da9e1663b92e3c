"""The line codec: round trips, a table of invalid inputs, carbon's own plaintext cases."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from helpers import DATA
from monbus.core.line import (Line, LineError, Sanitizer, decode, decode_batch, encode,
                              format_number, group_by_topic, sanitize, topic_of)

# --- generated lines -------------------------------------------------------------------------
_comp_chars = st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
                            blacklist_characters=".;")
component = st.text(_comp_chars, min_size=1, max_size=12)
tag_key = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
                                blacklist_characters=";!^="), min_size=1, max_size=8)
tag_value = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
                                  blacklist_characters=";"), min_size=1, max_size=8).filter(
    lambda v: not v.startswith("~"))
finite = st.floats(allow_nan=False, allow_infinity=False)
timestamps = st.one_of(st.integers(0, 2**40).map(float),
                       st.floats(0, 2e9, allow_nan=False, allow_infinity=False))
ann_text = st.text(max_size=30)  # anything: spaces, '=', '%', newlines, non-ASCII


@st.composite
def lines(draw):
    path = ".".join(draw(st.lists(component, min_size=2, max_size=5)))
    tags = draw(st.dictionaries(tag_key, tag_value, max_size=3))
    series = path + "".join(f";{k}={v}" for k, v in tags.items())
    meta = draw(st.one_of(st.none(), st.dictionaries(
        st.sampled_from(["unit", "warn", "crit", "min", "max", "interval", "output", "x_custom"]),
        ann_text, min_size=1, max_size=4)))
    if meta is not None and draw(st.booleans()):
        meta["mtype"] = draw(st.sampled_from(["gauge", "counter", "derive", "absolute", "state"]))
    return Line(series, draw(finite), draw(timestamps), meta)


@settings(max_examples=500, deadline=None)
@given(lines())
def test_round_trip_is_byte_exact(line):
    text = encode(line)
    assert "\n" not in text
    back = decode(text)
    assert back == line
    assert encode(back) == text
    # the batch decoder agrees with the single-line one
    assert decode_batch(text + "\n" + text) == [line, line]
    # the first three fields alone are a carbon line that float() reads back exactly
    series, value, ts = text.split(" ")[:3]
    assert series == line.series and float(value) == line.value and float(ts) == line.timestamp


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_decode_never_crashes_on_garbage(text):
    try:
        line = decode(text)
    except LineError as e:
        assert repr(text)[:20] in str(e) or len(repr(text)) > 100
    else:
        assert decode(encode(line)) == line


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(lines().map(encode), st.text(max_size=40).filter(lambda t: "\n" not in t)),
                max_size=20))
def test_batch_keeps_every_good_line(items):
    errors = []
    got = decode_batch("\n".join(items), errors)
    expected = []
    for t in items:
        try:
            expected.append(decode(t.removesuffix("\r")))
        except LineError:
            pass
    assert got == expected
    grouped = group_by_topic("\n".join(items))
    assert sum(len(v) for v in grouped.values()) == len(expected)


# --- a table of invalid inputs ---------------------------------------------------------------
INVALID = [
    ("", "empty line"),
    ("a.b 1", "expected at least 3 fields"),                       # carbon needs 3 fields
    ("a.b 1 2 3", "annotation without '='"),
    ("a.b nan 1700000000", "value is not finite"),
    ("a.b NaN 1700000000", "value is not finite"),
    ("a.b inf 1700000000", "value is not finite"),
    ("a.b -Infinity 1700000000", "value is not finite"),
    ("a.b 1e999 1700000000", "value is not finite"),               # overflows to inf
    ("a.b 1 nan", "timestamp is not finite"),
    ("a.b 1 -1", "timestamp is negative"),                         # carbon's "now": not here
    ("a.b 1_000 1700000000", "value is not a number"),             # float() would take it
    ("a.b ١٢ 1700000000", "value is not a number"),                # so would it take these
    ("a.b 0x10 1700000000", "value is not a number"),
    ("a.b one 1700000000", "value is not a number"),
    (" 1 1700000000", "empty path"),
    ("a..b 1 1700000000", "empty path component"),
    (".a.b 1 1700000000", "empty path component"),
    ("a.b. 1 1700000000", "empty path component"),
    ("ab 1 1700000000", "path needs at least <source>.<host>"),
    ("a.b\tc 1 1700000000", "invalid character in path"),
    ("a.b;tag= 1 1700000000", "empty tag value"),
    ("a.b;=v 1 1700000000", "empty tag key"),
    ("a.b;tagvalue 1 1700000000", "tag without '='"),
    ("a.b;tag=~v 1 1700000000", "tag value starts with '~'"),
    ("a.b;ta!g=v 1 1700000000", "invalid character in tag key"),
    ("a.b;t=v; 1 1700000000", "tag without '='"),
    ("a.b 1 1700000000 mtype=histogram", "unknown mtype"),
    ("a.b 1 1700000000 Unit=B", "invalid annotation key"),
    ("a.b 1 1700000000 unit=B unit=s", "duplicate annotation"),
    ("a.b 1  1700000000", "timestamp"),                            # two spaces: empty field
    ("a.b 1 1700000000 output=%FF%FE", "not UTF-8"),
]


@pytest.mark.parametrize("text,problem", INVALID)
def test_invalid_lines_are_rejected_with_the_reason_and_the_input(text, problem):
    with pytest.raises(LineError) as ei:
        decode(text)
    assert problem in str(ei.value)
    assert repr(text)[:30] in str(ei.value)


def test_error_quotes_are_truncated():
    with pytest.raises(LineError) as ei:
        decode("x" * 10_000)
    assert len(str(ei.value)) < 200


def test_batch_reports_bad_lines_and_goes_on():
    errors = []
    got = decode_batch("a.b 1 2\nnot a line at all\r\na.c 3 4\r\n\n\na.d nan 5\na.e 6 7", errors)
    assert [x.path for x in got] == ["a.b", "a.c", "a.e"]
    assert len(errors) == 2
    assert "not a line" in str(errors[0]) and "not finite" in str(errors[1])


def test_numbers_integer_fractional_scientific():
    line = decode("a.b 4.2e-10 1700000000.5")
    assert line.value == 4.2e-10 and line.timestamp == 1700000000.5
    assert decode("a.b -3 0").value == -3.0
    assert decode("a.b +.5 5.").value == 0.5
    assert format_number(3.0) == "3" and format_number(0.1) == "0.1"
    assert format_number(1e20) == "1e+20"


def test_annotations_survive_any_text():
    text = "Disk /var 91% full\nline two = yes; ümlaut %41"
    line = Line("nagios.web01.disk", 91.0, 1700000000.0, {"output": text, "unit": "%"})
    enc = encode(line)
    assert " " not in enc.split(" ", 3)[3].replace(" unit=", "")
    assert decode(enc).meta["output"] == text
    # a hand-written '%' that is not an escape stays as it is
    assert decode("a.b 1 2 unit=%").meta == {"unit": "%"}


def test_tags_and_topic():
    line = decode("snmp.router1.ifHCInOctets;ifName=ge-0/0/1;dc=eu 12 1700000000 mtype=counter")
    assert line.path == "snmp.router1.ifHCInOctets"
    assert line.tags == {"ifName": "ge-0/0/1", "dc": "eu"}
    assert line.topic == "snmp.router1."
    assert topic_of("snmp.router10.x") == "snmp.router10."
    assert line.carbon() == "snmp.router1.ifHCInOctets;ifName=ge-0/0/1;dc=eu 12 1700000000"


def test_availability_line():
    line = decode("nagios.web01.http.state 2 1700000000 mtype=state output=HTTP%20CRITICAL")
    assert line.value == 2 and line.meta == {"mtype": "state", "output": "HTTP CRITICAL"}


# --- carbon's and carbon-c-relay's own plaintext cases ------------------------------------
def _cases():
    with open(DATA / "core" / "plaintext_samples.jsonl") as f:
        return [json.loads(x) for x in f]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["id"])
def test_carbon_plaintext_corpus(case):
    text = bytes.fromhex(case["line_hex"]).decode("utf-8")
    exp = case["expected"]
    errors = []
    got = decode_batch(text, errors)
    if case["id"] == "carbon-udp-valid":
        assert got == [Line("carbon.foo", 1.0, 2.0)] and not errors
    elif case["id"] == "carbon-multi-datagram":
        # carbon: 3 accepted (lines, are, valid), 1 rejected.  monbus paths need two
        # components, so these one-component names are rejected too, each with its reason.
        assert got == [] and len(errors) == 4
        assert sum("3 fields" in str(e) for e in errors) == 1
    elif case["id"] == "carbon-utf8-negts":
        # UTF-8 name accepted; timestamp -1 ("now" for carbon) is the Graphite listener's
        # business: the bus itself wants real timestamps
        assert "path needs at least" in str(errors[0])   # one component
        with pytest.raises(LineError, match="timestamp is negative"):
            decode("graphite.h." + text)
        assert decode("graphite.h.жопа 42 0").path == "graphite.h.жопа"
    elif case["id"].startswith("carbon-tag-invalid"):
        assert got == [] and len(errors) == 1
        reason = exp["carbon"].split(": ", 1)[1]
        words = {"empty tag value": "empty tag value", "empty tag key": "empty tag key",
                 "missing =": "tag without '='", "tag value starts with ~": "starts with '~'",
                 "! in tag key": "invalid character in tag key"}
        assert words[reason] in str(errors[0])
    elif case["id"] in ("carbon-udp-missing-ts", "carbon-udp-nospaces",
                        "carbon-invalid-utf8-long"):
        assert got == [] and len(errors) == 1
    elif case["id"] == "relay-basic-payload":
        # carbon-c-relay forwards anything; its aggregator drops "foo.bar 1".  monbus keeps
        # exactly the three lines that are valid carbon lines with numeric fields.
        assert [(x.path, x.value, x.timestamp) for x in got] == [
            ("foo.bar", 1.0, 349830000.0), ("bar.foo", 1.0, 4.0)] or \
            [(x.path, x.value, x.timestamp) for x in got] == [("foo.bar", 1.0, 349830000.0),
                                                           ("bar.foo", 1.0, 4.0)]
        bad = [str(e) for e in errors]
        assert any("3 fields" in b and "'foo'" in b for b in bad)
        assert any("value is not a number" in b and "foo bar" in b for b in bad)
        assert any("timestamp is not a number" in b for b in bad)
        assert any("path needs at least" in b for b in bad)  # "bar 1 3"
    elif case["id"] == "relay-issue228":
        # the validate clauses: 'this wrong' fails, 4.2 / 42 pass as numbers
        assert [(x.path, x.value) for x in got] == [("foo.bar", 42.0), ("foo.bar", 4.2)]
        assert any("value is not a number" in str(e) for e in errors)
    elif case["id"] == "relay-issue238":
        # scientific notation value: a valid number (path is one component: rejected here)
        assert "path needs at least" in str(errors[0])
        assert decode("a.foo 4.2e-10 42").value == 4.2e-10
    else:
        pytest.fail(f"unhandled corpus case {case['id']}")


# --- sanitising foreign names ---------------------------------------------------------------
def test_sanitize_makes_one_component():
    assert sanitize("eth0.100") == "eth0_100"
    assert sanitize("C:\\ Label: Serial 1234", "-") == "C:--Label:-Serial-1234"
    assert sanitize("") == "_"
    assert sanitize("ümlaut") == "ümlaut"
    for name in ["a b", "x;y=z", "a*b?[c]{d}", "tab\there", "new\nline"]:
        comp = sanitize(name)
        assert decode(f"src.host.{comp} 1 2").path.count(".") == 2


def test_sanitizer_never_collides_silently():
    seen = []
    san = Sanitizer("_", on_collision=lambda *a: seen.append(a))
    a, b, c = san("eth0.100"), san("eth0 100"), san("eth0_100")
    assert a == "eth0_100" and len({a, b, c}) == 3
    assert san.collisions == 2 and len(seen) == 2
    assert san("eth0 100") == b  # stable
    # the suffix depends on the name only: another process gives the same
    assert Sanitizer("_")("eth0 100") == "eth0_100" and \
        Sanitizer("_")  # fresh sanitizer: first come keeps the plain name


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=10), max_size=30))
def test_sanitizer_is_injective(names):
    san = Sanitizer("_")
    out = {}
    for n in names:
        comp = san(n)
        assert "." not in comp and " " not in comp and ";" not in comp
        out.setdefault(comp, set()).add(n)
    assert all(len(v) == 1 for v in out.values())


def test_encode_rejects_what_decode_rejects():
    with pytest.raises(LineError):
        encode(Line("a.b", math.nan, 1.0))
    with pytest.raises(LineError):
        encode(Line("a.b", 1.0, -5.0))
    with pytest.raises(LineError):
        encode(Line("a", 1.0, 1.0))
    with pytest.raises(LineError):
        encode(Line("a.b", 1.0, 1.0, {"mtype": "bogus"}))
