"""The emitter: bus lines -> gmetric datagrams (checked by decoding them back)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from monbus.bridges.ganglia import xdr
from monbus.bridges.ganglia.emitter import GmetricEmitter
from monbus.bridges.ganglia.listener import GmondListener
from monbus.core.line import Line, decode, format_number


def test_metadata_first_then_values_then_resend():
    em = GmetricEmitter(metadata_interval=30, tmax=60, dmax=600)
    line = decode("collectd.web01.cpu.0.user 12.5 100 mtype=derive unit=jiffies")
    first = em.packets(line, 1000.0)
    assert len(first) == 2
    md, val = (xdr.decode(p) for p in first)
    assert md == xdr.Metadata(xdr.MetricId("web01:web01", "collectd.cpu.0.user", True), "double",
                              "collectd.cpu.0.user", "jiffies", 1, 60, 600,
                              {"GROUP": "collectd", "SPOOF_HOST": "web01:web01"})
    assert val == xdr.Value(xdr.MetricId("web01:web01", "collectd.cpu.0.user", True),
                            xdr.STRING, "%s", "12.5")
    assert len(em.packets(line, 1010.0)) == 1         # metadata not due yet
    assert len(em.packets(line, 1030.0)) == 2         # resent after metadata_interval


def test_ganglia_lines_keep_their_host_and_tags_stay_in_the_name():
    assert GmetricEmitter.names(decode("ganglia.c1.node7.load_one 1 1")) == \
        ("node7", "load_one", "ganglia")
    assert GmetricEmitter.names(decode("app.db02.queue;dc=eu 1 1")) == \
        ("db02", "app.queue;dc=eu", "app")
    assert GmetricEmitter.names(decode("nagios.web01 0 1 mtype=state")) == \
        ("web01", "nagios", "nagios")


def test_too_long_for_gmond_is_counted_not_sent():
    em = GmetricEmitter()
    long = Line("app.h." + "m" * 1500, 1.0, 1.0)
    assert em.packets(long, 1.0) == []
    assert em.stats["too_long"] == 1 and "1472" in em.errors[0]


_name = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(_name, _name, st.lists(_name, min_size=1, max_size=3),
       st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["gauge", "counter"]))
def test_round_trip_through_the_listener(source, host, rest, value, mtype):
    """What emit sends, a gmond-protocol listener decodes back to the same host and value."""
    if source == "ganglia":
        source = "app"
    line = Line(f"{source}.{host}.{'.'.join(rest)}", value, 5.0, {"mtype": mtype})
    em = GmetricEmitter()
    lst = GmondListener("c")
    out = []
    for pkt in em.packets(line, 5.0):
        out += lst.feed(pkt, 5.0)[0]
    assert len(out) == 1
    got = decode(out[0])
    assert got.value == float(format_number(value)) == value
    assert got.path.split(".")[2] == host
    assert got.meta["mtype"] == ("counter" if mtype == "counter" else "gauge")
