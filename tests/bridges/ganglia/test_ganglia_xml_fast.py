"""The XML dump's fast path (one regex match per METRIC) against the exact expat path: the
same lines, stats and errors for real dumps, generated dumps and corrupted ones; the fast
path reads what gmond and gmetad write and hands everything else to expat."""
from __future__ import annotations

import gzip
import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monbus.bridges.ganglia.naming import Namer
from monbus.bridges.ganglia.xmldump import XmlDumpError, XmlDumpParser

DATA = Path(__file__).resolve().parents[2] / "data" / "ganglia"
REAL = {p.name: p.read_bytes() for p in sorted(DATA.glob("*.xml"))}
GMOND_DUMP = REAL["gmond372_local_xml_dump.xml"]
DECL = GMOND_DUMP[:GMOND_DUMP.index(b"?>") + 2].decode()
DOCTYPE = GMOND_DUMP[len(DECL):GMOND_DUMP.index(b"<GANGLIA_XML ")].decode().strip()


def run(data: bytes, fast: bool, chunk: int | None = None):
    """(outcome, parser): outcome is ("ok", lines, stats, errors) or ("error", message,
    lines handed out before the error)."""
    p = XmlDumpParser(0, Namer(), fast=fast)
    out: list[str] = []
    step = chunk or max(1, len(data))
    try:
        for i in range(0, len(data), step):
            out += p.feed(data[i:i + step])
        out += p.close()
    except XmlDumpError as e:
        return ("error", str(e), out), p
    return ("ok", out, dict(p.stats), list(p.errors)), p


def assert_same(data: bytes, chunk: int | None = None):
    """The fast path (with its fallback) gives what the exact path gives; returns the
    fast run's parser (its `path` says whether the fast path answered)."""
    fast, p = run(data, True, chunk)
    exact, q = run(data, False, chunk)
    assert q.path == "exact"
    if exact[0] == "ok":
        assert fast == exact, p.fallback
    else:
        # the same refusal; the lines handed out before it are the same whole hosts, as far
        # as both got (the fast path hands out nothing while it waits for more bytes, and
        # nothing of a replay that the exact path refuses)
        assert fast[:2] == exact[:2], p.fallback
        short, long = sorted((fast[2], exact[2]), key=len)
        assert long[:len(short)] == short
    return p


@pytest.mark.parametrize("name", sorted(REAL))
@pytest.mark.parametrize("chunk", [None, 1, 7, 100, 4096])
def test_real_dumps_take_the_fast_path_with_the_same_lines(name, chunk):
    p = assert_same(REAL[name], chunk)
    assert p.path == "fast", p.fallback
    assert p.stats["metrics"] + p.stats["summaries"] > 25


def test_real_dump_gzipped_takes_the_fast_path():
    data = gzip.compress(REAL["gmetad372_local_grid_xml_dump.xml"])
    p = assert_same(data, 1000)
    assert p.path == "fast" and p.stats["bytes"] == len(REAL["gmetad372_local_grid_xml_dump.xml"])


def _after_first_host(dump: bytes, insert: bytes) -> bytes:
    cut = dump.index(b"</HOST>") + len(b"</HOST>")
    return dump[:cut] + insert + dump[cut:]


# what the fast path does not read: each goes to the exact path, with the same result
NOT_CANONICAL = [
    (b"<!-- a comment -->", "ok"),
    (b"<?pi data?>", "ok"),
    (b"<NEW_ELEMENT A='1'/>", "ok"),                      # an element 3.7 does not write
    (b'<METRIC VAL="1" NAME="m" TYPE="float"/>', "ok"),   # another attribute order
    (b"<![CDATA[ x ]]>", "ok"),
    (b"text", "ok"),
    (b"&#32;", "ok"),                                     # a character reference as text
    (b"</CLUSTER>", "error"),                             # mismatched end tag
    (b"<HOST NAME='a' NAME='b'>", "error"),               # repeated attribute
    (b"<METRIC NAME=\"m\" VAL=\"\x01\" TYPE=\"float\" UNITS=\"\" TN=\"0\" TMAX=\"0\" "
     b"DMAX=\"0\" SLOPE=\"both\"/>", "error"),            # a control character
    (b"&undefined;", "error"),
]


