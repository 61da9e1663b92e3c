"""The perfdata parser: every corpus sample, upstream parsers' assertions, properties, fuzzing."""
from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from helpers import DATA
from monbus.bridges.nagios.perfdata import (CheckResult, LineMaker, PerfItem, Range, Namer,
                                            parse_perfdata, parse_range, parse_record,
                                            parse_state, record_result, sanitize, split_output)
from monbus.core.line import Sanitizer, decode, encode
from monbus.core.line import sanitize as core_sanitize

SAMPLES = [json.loads(x) for x in (DATA / "nagios" / "perfdata_samples.jsonl").open()]
EXPECTED = {e["id"]: e for e in map(json.loads, (DATA / "nagios" / "perfdata_expected.jsonl").open())}
_STATE_WORD = re.compile(r"\b(OK|WARNING|CRITICAL|UNKNOWN)\b")


def sample_result(s) -> CheckResult:
    """How each kind of corpus sample reaches monbus (see tests/data/nagios/README.md)."""
    if s["kind"] == "plugin_output":
        out, long_out, perf = split_output(s["text"])
        m = _STATE_WORD.search(out)
        state = parse_state(m.group(1)) if m else 3
        return CheckResult("h", "svc", state, out or None, long_out or None, perf, 1700000000)
    if s["kind"] == "perfdata_only":
        return CheckResult("h", "svc", None, None, None, s["text"], 1700000000)
    return record_result(parse_record(s["text"]), 1700000000)


def test_corpus_is_complete():
    assert len(SAMPLES) == 114 and set(EXPECTED) == {s["id"] for s in SAMPLES}


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["id"] for s in SAMPLES])
def test_corpus_sample(sample):
    errors = []
    _, lines = LineMaker().lines(sample_result(sample), errors)
    exp = EXPECTED[sample["id"]]
    assert lines == exp["lines"]
    assert [str(e) for e in errors] == exp["errors"]
    for line in lines:  # every line is valid monbus syntax, byte for byte
        assert encode(decode(line)) == line


def _items(text):
    items, errors = parse_perfdata(text)
    return {(i.group + "::" if i.group else "") + i.label: i for i in items}, errors


# --- what the upstream parsers' own test suites assert (read from their sources) ----------
def test_telegraf_long_output_and_values():
    out, long_out, perf = split_output(next(s for s in SAMPLES if s["id"] ==
                                            "telegraf-valid-output-1")["text"])
    assert out == "PING OK - Packet loss = 0%, RTA = 0.30 ms"
    assert long_out == "This is a long output\nwith three lines"
    items, errors = _items(perf)
    assert not errors
    rta, pl = items["rta"], items["pl"]
    assert (rta.value, rta.unit, rta.warn, rta.crit, rta.min) == (
        0.000298, "s", Range(0, 4.0), Range(0, 6.0), 0)
    assert (pl.value, pl.unit, pl.warn, pl.crit, pl.min, pl.max) == (0, "%", Range(0, 80),
                                                                     Range(0, 90), 0, 100)


def test_nagios_plugin_api_example_five_metrics():
    s = next(s for s in SAMPLES if s["id"].startswith("telegraf-from-https"))
    out, long_out, perf = split_output(s["text"])
    assert out == "DISK OK - free space: / 3326 MB (56%);"
    assert long_out.split("\n") == ["/ 15272 MB (77%);", "/boot 68 MB (69%);",
                                    "/home 69357 MB (27%);", "/var/log 819 MB (84%); "]
    items, errors = _items(perf)
    assert not errors
    assert {k: v.value / 2 ** 20 for k, v in items.items()} == {
        "/": 2643, "/boot": 68, "/home": 69357, "/var/log": 818}
    assert items["/var/log"].max == 980 * 2 ** 20


