"""The spool decoder's fast way (remembered record shapes, per-check caches, perfdata
skeletons) gives exactly the lines and errors of the general way (record_result + lines)."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

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
