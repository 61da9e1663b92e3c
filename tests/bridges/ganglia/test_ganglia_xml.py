"""The streaming XML dump parser: the real gmond dump, gmetad shapes, staleness, hardening."""
from __future__ import annotations

import gzip
import resource
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monbus.bridges.ganglia.naming import Namer
from monbus.bridges.ganglia.xmldump import XmlDumpError, XmlDumpParser, parse_dump
from monbus.core.line import decode

DATA = Path(__file__).resolve().parents[2] / "data" / "ganglia"
DUMP = (DATA / "gmond372_local_xml_dump.xml").read_bytes()
DOCTYPE = DUMP[:DUMP.index(b"<GANGLIA_XML ")].decode("iso-8859-1")


def et_metrics(xml: bytes) -> dict:
    """Independent decode with ElementTree: {(cluster, host, metric): METRIC attributes}."""
    out = {}
    root = ET.fromstring(xml)
    for cl in root.iter("CLUSTER"):
        for h in cl.iter("HOST"):
            for m in h.iter("METRIC"):
                out[(cl.get("NAME"), h.get("NAME"), m.get("NAME"))] = dict(m.attrib, **{
                    "_REPORTED": h.get("REPORTED")})
    return out


def test_real_dump_every_metric_with_equal_values():
    lines, stats = parse_dump(DUMP, now=0)
    got = {decode(x).path: decode(x) for x in lines}
    want = et_metrics(DUMP)
    assert stats["metrics"] + stats["string_metrics"] == len(want) == 45
    numeric = 0
    for (cl, host, name), a in want.items():
        hpath = f"ganglia.{cl}.{host.replace('.', '_')}"
        if a["TYPE"] == "string":
            assert got[hpath + ".heartbeat"].tags[name] == a["VAL"].replace(" ", "_")
            continue
        ln = got[f"{hpath}.{name.replace(' ', '_').replace('.', '_')}"]
        assert ln.value == float(a["VAL"])
        assert ln.timestamp == float(a["_REPORTED"])
        assert ln.meta["type"] == a["TYPE"] and ln.meta["slope"] == a["SLOPE"]
        assert ln.meta.get("unit", "") == a["UNITS"].strip()
        numeric += 1
    assert numeric == 40
    # three hosts, each with its availability line
    hb = sorted(x.path for x in got.values() if x.path.endswith(".heartbeat"))
    assert hb == ["ganglia.monbus-corpus.node01_monbus_example.heartbeat",
                  "ganglia.monbus-corpus.spoofed-hb_example.heartbeat",
                  "ganglia.monbus-corpus.spoofed-host_example.heartbeat"]


def test_chunked_feed_gives_the_same_lines():
    whole, _ = parse_dump(DUMP, now=0)
    for size in (1, 7, 100, 4096):
        p = XmlDumpParser(0)
        out = []
        for i in range(0, len(DUMP), size):
            out += p.feed(DUMP[i:i + size])
        out += p.close()
        assert out == whole


def _grid(hosts: str, grid="g1") -> bytes:
    return (DOCTYPE + f'<GANGLIA_XML VERSION="3.7.2" SOURCE="gmetad"><GRID NAME="{grid}" '
            f'AUTHORITY="x" LOCALTIME="2000">{hosts}</GRID></GANGLIA_XML>').encode(
        "iso-8859-1", "xmlcharrefreplace")  # the declared encoding; others as &#...;


def _cluster(name, hosts):
    return f'<CLUSTER NAME="{name}" LOCALTIME="2000">{hosts}</CLUSTER>'


def _host(name, tn=5, tmax=20, metrics=""):
    return (f'<HOST NAME="{name}" IP="10.0.0.1" REPORTED="1990" TN="{tn}" TMAX="{tmax}" '
            f'DMAX="0">{metrics}</HOST>')


