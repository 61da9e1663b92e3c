"""Pure parts: the rate transform, the plaintext/pickle decoders (fuzzed), the formatter and
the journal (spool) on its own."""
from __future__ import annotations

import pickle
import struct

import pytest
from hypothesis import given, settings, strategies as st

from monbus.bridges.graphite.forward import Formatter, fold_tags
from monbus.bridges.graphite.journal import Journal, MemoryJournal
from monbus.bridges.graphite.plaintext import (CarbonError, LineBuffer, PickleFrames,
                                               decode_datagram, decode_pickle,
                                               decode_plaintext)
from monbus.core.pattern import Matcher
from monbus.core.rates import RateConverter
from monbus.core.line import LineError

# --- rates -------------------------------------------------------------------------------


def test_rate_basic_and_first_sample():
    r = RateConverter()
    assert r.feed("s", 100, 0) is None            # first sample: no rate
    assert r.feed("s", 700, 60).value == 10.0
    assert r.stats["first"] == 1 and r.stats["rates"] == 1


def test_counter32_wrap():
    r = RateConverter()
    r.feed("if", 2**32 - 1000, 0)
    got = r.feed("if", 500, 10)                   # wrapped past 2**32
    assert got.value == 150.0 and r.stats["wraps"] == 1


def test_counter64_wrap():
    r = RateConverter()
    r.feed("if", 2**64 - 2**40, 0)
    assert r.feed("if", 2**20, 1).value == 2**40 + 2**20


def test_reboot_is_a_reset_not_a_spike():
    r = RateConverter()
    r.feed("if", 3_000_000_000_000, 0)            # a 64-bit counter well below the top
    assert r.feed("if", 1234, 60) is None         # device rebooted
    assert r.stats["resets"] == 1
    assert r.feed("if", 1834, 120).value == 10.0  # and rates resume from the new base


def test_counter32_reset_low_value_is_not_a_wrap():
    r = RateConverter()
    r.feed("if", 1_000_000, 0)                    # far from 2**32: a drop to 5 is a reset
    assert r.feed("if", 5, 60) is None and r.stats["resets"] == 1


def test_derive_decrease_is_a_reset():
    r = RateConverter()
    r.feed("d", 2**32 - 10, 0)
    assert r.feed("d", 5, 1, "derive") is None and r.stats["resets"] == 1


def test_max_rate_drops_and_counts():
    r = RateConverter(max_rate=100)
    r.feed("s", 0, 0)
    assert r.feed("s", 10_000, 1) is None and r.stats["over_max"] == 1
    r.feed("w", 2**32 - 10, 0)
    assert r.feed("w", 10**6, 1) is None           # a wrap over the max is a reset


def test_time_not_advancing():
    r = RateConverter()
    r.feed("s", 1, 10)
    assert r.feed("s", 2, 10) is None and r.stats["not_advancing"] == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(1, 600)), min_size=2,
                max_size=30), st.sampled_from(["counter", "derive"]),
       st.one_of(st.none(), st.floats(1, 1e12)))
def test_rates_never_negative_or_over_max(samples, mtype, max_rate):
    r = RateConverter(max_rate)
    ts = 0
    prev = None
    for value, dt in samples:
        ts += dt
        got = r.feed("s", float(value), float(ts), mtype)
        if got is not None:
            assert got.value >= 0
            if max_rate is not None:
                assert got.value <= max_rate
            if value < prev:   # a decrease became a rate: only as a plausible wrap
                assert mtype == "counter" and got.value * dt < 2**63
        prev = value


# --- plaintext / pickle ----------------------------------------------------------------------


def test_plaintext_carbon_quirks():
    assert decode_plaintext("a.b 4.2e-10 42", 0).value == 4.2e-10
    assert decode_plaintext("a.b\t1   -1", 1700000000.5).timestamp == 1700000000
    assert decode_plaintext("x 1 2", 0, "graphite.h.").series == "graphite.h.x"
    with pytest.raises(CarbonError, match="NaN"):
        decode_plaintext("a.b nan 1", 0)
    with pytest.raises(CarbonError, match="finite"):
        decode_plaintext("a.b inf 1", 0)
    with pytest.raises(CarbonError, match="<source>.<host>"):
        decode_plaintext("single 1 2", 0)
    with pytest.raises(CarbonError, match="3 fields"):
        decode_plaintext("a.b 1", 0)


