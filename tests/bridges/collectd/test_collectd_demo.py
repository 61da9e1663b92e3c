"""The demo feed: the shipped real capture reaches the relay, verified and decoded."""
from helpers import collect
from monbus.bridges.collectd.demo import feed


def test_demo_feed(relay, subscribe):
    sub = subscribe("collectd.**")
    n = feed(relay.input, None)
    assert n == 350
    got = collect(sub, n, timeout=30)
    assert {x.path for x in got} >= {"collectd.cdhost_monbus_example.load.load.shortterm",
                                      "collectd.cdhost_monbus_example.interface-lo.if_octets.rx"}
