"""The spool decoder's fast way (remembered record shapes, per-check caches, perfdata
skeletons) gives exactly the lines and errors of the general way (record_result + lines)."""
from __future__ import annotations

import pytest
from hypothesis import example, given, settings, strategies as st

from monbus.bridges.nagios.perfdata import LineMaker, parse_record, record_result

_NUMS = st.one_of(
    st.integers(-10**18, 10**18).map(str),
    st.integers(0, 10**6).map(str),
    st.decimals(0, 1000, places=3).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    st.sampled_from(["0", "00", "-0", "0.", ".5", "+1", "1e999", "1,5", "U", "", "1e-05",
                     "7E3", "12_3", "0x10", "1.e5", "٣"]))
_UOMS = st.sampled_from(["", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c", "EB", "e",
                         "kiB", "µs", "dBm", "m"])
_TAILS = st.sampled_from([";5;10;0;"] * 4 + [";;;;"] * 4
                         + ["", ";", ";5;10", ";5;10;0;", ";;;0;100", ";~:10;@5:6;;", ";x;;;",
                            ";10:5", ";1;2;3;4;5", ";;;;;", ";1,5;2"])
_LABELS = st.sampled_from(["load1"] * 6 + ["rta"] * 6 + ["pl"] * 6
                          + ["rta", "/", "a b", "'q r'", "x::y::z", "c.d", "state", "a_b", "a-b",
                             "=", ""])
_SEPS = st.sampled_from([" ", "  ", "\t", " \u00a0"])


@st.composite
def _records(draw):
    """Records of a few checks whose perfdata keep their items while the numbers change
    (as a real perfdata file does), with odd fields now and then."""
    n_items = draw(st.integers(0, 4))
    skeleton = [(draw(_LABELS), draw(_UOMS), draw(_TAILS)) for _ in range(n_items)]
    seps = [draw(_SEPS) for _ in range(n_items)]
    host_kind = draw(st.booleans())
    out = []
    for i in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 9)) == 0:  # now and then the items change
            skeleton = skeleton[:-1] + [(draw(_LABELS), draw(_UOMS), draw(_TAILS))]
        perf = "".join(f"{sep}{label}={draw(_NUMS)}{uom}{tail}"
                       for sep, (label, uom, tail) in zip(seps, skeleton)).strip()
        host = draw(st.sampled_from(["web1"] * 4 + ["web 1", "db", ""]))
        t = draw(st.sampled_from(["1700000000", "1700000001"] * 3 + ["", "0", "007", " 5", "x",
                                  "99999999999999999"]))
        state = draw(st.sampled_from(["0", "2", "OK", "down", "", "FINE"]))
        stype = draw(st.sampled_from(["1", "0", "HARD", " soft ", "other", ""]))
        output = draw(st.sampled_from(["OK - fine", "", "a=b 100% \x01", "é" * 3]))
        if host_kind:
            fields = [("DATATYPE", draw(st.sampled_from(["HOSTPERFDATA", "", "X"]))),
                      ("TIMET", t), ("HOSTNAME", host), ("HOSTPERFDATA", perf),
                      ("HOSTSTATE", state), ("HOSTSTATETYPE", stype), ("HOSTOUTPUT", output)]
        else:
            svc = draw(st.sampled_from(["Load", "Load", "disk /", ""]))
            dtype = draw(st.sampled_from(["SERVICEPERFDATA"] * 3 + ["", "HOSTPERFDATA"]))
            fields = [("DATATYPE", dtype),
                      ("TIMET", t), ("HOSTNAME", host), ("SERVICEDESC", svc),
                      ("SERVICEPERFDATA", perf), ("SERVICESTATEID", state),
                      ("SERVICESTATETYPE", stype), ("SERVICEOUTPUT", output),
                      ("LONGSERVICEOUTPUT", draw(st.sampled_from(["", "l1\\nl2", "\\n"])))]
        if draw(st.integers(0, 7)) == 0:
            fields = fields[:draw(st.integers(1, len(fields)))]
        out.append("\t".join(f"{k}::{v}" for k, v in fields))
    return out