def test_monitoring_plugin_perl_cases():
    items, errors = _items("rta=&391ms;100,200;500,034;0;   pl=0%;20;60  ")
    assert list(items) == ["pl"] and "'&391ms' is not a number" in str(errors[0])
    items, errors = _items("time=1800,600,300,0,3600 other=45.6")
    assert list(items) == ["other"] and items["other"].value == 45.6 and len(errors) == 1
    items, _ = _items("'C: Label:  Serial Number bc22aa2e'=8015MB;16387;18435;0;20484 "
                      "'D: Label: Serial Number XA22aa2e'=8015MB;16388;18436;1;2048")
    assert list(items) == ["C: Label:  Serial Number bc22aa2e", "D: Label: Serial Number XA22aa2e"]
    items, _ = _items("offset=-0,023545s;60,000000;120,000000;")
    assert items["offset"].value == -0.023545 and items["offset"].crit == Range(0, 120)
    items, _ = _items("salary=52GBP;~:23.5;45.2:")
    assert items["salary"].unit == "GBP"
    assert items["salary"].warn == Range(float("-inf"), 23.5)
    assert items["salary"].crit == Range(45.2, float("inf"))


def test_icinga2_cases():
    items, _ = _items("test::a=3 b=4")
    assert [(i.group, i.label, i.value) for i in items.values()] == [("test", "a", 3),
                                                                     ("test", "b", 4)]
    items, _ = _items("test=1.1E-1;1.2e+1;1.3E-1;1.4e-2;1.5E2")
    t = items["test"]
    assert (t.value, t.warn, t.crit, t.min, t.max) == (0.11, Range(0, 12), Range(0, 0.13),
                                                       0.014, 150)
    assert _items("test=42c")[0]["test"].counter
    for bad in ("test=inf", "test=-Inf", "test=123_456", "test=", "123456"):
        items, errors = _items(bad)
        assert not items and len(errors) == 1, bad


def test_unknown_value_U_is_no_line_but_counted():
    maker = LineMaker()
    _, lines = maker.lines(CheckResult("h", "s", None, perfdata="a=U;1;2 b=3"), [])
    assert [decode(x).path for x in lines] == ["nagios.h.s.b"] and maker.unknown_values == 1


def test_ranges():
    r = parse_range("@10:20")
    assert r.alerts(10) and r.alerts(20) and not r.alerts(9.9) and not r.alerts(21)
    r = parse_range("10")
    assert r.alerts(-1) and r.alerts(11) and not r.alerts(0) and not r.alerts(10)
    r = parse_range("~:5")
    assert r.alerts(5.1) and not r.alerts(-1e300)
    assert str(parse_range("10:")) == "10:" and parse_range("10:").alerts(9)
    assert str(parse_range("20ms".rstrip("ms"), "ms")) == "0.02"
    for bad in ("", "20:10", "x", "1:y", "@"):
        with pytest.raises(ValueError):
            parse_range(bad)


def test_state_line_and_host_check_paths():
    errors = []
    _, lines = LineMaker().lines(CheckResult("web 01", None, 1, "PING CRITICAL", None,
                                             "rta=100ms state=1", 1700000001, "hard"), errors)
    got = [decode(x) for x in lines]
    assert [x.path for x in got] == ["nagios.web_01.host.rta",
                                     f"nagios.web_01.host.{got[1].path.split('.')[-1]}",
                                     "nagios.web_01.host.state"]
    # a perfdata label `state` never takes the availability line's name
    assert got[1].path.endswith(".state_x" + got[1].path.split("_x")[-1])
    assert got[2].meta == {"mtype": "state", "state_type": "hard", "output": "PING CRITICAL"}
    assert got[0].value == 0.1 and got[0].meta["unit"] == "s"


def test_labels_that_sanitise_alike_do_not_collide():
    _, lines = LineMaker().lines(CheckResult("h", "s", None, perfdata="'a b'=1 a_b=2"), [])
    a, b = (decode(x).path for x in lines)
    assert a == "nagios.h.s.a_b" and b.startswith("nagios.h.s.a_b_x") and a != b


