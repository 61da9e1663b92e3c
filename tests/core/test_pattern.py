"""Graphite-style subscription patterns: what matches, and what ZeroMQ filters on."""
import pytest
from hypothesis import given, settings, strategies as st

from monbus.core.pattern import Matcher, PatternError, compile_pattern, zmq_prefix

CASES = [
    ("collectd.web*.cpu-*.**", "collectd.web01.cpu-0.cpu-idle", True),
    ("collectd.web*.cpu-*.**", "collectd.web01.cpu-0", True),          # ** may be empty
    ("collectd.web*.cpu-*.**", "collectd.db01.cpu-0.cpu-idle", False),
    ("collectd.web*.cpu-*.**", "collectd.web01.memory.used", False),
    ("collectd.*.load.load.shortterm", "collectd.h.load.load.shortterm", True),
    ("collectd.*.load", "collectd.h.x.load", False),                     # * is one component
    ("**.if_octets.rx", "collectd.h.interface-eth0.if_octets.rx", True),
    ("snmp.router1", "snmp.router1.ifHCInOctets", True),                 # plain prefix
    ("snmp.router1", "snmp.router10.ifHCInOctets", False),
    ("snmp.router1", "snmp.router1", True),
    ("snmp.router1.", "snmp.router1.x", True),
    ("a.{b,c}.d", "a.c.d", True),
    ("a.{b,c}.d", "a.e.d", False),
    ("a.[xy]?.d", "a.yz.d", True),
    ("a.[!xy]?.d", "a.yz.d", False),
    ("a.h?st.x", "a.host.x", True),
    ("**", "anything.at.all", True),
]


@pytest.mark.parametrize("pattern,path,hit", CASES)
def test_matches(pattern, path, hit):
    assert compile_pattern(pattern)(path) is hit
    assert Matcher([pattern])(path) is hit


@pytest.mark.parametrize("pattern,prefix", [
    ("collectd.web*.cpu-*.**", b"collectd.web"),
    ("snmp.router1", b"snmp.router1."),       # the trailing dot: not router10
    ("snmp.router1.ifHCInOctets", b"snmp.router1."),
    ("snmp", b"snmp."),
    ("collectd.*", b"collectd."),
    ("collectd.web01.*.x", b"collectd.web01."),
    ("**.cpu", b""),
    ("", b""),
])
def test_zmq_prefix_is_the_longest_literal_topic_prefix(pattern, prefix):
    assert zmq_prefix(pattern) == prefix


def test_matcher_subscribes_to_the_fewest_prefixes():
    m = Matcher(["snmp.router1", "snmp.*", "collectd.web01.cpu"])
    assert m.zmq_prefixes() == [b"collectd.web01.", b"snmp."]
    assert Matcher(["a.b", "**"]).zmq_prefixes() == [b""]


def test_bad_patterns_are_reported():
    with pytest.raises(PatternError, match="unclosed"):
        compile_pattern("a.[bc.d")
    with pytest.raises(PatternError, match="unclosed"):
        compile_pattern("a.{b,c.d")


comp = st.text(st.sampled_from("abcxyz019-_"), min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.lists(comp, min_size=2, max_size=5), st.data())
def test_a_matching_path_always_passes_the_zmq_filter(parts, data):
    path = ".".join(parts)
    # build a pattern that matches: replace some components with * or a ** tail
    pat = [("*" if data.draw(st.booleans()) else p) for p in parts]
    if data.draw(st.booleans()):
        pat = pat[:data.draw(st.integers(1, len(pat)))] + ["**"]
    pattern = ".".join(pat)
    assert compile_pattern(pattern)(path)
    topic = (".".join(parts[:2]) + ".").encode()
    assert topic.startswith(zmq_prefix(pattern))
