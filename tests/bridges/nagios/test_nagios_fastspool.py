"""The C fast way of `monbus nagios spool` (bridges/nagios/_fastspool.c) against the Python
way (the reference): the same lines, topic by topic in the same order, the same problems and
bad records, on records built from the grammar, the real captures, CRLF, bad records, unknown
templates, huge labels, non-ASCII names; arbitrary input into its entry point; and the whole
command into a real relay, every line arriving."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from helpers import DATA, ROOT, free_port, monbus_cmd, stop_process, wait_for
from monbus.bridges.nagios import perfdata
from monbus.bridges.nagios.perfdata import LineMaker, _fastspool_module

sys.path.insert(0, os.path.dirname(__file__))  # (pytest runs with --import-mode=importlib)
try:
    from test_nagios_records_fast import _NUMS, _TAILS, _UOMS, _fed, _general_chunk, _records, \
        _varied
finally:
    sys.path.pop(0)

FAST = _fastspool_module()
TPL = ("DATATYPE::SERVICEPERFDATA\tTIMET::{t}\tHOSTNAME::{host}\tSERVICEDESC::{svc}\t"
       "SERVICEPERFDATA::{perf}\tSERVICECHECKCOMMAND::check\tSERVICESTATE::{state}\t"
       "SERVICESTATETYPE::1\tSERVICEOUTPUT::{output}")


def test_module_is_built_in_ci():
    # a machine with a C compiler (CI's) must build it: otherwise these tests would check
    # nothing but the Python way against itself
    if os.environ.get("CI"):
        assert FAST is not None, "bridges/nagios/_fastspool.c was not built (no C compiler?)"


def _both(chunks, now=1700000009.5):
    """Feed the chunks to a maker with the C module and to one without (and to the general
    way), caches kept from chunk to chunk; all three must agree on every chunk."""
    with_c, without = LineMaker(), LineMaker()
    without.use_c = False
    slow = LineMaker(fast=False)
    for i, text in enumerate(chunks):
        got = _fed(with_c, text, now + i, bodies=bool(i % 2))
        assert got == _fed(without, text, now + i), text
        assert got == _general_chunk(slow, text, now + i), text
    return with_c


def _handled_by_c(maker, text, now=1700000000.0):
    """How many records of `text` the C module made lines of (not record())."""
    calls = []
    record = maker.record
    maker.record = lambda raw, now, errors: calls.append(raw) or record(raw, now, errors)
    try:
        records, _ = maker.feed(text, now, [], lambda t, ls: None, [], [],
                                lambda t, b, n: None)
    finally:
        del maker.record
    return records - len(calls)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records(), min_size=1, max_size=4).map(lambda rs: [r for x in rs for r in x]),
       st.booleans())
@example(raws=[  # regression: a field name that is not ASCII (here `\xa0x`) made a bad C plan
    "DATATYPE::HOSTPERFDATA\tTIMET::1700000000\tHOSTNAME::web1\tHOSTPERFDATA::load1=0;5;10;0;"
    "\tload1=0;5;10;0; \xa0x::y::z=0;5;10;0;\tHOSTSTATE::0\tHOSTSTATETYPE::1\tHOSTOUTPUT::OK"],
    crlf=False)
def test_c_equals_python_on_grammar_records(raws, crlf):
    """Records from the grammar (test_nagios_records_fast's, odd fields and all), each chunk
    fed several times (skeletons learnt, then used by C), plain, reversed, with CRLF."""
    text = "\n".join(raws)
    chunks = [text, text + "\n", text, "\n".join(raws[::-1]), text]
    if crlf:
        chunks.append("\r\n".join(raws))
    _both(chunks)


_NUMBER = st.one_of(
    _NUMS,
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.decimals(-10**20, 10**20, places=7).map(str),
    st.tuples(st.sampled_from(["", "-", "+"]), st.text("0123456789", min_size=0, max_size=20),
              st.sampled_from(["", ".", "e", "e-", "E+", ".0"]),
              st.text("0123456789", min_size=0, max_size=20)).map("".join),
    st.sampled_from(["0.0001", "0.00001", "0.00010", "-0.000", "123456789012345",
                     "1234567890123456", "12345678.1234567", "123456789.1", "1.23456789",
                     "0.12345678901234", "0.012345678901234", "1e308", "1e-320", "2e-3",
                     "5e+2", "1.5E3", "9" * 63, "9" * 64, "0." + "0" * 62 + "1", "1e99999",
                     "1e-999999999", "1e9999999999"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["a", "load1", "rta", "x y", "time"]), _UOMS,
                          _TAILS), min_size=1, max_size=4),
       st.lists(st.lists(_NUMBER, min_size=4, max_size=4), min_size=2, max_size=6))
@example(items=[("a", "", "")], numbers=[["1"] * 4, ["0.00001"] * 4, ["-0"] * 4])
@example(items=[("rta", "ms", ";1;2")], numbers=[["1"] * 4, ["2e-3"] * 4, ["1e9999999999"] * 4])
def test_c_equals_python_on_numbers(items, numbers):
    """One check whose items stay while their numbers change (the C module's whole work):
    every number form, unit scaling from the decimal text, overflow."""
    labels = list(dict.fromkeys(label for label, _, _ in items))
    items = [next(it for it in items if it[0] == label) for label in labels]
    raws = []
    for t, nums in enumerate(numbers):
        perf = " ".join(f"{label}={num}{uom}{tail}" for (label, uom, tail), num in
                        zip(items, nums))
        raws.append(TPL.format(t=1700000000 + t, host="web1", svc="svc", perf=perf, state=0,
                               output="OK - fine 100%"))
    first = raws[:1] * 2  # the shape, then the skeleton learnt from the first numbers
    _both(["\n".join(first + raws), "\n".join(raws), "\n".join(raws[::-1])])


def _host(i: int) -> str:
    return ["web01", "é-host", "host€", "db 1", "h" * 1100, "h/x", "Web01"][i % 7]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from(["Load", "disk /", "ü", "x" * 600]),
                          st.sampled_from(["load1=0.5;5;10;0;", "'a b'=1", "x::y::z=1",
                                           "l" * 600 + "=1", "a=1 b=2MB;;;0;100", "",
                                           "a=U", "a=1;x", "µs=1µs", "a=1e999", "a=1 a=2"]),
                          st.sampled_from(["0", "2", "OK", "", "x"]),
                          st.sampled_from(["OK", "", "a=b 100%", "é", "\x01", "o" * 1100])),
                min_size=1, max_size=12))
def test_c_equals_python_on_odd_records(recs):
    """Non-ASCII hosts (Latin-1 and beyond), huge names and labels, quoted labels, check_multi,
    unknown values, bad thresholds, bad states, long and non-printable output."""
    raws = [TPL.format(t=1700000000 + i, host=_host(h), svc=svc, perf=perf, state=state,
                       output=output) for i, (h, svc, perf, state, output) in enumerate(recs)]
    text = "\n".join(raws)
    _both([text, text, _varied(text, 1), text.encode("latin-1", "replace").decode("latin-1")])


def test_unknown_templates_and_bad_records():
    """Lines of another shape, of no shape, without HOSTNAME or SERVICEDESC, a Nagflux tag
    line, empty lines: record() takes them, the C module the rest, the same lines as Python."""
    good = [TPL.format(t=1700000000 + i, host=f"h{i % 3}", svc="load",
                       perf=f"load1={i}.5;5;10;0; load5=0.{i}", state=i % 4, output="OK")
            for i in range(30)]
    odd = ["", "garbage", "HOSTNAME::h0\tSERVICEDESC::load\tSERVICESTATE::0",
           "DATATYPE::SERVICEPERFDATA\tTIMET::1\tHOSTNAME::\tSERVICEDESC::load",
           "DATATYPE::HOSTPERFDATA\tTIMET::1\tHOSTNAME::h0\tHOSTPERFDATA::rta=1ms\t"
           "HOSTSTATE::0\tHOSTOUTPUT::up",
           "DATATYPE::SERVICEPERFDATA\tTIMET::x\tHOSTNAME::h0\tSERVICEDESC::load\t"
           "SERVICEPERFDATA::load1=1\tSERVICECHECKCOMMAND::c\tSERVICESTATE::0\t"
           "SERVICESTATETYPE::1\tSERVICEOUTPUT::OK",
           "DATATYPE::SERVICEPERFDATA\tHOSTNAME::h0\tSERVICEDESC::load\tSERVICEPERFDATA::a=1\t"
           "SERVICESTATE::0\tNAGFLUX:TAG::k=v",
           good[0] + "\tEXTRA::field", good[1].replace("SERVICEOUTPUT::OK", "SERVICEOUTPUT::O\tK")]
    raws = good[:10] + [x for pair in zip(odd, good[10:]) for x in pair] + good[len(odd) + 10:]
    text = "\n".join(raws)
    maker = _both([text, text, text + "\n\n", _varied(text, 2)])
    if FAST is not None:
        # the C module made the lines of every good record of a known check
        assert _handled_by_c(maker, "\n".join(good)) == len(good)


@pytest.mark.parametrize("use_c", [True, False])
def test_forgotten_label_names_leave_the_check_to_python(use_c):
    """A check's label namer that forgot its names (past max_names: a new generation) makes
    its skeleton stale: the C module leaves the record to record(), which relearns it.
    Regression (found by this test): record() then dropped the check's items for good (a
    stale skeleton that matched was neither used nor relearnt)."""
    raws = [TPL.format(t=1700000000 + i, host="h", svc="s", perf=f"a={i};1;2 b={i}.5ms",
                       state=0, output="OK") for i in range(4)]
    text = "\n".join(raws)
    maker = LineMaker()
    maker.use_c = use_c
    for _ in range(2):
        maker.feed(text, 0, [], lambda t, ls: None, [], [])
    (c,) = maker._checks.values()
    labels = c[2]
    labels._forward.clear()
    labels.generation += 1
    assert _fed(maker, text, 0) == _general_chunk(LineMaker(fast=False), text, 0)
    assert c[5] == labels.generation  # relearnt by the first record
    if FAST is not None and use_c:
        assert _handled_by_c(maker, text) == len(raws)


def test_real_files_go_through_c():
    """The Nagios 4 capture and the benchmark's file of real plugin outputs: the same lines
    as Python, and (warm) every record made by the C module."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from nagios_bench import _corpus_file
    finally:
        sys.path.pop(0)
    for text in ((DATA / "nagios" / "nagios4-perfdata.txt").read_text(), _corpus_file(130, 1)):
        maker = _both([text, _varied(text, 1), _varied(text, 2), text])
    if FAST is not None:
        assert _handled_by_c(maker, _varied(text, 3)) == text.count("\n") == 650


def test_python_way_alone_still_works(monkeypatch):
    """Without the C module (no compiler): feed() gives the same as the general way."""
    monkeypatch.setattr(perfdata, "_FASTSPOOL", [None])
    text = (DATA / "nagios" / "nagios4-perfdata.txt").read_text()
    maker, slow = LineMaker(), LineMaker(fast=False)
    for i in range(3):
        t = _varied(text, i) if i else text
        assert _fed(maker, t, 1700000000.0, bodies=True) == _general_chunk(slow, t, 1700000000.0)


# --- the entry point on arbitrary input ---------------------------------------------------
def _plan_and_checks():
    maker = LineMaker()
    raw = TPL.format(t=1, host="h", svc="s", perf="a=1ms;2;3 b=2", state=0, output="OK")
    maker.feed("\n".join([raw] * 3), 0, [], lambda t, ls: None, [], [])
    (chunk,) = [c for c in maker._chunk_plans.values() if c is not None]
    return chunk[4], maker._chunk_checks


@pytest.mark.skipif(FAST is None, reason="the C module was not built (see the CI test above)")
@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                 st.text(max_size=200),
                 st.lists(st.sampled_from(TPL.format(t=1, host="h", svc="s", perf="a=1ms;2;3 b=2",
                                                     state=0, output="OK").split("\t")
                                          + ["\n", "\t", "", "a=1e5", "::", "\x00", "é"]),
                          max_size=30).map("".join)),
       st.binary(max_size=120), st.integers(0, 2))