def test_line_buffer_reassembles_and_bounds():
    b = LineBuffer(max_line=100)
    assert b.feed(b"a.b 1 ") == b""
    assert b.feed(b"2\nc.d 3") == b"a.b 1 2\n"
    assert b.feed(b" 4\n") == b"c.d 3 4\n"
    assert b.feed(b"x" * 200) == b"" and b.overlong == 1


def test_pickle_shapes():
    # (protocol 2 would pickle bytes through the global _codecs.encode, which is refused)
    ok = pickle.dumps([("a.b", (1700000000, 1.5)), (b"c.d", (1700000001, 2))], protocol=4)
    errs: list = []
    got = decode_pickle(ok, 0, "", errs)
    assert [x.carbon() for x in got] == ["a.b 1.5 1700000000", "c.d 2 1700000001"]
    bad = pickle.dumps([("a.b", (1, 2, 3)), ("a b.c", (1, 2)), ("e.f", (True, 1))])
    assert decode_pickle(bad, 0, "", errs) == [] and len(errs) == 3
    with pytest.raises(CarbonError, match="not allowed"):
        decode_pickle(pickle.dumps([{1, 2}.__class__]), 0)
    with pytest.raises(CarbonError, match="not a list"):
        decode_pickle(pickle.dumps({"a": 1}), 0)


def test_pickle_frames():
    f = PickleFrames(max_frame=1000)
    p = pickle.dumps([])
    frame = struct.pack("!L", len(p)) + p
    assert f.feed(frame[:3]) == [] and f.feed(frame[3:] + frame) == [p, p]
    with pytest.raises(CarbonError, match="exceeds"):
        f.feed(struct.pack("!L", 5000))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_datagram_never_raises(data):
    errors: list = []
    for line in decode_datagram(data, 1700000000.0, "", errors):
        assert line.carbon().count(" ") == 2
    assert all(isinstance(e, LineError) for e in errors)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_pickle_never_raises_anything_else(data):
    try:
        decode_pickle(data, 0.0, "", [])
    except CarbonError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5)
                    | st.binary(max_size=5) | st.integers(),
                    lambda c: st.lists(c, max_size=3) | st.tuples(c, c), max_leaves=10))
def test_fuzz_pickle_structures(obj):
    errors: list = []
    try:
        lines = decode_pickle(pickle.dumps(obj), 0.0, "", errors)
    except CarbonError:
        return
    assert all(isinstance(e, LineError) for e in errors)
    for line in lines:
        assert line.carbon().count(" ") == 2


# --- formatter ------------------------------------------------------------------------------


BODY = (b"app.web01.req;env=prod;dc=par 5 1700000000 mtype=gauge unit=req%2Fs\n"
        b"app.web01.if 2000 1700000000 mtype=counter\n"
        b"app.web01.if 2600 1700000060 mtype=counter")


def test_formatter_fast_path_strips_annotations():
    f = Formatter()
    assert f.fast
    assert f.fast_body(BODY) == (b"app.web01.req;env=prod;dc=par 5 1700000000\n"
                                 b"app.web01.if 2000 1700000000\n"
                                 b"app.web01.if 2600 1700000060\n")


@pytest.mark.parametrize("tags,first", [
    ("keep", "pre.app.web01.req;env=prod;dc=par 5 1700000000"),
    ("drop", "pre.app.web01.req 5 1700000000"),
    ("fold", "pre.app.web01.req.dc.par.env.prod 5 1700000000")])
def test_formatter_tags_prefix_rates(tags, first):
    f = Formatter(tags, "pre", RateConverter())
    out = [t for _, t in f.lines(BODY)]
    assert out == [first, "pre.app.web01.if 10 1700000060"]
    assert f.stats["no_rate_lines"] == 1


def test_formatter_counts_bad_lines():
    f = Formatter("drop")
    assert f.lines(b"bad line\napp.h.x 1 2") == [("app.h.x", "app.h.x 1 2")]
    assert f.stats["bad_lines"] == 1 and "bad line" in str(f.errors[0])