@pytest.mark.parametrize("insert,outcome", NOT_CANONICAL)
@pytest.mark.parametrize("chunk", [None, 1, 500])
def test_anything_else_goes_to_the_exact_path(insert, outcome, chunk):
    data = _after_first_host(GMOND_DUMP, insert)
    p = assert_same(data, chunk)
    assert p.path == "exact" and p.fallback
    assert run(data, False)[0][0] == outcome


def test_lines_handed_out_before_the_fallback_are_not_given_twice():
    """Two chunks: the fast path hands out the first host (when the second starts), then
    meets a comment; the exact path parses from the first byte and hands out the rest."""
    cut = GMOND_DUMP.index(b">", GMOND_DUMP.index(b"<HOST ", GMOND_DUMP.index(b"</HOST>"))) + 1
    data = GMOND_DUMP[:cut] + b"<!-- x -->" + GMOND_DUMP[cut:]
    p = XmlDumpParser(0, Namer())
    first = p.feed(data[:cut])
    assert p.path == "fast" and first
    rest = p.feed(data[cut:]) + p.close()
    assert p.path == "exact"
    assert first + rest == run(GMOND_DUMP, False)[0][1]


@pytest.mark.parametrize("vtype", ["string", "float"])
@pytest.mark.parametrize("val,units,path", [
    ('"a&amp;b"', '""', "fast"),            # gmond escapes a string VAL: & < > " '
    ('"&lt;&gt;&quot;&apos;&amp;lt;"', '""', "fast"),
    ('"1&lt;2"', '""', "fast"),
    ('"1"', '"a&amp;b"', "exact"),          # a reference anywhere else
    ('"&#65;"', '""', "exact"),             # character references
    ('"&#0;"', '""', "exact"),
    ('"&#x41;"', '""', "exact"),
    ('"&nbsp;"', '""', "exact"),            # an undeclared entity
    ("'1'", '""', "exact"),                 # single quotes
    ('"1" VAL="2"', '""', "exact"),         # a repeated attribute
    ('"a\tb"', '""', "exact"),               # a TAB (expat makes it a space)
])
def test_values_and_references(val, units, path, vtype):
    metric = (f'<METRIC NAME="m" VAL={val} TYPE="{vtype}" UNITS={units} TN="0" TMAX="60" '
              f'DMAX="0" SLOPE="both"/>')
    p = assert_same(_doc(_cluster("c", _host("h", metric))))
    assert p.path == path, p.fallback


@pytest.mark.parametrize("prolog", [
    '<?xml version="1.0" encoding="US-ASCII"?>',   # encodings other than ISO-8859-1, UTF-8
    "<?xml version='1.0'?>",
    '<?xml version="1.1"?>',
    '\ufeff',                                      # a byte order mark
    '<!DOCTYPE GANGLIA_XML [<!ATTLIST METRIC NAME NMTOKEN #REQUIRED>]>',  # another DOCTYPE
    '<!DOCTYPE GANGLIA_XML [<!ENTITY e "x">]>',
    DOCTYPE.replace("CDATA", "NMTOKEN", 1),
])
def test_prologs_the_fast_path_does_not_read(prolog):
    body = _cluster("c", _host("h", _metric("m", "1")))
    p = assert_same((prolog + f'<GANGLIA_XML VERSION="3.7.2" SOURCE="gmond">{body}'
                     f"</GANGLIA_XML>").encode("utf-8"))
    assert p.path == "exact"


@pytest.mark.parametrize("prolog", ["", DECL, DECL + "\n" + DOCTYPE + "\n",
                                    '<?xml version="1.0" encoding="UTF-8"?>', DOCTYPE])