def test_entry_point_never_crashes(text, blob, which):
    """Arbitrary text, and check entries with arbitrary skeleton bytes: a result or None,
    never a crash, and every body it gives is lines of the topic's prefix."""
    plan, checks = _plan_and_checks()
    if which:
        for c in checks.values():
            c[7] = blob if which == 1 else c[7][:len(blob)]
    got = FAST.run(text, 0, len(text), plan, checks, "5")
    if got is None:
        assert any(ord(ch) > 255 for ch in text)
        return
    pos, records, lines, bodies, key = got
    assert 0 <= pos <= len(text) and lines == sum(n for _, _, n in bodies)
    for topic, body, n in bodies:
        assert body.count("\n") + 1 == n and body.isascii()


@pytest.mark.skipif(FAST is None, reason="the C module was not built (see the CI test above)")
def test_entry_point_rejects_bad_arguments():
    plan, checks = _plan_and_checks()
    with pytest.raises(ValueError):
        FAST.run("x", 0, 5, plan, checks, "5")
    with pytest.raises(ValueError):
        FAST.run("x", 0, 1, plan[:3], checks, "5")
    with pytest.raises(ValueError):
        FAST.run("x", 0, 1, (("é::",),) + plan[1:], checks, "5")
    with pytest.raises(TypeError):
        FAST.run("x", 0, 1, plan, [], "5")