def _general(maker, raw, now, errors):
    try:
        return maker.lines(record_result(parse_record(raw), now), errors)
    except ValueError as e:
        return ("error", str(e))


@settings(max_examples=400, deadline=None)
@given(st.lists(_records(), min_size=1, max_size=4).map(lambda rs: [r for x in rs for r in x]))
def test_planned_records_equal_general_way(raws):
    fast, slow = LineMaker(), LineMaker(fast=False)
    fast_errors, slow_errors = [], []
    for raw in raws * 2:
        want = _general(slow, raw, 1700000009.5, slow_errors)
        try:
            got = fast.record(raw, 1700000009.5, fast_errors)
        except ValueError as e:
            got = ("error", str(e))
        assert got == want, raw
        assert [str(e) for e in fast_errors] == [str(e) for e in slow_errors]


def test_skeleton_is_used_and_numbers_change():
    """The second record of a check goes through the remembered skeleton, with its own
    numbers, units converted from the decimal text."""
    maker = LineMaker()
    tpl = ("DATATYPE::SERVICEPERFDATA\tTIMET::{t}\tHOSTNAME::h\tSERVICEDESC::ping\t"
           "SERVICEPERFDATA::rta={rta}ms;200.000;500.000;0; pl={pl}%;40;80;;\tSERVICESTATEID::0")
    maker.record(tpl.format(t=0, rta="0.013", pl="0"), 0, [])  # the shape is learnt
    maker.record(tpl.format(t=1, rta="0.013", pl="0"), 0, [])  # the skeleton is learnt
    (check,) = maker._checks.values()
    assert check[3] is not None  # learnt
    topic, lines = maker.record(tpl.format(t=2, rta="0.1", pl="12.5"), 0, [])
    assert topic == "nagios.h."
    assert lines == ["nagios.h.ping.rta 0.0001 2 mtype=gauge unit=s warn=0.2 crit=0.5 min=0",
                     "nagios.h.ping.pl 12.5 2 mtype=gauge unit=%25 warn=40 crit=80",
                     "nagios.h.ping.state 0 2 mtype=state"]
    # an overflowing number is left to the general way, which reports it
    errors = []
    _, lines = maker.record(tpl.format(t=3, rta="1e999", pl="1"), 0, errors)
    assert [str(e) for e in errors] == ["perfdata item 'rta=1e999ms;200.000;500.000;0;': "
                                        "value '1e999ms' is not finite"]
    assert lines[0].startswith("nagios.h.ping.pl 1 3 ")


# --- whole chunks (LineMaker.feed) -----------------------------------------------------------
def _by_topic(out):
    """[(topic, lines)] as {topic: all its lines in order}: feed() keeps the order of the
    lines of a topic (the bus's order), not the order of the emit calls across topics."""
    got: dict = {}
    for topic, lines in out:
        got.setdefault(topic, []).extend(lines)
    return got


def _general_chunk(slow, text, now):
    """What the general way (LineMaker(fast=False) `slow`, its names kept from chunk to chunk)
    makes of a chunk, line by line: {topic: lines}, item problems, bad records, records."""
    errors, bad, out = [], [], []
    records = 0
    for raw in text.split("\n"):
        if not raw or raw == "\r":
            continue
        records += 1
        try:
            topic, lines = slow.lines(record_result(parse_record(raw.rstrip("\r")), now), errors)
        except ValueError as e:
            bad.append((raw, str(e)))
            continue
        if lines:
            out.append((topic, lines))
    return _by_topic(out), [str(e) for e in errors], bad, records