def test_prologs_the_fast_path_reads(prolog):
    body = _cluster("c", _host("h\u00e9", _metric("m\u00e9", "1")))
    enc = "iso-8859-1" if "ISO-8859-1" in prolog else "utf-8"
    p = assert_same((prolog + f'<GANGLIA_XML VERSION="3.7.2" SOURCE="gmond">{body}'
                     f"</GANGLIA_XML>\n").encode(enc))
    assert p.path == "fast", p.fallback


# --- generated dumps --------------------------------------------------------------------------
def _attrs(pairs, quote=quoteattr) -> str:
    return "".join(f" {k}={quote(v)}" for k, v in pairs)


def _metric(name, val, vtype="float", units="", tn="1", tmax="60", slope="both", extra=1,
            order=None, source=False, empty=False):
    pairs = [("NAME", name), ("VAL", val), ("TYPE", vtype), ("UNITS", units), ("TN", tn),
             ("TMAX", tmax), ("DMAX", "0"), ("SLOPE", slope)]
    if source:
        pairs.append(("SOURCE", "gmond"))
    if order is not None:
        pairs = [pairs[i] for i in order if i < len(pairs)]
    if empty:
        return f"<METRIC{_attrs(pairs)}/>\n"
    ex = "".join(f'<EXTRA_ELEMENT NAME="GROUP" VAL={quoteattr(name)}/>\n' for _ in range(extra))
    return f"<METRIC{_attrs(pairs)}>\n<EXTRA_DATA>\n{ex}</EXTRA_DATA>\n</METRIC>\n"


def _host(name, metrics, tn="3", tmax="20", gmetad=False):
    pairs = [("NAME", name), ("IP", "10.0.0.1"), ("TAGS", ""), ("REPORTED", "1990"),
             ("TN", tn), ("TMAX", tmax), ("DMAX", "0"), ("LOCATION", "unspecified"),
             ("GMOND_STARTED", "0")]
    if gmetad:  # gmetad writes TAGS last
        pairs = pairs[:2] + pairs[3:] + pairs[2:3]
    return f"<HOST{_attrs(pairs)}>\n{metrics}</HOST>\n"


def _cluster(name, body, localtime="2000"):
    return (f'<CLUSTER NAME={quoteattr(name)} LOCALTIME="{localtime}" OWNER="unspecified" '
            f'LATLONG="unspecified" URL="unspecified">\n{body}</CLUSTER>\n')


def _grid(name, body):
    return f'<GRID NAME={quoteattr(name)} AUTHORITY="http://g/" LOCALTIME="2100">\n{body}</GRID>\n'


def _summary(metric):
    return ('<HOSTS UP="2" DOWN="1" SOURCE="gmetad"/>\n'
            f'<METRICS NAME={quoteattr(metric)} SUM="10.5" NUM="3" TYPE="double" UNITS=" " '
            'SLOPE="both" SOURCE="gmond">\n<EXTRA_DATA>\n</EXTRA_DATA>\n</METRICS>\n')


def _doc(body, prolog=None, source="gmond"):
    prolog = DECL + "\n" + DOCTYPE + "\n" if prolog is None else prolog
    return (prolog + f'<GANGLIA_XML VERSION="3.7.2" SOURCE="{source}">\n{body}'
            f"</GANGLIA_XML>\n").encode("iso-8859-1", "xmlcharrefreplace")


_names = st.one_of(st.sampled_from(["cpu_user", "a.b", "a b", "a_b", "load", "", "x" * 30]),
                   st.text(st.characters(blacklist_categories=("Cs",), max_codepoint=0x2ff),
                           max_size=8))
_vals = st.one_of(st.integers(-10**17, 10**17).map(str),
                  st.floats().map(repr),
                  st.tuples(st.floats(-1e6, 1e6), st.integers(0, 6)).map(
                      lambda t: f"{t[0]:.{t[1]}f}"),
                  st.sampled_from(["007", "0.0", "1e5", " 1", "nan", "-0", "0.00001"]),
                  st.text(max_size=6))