# --- the whole command ------------------------------------------------------------------
def test_spool_command_delivers_every_line(tmp_path):
    """`monbus nagios spool --once` on 2,000 records of real plugin output into a relay
    process: every line arrives at a subscriber, and the lines are exactly those of the
    Python way (in each topic's order)."""
    from monbus.core.bus import Subscriber
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from nagios_bench import _corpus_file
    finally:
        sys.path.pop(0)
    text = _varied(_corpus_file(100, 4), 5)
    want_maker = LineMaker()
    want_maker.use_c = False
    want: dict = {}
    want_maker.feed(text, 0, [], lambda t, ls: want.setdefault(t, []).extend(ls), [], [])
    n_want = sum(map(len, want.values()))
    d = tmp_path / "in"
    d.mkdir()
    (d / "service-perfdata.1").write_text(text)
    port = free_port()
    inp, out = f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{free_port()}"
    relay = subprocess.Popen(monbus_cmd() + ["relay", "--input", inp, "--output", out,
                                             "--retain", "0", "--spool", str(tmp_path / "rs")],
                             stderr=subprocess.DEVNULL)
    sub = Subscriber([out], ["nagios.**"])
    try:
        # the relay is up and has the subscription once a probe line comes through
        def probe():
            subprocess.run(monbus_cmd() + ["send", "--relay", inp, "nagios.probe.x.y 1 1"],
                           check=True, capture_output=True)
            return sub.recv_lines(0.3)
        wait_for(probe, timeout=30, what="the relay and the subscription")
        r = subprocess.run(monbus_cmd() + ["nagios", "spool", "--once", "--relay", inp, str(d)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"{n_want} lines" in r.stderr and list(d.iterdir()) == []
        got: dict = {}
        n = 0

        def all_in():
            nonlocal n
            lines = sub.recv_lines(0.5, decode_lines=False)
            for line in lines or ():
                if not line.startswith("nagios.probe."):
                    got.setdefault(line[:line.index(".", 7) + 1], []).append(line)
                    n += 1
            return n >= n_want
        wait_for(all_in, timeout=60, interval=0, what=f"{n_want} lines")
        assert got == want and sub.gaps.gaps == 0
    finally:
        sub.close()
        stop_process(relay)
