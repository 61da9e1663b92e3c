"""The Telegraf test vectors, checked against Telegraf's own decode (its expected.out): a
third independent decoder, and the only one in the corpus for discarded-packet samples and
for the port_name record tshark 4.0 mis-reads."""
from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sflow_testlib import DATA  # noqa: E402

from monbus.bridges.sflow.datagram import decode_datagram  # noqa: E402
from monbus.bridges.sflow.headers import IP_PROTOCOLS, parse_header  # noqa: E402
from monbus.bridges.sflow.pipeline import Pipeline  # noqa: E402

_FIELD = re.compile(r'([a-z_0-9]+)=("(?:[^"\\]|\\.)*"|[^,]+)')


def telegraf_lines(name):
    out = []
    for raw in (DATA / "vectors" / name).read_text().splitlines():
        if not raw.strip():
            continue
        fields_part = raw.split(" ")[1]
        fields = {}
        for k, v in _FIELD.findall(fields_part):
            fields[k] = v.strip('"') if v.startswith('"') else int(v.rstrip("u"))
        out.append(fields)
    return out


COUNTER_MAP = {  # Telegraf field -> (monbus record, field)
    "in_bytes": ("if", "in_octets"), "out_bytes": ("if", "out_octets"),
    "in_unicast_packets_total": ("if", "in_ucast_pkts"),
    "in_mcast_packets_total": ("if", "in_multicast_pkts"),
    "in_broadcast_packets_total": ("if", "in_broadcast_pkts"),
    "in_dropped_packets": ("if", "in_discards"), "in_errors": ("if", "in_errors"),
    "in_unknown_protocol": ("if", "in_unknown_protos"),
    "out_unicast_packets_total": ("if", "out_ucast_pkts"),
    "out_mcast_packets_total": ("if", "out_multicast_pkts"),
    "out_broadcast_packets_total": ("if", "out_broadcast_pkts"),
    "out_dropped_packets": ("if", "out_discards"), "out_errors": ("if", "out_errors"),
    "interface": ("if", "index"), "interface_type": ("if", "type"), "speed": ("if", "speed"),
    "promiscuous": ("if", "promiscuous_mode"),
    "errors_fcs": ("eth", "fcs_errors"), "errors_alignment": ("eth", "alignment_errors"),
    "collision_frames_single": ("eth", "single_collision_frames"),
    "collision_frames_multi": ("eth", "multiple_collision_frames"),
    "errors_sqetest": ("eth", "sqe_test_errors"), "deferred": ("eth", "deferred_transmissions"),
    "collisions_late": ("eth", "late_collisions"),
    "collisions_excessive": ("eth", "excessive_collisions"),
    "errors_internal_mac_tx": ("eth", "internal_mac_transmit_errors"),
    "errors_carrier_sense": ("eth", "carrier_sense_errors"),
    "errors_frame_too_long": ("eth", "frame_too_longs"),
    "errors_internal_mac_rx": ("eth", "internal_mac_receive_errors"),
    "errors_symbols": ("eth", "symbol_errors"),
    "port_name": ("port_name", "name"),
}


def _records(sample):
    out = {}
    for rf, values, extra in sample.records:
        d = dict(zip([f.name for f in rf.fields], values))
        if extra:
            d.update(extra)
        out[rf.name] = d
    return out


@pytest.mark.parametrize("vector", ["telegraf_sflow_v5_example", "telegraf_sflow_issue_18876",
                                    "telegraf_sflow_issue_15918",
                                    "telegraf_sflow_issue_15375_drop"])
def test_matches_telegraf(vector):
    dg = decode_datagram((DATA / "vectors" / f"{vector}.bin").read_bytes())
    assert not dg.problems
    expected = telegraf_lines(f"{vector}.expected.out")
    assert len(expected) == len(dg.samples)
    checked = 0
    for exp in expected:
        assert dg.agent == exp["agent_ip"] and dg.sub_agent == exp["agent_subid"]
        assert dg.uptime == exp["sys_uptime"]
        s = next(s for s in dg.samples if s.sequence == exp["seq_number"]
                 and (s.kind != "flow" or s.sample_pool == exp.get("in_total_packets")))
        recs = _records(s)
        if s.kind == "counters":
            for tf, (rname, fname) in COUNTER_MAP.items():
                if tf in exp:
                    assert recs[rname][fname] == exp[tf], (vector, tf)
                    checked += 1
            assert (recs["if"]["status"] & 1) == (exp["status"] == "up")
        elif s.kind == "flow":
            # Telegraf reports the data source as in_snmp, and out_snmp only for a single
            # output interface (format 0)
            assert s.ds_index == exp["in_snmp"]
            if s.output_format == 0:
                assert s.output == exp["out_snmp"]
            else:
                assert "out_snmp" not in exp
            assert s.sampling_rate == exp["sampling_interval"]
            assert s.drops == exp["sampling_drops"]
            hdr = recs["sampled_header"]
            assert hdr["frame_length"] == exp["l2_bytes"]
            info = parse_header(hdr["protocol"], hdr["header"])
            assert str(ipaddress.ip_address(info.src)) == exp["src"]
            assert str(ipaddress.ip_address(info.dst)) == exp["dst"]
            if exp["protocol"] == "hopopt":
                # Telegraf stops at the IPv6 hop-by-hop header; monbus walks the extension
                # headers to the transport (here MLD, ICMPv6, as tshark also shows)
                assert hdr["header"][14 + 6] == 0 and info.protocol == 58
            else:
                assert IP_PROTOCOLS[info.protocol] == exp["protocol"]
            if "src_port" in exp:
                assert (info.src_port, info.dst_port) == (exp["src_port"], exp["dst_port"])
            sw = recs["extended_switch"]
            assert (sw["src_vlan"], sw["dst_vlan"]) == (exp["vlan_src"], exp["vlan_dst"])
            assert (sw["src_priority"], sw["dst_priority"]) == (exp["vlan_src_priority"],
                                                                exp["vlan_dst_priority"])
            checked += 12
        else:
            assert s.kind == "discard"
            assert (s.input, s.output) == (exp["in_snmp"], exp["out_snmp"])
            assert s.drops == exp["sampling_drops"]
            assert s.reason == exp["reason"]
            assert recs["extended_egress_queue"]["queue"] == exp["out_queue"]
            checked += 5
    assert checked


def test_drop_sample_becomes_a_count_by_reason():
    pipe = Pipeline(interval=10)
    payload = (DATA / "vectors" / "telegraf_sflow_issue_15375_drop.bin").read_bytes()
    pipe.feed(payload, 1700000003, "test")
    pipe.feed(payload, 1700000004, "test")
    lines = pipe.flush(1700000010)
    # reason 1 is ICMP-style "host unreachable" (sFlow drops extension); 2 samples
    want = "sflow.192_168_119_184.if1.discards.host_unreachable 2 1700000000"
    assert any(ln.startswith(want + " ") for ln in lines), lines