def test_spool_record_host_and_states():
    r = record_result(parse_record("DATATYPE::HOSTPERFDATA\tTIMET::1700000000\tHOSTNAME::db1\t"
                                   "HOSTPERFDATA::rta=0.5ms;;;0\tHOSTSTATE::DOWN\t"
                                   "HOSTSTATETYPE::HARD\tHOSTOUTPUT::PING CRITICAL"), 0)
    assert (r.host, r.service, r.state, r.state_type, r.output) == ("db1", None, 1, "hard",
                                                                    "PING CRITICAL")
    with pytest.raises(ValueError):
        record_result(parse_record("SERVICEDESC::x\tSERVICEPERFDATA::a=1"), 0)
    with pytest.raises(ValueError):
        record_result(parse_record("HOSTNAME::h\tSERVICEDESC::x\tSERVICESTATE::FINE"), 0)


# --- properties -------------------------------------------------------------------------
_UNIT_SHIFT = {"": 0, "s": 0, "ms": -3, "us": -6, "ns": -9, "%": 0, "B": 0, "KB": 0, "MB": 0,
               "GB": 0, "TB": 0, "c": 0}
_UNIT_FACTOR = {"KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def _fmt(x: Decimal, style: int, comma: bool) -> str:
    s = [f"{x:f}", f"{x:e}", f"{x:.6f}"][style]
    return s.replace(".", ",") if comma else s


def _reference(text: str, uom: str) -> float:
    """The exact decimal value of `text` in `uom`, rounded once to a double."""
    d = Decimal(text.replace(",", ".")).scaleb(_UNIT_SHIFT[uom]) * _UNIT_FACTOR.get(uom, 1)
    return float(d)


labels = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85"),
                 min_size=1, max_size=20).filter(lambda s: s.strip() and "::" not in s)
numbers = st.decimals(min_value=-10 ** 12, max_value=10 ** 12, allow_nan=False,
                      allow_infinity=False, places=6)


@st.composite
def perf_item(draw):
    label = draw(labels)
    uom = draw(st.sampled_from(sorted(_UNIT_SHIFT)))
    comma = draw(st.booleans())
    vals = [draw(numbers) for _ in range(5)]
    texts = [_fmt(v, draw(st.integers(0, 2)), comma) for v in vals]
    present = [draw(st.booleans()) for _ in range(4)]
    lo, hi = sorted(vals[1:3])
    lo_t, hi_t = _fmt(lo, 0, comma), _fmt(hi, 0, comma)
    inside = draw(st.booleans())
    warn = ("@" if inside else "") + f"{lo_t}:{hi_t}" if present[0] else ""
    crit = f"~:{hi_t}" if present[1] else ""
    mn = texts[3] if present[2] else ""
    mx = texts[4] if present[3] else ""
    quoted = "'" + label.replace("'", "''") + "'"
    text = f"{quoted}={texts[0]}{uom};{warn};{crit};{mn};{mx}"
    expect = dict(label=label, value=_reference(texts[0], uom), counter=uom == "c",
                  warn=Range(_reference(lo_t, uom), _reference(hi_t, uom), inside)
                  if warn else None,
                  crit=Range(float("-inf"), _reference(hi_t, uom)) if crit else None,
                  min=_reference(mn, uom) if mn else None, max=_reference(mx, uom) if mx else None)
    return text, expect


@settings(max_examples=300, deadline=None)
@given(st.lists(perf_item(), min_size=1, max_size=5), st.sampled_from([" ", "  ", "\n"]))
def test_property_grammar_round_trip(items, sep):
    """Any perfdata built from the grammar parses back to the same numbers."""
    got, errors = parse_perfdata(sep.join(t for t, _ in items))
    assert not errors
    assert len(got) == len(items)
    for g, (_, e) in zip(got, items):
        for k, v in e.items():
            assert getattr(g, k) == v, (k, g)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_never_raises_and_lines_are_valid(text):
    for perf in (text, split_output(text)[2]):
        items, errors = parse_perfdata(perf)
        assert all(isinstance(i, PerfItem) for i in items)
        assert all(str(e).startswith("perfdata item ") for e in errors)
    errors = []
    _, lines = LineMaker().lines(CheckResult(text[:10] or "h", text[10:20] or None, 2,
                                             text, text, text, 1700000000), errors)
    for line in lines:
        assert encode(decode(line)) == line


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab'= ;:@~.,0123456789eE+-U%msB\t"
                                             "c\n|")), max_size=80))