def _metric(name, val, vtype="float", tn=5, tmax=60, slope="both", units=""):
    return (f'<METRIC NAME="{name}" VAL="{val}" TYPE="{vtype}" UNITS="{units}" TN="{tn}" '
            f'TMAX="{tmax}" DMAX="0" SLOPE="{slope}"><EXTRA_DATA><EXTRA_ELEMENT NAME="GROUP" '
            f'VAL="x"/></EXTRA_DATA></METRIC>')


def test_gmetad_grid_tag_nested_grids_and_slopes():
    inner = f'<GRID NAME="child" AUTHORITY="y" LOCALTIME="2000">' \
            f'{_cluster("c1", _host("a", metrics=_metric("bytes", 7, "uint32", slope="positive")))}</GRID>'
    after = _cluster("c2", _host("b", metrics=_metric("load", 0.5)))
    lines, _ = parse_dump(_grid(inner + after, grid="top"), now=0)
    got = {decode(x).series: decode(x) for x in lines}
    assert got["ganglia.c1.a.bytes;grid=child"].meta["mtype"] == "counter"
    assert got["ganglia.c2.b.load;grid=top"].meta["mtype"] == "gauge"   # back in the outer grid
    lines, _ = parse_dump(_grid(after), now=0, grid_tag=False)
    assert "ganglia.c2.b.load" in {decode(x).series for x in lines}


def test_stale_metric_skipped_and_host_down_then_up():
    xml = _grid(_cluster("c", _host("fresh", metrics=_metric("ok", 1) + _metric(
        "old", 2, tn=61, tmax=60)) + _host("dead", tn=81, tmax=20, metrics=_metric("x", 3))))
    lines, stats = parse_dump(xml, now=0)
    got = {decode(x).path: decode(x) for x in lines}
    assert "ganglia.c.fresh.ok" in got and "ganglia.c.fresh.old" not in got
    assert stats["stale_metrics"] == 1 and stats["down_host_metrics"] == 1
    assert "ganglia.c.dead.x" not in got
    dead = got["ganglia.c.dead.heartbeat"]
    assert (dead.value, dead.timestamp, dead.meta["mtype"]) == (1, 2000, "state")
    assert "DOWN" in dead.meta["output"]
    assert got["ganglia.c.fresh.heartbeat"].value == 0
    # the next poll: the host reports again -> UP
    lines, _ = parse_dump(_grid(_cluster("c", _host("dead", tn=2, metrics=_metric("x", 3)))), 0)
    got = {decode(x).path: decode(x) for x in lines}
    assert got["ganglia.c.dead.heartbeat"].value == 0 and got["ganglia.c.dead.x"].value == 3


def test_names_never_collide_silently():
    xml = _grid(_cluster("c", _host("h", metrics=_metric("a.b", 1) + _metric("a b", 2))))
    lines, _ = parse_dump(xml, now=0, namer=Namer())
    paths = sorted(decode(x).path for x in lines if "heartbeat" not in x)
    assert len(set(paths)) == 2 and paths[0] == "ganglia.c.h.a_b"


def test_bad_value_reported_rest_kept():
    xml = _grid(_cluster("c", _host("h", metrics=_metric("bad", "nan") + _metric("bad2", "x1")
                                    + _metric("good", 4))))
    p = XmlDumpParser(0)
    lines = p.feed(xml) + p.close()
    assert [decode(x).path for x in lines] == ["ganglia.c.h.good", "ganglia.c.h.heartbeat"]
    assert p.stats["bad_values"] == 2 and "'x1'" in p.errors[1]