def test_fold_tags_sanitises():
    assert fold_tags("a.b;k=v.1;j=x y") == "a.b.j.x_y.k.v_1"


# --- journal ------------------------------------------------------------------------------


def test_journal_persists_cursor_and_replays(tmp_path):
    j = Journal(str(tmp_path), max_bytes=10_000, segment_bytes=100)
    for i in range(20):
        j.append(f"a.b {i} {i}\n".encode())
    token, data = j.peek(30)
    assert data.startswith(b"a.b 0 0\n") and data.endswith(b"\n")
    j.commit(token, data.count(b"\n"))
    j.close()
    j2 = Journal(str(tmp_path), max_bytes=10_000, segment_bytes=100)   # a restart
    rest = b""
    while (c := j2.peek(1000)) is not None:
        rest += c[1]
        j2.commit(c[0], c[1].count(b"\n"))
    assert (data + rest).decode().splitlines() == [f"a.b {i} {i}" for i in range(20)]
    assert j2.replayed_lines == 20 - data.count(b"\n") and j2.pending_bytes == 0


def test_journal_bound_drops_oldest_and_counts(tmp_path):
    j = Journal(str(tmp_path), max_bytes=1000, segment_bytes=200)
    for i in range(200):
        j.append(f"x.y {i} {i}\n".encode())
    assert j.pending_bytes <= 1000
    assert j.dropped_lines > 0
    lines = []
    while (c := j.peek(100000)) is not None:   # one segment at a time
        lines += c[1].decode().splitlines()
        j.commit(c[0], c[1].count(b"\n"))
    assert lines[-1] == "x.y 199 199"
    assert lines == [f"x.y {i} {i}" for i in range(200 - len(lines), 200)]
    assert j.dropped_lines + len(lines) == 200


def test_journal_cuts_torn_tail(tmp_path):
    j = Journal(str(tmp_path))
    j.append(b"a.b 1 1\n")
    j.close()
    seg = next(tmp_path.glob("*.seg"))
    with open(seg, "ab") as f:
        f.write(b"a.b 2 ")               # killed mid-write (power loss)
    j2 = Journal(str(tmp_path))
    assert j2.peek(100)[1] == b"a.b 1 1\n"


def test_memory_journal_bound():
    j = MemoryJournal(max_bytes=30)
    for i in range(10):
        j.append(b"a.b 1 1\n")
    assert j.dropped_lines == 7 and j.peek(100)[1] == b"a.b 1 1\n" * 3


# --- render API -------------------------------------------------------------------------------


def test_render_state_keeps_high_water_mark():
    from monbus.bridges.graphite.render import RenderState
    st = RenderState("graphite.gw")
    body = b'[{"target": "a.b", "datapoints": [[1, 10], [null, 20], [3.5, 30]]}]'
    assert [(x.series, x.value, x.timestamp) for x in st.new_points(body)] == [
        ("graphite.gw.a.b", 1.0, 10.0), ("graphite.gw.a.b", 3.5, 30.0)]
    assert st.new_points(body) == []
    body2 = b'[{"target": "a.b", "datapoints": [[3.5, 30], [4, 40]]}]'
    assert [x.value for x in st.new_points(body2)] == [4.0]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["target", "datapoints", "tags"]), c, max_size=3),
    max_leaves=12).map(lambda o: __import__("json").dumps(o).encode()))
def test_fuzz_render_json(body):
    from monbus.bridges.graphite.render import RenderError, RenderState
    st_ = RenderState("graphite.gw")
    try:
        lines = st_.new_points(body)
    except RenderError:
        return
    for line in lines:
        assert line.series.startswith("graphite.gw.")


_token = st.sampled_from(["a.b", "a.b;t=v", "a", "a..b", "1", "-2.5", "1e3", "nan", "inf",
                          "1_0", "x", "", "mtype=counter", "a.b;t=", "٣", "0", "7.0", "-0",
                          "+3", ".5", "5.", "1" * 400, "a.b\r", "1e999"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_token, min_size=0, max_size=5).map(" ".join), max_size=8))
