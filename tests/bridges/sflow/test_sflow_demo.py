"""The demo feeds the shipped real datagrams through the bridge to a real relay."""
from __future__ import annotations

from helpers import collect

from monbus.bridges.sflow import demo
from monbus.core.line import decode


def test_demo_feeds_real_lines(relay, subscribe):
    sub = subscribe("sflow.**")
    n = demo.feed(relay.input, None)
    got = collect(sub, n, timeout=30)
    assert len(got) == n > 100
    names = {ln.series.split(";")[0] for ln in got}
    # hsflowd host counters under the host's own name; switch interfaces; IPv6 agent flows
    assert "sflow.use03710ff.host.cpu.cpu_num" in names
    assert "sflow.15_184_8_4.if55.if.out_octets" in names
    assert any(n.startswith("sflow.30::1:1:1.if7001.flow.") for n in names)


def test_demo_lines_are_valid():
    for ln in demo.demo_lines(1700000000):
        decode(ln)