# --- hardening ------------------------------------------------------------------------------
BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE GANGLIA_XML [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
]>
<GANGLIA_XML VERSION="3.7.2" SOURCE="gmond"><CLUSTER NAME="&f;" LOCALTIME="1">
<HOST NAME="&f;" REPORTED="1"><METRIC NAME="&f;" VAL="1" TYPE="float"/></HOST></CLUSTER>
</GANGLIA_XML>"""

REFUSED = [
    (BOMB, "entity declaration refused"),
    (b'<?xml version="1.0"?><!DOCTYPE GANGLIA_XML SYSTEM "http://example.invalid/x.dtd">'
     b"<GANGLIA_XML/>", "external DTD refused"),
    (b'<!DOCTYPE GANGLIA_XML [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b"<GANGLIA_XML>&x;</GANGLIA_XML>", "entity declaration refused"),
    (b'<!DOCTYPE GANGLIA_XML [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><GANGLIA_XML/>',
     "entity declaration refused"),
    (b'<!DOCTYPE GANGLIA_XML [<!NOTATION n SYSTEM "x">]><GANGLIA_XML/>', "notation"),
    (b'<!DOCTYPE OTHER [<!ELEMENT OTHER ANY>]><OTHER/>', "not GANGLIA_XML"),
    (b"<GANGLIA_XML>&undefined;</GANGLIA_XML>", "undefined entity"),
    (DUMP[:len(DUMP) // 2], "bad XML"),                       # a truncated stream
    (DUMP[:-5], "bad XML"),                                  # cut in the last end tag
    (b"", "empty response"),
    (b"<html><body>not ganglia</body></html>", "no GANGLIA_XML"),
    (b'<GANGLIA_XML><HOST NAME="h"/></GANGLIA_XML>', "HOST outside a CLUSTER"),
    (b"<GANGLIA_XML>" + b"<GRID>" * 70 + b"</GRID>" * 70 + b"</GANGLIA_XML>", "nested deeper"),
    (b"\x1f\x8b\x08\x00garbage", "bad gzip"),
]


@pytest.mark.parametrize("data,problem", REFUSED)
def test_refused_responses(data, problem):
    with pytest.raises(XmlDumpError) as e:
        parse_dump(data, now=0)
    assert problem in str(e.value)


def test_bomb_refused_without_memory_growth():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(50):
        with pytest.raises(XmlDumpError):
            parse_dump(BOMB, now=0)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 20_000   # the bomb would expand to 20^5 x 56 bytes = 179 MB


def test_truncated_stream_yields_only_complete_hosts():
    cut = DUMP.index(b"</HOST>", DUMP.index(b"</HOST>") + 1) + len(b"</HOST>") + 300
    p = XmlDumpParser(0)
    lines = p.feed(DUMP[:cut])
    with pytest.raises(XmlDumpError):
        p.close()
    # the two spoofed hosts were complete (a host's lines are handed out once the next
    # host starts); node01 was cut in its metrics
    assert sorted({decode(x).path.split(".")[2] for x in lines}) == \
        ["spoofed-hb_example", "spoofed-host_example"]


def test_size_limit_and_gzip():
    lines, _ = parse_dump(gzip.compress(DUMP), now=0)
    assert lines == parse_dump(DUMP, now=0)[0]
    with pytest.raises(XmlDumpError, match="larger than 10000 bytes"):
        parse_dump(DUMP, now=0, max_bytes=10000)
    # a gzip bomb: 200 MB of zeros in ~200 kB, refused at the limit, not inflated
    bomb = gzip.compress(b"<GANGLIA_XML>" + b" " * 200_000_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(XmlDumpError, match="larger than"):
        p = XmlDumpParser(0, max_bytes=1_000_000)
        for i in range(0, len(bomb), 65536):
            p.feed(bomb[i:i + 65536])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(DUMP) - 1), st.binary(min_size=1, max_size=12),
       st.integers(1, 5000))
def test_fuzz_mutated_real_dump(pos, junk, chunk):
    """Corrupted real dumps: XmlDumpError or valid lines, nothing else."""
    data = DUMP[:pos] + junk + DUMP[pos + len(junk):]
    p = XmlDumpParser(0)
    try:
        out = []
        for i in range(0, len(data), chunk):
            out += p.feed(data[i:i + chunk])
        out += p.close()
    except XmlDumpError:
        return
    for line in out:
        decode(line)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40), st.text(max_size=20))
def test_fuzz_names_and_values(host, metric, val):
    """Any host/metric name and VAL text: a valid line or a counted bad value."""
    from xml.sax.saxutils import quoteattr
    body = (f'<HOST NAME={quoteattr(host or "h")} REPORTED="5" TN="1" TMAX="20">'
            f'<METRIC NAME={quoteattr(metric or "m")} VAL={quoteattr(val)} TYPE="float"/>'
            f'<METRIC NAME={quoteattr(metric or "m")} VAL={quoteattr(val)} TYPE="string"/>'
            f'</HOST>')
    try:
        lines, stats = parse_dump(_grid(_cluster("c", body)), now=0)
    except XmlDumpError:
        return  # characters XML 1.0 does not allow
    for line in lines:
        decode(line)


def test_gmetad_summaries_per_grid_and_cluster():
    body = ('<HOSTS UP="3" DOWN="1" SOURCE="gmetad"/>'
            '<METRICS NAME="bytes_in" SUM="10.5" NUM="3" TYPE="double" UNITS="bytes/sec" '
            'SLOPE="both" SOURCE="gmond"><EXTRA_DATA/></METRICS>'
            '<METRICS NAME="broken" SUM="n/a" NUM="3" TYPE="double"/>')
    lines, stats = parse_dump(_grid(body + _cluster("c", body), grid="g"), now=0)
    got = {decode(x).series: decode(x) for x in lines}
    assert got["ganglia.g._grid_summary.hosts_up;grid=g"].value == 3
    assert got["ganglia.c._summary.hosts_down;grid=g"].value == 1
    s = got["ganglia.c._summary.bytes_in.sum;grid=g"]
    assert (s.value, s.timestamp, s.meta["unit"]) == (10.5, 2000, "bytes/sec")
    assert got["ganglia.c._summary.broken.num;grid=g"].value == 3
    assert "ganglia.c._summary.broken.sum;grid=g" not in got
    assert stats["bad_values"] == 2 and stats["summaries"] == 10


@pytest.mark.parametrize("tn,tmax,stale", [
    ("9", "10", False), ("10", "9", True), ("60", "60", False), ("61", "60", True),
    ("100", "0", False),       # TMAX 0: no limit
    ("abc", "60", False),      # not a number: kept (gmond never prints that)
    ("0", "", False)])
def test_metric_staleness_rule(tn, tmax, stale):
    xml = _grid(_cluster("c", _host("h", metrics=_metric("m", "007", "uint32", tn=tn,
                                                             tmax=tmax))))
    lines, stats = parse_dump(xml, now=0)
    got = [decode(x) for x in lines if decode(x).path == "ganglia.c.h.m"]
    assert stats["stale_metrics"] == int(stale)
    assert [g.value for g in got] == ([] if stale else [7.0])


def test_unknown_elements_are_ignored_and_a_flood_stays_bounded():
    """Elements gmond 3.7 does not write (a newer version might) are skipped, however many;
    a flood of them inside one host does not pile up the parser's bookkeeping."""
    unknown = "<NEW_THING/>" * 1000
    flood = "<EXTRA_DATA>" + '<EXTRA_ELEMENT NAME="a" VAL="b"/>' * 300_000 + "</EXTRA_DATA>"
    xml = _grid(_cluster("c", _host("h", metrics=_metric("m", 1) + unknown + flood
                                    + _metric("n", 2))))
    p = XmlDumpParser(0)
    lines = []
    for i in range(0, len(xml), 65536):
        lines += p.feed(xml[i:i + 65536])
        assert p.path == "exact"   # the fast path reads no unknown element
        assert len(p._exact._ends) < 200_000
    lines += p.close()
    assert sorted(decode(x).path for x in lines) == [
        "ganglia.c.h.heartbeat", "ganglia.c.h.m", "ganglia.c.h.n"]