def _fed(maker, text, now, bodies=False):
    """feed() (with emit_body if `bodies`) as _general_chunk gives it."""
    out, errors, bad, marks = [], [], [], []

    def emit_body(topic, body, n):
        assert isinstance(body, str) and body.count("\n") + 1 == n
        out.append((topic, body.split("\n")))

    records, n_lines = maker.feed(text, now, errors, lambda t, ls: out.append((t, list(ls))), bad,
                                  marks, emit_body if bodies else None)
    assert n_lines == sum(len(ls) for _, ls in out)
    assert all(errors[a:b] for _, a, b in marks) and sum(b - a for _, a, b in marks) == len(errors)
    return _by_topic(out), [str(e) for e in errors], bad, records


_ODD_LINES = st.sampled_from(["", "\r", "x", "HOSTNAME::h\tSERVICEDESC::s\tSERVICESTATE::0",
                              "DATATYPE::SERVICEPERFDATA\tTIMET::1\tHOSTNAME::h\tSERVICEDESC::s\t"
                              "SERVICEPERFDATA::a=1\tSERVICESTATE::0\tSERVICEOUTPUT::o\tX::y"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_records(), min_size=1, max_size=4).map(lambda rs: [r for x in rs for r in x]),
       st.lists(st.tuples(st.integers(0, 30), _ODD_LINES), max_size=2), st.booleans())
@example(raws=["DATATYPE::HOSTPERFDATA\tTIMET::1700000000\tHOSTNAME::web1\tHOSTPERFDATA::"
               f"load1=0;5;10;0; {label}=0;5;10;0;\tHOSTSTATE::0\tHOSTSTATETYPE::1\t"
               "HOSTOUTPUT::OK - fine" for label in ("a b", "a_b")], odd=[], crlf=False)
def test_chunks_equal_general_way(raws, odd, crlf):
    """feed() over whole chunks (its chunk-wide split when the chunk allows it, else line by
    line; in windows of a few lines here) gives the records, lines, problems and bad records
    of the general way, chunk after chunk with the caches warm, whatever the chunk holds."""
    from monbus.bridges.nagios import perfdata
    fast = LineMaker()
    perfdata._WINDOW = len(raws[0]) * 2
    try:
        _check_chunks(fast, raws, odd, crlf)
    finally:
        perfdata._WINDOW = 65536


def _check_chunks(fast, raws, odd, crlf):
    chunks = ["\n".join(raws), "\n".join(raws) + "\n", "\n".join(raws[::-1])]
    for at, line in odd:
        raws = raws[:at] + [line] + raws[at:]
    chunks.append("\n".join(raws))
    if crlf:
        chunks.append("\r\n".join(raws))
    slow = LineMaker(fast=False)
    for i, text in enumerate(chunks * 2):
        now = 1700000009.5 + i
        assert _fed(fast, text, now) == _general_chunk(slow, text, now), text


def _varied(text, seed):
    """A perfdata file's text with every number of every perfdata item changed (as the next
    check would print it: other digits, same form), for the warm caches' sake."""
    import random
    import re
    rnd = random.Random(seed)

    def other(m):
        s = m.group()
        return "".join(str(rnd.randrange(10)) if ch.isdigit() else ch for ch in s)

    def perf(m):
        return m.group(1) + re.sub(r"(?<==)[-+]?[0-9.,]+(?:[eE][-+]?[0-9]+)?", other, m.group(2))

    return re.sub(r"(PERFDATA::)([^\t\n]*)", perf, text)


def test_chunks_equal_general_way_on_the_real_files():
    """The Nagios 4 capture and the benchmark's file of real plugin outputs, each fed three
    times (numbers changed each time, so the skeletons are used with new numbers)."""
    from helpers import DATA
    import sys
    sys.path.insert(0, str(DATA.parent.parent / "bench"))
    try:
        from nagios_bench import _corpus_file
    finally:
        sys.path.pop(0)
    # (the second is 170 KB: three windows of LineMaker.feed)
    for text in ((DATA / "nagios" / "nagios4-perfdata.txt").read_text(), _corpus_file(130, 1)):
        fast, slow = LineMaker(), LineMaker(fast=False)
        general = []
        record = fast.record
        fast.record = lambda raw, now, errors: general.append(raw) or record(raw, now, errors)
        for seed in range(3):
            t = _varied(text, seed) if seed else text
            del general[:]
            got, want = _fed(fast, t, 1700000000.0), _general_chunk(slow, t, 1700000000.0)
            assert got == want
    # the last time, the benchmark's records all took the chunk-wide way
    assert general == [] and all(c[3] is not None for c in fast._checks.values())