_small = st.sampled_from(["0", "1", "5", "20", "59", "60", "61", "90", "100", "abc", ""])


@st.composite
def _metrics(draw, canonical):
    out = []
    for _ in range(draw(st.integers(0, 4))):
        kw = dict(vtype=draw(st.sampled_from(["float", "uint32", "string", "double", "int8",
                                              "timestamp"])),
                  units=draw(st.sampled_from(["", " ", "KB", "bytes/sec", "%"])),
                  tn=draw(_small), tmax=draw(_small),
                  slope=draw(st.sampled_from(["both", "zero", "positive", "negative",
                                              "unspecified", "derivative", ""])),
                  extra=draw(st.integers(0, 3)), source=draw(st.booleans()),
                  empty=draw(st.booleans()))
        if not canonical and draw(st.integers(0, 4)) == 0:
            kw["order"] = draw(st.permutations(range(9)))
        out.append(_metric(draw(_names), draw(_vals), **kw))
    return "".join(out)


@st.composite
def _clusters(draw, canonical, depth=0):
    parts = []
    for _ in range(draw(st.integers(1, 2))):
        if depth < 2 and draw(st.integers(0, 3)) == 0:
            parts.append(_grid(draw(_names), draw(_clusters(canonical, depth + 1))))
            continue
        hosts = "".join(_host(draw(_names) or "h", draw(_metrics(canonical)),
                              tn=draw(st.sampled_from(["3", "80", "81", "x"])),
                              gmetad=draw(st.booleans()))
                        for _ in range(draw(st.integers(0, 3))))
        if draw(st.integers(0, 4)) == 0:
            hosts = _summary(draw(_names) or "m") + hosts
        parts.append(_cluster(draw(_names) or "c", hosts,
                              localtime=draw(st.sampled_from(["2000", "0", "x"]))))
    if depth and draw(st.booleans()):
        parts.insert(0, _summary("m"))
    return "".join(parts)


_ODD = ["<!-- c -->", "<?pi x?>", "<NEW/>", "text", "&amp;", "<![CDATA[x]]>", "</HOST>",
        "<HOST NAME='x'>", "\x01", "<METRIC NAME=\"m\" VAL=\"1\" TYPE=\"float\"/>", "&#233;"]


@st.composite
def dumps(draw):
    """(bytes, canonical): a dump as gmond or gmetad writes it, or, if not canonical, one
    with odd attribute orders, escaped names, comments, unknown elements or garbage put in."""
    canonical = draw(st.booleans())
    body = draw(_clusters(canonical))
    if draw(st.booleans()):
        body = _grid(draw(_names) or "g", body)
    doc = _doc(body, source="gmetad")
    if not canonical:
        for _ in range(draw(st.integers(1, 2))):
            pos = draw(st.integers(0, len(doc)))
            doc = doc[:pos] + draw(st.sampled_from(_ODD)).encode("latin-1") + doc[pos:]
    return doc, canonical


@settings(max_examples=400, deadline=None)
@given(dumps(), st.sampled_from([None, 1, 13, 200, 4096]))
def test_generated_dumps_fast_equals_exact(case, chunk):
    data, canonical = case
    p = assert_same(data, chunk)
    if canonical and not re.search(rb"[&\x00-\x08\x0b\x0c\x0e-\x1f]|='", data):
        # names and values with '&', '<', TAB, CR or LF are escaped as references and
        # those with '"' single-quoted, which only the exact path reads (and other control
        # characters are not XML); the rest is the fast path's
        assert p.path == "fast", p.fallback


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(REAL)), st.integers(0, 20_000), st.binary(min_size=1, max_size=8),
       st.sampled_from([None, 1, 97, 5000]))
def test_corrupted_real_dumps_fast_equals_exact(name, pos, junk, chunk):
    """A real dump with bytes overwritten anywhere: the same lines or the same refusal."""
    dump = REAL[name]
    pos %= len(dump)
    assert_same(dump[:pos] + junk + dump[pos + len(junk):], chunk)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(REAL)), st.integers(0, 20_000))