def test_attlist_default_amplification_is_not_expanded():
    """An ATTLIST default of 2 MB would be copied into each of 300,000 METRIC elements
    (600 GB of string copies, minutes of CPU) if defaults were reported; they are not."""
    big = "x" * 2_000_000
    doctype = f'<!DOCTYPE GANGLIA_XML [<!ATTLIST METRIC PAD CDATA "{big}">]>'
    metrics = '<METRIC NAME="m" VAL="1" TYPE="float"/>' * 300_000
    xml = (doctype + f'<GANGLIA_XML>{metrics}</GANGLIA_XML>').encode()
    import time
    t = time.process_time()
    lines, stats = parse_dump(xml, now=0)
    assert lines == []                       # metrics outside any HOST: nothing to publish
    assert time.process_time() - t < 20      # about 1 s; unprotected, over a minute


def test_huge_names_and_many_strings_still_make_valid_lines():
    """Names of 5,000 characters and 500 string metrics: every line stays inside the line
    syntax (series <= 4096), long names stay distinct, the tags left out are counted."""
    long_a, long_b = "a" * 5000, "a" * 4999 + "b"
    strings = "".join(_metric(f"s{i:03d}", "v" * 50, "string") for i in range(500))
    xml = _grid(_cluster("c" * 5000, _host("h" * 5000, metrics=_metric(long_a, 1)
                                            + _metric(long_b, 2) + strings)))
    lines, stats = parse_dump(xml, now=0)
    got = [decode(x) for x in lines]
    assert len({g.path for g in got}) == 3
    assert all(len(g.series) < 4096 for g in got)
    assert stats["tags_dropped"] > 400