def test_fuzz_grammar_alphabet(text):
    items, errors = parse_perfdata(text)
    for i in items:
        assert i.value is None or i.value - i.value == 0.0
    record_result_or_error = parse_record(text)
    assert isinstance(record_result_or_error, dict)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_sanitize_is_the_core_rule(name):
    assert sanitize(name) == core_sanitize(name)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=12))
def test_namer_agrees_with_core_sanitizer(names):
    ours, core = Namer(), Sanitizer()
    assert [ours(n) for n in names] == [core(n) for n in names]


_ALPHABET = list("ab =;:@~.,0123456789eE+-U%msBKc\t_/µ") + ["ms", "KB", "1.5", ";;", "'"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_ALPHABET), max_size=40).map("".join))
def test_fast_path_equals_full_parser(perf):
    """LineMaker's fast path gives exactly what the full parser gives, or defers to it."""
    results = []
    for fast in (True, False):
        maker, errors = LineMaker(fast=fast), []
        for _ in range(2):  # the second time from the caches
            _, lines = maker.lines(CheckResult("h", "s", None, perfdata=perf), errors)
        results.append((lines, [str(e) for e in errors]))
    assert results[0] == results[1]


def test_fast_path_on_the_corpus():
    for s in SAMPLES:
        got = []
        for fast in (True, False):
            errors = []
            _, lines = LineMaker(fast=fast).lines(sample_result(s), errors)
            got.append((lines, [str(e) for e in errors]))
        assert got[0] == got[1], s["id"]


_KEYS = ["DATATYPE", "TIMET", "HOSTNAME", "SERVICEDESC", "SERVICEPERFDATA", "SERVICESTATE",
         "HOSTPERFDATA", "HOSTSTATE", "X"]
_FIELD_VALUES = st.lists(st.sampled_from(list("ab:=1 ;%\t") + ["::", "SERVICEPERFDATA",
                                                                "HOSTPERFDATA", "0"]),
                         max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(_KEYS), _FIELD_VALUES), max_size=6)
                .map(lambda fs: "\t".join(f"{k}::{v}" for k, v in fs)), min_size=1, max_size=6))
def test_record_shapes_equal_parse_record(raws):
    """The remembered-shape split of perfdata-file lines gives what parse_record gives."""
    maker = LineMaker()
    for raw in raws * 2:
        try:
            want = LineMaker().lines(record_result(parse_record(raw), 5), [])
        except ValueError as e:
            want = ("error", str(e))
        try:
            got = maker.record(raw, 5, [])
        except ValueError as e:
            got = ("error", str(e))
        assert got == want


def test_check_multi_children():
    perf = ("check_multi::check_multi::plugins=2 time=0.02s 'load::check_load::load1'=0.3;5;10 "
            "load5=0.2 'disk::check_disk::/'=100MB;;;0")
    _, lines = LineMaker().lines(CheckResult("h", "multi", None, perfdata=perf), [])
    got = {decode(x).path: decode(x).value for x in lines}
    assert got == {"nagios.h.multi.check_multi.plugins": 2, "nagios.h.multi.check_multi.time": 0.02,
                   "nagios.h.multi.load.load1": 0.3, "nagios.h.multi.load.load5": 0.2,
                   "nagios.h.multi.disk._": 100 * 2 ** 20}