def test_fuzz_formatter_accepts_exactly_what_the_codec_accepts(rows):
    """The no-rates path skips the full decoder for speed; it must accept exactly the lines
    whose first three fields the core codec accepts, with the same values (annotations,
    which never reach carbon, are not checked there)."""
    from monbus.core.line import decode as core_decode
    body = "\n".join(rows).encode()
    got = Formatter("keep").lines(body)
    enc = Formatter("keep").encoded(body)
    assert [(n.decode(), t.decode()) for n, t in enc] == got
    # the replicate mode's builder gives the same bytes as joining the per-line results,
    # with every option that takes the per-line path, and counts the same
    for tags, prefix, patterns in (("keep", "", None), ("fold", "", None),
                                   ("drop", "p", ["a.*"]), ("fold", "x.y", ["a.b", "z.**"])):
        exact = Formatter(tags, prefix, matcher=Matcher(patterns) if patterns else None)
        fast = Formatter(tags, prefix, matcher=Matcher(patterns) if patterns else None)
        lines = exact.encoded(body)
        want = (b"\n".join([t for _, t in lines]) + b"\n" if lines else b"", len(lines))
        assert fast.encoded_data(body) == want
        assert fast.stats == exact.stats
    want = []
    for raw in rows:
        if not raw:
            continue
        try:
            line = core_decode(" ".join(raw.split(" ", 3)[:3]))
        except LineError:
            continue
        want.append((line.series, line.value, line.timestamp))
    assert [(s, float(t.split(" ")[1]), float(t.split(" ")[2])) for s, t in got] == want


def test_encoded_data_is_the_joined_per_line_output_on_typical_lines():
    body = "\n".join(
        f"bench.host{i % 7}.metric{i % 13}.value;dc=par;rack=r{i % 3} {i * 0.5} {1700000000 + i}"
        f" mtype=gauge unit=B" for i in range(2000)).encode()
    for tags, patterns in (("fold", None), ("drop", ["bench.*.metric1*.**"]),
                           ("keep", ["bench.host[1-3].**", "x.**"])):
        exact = Formatter(tags, "pre", matcher=Matcher(patterns) if patterns else None)
        fast = Formatter(tags, "pre", matcher=Matcher(patterns) if patterns else None)
        lines = exact.encoded(body)
        assert lines
        assert fast.encoded_data(body) == (b"\n".join(t for _, t in lines) + b"\n", len(lines))
        assert fast.stats == exact.stats


def test_encoded_edge_numbers_take_the_careful_path():
    f = Formatter("keep")
    body = ("a.b " + "1" * 400 + " 5\na.b 1e999 5\na.b 1 -0\na.b -0 5\na.b 2 7").encode()
    # as the core codec: an infinite value is bad, a timestamp of -0 is (just) not negative
    assert f.encoded(body) == [(b"a.b", b"a.b 1 -0"), (b"a.b", b"a.b -0 5"), (b"a.b", b"a.b 2 7")]
    assert f.stats["bad_lines"] == 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["a.b", "a.b;k=v", "a.b.c;x=y=z;k=v", "é.ü", "a.b;name=x"]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=0, max_value=4e9),
    st.dictionaries(st.sampled_from(["mtype", "unit", "output", "warn", "x_1"]),
                    st.text(max_size=12), max_size=4)), min_size=1, max_size=10))
def test_fuzz_fast_body_is_the_first_three_fields(rows):
    from monbus.core.line import Line, encode
    texts = []
    for series, value, ts, meta in rows:
        if "mtype" in meta:
            meta["mtype"] = "gauge"
        texts.append(encode(Line(series, value, ts, meta or None)))
    body = "\n".join(texts).encode()
    want = "".join(" ".join(t.split(" ")[:3]) + "\n" for t in texts).encode()

    def forwarded(f):   # what CarbonForwarder sends: the fast path, else the per-line one
        got = f.fast_body(body)
        if got is None:
            got = b"".join(t + b"\n" for _, t in f.encoded(body))
        return got
    assert forwarded(Formatter()) == want
    # with tags dropped and a prefix, the fast path gives what the per-line path gives
    for tags, prefix in (("drop", ""), ("keep", "pre"), ("drop", "pre.x")):
        f = Formatter(tags, prefix)
        assert f.fast
        slow = Formatter(tags, prefix).lines(body)
        assert forwarded(f) == "".join(t + "\n" for _, t in slow).encode()