def test_truncated_real_dumps_are_refused_like_the_exact_path(name, cut):
    dump = REAL[name]
    cut %= len(dump.rstrip())
    assert_same(dump[:cut], 512)


def test_generator_writes_what_gmond_writes():
    """The generated canonical form is the real one: a generated metric has the bytes of a
    METRIC of the real dump."""
    real = GMOND_DUMP.decode("iso-8859-1")
    made = _metric("mem_shared", "0", units="KB", tmax="180", extra=0)
    assert made.split(">")[0] + ">" in real


@pytest.mark.parametrize("second", [
    '<EXTRA_DATA>\n<EXTRA_ELEMENT NAME="GROUP" VAL="other"/>\n</EXTRA_DATA>\n',   # differs
    '<EXTRA_DATA>\n<EXTRA_ELEMENT NAME="GROUP" VAL="g"/>\n</EXTRA_DATA>\n',       # the same
    '<EXTRA_DATA>\n<EXTRA_ELEMENT NAME="GROUP" VAL="g"/><!-- c -->\n</EXTRA_DATA>\n',
    '<EXTRA_DATA>\n<EXTRA_ELEMENT NAME="GROUP" VAL="g"/>\n</EXTRA_DATA>\n</METRIC>',  # twice
    '<EXTRA_DATA>\n<EXTRA_ELEMENT NAME="GROUP" VAL="g"/>\n',                      # unclosed
])
@pytest.mark.parametrize("chunk", [None, 1, 61])
def test_a_metric_rest_seen_before_is_compared_whole(second, chunk):
    """The fast path remembers the text of a METRIC's EXTRA_DATA and end tag by metric name
    and compares the next host's with it: anything else there is matched (or refused)
    afresh."""
    start = ('<METRIC NAME="m" VAL="1" TYPE="float" UNITS="" TN="1" TMAX="60" DMAX="0" '
             'SLOPE="both">\n')
    first = (start + '<EXTRA_DATA>\n<EXTRA_ELEMENT NAME="GROUP" VAL="g"/>\n</EXTRA_DATA>\n'
             '</METRIC>\n')
    data = _doc(_cluster("c", _host("a", first) + _host("b", start + second + "</METRIC>\n")
                         + _host("c", first)))
    assert_same(data, chunk)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.from_regex(r"-?[0-9]{0,18}(\.[0-9]{0,18})?", fullmatch=True),
                 st.floats().map(repr), st.floats().map(str), st.text(max_size=20)),
       st.sampled_from(["float", "uint32", "string"]))
def test_any_val_text_gives_the_exact_paths_number(val, vtype):
    """The fast path tells canonical numbers (passed through as written) from the rest
    (through float()) inside its regex: the same lines as the exact path's test."""
    data = _doc(_cluster("c", _host("h", _metric("m", val, vtype))))
    p = assert_same(data)
    if not re.search(rb"[&\x00-\x08\x0b\x0c\x0e-\x1f]|='", data):  # nothing escaped
        assert p.path == "fast", p.fallback


def test_a_long_run_without_a_token_end_is_handed_over_not_piled_up():
    """Megabytes with no '>' (a value that never ends): the fast path hands the response to
    the exact path once more than a token's worth is pending, instead of gluing chunk after
    chunk to a growing string until the size limit (quadratic)."""
    head = GMOND_DUMP[:GMOND_DUMP.index(b"<METRIC ")] + b'<METRIC NAME="'
    p = XmlDumpParser(0, Namer())
    p.feed(head)
    with pytest.raises(XmlDumpError, match="unclosed token"):
        for _ in range(2 << 20 >> 16):           # 2 MB in 64 kB chunks
            p.feed(b"x" * 65536)
            assert p.path == "exact" or len(p._fast._text) <= (1 << 18)
        p.close()
    assert p.path == "exact" and "no token" in p.fallback
