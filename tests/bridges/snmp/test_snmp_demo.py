"""`monbus demo`'s SNMP feed: real net-snmp datagrams through the decoders to the relay."""
from helpers import collect
from monbus.bridges.snmp.demo import feed, sample_lines


def test_demo_feed_reaches_the_bus(relay, subscribe):
    sub = subscribe("snmp.**")
    n = feed(relay.input, None)
    lines = collect(sub, n)
    assert len(lines) == n == len(sample_lines()) > 80
    paths = {ln.path: ln for ln in lines}
    # values snmpbulkwalk printed for the same capture (netsnmp593_local_cli_outputs.txt)
    assert paths["snmp.demo-agent.interfaces.lo.ifHCInOctets"].value == 756907429
    assert paths["snmp.demo-agent.interfaces.eth0.ifInOctets"].value == 35884761
    assert paths["snmp.demo-agent.ucd.memTotalReal"].value == 24684092 * 1024
    assert paths["snmp.demo-agent.trap.linkDown"].meta["oid_1_3_6_1_4_1_99999_1"] == "192.0.2.7"