def test_fast_body_takes_typical_lines_and_refuses_bad_ones():
    f = Formatter()
    good = b"a.b;k=v 1.5 1700000000 mtype=gauge unit=B\nc.d -2 1700000000.5"
    assert f.fast_body(good) == b"a.b;k=v 1.5 1700000000\nc.d -2 1700000000.5\n"
    for bad in (b"a.b x 1", b"single 1 2", b"a.b 1", b"a.b;k 1 2", b"a.b 1 2\n\nc.d 1 2",
                b"a\x01.b 1 2", b"a.b 1 -2"):
        assert f.fast_body(bad) is None, bad
    big = b"\n".join(b"a.b%d 1 %d" % (i, i) for i in range(40000))   # pieces of 256 KB
    assert f.fast_body(big) == big + b"\n"
    assert f.fast_body(big + b"\nbad") is None


@pytest.mark.parametrize("patterns,decided", [
    (["**"], True), (["collectd.web01"], True), (["collectd.web*.**"], True),
    (["collectd.*.**.**"], True), (["a.b", "c.{d,e}.**"], True), (["durable.**"], True),
    (["a*.**"], True), (["collectd.web01.cpu"], False), (["collectd.web*"], False),
    (["**.cpu"], False), (["a.b.c.**"], False), (["a.b.*"], False), (["a.**.x"], False),
    (["a.b", "x.y.z"], False)])
def test_decided_by_topic(patterns, decided):
    from monbus.bridges.graphite.forward import decided_by_topic
    assert decided_by_topic(patterns) == decided


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 40)),
    st.tuples(st.just("deliver"), st.integers(10, 400)),
    st.tuples(st.just("peek_only"), st.integers(10, 400)),
    st.tuples(st.just("restart"), st.just(0))), max_size=40))
def test_journal_against_a_model(tmp_path_factory, ops):
    """Random appends, deliveries, peeks whose commit never comes (a crash between send and
    commit) and restarts: lines first come out in the order written, and every line comes
    out at least once unless it is counted as dropped."""
    d = str(tmp_path_factory.mktemp("j"))
    j = Journal(d, max_bytes=600, segment_bytes=150)
    written, delivered, dropped = [], [], 0
    serial = 0
    for op, n in ops:
        if op == "append":
            lines = [f"s.h {serial + k} 1" for k in range(n)]
            serial += n
            j.append(("\n".join(lines) + "\n").encode())
            written += lines
        elif op in ("deliver", "peek_only"):
            c = j.peek(n)
            if c is not None:
                got = c[1].decode().splitlines()
                delivered += got
                if op == "deliver":
                    j.commit(c[0], len(got))
        else:
            dropped += j.dropped_lines
            j.close()
            j = Journal(d, max_bytes=600, segment_bytes=150)
    while (c := j.peek(1000)) is not None:
        got = c[1].decode().splitlines()
        delivered += got
        j.commit(c[0], len(got))
    dropped += j.dropped_lines
    firsts = list(dict.fromkeys(delivered))          # first delivery of each line, in order
    order = {x: i for i, x in enumerate(written)}
    assert [order[x] for x in firsts] == sorted(order[x] for x in firsts)
    # every line was delivered or counted as dropped (a line sent but dropped before its
    # commit may be both: the count errs on the side of reporting)
    assert len(written) - len(firsts) <= dropped <= len(written)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "ab", "*", "a*", "**", "{a,b}", "[ab]", "?"]),
                min_size=1, max_size=4).map(".".join),
       st.lists(st.sampled_from(["a", "b", "ab", "ba", "x"]), min_size=2, max_size=5)
       .map(".".join))
def test_fuzz_decided_by_topic_agrees_with_the_line_matcher(pattern, path):
    """Where the topic decides, matching the topic path gives the same answer as matching
    the whole path."""
    from monbus.bridges.graphite.forward import decided_by_topic
    from monbus.core.pattern import compile_pattern
    if decided_by_topic([pattern]):
        m = compile_pattern(pattern)
        assert m(".".join(path.split(".")[:2])) == m(path)


def test_no_check_trusts_the_bus():
    assert Formatter(check=False).fast_body(b"a.b x 1 unit=B") == b"a.b x 1\n"
    assert Formatter().fast_body(b"a.b x 1 unit=B") is None