_DIGITS = st.text("0123456789", min_size=0, max_size=18)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(
    st.tuples(st.sampled_from(["", "-", "+"]), _DIGITS, st.sampled_from(["", ".", ",", "e",
                                                                         "e-", "E+"]), _DIGITS)
    .map("".join),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.text("0123456789.-+eE", max_size=20)),
    st.sampled_from(["", ";", "ms;1", " x=1", "%", "e;"]))
def test_skeleton_number_text_is_format_number(text, after):
    """A number a skeleton takes as text (first group) is written exactly as format_number
    writes float() of it; any other number it takes is one float() reads (second group)."""
    import re
    from monbus.bridges.nagios.perfdata import _SKELETON_NUM, format_number
    m = re.fullmatch(_SKELETON_NUM + re.escape(after), text + after)
    if m is not None:
        as_text, number = m.groups()
        if as_text is not None:
            assert as_text == format_number(float(text))
        else:
            assert number == text and float(number) == float(number)


def test_records_without_timet_get_now_every_time():
    """Regression (found by test_record_shapes_equal_parse_record): the second record without
    a TIMET field got the time text `None`, and a record with an empty TIMET kept the `now` of
    an earlier call."""
    maker = LineMaker()
    raw = "HOSTNAME::a\tSERVICEDESC::a\tSERVICESTATE::1"
    assert maker.record(raw, 5, [])[1] == ["nagios.a.a.state 1 5 mtype=state"]
    assert maker.record(raw, 6, [])[1] == ["nagios.a.a.state 1 6 mtype=state"]
    raw = ("DATATYPE::SERVICEPERFDATA\tTIMET::\tHOSTNAME::a\tSERVICEDESC::a\t"
           "SERVICEPERFDATA::x=1\tSERVICESTATE::0\tSERVICEOUTPUT::ok")
    for now in (7, 8, 9):
        out = []
        maker.feed(f"{raw}\n{raw}", now, [], lambda t, ls: out.extend(ls), [], [])
        assert out[-1] == f"nagios.a.a.state 0 {now} mtype=state output=ok"


@pytest.mark.parametrize("bad", ["DATATYPE::SERVICEPERFDATA", "DATATYPE::S\tTIMET::1",
                                 "HOSTNAME::h", "HOSTNAME::h\tSERVICEDESC::s"])
@pytest.mark.parametrize("first", ["DATATYPE", "HOSTNAME"])
def test_chunk_split_is_linear(bad, first):
    """1 MB of lines that start like a record but end early (a field of the chunk regex that
    runs over line ends) costs linear time, not a scan to the window's end per line (here one
    window of the whole text: 40,000 scans of half a megabyte would take minutes)."""
    import time
    from monbus.bridges.nagios import perfdata
    good = ("DATATYPE::SERVICEPERFDATA\tTIMET::1700000000\tHOSTNAME::h\tSERVICEDESC::s\t"
            "SERVICEPERFDATA::a=1\tSERVICESTATE::0\tSERVICESTATETYPE::1\tSERVICEOUTPUT::ok")
    if first == "HOSTNAME":
        good = good.partition("\t")[2]
    maker = LineMaker()
    maker.feed(good, 0, [], lambda t, ls: None, [], [])
    # (the tabs at the end stop each run over line ends, where the next key does not follow)
    text = "\n".join([good] + [bad] * (2 ** 20 // (len(bad) + 1)) + ["x" + "\t" * 20000])
    perfdata._WINDOW = 1 << 24
    try:
        t = time.process_time()
        maker.feed(text, 0, [], lambda t, ls: None, [], [])
        assert time.process_time() - t < 3.0
    finally:
        perfdata._WINDOW = 65536