def test_overlong_names_are_reported_not_sent():
    errors = []
    long_label = "x" * 600
    _, lines = LineMaker().lines(CheckResult("h", "s", None, perfdata=f"{long_label}=1 ok=2"),
                                 errors)
    assert [decode(x).path for x in lines] == ["nagios.h.s.ok"]
    assert "label longer than 512" in str(errors[0])
    with pytest.raises(ValueError, match="longer than 1024"):
        LineMaker().lines(CheckResult("h" * 2000, "s", 0), [])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=60),
    st.lists(st.tuples(st.sampled_from(_KEYS + ["SERVICEOUTPUT", "NAGFLUX:TAG", "TIMET"]),
                       st.text(max_size=20)), max_size=7)
    .map(lambda fs: "\t".join(f"{k}::{v}" for k, v in fs))), max_size=8).map("\n".join))
def test_fuzz_perfdata_file_text(text):
    """The spool daemon's decoder never raises on a file's text; what it sends is valid."""
    from monbus.bridges.nagios.perffiles import FileProcessor
    from monbus.core.selfmetrics import Counters

    class Sink:
        stats = {"lost_lines": 0}
        lines = []

        def add(self, line, topic):
            self.lines.append((line, topic))

    sink, counters = Sink(), Counters("t")
    FileProcessor(sink, counters).feed_text(text, 1700000000.0)
    for line, topic in sink.lines:
        assert encode(decode(line)) == line and decode(line).topic == topic
    assert counters["records"] == len([x for x in text.split("\n") if x and x != "\r"])
    assert counters["lines"] == len(sink.lines)


@pytest.mark.parametrize("garbage", ["word " * 20000, "'a " * 20000, "'a' " * 20000,
                                     "x=" + "1;" * 40000, "a=1 " * 20000 + "'open"])
def test_large_garbage_is_linear(garbage):
    """64 KB of perfdata (Nagios' output limit) of any shape is parsed in well under a second
    of CPU: no regex backtracking blow-up."""
    import time
    t = time.process_time()
    parse_perfdata(garbage)
    LineMaker().lines(CheckResult("h", "s", None, perfdata=garbage), [])
    assert time.process_time() - t < 3.0


def test_icinga2_perfdatawriter_lines():
    """The lines Icinga 2's PerfdataWriter writes with contrib/nagios/icinga2-perfdata.conf
    (states and state types as names; $host.state$ in a service line is ignored)."""
    svc = ("DATATYPE::SERVICEPERFDATA\tTIMET::1700000000\tHOSTNAME::web01\tSERVICEDESC::ping4\t"
           "SERVICEPERFDATA::rta=0.055000ms;100.000000;200.000000;0.000000 pl=0%;5;15;0\t"
           "SERVICECHECKCOMMAND::ping4\tHOSTSTATE::UP\tHOSTSTATETYPE::HARD\t"
           "SERVICESTATE::WARNING\tSERVICESTATETYPE::SOFT\tSERVICEOUTPUT::PING WARNING - x")
    host = ("DATATYPE::HOSTPERFDATA\tTIMET::1700000001\tHOSTNAME::web01\t"
            "HOSTPERFDATA::rta=0.05ms;3000;5000;0 pl=0%;80;100;0\tHOSTCHECKCOMMAND::hostalive\t"
            "HOSTSTATE::DOWN\tHOSTSTATETYPE::HARD\tHOSTOUTPUT::PING CRITICAL")
    maker = LineMaker()
    got = [decode(x) for raw in (svc, host) for x in maker.record(raw, 0, [])[1]]
    assert [(x.path, x.value) for x in got] == [
        ("nagios.web01.ping4.rta", 5.5e-05), ("nagios.web01.ping4.pl", 0),
        ("nagios.web01.ping4.state", 1), ("nagios.web01.host.rta", 5e-05),
        ("nagios.web01.host.pl", 0), ("nagios.web01.host.state", 1)]
    assert got[2].meta == {"mtype": "state", "state_type": "soft", "output": "PING WARNING - x"}
    assert got[5].meta["state_type"] == "hard"
