"""The C fast path of group_chunk (core/_fastline.c) against the exact Python path.

Whatever the C module accepts must be exactly what group_by_topic gives for the same text
(same topics, same lines in the same order, no errors); whatever it is unsure of it must
refuse (None), and then group_chunk's answer is group_by_topic's."""
import os

from hypothesis import given, settings, strategies as st

from monbus.core import line as L


def exact(data: bytes):
    errors = []
    grouped = L.group_by_topic(data.decode("utf-8", "replace"), errors)
    return [(t, "\n".join(v), len(v)) for t, v in grouped.items()], errors


def test_module_is_built_in_ci():
    # a machine with a C compiler (CI's) must build it: otherwise this test would silently
    # check nothing but the Python path
    if os.environ.get("CI"):
        assert L._fastline is not None, "core/_fastline.c was not built (no C compiler?)"
    assert L.group_chunk(b"a.b 1 2") == [("a.b.", "a.b 1 2", 1)]


def test_fast_path_takes_ordinary_input_and_groups_like_python():
    data = "\n".join(
        f"collectd.web{i % 7:02d}.cpu-{i % 3}.idle{';dc=eu' if i % 5 == 0 else ''} "
        f"{i * 0.25 - 3} {1_700_000_000 + i // 10}{' mtype=derive unit=B' if i % 4 == 0 else ''}"
        for i in range(2000)).encode() + b"\n\nshort.two 1 2\n"
    want, errors = exact(data)
    assert errors == []
    if L._fastline is not None:
        assert L._fastline.group(data) == want
    assert L.group_chunk(data) == want
    assert sum(n for _, _, n in want) == 2001
    assert ("short.two.", "short.two 1 2", 1) in want


def test_one_bad_line_falls_back_and_keeps_the_others():
    data = b"a.b.c 1 2\na.b.c nan 3\nx.y 4 5 mtype=bogus\nx.y 6 7\n"
    if L._fastline is not None:
        assert L._fastline.group(data) is None
    errors = []
    got = L.group_chunk(data, errors)
    assert got == [("a.b.", "a.b.c 1 2", 1), ("x.y.", "x.y 6 7", 1)]
    assert [e.problem for e in errors] == ["value is not finite", "unknown mtype 'bogus'"]


_SERIES = st.one_of(
    st.sampled_from(["a.b", "a.b.c", "collectd.web01.cpu-0.idle", "a.b;t=v", "a.b.c;t=v;u=w=x",
                     "a", ".a.b", "a..b", "a.b.", "a.b;", "a.b;t", "a.b;=v", "a.b;t=", "a.b;t=~v",
                     "a.b;t!=v", "a.b;t^=v", "a.b;t=v~", "é.b", "a.b\r", "a\tb.c", "a.b" * 1400,
                     "a.b.%41", "x.y-z:1@2#3+4", "a.b;t=v;", "A.B", "a.b;t==v"]),
    st.text(alphabet="ab.;=~!^%é\t\r ", min_size=0, max_size=12))
_NUMBER = st.one_of(
    st.sampled_from(["0", "1", "-1.5", "+2", ".5", "5.", "1e5", "1E-5", "-1e+99", "1e100",
                     "1e999", "nan", "inf", "-inf", "Infinity", "1_0", "", "1e", "e1", "0x1",
                     "1" * 199, "1" * 201, "1" * 400, "--1", "1.2.3", "٣", " 1", "-0", "+.5"]),
    st.from_regex(r"[-+]?[0-9]{0,4}\.?[0-9]{0,3}([eE][-+]?[0-9]{1,3})?", fullmatch=True))
_ANN = st.sampled_from(["", " mtype=gauge", " mtype=counter unit=B", " mtype=bogus", " unit=",
                        " unit=B unit=C", " output=a%20b", " output=50%", " Key=v", " x",
                        " unit=B ", "  unit=B", " warn=10:20 crit=@5 min=0 max=100",
                        " interval=10 mtype=state output=OK", " k1_=v=w", " unit=é"])


@st.composite
def _lines(draw):
    s, v, t, a = draw(_SERIES), draw(_NUMBER), draw(_NUMBER), draw(_ANN)
    return f"{s} {v} {t}{a}"


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(_lines(), st.sampled_from(["", "\r", "a.b 1 2\r", "a.b 1", "a.b"])),
                max_size=12),
       st.booleans())
def test_fast_path_equals_exact_path(lines, final_newline):
    data = ("\n".join(lines) + ("\n" if final_newline else "")).encode("utf-8")
    want, errors = exact(data)
    got_errors = []
    assert L.group_chunk(data, got_errors) == want
    assert [e.problem for e in got_errors] == [e.problem for e in errors]
    if L._fastline is not None:
        fast = L._fastline.group(data)
        assert L.vouched(data) == (fast is not None)
        if fast is not None:
            assert fast == want and errors == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fast_path_on_arbitrary_bytes(data):
    want, errors = exact(data)
    assert L.group_chunk(data, []) == want
    if L._fastline is not None:
        fast = L._fastline.group(data)
        assert fast is None or (fast == want and errors == [])
        assert L.vouched(data) == (fast is not None)