@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr),
                 st.tuples(st.floats(-1e15, 1e15), st.integers(0, 12)).map(
                     lambda t: f"{t[0]:.{t[1]}f}"),
                 st.from_regex(r"-?[0-9]{1,17}(\.[0-9]{0,17})?", fullmatch=True)))
@settings(max_examples=300, deadline=None)
def test_float_vals_print_as_format_number(text):
    """The parser passes a VAL's own text through when it is already canonical (the fast
    path): the line's number must be what format_number(float(VAL)) gives, whatever VAL."""
    from monbus.core.line import format_number
    lines, stats = parse_dump(_grid(_cluster("c", _host("h", metrics=_metric("m", text)))), 0)
    got = [ln.split(" ")[1] for ln in lines if ln.startswith("ganglia.c.h.m;")]
    if text.isdigit() and len(text) < 16:
        assert got == [text]  # gmond's integers pass through as printed
    else:
        assert got == [format_number(float(text))]


def test_unknown_encoding_in_the_declaration_is_a_clear_error():
    """A corrupted encoding name (found by the fuzz test: ISO -> ASO) is an XmlDumpError
    quoting it, not pyexpat's LookupError escaping the parser."""
    data = DUMP[:30] + b"A" + DUMP[31:]
    for chunk in (1, len(data)):
        p = XmlDumpParser(0)
        with pytest.raises(XmlDumpError, match="ASO-8859-1"):
            for i in range(0, len(data), chunk):
                p.feed(data[i:i + chunk])
            p.close()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("slope,mtype", [("positive", "counter"), ("derivative", "derive"),
                                         ("both", "gauge"), ("zero", "gauge"), ("", "gauge")])
def test_slopes_map_to_mtypes(slope, mtype, fast):
    """gmond 3.7 writes SLOPE="derivative" for `gmetric -s derivative` (its DTD does not
    list it; expat does not validate): a derive, as a positive slope is a counter."""
    xml = _grid(_cluster("c", _host("h", metrics=_metric("m", 17, "uint32", slope=slope))))
    p = XmlDumpParser(0, fast=fast)
    lines = p.feed(xml) + p.close()
    assert p.path == ("fast" if fast else "exact")
    ln = {decode(x).path: decode(x) for x in lines}["ganglia.c.h.m"]
    assert ln.meta["mtype"] == mtype and ln.meta.get("slope", "") == slope
